//! `/v1/sessions...`: creates, reads, context and live details.

use serde_json::json;

use super::fake_restate::{Answer, ended, live_record};
use super::{API_BASE, Harness, get, post};
use crate::host::HostErrorKind;
use crate::protocol::session::{SessionId, SessionStatus};

#[tokio::test]
async fn a_create_answers_the_steel_shape() {
    let h = Harness::new().await;
    let id = SessionId::random();
    let body = json!({"sessionId": id.to_uppercase(), "timeout": 60000, "blockAds": true});
    let reply = h.tcp(post("/v1/sessions", body)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let d = reply.json();
    assert_eq!(d["id"], id.as_str());
    assert_eq!(d["status"], "live");
    assert_eq!(d["timeout"], 60000);
    assert_eq!(d["dimensions"], json!({"width": 1920, "height": 1080}));
    assert_eq!(
        d["websocketUrl"],
        format!("ws://127.0.0.1:3000/?sessionId={id}")
    );
    let details = format!("{API_BASE}/v1/sessions/{id}/player");
    assert_eq!(d["debugUrl"], details);
    assert_eq!(d["sessionViewerUrl"], details);
    assert_eq!(
        d["debuggerUrl"],
        format!("{API_BASE}/json/list?sessionId={id}")
    );
    assert_eq!(d["headless"], true);
    // The options reached `Session/create` as given, the id made canonical.
    let calls = h.restate.calls();
    assert_eq!(h.restate.handlers(), [format!("create {id}")]);
    let cmd = &calls[0].body;
    assert_eq!(cmd["options"]["timeoutMs"], 60000);
    assert_eq!(cmd["options"]["blockAds"], true);
    assert_eq!(cmd["wait"], true);
}

#[tokio::test]
async fn a_create_whose_browser_refused_the_context_is_422_other_failures_500() {
    let h = Harness::new().await;
    let id = SessionId::random();
    let refused = crate::protocol::session::SessionRecord {
        refused: true,
        ..ended(live_record(&id), SessionStatus::Failed, "bad cookie")
    };
    h.restate.script("create", Answer::record(refused));
    let body = json!({"sessionId": id.as_str()});
    let reply = h.tcp(post("/v1/sessions", body.clone())).await;
    reply.assert_error(422, &format!("session {id} failed: bad cookie"));

    let failed = ended(live_record(&id), SessionStatus::Failed, "chromium crashed");
    h.restate.script("create", Answer::record(failed));
    let reply = h.tcp(post("/v1/sessions", body)).await;
    reply.assert_error(500, "chromium crashed");
}

#[tokio::test]
async fn a_create_at_capacity_is_429_with_retry_after() {
    let h = Harness::new().await;
    h.restate
        .script("create", Answer::Error(429, "node local is full".into()));
    let no_wait = axum::http::Request::post("/v1/sessions")
        .header(crate::protocol::steel::NO_WAIT_HEADER, "1")
        .body(axum::body::Body::empty())
        .unwrap();
    let reply = h.tcp(no_wait).await;
    reply.assert_error(429, "node local is full");
    assert_eq!(reply.headers["retry-after"], "5");
    assert_eq!(reply.headers["x-should-retry"], "true");
    assert_eq!(h.restate.calls()[0].body["wait"], false);
}

#[tokio::test]
async fn a_create_without_restate_is_503() {
    let h = Harness::without_restate();
    let reply = h.tcp(post("/v1/sessions", json!({}))).await;
    reply.assert_error(503, "restate is unreachable at unix:");
}

#[tokio::test]
async fn bad_input_is_400_before_any_call() {
    let h = Harness::new().await;
    for (req, part) in [
        (get("/v1/sessions/not-a-uuid"), "session id must be a UUID"),
        (get("/v1/sessions/x/context"), "session id must be a UUID"),
        (
            get("/v1/sessions/x/live-details"),
            "session id must be a UUID",
        ),
        (post("/v1/sessions/x/release", json!({})), "must be a UUID"),
        (
            post("/v1/sessions", json!({"proxyUrl": "ftp://p"})),
            "proxyUrl must start with",
        ),
        (
            post("/v1/sessions", json!({"timeout": u64::MAX})),
            "timeout must be at most",
        ),
        (get("/v1/sessions?limit=0"), "limit must be a positive"),
        (get("/v1/sessions?status=alive"), "unknown status 'alive'"),
    ] {
        h.tcp(req).await.assert_error(400, part);
    }
    assert!(h.restate.calls().is_empty(), "{:?}", h.restate.calls());
    assert!(h.host.calls().is_empty());
}

#[tokio::test]
async fn an_unknown_session_is_404() {
    let h = Harness::new().await;
    let id = SessionId::random();
    for uri in [
        format!("/v1/sessions/{id}"),
        format!("/v1/sessions/{id}/context"),
        format!("/v1/sessions/{id}/live-details"),
    ] {
        let reply = h.tcp(get(&uri)).await;
        reply.assert_error(404, &format!("session {id} not found"));
    }
    assert!(h.host.calls().is_empty());
}

#[tokio::test]
async fn an_ended_session_has_no_context_but_stays_readable() {
    let h = Harness::new().await;
    let rec = ended(h.live(), SessionStatus::Released, "released");
    h.restate.put(rec.clone());
    let id = &rec.id;
    let reply = h.tcp(get(&format!("/v1/sessions/{id}/context"))).await;
    reply.assert_error(404, &format!("session {id} is released"));
    let reply = h.tcp(get(&format!("/v1/sessions/{id}"))).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["status"], "released");
    assert_eq!(reply.json()["reason"], "released");
    assert!(h.host.calls().is_empty());
}

