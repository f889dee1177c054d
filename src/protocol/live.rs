//! The answer of `GET /v1/sessions/{id}/live-details`: steel-browser's keys and the SDK's.
//!
//! Fields are declared in alphabetical order, `initialDimensions` too: the answer used to be
//! built as a `serde_json` map, which sorts its keys, and clients get the same bytes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::protocol::session::{Dimensions, SessionStatus};
use crate::protocol::steel::SessionDetails;

/// A live session's pages and browser, with the URLs to connect to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveDetails {
    pub browser_state: BrowserState,
    pub pages: Vec<LivePage>,
    pub session_viewer_fullscreen_url: String,
    pub session_viewer_url: String,
    /// bro's addition: live viewer screencasts of this session open now.
    pub viewers: u32,
    pub websocket_url: String,
    /// The same as `websocketUrl`, under the name the SDK reads.
    pub ws_url: String,
}

/// The browser of a live session. `userAgent` and `browserVersion` are null when the browser
/// did not say (its `/json/version` did not answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrowserState {
    pub browser_version: Option<String>,
    #[serde(serialize_with = "height_first")]
    pub initial_dimensions: Dimensions,
    pub page_count: usize,
    pub status: SessionStatus,
    pub user_agent: Option<String>,
}

/// One page of a live session; `id`, `url`, `title` and `favicon` are null when the browser
/// left them out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LivePage {
    pub favicon: Option<String>,
    pub id: Option<String>,
    pub session_viewer_fullscreen_url: String,
    pub session_viewer_url: String,
    pub title: Option<String>,
    pub url: Option<String>,
}

/// A page target of a session's browser; a field is `None` when the browser left it out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageInfo {
    pub id: Option<String>,
    pub url: Option<String>,
    pub title: Option<String>,
    pub favicon: Option<String>,
}

/// What a session's browser shows: its pages and what it says of itself (`None` when its
/// `/json/version` did not answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowserPages {
    pub pages: Vec<PageInfo>,
    pub user_agent: Option<String>,
    pub browser_version: Option<String>,
    /// Live viewer screencasts of the browser open now.
    #[serde(default)]
    pub viewers: u32,
}

impl BrowserPages {
    /// From the browser's page targets (`/json/list` entries: `id`, `url`, `title`,
    /// `faviconUrl`) and its `/json/version` answer.
    pub fn from_cdp(pages: &[Value], version: &Value) -> Self {
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(String::from);
        BrowserPages {
            pages: pages
                .iter()
                .map(|p| PageInfo {
                    id: text(p, "id"),
                    url: text(p, "url"),
                    title: text(p, "title"),
                    favicon: text(p, "faviconUrl"),
                })
                .collect(),
            user_agent: text(version, "User-Agent"),
            browser_version: text(version, "Browser"),
            viewers: 0,
        }
    }
}

impl LiveDetails {
    /// The live details of session `d`, whose browser shows `browser`.
    pub fn new(d: &SessionDetails, browser: &BrowserPages) -> Self {
        let viewer = &d.session_viewer_url;
        let pages: Vec<LivePage> = browser
            .pages
            .iter()
            .map(|p| LivePage {
                favicon: p.favicon.clone(),
                id: p.id.clone(),
                session_viewer_fullscreen_url: fullscreen(viewer),
                session_viewer_url: viewer.clone(),
                title: p.title.clone(),
                url: p.url.clone(),
            })
            .collect();
        LiveDetails {
            browser_state: BrowserState {
                browser_version: browser.browser_version.clone(),
                initial_dimensions: d.dimensions,
                page_count: pages.len(),
                status: d.status,
                user_agent: browser.user_agent.clone(),
            },
            pages,
            session_viewer_fullscreen_url: fullscreen(viewer),
            session_viewer_url: viewer.clone(),
            viewers: browser.viewers,
            websocket_url: d.websocket_url.clone(),
            ws_url: d.websocket_url.clone(),
        }
    }
}

