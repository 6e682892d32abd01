//! Secure links: TLS 1.3 with mutual authentication, driven without I/O.
//!
//! Each connection of a secure node runs a rustls connection object fed with the bytes the
//! runtime reads and drained into the bytes it writes, inside the core, so every runtime (and
//! the simulator and the fuzz targets) gets encryption unchanged. Both sides present a
//! certificate signed by the cluster's CA; a node's id is derived from its certificate's
//! public key ([`id_of_cert`]), so a Hello claiming another id is refused and ids cannot be
//! forged.
//!
//! The core stays pure: the cryptography (including its randomness) comes in as a rustls
//! [`CryptoProvider`], and wall-clock time for certificate validity as a [`TimeProvider`],
//! both chosen by whoever builds the [`Tls`] (a runtime gives ring and the system clock; a test
//! may give a fixed time).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::time_provider::TimeProvider;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

use crate::id::NodeId;

/// The name every node certificate carries (as a DNS subject alternative name) and every
/// dialer checks: the cluster's CA vouches for it; which node it is, the key tells.
pub const CLUSTER_NAME: &str = "chaski.node";

/// Why a TLS identity could not be set up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(pub String);

fn err(what: &str, e: impl fmt::Display) -> TlsError {
    TlsError(format!("{what}: {e}"))
}

/// What a node proves itself with and trusts, as PEM text: the cluster CA's certificate, the
/// node's certificate (signed by that CA) and the node's private key.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The cluster CA's certificate (PEM).
    pub ca: Vec<u8>,
    /// The node's certificate chain, its own first (PEM).
    pub cert: Vec<u8>,
    /// The node's private key (PEM, PKCS#8 or SEC1).
    pub key: Vec<u8>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsIdentity { .. }")
    }
}

/// A secure node's TLS setup: its configurations both ways, its proven id, and whom it lets
/// in. Built once, shared by every connection.
pub struct Tls {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    id: NodeId,
    /// The common name of the node's certificate.
    name: Option<String>,
    allow: BTreeSet<NodeId>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("id", &self.id)
            .field("allow", &self.allow)
            .finish()
    }
}

impl Tls {
    /// Sets up TLS 1.3 with mutual authentication against the CA of `identity`, with the
    /// given cryptography and clock.
    pub fn new(
        identity: &TlsIdentity,
        provider: Arc<CryptoProvider>,
        time: Arc<dyn TimeProvider>,
    ) -> Result<Tls, TlsError> {
        let mut roots = RootCertStore::empty();
        let mut cas = 0;
        for ca in CertificateDer::pem_slice_iter(&identity.ca) {
            roots
                .add(ca.map_err(|e| err("CA certificate", e))?)
                .map_err(|e| err("CA certificate", e))?;
            cas += 1;
        }
        if cas == 0 {
            return Err(TlsError("no CA certificate in the CA PEM".into()));
        }
        let roots = Arc::new(roots);
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&identity.cert)
            .collect::<Result<_, _>>()
            .map_err(|e| err("node certificate", e))?;
        let Some(own) = chain.first() else {
            return Err(TlsError("no certificate in the node's PEM".into()));
        };
        let id = id_of_cert(own)
            .ok_or_else(|| TlsError("the node certificate is not valid X.509".into()))?;
        let name = name_of_cert(own);
        let key = PrivateKeyDer::from_pem_slice(&identity.key).map_err(|e| err("node key", e))?;
        let versions = &[&rustls::version::TLS13];

