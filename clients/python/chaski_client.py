#!/usr/bin/env python3
"""A Chaski client written from PROTOCOL.md alone (no Rust code read), with cbor2.

    python3 chaski_client.py --vectors PROTOCOL.md      # decode and re-encode every test vector
    python3 chaski_client.py HOST:PORT                  # against a node: see run()
    python3 chaski_client.py --file ROOT SHA256         # receive one file: see receive_file()

Against a node that serves `demo` and publishes on `py/news` (`chaski node --serve --pub
py/news`), it says Hello subscribed to `py/news`, answers pings while it waits for two publishes
(it sends nothing else, so a node that pinged it and got no pong would drop it), calls
`demo.add(2, 3)` and reads `demo.version`, sees an error for an unknown method, cancels nothing,
and says goodbye. Exit 0 when every step went as the specification says; 1 otherwise.
"""

import random
import socket
import struct
import sys
import time

import cbor2

PUBLISH_MARK = 0xFF
TLS_RECORD_TYPES = range(20, 24)


def frame(message):
    """One frame: a 4-byte big-endian length, then the CBOR body (section 2)."""
    body = cbor2.dumps(message)
    return struct.pack(">I", len(body)) + body


def decode_body(body):
    """A frame body: a compact publish (0xFF) as a dict, else the CBOR message."""
    if body and body[0] == PUBLISH_MARK:
        if len(body) < 1 + 16 + 8 + 1 + 1 + 2:
            raise ValueError("short compact publish")
        origin = int.from_bytes(body[1:17], "big")
        seq, ttl, hops, tlen = struct.unpack(">QBBH", body[17:29])
        topic = body[29:29 + tlen].decode("utf-8")
        if len(body) < 29 + tlen:
            raise ValueError("topic runs past the body")
        return {"Publish": {"o": origin, "s": seq, "t": topic, "l": ttl, "h": hops,
                            "p": body[29 + tlen:]}}
    return cbor2.loads(body)


def encode_compact(p):
    topic = p["t"].encode("utf-8")
    return (bytes([PUBLISH_MARK]) + p["o"].to_bytes(16, "big")
            + struct.pack(">QBBH", p["s"], p["l"], p["h"], len(topic)) + topic + p["p"])


def kind(message):
    """The kind of a message: its single key, or its text (section 1)."""
    if isinstance(message, str):
        return message
    if isinstance(message, dict) and len(message) == 1:
        return next(iter(message))
    raise ValueError(f"not a message: {message!r}")


def check_vectors(path):
    """Every test vector of the document decodes, and re-encodes to the same bytes."""
    count = 0
    for line in open(path, encoding="utf-8"):
        words = line.split()
        if len(words) != 3 or words[0] not in ("vector", "datagram"):
            continue
        what, name, hexed = words
        raw = bytes.fromhex(hexed)
        if what == "vector":
            (length,) = struct.unpack(">I", raw[:4])
            body = raw[4:]
            assert length == len(body), f"{name}: length {length} for {len(body)} bytes"
            message = decode_body(body)
            again = (encode_compact(message["Publish"]) if body[0] == PUBLISH_MARK
                     else cbor2.dumps(message))
        else:
            message = cbor2.loads(raw)
            body, again = raw, cbor2.dumps(message)
        assert again == body, f"{name}: re-encoded differently\n{again.hex()}\n{body.hex()}"
        print(f"vector {name}: {kind(message)} ok")
        count += 1
    assert count >= 20, f"only {count} vectors found"
    print(f"{count} vectors decoded and re-encoded identically")


