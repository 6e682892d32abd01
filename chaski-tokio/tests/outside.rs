//! A handle works from threads outside the tokio runtime its node runs on (a node's tasks
//! are spawned on the runtime it was bound on, not on the caller's).

use std::time::Duration;

use chaski_tokio::{Config, Node};

#[test]
fn a_handle_works_outside_its_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = rt
        .block_on(async {
            let a = Node::bind("127.0.0.1:0", Config::default().name("a")).await?;
            let b = Node::bind("127.0.0.1:0", Config::default().name("b")).await?;
            Ok::<_, chaski_tokio::Error>((a, b))
        })
        .unwrap();
    // From this thread, which is not a runtime thread: dials and calls are spawned anyway.
    chaski_api::block_on(async {
        b.subscribe("t").await.unwrap();
        a.connect(&b.local_addr().to_string()).await.unwrap();
        a.publish("t", "hi").await.unwrap();
    });
    let msg = b
        .messages()
        .recv_timeout(Duration::from_secs(5))
        .expect("delivered");
    assert_eq!(&msg.payload[..], b"hi");
    chaski_api::block_on(async {
        a.shutdown().await.unwrap();
        b.shutdown().await.unwrap();
    });
}