        let server_verifier = Arc::new(NodeCerts(
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| err("verifier", e))?,
        ));
        let client = ClientConfig::builder_with_details(provider.clone(), time.clone())
            .with_protocol_versions(versions)
            .map_err(|e| err("client", e))?
            .dangerous()
            .with_custom_certificate_verifier(server_verifier)
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| err("node certificate or key", e))?;
        let client_verifier = Arc::new(NodeCerts(
            WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| err("verifier", e))?,
        ));
        let server = ServerConfig::builder_with_details(provider, time)
            .with_protocol_versions(versions)
            .map_err(|e| err("server", e))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain, key)
            .map_err(|e| err("node certificate or key", e))?;
        Ok(Tls {
            client: Arc::new(client),
            server: Arc::new(server),
            id,
            name,
            allow: BTreeSet::new(),
        })
    }

    /// The common name of the node's certificate (a node without a configured name takes it).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Lets in only these node ids (each derived from a certificate: see [`id_of_cert`]);
    /// empty, every holder of a certificate from the CA.
    #[must_use]
    pub fn allow(mut self, ids: impl IntoIterator<Item = NodeId>) -> Self {
        self.allow = ids.into_iter().collect();
        self
    }

    /// The node's id, derived from its certificate.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Whether a peer with this proven id may connect.
    pub fn allows(&self, peer: NodeId) -> bool {
        self.allow.is_empty() || self.allow.contains(&peer)
    }

    /// A connection's TLS session: a client for a dial, a server for an accept.
    pub(crate) fn session(&self, outbound: bool) -> Result<rustls::Connection, rustls::Error> {
        let mut session: rustls::Connection = if outbound {
            let name = ServerName::try_from(CLUSTER_NAME)
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            rustls::ClientConnection::new(self.client.clone(), name)?.into()
        } else {
            rustls::ServerConnection::new(self.server.clone())?.into()
        };
        // The node bounds what waits for a peer itself (`max_outbound`, the memory budget).
        session.set_buffer_limit(None);
        Ok(session)
    }
}

/// The WebPKI checks (chain to the cluster CA, validity, signatures; the server name on a
/// dial), then what a node certificate must also carry on both sides ([`check_node_cert`]):
/// without it, a certificate for something else the same CA signed would pass as a node's.
#[derive(Debug)]
struct NodeCerts<V: ?Sized>(Arc<V>);

fn refused(why: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(TlsError(why)),
    )))
}

