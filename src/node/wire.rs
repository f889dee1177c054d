//! What crosses between [`serve`](super::serve) and [`remote`](super::remote): route paths,
//! request payloads, header names, body bounds and the one mapping of [`HostErrorKind`] to an
//! HTTP status. Plain data and pure functions only; no I/O.

use base64::Engine as _;
use http::StatusCode;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use crate::host::{FilesOf, HostError, HostErrorKind, PageWork};
use crate::protocol::session::{SessionOptions, WorkerInfo};

/// Where every route of a node's [`WorkerHost`](crate::host::WorkerHost) lives; a method's
/// route is this, a slash, and the method's name.
pub const HOST_PREFIX: &str = "/bro/node/v1/host";

/// The route of the host method `method` (`launch`, `read_file`, ...).
pub fn host_path(method: &str) -> String {
    format!("{HOST_PREFIX}/{method}")
}

/// Most bytes of a JSON request body, and of a JSON answer other than those below.
pub const JSON_LIMIT: usize = 1024 * 1024;
/// Most bytes of a `launch` or `claim` request body: a session context with storage can be big.
pub const CONTEXT_LIMIT: usize = 64 * 1024 * 1024;
/// Most bytes of a `context` answer (the same context, the other way).
pub const CONTEXT_ANSWER_LIMIT: usize = CONTEXT_LIMIT;
/// Most bytes of an `act` answer: a full-page screenshot or PDF as a JSON array of numbers.
pub const ACT_ANSWER_LIMIT: usize = 256 * 1024 * 1024;
/// Most bytes of an error body read back; past that it is cut.
pub const ERROR_LIMIT: usize = 64 * 1024;

/// Upload header: the [`FilesOf`] of an upload, as base64url (no padding) of its JSON.
pub const FILES_OF_HEADER: &str = "x-bro-files-of";
/// Most bytes of a [`FILES_OF_HEADER`] value.
pub const FILES_OF_LIMIT: usize = 16 * 1024;
/// Upload header: the bytes the client announced, in decimal, when it did.
pub const MIN_SIZE_HEADER: &str = "x-bro-min-size";
/// `read_file` answer header: the file's name as the host resolved it, percent-encoded.
pub const FILE_PATH_HEADER: &str = "x-bro-file-path";
/// `read_file` answer header: the bytes the body carries, in decimal.
pub const FILE_SIZE_HEADER: &str = "x-bro-file-size";
/// `read_file` answer header: the file's modification time in Unix milliseconds, when known.
pub const FILE_MODIFIED_HEADER: &str = "x-bro-file-modified-ms";

/// Bytes of a file name left as they are in [`FILE_PATH_HEADER`].
const PATH_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `probe`'s input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeRequest {
    /// The browser to probe.
    pub worker: WorkerInfo,
    /// How long its CDP endpoint may take to answer.
    pub timeout_ms: u64,
}

/// `resume`'s input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeRequest {
    /// The browser to take up.
    pub worker: WorkerInfo,
    /// The options of its session (its proxy, for the hop to reopen).
    pub options: SessionOptions,
}

/// `preview`'s input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreviewRequest {
    /// The browser to show.
    pub worker: WorkerInfo,
    /// Widest the JPEG may be, in pixels.
    pub max_width: u32,
}

/// `act`'s input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActRequest {
    /// The browser to run the action in.
    pub worker: WorkerInfo,
    /// The action.
    pub work: PageWork,
}

/// `usage`'s input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsageRequest {
    /// The browsers, by the pid of their process group's leader.
    pub pids: Vec<u32>,
}

/// `reap`'s input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReapRequest {
    /// The session dir's name.
    pub id: String,
}

/// `quarantine`'s input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuarantineRequest {
    /// The session dir's name.
    pub id: String,
    /// Why, for the note left beside it.
    pub reason: String,
}

/// The input of `read_file` and `delete_file`: a file of a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRequest {
    /// Whose files.
    pub of: FilesOf,
    /// The client's relative name of the file.
    pub path: String,
}

