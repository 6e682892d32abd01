//! Loading a node's TLS identity, with ring's cryptography and the system clock (what the
//! pure core takes as inputs: see [`chaski_proto::tls`]).

use std::path::Path;
use std::sync::Arc;

use chaski_proto::tls::{Tls, TlsError, TlsIdentity};

use crate::error::{Error, Result};

/// The files of a node's TLS directory (as `chaski cert issue` writes it).
pub const CA_FILE: &str = "ca.pem";
/// The node's certificate, in its TLS directory.
pub const CERT_FILE: &str = "node.pem";
/// The node's private key, in its TLS directory.
pub const KEY_FILE: &str = "node.key";

/// A node's TLS setup from PEM text, with ring's cryptography and the system clock.
///
/// ```no_run
/// # fn f(identity: chaski_proto::tls::TlsIdentity) -> chaski_api::Result<()> {
/// let config = chaski_api::Config::default().secure(chaski_api::tls(&identity)?);
/// # Ok(()) }
/// ```
pub fn tls(identity: &TlsIdentity) -> Result<Tls> {
    use rustls::crypto::ring::{cipher_suite, default_provider};
    // AES-128-GCM first: as strong as the link needs, and cheaper than AES-256.
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..default_provider()
    });
    let clock = Arc::new(rustls::time_provider::DefaultTimeProvider);
    Ok(Tls::new(identity, provider, clock)?)
}

/// A node's TLS setup from a directory holding `ca.pem`, `node.pem` and `node.key`.
pub fn tls_from_dir(dir: impl AsRef<Path>) -> Result<Tls> {
    let dir = dir.as_ref();
    let read = |name: &str| {
        std::fs::read(dir.join(name))
            .map_err(|e| Error::Tls(TlsError(format!("{}: {e}", dir.join(name).display()))))
    };
    tls(&TlsIdentity {
        ca: read(CA_FILE)?,
        cert: read(CERT_FILE)?,
        key: read(KEY_FILE)?,
    })
}
