//! How bro starts Chromium: where the binary is, its command line, its environment, and how
//! the DevTools endpoint is discovered. The only place that knows Chromium's flags.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::protocol::proxy_url;
use crate::protocol::session::{Dimensions, SessionOptions, devtools_url};
use crate::wait::Poll;
use crate::worker::WorkerError;

/// Flags every browser gets (see DESIGN.md): headless, quiet on a closed network, no first-run
/// UI, DevTools on a loopback port the browser picks itself. The second group is the part of
/// Playwright's default switches (playwright-core's `chromiumSwitches`) that costs a page
/// nothing a user sees and saves each browser start-up work: no extensions or field trials,
/// no optimization-hint, network-time or search-preconnect fetches, no keychain, no crash
/// uploads. (Debian's build starts its two crashpad handlers all the same: no flag stops
/// them, measured.) Switches that change what a page does (back-forward cache, popups,
/// timer and renderer backgrounding) are left out. `bro bench`'s job benchmark measures them.
const BASE_FLAGS: &[&str] = &[
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    // What Debian's wrapper adds that matters when it is skipped (see `direct`).
    "--disable-pings",
    "--media-router=0",
    // From Playwright's defaults.
    "--disable-breakpad",
    "--disable-field-trial-config",
    "--disable-extensions",
    "--disable-component-extensions-with-background-pages",
    "--disable-default-apps",
    "--disable-search-engine-choice-screen",
    "--no-service-autorun",
    "--password-store=basic",
    "--use-mock-keychain",
    "--metrics-recording-only",
];

/// Features every browser runs without (one `--disable-features`, merged with any the
/// configured flags add): start-up fetches and UI a headless session never uses.
///
/// The two `WebUIOmnibox…Popup` features are the largest part: without them every browser
/// window loads `chrome://omnibox-popup.top-chrome/` (the address bar's drop-down, a WebUI
/// app) in a renderer process of its own, which nobody sees in a headless browser. On the
/// CI machine (Chromium 156) that renderer took more than half of a fresh browser's CPU time
/// in its first seconds (`/proc` ticks of the browser's processes 4 s after spawn: 166–191
/// with it, 63–92 without, five launches each), and one process of about 9. Playwright's own
/// launch keeps it (checked: a `newPage` has the `top-chrome` renderer).
const DISABLED_FEATURES: &[&str] = &[
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "MediaRouter",
    "AimEnabled",
    "PreconnectToSearch",
    "LensOverlay",
    "Translate",
    "WebUIOmniboxPopup",
    "WebUIOmniboxAimPopup",
];

/// How long a browser may take from spawn to answering `/json/version`. Cold starts on a busy
/// 2-core machine take a few seconds; 50 launches at once took 13.7 s (chromium-notes §1.2).
pub const READY_TIMEOUT: Duration = Duration::from_secs(45);

/// Finds Chromium: the configured path (`--chromium`, `BRO_CHROMIUM` or `config.toml`, as
/// the settings resolved it), then `/usr/bin/chromium`, then `PATH`.
pub fn find(flag: Option<&Path>) -> Result<PathBuf, WorkerError> {
    if let Some(path) = flag {
        return executable(path)
            .ok_or_else(|| WorkerError::ChromiumNotFound(path.display().to_string()));
    }
    if let Some(path) = executable(Path::new("/usr/bin/chromium")) {
        return Ok(path);
    }
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .find_map(|name| search_path(name))
    .ok_or_else(|| WorkerError::ChromiumNotFound("chromium on PATH".into()))
}

/// `path` when it is an executable file.
pub fn executable(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then(|| path.to_path_buf())
}

/// The first executable called `name` on `PATH`.
pub fn search_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find_map(|dir| executable(&dir.join(name)))
}

