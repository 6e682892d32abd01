//! Address strings to socket addresses.

use std::net::{SocketAddr, ToSocketAddrs};

use chaski_proto::{parse_addr, Host};

use crate::error::{Error, Result};

/// Parses a Chaski address (`host:port`, `[v6]:port`, `Name@host:port`, `*Name@host:port`) and
/// resolves a host name if there is one (blocking; IP literals never block).
///
/// ```
/// assert_eq!(chaski_api::resolve("Root@127.0.0.1:8511").unwrap().port(), 8511);
/// assert!(chaski_api::resolve("no-port").is_err());
/// ```
pub fn resolve(addr: &str) -> Result<SocketAddr> {
    let parsed = parse_addr(addr)?;
    if let Some(sa) = parsed.socket_addr() {
        return Ok(sa);
    }
    let Host::Name(name) = &parsed.host else {
        return Err(Error::Resolve(addr.to_string()));
    };
    (name.as_str(), parsed.port)
        .to_socket_addrs()
        .map_err(|e| Error::Resolve(format!("{addr}: {e}")))?
        .next()
        .ok_or_else(|| Error::Resolve(addr.to_string()))
}
