//! steel-browser compatible JSON (see `steel-api.md` §3): request bodies and the
//! `SessionDetails` shape, which carries the union of steel-browser's and the SDK's fields.

use serde::{Deserialize, Serialize};

pub use crate::protocol::session::OptimizeBandwidth;
use crate::protocol::session::{
    Dimensions, MAX_DIMENSION, MAX_TIMEOUT_MS, MIN_DIMENSION, SessionRecord, SessionStatus,
    check_dimension, check_ms,
};

/// `SessionDetails` shows a `proxyUrl` redacted; the API's error messages quote it so too.
pub use crate::protocol::proxy_url::redact_proxy;

/// Default session timeout in milliseconds (5 minutes, as Steel Cloud documents).
pub const DEFAULT_TIMEOUT_MS: u64 = 300_000;

/// Request header of `POST /v1/sessions` asking a full node to answer 429 at once rather
/// than queue the create for a slot (bro's addition).
pub const NO_WAIT_HEADER: &str = "x-bro-no-wait";

/// Body of `POST /v1/sessions`. Every field is optional and unknown fields are ignored, as
/// steel-browser does; fields bro does not act on yet are accepted and dropped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateSessionRequest {
    /// A UUID chosen by the client; creating twice with one id returns the same session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Window size; each side 1 to 10000 pixels.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_dimensions"
    )]
    pub dimensions: Option<Dimensions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
    /// Milliseconds, at most 604800000 (7 days); 0 means no timeout; absent means
    /// [`DEFAULT_TIMEOUT_MS`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_timeout"
    )]
    #[schema(minimum = 0, maximum = 604_800_000)]
    pub timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_ads: Option<bool>,
    /// Milliseconds without CDP traffic after which the session is released, at most
    /// 604800000 (7 days); 0 means never.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_inactivity_timeout"
    )]
    #[schema(minimum = 0, maximum = 604_800_000)]
    pub inactivity_timeout: Option<u64>,
    /// `{"device": "desktop" | "mobile"}`; mobile gives a phone-sized window by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_config: Option<DeviceConfig>,
    /// Cookies and localStorage to put in the browser before the client connects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_context: Option<SessionContext>,
    /// What the pages do not load: `true` (images, media and stylesheets) or the object.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_optimize_bandwidth"
    )]
    #[schema(value_type = Option<Object>)]
    pub optimize_bandwidth: Option<OptimizeBandwidth>,
    /// bro's addition: record the session's pages (absent: the daemon's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<bool>,
    /// bro's addition: bytes of memory the browser may use, a number or a size such as
    /// `"512MiB"` (64 MiB to 1 TiB, and at most the daemon's `max_session_memory`); past it
    /// the session fails with reason `memory limit`. Absent: the daemon's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub memory_limit: Option<MemoryLimit>,
    /// bro's addition: the browser's CPU weight against other sessions' (1 to 10000; 100 is
    /// an even share). Absent: the daemon's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_share: Option<u32>,
    /// Every other field: accepted, and reported back in `ignoredOptions` unless it is off.
    #[serde(flatten, default, skip_serializing_if = "serde_json::Map::is_empty")]
    #[schema(ignore)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// A create's `memoryLimit`: bytes, or a size such as `"512MiB"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MemoryLimit {
    Bytes(u64),
    Text(String),
}

impl MemoryLimit {
    /// The bytes, checked against the bounds of a memory limit.
    pub fn bytes(&self) -> Result<u64, String> {
        let bytes = match self {
            MemoryLimit::Bytes(n) => *n,
            MemoryLimit::Text(s) => crate::protocol::size::parse_size(s)?,
        };
        crate::protocol::session::check_memory_limit(bytes)
    }
}

/// `optimizeBandwidth`: a boolean (`true` blocks images, media and stylesheets, `false`
/// nothing) or the object, whose unknown keys are refused (a misspelt key would block nothing).
fn de_optimize_bandwidth<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<OptimizeBandwidth>, D::Error> {
    use serde::de::Error;
    const KEYS: [&str; 5] = [
        "blockImages",
        "blockMedia",
        "blockStylesheets",
        "blockHosts",
        "blockUrlPatterns",
    ];
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Bool(on)) => Ok(Some(if on {
            OptimizeBandwidth::all_types()
        } else {
            OptimizeBandwidth::default()
        })),
        Some(serde_json::Value::Object(map)) => {
            if let Some(key) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
                return Err(D::Error::custom(format!(
                    "optimizeBandwidth.{key} is not an option (expected {})",
                    KEYS.join(", ")
                )));
            }
            serde_json::from_value(serde_json::Value::Object(map))
                .map(Some)
                .map_err(|e| D::Error::custom(format!("optimizeBandwidth: {e}")))
        }
        Some(other) => Err(D::Error::custom(format!(
            "optimizeBandwidth must be a boolean or an object, got {other}"
        ))),
    }
}

