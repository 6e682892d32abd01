//! What the short-lived client subcommands (`pub`, `status`, `ping`, `edges`, `call`) and
//! every printing subcommand share: addresses checked before anything runs, where a client
//! listens, and output that survives a closed pipe.

use std::fmt::Display;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use crate::failure::{Failure, USAGE};

/// `addr` as given, once its form is valid (host:port, `[v6]:port`, Name@host:port): a malformed
/// address is a usage error (exit 2) at once, never retried.
pub fn target(what: &str, addr: &str) -> Result<String, Failure> {
    chaski_proto::parse_addr(addr).map_err(|e| Failure {
        code: USAGE,
        message: format!("{what}: {e}"),
    })?;
    Ok(addr.to_string())
}

/// Where a short-lived client listens to reach `target`: `bind` when given (`--bind`,
/// `CHASKI_BIND`), else the one local address the system routes to the target from (a
/// loopback target: loopback), so a client does not listen on every interface. (A server
/// found through the target on another host dials the client back there.)
pub async fn bind(target: &str, bind: Option<&str>) -> Result<String, Failure> {
    if let Some(b) = bind {
        return Ok(b.to_string());
    }
    let to = chaski_api::resolve_all(target).await?;
    let to = to[0];
    Ok(SocketAddr::new(local_ip_towards(to), 0).to_string())
}

/// The local address packets to `to` leave from (no packet is sent: a UDP socket is only
/// connected), or loopback if none can be found.
fn local_ip_towards(to: SocketAddr) -> IpAddr {
    let (any, fallback): (IpAddr, IpAddr) = if to.is_ipv6() {
        (
            std::net::Ipv6Addr::UNSPECIFIED.into(),
            std::net::Ipv6Addr::LOCALHOST.into(),
        )
    } else {
        (
            std::net::Ipv4Addr::UNSPECIFIED.into(),
            std::net::Ipv4Addr::LOCALHOST.into(),
        )
    };
    UdpSocket::bind(SocketAddr::new(any, 0))
        .and_then(|s| {
            s.connect(to)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(fallback)
}

/// Prints one line on standard output, for commands with nothing to wind down (the demo, the
/// benchmark, certificates): once nobody reads it, the process ends quietly (exit 0).
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {
        if $crate::client::line(format_args!($($t)*)).is_err() {
            std::process::exit(0)
        }
    };
}

/// Writes one line on standard error (reports, progress), ignoring a closed or broken stream:
/// a node does not stop, let alone panic, because nobody reads its reports.
#[macro_export]
macro_rules! note {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

/// Standard output closed under us (`chaski sub ... | head`): the command stops quietly.
#[derive(Debug)]
pub struct Closed;

impl From<Closed> for Failure {
    fn from(_: Closed) -> Self {
        Failure {
            code: crate::failure::QUIET_EXIT,
            message: String::new(),
        }
    }
}

/// Prints one line on standard output; `Err(Closed)` once nobody reads it any more (a closed
/// pipe is the reader saying "enough", not a failure).
pub fn line(text: impl Display) -> Result<(), Closed> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Closed),
        // Any other failure to write is no reason to stop a node either.
        Err(_) => Ok(()),
    }
}
