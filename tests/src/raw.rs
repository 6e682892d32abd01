//! A hand-driven peer on a plain socket: speaks the wire format directly, to test what a real
//! node does with hostile or dying peers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use chaski_proto::codec::{decode_message, encode_frame, FrameDecoder};
use chaski_proto::message::{Hello, PROTOCOL_VERSION};
use chaski_proto::{Message, NodeId};

/// One raw connection.
pub struct RawConn {
    stream: Transport,
    decoder: FrameDecoder,
}

/// A raw connection's socket: plain, or TLS over it.
enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Transport {
    fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(s) => s.get_ref(),
        }
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.tcp().set_read_timeout(t)
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
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
        max_version: None,
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
            stream: Transport::Plain(stream),
            decoder: FrameDecoder::new(16 << 20),
        }
    }

    /// Dials a secure node over TLS with `identity` (any CA's, any validity: to attack with)
    /// and finishes the handshake; the error is the handshake's.
    pub fn connect_tls(
        addr: SocketAddr,
        identity: &chaski_proto::tls::TlsIdentity,
    ) -> Result<RawConn, String> {
        RawConn::tls(addr, &identity.ca, Some(identity))
    }

    /// Dials a secure node over TLS trusting `ca`, presenting no certificate at all.
    pub fn connect_tls_without_certificate(addr: SocketAddr, ca: &[u8]) -> Result<RawConn, String> {
        RawConn::tls(addr, ca, None)
    }

    fn tls(
        addr: SocketAddr,
        ca: &[u8],
        identity: Option<&chaski_proto::tls::TlsIdentity>,
    ) -> Result<RawConn, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca) {
            roots
                .add(ca.map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
        let config = match identity {
            Some(identity) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(&identity.cert)
                        .collect::<Result<_, _>>()
                        .map_err(|e| e.to_string())?;
                let key =
                    PrivateKeyDer::from_pem_slice(&identity.key).map_err(|e| e.to_string())?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| e.to_string())?
            }
            None => builder.with_no_client_auth(),
        };
        let name =
            ServerName::try_from(chaski_proto::tls::CLUSTER_NAME).map_err(|e| e.to_string())?;
        let session =
            rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
        let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut stream = rustls::StreamOwned::new(session, tcp);
        while stream.conn.is_handshaking() {
            stream
                .conn
                .complete_io(&mut stream.sock)
                .map_err(|e| e.to_string())?;
        }
        // TLS 1.3: the server checks the client's certificate after the client finished; its
        // verdict (an alert) arrives with the first read.
        Ok(RawConn {
            stream: Transport::Tls(Box::new(stream)),
            decoder: FrameDecoder::new(16 << 20),
        })
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
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
        false
    }
}
