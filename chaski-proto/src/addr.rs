//! Address strings: `host:port`, `[v6]:port`, `Name@host:port` and `*Name@host:port`.
//!
//! ```
//! use chaski_proto::{parse_addr, Host};
//! let a = parse_addr("*Root@[::1]:8511").unwrap();
//! assert_eq!(a.name.as_deref(), Some("Root"));
//! assert!(a.paired);
//! assert_eq!(a.port, 8511);
//! assert!(matches!(a.host, Host::Ip(ip) if ip.is_loopback()));
//! assert!(parse_addr("localhost").is_err());
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

/// The host part of an address: an IP literal or a DNS name the runtime resolves.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
    /// A host name (letters, digits, `-` and `.`), resolved by the runtime.
    Name(String),
}

/// A parsed peer address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    /// The optional `Name@` prefix.
    pub name: Option<String>,
    /// Whether the address carried the leading `*` (a paired node, as Python prints it).
    pub paired: bool,
    /// The host.
    pub host: Host,
    /// The port.
    pub port: u16,
}

impl PeerAddr {
    /// The socket address when the host is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Name(_) => None,
        }
    }

    /// `host:port` with IPv6 bracketed, suitable for a resolver.
    pub fn host_port(&self) -> String {
        match &self.host {
            Host::Ip(ip) => SocketAddr::new(*ip, self.port).to_string(),
            Host::Name(n) => format!("{n}:{}", self.port),
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.paired {
            f.write_str("*")?;
        }
        if let Some(n) = &self.name {
            write!(f, "{n}@")?;
        }
        f.write_str(&self.host_port())
    }
}

/// Why an address string was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AddrError {
    /// No `:port` at the end.
    #[error("address {0:?} has no port (expected host:port, [v6]:port or Name@host:port)")]
    MissingPort(String),
    /// The port is not a number from 1 to 65535 (0 is allowed only where binding).
    #[error("address {0:?} has an invalid port")]
    BadPort(String),
    /// The host is neither an IP literal nor a valid host name.
    #[error("address {0:?} has an invalid host")]
    BadHost(String),
    /// The `Name@` prefix holds characters other than letters, digits, `_`, `-` and `.`.
    #[error("address {0:?} has an invalid node name")]
    BadName(String),
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Parses an address string (the whole string must match; nothing is searched).
pub fn parse_addr(s: &str) -> Result<PeerAddr, AddrError> {
    let err_src = || s.to_string();
    let trimmed = s.trim();
    let (paired, rest) = match trimmed.strip_prefix('*') {
        Some(r) => (true, r),
        None => (false, trimmed),
    };
    let (name, rest) = match rest.split_once('@') {
        Some((n, r)) => {
            if !valid_name(n) {
                return Err(AddrError::BadName(err_src()));
            }
            (Some(n.to_string()), r)
        }
        None if paired => return Err(AddrError::BadName(err_src())),
        None => (None, rest),
    };
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, p) = r.split_once("]:").ok_or_else(|| {
            if r.contains(']') {
                AddrError::MissingPort(err_src())
            } else {
                AddrError::BadHost(err_src())
            }
        })?;
        let ip: std::net::Ipv6Addr = h.parse().map_err(|_| AddrError::BadHost(err_src()))?;
        (Host::Ip(IpAddr::V6(ip)), p)
    } else {
        let (h, p) = rest
            .rsplit_once(':')
            .ok_or_else(|| AddrError::MissingPort(err_src()))?;
        if h.contains(':') {
            // An unbracketed IPv6 literal is ambiguous with its port.
            return Err(AddrError::BadHost(err_src()));
        }
        let host = if let Ok(ip) = h.parse::<std::net::Ipv4Addr>() {
            Host::Ip(IpAddr::V4(ip))
        } else if h.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Err(AddrError::BadHost(err_src()));
        } else if valid_hostname(h) {
            Host::Name(h.to_ascii_lowercase())
        } else {
            return Err(AddrError::BadHost(err_src()));
        };
        (host, p)
    };
    if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(AddrError::BadPort(err_src()));
    }
    let port: u16 = port.parse().map_err(|_| AddrError::BadPort(err_src()))?;
    Ok(PeerAddr {
        name,
        paired,
        host,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        for (s, port) in [
            ("127.0.0.1:80", 80),
            ("ChaskiStreamer@127.0.0.1:8511", 8511),
            ("*ChaskiStreamer@127.0.0.1:65433", 65433),
            ("ChaskiNode@[2001:db8:0:0:0:0:0:1]:9", 9),
            ("[::1]:8511", 8511),
            ("[2001:db8::1]:65432", 65432),
            ("localhost:80", 80),
            ("node-1.example.org:7", 7),
        ] {
            let a = parse_addr(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(a.port, port, "{s}");
        }
        let a = parse_addr("*N@[::1]:5").unwrap();
        assert_eq!(a.to_string(), "*N@[::1]:5");
        assert_eq!(a.socket_addr(), Some("[::1]:5".parse().unwrap()));
        assert_eq!(
            parse_addr("Localhost:1").unwrap().host,
            Host::Name("localhost".into())
        );
    }

    #[test]
    fn refuses_garbage_with_clear_errors() {
        assert!(matches!(
            parse_addr("localhost"),
            Err(AddrError::MissingPort(_))
        ));
        assert!(matches!(
            parse_addr("999.1.1.1:5"),
            Err(AddrError::BadHost(_))
        ));
        assert!(matches!(
            parse_addr("ChaskiNode@::1:8511"),
            Err(AddrError::BadHost(_))
        ));
        assert!(matches!(
            parse_addr("1.2.3.4:99999"),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(parse_addr("1.2.3.4:"), Err(AddrError::BadPort(_))));
        assert!(matches!(
            parse_addr("1.2.3.4:+5"),
            Err(AddrError::BadPort(_))
        ));
        assert!(matches!(
            parse_addr("a b@1.2.3.4:5"),
            Err(AddrError::BadName(_))
        ));
        assert!(matches!(
            parse_addr("*1.2.3.4:5"),
            Err(AddrError::BadName(_))
        ));
        assert!(matches!(parse_addr("[::1:5"), Err(AddrError::BadHost(_))));
        assert!(matches!(
            parse_addr("[::1]"),
            Err(AddrError::MissingPort(_))
        ));
        assert!(matches!(parse_addr("-bad-:5"), Err(AddrError::BadHost(_))));
        assert!(parse_addr("").is_err());
    }
}
