//! Page-level work the daemon does in a session's browser over CDP: putting a
//! `sessionContext` in before the client connects, reading it back, listing pages.

use std::collections::BTreeMap;
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::fetch::{
    self, EventRequestPaused, FulfillRequestParams, HeaderEntry, RequestPattern,
};
use chromiumoxide::cdp::browser_protocol::network::CookieParam;
use chromiumoxide::cdp::browser_protocol::page::{
    self, CaptureScreenshotFormat, CaptureScreenshotParams, EventLoadEventFired,
    GetLayoutMetricsParams, NavigateParams, Viewport,
};
use chromiumoxide::cdp::browser_protocol::storage::{GetCookiesParams, SetCookiesParams};
use chromiumoxide::cdp::browser_protocol::target::GetTargetsParams;
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use serde_json::Value;

use crate::protocol::control::Preview;
use crate::protocol::session::WorkerInfo;
use crate::protocol::steel::SessionContext;
use crate::worker::cdp::{Cdp, CdpError};

/// The browser-level CDP URL of a worker.
pub fn browser_url(w: &WorkerInfo) -> String {
    format!("ws://127.0.0.1:{}{}", w.port, w.ws_path)
}

/// Sets the context's cookies and localStorage in a fresh browser. localStorage is written
/// from a page of each origin, whose document bro answers itself (`Fetch.fulfillRequest`), so
/// nothing goes to the network.
pub async fn apply_context(w: &WorkerInfo, ctx: &SessionContext) -> Result<(), CdpError> {
    let mut cdp = Cdp::connect(&browser_url(w)).await?;
    let cookies = ctx
        .cookies
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cookie_param(c).map_err(|e| CdpError::Call {
                method: "Storage.setCookies".into(),
                message: format!("cookie {i}: {e}"),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !cookies.is_empty() {
        cdp.call(SetCookiesParams::new(cookies)).await?;
    }
    for (origin, items) in &ctx.local_storage {
        if !(origin.starts_with("http://") || origin.starts_with("https://")) || items.is_empty() {
            continue;
        }
        let (target, session) = cdp.open_page("about:blank").await?;
        let s = Some(&session);
        cdp.call_in(s, page::EnableParams::default()).await?;
        let pattern = RequestPattern {
            url_pattern: Some(format!("{}/*", origin.trim_end_matches('/'))),
            ..Default::default()
        };
        let intercept = fetch::EnableParams {
            patterns: Some(vec![pattern]),
            ..Default::default()
        };
        cdp.call_in(s, intercept).await?;
        let url = format!("{}/", origin.trim_end_matches('/'));
        // Its answer comes only once the paused request is fulfilled.
        cdp.send_in(s, NavigateParams::new(url)).await?;
        let paused: EventRequestPaused = cdp.event(s, Duration::from_secs(10)).await?;
        let body = {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(b"<!doctype html><title>bro</title>")
        };
        let mut fulfill = FulfillRequestParams::new(paused.request_id, 200);
        fulfill.response_headers = Some(vec![HeaderEntry::new("content-type", "text/html")]);
        fulfill.body = Some(body.into());
        cdp.call_in(s, fulfill).await?;
        cdp.event::<EventLoadEventFired>(s, Duration::from_secs(10))
            .await?;
        let script = format!(
            "(() => {{ const items = {}; for (const [k, v] of Object.entries(items)) localStorage.setItem(k, v); return localStorage.length; }})()",
            serde_json::to_string(items).unwrap_or_else(|_| "{}".into())
        );
        cdp.call_in(s, by_value(script)).await?;
        cdp.close_page(&target).await?;
    }
    Ok(())
}

/// `Runtime.evaluate` of `expression`, answered by value.
pub(crate) fn by_value(expression: impl Into<String>) -> EvaluateParams {
    let mut params = EvaluateParams::new(expression);
    params.return_by_value = Some(true);
    params
}

/// A CDP `Network.Cookie` as a `CookieParam`: output-only keys dropped, session cookies
/// without an expiry. Fails on what no browser would take (a key of the wrong type).
fn cookie_param(cookie: &Value) -> Result<CookieParam, serde_json::Error> {
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
    serde_json::from_value(c)
}

/// Reads the browser's cookies and the localStorage and sessionStorage of its open pages.
pub async fn read_context(w: &WorkerInfo) -> Result<SessionContext, CdpError> {
    let mut cdp = Cdp::connect(&browser_url(w)).await?;
    // As the browser wrote them: they go back to the client unchanged.
    let cookies = cdp.call_json(None, GetCookiesParams::default()).await?;
    let mut ctx = SessionContext {
        cookies: cookies["cookies"].as_array().cloned().unwrap_or_default(),
        ..Default::default()
    };
    let targets = cdp.call(GetTargetsParams::default()).await?.target_infos;
    for page in targets.iter().filter(|t| t.r#type == "page") {
        if !(page.url.starts_with("http://") || page.url.starts_with("https://")) {
            continue;
        }
        let session = cdp.attach(&page.target_id).await?;
        let script = "JSON.stringify({origin: location.origin, local: Object.assign({}, localStorage), session: Object.assign({}, sessionStorage)})";
        let result = cdp.call_in(Some(&session), by_value(script)).await?;
        let _ = cdp.detach(&session).await;
        let Some(text) = result.result.value.as_ref().and_then(Value::as_str) else {
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
    let targets = cdp.call(GetTargetsParams::default()).await?.target_infos;
    let Some(page) = targets.into_iter().find(|t| t.r#type == "page") else {
        return Ok(Preview {
            url: String::new(),
            title: String::new(),
            jpeg: String::new(),
        });
    };
    let session = cdp.attach(&page.target_id).await?;
    let metrics = cdp
        .call_in(Some(&session), GetLayoutMetricsParams::default())
        .await?;
    let viewport = &metrics.css_layout_viewport;
    let width = (viewport.client_width as f64).max(1.0);
    let height = (viewport.client_height as f64).max(1.0);
    let scale = (f64::from(max_width) / width).min(1.0);
    let shot = cdp
        .call_in(Some(&session), jpeg(60, clip(width, height, scale)))
        .await;
    let _ = cdp.detach(&session).await;
    Ok(Preview {
        url: page.url,
        title: page.title,
        jpeg: shot?.data.into(),
    })
}

/// `Page.captureScreenshot` as a JPEG of `quality`, of `clip` if given.
pub(crate) fn jpeg(quality: i64, clip: Option<Viewport>) -> CaptureScreenshotParams {
    CaptureScreenshotParams {
        format: Some(CaptureScreenshotFormat::Jpeg),
        quality: Some(quality),
        clip,
        ..Default::default()
    }
}

/// The area from the page's top left corner `width` by `height` CSS pixels, at `scale`.
pub(crate) fn clip(width: f64, height: f64, scale: f64) -> Option<Viewport> {
    Some(Viewport {
        x: 0.0,
        y: 0.0,
        width,
        height,
        scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cookies_lose_output_only_keys() {
        let c = cookie_param(&json!({"name":"a","value":"b","size":2,"session":true,"expires":-1}));
        assert_eq!(
            serde_json::to_value(c.unwrap()).unwrap(),
            json!({"name":"a","value":"b"})
        );
    }

    #[test]
    fn a_cookie_no_browser_takes_is_refused_before_the_call() {
        let c = cookie_param(&json!({"name":"a","value":"b","domain":"x.test","httpOnly":"yes"}));
        assert!(c.is_err());
    }

    #[test]
    fn page_commands_go_out_as_before() {
        let shot = jpeg(60, clip(800.0, 600.0, 0.5));
        assert_eq!(
            serde_json::to_value(shot).unwrap(),
            json!({"format": "jpeg", "quality": 60,
                   "clip": {"x": 0.0, "y": 0.0, "width": 800.0, "height": 600.0, "scale": 0.5}})
        );
        assert_eq!(
            serde_json::to_value(by_value("1+1")).unwrap(),
            json!({"expression": "1+1", "returnByValue": true})
        );
    }
}