impl rustls::client::danger::ServerCertVerifier for NodeCerts<WebPkiServerVerifier> {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let ok = self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        check_node_cert(end_entity).map_err(refused)?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl rustls::server::danger::ClientCertVerifier
    for NodeCerts<dyn rustls::server::danger::ClientCertVerifier>
{
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        let ok = self.0.verify_client_cert(end_entity, intermediates, now)?;
        check_node_cert(end_entity).map_err(refused)?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// What every node certificate carries besides the CA's signature (PROTOCOL §11): the DNS
/// name [`CLUSTER_NAME`] among its subject alternative names, and an extended key usage
/// listing both `serverAuth` and `clientAuth` (a node dials and accepts). The error says
/// which is missing.
pub fn check_node_cert(cert: &[u8]) -> Result<(), String> {
    // id-ce-subjectAltName 2.5.29.17, id-ce-extKeyUsage 2.5.29.37.
    const SAN: [u8; 3] = [0x55, 0x1d, 0x11];
    const EKU: [u8; 3] = [0x55, 0x1d, 0x25];
    // id-kp-serverAuth 1.3.6.1.5.5.7.3.1, id-kp-clientAuth 1.3.6.1.5.5.7.3.2.
    const SERVER_AUTH: [u8; 8] = [0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
    const CLIENT_AUTH: [u8; 8] = [0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
    let unreadable = || "a node certificate that cannot be read".to_string();
    let extensions = extensions(cert).ok_or_else(unreadable)?;
    let (mut named, mut server, mut client) = (false, false, false);
    for (oid, value) in extensions {
        if oid == SAN {
            let (_, mut names, _) = der(value).ok_or_else(unreadable)?;
            while !names.is_empty() {
                let (tag, name, rest) = der(names).ok_or_else(unreadable)?;
                names = rest;
                // dNSName: [2] IMPLICIT IA5String.
                named |= tag == 0x82 && name.eq_ignore_ascii_case(CLUSTER_NAME.as_bytes());
            }
        } else if oid == EKU {
            let (_, mut purposes, _) = der(value).ok_or_else(unreadable)?;
            while !purposes.is_empty() {
                let (_, purpose, rest) = der(purposes).ok_or_else(unreadable)?;
                purposes = rest;
                server |= purpose == SERVER_AUTH;
                client |= purpose == CLIENT_AUTH;
            }
        }
    }
    if !named {
        return Err(format!(
            "a node certificate must name {CLUSTER_NAME} (DNS subject alternative name)"
        ));
    }
    if !(server && client) {
        return Err(
            "a node certificate must allow serverAuth and clientAuth (extended key usage)".into(),
        );
    }
    Ok(())
}

/// An X.509 certificate's extensions: (OID, the extension's value), or `None` if the
/// certificate cannot be read.
fn extensions(cert: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    // Serial, signature algorithm, issuer, validity, subject, key, then optional unique ids
    // ([1], [2]) and the extensions ([3] EXPLICIT SEQUENCE OF Extension).
    let mut tbs = tbs_from(cert, 6)?;
    let mut out = Vec::new();
    while !tbs.is_empty() {
        let (tag, body, rest) = der(tbs)?;
        tbs = rest;
        if tag != 0xa3 {
            continue;
        }
        let (tag, mut list, _) = der(body)?;
        if tag != SEQUENCE {
            return None;
        }
        while !list.is_empty() {
            let (_, extension, rest) = der(list)?;
            list = rest;
            let (tag, oid, fields) = der(extension)?;
            if tag != 0x06 {
                return None;
            }
            // `critical` (a BOOLEAN) may come first; the value is an OCTET STRING.
            let (mut tag, mut value, more) = der(fields)?;
            if tag == 0x01 {
                (tag, value, _) = der(more)?;
            }
            if tag != 0x04 {
                return None;
            }
            out.push((oid, value));
        }
    }
    Some(out)
}

/// The node id a certificate proves: the first 128 bits of the SHA-256 of its public key
/// (the DER `SubjectPublicKeyInfo`). `None` if the certificate cannot be read.
pub fn id_of_cert(cert: &[u8]) -> Option<NodeId> {
    let spki = subject_public_key_info(cert)?;
    let digest = Sha256::digest(spki);
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    Some(NodeId(u128::from_be_bytes(first).max(1)))
}

/// One DER element: (tag, contents, rest of the input). Definite lengths up to 4 bytes only.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;

/// The fields of an X.509 certificate's `tbsCertificate` from `skip` on (0: serial number;
/// the optional version is passed over).
fn tbs_from(cert: &[u8], skip: usize) -> Option<&[u8]> {
    let (tag, certificate, _) = der(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = der(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    if tbs.first() == Some(&0xa0) {
        tbs = der(tbs)?.2;
    }
    for _ in 0..skip {
        tbs = der(tbs)?.2;
    }
    Some(tbs)
}

/// The common name (OID 2.5.4.3) of an X.509 certificate's subject, if it has one in UTF-8,
/// printable or IA5 text.
pub fn name_of_cert(cert: &[u8]) -> Option<String> {
    const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
    // Serial, signature algorithm, issuer, validity, then the subject.
    let (tag, mut rdns, _) = der(tbs_from(cert, 4)?)?;
    if tag != SEQUENCE {
        return None;
    }
    while !rdns.is_empty() {
        let (_, set, rest) = der(rdns)?;
        rdns = rest;
        let (_, attribute, _) = der(set)?;
        let (tag, oid, value) = der(attribute)?;
        if tag == 0x06 && oid == COMMON_NAME {
            let (tag, text, _) = der(value)?;
            if matches!(tag, 0x0c | 0x13 | 0x16) {
                return std::str::from_utf8(text).ok().map(str::to_string);
            }
        }
    }
    None
}

/// The whole DER `SubjectPublicKeyInfo` of an X.509 certificate.
fn subject_public_key_info(cert: &[u8]) -> Option<&[u8]> {
    // Serial, signature algorithm, issuer, validity, subject, then the key.
    let tbs = tbs_from(cert, 5)?;
    let (tag, _, rest) = der(tbs)?;
    if tag != SEQUENCE {
        return None;
    }
    Some(&tbs[..tbs.len() - rest.len()])
}

/// Whether the first byte a peer sent opens a TLS record (handshake, alert, change cipher
/// spec or application data); a Chaski frame opens with its length's high byte, 0 or 1.
pub(crate) fn is_tls_record(first: u8) -> bool {
    (20..=23).contains(&first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_walk_refuses_garbage_without_panicking() {
        assert_eq!(id_of_cert(&[]), None);
        assert_eq!(id_of_cert(&[0x30]), None);
        assert_eq!(id_of_cert(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(id_of_cert(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
        for len in 0..64u8 {
            let v: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37) ^ 0x30).collect();
            let _ = id_of_cert(&v);
            let _ = name_of_cert(&v);
        }
        assert_eq!(name_of_cert(&[0x30, 0x03, 0x30, 0x01, 0x00]), None);
    }
}
