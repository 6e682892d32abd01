//! Binding a node's TCP listener and UDP socket on the same address, for every runtime.

use std::net::{SocketAddr, TcpListener, UdpSocket};

use crate::error::{Error, Result};

/// Binds TCP and UDP on the same address, both non-blocking, ready for a runtime to adopt
/// (`tokio::net::TcpListener::from_std`, `smol::Async::new`, `mio::net::TcpListener::from_std`).
/// With port 0 the TCP port is picked first and UDP takes the same one, retrying if another
/// socket holds that UDP port.
///
/// ```
/// let (tcp, udp) = chaski_api::kit::bind_std("127.0.0.1:0".parse().unwrap()).unwrap();
/// assert_eq!(tcp.local_addr().unwrap(), udp.local_addr().unwrap());
/// ```
pub fn bind_std(want: SocketAddr) -> Result<(TcpListener, UdpSocket)> {
    let mut last = None;
    for _ in 0..16 {
        let listener = TcpListener::bind(want)?;
        let local = listener.local_addr()?;
        match UdpSocket::bind(local) {
            Ok(udp) => {
                listener.set_nonblocking(true)?;
                udp.set_nonblocking(true)?;
                return Ok((listener, udp));
            }
            Err(e) if want.port() == 0 => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| Error::io("no free port"), Error::from))
}