/// `place_upload`'s input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlaceUploadRequest {
    /// Whose files.
    pub of: FilesOf,
    /// The upload's id, as `upload_file` answered it.
    pub upload: String,
    /// The client's relative name to place it at.
    pub path: String,
}

/// `discard_upload`'s input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscardUploadRequest {
    /// Whose files.
    pub of: FilesOf,
    /// The upload's id, as `upload_file` answered it.
    pub upload: String,
}

/// The status a [`HostError`] of `kind` is answered with. The body is the error itself, so the
/// status only has to be non-2xx and honest to proxies and logs.
pub fn status_of(kind: HostErrorKind) -> StatusCode {
    match kind {
        HostErrorKind::Refused => StatusCode::UNPROCESSABLE_ENTITY,
        HostErrorKind::Permanent => StatusCode::CONFLICT,
        HostErrorKind::Retryable => StatusCode::SERVICE_UNAVAILABLE,
        HostErrorKind::NotFound => StatusCode::NOT_FOUND,
        HostErrorKind::BadInput => StatusCode::BAD_REQUEST,
        HostErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        HostErrorKind::Busy => StatusCode::TOO_MANY_REQUESTS,
    }
}

/// The [`FILES_OF_HEADER`] value of `of`.
pub fn encode_files_of(of: &FilesOf) -> Result<String, HostError> {
    let json = serde_json::to_vec(of)
        .map_err(|e| HostError::new(HostErrorKind::BadInput, format!("files of a session: {e}")))?;
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    if value.len() > FILES_OF_LIMIT {
        return Err(HostError::new(
            HostErrorKind::BadInput,
            format!("the session's worker info is longer than {FILES_OF_LIMIT} bytes"),
        ));
    }
    Ok(value)
}

/// The [`FilesOf`] in a [`FILES_OF_HEADER`] value.
pub fn decode_files_of(value: &[u8]) -> Result<FilesOf, String> {
    if value.len() > FILES_OF_LIMIT {
        return Err(format!(
            "{FILES_OF_HEADER} is longer than {FILES_OF_LIMIT} bytes"
        ));
    }
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|e| format!("{FILES_OF_HEADER}: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("{FILES_OF_HEADER}: {e}"))
}

/// The [`FILE_PATH_HEADER`] value of a file name.
pub fn encode_path(path: &str) -> String {
    utf8_percent_encode(path, PATH_KEEP).to_string()
}

/// The file name in a [`FILE_PATH_HEADER`] value.
pub fn decode_path(value: &str) -> Result<String, String> {
    percent_decode_str(value)
        .decode_utf8()
        .map(|path| path.into_owned())
        .map_err(|e| format!("{FILE_PATH_HEADER}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::session::SessionId;

    #[test]
    fn every_kind_has_its_own_error_status() {
        let kinds = [
            HostErrorKind::Refused,
            HostErrorKind::Permanent,
            HostErrorKind::Retryable,
            HostErrorKind::NotFound,
            HostErrorKind::BadInput,
            HostErrorKind::TooLarge,
            HostErrorKind::Busy,
        ];
        let statuses: Vec<u16> = kinds.iter().map(|k| status_of(*k).as_u16()).collect();
        assert_eq!(statuses, [422, 409, 503, 404, 400, 413, 429]);
    }

    #[test]
    fn headers_keep_files_of_and_odd_file_names() {
        let of = FilesOf {
            session_id: SessionId::random(),
            worker: WorkerInfo {
                pid: 7,
                start_time: 8,
                port: 9,
                ws_path: "/devtools/browser/x".into(),
                dir: "/tmp/sé ssion".into(),
            },
        };
        let back = decode_files_of(encode_files_of(&of).unwrap().as_bytes()).unwrap();
        assert_eq!((back.session_id, back.worker), (of.session_id, of.worker));
        assert!(decode_files_of(b"!!").is_err());
        assert!(decode_files_of(&vec![b'A'; FILES_OF_LIMIT + 1]).is_err());
        let name = "dl/r\u{e9}port 100%\n.txt";
        let encoded = encode_path(name);
        assert!(http::HeaderValue::try_from(encoded.as_str()).is_ok());
        assert_eq!(decode_path(&encoded).unwrap(), name);
    }
}
