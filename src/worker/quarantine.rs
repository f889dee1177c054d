//! The quarantine dir (`<data>/quarantine/`, 0700): session dirs the reaper would not delete
//! for lack of evidence that their session is over (see [`super::evidence`]), each moved
//! here whole as `<id>-<UTC time>/` with a note saying why, and the list of Restate records
//! bro could not parse. `bro doctor` shows both; only a human deletes them.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The note written into each quarantined dir.
pub const NOTE_FILE: &str = "bro-quarantine.json";
/// The records bro could not parse, as the daemon last saw them.
pub const UNREADABLE_FILE: &str = "unreadable-records.json";

/// Why and when a dir was quarantined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    /// The dir's name under the sessions dir (a session or warm browser id).
    pub id: String,
    /// Where it was.
    pub from: PathBuf,
    pub reason: String,
    /// Unix time in milliseconds.
    pub at_ms: u64,
}

/// One quarantined dir: where it is now, and its note (when it can be read).
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub path: PathBuf,
    pub note: Option<Note>,
}

/// A state value bro could not parse, as the daemon reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreadable {
    /// What it is: `Session <id>` or `Warm <node>`.
    pub what: String,
    pub error: String,
}

impl Unreadable {
    /// The state of Restate object `service` keyed `key` that did not parse.
    pub fn state_of(service: &str, key: &str, error: impl Into<String>) -> Self {
        Unreadable {
            what: format!("{service} {key}"),
            error: error.into(),
        }
    }
}

/// Moves `dir` into `root` as `<id>-<UTC time>` (a `.N` suffix when that exists), writes its
/// note, and returns where it went. The move is a rename: `root` is on the same file system
/// as the sessions dir (both are in bro's data dir).
pub fn move_aside(dir: &Path, root: &Path, reason: &str) -> io::Result<PathBuf> {
    crate::paths::create_private_dir(root)?;
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(['-', ':'], "");
    let base = root.join(format!("{id}-{stamp}"));
    let mut target = base.clone();
    for n in 1.. {
        if !target.exists() {
            break;
        }
        target = PathBuf::from(format!("{}.{n}", base.display()));
    }
    std::fs::rename(dir, &target)?;
    crate::paths::create_private_dir(&target)?;
    let note = Note {
        id,
        from: dir.to_path_buf(),
        reason: reason.to_string(),
        at_ms: crate::now_ms(),
    };
    let bytes = serde_json::to_vec_pretty(&note).map_err(io::Error::other)?;
    std::fs::write(target.join(NOTE_FILE), bytes)?;
    Ok(target)
}

/// The quarantined dirs under `root`, oldest first.
pub fn list(root: &Path) -> Vec<Quarantined> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<Quarantined> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let path = e.path();
            let note = std::fs::read(path.join(NOTE_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            Quarantined { path, note }
        })
        .collect();
    out.sort_by_key(|q| (q.note.as_ref().map(|n| n.at_ms), q.path.clone()));
    out
}

/// Records what the daemon could not parse (the file goes when nothing is left).
pub fn write_unreadable(root: &Path, unreadable: &[Unreadable]) -> io::Result<()> {
    let file = root.join(UNREADABLE_FILE);
    if unreadable.is_empty() {
        return match std::fs::remove_file(&file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    crate::paths::create_private_dir(root)?;
    let bytes = serde_json::to_vec_pretty(unreadable).map_err(io::Error::other)?;
    let tmp = root.join(format!("{UNREADABLE_FILE}.new"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, file)
}

/// What the daemon last reported it could not parse.
pub fn read_unreadable(root: &Path) -> Vec<Unreadable> {
    std::fs::read(root.join(UNREADABLE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_dir_moves_aside_whole_with_its_note() {
        let tmp = tempfile::tempdir().unwrap();
        let id = "0b9c1c4e-7d2f-4a51-9b0e-3f1d2c4b5a69";
        let root = tmp.path().join("quarantine");
        for round in 0..2 {
            let dir = tmp.path().join("sessions").join(id);
            std::fs::create_dir_all(dir.join("files")).unwrap();
            std::fs::write(dir.join("files/report.pdf"), format!("pdf {round}")).unwrap();
            let moved = move_aside(&dir, &root, "no record").unwrap();
            assert!(!dir.exists());
            let name = moved.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with(&format!("{id}-")), "{name}");
            assert_eq!(
                std::fs::read_to_string(moved.join("files/report.pdf")).unwrap(),
                format!("pdf {round}")
            );
            let mode = std::fs::metadata(&moved).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700);
        }
        let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let listed = list(&root);
        assert_eq!(listed.len(), 2, "two moves in one second do not collide");
        let note = listed[0].note.as_ref().unwrap();
        assert_eq!(note.id, id);
        assert_eq!(note.reason, "no record");
        assert!(note.from.ends_with(id));
    }

    #[test]
    fn unreadable_records_are_kept_until_none_is_left() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("quarantine");
        assert!(read_unreadable(&root).is_empty());
        let bad = vec![Unreadable {
            what: "Session x".into(),
            error: "unknown variant".into(),
        }];
        write_unreadable(&root, &bad).unwrap();
        assert_eq!(read_unreadable(&root), bad);
        assert!(list(&root).is_empty(), "the file is not a quarantined dir");
        write_unreadable(&root, &[]).unwrap();
        assert!(read_unreadable(&root).is_empty());
        write_unreadable(&root, &[]).unwrap();
    }
}
