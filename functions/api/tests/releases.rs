//! Handler tests for `GET /api/apps/NAME/releases`, through `router(state).oneshot`, on a
//! real SQLite store in a temp dir; releases are made the way the release function makes
//! them, with `Store::create_next_release`.

mod common;

use axum::http::{Method, StatusCode};
use serde_json::json;
use shared::domain::{AppName, BuildId, ReleaseVersion, Secret};
use shared::model::{ConfigVars, NewRelease, Release, ReleaseStatus, SlugRef};
use shared::wire::ReleaseView;

use common::{Api, ADA, BOB, SHA1, SHA2};

const APP: &str = "adas-app";
const PATH: &str = "/api/apps/adas-app/releases";

/// Signs `email` up with an app; returns the key.
async fn user_with_app(api: &Api, email: &str, app: &str) -> String {
    let key = api.user(email).await;
    api.app(email, &key, app).await;
    key
}

/// A release made directly in the store, as the release function or a config change does.
async fn release(
    api: &Api,
    app: &str,
    n: u8,
    commit: Option<&str>,
    config: &[(&str, &str)],
) -> Release {
    let config: ConfigVars = config
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Secret::new(*v)))
        .collect();
    let summary = match commit {
        Some(c) => format!("Deploy {}", &c[..7]),
        None => "Set config".to_owned(),
    };
    let spec = NewRelease {
        rollback_to: None,
        idempotency_key: format!("test-{n}"),
        slug: SlugRef {
            process_types: None,
            stack: None,
            key: format!("slugs/{n}.tar.gz"),
            sha256: format!("{n:064x}"),
            size: 1000 * u64::from(n),
        },
        config,
        commit: commit.map(str::to_owned),
        build: commit.map(|_| BuildId::random()),
        summary,
    };
    api.store()
        .create_next_release(&AppName::parse(app).expect("name"), &spec)
        .await
        .expect("release")
}

#[tokio::test]
async fn an_app_without_releases_lists_none() {
    let api = Api::new();
    let key = user_with_app(&api, ADA, APP).await;
    let r = api.call(Method::GET, PATH, Some((ADA, &key)), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"data": []}));
}

#[tokio::test]
async fn releases_are_listed_newest_first_with_their_fields() {
    let api = Api::new();
    let key = user_with_app(&api, ADA, APP).await;
    let v1 = release(&api, APP, 1, Some(SHA1), &[]).await;
    let v2 = release(&api, APP, 2, None, &[("FOO", "bar")]).await;
    let name = AppName::parse(APP).expect("name");
    api.store()
        .set_release_status(&name, ReleaseVersion(1), ReleaseStatus::Superseded)
        .await
        .expect("status");
    api.store()
        .set_release_status(&name, ReleaseVersion(2), ReleaseStatus::Deployed)
        .await
        .expect("status");

    let r = api.call(Method::GET, PATH, Some((ADA, &key)), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let list = r.body["data"].as_array().expect("a list");
    assert_eq!(list.len(), 2);
    let date = |rel: &Release| serde_json::to_value(rel.created_at).expect("date");
    assert_eq!(
        list[0],
        json!({
            "version": 2,
            "created_at": date(&v2),
            "summary": "Set config",
            "sha": null,
            "status": "deployed",
            "rollback_id": 1,
            "slug_size": 2000,
        })
    );
    assert_eq!(
        list[1],
        json!({
            "version": 1,
            "created_at": date(&v1),
            "summary": "Deploy 1a2b3c4",
            "sha": SHA1,
            "status": "superseded",
            "rollback_id": null,
            "slug_size": 1000,
        })
    );
    // GIGALIXIR's CLI reads `data[1]["version"]` to roll back; ours decodes the wire type.
    assert_eq!(list[1]["version"], 1);
    let views: Vec<ReleaseView> = serde_json::from_value(r.body["data"].clone()).expect("views");
    assert_eq!(views[0].status, ReleaseStatus::Deployed);
    assert_eq!(views[1].sha.as_deref(), Some(SHA1));
}

#[tokio::test]
async fn every_status_reads_in_snake_case() {
    let api = Api::new();
    let key = user_with_app(&api, ADA, APP).await;
    let name = AppName::parse(APP).expect("name");
    let statuses = [
        (ReleaseStatus::Pending, "pending"),
        (ReleaseStatus::Deployed, "deployed"),
        (ReleaseStatus::Failed, "failed"),
        (ReleaseStatus::RolledBack, "rolled_back"),
        (ReleaseStatus::Superseded, "superseded"),
    ];
    for (n, (status, _)) in (1u8..).zip(statuses) {
        let rel = release(&api, APP, n, Some(SHA2), &[]).await;
        api.store()
            .set_release_status(&name, rel.version, status)
            .await
            .expect("status");
    }
    let r = api.call(Method::GET, PATH, Some((ADA, &key)), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let got: Vec<(u64, &str)> = r.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().expect("version"),
                v["status"].as_str().expect("status"),
            )
        })
        .collect();
    let mut want: Vec<(u64, &str)> = (1u64..).zip(statuses.map(|(_, s)| s)).collect();
    want.reverse();
    assert_eq!(got, want);
}

#[tokio::test]
async fn config_values_never_appear_in_the_reply() {
    let api = Api::new();
    let key = user_with_app(&api, ADA, APP).await;
    release(
        &api,
        APP,
        1,
        Some(SHA1),
        &[("DATABASE_URL", "ecto://user:hunter2-db-pass@db/prod")],
    )
    .await;
    release(
        &api,
        APP,
        2,
        Some(SHA2),
        &[("API_TOKEN", "tok-very-secret-123")],
    )
    .await;
    let r = api.call(Method::GET, PATH, Some((ADA, &key)), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.body.to_string();
    for secret in ["hunter2-db-pass", "tok-very-secret-123"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    for release in r.body["data"].as_array().expect("list") {
        assert!(release.get("config").is_none(), "{release}");
    }
}

#[tokio::test]
async fn another_users_app_answers_404_as_if_missing() {
    let api = Api::new();
    user_with_app(&api, ADA, APP).await;
    release(&api, APP, 1, Some(SHA1), &[]).await;
    let bob = user_with_app(&api, BOB, "bobs-app").await;
    let bob_auth = Some((BOB, bob.as_str()));
    let theirs = api.call(Method::GET, PATH, bob_auth, None).await;
    let missing = api
        .call(
            Method::GET,
            "/api/apps/no-such-app/releases",
            bob_auth,
            None,
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        theirs.body["errors"].to_string().replace(APP, "X"),
        missing.body["errors"]
            .to_string()
            .replace("no-such-app", "X")
    );
    assert!(!theirs.body.to_string().contains(SHA1));
    let r = api
        .call(Method::GET, "/api/apps/Not_Valid/releases", bob_auth, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn releases_need_credentials() {
    let api = Api::new();
    let key = user_with_app(&api, ADA, APP).await;
    release(&api, APP, 1, Some(SHA1), &[]).await;
    let r = api.call(Method::GET, PATH, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.get("data").is_none());
    let r = api
        .call(Method::GET, PATH, Some((ADA, "password123")), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = api
        .call(Method::GET, PATH, Some((BOB, key.as_str())), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
