//! `ApiError`: the one place errors become HTTP statuses, always with steel's error body
//! (`message`, `statusCode`, `error`).

use axum::Json;
use axum::response::{IntoResponse, Response};
use hyper::StatusCode;

use crate::host::{HostError, HostErrorKind};
use crate::orchestrator::ingress::IngressError;
use crate::protocol::steel::ErrorBody;

/// Seconds a client at capacity is told to wait before retrying.
pub const RETRY_AFTER_SECS: u64 = 5;

/// Every failure an API handler can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    AtCapacity(String),
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The status each variant maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::AtCapacity(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<IngressError> for ApiError {
    fn from(err: IngressError) -> Self {
        match err {
            IngressError::NotFound(m) => ApiError::NotFound(m),
            IngressError::AtCapacity(m) => ApiError::AtCapacity(m),
            IngressError::BadInput(m) => ApiError::BadRequest(m),
            IngressError::Refused(m) => ApiError::Unprocessable(m),
            IngressError::Failed(m) => ApiError::Internal(m),
            e @ IngressError::Unreachable { .. } => ApiError::Unavailable(e.to_string()),
        }
    }
}

/// An artifact not stored or not found, as the client's.
impl From<crate::artifacts::ArtifactError> for ApiError {
    fn from(err: crate::artifacts::ArtifactError) -> Self {
        use crate::artifacts::ArtifactError;
        match err {
            ArtifactError::NotFound(m) => ApiError::NotFound(m),
            ArtifactError::TooLarge(m) => ApiError::TooLarge(m),
            e @ ArtifactError::Io(_) => ApiError::Internal(e.to_string()),
        }
    }
}

/// A host's answer as the client's, its message kept. What went wrong on the host's side is a
/// 500; routes that act through the browser answer its failures with 502 on their own.
impl From<HostError> for ApiError {
    fn from(err: HostError) -> Self {
        match err.kind {
            HostErrorKind::NotFound => ApiError::NotFound(err.message),
            HostErrorKind::BadInput => ApiError::BadRequest(err.message),
            HostErrorKind::TooLarge => ApiError::TooLarge(err.message),
            HostErrorKind::Refused => ApiError::Unprocessable(err.message),
            HostErrorKind::Busy => ApiError::AtCapacity(err.message),
            HostErrorKind::Permanent | HostErrorKind::Retryable => ApiError::Internal(err.message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(%status, error = %self, "request failed");
        }
        let body = ErrorBody {
            message: self.to_string(),
            status_code: status.as_u16(),
            error: status.canonical_reason().unwrap_or("Error").to_string(),
        };
        let mut resp = (status, Json(body)).into_response();
        if matches!(self, ApiError::AtCapacity(_)) {
            let headers = resp.headers_mut();
            headers.insert("retry-after", RETRY_AFTER_SECS.into());
            headers.insert("x-should-retry", http::HeaderValue::from_static("true"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_status() {
        let table = [
            (ApiError::BadRequest(String::new()), 400),
            (ApiError::Unauthorized(String::new()), 401),
            (ApiError::Forbidden(String::new()), 403),
            (ApiError::NotFound(String::new()), 404),
            (ApiError::TooLarge(String::new()), 413),
            (ApiError::Unprocessable(String::new()), 422),
            (ApiError::AtCapacity(String::new()), 429),
            (ApiError::BadGateway(String::new()), 502),
            (ApiError::Unavailable(String::new()), 503),
            (ApiError::Internal(String::new()), 500),
        ];
        for (err, code) in table {
            assert_eq!(err.status().as_u16(), code, "{err:?}");
        }
    }

    #[test]
    fn every_host_error_kind_has_its_status() {
        let table = [
            (HostErrorKind::NotFound, 404),
            (HostErrorKind::BadInput, 400),
            (HostErrorKind::TooLarge, 413),
            (HostErrorKind::Refused, 422),
            (HostErrorKind::Busy, 429),
            (HostErrorKind::Permanent, 500),
            (HostErrorKind::Retryable, 500),
        ];
        for (kind, code) in table {
            let err = ApiError::from(HostError::new(kind, "why"));
            assert_eq!(err.status().as_u16(), code, "{kind:?}");
            assert_eq!(err.to_string(), "why");
        }
    }

    #[test]
    fn capacity_answers_carry_retry_after() {
        let resp = ApiError::AtCapacity("full".into()).into_response();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "5");
    }
}
