//! The live viewer's websocket, `/v1/sessions/cast`, as steel-browser speaks it: screencast
//! frames `{pageId, url, title, favicon, data}` and tab events out, mouse, key and
//! navigation messages in. The same types are what [`WorkerHost::screencast`] takes and gives,
//! so a host elsewhere could serve them; every input is bounded by [`CastInput::check`].
//!
//! [`WorkerHost::screencast`]: crate::host::WorkerHost::screencast

use serde::{Deserialize, Serialize};

use crate::protocol::session::{SessionId, WorkerInfo};

/// Screencasts (page sockets) of one session at once: each holds a CDP connection and a
/// stream of JPEGs, so a ninth viewer is refused rather than slowing the eight.
pub const MAX_SCREENCASTS_PER_SESSION: u32 = 8;
/// Tab-list sockets of one session at once (each holds a CDP connection).
pub const MAX_TAB_WATCHERS_PER_SESSION: u32 = 8;
/// Largest message a viewer may send: input events are a few hundred bytes.
pub const MAX_INPUT_MESSAGE: usize = 64 << 10;
/// Longest URL a viewer may navigate to.
pub const MAX_URL_LEN: usize = 8 << 10;
/// Longest `text`, `key` or `code` of a key event.
pub const MAX_KEY_TEXT: usize = 64;
/// Bound of coordinates and wheel deltas, in pixels either way.
pub const MAX_COORD: f64 = 100_000.0;

/// Which page a screencast shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PageRef {
    /// The page target of this id (`pageId`).
    Id(String),
    /// The page at this position of the session's page list, as `live-details` lists them
    /// (`pageIndex`).
    Index(u32),
}

/// What a viewer socket asks of a session's browser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CastSpec {
    pub session_id: SessionId,
    pub worker: WorkerInfo,
    /// The page to screencast; `None` for steel's tab-discovery socket (tab list only).
    pub page: Option<PageRef>,
    /// JPEG quality, clamped to 10..=90.
    pub quality: u8,
    /// Largest frame, in pixels; clamped to 64..=3840 by 64..=2160.
    pub max_width: u32,
    pub max_height: u32,
    /// Frames a second at most, clamped to 1..=30.
    pub max_fps: u32,
    /// Mouse, key and navigation messages reach the page; when false they are dropped.
    pub interactive: bool,
    /// Bring the page to the front first (`Target.activateTarget`), for a user's explicit
    /// tab switch in an interactive viewer only: a page behind another sends no frames in
    /// headless Chromium, but bringing it forward hides the one in front, and with it what
    /// the client or another viewer watches there.
    #[serde(default)]
    pub activate: bool,
}

impl CastSpec {
    /// The spec with every figure within its bounds.
    pub fn clamped(mut self) -> Self {
        self.quality = self.quality.clamp(10, 90);
        self.max_width = self.max_width.clamp(64, 3840);
        self.max_height = self.max_height.clamp(64, 2160);
        self.max_fps = self.max_fps.clamp(1, 30);
        self
    }
}

/// A message to a viewer: a frame, or one of steel's typed events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CastOutput {
    Frame(CastFrame),
    Event(CastEvent),
}

/// One screencast frame with what the page shows, steel's untyped `{pageId, url, title,
/// favicon, data}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CastFrame {
    pub page_id: String,
    pub url: String,
    pub title: String,
    pub favicon: Option<String>,
    /// The JPEG, base64.
    pub data: String,
}

/// One page of the session, as a tab list names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TabInfo {
    pub id: String,
    pub url: String,
    pub title: String,
    pub favicon: Option<String>,
}

/// steel's events, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum CastEvent {
    /// The session's pages (on a tab-discovery socket, at start and whenever they change).
    TabList {
        tabs: Vec<TabInfo>,
        #[serde(rename = "firstTabId")]
        first_tab_id: Option<String>,
    },
    /// A page closed (tab-discovery socket).
    TabClosed {
        #[serde(rename = "pageId")]
        page_id: String,
    },
    /// The screencast page closed; the socket ends after this.
    TargetClosed {
        #[serde(rename = "pageId")]
        page_id: String,
    },
    /// The answer to `getSelectedText`.
    SelectedTextResponse {
        #[serde(rename = "pageId")]
        page_id: String,
        text: String,
    },
}