/// The session viewer without its controls.
fn fullscreen(viewer: &str) -> String {
    format!("{viewer}?showControls=false")
}

/// `{"height": H, "width": W}`: the key order this answer has always had.
fn height_first<S: serde::Serializer>(d: &Dimensions, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let mut out = s.serialize_struct("Dimensions", 2)?;
    out.serialize_field("height", &d.height)?;
    out.serialize_field("width", &d.width)?;
    out.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::session::{SessionOptions, SessionRecord};
    use serde_json::json;

    /// How `live_details` built its answer before it was typed.
    fn as_built_with_json(d: &SessionDetails, pages: &[Value], version: &Value) -> Value {
        let viewer = d.session_viewer_url.clone();
        let pages: Vec<Value> = pages
            .iter()
            .map(|p| {
                json!({
                    "id": p["id"], "url": p["url"], "title": p["title"],
                    "favicon": p.get("faviconUrl").cloned().unwrap_or(Value::Null),
                    "sessionViewerUrl": viewer,
                    "sessionViewerFullscreenUrl": format!("{viewer}?showControls=false"),
                })
            })
            .collect();
        json!({
            "pages": pages,
            "browserState": {
                "status": d.status,
                "userAgent": version["User-Agent"],
                "browserVersion": version["Browser"],
                "initialDimensions": d.dimensions,
                "pageCount": pages.len(),
            },
            "websocketUrl": d.websocket_url,
            "wsUrl": d.websocket_url,
            "sessionViewerUrl": viewer,
            "sessionViewerFullscreenUrl": format!("{viewer}?showControls=false"),
            "viewers": 0,
        })
    }

    fn details() -> SessionDetails {
        let rec = SessionRecord {
            id: crate::protocol::session::SessionId::parse("8c1f0a54-5f7e-4a8c-9d1e-0f6a1b2c3d4e")
                .unwrap(),
            status: SessionStatus::Live,
            node: "local".into(),
            created_at_ms: 1_795_768_602_668,
            ended_at_ms: None,
            options: SessionOptions {
                dimensions: Some(Dimensions {
                    width: 1280,
                    height: 720,
                }),
                timeout_ms: 60_000,
                ..Default::default()
            },
            worker: None,
            reason: None,
            proxy_bytes: None,
            refused: false,
        };
        SessionDetails::from_record(&rec, "http://127.0.0.1:3000", 1_795_768_603_668)
    }

    #[test]
    fn the_answer_is_byte_identical_to_the_json_it_replaced() {
        let d = details();
        let pages = [
            json!({"id": "A1", "type": "page", "url": "https://example.com/", "title": "Example",
                   "faviconUrl": "https://example.com/favicon.ico", "webSocketDebuggerUrl": "ws://x"}),
            json!({"id": "B2", "type": "page", "url": "about:blank", "title": ""}),
            json!({"type": "page"}),
        ];
        let versions = [
            json!({"Browser": "Chrome/140.0.0.0", "User-Agent": "Mozilla/5.0 HeadlessChrome"}),
            json!({}),
            Value::Null,
        ];
        for version in &versions {
            for n in 0..=pages.len() {
                let typed = serde_json::to_string(&LiveDetails::new(
                    &d,
                    &BrowserPages::from_cdp(&pages[..n], version),
                ))
                .unwrap();
                let built =
                    serde_json::to_string(&as_built_with_json(&d, &pages[..n], version)).unwrap();
                assert_eq!(typed, built);
            }
        }
    }

    #[test]
    fn the_answer_reads_back() {
        let d = details();
        let live = LiveDetails::new(
            &d,
            &BrowserPages::from_cdp(&[json!({"id": "A1"})], &Value::Null),
        );
        let text = serde_json::to_string(&live).unwrap();
        assert_eq!(serde_json::from_str::<LiveDetails>(&text).unwrap(), live);
    }
}
