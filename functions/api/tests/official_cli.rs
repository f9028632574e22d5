//! Handler tests of the requests GIGALIXIR's official CLI (`gigalixir==1.16.1`) sends, as
//! it sends them: `Content-Type: application/json` on every request, bodies or not, and
//! the status each of its commands takes for success (anything else is printed as an
//! error). The whole CLI runs against a real platform in `tests/compat/`.

mod common;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{Api, ADA, SHA1};
use gigalixir_api::router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use shared::messages::Topic;
use shared::model::ReleaseStatus;
use tower::ServiceExt;

const APP: &str = "adas-app";

/// A request as the official CLI's session makes it: JSON content type always, the body
/// only when the command has one.
async fn send(
    api: &Api,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let token = STANDARD.encode(format!("{ADA}:{key}"));
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Basic {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::USER_AGENT, "GigalixirCLI/1.16.1")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request");
    let resp = router(api.state.clone())
        .oneshot(req)
        .await
        .expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn each_command_gets_the_status_the_official_cli_takes_for_success() {
    let api = Api::new();
    let key = api.user(ADA).await;
    let k = key.as_str();

    // (method, path, body, the status its code checks for)
    let (s, b) = send(
        &api,
        Method::POST,
        "/api/apps",
        k,
        Some(json!({"unique_name": APP})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "apps:create {b}");
    let (s, b) = send(&api, Method::POST, "/api/apps", k, Some(json!({}))).await;
    assert_eq!(s, StatusCode::CREATED, "apps:create without a name {b}");
    for path in [
        "/api/users",
        "/api/apps",
        "/api/apps/adas-app",
        "/api/ssh_keys",
    ] {
        let (s, b) = send(&api, Method::GET, path, k, None).await;
        assert_eq!(s, StatusCode::OK, "GET {path} {b}");
    }
    api.pushed_release(APP, 1, SHA1, ReleaseStatus::Superseded)
        .await;
    let (s, b) = send(
        &api,
        Method::POST,
        "/api/apps/adas-app/configs",
        k,
        Some(json!({"configs": {"A": "1"}, "avoid_restart": false})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "config:set {b}");
    api.pushed_release(APP, 2, SHA1, ReleaseStatus::Deployed)
        .await;
    let (s, b) = send(&api, Method::GET, "/api/apps/adas-app/releases", k, None).await;
    assert_eq!(s, StatusCode::OK, "releases {b}");
    let (s, b) = send(
        &api,
        Method::DELETE,
        "/api/apps/adas-app/configs",
        k,
        Some(json!({"key": "A"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "config:unset {b}");

    // Bodiless requests that still say JSON.
    let restarts = api.watch(Topic::RESTART_REQUESTED).await;
    let (s, b) = send(&api, Method::PUT, "/api/apps/adas-app/restart", k, None).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"data": {}})), "restart");
    assert_eq!(api.pending(&restarts).await, 1);
    let (s, b) = send(
        &api,
        Method::POST,
        "/api/apps/adas-app/releases/1/rollback",
        k,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "releases:rollback {b}");
    assert_eq!(b["data"]["summary"], "Rollback to v1");

    let (s, b) = send(
        &api,
        Method::PUT,
        "/api/apps/adas-app/scale",
        k,
        Some(json!({"replicas": 2})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "ps:scale {b}");

    api.app(ADA, k, "adas-other").await;
    send(
        &api,
        Method::POST,
        "/api/apps/adas-other/configs",
        k,
        Some(json!({"configs": {"B": "2"}, "avoid_restart": false})),
    )
    .await;
    let (s, b) = send(
        &api,
        Method::POST,
        "/api/apps/adas-app/configs/copy",
        k,
        Some(json!({"from": "adas-other"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "config:copy {b}");

    let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN3wvFBEwLENqb1n730OKzvxiV1o+k+J81/Mb3+8EnQ3 ada@laptop";
    let (s, b) = send(
        &api,
        Method::POST,
        "/api/ssh_keys",
        k,
        Some(json!({"ssh_key": line})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "account:ssh_keys:add {b}");
    let id = b["data"]["id"].as_str().expect("id").to_owned();
    let (s, b) = send(
        &api,
        Method::DELETE,
        "/api/ssh_keys",
        k,
        Some(json!({"id": id})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "account:ssh_keys:remove {b}");

    let (s, b) = send(&api, Method::DELETE, "/api/apps/adas-app", k, None).await;
    assert_eq!(
        (s, b),
        (StatusCode::OK, json!({"data": {}})),
        "apps:destroy"
    );

    let (s, b) = send(
        &api,
        Method::POST,
        "/api/api_keys/regenerate?current_password=password123",
        k,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "account:api_key:reset {b}");
}