/// A message from a viewer. Unknown types (steel's clipboard bridge) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum CastInput {
    MouseEvent {
        event: MouseInput,
    },
    KeyEvent {
        event: KeyInput,
    },
    Navigation {
        event: NavigationInput,
    },
    CloseTab {},
    GetSelectedText {},
    #[serde(other)]
    Unknown,
}

/// A mouse event in the frame's pixels (the host scales it to the page's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MouseInput {
    #[serde(rename = "type")]
    pub kind: MouseKind,
    pub x: f64,
    pub y: f64,
    #[serde(default)]
    pub button: Option<MouseButton>,
    /// The buttons held, as the DOM's `MouseEvent.buttons` (and CDP's) bits: 1 left, 2 right,
    /// 4 middle, 8 back, 16 forward. A move with a button held is a drag.
    #[serde(default)]
    pub buttons: Option<i64>,
    #[serde(default)]
    pub modifiers: Option<i64>,
    #[serde(default)]
    pub click_count: Option<i64>,
    #[serde(default)]
    pub delta_x: Option<f64>,
    #[serde(default)]
    pub delta_y: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MouseKind {
    MousePressed,
    MouseReleased,
    MouseMoved,
    MouseWheel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MouseButton {
    None,
    Left,
    Middle,
    Right,
    Back,
    Forward,
}

impl MouseButton {
    /// The button's bit in `buttons`.
    pub fn bit(self) -> i64 {
        match self {
            MouseButton::None => 0,
            MouseButton::Left => 1,
            MouseButton::Right => 2,
            MouseButton::Middle => 4,
            MouseButton::Back => 8,
            MouseButton::Forward => 16,
        }
    }
}

/// A key event; `text` on a `keyDown` types it into the focused input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInput {
    #[serde(rename = "type")]
    pub kind: KeyKind,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub key_code: Option<i64>,
    #[serde(default)]
    pub modifiers: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KeyKind {
    KeyDown,
    KeyUp,
    RawKeyDown,
    Char,
}

/// Go to `url`, or `back`, `forward` or `refresh`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NavigationInput {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub action: Option<NavigationAction>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NavigationAction {
    Back,
    Forward,
    Refresh,
}

impl CastInput {
    /// Refuses figures and strings out of bounds (a page must never be handed a NaN or a
    /// megabyte of key text).
    pub fn check(&self) -> Result<(), String> {
        let coord = |name: &str, v: f64| {
            if v.is_finite() && v.abs() <= MAX_COORD {
                Ok(())
            } else {
                Err(format!("{name} must be a number within ±{MAX_COORD}"))
            }
        };
        let modifiers = |m: Option<i64>| match m {
            Some(m) if !(0..=15).contains(&m) => Err("modifiers must be within 0..=15".to_string()),
            _ => Ok(()),
        };
        match self {
            CastInput::MouseEvent { event } => {
                coord("x", event.x)?;
                coord("y", event.y)?;
                coord("deltaX", event.delta_x.unwrap_or(0.0))?;
                coord("deltaY", event.delta_y.unwrap_or(0.0))?;
                modifiers(event.modifiers)?;
                if event.click_count.is_some_and(|c| !(0..=3).contains(&c)) {
                    return Err("clickCount must be within 0..=3".into());
                }
                if event.buttons.is_some_and(|b| !(0..=31).contains(&b)) {
                    return Err("buttons must be within 0..=31".into());
                }
                Ok(())
            }
            CastInput::KeyEvent { event } => {
                modifiers(event.modifiers)?;
                for (name, s) in [
                    ("text", &event.text),
                    ("key", &event.key),
                    ("code", &event.code),
                ] {
                    if s.as_ref().is_some_and(|s| s.len() > MAX_KEY_TEXT) {
                        return Err(format!("{name} is longer than {MAX_KEY_TEXT} bytes"));
                    }
                }
                if event.key_code.is_some_and(|c| !(0..=1024).contains(&c)) {
                    return Err("keyCode must be within 0..=1024".into());
                }
                Ok(())
            }
            CastInput::Navigation { event } => match &event.url {
                Some(url) if url.len() > MAX_URL_LEN => {
                    Err(format!("url is longer than {MAX_URL_LEN} bytes"))
                }
                Some(url) if !is_web_url(url) => Err("url must be an http(s) URL".into()),
                _ => Ok(()),
            },
            CastInput::CloseTab {} | CastInput::GetSelectedText {} | CastInput::Unknown => Ok(()),
        }
    }
}

