//! `GET /v1/openapi.json`: the API described from the Rust types and route annotations.

use axum::Json;
use utoipa::OpenApi;

use crate::api::{actions, cdp, files, metrics, recordings, sessions, viewer};
use crate::protocol::actions::{ActionRequest, ArtifactUrl};
use crate::protocol::files::FileDetails;
use crate::protocol::session::Dimensions;
use crate::protocol::steel::{
    CreateSessionRequest, DeviceConfig, ErrorBody, MultipleSessions, ReleaseAllResponse,
    ReleaseSessionResponse, SessionContext, SessionDetails,
};

/// The OpenAPI document of bro's HTTP API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "bro",
        description = "steel-browser compatible API of a local browser-session orchestrator. \
                       CDP websockets: upgrade on any path with ?sessionId=ID."
    ),
    paths(
        sessions::health,
        sessions::create,
        sessions::list,
        sessions::get_one,
        sessions::release,
        sessions::release_all,
        sessions::context,
        sessions::live_details,
        recordings::events,
        actions::scrape,
        actions::screenshot,
        actions::pdf,
        actions::artifact,
        files::list,
        files::upload,
        files::download,
        files::delete_one,
        files::delete_all,
        files::archive,
        cdp::version,
        cdp::list,
        viewer::debug,
        viewer::player,
        viewer::cast,
        metrics::metrics,
    ),
    components(schemas(
        CreateSessionRequest,
        SessionDetails,
        MultipleSessions,
        ReleaseSessionResponse,
        ReleaseAllResponse,
        ErrorBody,
        SessionContext,
        Dimensions,
        DeviceConfig,
        ActionRequest,
        ArtifactUrl,
        FileDetails,
    ))
)]
pub struct ApiDoc;

/// `GET /v1/openapi.json`.
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_described() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for path in [
            "/v1/sessions",
            "/v1/sessions/{id}",
            "/v1/sessions/debug",
            "/v1/sessions/{id}/player",
            "/v1/sessions/cast",
            "/v1/scrape",
            "/v1/sessions/{id}/files",
            "/json/version",
            "/metrics",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
        let details = &doc["components"]["schemas"]["SessionDetails"]["properties"];
        for field in ["id", "createdAt", "websocketUrl", "timeout"] {
            assert!(
                details.get(field).is_some(),
                "SessionDetails.{field} missing"
            );
        }
    }
}
