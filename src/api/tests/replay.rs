//! `/v1/sessions/{id}/replay` and the rrweb-player it loads from `/v1/assets/...`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;

use super::{Harness, get};
use crate::api::replay::{Asset, PlayerAssets};
use crate::protocol::session::SessionId;

const PLAYER_JS: &str = "window.rrwebPlayer = { default: function () {} };";

/// A stand-in for the installed rrweb-player.
pub(super) fn fake_player() -> PlayerAssets {
    PlayerAssets {
        js: Asset::new(PLAYER_JS),
        css: Asset::new(".rr-player { color: red }"),
    }
}

fn state(h: &mut Harness) -> &mut crate::api::AppState {
    Arc::get_mut(&mut h.state).expect("the harness holds the only state")
}

#[tokio::test]
async fn the_replay_page_is_html_that_fetches_the_events_and_the_player() {
    let h = Harness::new().await;
    let id = SessionId::random();
    let reply = h.tcp(get(&format!("/v1/sessions/{id}/replay"))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(reply.headers["referrer-policy"], "no-referrer");
    assert_eq!(reply.headers["cache-control"], "no-store");
    let csp = reply.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    // Script by nonce only; pictures, styles and fonts never from plain http (the LAN).
    assert!(
        !csp.contains("unsafe-inline'; img") && !csp.contains(" * "),
        "{csp}"
    );
    let nonce = csp
        .split("script-src 'nonce-")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("a script nonce");
    assert!(!csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
    for directive in ["img-src", "style-src", "font-src", "media-src"] {
        let sources = csp
            .split(';')
            .find(|d| d.trim().starts_with(directive))
            .unwrap_or_else(|| panic!("{directive} missing: {csp}"));
        assert!(
            !sources.contains("http:") && !sources.contains(" *"),
            "{sources}"
        );
    }
    let page = String::from_utf8_lossy(&reply.body);
    assert!(
        page.contains(&format!("<script nonce=\"{nonce}\">")),
        "{page}"
    );
    assert!(!page.contains("{{nonce}}"));
    // Each answer has its own nonce.
    let again = h.tcp(get(&format!("/v1/sessions/{id}/replay"))).await;
    assert_ne!(
        again.headers["content-security-policy"],
        reply.headers["content-security-policy"]
    );
    for part in [
        "/events",
        "/v1/assets/rrweb-player.js",
        "/v1/assets/rrweb-player.css",
        "steel-api-key",
        "apiKey",
        "nonce",
        "did not record",
        // Every page of events, bounded, and one tab at a time.
        "headers.get('Next-Cursor')",
        "?pointer=",
        "const MAX_PAGES = 200;",
        "event.pageId",
        "id=\"tabs\"",
    ] {
        assert!(page.contains(part), "the page lacks {part}");
    }
}

#[tokio::test]
async fn the_player_is_served_with_its_type_and_caching_headers() {
    let h = Harness::new().await;
    let js = h.tcp(get("/v1/assets/rrweb-player.js")).await;
    assert_eq!(js.status, 200);
    assert_eq!(js.headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(js.headers["cache-control"], "private, max-age=86400");
    assert_eq!(js.headers["x-content-type-options"], "nosniff");
    assert_eq!(js.body, PLAYER_JS.as_bytes());
    let css = h.tcp(get("/v1/assets/rrweb-player.css")).await;
    assert_eq!(css.status, 200);
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
    assert_ne!(css.headers["etag"], js.headers["etag"]);

    // Asked again with its tag: 304, no body.
    let again = Request::get("/v1/assets/rrweb-player.js")
        .header("if-none-match", js.headers["etag"].clone())
        .body(Body::empty())
        .unwrap();
    let again = h.tcp(again).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.headers["etag"], js.headers["etag"]);
}

#[tokio::test]
async fn without_rrweb_installed_the_page_and_assets_say_to_run_install_sh() {
    let mut h = Harness::new().await;
    state(&mut h).rrweb_player = None;
    let id = SessionId::random();
    for path in [
        format!("/v1/sessions/{id}/replay"),
        "/v1/assets/rrweb-player.js".into(),
        "/v1/assets/rrweb-player.css".into(),
    ] {
        let reply = h.tcp(get(&path)).await;
        reply.assert_error(503, "install.sh");
    }
}

#[tokio::test]
async fn the_api_key_may_come_in_the_url_and_the_player_needs_none() {
    let mut h = Harness::new().await;
    let key = "replay-secret-0123456789";
    state(&mut h).api_key = Some(key.into());
    let id = SessionId::random();
    let path = format!("/v1/sessions/{id}/replay");
    let reply = h.tcp(get(&path)).await;
    reply.assert_error(401, "API key");
    let wrong = h.tcp(get(&format!("{path}?apiKey=nope"))).await;
    wrong.assert_error(401, "API key");
    let reply = h.tcp(get(&format!("{path}?apiKey={key}"))).await;
    assert_eq!(reply.status, 200, "{path}");
    // The player is public code: served without the key, so no key goes in its URL.
    for path in ["/v1/assets/rrweb-player.js", "/v1/assets/rrweb-player.css"] {
        let reply = h.tcp(get(path)).await;
        assert_eq!(reply.status, 200, "{path}");
        assert!(
            reply.headers["cache-control"]
                .to_str()
                .unwrap()
                .starts_with("private")
        );
    }
    // Only those exact paths: a neighbour, or a websocket upgrade there, needs the key.
    for path in [
        "/v1/assets/other.js",
        "/v1/assets/rrweb-player.js/x",
        "/v1/assets/",
    ] {
        h.tcp(get(path)).await.assert_error(401, "API key");
    }
    let upgrade = Request::get("/v1/assets/rrweb-player.js/../x")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(Body::empty())
        .unwrap();
    assert_eq!(h.tcp(upgrade).await.status, 401);
}

#[tokio::test]
async fn hostile_requests_are_refused() {
    let h = Harness::new().await;
    // Not a session id: nothing is rendered from it.
    let reply = h.tcp(get("/v1/sessions/%3Cscript%3E/replay")).await;
    assert_eq!(reply.status, 400);
    // A web page of another origin, and a DNS-rebound name, as on every route.
    let id = SessionId::random();
    for (name, value) in [("origin", "https://evil.example"), ("host", "evil.example")] {
        for path in [
            format!("/v1/sessions/{id}/replay"),
            "/v1/assets/rrweb-player.js".into(),
        ] {
            let req = Request::get(&path)
                .header(name, value)
                .body(Body::empty())
                .unwrap();
            assert_eq!(h.tcp(req).await.status, 403, "{name} {path}");
        }
    }
    // Browsers do not reach the Unix socket: the page is not served there.
    assert_eq!(
        h.unix(get(&format!("/v1/sessions/{id}/replay")))
            .await
            .status,
        404
    );
}
