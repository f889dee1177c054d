//! A session's files (`/v1/sessions/{id}/files...`): the host's answers and failures as
//! HTTP.

use axum::body::Body;
use axum::http::Request;
use serde_json::json;

use super::fake_restate::ended;
use super::{Harness, delete, get};
use crate::host::HostErrorKind;
use crate::protocol::session::{SessionId, SessionStatus};

#[tokio::test]
async fn the_list_shows_the_hosts_files_and_quota() {
    let h = Harness::new().await;
    let id = h.live().id;
    let reply = h.tcp(get(&format!("/v1/sessions/{id}/files"))).await;
    assert_eq!(reply.status, 200);
    let expected = json!({
        "data": [{"path": "dl/report.txt", "size": 5, "lastModified": "2023-11-14T22:13:20.123Z"}],
        "quota": 1 << 20,
        "used": 5,
    });
    assert_eq!(reply.json(), expected);
    assert_eq!(h.host.calls(), [format!("files {id}")]);
}

#[tokio::test]
async fn a_download_is_an_attachment_with_the_hosts_bytes() {
    let h = Harness::new().await;
    let id = h.live().id;
    let reply = h
        .tcp(get(&format!("/v1/sessions/{id}/files/dl/report.txt")))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(&reply.body[..], b"hello");
    assert_eq!(reply.headers["content-type"], "text/plain");
    assert_eq!(
        reply.headers["content-disposition"],
        "attachment; filename=\"report.txt\""
    );
    assert_eq!(reply.headers["content-length"], "5");
    assert_eq!(h.host.calls(), [format!("read_file {id} dl/report.txt")]);
}

#[tokio::test]
async fn host_failures_keep_their_kind() {
    let h = Harness::new().await;
    let id = h.live().id;
    h.host
        .fail("read_file", HostErrorKind::NotFound, "no file dl/x.txt");
    let reply = h
        .tcp(get(&format!("/v1/sessions/{id}/files/dl/x.txt")))
        .await;
    reply.assert_error(404, "no file dl/x.txt");

    h.host.fail(
        "delete_file",
        HostErrorKind::BadInput,
        "the path leaves the files dir",
    );
    let reply = h
        .tcp(delete(&format!("/v1/sessions/{id}/files/a%2F..%2F..%2Fx")))
        .await;
    reply.assert_error(400, "the path leaves the files dir");

    h.host
        .fail("zip_files", HostErrorKind::Busy, "too many zips");
    let reply = h.tcp(get(&format!("/v1/sessions/{id}/files.zip"))).await;
    reply.assert_error(429, "too many zips");
    assert_eq!(reply.headers["retry-after"], "5");
}

#[tokio::test]
async fn an_upload_past_the_quota_is_413() {
    let h = Harness::new().await;
    let id = h.live().id;
    let reply = h.tcp(upload(&id)).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json()["path"], "a.txt");
    let calls = h.host.calls();
    assert_eq!(
        calls[1],
        format!("place_upload {id} upload-5 a.txt"),
        "{calls:?}"
    );

    h.host.fail(
        "upload_file",
        HostErrorKind::TooLarge,
        "the files quota is full",
    );
    let reply = h.tcp(upload(&id)).await;
    reply.assert_error(413, "the files quota is full");
}

/// A multipart upload of `a.txt`, holding `hello`.
fn upload(id: &SessionId) -> Request<Body> {
    let body = "--b\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n\
                hello\r\n--b--\r\n";
    Request::post(format!("/v1/sessions/{id}/files"))
        .header("content-type", "multipart/form-data; boundary=b")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn delete_and_clear_are_204() {
    let h = Harness::new().await;
    let id = h.live().id;
    let reply = h
        .tcp(delete(&format!("/v1/sessions/{id}/files/dl/report.txt")))
        .await;
    assert_eq!(reply.status, 204);
    let reply = h.tcp(delete(&format!("/v1/sessions/{id}/files"))).await;
    assert_eq!(reply.status, 204);
    let expected = [
        format!("delete_file {id} dl/report.txt"),
        format!("clear_files {id}"),
    ];
    assert_eq!(h.host.calls(), expected);
}

#[tokio::test]
async fn files_of_an_unknown_or_ended_session_are_404_without_the_host() {
    let h = Harness::new().await;
    let unknown = SessionId::random();
    let reply = h.tcp(get(&format!("/v1/sessions/{unknown}/files"))).await;
    reply.assert_error(404, &format!("session {unknown} not found"));
    let rec = ended(h.live(), SessionStatus::Released, "released");
    h.restate.put(rec.clone());
    let reply = h
        .tcp(get(&format!("/v1/sessions/{}/files.zip", rec.id)))
        .await;
    reply.assert_error(404, "is released");
    let reply = h.tcp(get("/v1/sessions/nope/files")).await;
    reply.assert_error(400, "must be a UUID");
    assert!(h.host.calls().is_empty());
}