fn de_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_bounded_ms(d, "timeout")
}

fn de_inactivity_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_bounded_ms(d, "inactivityTimeout")
}

/// A millisecond option: a whole number from 0 to [`MAX_TIMEOUT_MS`]; anything else (negative,
/// fractional, a string, too large) is an error that names the option and its bound.
fn de_bounded_ms<'de, D: serde::Deserializer<'de>>(
    d: D,
    name: &str,
) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    let Some(value) = Option::<serde_json::Value>::deserialize(d)? else {
        return Ok(None);
    };
    if value.is_null() {
        return Ok(None);
    }
    let ms = whole_number(&value).ok_or_else(|| {
        D::Error::custom(format!(
            "{name} must be a whole number of milliseconds from 0 to {MAX_TIMEOUT_MS} (7 days), \
             got {value}"
        ))
    })?;
    check_ms(name, ms, MAX_TIMEOUT_MS).map_err(D::Error::custom)?;
    Ok(Some(ms))
}

/// `dimensions`: `{"width": W, "height": H}`, each a whole number of pixels within bounds.
fn de_dimensions<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Dimensions>, D::Error> {
    use serde::de::Error;
    let Some(value) = Option::<serde_json::Value>::deserialize(d)? else {
        return Ok(None);
    };
    if value.is_null() {
        return Ok(None);
    }
    let side = |key: &str| -> Result<u32, D::Error> {
        let name = format!("dimensions.{key}");
        let v = value.get(key).ok_or_else(|| {
            D::Error::custom(format!(
                "{name} is missing (dimensions takes width and height, {MIN_DIMENSION} to \
                 {MAX_DIMENSION} pixels each)"
            ))
        })?;
        let px = whole_number(v).ok_or_else(|| {
            D::Error::custom(format!(
                "{name} must be a whole number of pixels from {MIN_DIMENSION} to \
                 {MAX_DIMENSION}, got {v}"
            ))
        })?;
        check_dimension(&name, px).map_err(D::Error::custom)?;
        u32::try_from(px).map_err(D::Error::custom)
    };
    if !value.is_object() {
        return Err(D::Error::custom(format!(
            "dimensions must be an object {{\"width\": W, \"height\": H}}, got {value}"
        )));
    }
    Ok(Some(Dimensions {
        width: side("width")?,
        height: side("height")?,
    }))
}

/// A non-negative whole JSON number (`1000` or `1000.0`) as u64; `None` for anything else.
fn whole_number(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19)
                .map(|f| f as u64)
        }),
        _ => None,
    }
}

/// `deviceConfig` of a create request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceConfig {
    pub device: String,
}

/// Cookies and web storage of a browser, as `GET /v1/sessions/{id}/context` returns them
/// and `sessionContext` takes them (steel-api.md §3.5). Cookies are CDP `Network.Cookie`s.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionContext {
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub cookies: Vec<serde_json::Value>,
    /// origin → key → value.
    #[serde(default)]
    pub local_storage:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub session_storage:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    #[serde(default, rename = "indexedDB", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub indexed_db: Option<serde_json::Value>,
}

impl SessionContext {
    /// Checks that every cookie has the shape of a CDP `Network.CookieParam`: an object with
    /// string `name` and `value`, string `domain`, `path` and `url` when given, and a numeric
    /// `expires`. The browser judges the rest.
    pub fn check(&self) -> Result<(), String> {
        use serde_json::Value;
        for (i, cookie) in self.cookies.iter().enumerate() {
            let Some(obj) = cookie.as_object() else {
                return Err(format!("sessionContext.cookies[{i}] must be an object"));
            };
            for key in ["name", "value"] {
                if !obj.get(key).is_some_and(Value::is_string) {
                    return Err(format!(
                        "sessionContext.cookies[{i}].{key} must be a string"
                    ));
                }
            }
            for key in [
                "domain",
                "path",
                "url",
                "sameSite",
                "priority",
                "sourceScheme",
            ] {
                if obj.get(key).is_some_and(|v| !v.is_string() && !v.is_null()) {
                    return Err(format!(
                        "sessionContext.cookies[{i}].{key} must be a string"
                    ));
                }
            }
            if obj
                .get("expires")
                .is_some_and(|v| !v.is_number() && !v.is_null())
            {
                return Err(format!(
                    "sessionContext.cookies[{i}].expires must be a number"
                ));
            }
        }
        Ok(())
    }
}

