//! bro's request-identity key pair: restate-server signs every call it makes to the SDK
//! endpoint with the private key, and the endpoint refuses any request that does not carry a
//! valid signature for the public key (Restate's request identity, scheme v1: an Ed25519
//! JWT whose audience is the request path and which expires within a minute).
//!
//! The SDK endpoint has to listen on TCP (restate-server cannot call a `unix:` deployment),
//! so without this any local process, or a web page through a browser, could invoke
//! `Session/…/release` or `WarmLauncher/launch` on it directly.
//!
//! The private key is `identity.pem` (PKCS#8, 0600) in bro's 0700 restate dir; it is made
//! once and kept, so an adopted restate-server and a restarted daemon agree. The public key
//! is derived from it at every start, never stored beside it, so the two cannot drift.
//!
//! In a cluster every node's restate-server must sign with the same key, since any node's
//! daemon may be called by any node's restate-server: the key is then derived from the
//! cluster secret ([`Identity::derived`]) and written to `cluster-identity.pem` at every
//! start, leaving a single machine's `identity.pem` as it was.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};

/// Prefix of Restate's text form of a v1 identity public key.
const PUBLIC_KEY_PREFIX: &str = "publickeyv1_";

/// The key pair's private half on disk and its public half in Restate's text form.
#[derive(Debug, Clone)]
pub struct Identity {
    /// PKCS#8 PEM file restate-server signs with (`request-identity-private-key-pem-file`).
    pub private_key_file: PathBuf,
    /// `publickeyv1_<base58>`: what the SDK endpoint verifies against.
    pub public_key: String,
}

/// Why the key pair could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0} is not an Ed25519 private key in PKCS#8 PEM ({1}); move it away and bro makes a new one"
    )]
    Unreadable(PathBuf, String),
    #[error("no randomness from the OS for a new key: {0}")]
    Random(String),
}

impl Identity {
    /// Reads the key pair in `dir`, or makes one (0600) when there is none.
    pub fn load_or_create(dir: &Path) -> Result<Identity, IdentityError> {
        let path = dir.join("identity.pem");
        let key = match std::fs::read_to_string(&path) {
            Ok(pem) => SigningKey::from_pkcs8_pem(&pem)
                .map_err(|e| IdentityError::Unreadable(path.clone(), e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(&path)?,
            Err(source) => {
                return Err(IdentityError::Io {
                    what: "reading",
                    path,
                    source,
                });
            }
        };
        restricted(path, &key)
    }
}

/// The identity of `key`, kept in `path`, whose mode is tightened to 0600 on every start: a
/// key another user can read lets them sign calls.
fn restricted(path: PathBuf, key: &SigningKey) -> Result<Identity, IdentityError> {
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        IdentityError::Io {
            what: "restricting",
            path: path.clone(),
            source,
        }
    })?;
    Ok(Identity {
        private_key_file: path,
        public_key: public_key_text(key),
    })
}

impl Identity {
    /// The key pair whose private key is `seed` (derived from the cluster secret, so the same
    /// on every node), written to `cluster-identity.pem` (0600) in `dir` unless that file
    /// already holds it.
    pub fn derived(dir: &Path, seed: &[u8; 32]) -> Result<Identity, IdentityError> {
        let path = dir.join("cluster-identity.pem");
        let key = SigningKey::from_bytes(seed);
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| IdentityError::Unreadable(path.clone(), e.to_string()))?;
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() != Some(pem.as_str()) {
            write_replacing(&path, pem.as_bytes())?;
        }
        restricted(path, &key)
    }
}

/// Writes `bytes` to `path` with mode 0600 from the first byte, whole or not at all.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    crate::paths::replace_private(path, bytes).map_err(|source| IdentityError::Io {
        what: "writing",
        path: path.to_path_buf(),
        source,
    })
}

/// Makes a new key and writes it with mode 0600 from the first byte (never readable by
/// others, not even for a moment), whole or not at all: into a temp file first, synced, then
/// linked into place, which fails if a key is there already (so a crash mid-write leaves no
/// truncated key, and two starts cannot mix two keys).
fn create(path: &Path) -> Result<SigningKey, IdentityError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| IdentityError::Unreadable(path.to_path_buf(), e.to_string()))?;
    let io = |what, at: &Path| {
        let at = at.to_path_buf();
        move |source| IdentityError::Io {
            what,
            path: at,
            source,
        }
    };
    let tmp = path.with_extension(format!("pem.new-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written =
        crate::paths::write_new_private(&tmp, pem.as_bytes()).map_err(io("writing", &tmp));
    let linked =
        written.and_then(|()| std::fs::hard_link(&tmp, path).map_err(io("creating", path)));
    let _ = std::fs::remove_file(&tmp);
    linked?;
    Ok(key)
}

/// Restate's text form of the public key: the prefix and the 32 key bytes in base58.
fn public_key_text(key: &SigningKey) -> String {
    let public = key.verifying_key().to_bytes();
    format!("{PUBLIC_KEY_PREFIX}{}", bs58::encode(public).into_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(&first.private_key_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(first.public_key.starts_with(PUBLIC_KEY_PREFIX));
        let again = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_key, again.public_key);
        // The SDK accepts the text form.
        restate_sdk::endpoint::Endpoint::builder()
            .identity_key(&first.public_key)
            .unwrap();
    }

    /// Two nodes given the same seed sign with the same key, and neither touches the single
    /// machine's `identity.pem`.
    #[test]
    fn a_derived_key_is_the_same_on_every_node_and_private() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let own = Identity::load_or_create(a.path()).unwrap();
        let seed = [7u8; 32];
        let first = Identity::derived(a.path(), &seed).unwrap();
        let second = Identity::derived(b.path(), &seed).unwrap();
        assert_eq!(first.public_key, second.public_key);
        assert_ne!(first.public_key, own.public_key);
        assert_eq!(
            std::fs::read(&first.private_key_file).unwrap(),
            std::fs::read(&second.private_key_file).unwrap()
        );
        let mode = std::fs::metadata(&first.private_key_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            Identity::load_or_create(a.path()).unwrap().public_key,
            own.public_key
        );
        // A file holding another key is replaced; the PEM is what restate-server reads.
        let other = Identity::derived(a.path(), &[8u8; 32]).unwrap();
        assert_ne!(other.public_key, first.public_key);
        let pem = std::fs::read_to_string(&other.private_key_file).unwrap();
        let key = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(public_key_text(&key), other.public_key);
        restate_sdk::endpoint::Endpoint::builder()
            .identity_key(&other.public_key)
            .unwrap();
    }

    #[test]
    fn a_broken_key_file_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("identity.pem"), "not a key").unwrap();
        let err = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("move it away"), "{err}");
    }
}
