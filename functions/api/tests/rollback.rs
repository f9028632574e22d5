//! Handler tests for `POST /api/apps/NAME/releases/VERSION/rollback`, through
//! `router(state).oneshot`, on a real SQLite store and bus in a temp dir.

mod common;

use axum::http::{Method, StatusCode};
use common::{Api, ADA, BOB, SHA1, SHA2};
use serde_json::json;
use shared::messages::{Event, Topic};
use shared::model::ReleaseStatus;

const APP: &str = "adas-app";

#[tokio::test]
async fn a_rollback_releases_the_old_slug_and_config_and_restores_the_config() {
    let api = Api::new();
    let key = api.user(ADA).await;
    api.app(ADA, &key, APP).await;
    let auth = Some((ADA, key.as_str()));
    let v1 = api
        .pushed_release(APP, 1, SHA1, ReleaseStatus::Superseded)
        .await;
    let r = api
        .call(
            Method::POST,
            "/api/apps/adas-app/configs",
            auth,
            Some(json!({"configs": {"FOO": "bar"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    api.pushed_release(APP, 3, SHA2, ReleaseStatus::Deployed)
        .await;
    let watcher = api.watch(Topic::RELEASE_CREATED).await;

    let r = api
        .call(
            Method::POST,
            "/api/apps/adas-app/releases/1/rollback",
            auth,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"]["summary"], "Rollback to v1");
    let newest = &api.releases(APP).await[0];
    assert_eq!(newest.spec.slug, v1.spec.slug);
    assert_eq!(
        newest.spec.config, v1.spec.config,
        "the old config comes back"
    );
    assert_eq!(newest.spec.rollback_to, Some(v1.version));
    assert!(
        api.record(APP).await.config.is_empty(),
        "the app's config is v1's again"
    );
    let events = api.events(&watcher, 1).await;
    assert!(
        matches!(&events[0], Event::ReleaseCreated { version, .. } if *version == newest.version)
    );
}

#[tokio::test]
async fn bad_rollback_targets_are_refused_and_nothing_changes() {
    let api = Api::new();
    let key = api.user(ADA).await;
    api.app(ADA, &key, APP).await;
    let auth = Some((ADA, key.as_str()));
    api.pushed_release(APP, 1, SHA1, ReleaseStatus::Failed)
        .await;
    api.pushed_release(APP, 2, SHA2, ReleaseStatus::Deployed)
        .await;
    for (path, status, needle) in [
        (
            "/api/apps/adas-app/releases/1/rollback",
            StatusCode::UNPROCESSABLE_ENTITY,
            "failed to start",
        ),
        (
            "/api/apps/adas-app/releases/2/rollback",
            StatusCode::UNPROCESSABLE_ENTITY,
            "running release already",
        ),
        (
            "/api/apps/adas-app/releases/9/rollback",
            StatusCode::NOT_FOUND,
            "no release v9",
        ),
        (
            "/api/apps/adas-app/releases/x/rollback",
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a release version",
        ),
    ] {
        let r = api.call(Method::POST, path, auth, None).await;
        assert_eq!(r.status, status, "{path}: {}", r.text);
        assert!(r.text.contains(needle), "{path}: {}", r.text);
    }
    assert_eq!(api.releases(APP).await.len(), 2);
    let bob = api.user(BOB).await;
    let r = api
        .call(
            Method::POST,
            "/api/apps/adas-app/releases/2/rollback",
            Some((BOB, bob.as_str())),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}
