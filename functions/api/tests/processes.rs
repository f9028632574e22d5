//! Handler tests for processes (`status`, `scale`, `restart`, `logs`), through
//! `router(state).oneshot`, on a real SQLite store and bus in a temp dir, without a runtime
//! (the real one is exercised by the end-to-end tests).

mod common;

use axum::http::{Method, StatusCode};
use common::{Api, ADA, BOB, SHA1};
use serde_json::json;
use shared::domain::AppName;
use shared::messages::{Event, Topic};
use shared::model::ReleaseStatus;

const APP: &str = "adas-app";
const SCALE: &str = "/api/apps/adas-app/scale";
const RESTART: &str = "/api/apps/adas-app/restart";

async fn ada_with_app(api: &Api) -> String {
    let key = api.user(ADA).await;
    api.app(ADA, &key, APP).await;
    key
}

#[tokio::test]
async fn scale_refuses_out_of_range_values_and_changes_nothing() {
    let api = Api::new();
    let key = ada_with_app(&api).await;
    let auth = Some((ADA, key.as_str()));
    let watch = api.watch(Topic::APP_SCALED).await;
    for (body, needle) in [
        (json!({"replicas": -1}), "replicas must be between 0 and 16"),
        (json!({"replicas": 17}), "replicas must be between 0 and 16"),
        (
            json!({"replicas": 3, "size": 0.1}),
            "size must be between 0.2 and 8",
        ),
        (json!({"size": 9}), "size must be between 0.2 and 8"),
        (json!({}), "Give replicas, size or both"),
    ] {
        let r = api.call(Method::PUT, SCALE, auth, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(r.error().contains(needle), "{body}: {}", r.error());
    }
    let r = api
        .call(Method::PUT, SCALE, auth, Some(json!({"replicas": "three"})))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let app = api.record(APP).await;
    assert_eq!((app.replicas, app.size), (1, 0.5));
    // Another app at the largest scale would take the account past what it may run.
    api.app(ADA, &key, "adas-second").await;
    let r = api
        .call(
            Method::PUT,
            "/api/apps/adas-second/scale",
            auth,
            Some(json!({"replicas": 16, "size": 8})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.error().contains("an account may run 128 GB"),
        "{}",
        r.error()
    );
    assert_eq!(api.pending(&watch).await, 0);
}

#[tokio::test]
async fn scale_updates_the_app_and_announces_it() {
    let api = Api::new();
    let key = ada_with_app(&api).await;
    let auth = Some((ADA, key.as_str()));
    let watch = api.watch(Topic::APP_SCALED).await;

    let r = api
        .call(Method::PUT, SCALE, auth, Some(json!({"replicas": 3})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["data"],
        json!({"unique_name": APP, "replicas": 3, "size": 0.5})
    );
    assert_eq!(api.record(APP).await.replicas, 3);
    assert_eq!(api.pending(&watch).await, 1);
    let events = api.events(&watch, 1).await;
    assert_eq!(
        events[0],
        Event::AppScaled {
            app: AppName::parse(APP).expect("name")
        }
    );

    // Size alone, as `ps:scale -s 1` sends it; replicas stay.
    let r = api
        .call(Method::PUT, SCALE, auth, Some(json!({"size": 1.0})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"]["replicas"], 3);
    assert_eq!(r.body["data"]["size"], 1.0);
    // The bounds themselves are allowed.
    for body in [
        json!({"replicas": 0}),
        json!({"replicas": 16, "size": 8}),
        json!({"size": 0.2}),
    ] {
        let r = api.call(Method::PUT, SCALE, auth, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::OK, "{body}: {}", r.text);
    }
    let app = api.record(APP).await;
    assert_eq!((app.replicas, app.size), (16, 0.2));
    // Scaling keeps the config and makes no release.
    assert!(api.releases(APP).await.is_empty());
}

#[tokio::test]
async fn restart_announces_a_restart_of_the_live_release() {
    let api = Api::new();
    let key = ada_with_app(&api).await;
    let auth = Some((ADA, key.as_str()));
    let watch = api.watch(Topic::RESTART_REQUESTED).await;

    // Nothing runs yet: refused with what to do.
    let r = api.call(Method::PUT, RESTART, auth, None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.error().contains("no running release"), "{}", r.error());
    assert_eq!(api.pending(&watch).await, 0);

    api.pushed_release(APP, 1, SHA1, ReleaseStatus::Deployed)
        .await;
    let r = api.call(Method::PUT, RESTART, auth, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({"data": {}}));
    assert_eq!(api.pending(&watch).await, 1);
    let events = api.events(&watch, 1).await;
    assert_eq!(
        events[0],
        Event::RestartRequested {
            app: AppName::parse(APP).expect("name")
        }
    );
    assert_eq!(api.releases(APP).await.len(), 1, "a restart is no release");
}

#[tokio::test]
async fn status_and_logs_answer_503_without_a_runtime() {
    let api = Api::new();
    let key = ada_with_app(&api).await;
    let auth = Some((ADA, key.as_str()));
    for path in [
        "/api/apps/adas-app/status",
        "/api/apps/adas-app/logs",
        "/api/apps/adas-app/logs?num_lines=20&follow=False",
        "/api/apps/adas-app/logs?num_lines=5&follow=true",
    ] {
        let r = api.call(Method::GET, path, auth, None).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(
            r.error().contains("not available from this API"),
            "{path}: {}",
            r.error()
        );
    }
    // Bad queries are refused before that.
    for (query, needle) in [
        ("num_lines=abc", "num_lines must be a whole number"),
        ("num_lines=-3", "num_lines must be a whole number"),
        ("follow=perhaps", "follow must be true or false"),
    ] {
        let path = format!("/api/apps/adas-app/logs?{query}");
        let r = api.call(Method::GET, &path, auth, None).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert!(r.error().contains(needle), "{query}: {}", r.error());
    }
}

#[tokio::test]
async fn another_users_app_answers_404_on_every_process_route() {
    let api = Api::new();
    let _ada = ada_with_app(&api).await;
    api.pushed_release(APP, 1, SHA1, ReleaseStatus::Deployed)
        .await;
    let bob = api.user(BOB).await;
    let bob_auth = Some((BOB, bob.as_str()));
    let scaled = api.watch(Topic::APP_SCALED).await;
    let restarts = api.watch(Topic::RESTART_REQUESTED).await;
    for (method, path, body) in [
        (Method::GET, "/api/apps/adas-app/status", None),
        (Method::GET, "/api/apps/adas-app/logs?num_lines=5", None),
        (Method::PUT, SCALE, Some(json!({"replicas": 2}))),
        (Method::PUT, RESTART, None),
        (Method::GET, "/api/apps/no-such-app/status", None),
    ] {
        let r = api.call(method.clone(), path, bob_auth, body).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.text
        );
    }
    assert_eq!(api.record(APP).await.replicas, 1);
    assert_eq!(api.pending(&scaled).await, 0);
    assert_eq!(api.pending(&restarts).await, 0);
    for (method, path) in [
        (Method::GET, "/api/apps/adas-app/status"),
        (Method::GET, "/api/apps/adas-app/logs"),
        (Method::PUT, SCALE),
        (Method::PUT, RESTART),
    ] {
        let r = api.call(method.clone(), path, None, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
}
