//! Quick actions against a page served by a local test HTTP server.

use std::io::{Read, Write};
use std::net::TcpListener;

use crate::helper::{TestDaemon, http};

const PAGE: &str = "<!doctype html><html lang=en><head><title>Bro Test Page</title>\
<meta name=description content='a page for tests'></head><body><h1>Hello Heading</h1>\
<p>Some <b>bold</b> text and <a href='/next'>a link</a>.</p><ul><li>one</li><li>two</li></ul>\
<script>var hidden = 1;</script></body></html>";

/// Serves `PAGE` on a free loopback port from a background thread; returns its URL.
fn serve_page() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PAGE}",
                PAGE.len()
            );
            let _ = conn.write_all(resp.as_bytes());
        }
    });
    url
}

#[test]
fn scrape_screenshot_and_pdf_of_a_local_page() {
    let page = serve_page();
    let d = TestDaemon::start();
    let api = d.status["api_url"].as_str().unwrap().to_string();

    let body =
        format!(r#"{{"url":"{page}","format":["html","markdown","cleaned_html","readability"]}}"#);
    let (status, out) = http(&api, "POST", "/v1/scrape", &body);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let md = v["content"]["markdown"].as_str().unwrap();
    assert!(md.contains("# Hello Heading"), "{md}");
    assert!(
        md.contains("**bold**") && md.contains(&format!("[a link]({page}next)")),
        "{md}"
    );
    assert!(md.contains("- one"), "{md}");
    assert!(
        v["content"]["html"]
            .as_str()
            .unwrap()
            .contains("<h1>Hello Heading</h1>")
    );
    assert!(
        !v["content"]["cleaned_html"]
            .as_str()
            .unwrap()
            .contains("hidden")
    );
    assert!(
        v["content"]["readability"]["textContent"]
            .as_str()
            .unwrap()
            .contains("bold")
    );
    assert_eq!(v["metadata"]["title"], "Bro Test Page");
    assert_eq!(v["metadata"]["description"], "a page for tests");
    assert_eq!(v["metadata"]["statusCode"], 200);
    assert_eq!(v["links"][0]["url"], format!("{page}next"));

    let (status, jpeg) = http(
        &api,
        "POST",
        "/v1/screenshot",
        &format!(r#"{{"url":"{page}","fullPage":true}}"#),
    );
    assert_eq!(status, 200);
    assert_eq!(&jpeg[..3], &[0xff, 0xd8, 0xff], "not a JPEG");

    let (status, pdf) = http(
        &api,
        "POST",
        "/v1/sessions/pdf",
        &format!(r#"{{"url":"{page}"}}"#),
    );
    assert_eq!(status, 200);
    assert_eq!(&pdf[..5], b"%PDF-", "not a PDF");

    // Bad input is a 400, never a 5xx.
    for bad in [
        r#"{"url":"http://"}"#,
        r#"{}"#,
        r#"{"url":"x.y","format":["nope"]}"#,
        "not json",
    ] {
        let (status, out) = http(&api, "POST", "/v1/scrape", bad);
        assert_eq!(status, 400, "{bad}: {}", String::from_utf8_lossy(&out));
    }

    // Every action's session went through the orchestrator and was released.
    let list = d.json(&["session", "list", "--json"]);
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 3, "{list}");
    assert!(sessions.iter().all(|s| s["status"] == "released"), "{list}");
    d.stop();
}