#[tokio::test]
async fn live_details_are_built_from_the_hosts_pages() {
    let h = Harness::new().await;
    let id = h.live().id;
    let reply = h.tcp(get(&format!("/v1/sessions/{id}/live-details"))).await;
    assert_eq!(reply.status, 200);
    let viewer = format!("{API_BASE}/v1/sessions/{id}/player");
    let fullscreen = format!("{viewer}?showControls=false");
    let ws = format!("ws://127.0.0.1:3000/?sessionId={id}");
    let expected = json!({
        "browserState": {
            "browserVersion": "Chrome/1.0",
            "initialDimensions": {"height": 1080, "width": 1920},
            "pageCount": 2,
            "status": "live",
            "userAgent": "FakeChrome/1.0",
        },
        "pages": [
            {
                "favicon": "https://example.com/favicon.ico",
                "id": "P1",
                "sessionViewerFullscreenUrl": fullscreen,
                "sessionViewerUrl": viewer,
                "title": "Example",
                "url": "https://example.com/",
            },
            {
                "favicon": null,
                "id": null,
                "sessionViewerFullscreenUrl": fullscreen,
                "sessionViewerUrl": viewer,
                "title": null,
                "url": null,
            },
        ],
        "sessionViewerFullscreenUrl": fullscreen,
        "sessionViewerUrl": viewer,
        "viewers": 0,
        "websocketUrl": ws,
        "wsUrl": ws,
    });
    assert_eq!(reply.json(), expected);
    assert_eq!(h.host.calls(), ["pages 4242"]);
}

#[tokio::test]
async fn the_context_comes_from_the_host() {
    let h = Harness::new().await;
    let id = h.live().id;
    let reply = h.tcp(get(&format!("/v1/sessions/{id}/context"))).await;
    assert_eq!(reply.status, 200);
    let expected = json!({
        "cookies": [{"name": "k", "value": "v", "domain": "example.com"}],
        "localStorage": {},
        "sessionStorage": {},
    });
    assert_eq!(reply.json(), expected);
    assert_eq!(h.host.calls(), ["context 4242"]);
}

#[tokio::test]
async fn a_host_failure_is_502_while_the_session_lives_and_404_once_it_ended() {
    let h = Harness::new().await;
    let rec = h.live();
    let id = &rec.id;
    h.host.fail(
        "pages",
        HostErrorKind::Retryable,
        "the CDP connection was lost",
    );
    let uri = format!("/v1/sessions/{id}/live-details");
    let reply = h.tcp(get(&uri)).await;
    reply.assert_error(502, "listing the pages of session");
    reply.assert_error(502, "the CDP connection was lost");

    // The session ends while the host call runs: its second read says so.
    h.restate.script("get", Answer::record(rec.clone()));
    let gone = ended(rec.clone(), SessionStatus::Releasing, "released");
    h.restate.script("get", Answer::record(gone));
    let reply = h.tcp(get(&uri)).await;
    reply.assert_error(404, &format!("session {id} is releasing"));

    h.host
        .fail("context", HostErrorKind::Permanent, "browser is gone");
    let reply = h.tcp(get(&format!("/v1/sessions/{id}/context"))).await;
    reply.assert_error(502, "reading the context of session");
}

#[tokio::test]
async fn release_answers_the_released_session() {
    let h = Harness::new().await;
    let id = h.live().id;
    let reply = h
        .tcp(post(&format!("/v1/sessions/{id}/release"), json!({})))
        .await;
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["success"], true);
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["status"], "released");
    // The SDKs' `SessionReleaseResponse` requires `message`.
    assert_eq!(body["message"], format!("Session {id} released"));
    assert_eq!(h.restate.handlers(), [format!("release {id}")]);
}

