//! Per-session files (`/v1/sessions/{id}/files...`): uploads, the browser's downloads, and
//! their listing, download, deletion and zip. They live in the session's directory and go
//! with it when the session ends (steel-browser keeps one global folder instead).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::api::sessions::{live_worker, parse_id};
use crate::api::{ApiError, AppState};
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
                .layer(DefaultBodyLimit::max(
                    crate::api::access::MAX_UPLOAD as usize,
                )),
        )
        .route("/v1/sessions/{id}/files.zip", get(archive))
        .route(
            "/v1/sessions/{id}/files/{*path}",
            get(download).delete(delete_one),
        )
}

/// steel's `FileDetails`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileDetails {
    pub path: String,
    pub size: u64,
    pub last_modified: String,
}

/// The files directory of a live session (created on first use).
async fn files_dir(st: &AppState, id: &str) -> Result<PathBuf, ApiError> {
    let id = parse_id(id)?;
    let (_, worker) = live_worker(st, &id).await?;
    let dir = crate::worker::chromium::files_dir(&worker.dir);
    std::fs::create_dir_all(&dir).map_err(|e| ApiError::Internal(format!("files dir: {e}")))?;
    Ok(dir)
}

/// A client's relative path, refused when absolute, with `..`, or with a NUL.
fn safe_path(raw: &str) -> Result<PathBuf, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "Invalid path provided: '{}'",
            raw.replace('\0', "\\0")
        ))
    };
    if raw.is_empty() || raw.contains('\0') {
        return Err(bad());
    }
    let path = Path::new(raw);
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad());
    }
    Ok(path.to_path_buf())
}

fn details(root: &Path, file: &Path) -> Option<FileDetails> {
    let meta = std::fs::metadata(file).ok()?;
    let modified = meta
        .modified()
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    Some(FileDetails {
        path: file.strip_prefix(root).ok()?.to_string_lossy().into_owned(),
        size: meta.len(),
        last_modified: iso8601_ms(modified),
    })
}

/// Every regular file under `dir`, newest first.
fn walk(root: &Path) -> Vec<FileDetails> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => out.extend(details(root, &path)),
                _ => {}
            }
        }
    }
    out.sort_by(|a, b| {
        b.last_modified
            .cmp(&a.last_modified)
            .then(a.path.cmp(&b.path))
    });
    out
}

/// `GET /v1/sessions/{id}/files` → `{"data": [FileDetails]}`.
#[utoipa::path(get, path = "/v1/sessions/{id}/files", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)")), responses((status = 200, description = "{\"data\": [FileDetails]}"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn list(
    State(st): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let dir = files_dir(&st, &id).await?;
    Ok(Json(serde_json::json!({ "data": walk(&dir) })))
}

/// `POST /v1/sessions/{id}/files`: multipart with a `file` part and an optional `path`.
#[utoipa::path(post, path = "/v1/sessions/{id}/files", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)")), request_body(content_type = "multipart/form-data", description = "A `file` part and an optional `path`"), responses((status = 200, body = FileDetails), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn upload(
    State(st): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
    mut form: Multipart,
) -> Result<Json<FileDetails>, ApiError> {
    let dir = files_dir(&st, &id).await?;
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::BadRequest(format!("Request must be multipart/form-data: {e}"))
    };
    let (mut name, mut data, mut path) = (None, None, None);
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name() {
            Some("file") => {
                if field.file_name().is_none() && field.content_type().is_none() {
                    return Err(ApiError::BadRequest(
                        "upload the file's bytes as the `file` part; fetching a URL is not supported".into(),
                    ));
                }
                name = field.file_name().map(str::to_string);
                data = Some(field.bytes().await.map_err(bad)?);
            }
            Some("path") => path = Some(field.text().await.map_err(bad)?),
            _ => {}
        }
    }
    let data =
        data.ok_or_else(|| ApiError::BadRequest("No file provided: send a `file` part".into()))?;
    let rel = safe_path(path.as_deref().or(name.as_deref()).unwrap_or("upload"))?;
    let target = dir.join(&rel);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| ApiError::Internal(format!("saving {}: {e}", rel.display())))?;
    }
    std::fs::write(&target, &data)
        .map_err(|e| ApiError::Internal(format!("saving {}: {e}", rel.display())))?;
    details(&dir, &target)
        .map(Json)
        .ok_or_else(|| ApiError::Internal("the saved file vanished".into()))
}

