//! The cluster secret: one file, the same on every node, mode 0600. Node-to-node calls are
//! signed with it, and the key pair every node's restate-server signs SDK calls with is
//! derived from it, so any node's daemon accepts any node's restate-server and nothing else.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Fewest bytes a secret file may hold (after trimming a final newline).
pub const MIN_SECRET_LEN: usize = 32;
/// Most bytes read from a secret file.
pub const MAX_SECRET_LEN: usize = 4096;

/// The cluster secret, never shown in `Debug` output.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// Reads the secret file at `path`: a regular file, readable by its owner only, holding
    /// [`MIN_SECRET_LEN`] to [`MAX_SECRET_LEN`] bytes (a final newline is not counted).
    pub fn load(path: &Path) -> Result<ClusterSecret, String> {
        let shown = path.display();
        let meta = std::fs::symlink_metadata(path)
            .map_err(|e| format!("cluster secret_file {shown}: {e}"))?;
        if !meta.file_type().is_file() {
            return Err(format!("cluster secret_file {shown} is not a regular file"));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(format!(
                "cluster secret_file {shown} is readable by others (mode {:o}); run chmod 600 {shown}",
                meta.mode() & 0o777
            ));
        }
        if meta.len() > MAX_SECRET_LEN as u64 {
            return Err(format!(
                "cluster secret_file {shown} is longer than {MAX_SECRET_LEN} bytes"
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| format!("cluster secret_file {shown}: {e}"))?;
        ClusterSecret::from_bytes(bytes).map_err(|e| format!("cluster secret_file {shown}: {e}"))
    }

    /// The secret from its bytes (a final newline trimmed).
    pub fn from_bytes(mut bytes: Vec<u8>) -> Result<ClusterSecret, String> {
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        if bytes.len() < MIN_SECRET_LEN {
            return Err(format!(
                "a cluster secret needs at least {MIN_SECRET_LEN} bytes (it has {}); make one \
                 with: head -c 48 /dev/urandom | base64 > FILE && chmod 600 FILE",
                bytes.len()
            ));
        }
        Ok(ClusterSecret(bytes))
    }

    /// HMAC-SHA256 of `message` under the secret.
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// A 32-byte key for one purpose, derived from the secret (`label` names the purpose).
    pub fn derive(&self, label: &str) -> [u8; 32] {
        self.mac(format!("bro derive {label}").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_file_must_be_private_and_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "x".repeat(40) + "\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            ClusterSecret::load(&path)
                .unwrap_err()
                .contains("chmod 600")
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let secret = ClusterSecret::load(&path).unwrap();
        assert_eq!(secret.0.len(), 40);
        assert_ne!(secret.derive("a"), secret.derive("b"));
        std::fs::write(&path, "short").unwrap();
        assert!(
            ClusterSecret::load(&path)
                .unwrap_err()
                .contains("at least 32")
        );
        assert!(ClusterSecret::load(&dir.path().join("none")).is_err());
        assert_eq!(format!("{secret:?}"), "ClusterSecret(..)");
    }
}
