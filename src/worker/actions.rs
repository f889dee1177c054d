//! steel's quick actions as page work over CDP: load a URL in a fresh tab of a session's
//! browser, then scrape it, take a JPEG screenshot or print it to PDF. The tab is closed
//! afterwards; the session itself is the caller's to end.

use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::network::{self, EventResponseReceived, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::{
    self, EventLoadEventFired, GetLayoutMetricsParams, NavigateParams, PrintToPdfParams,
};
use chromiumoxide::cdp::browser_protocol::target::{SessionId, TargetId};
use chromiumoxide::types::Binary;
use serde_json::Value;

use crate::host::{HostError, HostErrorKind, PageOutput, PageWork};
use crate::protocol::session::WorkerInfo;
use crate::worker::cdp::{Cdp, CdpError};
use crate::worker::page::{browser_url, by_value, clip, jpeg};

/// The fields of `Network.responseReceived` a load reads: only these, so a field of a newer
/// Chromium's `Response` that chromiumoxide's types do not know (an enum value, say) cannot
/// make the event undecodable and the status code 0.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DocumentResponse {
    loader_id: network::LoaderId,
    /// `Document`, `Script`, …: text, so a resource type added later decodes too.
    r#type: String,
    response: DocumentStatus,
}

#[derive(Debug, serde::Deserialize)]
struct DocumentStatus {
    status: i64,
}

impl chromiumoxide::types::MethodType for DocumentResponse {
    fn method_id() -> chromiumoxide::types::MethodId {
        EventResponseReceived::method_id()
    }
}

/// How long a page may take to load (steel uses the same 30 s).
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// A tab opened on a URL, with the HTTP status of its document.
pub struct LoadedPage {
    cdp: Cdp,
    target: TargetId,
    session: SessionId,
    pub status_code: u16,
}

/// Opens `url` in a new tab of the worker's browser and waits for its load event (and then
/// `delay_ms` more).
pub async fn load(w: &WorkerInfo, url: &str, delay_ms: u64) -> Result<LoadedPage, CdpError> {
    let mut cdp = Cdp::connect(&browser_url(w)).await?;
    let (target, session) = cdp.open_page("about:blank").await?;
    let s = Some(&session);
    cdp.call_in(s, page::EnableParams::default()).await?;
    cdp.call_in(s, network::EnableParams::default()).await?;
    let nav = cdp.call_in(s, NavigateParams::new(url)).await?;
    if let Some(err) = nav.error_text.filter(|e| !e.is_empty()) {
        let _ = cdp.close_page(&target).await;
        return Err(CdpError::Call {
            method: "Page.navigate".into(),
            message: format!("{url}: {err}"),
        });
    }
    let mut status_code = 0;
    let deadline = tokio::time::Instant::now() + LOAD_TIMEOUT;
    // The document's response comes before the load event; read its status on the way.
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ev = cdp.next_event(s, left).await?;
        if let Some(r) = ev.decode::<DocumentResponse>() {
            if Some(&r.loader_id) == nav.loader_id.as_ref()
                && r.r#type == ResourceType::Document.as_ref()
            {
                status_code = u16::try_from(r.response.status).unwrap_or(0);
            }
        } else if ev.is::<EventLoadEventFired>() {
            break;
        }
    }
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms.min(30_000))).await;
    }
    Ok(LoadedPage {
        cdp,
        target,
        session,
        status_code,
    })
}

impl LoadedPage {
    /// Runs `expression` in the page and returns its JSON value.
    pub async fn eval(&mut self, expression: &str) -> Result<Value, CdpError> {
        let mut params = by_value(expression);
        params.await_promise = Some(true);
        let r = self.cdp.call_in(Some(&self.session), params).await?;
        if let Some(ex) = r.exception_details {
            let message = ex
                .exception
                .and_then(|e| e.description)
                .unwrap_or_else(|| "exception".into());
            return Err(CdpError::Call {
                method: "Runtime.evaluate".into(),
                message,
            });
        }
        Ok(r.result.value.unwrap_or(Value::Null))
    }

    /// A JPEG of the viewport, or of the whole page with `full_page`.
    pub async fn screenshot(&mut self, full_page: bool) -> Result<Vec<u8>, CdpError> {
        let mut params = jpeg(90, None);
        if full_page {
            let m = self
                .cdp
                .call_in(Some(&self.session), GetLayoutMetricsParams::default())
                .await?;
            let size = &m.css_content_size;
            params.capture_beyond_viewport = Some(true);
            params.clip = clip(size.width, size.height, 1.0);
        }
        let r = self.cdp.call_in(Some(&self.session), params).await?;
        decode(&r.data)
    }

    /// The page printed to PDF.
    pub async fn pdf(&mut self) -> Result<Vec<u8>, CdpError> {
        let params = PrintToPdfParams {
            print_background: Some(true),
            ..Default::default()
        };
        let r = self.cdp.call_in(Some(&self.session), params).await?;
        decode(&r.data)
    }

    /// Closes the tab.
    pub async fn close(mut self) {
        let _ = self.cdp.close_page(&self.target).await;
    }
}

fn decode(data: &Binary) -> Result<Vec<u8>, CdpError> {
    use base64::Engine;
    let text: &str = data.as_ref();
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| CdpError::Call {
            method: "decode".into(),
            message: format!("bad base64 from the browser: {e}"),
        })
}

/// The in-page script of `scrape`: content in the requested formats, metadata and links.
/// Markdown and the readable extract are made in the page from the live DOM.
pub const SCRAPE_JS: &str = include_str!("scrape.js");

/// Runs a quick action: loads the page, takes what `work` asks for, closes the tab. A page
/// that does not load because of the URL (DNS, refused, TLS…) is [`HostErrorKind::Refused`];
/// every other failure is the browser's.
pub async fn run(w: &WorkerInfo, work: &PageWork) -> Result<PageOutput, HostError> {
    let mut page = load(w, &work.url, work.delay_ms).await.map_err(|e| {
        let err = crate::worker::page_error(e);
        HostError::new(
            err.kind,
            format!("loading {} failed: {}", work.url, err.message),
        )
    })?;
    let out = take(&mut page, work).await;
    page.close().await;
    out
}

/// What `work` asks of a loaded page; the first step that fails ends it.
async fn take(page: &mut LoadedPage, work: &PageWork) -> Result<PageOutput, HostError> {
    let failed = |what: &str| {
        let what = what.to_string();
        move |e: CdpError| HostError::new(HostErrorKind::Retryable, format!("{what} failed: {e}"))
    };
    let mut out = PageOutput {
        status_code: page.status_code,
        ..PageOutput::default()
    };
    if let Some(formats) = &work.scrape {
        let script = format!(
            "({SCRAPE_JS})({})",
            serde_json::to_string(formats).unwrap_or_default()
        );
        out.scraped = Some(page.eval(&script).await.map_err(failed("scraping"))?);
    }
    if work.screenshot {
        out.screenshot = Some(
            page.screenshot(work.full_page)
                .await
                .map_err(failed("screenshot"))?,
        );
    }
    if work.pdf {
        out.pdf = Some(page.pdf().await.map_err(failed("pdf"))?);
    }
    Ok(out)
}
