//! `o` in the dashboard: the system's opener (`xdg-open`, `open`) shows a session's viewer in
//! the user's browser. Spawned detached, without a shell, its output discarded, so it can
//! neither block nor draw over the dashboard; where there is none, the URL is shown instead.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The openers tried, in order: freedesktop's, then macOS's.
const OPENERS: [&str; 2] = ["xdg-open", "open"];

/// Opens `url` with the system opener and says what happened, for the status line.
pub fn open(url: &str) -> String {
    let Some(opener) = std::env::var_os("PATH").and_then(|path| find_opener(&path)) else {
        return format!("no xdg-open or open on PATH; the viewer is at {url}");
    };
    match spawn(&opener, url) {
        Ok(()) => format!("opened {url}"),
        Err(e) => format!("{} failed ({e}); the viewer is at {url}", opener.display()),
    }
}

/// The first opener found in the directories of `path` (a `PATH` value).
pub fn find_opener(path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .find_map(|dir| {
            OPENERS
                .iter()
                .map(|name| dir.join(name))
                .find(|p| is_executable(p))
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Starts the opener in its own process group (the terminal's ctrl-c is not its), with no
/// stdio, and reaps it from a thread so it leaves no zombie, however long it runs.
fn spawn(opener: &Path, url: &str) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(opener)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()?;
    std::thread::spawn(move || child.wait());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_an_executable_opener_on_the_path_only() {
        let dir = tempfile::tempdir().unwrap();
        let (empty, tools) = (dir.path().join("empty"), dir.path().join("tools"));
        std::fs::create_dir_all(&empty).unwrap();
        std::fs::create_dir_all(&tools).unwrap();
        // Not executable: skipped.
        std::fs::write(tools.join("xdg-open"), "").unwrap();
        let path = std::env::join_paths([&empty, &tools]).unwrap();
        assert_eq!(find_opener(&path), None);
        std::fs::write(tools.join("open"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            tools.join("open"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        assert_eq!(find_opener(&path), Some(tools.join("open")));
        // Relative entries (`.`, empty) are never searched.
        assert_eq!(find_opener(OsStr::new(".:")), None);
    }

    #[test]
    fn the_opener_gets_the_url_as_one_argument() {
        let dir = tempfile::tempdir().unwrap();
        let (opener, out) = (dir.path().join("xdg-open"), dir.path().join("got"));
        std::fs::write(
            &opener,
            format!("#!/bin/sh\nprintf '%s' \"$1\" > {}\n", out.display()),
        )
        .unwrap();
        std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let url = "http://127.0.0.1:1/v1/sessions/x/viewer?a=1&b=$(true)";
        spawn(&opener, url).unwrap();
        let mut got = String::new();
        for _ in 0..100 {
            got = std::fs::read_to_string(&out).unwrap_or_default();
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(got, url);
    }
}
