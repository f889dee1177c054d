//! Per-session files (`/v1/sessions/{id}/files...`): uploads, the browser's downloads, and
//! their listing, download, deletion and zip. They live in the session's directory and go
//! with it when the session ends (steel-browser keeps one global folder instead).
//!
//! Only HTTP is here: the routes parse the request, call the session's [`WorkerHost`]
//! (`files`, `read_file`, `upload_file` + `place_upload`, `delete_file`, `clear_files`,
//! `zip_files`) and build the response (headers, content type, attachment name). The host
//! owns the files (locally `worker::files` with its `serve`, `upload` and `stream`): it keeps
//! the client's names inside the files dir (no `..`, no symlink followed), streams bytes from
//! and to disk in bounded chunks, writes at most a few zips at once, and enforces the files
//! quota (`--files-quota`) on uploads (413) and on the browser's downloads
//! (`worker::downloads`).
//! A multipart upload is parsed here (`files/upload.rs`), its header bounds and idle timeout
//! too; its file part's bytes stream on to the host as they arrive.
//!
//! [`WorkerHost`]: crate::host::WorkerHost

mod upload;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::api::sessions::{live_worker, parse_id};
use crate::api::{ApiError, AppState};
use crate::host::WorkerHost;
use crate::host::{FileEntry, FilesOf};
use crate::protocol::files::{FileDetails, FileList};
use crate::protocol::steel::ErrorBody;
use crate::protocol::steel::iso8601_ms;

/// The file routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/v1/sessions/{id}/files",
            get(list)
                .post(upload)
                .delete(delete_all)
                // An upload is bounded by the session's files quota while it streams to disk.
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/sessions/{id}/files.zip", get(archive))
        .route(
            "/v1/sessions/{id}/files/{*path}",
            get(download).delete(delete_one),
        )
}

/// A file the host found, as the API shows it.
impl From<FileEntry> for FileDetails {
    fn from(e: FileEntry) -> Self {
        FileDetails {
            path: e.path,
            size: e.size,
            last_modified: iso8601_ms(e.modified_ms),
        }
    }
}

/// Whose files a request names: a live session and its browser. The id is checked first, then
/// the session: a bad id is 400, an unknown or ended session 404.
async fn files_of(st: &AppState, id: &str) -> Result<(Arc<dyn WorkerHost>, FilesOf), ApiError> {
    let session_id = parse_id(id)?;
    let (rec, worker) = live_worker(st, &session_id).await?;
    Ok((st.host_of(&rec.node)?, FilesOf { session_id, worker }))
}

/// `GET /v1/sessions/{id}/files` → `{"data": [FileDetails], "quota", "used", "downloadsStopped"?}`.
#[utoipa::path(get, path = "/v1/sessions/{id}/files", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)")), responses((status = 200, description = "{\"data\": [FileDetails], \"quota\": bytes, \"used\": bytes, \"downloadsStopped\": why, while downloads are stopped}"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list(
    State(st): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let (host, of) = files_of(&st, &id).await?;
    let listing = host.files(of).await?;
    let body = FileList {
        data: listing.entries.into_iter().map(FileDetails::from).collect(),
        quota: listing.quota,
        used: listing.used,
        downloads_stopped: listing.downloads_stopped,
    };
    Ok(Json(body).into_response())
}

/// `POST /v1/sessions/{id}/files`: multipart with a `file` part and an optional `path`.
#[utoipa::path(post, path = "/v1/sessions/{id}/files", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)")), request_body(content_type = "multipart/form-data", description = "A `file` part and an optional `path`"), responses((status = 200, body = FileDetails), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, description = "The file would pass the session's files quota", body = ErrorBody)))]
async fn upload(
    State(st): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    req: Request,
) -> Response {
    upload::receive(&st, &id, req).await
}

/// `GET /v1/sessions/{id}/files/{path}`: the file, as an attachment.
#[utoipa::path(get, path = "/v1/sessions/{id}/files/{path}", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)"), ("path" = String, Path, description = "Relative file path")), responses((status = 200, description = "The file"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn download(
    State(st): State<Arc<AppState>>,
    UrlPath((id, raw)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let (host, of) = files_of(&st, &id).await?;
    let file = host.read_file(of, raw).await?;
    let path = Path::new(&file.path);
    let modified = file.modified_ms.map(iso8601_ms).unwrap_or_default();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().replace(['"', '\\', '\r', '\n'], ""))
        .unwrap_or_default();
    let headers = [
        (header::CONTENT_TYPE, mime_of(path).to_string()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ),
        (header::LAST_MODIFIED, modified),
        (header::CONTENT_LENGTH, file.size.to_string()),
    ];
    Ok((headers, Body::from_stream(file.body)).into_response())
}

/// `DELETE /v1/sessions/{id}/files/{path}` → 204.
#[utoipa::path(delete, path = "/v1/sessions/{id}/files/{path}", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)"), ("path" = String, Path, description = "Relative file path")), responses((status = 204, description = "Deleted"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_one(
    State(st): State<Arc<AppState>>,
    UrlPath((id, raw)): UrlPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (host, of) = files_of(&st, &id).await?;
    host.delete_file(of, raw).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/sessions/{id}/files` → 204.
#[utoipa::path(delete, path = "/v1/sessions/{id}/files", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)")), responses((status = 204, description = "Deleted"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_all(
    State(st): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    let (host, of) = files_of(&st, &id).await?;
    host.clear_files(of).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/sessions/{id}/files.zip`: every file, deflated, streamed as it is written.
#[utoipa::path(get, path = "/v1/sessions/{id}/files.zip", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)")), responses((status = 200, description = "A zip of every file", content_type = "application/zip"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, description = "Too many zips being written at once", body = ErrorBody)))]
async fn archive(
    State(st): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let (host, of) = files_of(&st, &id).await?;
    let zip = host.zip_files(of).await?;
    let headers = [
        (header::CONTENT_TYPE, "application/zip".to_string()),
        (
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"files.zip\"".to_string(),
        ),
    ];
    Ok((headers, Body::from_stream(zip)).into_response())
}

/// A content type from the file extension.
fn mime_of(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "log" => "text/plain",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "csv" => "text/csv",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(mime_of(Path::new("a/b.TXT")), "text/plain");
        assert_eq!(mime_of(Path::new("x.jpeg")), "image/jpeg");
        assert_eq!(mime_of(Path::new("noext")), "application/octet-stream");
    }
}
