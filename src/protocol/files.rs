//! The JSON of a session's files routes (`/v1/sessions/{id}/files...`): steel's
//! `FileDetails` and bro's file list, which adds the session's quota.

use serde::{Deserialize, Serialize};

/// steel's `FileDetails`.
// `///` comments here become the OpenAPI document's descriptions: `path` is relative to the
// session's files, `lastModified` is ISO 8601 with milliseconds, UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileDetails {
    pub path: String,
    pub size: u64,
    pub last_modified: String,
}

/// Answer of `GET /v1/sessions/{id}/files`: steel's file list, with the session's quota.
/// `used` counts uploads still arriving, and `downloadsStopped` says why the browser's
/// downloads are refused, while they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileList {
    pub data: Vec<FileDetails>,
    /// The session's files quota, in bytes.
    pub quota: u64,
    /// Bytes the session's files take now.
    pub used: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloads_stopped: Option<String>,
}
