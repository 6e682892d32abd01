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
    Message::Hello(Hello {
        version: PROTOCOL_VERSION,
        id: NodeId(id),
        name: format!("raw{id}"),
        listen,
        topics: topics.iter().map(|t| t.to_string()).collect(),
        paired: vec![],
        services: vec![],
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

    /// Sends raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("raw write");
    }

    /// The next message within `limit`; `None` on timeout or EOF.
    pub fn recv(&mut self, limit: Duration) -> Option<Message> {
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(body)) = self.decoder.next_frame() {
                return decode_message(&body).ok();
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