impl CreateSessionRequest {
    /// Names of the options sent that bro does not act on (an option set to `false`, `null`,
    /// an empty value or its default is not counted).
    pub fn ignored_options(&self) -> Vec<String> {
        use serde_json::Value;
        let mut out: Vec<String> = self
            .other
            .iter()
            .filter(|(name, v)| match v {
                Value::Null => false,
                // Asking for a headful browser is a request bro does not honour.
                Value::Bool(false) => name.as_str() == "headless",
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
                // `headless: true` is what bro does anyway.
                Value::Bool(true) => name.as_str() != "headless",
                Value::Number(_) => true,
            })
            .map(|(name, _)| name.clone())
            .collect();
        if let Some(ctx) = &self.session_context {
            if !ctx.session_storage.is_empty() {
                out.push("sessionContext.sessionStorage".into());
            }
            if ctx.indexed_db.as_ref().is_some_and(|v| !v.is_null()) {
                out.push("sessionContext.indexedDB".into());
            }
        }
        out.sort();
        out
    }
}

/// One session as steel-browser and the steel SDKs expect it (`SessionDetails`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionDetails {
    pub id: String,
    /// ISO 8601 with milliseconds, UTC.
    pub created_at: String,
    /// `live`, `released` or `failed`: the statuses the steel SDKs know (their strict
    /// validation refuses any other). A session still starting shows as `live`, one being
    /// released as `released`; `broStatus` has the exact one.
    #[serde(rename = "status")]
    #[schema(value_type = String)]
    pub steel_status: SteelStatus,
    /// Milliseconds since creation; final once the session ended.
    pub duration: u64,
    pub event_count: u64,
    pub dimensions: Dimensions,
    /// Milliseconds; 0 means no timeout.
    pub timeout: u64,
    pub credits_used: u64,
    /// `ws://HOST:PORT/?sessionId=ID`, served by bro's CDP proxy.
    pub websocket_url: String,
    pub debug_url: String,
    pub debugger_url: String,
    pub session_viewer_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The proxy URL with any password replaced by `***`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    pub proxy_tx_bytes: u64,
    pub proxy_rx_bytes: u64,
    pub proxy_bytes_used: u64,
    pub proxy_source: Option<String>,
    pub optimize_bandwidth: OptimizeBandwidth,
    pub headless: bool,
    pub solve_captcha: bool,
    pub is_selenium: bool,
    /// bro's addition: why the session failed or ended, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// bro's addition: create options that were accepted but are not supported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_options: Vec<String>,
    /// bro's addition: the node that runs the session's browser.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// bro's addition: the session records its pages.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record: bool,
    /// bro's addition: bytes of memory the browser may use (past them it fails with reason
    /// `memory limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<u64>,
    /// bro's addition: the browser's CPU weight (100 is an even share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_share: Option<u32>,
    /// bro's addition: the exact status, `starting` and `releasing` included (what bro's CLI
    /// and TUI show).
    #[serde(rename = "broStatus")]
    #[schema(value_type = String)]
    pub status: SessionStatus,
}

/// A session's status as the steel SDKs type it (`Literal["live", "released", "failed"]`).
/// bro's two passing statuses fold into the one a steel client can act on: `starting` into
/// `live` (Steel Cloud answers a create only once its session is live, so steel clients never
/// wait on another status; a bro session is starting only while a create waits for it) and
/// `releasing` into `released` (its release is under way and nothing of it can be used).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SteelStatus {
    Live,
    Released,
    Failed,
}

impl From<SessionStatus> for SteelStatus {
    fn from(status: SessionStatus) -> Self {
        match status {
            SessionStatus::Starting | SessionStatus::Live => SteelStatus::Live,
            SessionStatus::Releasing | SessionStatus::Released => SteelStatus::Released,
            SessionStatus::Failed => SteelStatus::Failed,
        }
    }
}

