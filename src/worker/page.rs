//! Page-level work the daemon does in a session's browser over CDP: putting a
//! `sessionContext` in before the client connects, reading it back, listing pages.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cdp::{Cdp, CdpError};
use crate::protocol::control::Preview;
use crate::protocol::session::WorkerInfo;
use crate::protocol::steel::SessionContext;

/// The browser-level CDP URL of a worker.
pub fn browser_url(w: &WorkerInfo) -> String {
    format!("ws://127.0.0.1:{}{}", w.port, w.ws_path)
}

/// Sets the context's cookies and localStorage in a fresh browser. localStorage is written
/// from a page of each origin, whose document bro answers itself (`Fetch.fulfillRequest`), so
/// nothing goes to the network.
pub async fn apply_context(w: &WorkerInfo, ctx: &SessionContext) -> Result<(), CdpError> {
    let mut cdp = Cdp::connect(&browser_url(w)).await?;
    let cookies: Vec<Value> = ctx.cookies.iter().map(cookie_param).collect();
    if !cookies.is_empty() {
        cdp.call("Storage.setCookies", json!({ "cookies": cookies }))
            .await?;
    }
    for (origin, items) in &ctx.local_storage {
        if !(origin.starts_with("http://") || origin.starts_with("https://")) || items.is_empty() {
            continue;
        }
        let (target, session) = cdp.open_page("about:blank").await?;
        let s = Some(session.as_str());
        cdp.call_in(s, "Page.enable", json!({})).await?;
        let pattern = format!("{}/*", origin.trim_end_matches('/'));
        cdp.call_in(
            s,
            "Fetch.enable",
            json!({ "patterns": [{ "urlPattern": pattern }] }),
        )
        .await?;
        let url = format!("{}/", origin.trim_end_matches('/'));
        // Its answer comes only once the paused request is fulfilled.
        cdp.send_in(s, "Page.navigate", json!({ "url": url }))
            .await?;
        let paused = cdp
            .event(s, "Fetch.requestPaused", Duration::from_secs(10))
            .await?;
        let body = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(b"<!doctype html><title>bro</title>")
        };
        cdp.call_in(
            s,
            "Fetch.fulfillRequest",
            json!({ "requestId": paused["requestId"], "responseCode": 200,
                    "responseHeaders": [{ "name": "content-type", "value": "text/html" }],
                    "body": body }),
        )
        .await?;
        cdp.event(s, "Page.loadEventFired", Duration::from_secs(10))
            .await?;
        let script = format!(
            "(() => {{ const items = {}; for (const [k, v] of Object.entries(items)) localStorage.setItem(k, v); return localStorage.length; }})()",
            serde_json::to_string(items).unwrap_or_else(|_| "{}".into())
        );
        cdp.call_in(
            s,
            "Runtime.evaluate",
            json!({ "expression": script, "returnByValue": true }),
        )
        .await?;
        cdp.close_page(&target).await?;
    }
    Ok(())
}

/// A CDP `Network.Cookie` as a `CookieParam`: output-only keys dropped, session cookies
/// without an expiry.
fn cookie_param(cookie: &Value) -> Value {
    let mut c = cookie.clone();
    if let Some(obj) = c.as_object_mut() {
        obj.remove("size");
        obj.remove("session");
        if obj
            .get("expires")
            .and_then(Value::as_f64)
            .is_some_and(|e| e <= 0.0)
        {
            obj.remove("expires");
        }
    }
    c
}

