//! Per-session files (`/v1/sessions/{id}/files...`): uploads, the browser's downloads, and
//! their listing, download, deletion and zip. They live in the session's directory and go
//! with it when the session ends (steel-browser keeps one global folder instead).
//!
//! Bytes stream both ways: an upload goes to disk chunk by chunk (`files/upload.rs`), a
//! download and `files.zip` are read in bounded chunks (`files/stream.rs`); file system calls
//! run on blocking threads. The session's files, uploads and downloads together, are bounded by the files
//! quota (`--files-quota`): uploads past it get 413 here, downloads are stopped by the worker
//! (`worker::downloads`).

mod stream;
mod upload;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path as UrlPath, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::api::sessions::{live_worker, parse_id};
use crate::api::{ApiError, AppState};
use crate::protocol::files::{FileDetails, FileList};
use crate::protocol::steel::ErrorBody;
use crate::protocol::steel::iso8601_ms;
use crate::worker::{chromium, downloads, files};

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

/// A file the worker found, as the API shows it.
impl From<files::Entry> for FileDetails {
    fn from(e: files::Entry) -> Self {
        FileDetails {
            path: e.path,
            size: e.size,
            last_modified: iso8601_ms(e.modified_ms),
        }
    }
}

/// The session dir and files dir of a live session (the files dir created on first use). The
/// id is checked first, then the session: a bad id is 400, an unknown or ended session 404.
async fn session_files(st: &AppState, id: &str) -> Result<(PathBuf, PathBuf), ApiError> {
    let id = parse_id(id)?;
    let (_, worker) = live_worker(st, &id).await?;
    let dir = chromium::files_dir(&worker.dir);
    let check = dir.clone();
    let made = blocking(move || {
        // Never its parents: a session that ended meanwhile took its dir with it, and must not
        // get it back.
        match std::fs::create_dir(&check) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        // The root of every name a client gives: a link here would lead all of them away.
        if std::fs::symlink_metadata(&check)?.is_dir() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{} is not a directory",
                check.display()
            )))
        }
    })
    .await?;
    match made {
        Ok(()) => Ok((worker.dir, dir)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(ApiError::NotFound(format!("session {id} ended")))
        }
        Err(e) => Err(ApiError::Internal(format!("files dir: {e}"))),
    }
}

/// Runs blocking file system work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(format!("file task failed: {e}")))
}

/// A client's file name as a path inside the files dir; 400 when it could leave it.
fn safe_path(raw: &str) -> Result<PathBuf, ApiError> {
    files::relative(raw).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "Invalid path provided: '{}'",
            raw.replace('\0', "\\0")
        ))
    })
}

/// The answer to a failed file system call on the client's file `raw`.
fn path_error(raw: &str, err: io::Error) -> ApiError {
    match err.kind() {
        io::ErrorKind::NotFound => ApiError::NotFound(format!("no file '{raw}' in this session")),
        io::ErrorKind::InvalidInput | io::ErrorKind::IsADirectory => {
            ApiError::BadRequest(format!("Invalid path provided: '{raw}': {err}"))
        }
        // O_NOFOLLOW on a symlink.
        _ if err.raw_os_error() == Some(nix::libc::ELOOP) => {
            ApiError::BadRequest(format!("Invalid path provided: '{raw}' is a symlink"))
        }
        _ => ApiError::Internal(format!("'{raw}': {err}")),
    }
}