impl SessionDetails {
    /// Builds the steel shape of `rec` as served from `base` (`http://HOST:PORT`).
    pub fn from_record(rec: &SessionRecord, base: &str, now_ms: u64) -> Self {
        let ws_base = base.replacen("http", "ws", 1);
        let proxy = rec.options.proxy_url.as_deref().map(redact_proxy);
        let bytes = rec.proxy_bytes.unwrap_or_default();
        SessionDetails {
            id: rec.id.to_string(),
            created_at: iso8601_ms(rec.created_at_ms),
            steel_status: rec.status.into(),
            duration: rec.duration_ms(now_ms),
            event_count: 0,
            dimensions: rec.options.dimensions.unwrap_or_default(),
            timeout: rec.options.timeout_ms,
            credits_used: 0,
            websocket_url: format!("{ws_base}/?sessionId={}", rec.id),
            // The live viewer page (Steel Cloud's `debugUrl` shape); after the session it
            // sends the browser on to the replay.
            debug_url: format!("{base}/v1/sessions/{}/player", rec.id),
            debugger_url: format!("{base}/json/list?sessionId={}", rec.id),
            session_viewer_url: format!("{base}/v1/sessions/{}/player", rec.id),
            user_agent: rec.options.user_agent.clone(),
            proxy_source: proxy.as_ref().map(|_| "external".to_string()),
            proxy,
            proxy_tx_bytes: bytes.tx,
            proxy_rx_bytes: bytes.rx,
            proxy_bytes_used: bytes.tx + bytes.rx,
            optimize_bandwidth: rec.options.optimize_bandwidth.clone(),
            headless: true,
            solve_captcha: false,
            is_selenium: false,
            reason: rec.reason.clone(),
            ignored_options: rec.options.ignored.clone(),
            node: rec.node.clone(),
            record: rec.options.record,
            memory_limit: rec.options.memory_limit,
            cpu_share: rec.options.cpu_share,
            status: rec.status,
        }
    }
}

/// Body of `GET /v1/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MultipleSessions {
    pub sessions: Vec<SessionDetails>,
}

/// Body of `POST /v1/sessions/{id}/release`: the released session plus `success` and
/// `message` (steel-browser's answer is the session and `success`; the SDKs' type is
/// `success` and `message`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseSessionResponse {
    pub success: bool,
    /// What happened, for people: `Session ID released`.
    #[serde(default)]
    pub message: String,
    #[serde(flatten)]
    pub session: SessionDetails,
}

/// Body of `POST /v1/sessions/release`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseAllResponse {
    pub success: bool,
    pub message: String,
    /// bro's addition: the ids that were released.
    #[serde(default)]
    pub released: Vec<String>,
}

/// The error body of every non-2xx answer: steel-browser's `message` plus Fastify's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub message: String,
    pub status_code: u16,
    pub error: String,
}

/// The last millisecond of year 9999: RFC 3339 has four year digits.
pub const MAX_TIME_MS: u64 = 253_402_300_799_999;