/// `http://…` or `https://…` (a bare host gets `https://` from the viewer): a viewer may not
/// point the page at `file://` or `javascript:`.
pub fn is_web_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn steel_messages_read() {
        let mouse: CastInput = serde_json::from_value(json!({"type": "mouseEvent", "pageId": "P",
            "event": {"type": "mousePressed", "x": 10, "y": 20.5, "button": "left",
                      "modifiers": 0, "clickCount": 1}}))
        .unwrap();
        let CastInput::MouseEvent { event } = &mouse else {
            panic!("{mouse:?}")
        };
        assert_eq!(
            (event.kind, event.x, event.y),
            (MouseKind::MousePressed, 10.0, 20.5)
        );
        assert!(mouse.check().is_ok());
        let key: CastInput = serde_json::from_value(json!({"type": "keyEvent", "pageId": "P",
            "event": {"type": "keyDown", "text": "a", "code": "KeyA", "key": "a", "keyCode": 65}}))
        .unwrap();
        assert!(matches!(key, CastInput::KeyEvent { .. }));
        let other: CastInput =
            serde_json::from_value(json!({"type": "clipboardWrite", "event": {"text": "x"}}))
                .unwrap();
        assert_eq!(other, CastInput::Unknown);
        assert!(serde_json::from_str::<CastInput>("not json").is_err());
    }

    #[test]
    fn out_of_bounds_input_is_refused() {
        let mouse = |x: f64, clicks: i64| CastInput::MouseEvent {
            event: MouseInput {
                kind: MouseKind::MouseMoved,
                x,
                y: 0.0,
                button: None,
                buttons: None,
                modifiers: None,
                click_count: Some(clicks),
                delta_x: None,
                delta_y: None,
            },
        };
        assert!(mouse(f64::NAN, 1).check().is_err());
        assert!(mouse(1e9, 1).check().is_err());
        assert!(mouse(5.0, 99).check().is_err());
        let nav = |url: &str| CastInput::Navigation {
            event: NavigationInput {
                url: Some(url.into()),
                action: None,
            },
        };
        assert!(nav("https://example.com/").check().is_ok());
        assert!(nav("HTTP://example.com/").check().is_ok());
        for url in [
            "file:///etc/passwd",
            "FILE:///etc/passwd",
            "javascript:alert(1)",
            "data:text/html,x",
            "chrome://settings",
            "view-source:https://a/",
            "about:blank",
            "ws://a/",
            "/etc/passwd",
            " file:///etc/passwd",
        ] {
            assert!(nav(url).check().is_err(), "{url}");
        }
        let key = CastInput::KeyEvent {
            event: KeyInput {
                kind: KeyKind::KeyDown,
                text: Some("x".repeat(65)),
                code: None,
                key: None,
                key_code: None,
                modifiers: None,
            },
        };
        assert!(key.check().is_err());
    }

    #[test]
    fn frames_and_events_are_steels_json() {
        let frame = CastOutput::Frame(CastFrame {
            page_id: "P".into(),
            url: "https://a/".into(),
            title: "A".into(),
            favicon: None,
            data: "/9j/".into(),
        });
        assert_eq!(
            serde_json::to_value(&frame).unwrap(),
            json!({"pageId": "P", "url": "https://a/", "title": "A", "favicon": null, "data": "/9j/"})
        );
        let list = CastOutput::Event(CastEvent::TabList {
            tabs: vec![],
            first_tab_id: None,
        });
        assert_eq!(
            serde_json::to_value(&list).unwrap(),
            json!({"type": "tabList", "tabs": [], "firstTabId": null})
        );
        let text = serde_json::to_string(&frame).unwrap();
        assert_eq!(serde_json::from_str::<CastOutput>(&text).unwrap(), frame);
    }

    #[test]
    fn figures_are_clamped() {
        let spec = CastSpec {
            session_id: SessionId::random(),
            worker: WorkerInfo {
                pid: 1,
                start_time: 1,
                port: 1,
                ws_path: String::new(),
                dir: "/x".into(),
            },
            page: None,
            quality: 255,
            max_width: 100_000,
            max_height: 0,
            max_fps: 1000,
            interactive: true,
            activate: false,
        }
        .clamped();
        assert_eq!(
            (spec.quality, spec.max_width, spec.max_height, spec.max_fps),
            (90, 3840, 64, 30)
        );
    }
}
