//! `bro daemon logs [-f]`: the daemon's log and restate-server's, side by side.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::output;
use crate::paths::Paths;

/// Prints the last `lines` of both logs, each line prefixed with its source; with `follow`,
/// keeps printing what is appended (also across a rotation) until interrupted.
pub async fn run(paths: &Paths, lines: usize, follow: bool) -> Result<()> {
    let mut logs = [
        Log::new("daemon ", paths.daemon_log()),
        Log::new("restate", paths.restate_log()),
    ];
    if logs.iter().all(|l| !l.path.exists()) {
        anyhow::bail!(
            "no logs yet in {}; the daemon writes them once started with `bro daemon start`",
            paths.state_dir.display()
        );
    }
    for log in &mut logs {
        for l in log.tail(lines) {
            output::line(&format!("{} | {l}", log.name));
        }
    }
    if !follow {
        return Ok(());
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        for log in &mut logs {
            for l in log.new_lines() {
                output::line(&format!("{} | {l}", log.name));
            }
        }
    }
}

/// One followed log file.
struct Log {
    name: &'static str,
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl Log {
    fn new(name: &'static str, path: PathBuf) -> Self {
        Log {
            name,
            path,
            offset: 0,
            partial: String::new(),
        }
    }

    /// The last `n` lines; later reads start after them.
    fn tail(&mut self, n: usize) -> Vec<String> {
        let text = std::fs::read(&self.path).unwrap_or_default();
        self.offset = text.len() as u64;
        let text = String::from_utf8_lossy(&text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(n)..]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Complete lines appended since the last read (from the start after a rotation).
    fn new_lines(&mut self) -> Vec<String> {
        let len = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if len < self.offset {
            // Rotated (or truncated): start over, dropping the unfinished line.
            self.offset = 0;
            self.partial.clear();
        }
        let mut buf = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&self.path)
            && f.seek(SeekFrom::Start(self.offset)).is_ok()
            && f.read_to_end(&mut buf).is_ok()
        {
            self.offset += buf.len() as u64;
        }
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let mut out = Vec::new();
        while let Some(end) = self.partial.find('\n') {
            out.push(self.partial[..end].to_string());
            self.partial.drain(..=end);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_appends_and_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        let mut log = Log::new("x", path.clone());
        assert_eq!(log.tail(2), vec!["b", "c"]);
        assert!(log.new_lines().is_empty());
        std::fs::write(&path, "a\nb\nc\nd\npart").unwrap();
        assert_eq!(log.new_lines(), vec!["d"]);
        std::fs::write(&path, "new\n").unwrap();
        assert_eq!(log.new_lines(), vec!["new"]);
    }
}
