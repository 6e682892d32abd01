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

/// Every address of `addr` (as [`resolve`] parses it), without blocking the caller: a host name
/// is looked up on a thread of its own, and the task waits for the answer.
///
/// ```
/// let addrs = chaski_api::block_on(chaski_api::resolve_all("127.0.0.1:8511")).unwrap();
/// assert_eq!(addrs, vec!["127.0.0.1:8511".parse().unwrap()]);
/// ```
pub async fn resolve_all(addr: &str) -> Result<Vec<SocketAddr>> {
    let parsed = parse_addr(addr)?;
    if let Some(sa) = parsed.socket_addr() {
        return Ok(vec![sa]);
    }
    let Host::Name(name) = parsed.host else {
        return Err(Error::Resolve(addr.to_string()));
    };
    let port = parsed.port;
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::Builder::new()
        .name("chaski-resolve".into())
        .spawn(move || {
            let found = (name.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>());
            let _ = tx.send(found);
        })
        .map_err(|e| Error::Resolve(format!("{addr}: {e}")))?;
    let found = rx
        .await
        .map_err(|_| Error::Resolve(addr.to_string()))?
        .map_err(|e| Error::Resolve(format!("{addr}: {e}")))?;
    if found.is_empty() {
        return Err(Error::Resolve(addr.to_string()));
    }
    Ok(found)
}

/// Tries `each` address in turn until one succeeds; gives the last failure if none does.
pub(crate) async fn first_success<T, F: std::future::Future<Output = Result<T>>>(
    addrs: Vec<SocketAddr>,
    mut each: impl FnMut(SocketAddr) -> F,
) -> Result<T> {
    let mut last = None;
    for a in addrs {
        match each(a).await {
            Ok(v) => return Ok(v),
            Err(e @ (Error::Connect(_) | Error::Timeout)) => {
                tracing::debug!(addr = %a, error = %e, "trying the next address");
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Resolve("no address".into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chaski_proto::ConnectError;

    #[test]
    fn each_address_is_tried_until_one_connects() {
        let addrs: Vec<SocketAddr> = ["[::1]:1", "127.0.0.1:1", "127.0.0.2:1"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let mut tried = Vec::new();
        let got = crate::block_on(first_success(addrs.clone(), |a| {
            tried.push(a);
            async move {
                if a.is_ipv6() {
                    Err(Error::Connect(ConnectError::DialFailed("refused".into())))
                } else {
                    Ok(a)
                }
            }
        }));
        assert_eq!(got.unwrap(), addrs[1]);
        assert_eq!(tried, addrs[..2]);
        // None connects: the last failure; an error that is not about the address stops.
        let err = crate::block_on(first_success(addrs.clone(), |_| async {
            Err::<(), _>(Error::Connect(ConnectError::HandshakeTimeout))
        }));
        assert_eq!(err, Err(Error::Connect(ConnectError::HandshakeTimeout)));
        let mut n = 0;
        let err = crate::block_on(first_success(addrs, |_| {
            n += 1;
            async { Err::<(), _>(Error::ShutDown) }
        }));
        assert_eq!((err, n), (Err(Error::ShutDown), 1));
    }

    #[test]
    fn a_host_name_resolves_off_the_caller_s_thread() {
        let addrs = crate::block_on(resolve_all("localhost:8511")).unwrap();
        assert!(!addrs.is_empty());
        assert!(addrs
            .iter()
            .all(|a| a.port() == 8511 && a.ip().is_loopback()));
        assert!(matches!(
            crate::block_on(resolve_all("no-such-host.invalid:1")),
            Err(Error::Resolve(_))
        ));
    }
}
