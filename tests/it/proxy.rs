//! A `proxyUrl` with credentials: the browser reaches the upstream proxy through bro's local
//! hop, which adds them; they never reach the browser's command line; the hop comes back on
//! the same port after a daemon SIGKILL; the released session reports the bytes it carried.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::helper::open_tab;
use crate::helper::{TestDaemon, http, kill, wait_for};

/// A fake upstream proxy on 127.0.0.1 that wants `Proxy-Authorization` and, once given it,
/// answers every plain-http request itself with a small page.
struct Upstream {
    port: u16,
    /// Request lines that came with the right credentials.
    authorized: Arc<Mutex<Vec<String>>>,
    /// Request lines that came without them (answered 407).
    refused: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    fn start(user: &str, password: &str) -> Upstream {
        use base64::Engine as _;
        let expected = format!(
            "proxy-authorization: basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
        .to_ascii_lowercase();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let up = Upstream {
            port: listener.local_addr().unwrap().port(),
            authorized: Arc::default(),
            refused: Arc::default(),
            stop: Arc::default(),
        };
        let (authorized, refused, stop) = (
            Arc::clone(&up.authorized),
            Arc::clone(&up.refused),
            Arc::clone(&up.stop),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (expected, authorized, refused) = (
                            expected.clone(),
                            Arc::clone(&authorized),
                            Arc::clone(&refused),
                        );
                        std::thread::spawn(move || answer(conn, &expected, &authorized, &refused));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        up
    }

    fn saw(&self, request_line: &str) -> bool {
        self.authorized
            .lock()
            .unwrap()
            .iter()
            .any(|l| l == request_line)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(
    mut conn: TcpStream,
    expected: &str,
    authorized: &Mutex<Vec<String>>,
    refused: &Mutex<Vec<String>>,
) {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let request_line = head.lines().next().unwrap_or_default().to_string();
    let lower = head.to_ascii_lowercase();
    let reply = if lower.lines().any(|l| l.trim() == expected) {
        authorized.lock().unwrap().push(request_line);
        let body = "<html><head><title>through the upstream</title></head><body>ok</body></html>";
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        refused.lock().unwrap().push(request_line);
        "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    let _ = conn.write_all(reply.as_bytes());
}

/// Opens `url` in the session behind `ws_url` and waits until `up` answered it, authorized.
fn load_through(up: &Upstream, ws_url: &str, url: &str) {
    open_tab(ws_url, url);
    let request_line = format!("GET {url} HTTP/1.1");
    assert!(
        wait_for(|| up.saw(&request_line)),
        "authorized {:?}, refused {:?}",
        up.authorized.lock().unwrap(),
        up.refused.lock().unwrap()
    );
}

#[test]
fn credentials_go_through_the_local_hop_and_survive_a_daemon_restart() {
    let up = Upstream::start("user", "p@ss");
    let mut d = TestDaemon::start();
    let api = d.status["api_url"].as_str().unwrap().to_string();

    // Credentials a browser cannot use are refused up front.
    let (status, body) = http(
        &api,
        "POST",
        "/v1/sessions",
        r#"{"proxyUrl":"socks5://u:secret@127.0.0.1:1"}"#,
    );
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(!String::from_utf8_lossy(&body).contains("secret"));

    let proxy_url = format!("http://user:p%40ss@127.0.0.1:{}", up.port);
    let body = serde_json::json!({ "proxyUrl": proxy_url }).to_string();
    let (status, out) = http(&api, "POST", "/v1/sessions", &body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    let s: Value = serde_json::from_slice(&out).unwrap();
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(
        s["proxy"],
        format!("http://user:***@127.0.0.1:{}", up.port),
        "{s}"
    );

    // The browser's command line names the hop, never the upstream or the password.
    let pid = d.browser_pid(&id);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains("--proxy-server=http://127.0.0.1:"),
        "{cmdline}"
    );
    assert!(
        !cmdline.contains("p%40ss") && !cmdline.contains(&up.port.to_string()),
        "{cmdline}"
    );

    load_through(
        &up,
        s["websocketUrl"].as_str().unwrap(),
        "http://site.test/first",
    );

    // The daemon dies; the browser lives on, and the restarted daemon reopens its hop.
    kill(d.daemon_pid(), "KILL");
    d.restart_with(&[]);
    let back = d.get(&id);
    assert_eq!(back["status"], "live", "{back}");
    load_through(
        &up,
        back["websocketUrl"].as_str().unwrap(),
        "http://site.test/second",
    );
    assert!(up.refused.lock().unwrap().is_empty());

    // The release reports the bytes the hop carried since it was reopened.
    let (status, out) = http(
        &api_of(&d),
        "POST",
        &format!("/v1/sessions/{id}/release"),
        "",
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    let released: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(released["status"], "released");
    let (tx, rx) = (
        released["proxyTxBytes"].as_u64().unwrap(),
        released["proxyRxBytes"].as_u64().unwrap(),
    );
    assert!(tx > 100 && rx > 100, "{released}");
    assert_eq!(released["proxyBytesUsed"].as_u64().unwrap(), tx + rx);
    d.stop();
}

fn api_of(d: &TestDaemon) -> String {
    d.status["api_url"].as_str().unwrap().to_string()
}
