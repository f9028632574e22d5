//! Handler tests for `GET|PUT /api/apps/NAME/health`, through `router(state).oneshot`, on
//! a real SQLite store in a temp dir.

mod common;

use axum::http::{Method, StatusCode};
use common::{Api, ADA, BOB};
use serde_json::json;

const PATH: &str = "/api/apps/adas-app/health";

#[tokio::test]
async fn the_health_check_defaults_to_tcp_and_can_be_set_and_reset() {
    let api = Api::new();
    let key = api.user(ADA).await;
    api.app(ADA, &key, "adas-app").await;
    let auth = Some((ADA, key.as_str()));
    let r = api.call(Method::GET, PATH, auth, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["data"],
        json!({"path": null, "status": 200, "boot_timeout_secs": null, "drain_secs": 30})
    );

    let r = api
        .call(
            Method::PUT,
            PATH,
            auth,
            Some(json!({"path": "/health", "status": 204, "boot_timeout": 90, "drain": 5})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let h = api.record("adas-app").await.health;
    assert_eq!(
        (
            h.path.as_deref(),
            h.status,
            h.boot_timeout_secs,
            h.drain_secs
        ),
        (Some("/health"), 204, Some(90), 5)
    );

    // Fields left out keep their value; `tcp` goes back to the TCP check.
    let r = api
        .call(Method::PUT, PATH, auth, Some(json!({"tcp": true})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let h = api.record("adas-app").await.health;
    assert_eq!((h.path, h.status, h.drain_secs), (None, 204, 5));
}

#[tokio::test]
async fn bad_health_settings_are_refused_and_nothing_changes() {
    let api = Api::new();
    let key = api.user(ADA).await;
    api.app(ADA, &key, "adas-app").await;
    let auth = Some((ADA, key.as_str()));
    for (body, needle) in [
        (json!({"path": "health"}), "is not a path"),
        (json!({"path": "/a b"}), "is not a path"),
        (json!({"status": 42}), "100 to 599"),
        (json!({"boot_timeout": 1}), "5 to 900"),
        (json!({"drain": 301}), "0 to 300"),
    ] {
        let r = api.call(Method::PUT, PATH, auth, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(r.text.contains(needle), "{body}: {}", r.text);
    }
    assert_eq!(api.record("adas-app").await.health, Default::default());
    let bob = api.user(BOB).await;
    let r = api
        .call(Method::GET, PATH, Some((BOB, bob.as_str())), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