/// Reads the browser's cookies and the localStorage and sessionStorage of its open pages.
pub async fn read_context(w: &WorkerInfo) -> Result<SessionContext, CdpError> {
    let mut cdp = Cdp::connect(&browser_url(w)).await?;
    let cookies = cdp.call("Storage.getCookies", json!({})).await?;
    let mut ctx = SessionContext {
        cookies: cookies["cookies"].as_array().cloned().unwrap_or_default(),
        ..Default::default()
    };
    let targets = cdp.call("Target.getTargets", json!({})).await?;
    let pages = targets["targetInfos"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for page in pages.iter().filter(|t| t["type"] == "page") {
        let url = page["url"].as_str().unwrap_or_default();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            continue;
        }
        let Some(target_id) = page["targetId"].as_str() else {
            continue;
        };
        let session = cdp.attach(target_id).await?;
        let script = "JSON.stringify({origin: location.origin, local: Object.assign({}, localStorage), session: Object.assign({}, sessionStorage)})";
        let result = cdp
            .call_in(
                Some(&session),
                "Runtime.evaluate",
                json!({ "expression": script, "returnByValue": true }),
            )
            .await?;
        let _ = cdp
            .call("Target.detachFromTarget", json!({ "sessionId": session }))
            .await;
        let Some(text) = result["result"]["value"].as_str() else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        let origin = v["origin"].as_str().unwrap_or_default().to_string();
        merge(&mut ctx.local_storage, &origin, &v["local"]);
        merge(&mut ctx.session_storage, &origin, &v["session"]);
    }
    Ok(ctx)
}

fn merge(into: &mut BTreeMap<String, BTreeMap<String, String>>, origin: &str, items: &Value) {
    let Some(obj) = items.as_object().filter(|o| !o.is_empty()) else {
        return;
    };
    let entry = into.entry(origin.to_string()).or_default();
    for (k, v) in obj {
        entry.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
    }
}

/// The browser's page targets from `/json/list`: `{id, url, title, ...}`.
pub async fn pages(http: &reqwest::Client, w: &WorkerInfo) -> Result<Vec<Value>, CdpError> {
    let url = format!("http://127.0.0.1:{}/json/list", w.port);
    let list: Vec<Value> = http
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| CdpError::Connect(e.to_string()))?
        .json()
        .await
        .map_err(|e| CdpError::Connect(e.to_string()))?;
    Ok(list.into_iter().filter(|t| t["type"] == "page").collect())
}

/// Takes a [`Preview`] (the viewport at most `max_width` CSS pixels wide) over a CDP
/// connection of its own, straight to the browser (so it is not client traffic: it neither
/// keeps the session from idling nor shows as a client).
pub async fn preview(w: &WorkerInfo, max_width: u32) -> Result<Preview, CdpError> {
    let mut cdp = Cdp::connect(&browser_url(w)).await?;
    let targets = cdp.call("Target.getTargets", json!({})).await?;
    let infos = targets["targetInfos"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let Some(page) = infos.iter().find(|t| t["type"] == "page") else {
        return Ok(Preview {
            url: String::new(),
            title: String::new(),
            jpeg: String::new(),
        });
    };
    let text = |key: &str| page[key].as_str().unwrap_or_default().to_string();
    let target_id = text("targetId");
    let session = cdp.attach(&target_id).await?;
    let metrics = cdp
        .call_in(Some(&session), "Page.getLayoutMetrics", json!({}))
        .await?;
    let viewport = &metrics["cssLayoutViewport"];
    let width = viewport["clientWidth"].as_f64().unwrap_or(1280.0).max(1.0);
    let height = viewport["clientHeight"].as_f64().unwrap_or(720.0).max(1.0);
    let scale = (f64::from(max_width) / width).min(1.0);
    let shot = cdp
        .call_in(
            Some(&session),
            "Page.captureScreenshot",
            json!({
                "format": "jpeg",
                "quality": 60,
                "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": scale },
            }),
        )
        .await;
    let _ = cdp
        .call("Target.detachFromTarget", json!({ "sessionId": session }))
        .await;
    Ok(Preview {
        url: text("url"),
        title: text("title"),
        jpeg: shot?["data"].as_str().unwrap_or_default().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_lose_output_only_keys() {
        let c = cookie_param(&json!({"name":"a","value":"b","size":2,"session":true,"expires":-1}));
        assert_eq!(c, json!({"name":"a","value":"b"}));
    }
}
