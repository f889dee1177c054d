//! What is private stays private. The Restate plane: the attack of issue 11 (a local process asking bro's
//! Restate or its SDK endpoint to launch a "warm browser" whose id is a path, which deleted
//! that path) against every port and socket bro's restate-server and SDK endpoint expose.
//! restate-server opens no TCP port; its sockets are in a 0700 dir another user cannot
//! enter; the SDK endpoint refuses calls that restate-server did not sign. And bro's own
//! doors: `file://` quick actions for the owner on the Unix socket only, no short API key.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::helper::{TestDaemon, http, listen_ports};

/// The hostile calls: launch a warm browser "in" the victim dir, create a session keyed by
/// its (encoded) path, and ask for the service manifest.
fn attacks(victim: &Path) -> Vec<(String, String)> {
    let encoded: String = percent_encoding::utf8_percent_encode(
        &victim.display().to_string(),
        percent_encoding::NON_ALPHANUMERIC,
    )
    .to_string();
    let launch = serde_json::json!({ "node": "local", "id": victim.display().to_string() });
    vec![
        ("WarmLauncher/launch".to_string(), launch.to_string()),
        (
            format!("Session/{encoded}/create"),
            r#"{"options":{}}"#.to_string(),
        ),
        (
            "Session/..%2F..%2Fvictim/release".to_string(),
            String::new(),
        ),
    ]
}