/// The command line for one session's browser, profile under `dir/profile`.
pub fn args(dir: &Path, opts: &SessionOptions, as_root: bool) -> Vec<String> {
    let mut args: Vec<String> = BASE_FLAGS.iter().map(|s| s.to_string()).collect();
    if as_root {
        // Chromium refuses to run as root with its sandbox (chromium-notes §5.1).
        args.push("--no-sandbox".into());
    }
    args.push(format!(
        "--disable-features={}",
        DISABLED_FEATURES.join(",")
    ));
    args.push(format!("--user-data-dir={}", dir.join("profile").display()));
    let Dimensions { width, height } = opts.dimensions.unwrap_or_default();
    args.push(format!("--window-size={width},{height}"));
    if let Some(ua) = &opts.user_agent {
        args.push(format!("--user-agent={ua}"));
    }
    if opts.block_ads {
        args.push(format!("--host-resolver-rules={}", block_rules()));
    }
    if let Some(proxy) = &opts.proxy_url {
        // Chromium takes no credentials in --proxy-server: an http:// proxy comes here as
        // bro's local hop (`proxy_hop`), which adds them. Stripped all the same so that none
        // reach the command line, where any local user could read them.
        args.push(format!(
            "--proxy-server={}",
            proxy_url::strip_credentials(proxy)
        ));
    }
    args.push("about:blank".into());
    args
}

/// Ad and tracker hosts resolved to nothing with `blockAds` (each with its subdomains).
const AD_HOSTS: &[&str] = &[
    "doubleclick.net",
    "googlesyndication.com",
    "googleadservices.com",
    "google-analytics.com",
    "googletagmanager.com",
    "googletagservices.com",
    "adservice.google.com",
    "2mdn.net",
    "adnxs.com",
    "adsrvr.org",
    "advertising.com",
    "amazon-adsystem.com",
    "criteo.com",
    "criteo.net",
    "taboola.com",
    "outbrain.com",
    "scorecardresearch.com",
    "quantserve.com",
    "moatads.com",
    "rubiconproject.com",
    "pubmatic.com",
    "openx.net",
    "casalemedia.com",
    "yieldmo.com",
    "bidswitch.net",
    "smartadserver.com",
    "adform.net",
    "teads.tv",
    "sharethrough.com",
    "33across.com",
    "media.net",
    "zedo.com",
    "revcontent.com",
    "mgid.com",
    "hotjar.com",
    "mixpanel.com",
    "segment.io",
    "segment.com",
    "fullstory.com",
    "crazyegg.com",
    "mouseflow.com",
    "clarity.ms",
    "facebook.net",
    "connect.facebook.net",
    "ads-twitter.com",
    "static.ads-twitter.com",
    "analytics.twitter.com",
    "ads.linkedin.com",
    "px.ads.linkedin.com",
    "bat.bing.com",
    "adroll.com",
    "doubleverify.com",
    "adsafeprotected.com",
    "serving-sys.com",
    "everesttech.net",
    "demdex.net",
    "omtrdc.net",
    "krxd.net",
    "bluekai.com",
    "exelator.com",
    "rlcdn.com",
    "tapad.com",
    "agkn.com",
    "adsymptotic.com",
    "popads.net",
    "propellerads.com",
    "adcash.com",
    "exoclick.com",
];

/// `--host-resolver-rules` value that makes every [`AD_HOSTS`] entry fail to resolve.
fn block_rules() -> String {
    AD_HOSTS
        .iter()
        .flat_map(|h| [format!("MAP {h} ~NOTFOUND"), format!("MAP *.{h} ~NOTFOUND")])
        .collect::<Vec<_>>()
        .join(", ")
}

/// The browser's `TMPDIR`: `<temp>/bro-<uid>/<hash of the session dir>`. Chromium puts its
/// singleton socket there, and a socket path may not exceed 107 bytes, which a temp dir
/// inside `~/.local/share/bro/sessions/<uuid>/` already does. Removed with the session.
pub fn tmp_dir(session_dir: &Path) -> PathBuf {
    let hash = crate::paths::path_hash(session_dir);
    tmp_base().join(format!("{hash:016x}"))
}

