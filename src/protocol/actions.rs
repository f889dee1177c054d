//! The body of steel's quick actions (`POST /v1/scrape`, `/v1/screenshot`, `/v1/pdf`), and
//! the answer of a screenshot or PDF to a client that accepts only JSON. Otherwise their
//! answers are the page's content (scrape) or raw JPEG/PDF bytes.

use serde::{Deserialize, Serialize};

/// Steel Cloud's `ScreenshotResponse` and `PdfResponse`: where the bytes are served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ArtifactUrl {
    /// `http://HOST:PORT/v1/artifacts/UUID.jpg` (or `.pdf`), with the API key's rules.
    pub url: String,
}

/// The fields every quick action takes (steel's `ScrapeRequest`, `ScreenshotRequest`,
/// `PDFRequest`); unknown fields are ignored.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionRequest {
    pub url: Option<String>,
    #[serde(default)]
    pub format: Option<Vec<String>>,
    #[serde(default)]
    pub screenshot: bool,
    #[serde(default)]
    pub pdf: bool,
    #[serde(default)]
    pub full_page: bool,
    /// ms to wait after the page loaded, at most 30000.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 30_000)]
    pub delay: Option<u64>,
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// bro's addition: run in a new tab of this live session instead of a new session.
    #[serde(default)]
    pub session_id: Option<String>,
}