#[test]
fn nothing_but_restate_reaches_the_plane_and_no_id_becomes_a_foreign_path() {
    let d = TestDaemon::start_with(&["--warm", "1"]);
    let s = d.create(&[]);
    let id = s["id"].as_str().unwrap().to_string();
    let work = tempfile::tempdir().unwrap();
    let victim = work.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious"), "keep me").unwrap();

    // restate-server listens on no TCP port at all.
    let restate_ports = listen_ports(d.restate_pid());
    assert!(
        restate_ports.is_empty(),
        "restate-server listens on TCP {restate_ports:?}"
    );

    // The daemon's TCP ports: the steel API (which routes no Restate path) and the SDK
    // endpoint (which refuses unsigned calls), nothing else.
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let sdk = d.status["restate"]["endpoint_url"]
        .as_str()
        .unwrap()
        .to_string();
    let sdk_port: u16 = sdk
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let api_port: u16 = api.rsplit(':').next().unwrap().parse().unwrap();
    let mut daemon_ports = listen_ports(d.daemon_pid());
    daemon_ports.sort();
    let mut expected = vec![api_port, sdk_port];
    expected.sort();
    assert_eq!(daemon_ports, expected, "the daemon's TCP listeners");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (path, body) in attacks(&victim) {
        // Through the API port, with and without the /restate prefix the ingress has.
        for prefix in ["/", "/restate/", "/invoke/"] {
            let (status, out) = http(&api, "POST", &format!("{prefix}{path}"), &body);
            assert!(
                status == 404 || status == 400,
                "API {prefix}{path}: {status} {}",
                String::from_utf8_lossy(&out)
            );
        }
        // Straight at the SDK endpoint, as restate-server would call it (h2c), unsigned.
        let (status, out) = rt.block_on(h2c_post(sdk_port, &format!("/invoke/{path}"), &body));
        assert_eq!(status, 401, "SDK /invoke/{path}: {out}");
        // And over HTTP/1.1, which it does not speak: no success either way.
        let answer = raw_http1(sdk_port, &format!("/invoke/{path}"), &body);
        assert!(
            !answer.starts_with("HTTP/1.1 2") && !answer.starts_with("HTTP/1.0 2"),
            "SDK over HTTP/1.1 /invoke/{path}: {answer}"
        );
    }
    let (status, out) = rt.block_on(h2c_get(sdk_port, "/discover"));
    assert_eq!(status, 401, "SDK /discover unsigned: {out}");

    // The Unix sockets are only the owner's: the dir that holds them is 0700 (so another
    // user cannot even reach the socket files), and the identity key is 0600.
    let home = d.home.path();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for dir in ["data", "data/restate", "data/sessions", "state", "run"] {
        assert_eq!(mode(&home.join(dir)), 0o700, "{dir}");
    }
    assert_eq!(mode(&home.join("data/restate/identity.pem")), 0o600);
    // A session's dir holds its profile (cookies, the context it was given).
    assert_eq!(mode(&home.join("data/sessions").join(&id)), 0o700);
    assert_eq!(mode(Path::new(d.status["socket"].as_str().unwrap())), 0o600);
    let admin_sock = d.status["restate"]["admin_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("unix:")
        .to_string();
    let ingress_sock = d.status["restate"]["ingress_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("unix:")
        .to_string();
    assert!(admin_sock.starts_with(&home.join("data/restate").display().to_string()));
    assert!(ingress_sock.starts_with(&home.join("data/restate").display().to_string()));
    // As another user (CI runs as root, which can switch to `nobody`), connecting fails;
    // the owner connects (so the probe itself works).
    if nix::unistd::geteuid().is_root() {
        for sock in [&admin_sock, &ingress_sock] {
            assert_eq!(connect_probe(sock, false), "connected", "{sock}");
            let as_nobody = connect_probe(sock, true);
            assert!(
                as_nobody.starts_with("refused: Permission denied"),
                "user nobody on {sock}: {as_nobody}"
            );
        }
    }

    // The victim is untouched, and bro still works.
    assert_eq!(
        std::fs::read_to_string(victim.join("precious")).unwrap(),
        "keep me"
    );
    assert_eq!(d.get(&id)["status"], "live");
    d.ok(&["session", "kill", &id]);
    d.stop();
    assert!(victim.join("precious").exists());
}

/// One HTTP/1.1 request written by hand; whatever comes back (maybe nothing) as text.
fn raw_http1(port: u16, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(req.as_bytes());
    let mut out = Vec::new();
    let _ = stream.take(4096).read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// What happens when a process connects to the Unix socket at `path`: `connected`, or
/// `refused: <reason>`. As `nobody` (uid/gid 65534) when `as_nobody`. Perl is in every Debian
/// (perl-base), and runnable by any user, unlike a Python under root's home.
fn connect_probe(path: &str, as_nobody: bool) -> String {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("perl");
    cmd.args([
        "-MIO::Socket::UNIX",
        "-e",
        "my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]); print $s ? 'connected' : \"refused: $!\"",
        path,
    ]);
    if as_nobody {
        // std drops the supplementary groups too when root sets a uid.
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn h2c_post(port: u16, path: &str, body: &str) -> (u16, String) {
    h2c(port, "POST", path, body).await
}

async fn h2c_get(port: u16, path: &str) -> (u16, String) {
    h2c(port, "GET", path, "").await
}

/// One HTTP/2 cleartext (prior knowledge) request, as restate-server makes them.
async fn h2c(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/json")
        .header("accept", "application/vnd.restate.endpointmanifest.v3+json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        resp.into_body().collect(),
    )
    .await
    .map(|b| b.map(|b| b.to_bytes()).unwrap_or_default())
    .unwrap_or_default();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// An external Restate that does not sign with bro's key cannot drive this daemon: its start
/// fails at registration with what to configure, and leaves nothing running.
#[test]
fn an_external_restate_without_bros_key_is_refused() {
    let owner = TestDaemon::start();
    let (_links, admin, ingress) = crate::helper::restate_links(&owner);
    let guest = TestDaemon::prepare();
    let out = guest.bro(&[
        "daemon",
        "start",
        "--port",
        "0",
        "--restate-admin-url",
        &admin,
        "--restate-ingress-url",
        &ingress,
    ]);
    assert!(!out.status.success(), "{}", crate::helper::text(&out));
    let log =
        std::fs::read_to_string(guest.home.path().join("state/daemon.log")).unwrap_or_default();
    let said = format!("{}{log}", crate::helper::text(&out));
    assert!(
        said.contains("request-identity-private-key-pem-file"),
        "{said}"
    );
    assert!(crate::helper::wait_for(|| crate::helper::leftovers(
        guest.home.path()
    )
    .is_empty()));
    owner.stop();
}

/// `file://` is loaded for the owner on the Unix socket, and refused (400) over TCP, where any
/// local process could otherwise read the user's files through the browser.
#[test]
fn file_urls_are_the_owners_only() {
    let d = TestDaemon::start();
    let api = d.status["api_url"].as_str().unwrap().to_string();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "<title>t</title>owner-only-text").unwrap();
    let body = serde_json::json!({
        "url": format!("file://{}", secret.path().display()),
        "format": ["html"],
    })
    .to_string();
    for path in ["/v1/scrape", "/v1/screenshot", "/v1/pdf"] {
        let (status, out) = http(&api, "POST", path, &body);
        let out = String::from_utf8_lossy(&out);
        assert_eq!(status, 400, "TCP {path}: {out}");
        assert!(out.contains("Unix socket"), "{out}");
        assert!(!out.contains("owner-only-text"), "{out}");
    }
    let socket = d.status["socket"].as_str().unwrap();
    let (status, out) = unix_http(socket, "POST", "/v1/scrape", &body);
    assert_eq!(status, 200, "socket /v1/scrape: {out}");
    assert!(out.contains("owner-only-text"), "{out}");
    d.stop();
}

/// An empty or short API key is refused at start with what to do; a long one works.
#[test]
fn short_api_keys_are_refused() {
    let d = TestDaemon::prepare();
    for key in ["", "short", "fifteen-chars-x"] {
        let out = d.bro(&["daemon", "start", "--port", "0", "--api-key", key]);
        assert!(
            !out.status.success(),
            "key {key:?}: {}",
            crate::helper::text(&out)
        );
        let log =
            std::fs::read_to_string(d.home.path().join("state/daemon.log")).unwrap_or_default();
        let said = format!("{}{log}", crate::helper::text(&out));
        assert!(said.contains("at least 16"), "key {key:?}: {said}");
        assert!(crate::helper::wait_for(|| crate::helper::leftovers(
            d.home.path()
        )
        .is_empty()));
    }
    let mut d = d;
    d.restart_with(&["--api-key", "sixteen-chars-ok"]);
    d.stop();
}

/// One HTTP/1.1 request over a Unix socket; the status and the body as text.
fn unix_http(socket: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(120)))
        .unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The API key reaches a background daemon on its stdin with the other settings: neither its
/// command line nor its environment (what `ps e` shows) holds it, whether it came from
/// `--api-key` or from `BRO_API_KEY` in the starting shell.
#[test]
fn the_api_key_is_in_no_argv_or_environ_of_the_daemon() {
    let key = "a-secret-key-nobody-may-read";
    let mut d = TestDaemon::prepare();
    let by_flag: (&[&str], &[(&str, &str)]) = (&["--api-key", key], &[]);
    let by_env: (&[&str], &[(&str, &str)]) = (&[], &[("BRO_API_KEY", key)]);
    for (args, env) in [by_flag, by_env] {
        d.restart_with_env(args, env);
        let pid = d.daemon_pid();
        for file in ["cmdline", "environ"] {
            let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(key),
                "the key is in the daemon's {file} ({args:?} {env:?})"
            );
        }
        // And the daemon does require it.
        let api = d.status["api_url"].as_str().unwrap().to_string();
        let (status, _) = http(&api, "GET", "/v1/sessions", "");
        assert_eq!(status, 401, "{args:?} {env:?}");
        let out = d.bro(&["daemon", "stop"]);
        assert!(out.status.success(), "{}", crate::helper::text(&out));
    }
    d.restart_with(&[]);
    d.stop();
}
