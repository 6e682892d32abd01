# Your own program on the Chaski library, in an image FROM scratch: build it statically on the
# host, then build the image from a directory holding it as `app`. For the tokio quickstart:
#
#   RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=target/static \
#       cargo build --release -p chaski-tokio --example quickstart --target x86_64-unknown-linux-gnu
#   mkdir -p /tmp/app && cp target/static/x86_64-unknown-linux-gnu/release/examples/quickstart /tmp/app/app
#   cp docker/app.Dockerfile /tmp/app/Dockerfile && docker build -t my-app /tmp/app
#   docker run --rm my-app
FROM scratch
COPY app /app
USER 65534:65534
ENTRYPOINT ["/app"]