class Connection:
    """One TCP connection to a node, frames in and out."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.buf = b""

    def send(self, message):
        self.sock.sendall(frame(message))

    def recv(self, deadline):
        """The next message, or None at EOF or at the deadline."""
        while True:
            if len(self.buf) >= 4:
                (length,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + length:
                    body, self.buf = self.buf[4:4 + length], self.buf[4 + length:]
                    return decode_body(body)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                return None
            if not self.buf and self.buf == b"" and chunk[0] in TLS_RECORD_TYPES:
                raise RuntimeError("the node speaks TLS")
            self.buf += chunk


def fail(why):
    print(f"FAIL: {why}", file=sys.stderr)
    sys.exit(1)


def run(target):
    host, _, port = target.rpartition(":")
    conn = Connection(host.strip("[]"), int(port))
    me = random.getrandbits(128) | (1 << 127)   # a 128-bit id: sent as a tag-2 bignum
    conn.send({"Hello": {
        "version": 1, "id": me, "name": "python", "listen": None,
        "topics": ["py/news"], "paired": [], "services": [], "root": False,
        "pairing": None, "nonce": random.getrandbits(63),
    }})
    deadline = time.monotonic() + 5
    hello = conn.recv(deadline)
    if kind(hello or "none") != "Hello":
        fail(f"expected the node's Hello, got {hello!r}")
    peer = hello["Hello"]
    print(f"hello from {peer['name']} (id {peer['id']:032x}, version {peer['version']}, "
          f"services {peer['services']})")
    pings = publishes = 0
    pending = {}

    def pump(until, want):
        """Handles what arrives until `want()` holds or the deadline: answers pings, counts
        publishes, files responses."""
        nonlocal pings, publishes
        while not want():
            m = conn.recv(until)
            if m is None:
                return False
            k = kind(m)
            if k == "Ping":
                conn.send({"Pong": {"id": m["Ping"]["id"], "padding": m["Ping"]["padding"]}})
                pings += 1
            elif k == "Publish":
                p = m["Publish"]
                if p["t"] != "py/news":
                    fail(f"a publish on {p['t']!r}, which we never subscribed to")
                publishes += 1
                print(f"publish #{p['s']} from {p['o']:032x}: {p['p'].decode()!r} "
                      f"(ttl {p['l']}, hops {p['h']})")
            elif k == "Response":
                pending[m["Response"]["id"]] = m["Response"]["result"]
            elif k == "Goodbye":
                fail(f"the node said goodbye: {m['Goodbye']!r}")
            else:
                print(f"({k} noted)")
        return True

    # Silent but for pongs for longer than the node's idle timeout: still connected after.
    if not pump(time.monotonic() + 4, lambda: publishes >= 2 and pings >= 2):
        fail(f"after 4 s: {publishes} publishes, {pings} pings")
    stay = time.monotonic() + 2.5
    pump(stay, lambda: False)
    print(f"answered {pings} pings; still connected")

    def call(rid, service, path, args, call_kind="Call"):
        conn.send({"Request": {"id": rid, "service": service, "path": path, "kind": call_kind,
                               "args": cbor2.dumps(args), "timeout_ms": 5000}})
        if not pump(time.monotonic() + 5, lambda: rid in pending):
            fail(f"no response to request {rid}")
        return pending.pop(rid)

    result = call(1, "demo", "add", [2, 3])
    if "Ok" not in result or cbor2.loads(result["Ok"]) != 5.0:
        fail(f"demo.add(2, 3) gave {result!r}")
    print(f"demo.add(2, 3) = {cbor2.loads(result['Ok'])}")
    result = call(2, "demo", "version", None, "Get")
    if "Ok" not in result:
        fail(f"demo.version gave {result!r}")
    print(f"demo.version = {cbor2.loads(result['Ok'])!r}")
    result = call(3, "demo", "nope", None)
    if result != {"Err": {"NoSuchMethod": "nope"}}:
        fail(f"an unknown method gave {result!r}")
    print(f"demo.nope: {result['Err']!r}")
    result = call(4, "nosuch", "x", None)
    if kind(result.get("Err", "x")) != "NotFound":
        fail(f"an unknown service gave {result!r}")
    conn.send({"Goodbye": "Closed"})
    conn.sock.close()
    print("all steps passed")


def hello(me, topics):
    return {"Hello": {
        "version": 1, "id": me, "name": "python", "listen": None,
        "topics": topics, "paired": [], "services": [], "root": False,
        "pairing": None, "nonce": random.getrandbits(63),
    }}


def receive_file(target, want_sha):
    """Receives one file offered on `py/files` through the node at `target` (section 9),
    pretending chunk 1 was lost: once the end is in, it dials the sender at the offer's address
    and asks for chunk 1 with a FileWant, takes the repair, and checks the whole file's
    SHA-256 against the end's and against `want_sha`."""
    import hashlib
    host, _, port = target.rpartition(":")
    conn = Connection(host.strip("[]"), int(port))
    me = random.getrandbits(128) | (1 << 127)
    conn.send(hello(me, ["py/files"]))
    deadline = time.monotonic() + 30
    offer, chunks, end = None, {}, None
    while end is None:
        m = conn.recv(deadline)
        if m is None:
            fail(f"no whole transfer within 30 s (offer {offer is not None}, {len(chunks)} chunks)")
        k = kind(m)
        if k == "Ping":
            conn.send({"Pong": m["Ping"]})
        elif k == "FileOffer" and offer is None:
            offer = m["FileOffer"]
            print(f"offered {offer['name']!r}: {offer['size']} bytes in chunks of "
                  f"{offer['chunk']}, sender at {offer['addr']!r}")
        elif k == "FileChunk" and offer is not None and m["FileChunk"]["f"] == offer["f"]:
            c = m["FileChunk"]
            if c["i"] != 1:
                chunks[c["i"]] = c["d"]
        elif k == "FileEnd" and offer is not None and m["FileEnd"]["f"] == offer["f"]:
            end = m["FileEnd"]
    count = -(-end["size"] // offer["chunk"])
    missing = [i for i in range(count) if i not in chunks]
    if missing != [1]:
        fail(f"expected only chunk 1 missing, not {missing}")
    addr = offer["addr"]
    ip = addr["V4"][0] if "V4" in addr else addr["V6"][0]
    port = addr["V4"][1] if "V4" in addr else addr["V6"][1]
    ip = ".".join(str(b) for b in ip) if "V4" in addr else socket.inet_ntop(
        socket.AF_INET6, bytes(ip))
    sender = Connection(ip, port)
    sender.send(hello(me ^ 1, []))
    deadline = time.monotonic() + 10
    m = sender.recv(deadline)
    if kind(m or "none") != "Hello" or m["Hello"]["id"] != offer["o"]:
        fail(f"the sender's Hello was {m!r}")
    sender.send({"FileWant": {"o": offer["o"], "f": offer["f"], "ranges": [[1, 2]],
                              "end": False}})
    while 1 not in chunks:
        m = sender.recv(deadline)
        if m is None:
            fail("no repair of chunk 1 within 10 s")
        if kind(m) == "FileChunk" and m["FileChunk"].get("r") and m["FileChunk"]["i"] == 1:
            chunks[1] = m["FileChunk"]["d"]
        elif kind(m) == "Ping":
            sender.send({"Pong": m["Ping"]})
    data = b"".join(chunks[i] for i in range(count))
    got = hashlib.sha256(data).digest()
    if len(data) != end["size"] or got != end["sha256"] or got.hex() != want_sha:
        fail(f"the file's SHA-256 is {got.hex()}, the end says {end['sha256'].hex()}, "
             f"the source {want_sha}")
    sender.send({"Goodbye": "Closed"})
    conn.send({"Goodbye": "Closed"})
    print(f"received {offer['name']!r}: {len(data)} bytes, chunk 1 repaired by the sender, "
          f"SHA-256 {got.hex()} as sent")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--vectors":
        check_vectors(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "--file":
        receive_file(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 2:
        run(sys.argv[1])
    else:
        print(__doc__)
        sys.exit(2)