/// True when `base` (`<temp>/bro-<uid>`) is a real directory of this user, not a link or a
/// dir another user planted in a shared temp dir: only then does bro create, read or delete
/// anything under it.
pub fn tmp_base_is_ours(base: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(base).is_ok_and(|meta| {
        meta.file_type().is_dir() && meta.uid() == nix::unistd::geteuid().as_raw()
    })
}

/// Creates the session's temp dir inside a 0700 per-user dir that must be ours.
fn create_tmp_dir(session_dir: &Path) -> Result<PathBuf, WorkerError> {
    let tmp = tmp_dir(session_dir);
    let base = tmp.parent().unwrap_or(&tmp);
    crate::paths::create_private_dir(base).map_err(|e| WorkerError::io("create temp dir", e))?;
    if !tmp_base_is_ours(base) {
        let err = std::io::Error::other(format!(
            "{} is not a directory of this user",
            base.display()
        ));
        return Err(WorkerError::io("create temp dir", err));
    }
    crate::paths::create_private_dir(&tmp).map_err(|e| WorkerError::io("create temp dir", e))?;
    // Every bro home of this user shares the parent dir: the owner file lets any daemon tell
    // a temp dir whose session dir is gone (its daemon died mid-teardown) from a live one.
    std::fs::write(
        tmp.join(TMP_OWNER_FILE),
        session_dir.as_os_str().as_encoded_bytes(),
    )
    .map_err(|e| WorkerError::io("write temp dir owner", e))?;
    Ok(tmp)
}

/// The file in a browser's temp dir that names the session dir it belongs to.
const TMP_OWNER_FILE: &str = "bro-owner";

/// Removes the temp dirs under `base` (`<temp>/bro-<uid>`) whose session dir no longer
/// exists, and those without an owner file (left by older versions) a day old. Dirs touched
/// within `grace` are kept. Returns how many were removed.
pub fn sweep_tmp_dirs(base: &Path, grace: Duration) -> usize {
    use std::os::unix::ffi::OsStringExt;
    if !tmp_base_is_ours(base) {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(base) else {
        return 0;
    };
    let age = |path: &Path| {
        std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default()
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) || age(&path) < grace {
            continue;
        }
        let stale = match std::fs::read(path.join(TMP_OWNER_FILE)) {
            Ok(owner) => {
                let owner = std::ffi::OsString::from_vec(owner);
                !Path::new(&owner).exists()
            }
            Err(_) => age(&path) > Duration::from_secs(24 * 3600),
        };
        if stale && std::fs::remove_dir_all(&path).is_ok() {
            tracing::info!(dir = %path.display(), "removed a stale browser temp dir");
            removed += 1;
        }
    }
    removed
}

/// The parent of every browser temp dir of this user.
pub fn tmp_base() -> PathBuf {
    let uid = nix::unistd::geteuid().as_raw();
    std::env::temp_dir().join(format!("bro-{uid}"))
}

/// Where a session's uploads and the browser's downloads go.
pub fn files_dir(session_dir: &Path) -> PathBuf {
    session_dir.join("files")
}

/// Profile preferences set before the first start: downloads go to the session's files
/// dir without a prompt.
fn write_preferences(dir: &Path) -> Result<(), WorkerError> {
    let files = files_dir(dir);
    std::fs::create_dir_all(&files).map_err(|e| WorkerError::io("create files dir", e))?;
    let prefs = serde_json::json!({
        "download": { "default_directory": files, "prompt_for_download": false },
        "savefile": { "default_directory": files },
    });
    let default = dir.join("profile/Default");
    std::fs::create_dir_all(&default).map_err(|e| WorkerError::io("create profile", e))?;
    std::fs::write(default.join("Preferences"), prefs.to_string())
        .map_err(|e| WorkerError::io("write Preferences", e))
}