/// `GET /v1/sessions/{id}/files/{path}`: the file, as an attachment.
#[utoipa::path(get, path = "/v1/sessions/{id}/files/{path}", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)"), ("path" = String, Path, description = "Relative file path")), responses((status = 200, description = "The file"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn download(
    State(st): State<Arc<AppState>>,
    UrlPath((id, raw)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    let dir = files_dir(&st, &id).await?;
    let rel = safe_path(&raw)?;
    let file = dir.join(&rel);
    let Some(info) = details(&dir, &file).filter(|_| file.is_file()) else {
        return Err(ApiError::NotFound(format!(
            "no file '{raw}' in session {id}"
        )));
    };
    let bytes =
        std::fs::read(&file).map_err(|e| ApiError::Internal(format!("reading {raw}: {e}")))?;
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().replace('"', ""))
        .unwrap_or_default();
    let headers = [
        (header::CONTENT_TYPE, mime_of(&rel).to_string()),
        (
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        ),
        (header::LAST_MODIFIED, info.last_modified),
    ];
    Ok((headers, Body::from(bytes)).into_response())
}

/// `DELETE /v1/sessions/{id}/files/{path}` → 204.
#[utoipa::path(delete, path = "/v1/sessions/{id}/files/{path}", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)"), ("path" = String, Path, description = "Relative file path")), responses((status = 204, description = "Deleted"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_one(
    State(st): State<Arc<AppState>>,
    UrlPath((id, raw)): UrlPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let dir = files_dir(&st, &id).await?;
    let file = dir.join(safe_path(&raw)?);
    match std::fs::remove_file(&file) {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ApiError::NotFound(format!(
            "no file '{raw}' in session {id}"
        ))),
        Err(e) => Err(ApiError::Internal(format!("deleting {raw}: {e}"))),
    }
}

/// `DELETE /v1/sessions/{id}/files` → 204.
#[utoipa::path(delete, path = "/v1/sessions/{id}/files", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)")), responses((status = 204, description = "Deleted"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_all(
    State(st): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    let dir = files_dir(&st, &id).await?;
    std::fs::remove_dir_all(&dir)
        .map_err(|e| ApiError::Internal(format!("deleting files: {e}")))?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| ApiError::Internal(format!("deleting files: {e}")))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/sessions/{id}/files.zip`: every file, deflated.
#[utoipa::path(get, path = "/v1/sessions/{id}/files.zip", tag = "files", params(("id" = String, Path, description = "Session id (a UUID)")), responses((status = 200, description = "A zip of every file", content_type = "application/zip"), (status = 400, description = "Bad input", body = ErrorBody), (status = 401, description = "Missing or wrong API key", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn archive(
    State(st): State<Arc<AppState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let dir = files_dir(&st, &id).await?;
    let zip_err =
        |e: &dyn std::fmt::Display| ApiError::Internal(format!("building files.zip: {e}"));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for f in walk(&dir) {
        let bytes = std::fs::read(dir.join(&f.path)).map_err(|e| zip_err(&e))?;
        zip.start_file(f.path.as_str(), options)
            .map_err(|e| zip_err(&e))?;
        std::io::Write::write_all(&mut zip, &bytes).map_err(|e| zip_err(&e))?;
    }
    let bytes = zip.finish().map_err(|e| zip_err(&e))?.into_inner();
    let headers = [
        (header::CONTENT_TYPE, "application/zip".to_string()),
        (
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"files.zip\"".to_string(),
        ),
    ];
    Ok((headers, Body::from(bytes)).into_response())
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
            assert!(safe_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(safe_path("a/b.txt").unwrap(), PathBuf::from("a/b.txt"));
    }
}
