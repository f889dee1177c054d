//! `GET /v1/sessions/{id}/events`: a session's recording (rrweb events), in Steel Cloud's
//! shape: a JSON array of events, paged with `limit` and `pointer`, the next page's pointer
//! in the `Next-Cursor` header (what steel-sdk's `sessions.events()` reads). Served while the
//! session runs (the events so far) and after it ended, until its retention ends, by
//! whichever node is asked: the owning node's host reads its file.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::api::sessions::parse_id;
use crate::api::{ApiError, AppState};
use crate::host::RecordingQuery;
use crate::protocol::steel::ErrorBody;

/// The most events one page holds, and the page size when the client does not say.
pub const MAX_LIMIT: u32 = 10_000;
/// The header naming the next page's `pointer`.
pub const NEXT_CURSOR: &str = "next-cursor";

/// The recording routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/v1/sessions/{id}/events", get(events))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    /// Accepted and ignored: events are sent as JSON (gzip is the transport's business).
    #[allow(dead_code)]
    compressed: Option<String>,
    limit: Option<String>,
    pointer: Option<String>,
}

/// `GET /v1/sessions/{id}/events[?limit=N][&pointer=P]`.
#[utoipa::path(get, path = "/v1/sessions/{id}/events", tag = "sessions", params(("id" = String, Path, description = "Session id (a UUID)"), ("limit" = Option<u32>, Query, description = "Most events to return (1 to 10000, default 10000)"), ("pointer" = Option<String>, Query, description = "Where to go on: a previous answer's Next-Cursor header"), ("compressed" = Option<bool>, Query, description = "Accepted and ignored")), responses((status = 200, description = "The session's rrweb events so far, oldest first (empty when it did not record); a Next-Cursor header when more follow"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn events(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let limit = match q.limit.as_deref().filter(|s| !s.is_empty()) {
        None => MAX_LIMIT,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}, got '{text}'"
                )));
            }
        },
    };
    let from = match q.pointer.as_deref().filter(|s| !s.is_empty()) {
        None => 0,
        Some(text) => text.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "pointer '{text}' is not one this route gave (its Next-Cursor header)"
            ))
        })?,
    };
    // 404 for a session never created, or forgotten after its retention.
    let rec = st.ingress.get(&id).await?;
    let page = if rec.options.record {
        let query = RecordingQuery {
            session_id: id,
            from,
            limit,
        };
        st.host_of(&rec.node)?.recording(query).await?
    } else {
        crate::host::RecordingPage {
            events: Vec::new(),
            next: None,
        }
    };
    let body = serde_json::to_vec(&page.events)
        .map_err(|e| ApiError::Internal(format!("writing the events: {e}")))?;
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Some(next) = page.next
        && let Ok(value) = HeaderValue::from_str(&next.to_string())
    {
        response.headers_mut().insert(NEXT_CURSOR, value);
    }
    Ok(response)
}
