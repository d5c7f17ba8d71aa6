//! Cluster TLS, sans-I/O: the cluster CA, node certificates, and the rustls configurations
//! with which nodes admit only each other.
//!
//! A node certificate is signed by the cluster CA and names its node id twice: the DNS name
//! `node-<id>.rill.internal` (what rustls checks against the name a dialler expects) and the
//! URI `rill://node/<id>`. A dialling node verifies the server's chain against the CA and its
//! DNS name against the id it dialled; an accepting node requires a client certificate chained
//! to the CA and then checks, with [`certificate_names_node`], that it names the id the peer
//! claims. TLS 1.3 only, 0-RTT off (nothing can be replayed), ALPN [`ALPN`]. Keys are ECDSA
//! P-256 (rcgen, ring). The caller reads and writes the PEM files.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The ALPN protocol of node-to-node connections.
pub const ALPN: &[u8] = b"rill-cluster/1";

/// Why a certificate could not be made or a configuration built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused to make or sign a certificate.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file holds no usable certificate or key.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("tls configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct Pem {
    /// The certificate (PEM).
    pub cert: String,
    /// The private key (PKCS#8 PEM). Keep it private.
    pub key: String,
}

/// The DNS name a node certificate carries for `node_id`.
pub fn node_dns_name(node_id: u32) -> String {
    format!("node-{node_id}.rill.internal")
}

/// The URI a node certificate carries for `node_id`.
pub fn node_uri(node_id: u32) -> String {
    format!("rill://node/{node_id}")
}

/// A new cluster CA, self-signed, named after `cluster`.
pub fn generate_ca(cluster: &str) -> Result<Pem, TlsError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Rill");
    dn.push(DnType::CommonName, format!("Rill cluster CA {cluster}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_after = rcgen::date_time_ymd(2126, 1, 1);
    let cert = params.self_signed(&key)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

/// A certificate for node `node_id`, signed by `ca`, for both ends of a connection.
pub fn issue_node_certificate(ca: &Pem, node_id: u32) -> Result<Pem, TlsError> {
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let ca_params = CertificateParams::from_ca_cert_pem(&ca.cert)?;
    // Re-signing the CA's own parameters with its key yields an issuer with the same name and
    // key as the CA on disk, so what it signs chains to that certificate.
    let issuer = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![node_dns_name(node_id)])?;
    params.subject_alt_names.push(SanType::URI(node_uri(node_id).try_into()?));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Rill");
    dn.push(DnType::CommonName, format!("rill node {node_id}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.not_after = rcgen::date_time_ymd(2126, 1, 1);
    let cert = params.signed_by(&key, &issuer, &ca_key)?;
    Ok(Pem { cert: cert.pem(), key: key.serialize_pem() })
}

fn certs(what: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { what, reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { what, reason: "no certificate".into() });
    }
    Ok(certs)
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| TlsError::Pem { what: "node key", reason: e.to_string() })
}

fn roots(ca_cert: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs("cluster CA certificate", ca_cert)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The configuration of the accepting side: presents `node`'s certificate and requires a client
/// certificate chained to the cluster CA (check its node id with [`certificate_names_node`]).
pub fn server_config(ca_cert: &str, node: &Pem) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_cert)?), provider()).build()?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs("node certificate", &node.cert)?, key(&node.key)?)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

/// The configuration of the dialling side: presents `node`'s certificate and accepts a server
/// chained to the cluster CA whose certificate names the node dialled (connect with
/// [`server_name`] of that node).
pub fn client_config(ca_cert: &str, node: &Pem) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_cert)?)
        .with_client_auth_cert(certs("node certificate", &node.cert)?, key(&node.key)?)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    config.enable_early_data = false;
    Ok(Arc::new(config))
}

/// The name to dial node `node_id` by.
pub fn server_name(node_id: u32) -> ServerName<'static> {
    ServerName::try_from(node_dns_name(node_id)).expect("node DNS names are valid")
}

/// The node id a PEM certificate names (its first certificate), if it names exactly one.
pub fn pem_node_id(pem: &str) -> Option<u32> {
    let certs = certs("certificate", pem).ok()?;
    certificate_node_id(certs.first()?)
}

/// Whether `cert` (a peer's end-entity certificate, already verified against the CA by the
/// handshake) names node `node_id`.
pub fn certificate_names_node(cert: &CertificateDer<'_>, node_id: u32) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(cert) else { return false };
    cert.verify_is_valid_for_subject_name(&server_name(node_id)).is_ok()
}

/// The node id a peer's certificate (already verified against the CA by the handshake) names:
/// its DNS name `node-<id>.rill.internal`, confirmed by the same check a dialler makes.
/// `None` if it names no node, or more than one.
pub fn certificate_node_id(cert: &CertificateDer<'_>) -> Option<u32> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let san = parsed.subject_alternative_name().ok()??;
    let mut ids = san.value.general_names.iter().filter_map(|name| match name {
        x509_parser::extensions::GeneralName::DNSName(dns) => {
            dns.strip_prefix("node-")?.strip_suffix(".rill.internal")?.parse::<u32>().ok()
        }
        _ => None,
    });
    let id = ids.next()?;
    if ids.next().is_some() {
        return None;
    }
    certificate_names_node(cert, id).then_some(id)
}

/// The cluster's id, as Kafka writes cluster ids (16 bytes, URL-safe base64 without padding):
/// the first 16 bytes of the SHA-256 of the cluster CA's certificate, so every node holding the
/// same CA names the same cluster, and no two CAs do.
pub fn cluster_id(ca_cert: &str) -> Result<String, TlsError> {
    let ca = certs("CA", ca_cert)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, ca[0].as_ref());
    Ok(kafka_id(&digest.as_ref()[..16]))
}

/// A new random cluster id (a single node's), in the same form as [`cluster_id`].
pub fn random_cluster_id() -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the operating system's random source works");
    kafka_id(&bytes)
}

fn kafka_id(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
