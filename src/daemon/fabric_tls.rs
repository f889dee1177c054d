//! Mutual TLS for Restate's fabric (restate-server ↔ restate-server), from the cluster
//! secret alone. Restate 1.7 offers fabric TLS (`[tls]`: a certificate, its key, the CAs
//! that sign peers, client certificates required); bro makes the material itself so a
//! cluster needs nothing but its secret:
//!
//! - the CA's Ed25519 key is derived from the secret, so every node makes the same CA (same
//!   subject, same key: what a peer's certificate is checked against) without sharing a
//!   file;
//! - each node signs a certificate of its own at every start, for its `bind` address, with
//!   a fresh key, valid for both ends of a connection.
//!
//! A process without the secret cannot get a certificate the fabric accepts, so it can
//! neither join the cluster nor read or drive it through the fabric port.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::node::secret::ClusterSecret;

/// What the CA key is derived from the secret for.
const CA_LABEL: &str = "restate fabric ca";

/// How long a node's certificate is valid.
const LEAF_VALIDITY: time::Duration = time::Duration::days(7);

/// How often a running node issues itself a new certificate.
pub const REISSUE_EVERY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The files restate-server's `[tls]` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabricTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: PathBuf,
}

/// Writes the CA certificate and this node's certificate and key into `dir` (made 0700;
/// files 0600), for node `node` at `bind` of the cluster named `cluster`.
pub fn write(
    dir: &Path,
    secret: &ClusterSecret,
    cluster: &str,
    node: &str,
    bind: IpAddr,
) -> Result<FabricTls, String> {
    let (ca_pem, cert_pem, key_pem) = material(secret, cluster, node, bind)?;
    crate::paths::create_private_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let files = FabricTls {
        cert_file: dir.join("node.pem"),
        key_file: dir.join("node.key"),
        ca_file: dir.join("ca.pem"),
    };
    for (path, text) in [
        (&files.ca_file, &ca_pem),
        (&files.cert_file, &cert_pem),
        (&files.key_file, &key_pem),
    ] {
        crate::paths::replace_private(path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(files)
}

/// The CA certificate, this node's certificate and its key, as PEM.
fn material(
    secret: &ClusterSecret,
    cluster: &str,
    node: &str,
    bind: IpAddr,
) -> Result<(String, String, String), String> {
    fn err(what: &'static str) -> impl Fn(rcgen::Error) -> String {
        move |e| format!("making the fabric's {what}: {e}")
    }
    let seed = secret.derive(CA_LABEL);
    let der = SigningKey::from_bytes(&seed)
        .to_pkcs8_der()
        .map_err(|e| format!("making the fabric's CA key: {e}"))?;
    let ca_key = KeyPair::try_from(der.as_bytes()).map_err(err("CA key"))?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name(&format!("bro cluster {cluster} fabric CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(err("CA certificate"))?;
    let issuer = Issuer::new(ca, ca_key);

    let key = node_key()?;
    let mut leaf = CertificateParams::default();
    // Short-lived: the daemon issues a new one every day (restate-server reads its files
    // again every hour), so a leaked node key stops working within the week.
    let now = time::OffsetDateTime::now_utc();
    leaf.not_before = now - time::Duration::hours(1);
    leaf.not_after = now + LEAF_VALIDITY;
    leaf.distinguished_name = name(node);
    leaf.subject_alt_names = vec![SanType::IpAddress(bind)];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = leaf
        .signed_by(&key, &issuer)
        .map_err(err("node certificate"))?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

/// A fresh Ed25519 key, kept as PKCS#8 v1 (the private key alone): rustls reads it, and so
/// do OpenSSL 3.0's tools (`curl`, `openssl s_client`, for checking a fabric by hand), which
/// do not read the v2 form (with the public key) that rcgen writes.
fn node_key() -> Result<KeyPair, String> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("making the fabric's node key: {e}"))?;
    let v1 = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: seed,
        public_key: None,
    };
    let der = v1
        .to_pkcs8_der()
        .map_err(|e| format!("making the fabric's node key: {e}"))?;
    KeyPair::try_from(der.as_bytes()).map_err(|e| format!("making the fabric's node key: {e}"))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> ClusterSecret {
        ClusterSecret::from_bytes(vec![byte; 40]).unwrap()
    }

    #[test]
    fn every_node_makes_the_same_ca_key_and_a_certificate_of_its_own() {
        let one = material(&secret(1), "bro", "n1", [10, 0, 0, 1].into()).unwrap();
        let two = material(&secret(1), "bro", "n2", [10, 0, 0, 2].into()).unwrap();
        let other = material(&secret(2), "bro", "n1", [10, 0, 0, 1].into()).unwrap();
        // Same secret: same CA key (a peer's certificate verifies against either copy).
        let ca_key = |s: &ClusterSecret| {
            SigningKey::from_bytes(&s.derive(CA_LABEL))
                .verifying_key()
                .to_bytes()
        };
        assert_ne!(ca_key(&secret(1)), ca_key(&secret(2)));
        // Every node makes the very same CA certificate from the secret.
        assert_eq!(one.0, two.0);
        assert!(one.0.contains("BEGIN CERTIFICATE") && one.2.contains("PRIVATE KEY"));
        assert_ne!(one.1, two.1);
        assert_ne!(one.2, two.2);
        assert_ne!(one.0, other.0);
        let dir = tempfile::tempdir().unwrap();
        let files = write(
            &dir.path().join("fabric"),
            &secret(1),
            "bro",
            "n1",
            [10, 0, 0, 1].into(),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        for f in [&files.cert_file, &files.key_file, &files.ca_file] {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", f.display());
        }
    }
}