/// Formats Unix milliseconds as `2026-11-27T10:27:51.123Z` (clamped to year 9999, so a
/// corrupt time can neither overflow nor panic the formatter).
pub fn iso8601_ms(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.min(MAX_TIME_MS));
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::session::{ProxyBytes, SessionId, SessionOptions, SessionStatus};

    #[test]
    fn proxy_passwords_are_redacted() {
        assert_eq!(redact_proxy("http://u:p@h:1"), "http://u:***@h:1");
        assert_eq!(redact_proxy("http://h:1"), "http://h:1");
        assert_eq!(redact_proxy("socks5://u@h"), "socks5://u@h");
    }

    #[test]
    fn unsupported_options_are_reported() {
        let req: CreateSessionRequest = serde_json::from_str(
            r#"{"solveCaptcha":true,"headless":true,"isSelenium":false,"region":"",
                "stealthConfig":{"humanizeInteractions":true},"blockAds":true,
                "sessionContext":{"sessionStorage":{"https://a":{"k":"v"}}}}"#,
        )
        .unwrap();
        assert_eq!(
            req.ignored_options(),
            vec![
                "sessionContext.sessionStorage",
                "solveCaptcha",
                "stealthConfig"
            ]
        );
        assert_eq!(req.block_ads, Some(true));
    }

    #[test]
    fn optimize_bandwidth_takes_a_boolean_or_the_object() {
        let parse = |body: &str| serde_json::from_str::<CreateSessionRequest>(body);
        assert_eq!(
            parse(r#"{"optimizeBandwidth":true}"#)
                .unwrap()
                .optimize_bandwidth,
            Some(OptimizeBandwidth::all_types())
        );
        assert!(
            parse(r#"{"optimizeBandwidth":false}"#)
                .unwrap()
                .optimize_bandwidth
                .is_some_and(|o| o.is_off())
        );
        let req = parse(r#"{"optimizeBandwidth":{"blockImages":true,"blockHosts":["ads.test"]}}"#)
            .unwrap();
        let ob = req.optimize_bandwidth.clone().unwrap();
        assert!(ob.block_images && !ob.block_media);
        assert_eq!(ob.block_hosts, vec!["ads.test"]);
        assert!(req.ignored_options().is_empty());
        let err = parse(r#"{"optimizeBandwidth":{"blockImage":true}}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("optimizeBandwidth.blockImage is not an option")
        );
        assert!(parse(r#"{"optimizeBandwidth":"yes"}"#).is_err());
        let many = OptimizeBandwidth {
            block_hosts: vec!["h".into(); 257],
            ..OptimizeBandwidth::default()
        };
        assert!(many.check().unwrap_err().contains("at most 256"));
    }

    #[test]
    fn create_request_ignores_unknown_fields() {
        let req: CreateSessionRequest =
            serde_json::from_str(r#"{"blockAds":true,"timeout":1000,"solveCaptcha":false}"#)
                .unwrap();
        assert_eq!(req.timeout, Some(1000));
    }

    fn fixed_record() -> SessionRecord {
        SessionRecord {
            id: SessionId::parse("8c1f0a54-5f7e-4a8c-9d1e-0f6a1b2c3d4e").unwrap(),
            status: SessionStatus::Released,
            node: "local".into(),
            created_at_ms: 1_795_768_602_668,
            ended_at_ms: Some(1_795_768_662_668),
            options: SessionOptions {
                dimensions: Some(Dimensions {
                    width: 1280,
                    height: 720,
                }),
                user_agent: Some("bro-test/1".into()),
                proxy_url: Some("http://u:pw@proxy:8080".into()),
                timeout_ms: 300_000,
                block_ads: true,
                inactivity_timeout_ms: 0,
                ignored: vec!["solveCaptcha".into()],
                ..SessionOptions::default()
            },
            worker: None,
            reason: Some("released".into()),
            proxy_bytes: Some(ProxyBytes {
                tx: 1200,
                rx: 34000,
            }),
            refused: false,
        }
    }

    /// The JSON shapes clients parse, pinned (`steel-api.md` §3.2, §9).
    #[test]
    fn steel_json_shapes() {
        let base = "http://127.0.0.1:3000";
        let d = SessionDetails::from_record(&fixed_record(), base, 1_795_768_700_000);
        insta::assert_json_snapshot!("session_details", d);
        let release = ReleaseSessionResponse {
            success: true,
            message: format!("Session {} released", d.id),
            session: d.clone(),
        };
        insta::assert_json_snapshot!("release_session", release);
        insta::assert_json_snapshot!("multiple_sessions", MultipleSessions { sessions: vec![d] });
        let err = ErrorBody {
            message: "session x not found".into(),
            status_code: 404,
            error: "Not Found".into(),
        };
        insta::assert_json_snapshot!("error_body", err);
    }

    #[test]
    fn details_carry_the_steel_fields() {
        let rec = SessionRecord {
            id: SessionId::parse("8c1f0a54-5f7e-4a8c-9d1e-0f6a1b2c3d4e").unwrap(),
            status: SessionStatus::Live,
            node: "local".into(),
            created_at_ms: 1_795_768_602_668,
            ended_at_ms: None,
            options: SessionOptions {
                proxy_url: Some("http://u:pw@proxy:8080".into()),
                timeout_ms: 60_000,
                ..Default::default()
            },
            worker: None,
            reason: None,
            proxy_bytes: None,
            refused: false,
        };
        let d = SessionDetails::from_record(&rec, "http://127.0.0.1:3000", 1_795_768_603_668);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["createdAt"], "2026-11-27T08:36:42.668Z");
        assert_eq!(v["duration"], 1000);
        assert_eq!(v["timeout"], 60000);
        assert_eq!(
            v["websocketUrl"],
            "ws://127.0.0.1:3000/?sessionId=8c1f0a54-5f7e-4a8c-9d1e-0f6a1b2c3d4e"
        );
        assert_eq!(v["proxy"], "http://u:***@proxy:8080");
        assert_eq!(v["dimensions"]["width"], 1920);
        for key in [
            "eventCount",
            "creditsUsed",
            "proxyTxBytes",
            "proxyRxBytes",
            "debugUrl",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
    }
}