/// The steel SDKs validate `status` against `live`, `released` and `failed`: bro's passing
/// statuses fold into those, and `broStatus` keeps the exact one for bro's CLI and TUI.
#[tokio::test]
async fn passing_statuses_show_as_the_ones_the_sdks_know() {
    let h = Harness::new().await;
    for (exact, steel) in [
        (SessionStatus::Starting, "live"),
        (SessionStatus::Live, "live"),
        (SessionStatus::Releasing, "released"),
        (SessionStatus::Released, "released"),
        (SessionStatus::Failed, "failed"),
    ] {
        let rec = crate::protocol::session::SessionRecord {
            status: exact,
            ..live_record(&SessionId::random())
        };
        h.restate.put(rec.clone());
        for reply in [
            h.tcp(get(&format!("/v1/sessions/{}", rec.id))).await,
            h.unix(get(&format!("/v1/sessions/{}", rec.id))).await,
        ] {
            let body = reply.json();
            assert_eq!(body["status"], steel, "{exact}");
            assert_eq!(body["broStatus"], exact.as_str());
            let back: crate::protocol::steel::SessionDetails =
                serde_json::from_value(body).unwrap();
            assert_eq!(back.status, exact);
        }
        let listed = h.tcp(get("/v1/sessions")).await.json();
        let statuses: Vec<_> = listed["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["status"].as_str().unwrap().to_string())
            .collect();
        assert!(
            statuses
                .iter()
                .all(|s| ["live", "released", "failed"].contains(&s.as_str())),
            "{statuses:?}"
        );
    }
}

#[tokio::test]
async fn the_list_pages_oldest_first_and_filters_by_status() {
    let h = Harness::new().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let rec = crate::protocol::session::SessionRecord {
            created_at_ms: 1_000 + n,
            ..live_record(&SessionId::random())
        };
        ids.push(rec.id.to_string());
        h.restate.put(rec);
    }
    let released = ended(
        live_record(&SessionId::random()),
        SessionStatus::Released,
        "x",
    );
    h.restate.put(released);
    let reply = h.tcp(get("/v1/sessions?status=live&limit=2")).await;
    let page: Vec<_> = reply.json()["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(page, ids[..2]);
    let next = format!("/v1/sessions?status=live&cursorId={}", ids[1]);
    let reply = h.tcp(get(&next)).await;
    assert_eq!(reply.json()["sessions"][0]["id"], ids[2].as_str());
    assert_eq!(reply.json()["sessions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_status_filter_takes_the_exact_status() {
    let h = Harness::new().await;
    let put = |status: SessionStatus| {
        let rec = crate::protocol::session::SessionRecord {
            status,
            ..live_record(&SessionId::random())
        };
        h.restate.put(rec.clone());
        rec.id.to_string()
    };
    let starting = put(SessionStatus::Starting);
    let live = put(SessionStatus::Live);
    let releasing = put(SessionStatus::Releasing);
    let failed = put(SessionStatus::Failed);
    let ids = |query: &str| {
        let query = query.to_string();
        let h = &h;
        async move {
            let reply = h.tcp(get(&format!("/v1/sessions?status={query}"))).await;
            let mut out: Vec<(String, String, String)> = reply.json()["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["id"].as_str().unwrap().to_string(),
                        s["status"].as_str().unwrap().to_string(),
                        s["broStatus"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            out.sort();
            out
        }
    };
    // Only what a client can connect to now: a starting session shows as live, but its
    // browser is not reachable yet.
    assert_eq!(
        ids("live").await,
        vec![(live.clone(), "live".into(), "live".into())]
    );
    assert_eq!(ids("released").await, vec![]);
    assert_eq!(
        ids("starting").await,
        vec![(starting, "live".into(), "starting".into())]
    );
    assert_eq!(
        ids("releasing").await,
        vec![(releasing, "released".into(), "releasing".into())]
    );
    assert_eq!(
        ids("failed").await,
        vec![(failed, "failed".into(), "failed".into())]
    );
}

#[tokio::test]
async fn an_unknown_route_is_404_on_both_doors() {
    let h = Harness::new().await;
    let reply = h.tcp(get("/v1/nothing")).await;
    reply.assert_error(404, "Route GET:/v1/nothing not found");
    let reply = h.unix(get("/v1/nothing")).await;
    reply.assert_error(404, "Route GET:/v1/nothing not found");
}
