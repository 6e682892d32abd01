//! A hand-driven peer on a plain socket: speaks the wire format directly, to test what a real
//! node does with hostile or dying peers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chaski_proto::codec::{decode_message, encode_frame, FrameDecoder};
use chaski_proto::message::{Hello, PROTOCOL_VERSION};
use chaski_proto::{Message, NodeId};

/// One raw connection.
pub struct RawConn {
    stream: TcpStream,
    decoder: FrameDecoder,
}

/// A Hello from a made-up node.
pub fn hello(id: u128, listen: Option<SocketAddr>, topics: &[&str]) -> Message {
    hello_offering(id, listen, topics, &[])
}

/// A Hello from a made-up node that offers `services`.
pub fn hello_offering(
    id: u128,
    listen: Option<SocketAddr>,
    topics: &[&str],
    services: &[&str],
) -> Message {
    let strings = |v: &[&str]| v.iter().map(|t| t.to_string()).collect();
    Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        id: NodeId(id),
        name: format!("raw{id}"),
        listen,
        topics: strings(topics),
        paired: vec![],
        services: strings(services),
        root: false,
        pairing: None,
        nonce: 1,
    })
}

impl RawConn {
    /// Dials a node.
    pub fn connect(addr: SocketAddr) -> RawConn {
        RawConn::from(TcpStream::connect(addr).expect("raw connect"))
    }

    /// Waits up to `limit` for a connection on `listener`.
    pub fn accept(listener: &TcpListener, limit: Duration) -> Option<RawConn> {
        listener.set_nonblocking(true).ok()?;
        let end = Instant::now() + limit;
        loop {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).ok()?;
                    return Some(RawConn::from(s));
                }
                Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => return None,
            }
        }
    }

    fn from(stream: TcpStream) -> RawConn {
        RawConn {
            stream,
            decoder: FrameDecoder::new(16 << 20),
        }
    }

    /// Sends one message.
    pub fn send(&mut self, msg: &Message) {
        let mut b = BytesMut::new();
        encode_frame(msg, &mut b, 16 << 20).expect("encode");
        self.stream.write_all(&b).expect("raw write");
    }

    /// Dials `addr`, says `hello` and waits for the node's Hello: an edge on the node's side.
    pub fn edge(addr: SocketAddr, hello: &Message) -> RawConn {
        let mut raw = RawConn::connect(addr);
        raw.send(hello);
        match raw.recv(Duration::from_secs(5)) {
            Some(Message::Hello(_)) => raw,
            other => panic!("no Hello back from the node: {other:?}"),
        }
    }

    /// Sends raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("raw write");
    }

    /// Sends raw bytes; false once the node has closed the connection.
    pub fn try_send_bytes(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// The next message within `limit`; `None` on timeout or EOF. Bytes from the node that do
    /// not decode fail the test: a node must never send them.
    pub fn recv(&mut self, limit: Duration) -> Option<Message> {
        let end = Instant::now() + limit;
        loop {
            match self.decoder.next_frame() {
                Ok(Some(body)) => match decode_message(&body) {
                    Ok(m) => return Some(m),
                    Err(e) => panic!("the node sent an undecodable frame: {e}"),
                },
                Ok(None) => {}
                Err(e) => panic!("the node sent a bad frame: {e}"),
            }
            let left = end.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.decoder.extend(&buf[..n]),
                Err(_) => return None,
            }
        }
    }

    /// Reads until the peer closes; true if it did within `limit`.
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            let _ = self
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
        false
    }
}
