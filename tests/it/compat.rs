//! The real npm clients (steel-sdk, playwright-core, puppeteer-core, pinned in
//! `tests/compat/package-lock.json`) against a daemon with an API key.

use std::path::Path;
use std::process::Command;

use crate::helper::{TestDaemon, text};

/// Installs the pinned clients once (never a browser download).
fn npm_ci(dir: &Path) {
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
    let d = TestDaemon::start_with(&["--api-key", "py-secret"]);
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let out = Command::new(python)
        .arg("clients.py")
        .arg(&api)
        .arg("py-secret")
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
    let d = TestDaemon::start_with(&["--api-key", "it-secret"]);
    let api = d.status["api_url"].as_str().unwrap().to_string();

    // Without the key the TCP API refuses; /v1/health stays open.
    assert_eq!(crate::helper::http(&api, "GET", "/v1/sessions", "").0, 401);
    assert_eq!(crate::helper::http(&api, "GET", "/v1/health", "").0, 200);

    let out = Command::new("node")
        .arg("clients.mjs")
        .arg(&api)
        .arg("it-secret")
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