/// Without the base flags that turn extensions off when the flags load one
/// (`chromium_flags = ["--load-extension=…"]`): `--disable-extensions` would defeat it.
fn allow_loaded_extensions(argv: Vec<String>) -> Vec<String> {
    if !argv.iter().any(|a| a.starts_with("--load-extension")) {
        return argv;
    }
    argv.into_iter()
        .filter(|a| {
            a != "--disable-extensions"
                && a != "--disable-component-extensions-with-background-pages"
        })
        .collect()
}

/// Spawns the browser in its own process group with its home and config dirs inside `dir`
/// and its temp dir beside it ([`tmp_dir`]), so crash reports, caches and singleton sockets
/// never land in the user's home or stay in `/tmp`. With `cgroup_procs`, a shell first moves
/// itself into those cgroups and then execs the browser (same pid), so not one of the
/// browser's processes runs outside its limits. The browser's nice value is `nice` over the
/// daemon's (`browser_nice`), from its first thread on.
pub fn spawn(
    chromium: &Path,
    extra_flags: &[String],
    nice: u32,
    dir: &Path,
    opts: &SessionOptions,
    cgroup_procs: &[PathBuf],
) -> Result<Child, WorkerError> {
    for sub in ["profile", "home", "home/.config", "home/.cache"] {
        std::fs::create_dir_all(dir.join(sub))
            .map_err(|e| WorkerError::io("create session dir", e))?;
    }
    let tmp = create_tmp_dir(dir)?;
    write_preferences(dir)?;
    let log = std::fs::File::create(dir.join("chromium.log"))
        .map_err(|e| WorkerError::io("create chromium.log", e))?;
    let as_root = nix::unistd::geteuid().is_root();
    let mut argv = args(dir, opts, as_root);
    // Extra flags go before the initial URL, which must stay last.
    let url = argv.pop();
    argv.extend(extra_flags.iter().cloned());
    let mut argv = merge_feature_lists(allow_loaded_extensions(argv));
    argv.extend(url);
    let (chromium, more) = direct(chromium);
    argv.splice(0..0, more);
    let mut cmd = if cgroup_procs.is_empty() {
        Command::new(chromium)
    } else {
        let mut sh = Command::new("/bin/sh");
        sh.args(["-c", crate::worker::limits::JOIN_SCRIPT, "sh"])
            .arg(cgroup_procs.len().to_string())
            .args(cgroup_procs)
            .arg(chromium);
        sh
    };
    // The API key is the daemon's (an auto-started daemon may have it in its environment):
    // a page's processes never get it.
    cmd.env_remove("BRO_API_KEY");
    cmd.args(argv)
        .env("TMPDIR", tmp)
        .env("HOME", dir.join("home"))
        .env("XDG_CONFIG_HOME", dir.join("home/.config"))
        .env("XDG_CACHE_HOME", dir.join("home/.cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // Own group: teardown kills the whole tree, and a signal to the daemon's group does
        // not reach the browsers, which outlive a crashed daemon to be re-adopted.
        .process_group(0)
        .kill_on_drop(false);
    crate::worker::process::spawn_below(&mut cmd, nice)
        .map_err(|e| WorkerError::io("spawn chromium", e))
}

/// Chromium honours one `--disable-features` and one `--enable-features` (the last): each
/// list is merged into the first of its kind, in order, so a configured flag adds to bro's
/// list instead of replacing it.
fn merge_feature_lists(argv: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(argv.len());
    for arg in argv {
        let kind = ["--disable-features=", "--enable-features="]
            .into_iter()
            .find(|k| arg.starts_with(k));
        let first = kind.and_then(|k| out.iter().position(|a| a.starts_with(k)).map(|i| (k, i)));
        match first {
            Some((k, i)) => {
                let more = &arg[k.len()..];
                if !more.is_empty() {
                    out[i] = format!("{},{more}", out[i]);
                }
            }
            None => out.push(arg),
        }
    }
    out
}

/// The real binary behind Debian's `/usr/bin/chromium` wrapper, and the flags of the
/// wrapper's that bro keeps. The wrapper is a shell script that sources `/etc/chromium.d/*`
/// and `exec`s `/usr/lib/chromium/chromium`: a shell per launch, and flags bro does not want
/// (extensions, GPU rasterization, Debian's API keys). Kept: `--disable-dev-shm-usage` when
/// `/dev/shm` has under 3.8 GB free, as the wrapper decides; `--disable-pings` and
/// `--media-router=0` are in every launch's flags.
///
/// Only Debian's own wrapper is skipped: the path must be `/usr/bin/chromium` (after links),
/// the script Debian's (`APPNAME=chromium`, `LIBDIR=/usr/lib/$APPNAME`), and
/// `/etc/chromium.d` hold only Debian's own files, so an administrator's drop-in (a proxy, a
/// flag) is never dropped silently: with one, the wrapper runs as before. Any other path is
/// used as it is.
pub fn direct(chromium: &Path) -> (PathBuf, Vec<String>) {
    const WRAPPER: &str = "/usr/bin/chromium";
    const REAL: &str = "/usr/lib/chromium/chromium";
    let as_is = (chromium.to_path_buf(), Vec::new());
    let is_debians = std::fs::canonicalize(chromium).is_ok_and(|p| p == Path::new(WRAPPER))
        && is_debian_wrapper(Path::new(WRAPPER))
        && only_debian_drop_ins(Path::new("/etc/chromium.d"));
    if !is_debians || executable(Path::new(REAL)).is_none() {
        return as_is;
    }
    let mut flags = Vec::new();
    if shm_free_bytes().is_some_and(|free| free < 4_080_218_931) {
        flags.push("--disable-dev-shm-usage".to_string());
    }
    (PathBuf::from(REAL), flags)
}

/// Whether `path` is Debian's launcher script: read only when small (a browser binary is
/// hundreds of MB and is never read).
fn is_debian_wrapper(path: &Path) -> bool {
    const MAX: u64 = 64 * 1024;
    let small = std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() < MAX);
    small
        && std::fs::read(path).is_ok_and(|text| {
            let text = String::from_utf8_lossy(&text);
            text.starts_with("#!")
                && text.contains("\nAPPNAME=chromium\n")
                && text.contains("\nLIBDIR=/usr/lib/$APPNAME\n")
                && text.contains("exec $LIBDIR/$APPNAME")
        })
}

/// Whether `dir` holds nothing but the files Debian's package puts there (or does not exist).
fn only_debian_drop_ins(dir: &Path) -> bool {
    const DEBIANS: [&str; 5] = [
        "README",
        "apikeys",
        "default-flags",
        "dev-shm",
        "extensions",
    ];
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            entries
                .take(64)
                .all(|e| e.is_ok_and(|e| DEBIANS.iter().any(|d| e.file_name() == *d)))
                && std::fs::read_dir(dir).is_ok_and(|e| e.count() <= DEBIANS.len())
        }
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Free bytes in `/dev/shm`, when it can be read.
fn shm_free_bytes() -> Option<u64> {
    let st = nix::sys::statvfs::statvfs("/dev/shm").ok()?;
    Some(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// True when the DevTools endpoint at `port` answers `GET /json/version` with a success
/// within `timeout`: the one check that a browser is up and serving CDP.
pub async fn answers(http: &reqwest::Client, port: u16, timeout: Duration) -> bool {
    let req = http
        .get(devtools_url(port, "/json/version"))
        .timeout(timeout);
    matches!(req.send().await, Ok(r) if r.status().is_success())
}

/// What the browser says of itself on `/json/version` (`Browser`, `User-Agent`, …); null
/// when it does not answer within 5 s.
pub async fn version(http: &reqwest::Client, port: u16) -> serde_json::Value {
    let resp = http
        .get(devtools_url(port, "/json/version"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    match resp {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

/// How often a starting browser's `DevToolsActivePort` file is looked for: a launch is ready
/// at most this much after Chromium wrote it (a look is one failed `open`).
const READY_POLL: Duration = Duration::from_millis(5);

/// Waits for `DevToolsActivePort` (port and browser path) and then for `/json/version` to
/// answer, which comes about 100 ms after the port is known (chromium-notes §5.3).
pub async fn wait_ready(
    child: &mut Child,
    dir: &Path,
    http: &reqwest::Client,
) -> Result<(u16, String), WorkerError> {
    let port_file = dir.join("profile/DevToolsActivePort");
    let mut endpoint: Option<(u16, String)> = None;
    let poll = Poll::new(READY_TIMEOUT, READY_POLL);
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| WorkerError::io("wait chromium", e))?
        {
            return Err(WorkerError::Exited {
                status: status.to_string(),
                log: log_tail(dir),
            });
        }
        if endpoint.is_none() {
            endpoint = read_port_file(&port_file);
        }
        // Chromium writes the file once its DevTools server listens: asked at once, not a
        // poll later.
        if let Some((port, path)) = &endpoint
            && answers(http, *port, Duration::from_secs(2)).await
        {
            return Ok((*port, path.clone()));
        }
        if !poll.again().await {
            return Err(WorkerError::NotReady(READY_TIMEOUT));
        }
    }
}

/// Parses `DevToolsActivePort`: the port, then `/devtools/browser/<guid>`.
pub(crate) fn read_port_file(path: &Path) -> Option<(u16, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let port = lines.next()?.trim().parse().ok()?;
    let ws_path = lines.next()?.trim().to_string();
    ws_path
        .starts_with("/devtools/browser/")
        .then_some((port, ws_path))
}

/// The last lines of the browser's stderr, for error messages.
pub fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("chromium.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.contains("dbus")).collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loaded_extension_keeps_extensions_on() {
        let base = || {
            vec![
                "--disable-extensions".to_string(),
                "--disable-component-extensions-with-background-pages".to_string(),
                "--headless".to_string(),
            ]
        };
        assert_eq!(allow_loaded_extensions(base()), base());
        let mut loaded = base();
        loaded.push("--load-extension=/opt/ext".to_string());
        assert_eq!(
            allow_loaded_extensions(loaded),
            vec![
                "--headless".to_string(),
                "--load-extension=/opt/ext".to_string()
            ]
        );
    }

    #[test]
    fn stale_temp_dirs_are_swept_and_live_ones_kept() {
        let base = tempfile::tempdir().unwrap();
        let sessions = tempfile::tempdir().unwrap();
        let with_owner = |name: &str, owner: &Path| {
            let dir = base.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            std::fs::write(
                dir.join(TMP_OWNER_FILE),
                owner.as_os_str().as_encoded_bytes(),
            )
            .unwrap();
            dir
        };
        let live = with_owner("live", sessions.path());
        let stale = with_owner("stale", &sessions.path().join("gone"));
        let unowned = base.path().join("unowned");
        std::fs::create_dir(&unowned).unwrap();

        // Within the grace period nothing goes.
        assert_eq!(sweep_tmp_dirs(base.path(), Duration::from_secs(3600)), 0);
        assert_eq!(sweep_tmp_dirs(base.path(), Duration::ZERO), 1);
        assert!(live.exists());
        assert!(!stale.exists());
        assert!(unowned.exists(), "a young dir without an owner is kept");
    }

    #[test]
    fn command_line_carries_the_session_options() {
        let opts = SessionOptions {
            dimensions: Some(Dimensions {
                width: 800,
                height: 600,
            }),
            user_agent: Some("bro-test/1".into()),
            proxy_url: Some("http://u:p@proxy:3128".into()),
            timeout_ms: 0,
            ..Default::default()
        };
        let argv = args(Path::new("/s/1"), &opts, true);
        for want in [
            "--headless",
            "--no-sandbox",
            "--remote-debugging-port=0",
            "--user-data-dir=/s/1/profile",
            "--window-size=800,600",
            "--user-agent=bro-test/1",
            "--proxy-server=http://proxy:3128",
        ] {
            assert!(argv.iter().any(|a| a == want), "missing {want} in {argv:?}");
        }
        assert_eq!(argv.last().map(String::as_str), Some("about:blank"));
        assert!(
            !args(Path::new("/s"), &SessionOptions::default(), false)
                .contains(&"--no-sandbox".into())
        );
    }

    #[test]
    fn feature_lists_are_merged_into_one() {
        let argv: Vec<String> = [
            "--headless",
            "--disable-features=A,B",
            "--enable-features=X",
            "--lang=de",
            "--disable-features=C",
            "--enable-features=",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            merge_feature_lists(argv),
            [
                "--headless",
                "--disable-features=A,B,C",
                "--enable-features=X",
                "--lang=de"
            ]
            .map(String::from)
        );
        let ours = args(Path::new("/s"), &SessionOptions::default(), false);
        let lists = ours
            .iter()
            .filter(|a| a.starts_with("--disable-features="))
            .count();
        assert_eq!(lists, 1, "{ours:?}");
        assert!(ours.iter().any(|a| a == "--disable-breakpad"), "{ours:?}");
    }

    #[test]
    fn only_debians_wrapper_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = tmp.path().join("chrome");
        std::fs::write(&plain, "#!/bin/sh\nexec /opt/chrome \"$@\"\n").unwrap();
        assert_eq!(direct(&plain), (plain.clone(), Vec::new()));
        // A copy of Debian's script elsewhere (pointing anywhere) is run as it is.
        let copy = tmp.path().join("chromium");
        let debians = "#!/bin/sh\nAPPNAME=chromium\nLIBDIR=/usr/lib/$APPNAME\nexec $LIBDIR/$APPNAME $CHROMIUM_FLAGS \"$@\"\n";
        std::fs::write(&copy, debians).unwrap();
        assert!(is_debian_wrapper(&copy));
        assert_eq!(direct(&copy), (copy.clone(), Vec::new()));
        // Another launcher script is not Debian's.
        let other = tmp.path().join("other");
        std::fs::write(
            &other,
            "#!/bin/sh\nLIBDIR=/opt/beta\nexec $LIBDIR/$APPNAME\n",
        )
        .unwrap();
        assert!(!is_debian_wrapper(&other));
        // A big file (a browser binary) is not read, and is not the wrapper.
        let big = tmp.path().join("big");
        std::fs::write(&big, vec![b'#'; 70 * 1024]).unwrap();
        assert!(!is_debian_wrapper(&big));
    }

    #[test]
    fn an_administrators_drop_in_keeps_the_wrapper() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("chromium.d");
        assert!(only_debian_drop_ins(&d), "absent");
        std::fs::create_dir(&d).unwrap();
        for f in [
            "README",
            "apikeys",
            "default-flags",
            "dev-shm",
            "extensions",
        ] {
            std::fs::write(d.join(f), "").unwrap();
        }
        assert!(only_debian_drop_ins(&d));
        std::fs::write(d.join("proxy"), "export CHROMIUM_FLAGS=--proxy-server=x").unwrap();
        assert!(!only_debian_drop_ins(&d));
    }

    #[test]
    fn reads_the_devtools_port_file() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("DevToolsActivePort");
        std::fs::write(&f, "40123\n/devtools/browser/abc\n").unwrap();
        assert_eq!(
            read_port_file(&f),
            Some((40123, "/devtools/browser/abc".into()))
        );
        std::fs::write(&f, "401").unwrap();
        assert_eq!(read_port_file(&f), None);
    }

    #[test]
    fn missing_chromium_names_the_path() {
        let err = find(Some(Path::new("/nonexistent/chromium"))).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/chromium") && msg.contains("install.sh"),
            "{msg}"
        );
    }
}
