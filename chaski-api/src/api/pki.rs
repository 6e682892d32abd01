//! A cluster's certificate authority: create it, and issue node certificates signed by it
//! (what `chaski ca init` and `chaski cert issue` do). Keys are ECDSA P-256, written with
//! owner-only permissions.

use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use chaski_proto::tls::{id_of_cert, TlsError, TlsIdentity, CLUSTER_NAME};
use chaski_proto::NodeId;

use super::secure::{CA_FILE, CERT_FILE, KEY_FILE};
use crate::error::{Error, Result};

/// The CA's key, in its directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// The common name of every cluster CA (each is told apart by its key).
const CA_NAME: &str = "Chaski cluster CA";

fn tls_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Tls(TlsError(format!("{what}: {e}")))
}

fn at(t: SystemTime) -> Result<time::OffsetDateTime> {
    let secs = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(|e| tls_err("validity", e))
}

/// A cluster CA in memory: its certificate and key.
pub struct Ca {
    cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca { .. }")
    }
}

fn ca_params() -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(|e| tls_err("CA", e))?;
    p.distinguished_name.push(DnType::CommonName, CA_NAME);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

impl Ca {
    /// A new CA, valid for ten years from now.
    pub fn new() -> Result<Ca> {
        let key = KeyPair::generate().map_err(|e| tls_err("CA key", e))?;
        let mut p = ca_params()?;
        let now = SystemTime::now();
        p.not_before = at(now - Duration::from_secs(3600))?;
        p.not_after = at(now + Duration::from_secs(10 * 365 * 86_400))?;
        let cert = p.self_signed(&key).map_err(|e| tls_err("CA", e))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// The CA's certificate (PEM): what every node trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a node certificate for `name`, valid from `not_before` to `not_after`.
    pub fn issue_between(
        &self,
        name: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<(TlsIdentity, NodeId)> {
        // The issuer as rcgen signs with it: the CA's name and key.
        let issuer = ca_params()?
            .self_signed(&self.key)
            .map_err(|e| tls_err("CA", e))?;
        let key = KeyPair::generate().map_err(|e| tls_err("node key", e))?;
        let mut p = CertificateParams::new(vec![CLUSTER_NAME.to_string()])
            .map_err(|e| tls_err("node certificate", e))?;
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.not_before = at(not_before)?;
        p.not_after = at(not_after)?;
        let cert = p
            .signed_by(&key, &issuer, &self.key)
            .map_err(|e| tls_err("node certificate", e))?;
        let id = id_of_cert(cert.der()).ok_or_else(|| tls_err("node certificate", "unreadable"))?;
        Ok((
            TlsIdentity {
                ca: self.cert_pem.clone().into_bytes(),
                cert: cert.pem().into_bytes(),
                key: key.serialize_pem().into_bytes(),
            },
            id,
        ))
    }

    /// Issues a node certificate for `name`, valid for `days` from now.
    pub fn issue(&self, name: &str, days: u32) -> Result<(TlsIdentity, NodeId)> {
        let now = SystemTime::now();
        self.issue_between(
            name,
            now - Duration::from_secs(3600),
            now + Duration::from_secs(u64::from(days) * 86_400),
        )
    }

    /// Writes the CA to `dir` (`ca.pem`, and `ca.key` readable by its owner only); refuses to
    /// overwrite a CA already there.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| tls_err(&dir.display().to_string(), e))?;
        if dir.join(CA_KEY_FILE).exists() {
            return Err(tls_err(
                &dir.display().to_string(),
                "a CA is already there (remove it to make a new one)",
            ));
        }
        write_secret(&dir.join(CA_KEY_FILE), self.key.serialize_pem().as_bytes())?;
        write_public(&dir.join(CA_FILE), self.cert_pem.as_bytes())
    }

    /// The CA saved in `dir`.
    pub fn load(dir: &Path) -> Result<Ca> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .map_err(|e| tls_err(&dir.join(name).display().to_string(), e))
        };
        let key = KeyPair::from_pem(&read(CA_KEY_FILE)?).map_err(|e| tls_err("CA key", e))?;
        Ok(Ca {
            cert_pem: read(CA_FILE)?,
            key,
        })
    }
}

/// Writes a node's TLS directory (`ca.pem`, `node.pem`, and `node.key` readable by its owner
/// only), as [`crate::tls_from_dir`] reads it.
pub fn save_identity(identity: &TlsIdentity, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| tls_err(&dir.display().to_string(), e))?;
    write_secret(&dir.join(KEY_FILE), &identity.key)?;
    write_public(&dir.join(CERT_FILE), &identity.cert)?;
    write_public(&dir.join(CA_FILE), &identity.ca)
}

fn write_public(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(path, data).map_err(|e| tls_err(&path.display().to_string(), e))
}

/// Creates the file with owner-only permissions before anything is written to it.
fn write_secret(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| tls_err(&path.display().to_string(), e))?;
    f.write_all(data)
        .map_err(|e| tls_err(&path.display().to_string(), e))
}
