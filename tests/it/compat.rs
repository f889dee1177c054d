//! The real npm clients (steel-sdk, playwright-core, puppeteer-core, pinned in
//! `tests/compat/package-lock.json`) against a daemon with an API key.

use std::path::Path;
use std::process::Command;

use crate::helper::{TestDaemon, text};

static NPM_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Installs the pinned clients once (never a browser download).
pub(crate) fn npm_ci(dir: &Path) {
    let _guard = NPM_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if dir.join("node_modules/steel-sdk").exists()
        && dir.join("node_modules/playwright-core").exists()
    {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-fund", "--no-audit", "--ignore-scripts"])
        .current_dir(dir)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .env("PUPPETEER_SKIP_DOWNLOAD", "1")
        .output()
        .expect("npm is needed for the compatibility tests (apt-get install npm)");
    assert!(
        out.status.success(),
        "npm ci in {} failed:\n{}",
        dir.display(),
        text(&out)
    );
}

#[test]
fn python_steel_sdk_creates_lists_and_releases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    let python = crate::helper::python_venv();
    let d = TestDaemon::start_with(&["--api-key", "py-secret-0123456789"]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let out = Command::new(python)
        .arg("clients.py")
        .arg(&api)
        .arg("py-secret-0123456789")
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "clients.py failed:\n{}", text(&out));
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(facts["status"], "released");
    d.stop();
}

#[test]
fn steel_sdk_playwright_and_puppeteer_work_unchanged() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    npm_ci(&dir);
    let d = TestDaemon::start_with(&["--api-key", "it-secret-0123456789"]);
    let api = d.status["api_url"].as_str().unwrap().to_string();

    // Without the key the TCP API refuses; /v1/health stays open.
    assert_eq!(crate::helper::http(&api, "GET", "/v1/sessions", "").0, 401);
    assert_eq!(crate::helper::http(&api, "GET", "/v1/health", "").0, 200);

    let out = Command::new("node")
        .arg("clients.mjs")
        .arg(&api)
        .arg("it-secret-0123456789")
        .current_dir(&dir)
        .output()
        .expect("node is needed for the compatibility tests");
    assert!(out.status.success(), "clients.mjs failed:\n{}", text(&out));
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(facts["title"], "bro compat");
    assert_eq!(facts["restoredCookie"], "who=session-a");
    assert_eq!(facts["releasedStatus"], "released");
    d.stop();
}

/// The README's `<!-- example: NAME -->` blocks, as (name, code).
fn readme_examples() -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut out = Vec::new();
    let mut rest = readme.as_str();
    while let Some(at) = rest.find("<!-- example: ") {
        rest = &rest[at + "<!-- example: ".len()..];
        let name = rest[..rest.find(" -->").unwrap()].to_string();
        let fence = rest.find("```").unwrap();
        let body = &rest[fence..];
        let code_start = body.find('\n').unwrap() + 1;
        let code_len = body[code_start..].find("\n```").unwrap() + 1;
        out.push((name, body[code_start..code_start + code_len].to_string()));
        rest = &body[code_start + code_len..];
    }
    out
}

/// Every example in the README runs as it stands, against a daemon of its own.
#[test]
fn readme_examples_run() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    npm_ci(&dir);
    let python = crate::helper::python_venv();
    let examples = readme_examples();
    let names: Vec<&str> = examples.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["playwright.mjs", "puppeteer.mjs", "steel_sessions.py"]
    );

    let d = TestDaemon::start();
    let api = d.status["api_url"].as_str().unwrap().to_string();
    // Inside tests/compat, so that node finds the pinned clients in its node_modules.
    let work = tempfile::Builder::new()
        .prefix("readme-")
        .tempdir_in(&dir)
        .unwrap();
    for (name, code) in &examples {
        let file = work.path().join(name);
        std::fs::write(&file, code).unwrap();
        let mut cmd = if name.ends_with(".py") {
            Command::new(&python)
        } else {
            Command::new("node")
        };
        let out = cmd
            .arg(&file)
            .env("BRO_URL", &api)
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README example {name} failed:\n{}",
            text(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        match name.as_str() {
            "playwright.mjs" => assert!(stdout.contains("hello from bro"), "{stdout}"),
            "puppeteer.mjs" => assert_eq!(stdout.trim(), "my-bot/1.0"),
            _ => assert!(stdout.contains(" live ws://"), "{stdout}"),
        }
    }
    // Each example released what it created.
    let live = d.json(&["session", "list", "--status", "live", "--json"]);
    assert_eq!(live["sessions"].as_array().unwrap().len(), 0, "{live}");
    d.stop();
}