/// `GET /v1/sessions/{id}/files` → `{"data": [FileDetails], "quota", "used", "downloadsStopped"?}`.
#[utoipa::path(get, path = "/v1/sessions/{id}/files", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)")), responses((status = 200, description = "{\"data\": [FileDetails], \"quota\": bytes, \"used\": bytes, \"downloadsStopped\": why, while downloads are stopped}"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list(
    State(st): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let (session_dir, dir) = session_files(&st, &id).await?;
    let (entries, used, stopped) = blocking(move || {
        (
            files::list(&dir),
            files::usage(&dir),
            downloads::stopped(&session_dir),
        )
    })
    .await?;
    let body = FileList {
        data: entries.into_iter().map(FileDetails::from).collect(),
        quota: st.files_quota,
        used,
        downloads_stopped: stopped.map(|s| s.message),
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
    let (_, dir) = session_files(&st, &id).await?;
    let rel = safe_path(&raw)?;
    let opened = {
        let rel = rel.clone();
        blocking(move || -> io::Result<_> {
            let path = files::resolve(&dir, &rel, false)?;
            let file = files::open_nofollow(&path)?;
            let meta = file.metadata()?;
            if !meta.is_file() {
                return Err(io::ErrorKind::NotFound.into());
            }
            Ok((file, meta))
        })
        .await?
    };
    let (file, meta) = opened.map_err(|e| path_error(&raw, e))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| iso8601_ms(d.as_millis() as u64))
        .unwrap_or_default();
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().replace(['"', '\\', '\r', '\n'], ""))
        .unwrap_or_default();
    let headers = [
        (header::CONTENT_TYPE, mime_of(&rel).to_string()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ),
        (header::LAST_MODIFIED, modified),
        (header::CONTENT_LENGTH, meta.len().to_string()),
    ];
    Ok((headers, stream::file_body(file, meta.len())).into_response())
}

/// `DELETE /v1/sessions/{id}/files/{path}` → 204.
#[utoipa::path(delete, path = "/v1/sessions/{id}/files/{path}", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)"), ("path" = String, Path, description = "Relative file path")), responses((status = 204, description = "Deleted"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_one(
    State(st): State<Arc<AppState>>,
    UrlPath((id, raw)): UrlPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (session_dir, dir) = session_files(&st, &id).await?;
    let rel = safe_path(&raw)?;
    blocking(move || -> io::Result<()> {
        let path = files::resolve(&dir, &rel, false)?;
        // Only files: `remove_file` on a symlink removes the link, never its target.
        if std::fs::symlink_metadata(&path)?.is_dir() {
            return Err(io::ErrorKind::NotFound.into());
        }
        std::fs::remove_file(path)?;
        downloads::clear_stopped(&session_dir);
        Ok(())
    })
    .await?
    .map_err(|e| path_error(&raw, e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /v1/sessions/{id}/files` → 204.
#[utoipa::path(delete, path = "/v1/sessions/{id}/files", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)")), responses((status = 204, description = "Deleted"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_all(
    State(st): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    let (session_dir, dir) = session_files(&st, &id).await?;
    // remove_dir_all does not follow symlinks: a planted link goes, its target stays.
    blocking(move || {
        std::fs::remove_dir_all(&dir)?;
        match std::fs::create_dir(&dir) {
            // The session ended meanwhile: its dir is gone, which is not to be undone.
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        downloads::clear_stopped(&session_dir);
        Ok::<_, io::Error>(())
    })
    .await?
    .map_err(|e| ApiError::Internal(format!("deleting files: {e}")))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/sessions/{id}/files.zip`: every file, deflated, streamed as it is written.
#[utoipa::path(get, path = "/v1/sessions/{id}/files.zip", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)")), responses((status = 200, description = "A zip of every file", content_type = "application/zip"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, description = "Too many zips being written at once", body = ErrorBody)))]
async fn archive(
    State(st): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let (_, dir) = session_files(&st, &id).await?;
    let permit = stream::ZIPS.try_acquire().map_err(|_| {
        ApiError::AtCapacity(format!(
            "{} files.zip downloads are being written (the most at once, across sessions); \
             try again when one is done",
            stream::MAX_ZIPS
        ))
    })?;
    let headers = [
        (header::CONTENT_TYPE, "application/zip".to_string()),
        (
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"files.zip\"".to_string(),
        ),
    ];
    Ok((headers, stream::zip_body(dir, permit, stream::ZIP_STALL)).into_response())
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
    fn paths_that_escape_are_refused() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a\0b", "./a"] {
            let err = safe_path(bad).unwrap_err();
            assert_eq!(err.status(), 400, "{bad:?}");
            assert!(!err.to_string().contains('\0'));
        }
        assert_eq!(safe_path("a/b.txt").unwrap(), PathBuf::from("a/b.txt"));
    }

    #[test]
    fn symlinks_are_client_errors() {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("l")).unwrap();
        let err = files::open_nofollow(&tmp.path().join("l")).unwrap_err();
        assert_eq!(path_error("l", err).status(), 400);
        let missing = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(path_error("x", missing).status(), 404);
    }
}
