//! Handler tests for config vars (`GET|POST|DELETE /api/apps/NAME/configs`,
//! `POST /api/apps/NAME/configs/copy`), through `router(state).oneshot`, on a real SQLite
//! store and bus in a temp dir.

mod common;

use axum::http::{Method, StatusCode};
use common::{slug, v, Api, ADA, BOB, SHA1, SHA2};
use serde_json::{json, Value};
use shared::messages::{Event, Topic};
use shared::model::{ConfigVars, ReleaseStatus};

const APP: &str = "adas-app";
const PATH: &str = "/api/apps/adas-app/configs";

fn plain(config: &ConfigVars) -> Value {
    config
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.expose())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Ada with `adas-app`; returns her key.
async fn ada_with_app(api: &Api) -> String {
    let key = api.user(ADA).await;
    api.app(ADA, &key, APP).await;
    key
}

#[tokio::test]
async fn a_new_app_has_no_config_and_values_round_trip_whatever_they_hold() {
    let api = Api::new();
    let key = ada_with_app(&api).await;
    let auth = Some((ADA, key.as_str()));
    let r = api.call(Method::GET, PATH, auth, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({"data": {}}));

    let values = json!({
        "WITH_EQUALS": "postgres://u:p@h/db?sslmode=require&a=b=c",
        "WITH_SPACES": "  two  spaces  ",
        "WITH_NEWLINES": "line one\nline two\r\n",
        "UNICODE": "héllo wörld ✓ 日本語 🚀",
        "QUOTES": "it's \"quoted\" $HOME `cmd` \\ backslash",
        "EMPTY": "",
        "_lower_ok1": "x",
    });
    let r = api
        .call(
            Method::POST,
            PATH,
            auth,
            Some(json!({"configs": values, "avoid_restart": false})),
        )
        .await;
    // GIGALIXIR's CLI expects 201 from config:set, with the whole config.
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"], values);
    let r = api.call(Method::GET, PATH, auth, None).await;
    assert_eq!(r.body["data"], values);
    assert_eq!(plain(&api.record(APP).await.config), values);

    // A later set merges with what is there and replaces same keys.
    let r = api
        .call(
            Method::POST,
            PATH,
            auth,
            Some(json!({"configs": {"EMPTY": "now set", "NEW": "1"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"]["EMPTY"], "now set");
    assert_eq!(r.body["data"]["NEW"], "1");
    assert_eq!(r.body["data"]["UNICODE"], values["UNICODE"]);
    assert_eq!(r.body["data"].as_object().expect("map").len(), 8);
}

#[tokio::test]
async fn config_set_makes_exactly_one_release_from_the_live_slug_and_announces_it() {
    let api = Api::new();
    let key = ada_with_app(&api).await;
    let auth = Some((ADA, key.as_str()));
    let v1 = api
        .pushed_release(APP, 1, SHA1, ReleaseStatus::Deployed)
        .await;
    let watch = api.watch(Topic::RELEASE_CREATED).await;

    let r = api
        .call(
            Method::POST,
            PATH,
            auth,
            Some(json!({"configs": {"B": "2", "A": "1"}, "avoid_restart": false})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"], json!({"A": "1", "B": "2"}));

    let releases = api.releases(APP).await;
    assert_eq!(releases.len(), 2, "exactly one new release");
    let v2 = &releases[0];
    assert_eq!(v2.version, v(2));
    assert_eq!(v2.spec.summary, "Set A, B");
    assert_eq!(plain(&v2.spec.config), json!({"A": "1", "B": "2"}));
    assert_eq!(v2.spec.slug, v1.spec.slug);
    assert_eq!(v2.spec.commit.as_deref(), Some(SHA1));
    assert_eq!(v2.spec.build, None);
    assert_eq!(v2.status, ReleaseStatus::Pending);
    assert_eq!(v2.rollback_id, Some(v(1)));
    // The old release keeps its own snapshot, so a rollback restores the old config.
    assert_eq!(plain(&releases[1].spec.config), json!({}));

    assert_eq!(api.pending(&watch).await, 1, "one release-created");
    let events = api.events(&watch, 1).await;
    assert_eq!(
        events[0],
        Event::ReleaseCreated {
            app: shared::domain::AppName::parse(APP).expect("name"),
            build: None,
            version: v(2),
        }
    );
}

#[tokio::test]
async fn a_failed_latest_release_is_not_the_base_of_a_config_release() {
    let api = Api::new();
    let key = ada_with_app(&api).await;
    api.pushed_release(APP, 1, SHA1, ReleaseStatus::Deployed)
        .await;
    api.pushed_release(APP, 2, SHA2, ReleaseStatus::Failed)
        .await;
    let r = api
        .call(
            Method::POST,
            PATH,
            Some((ADA, &key)),
            Some(json!({"configs": {"A": "1"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let releases = api.releases(APP).await;
    assert_eq!(releases.len(), 3);
    assert_eq!(releases[0].spec.slug, slug(1));
    assert_eq!(releases[0].spec.commit.as_deref(), Some(SHA1));
    assert_eq!(releases[0].spec.summary, "Set A");
}

#[tokio::test]
async fn without_a_release_or_with_avoid_restart_the_config_is_only_stored() {
    let api = Api::new();
    let key = ada_with_app(&api).await;
    let auth = Some((ADA, key.as_str()));
    let watch = api.watch(Topic::RELEASE_CREATED).await;

    // No release yet: the first push takes the config.
    let r = api
        .call(
            Method::POST,
            PATH,
            auth,
            Some(json!({"configs": {"A": "1"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(api.releases(APP).await.is_empty());
    assert_eq!(plain(&api.record(APP).await.config), json!({"A": "1"}));

    // With a release, avoid_restart (`--no_restart`) still makes none.
    api.pushed_release(APP, 1, SHA1, ReleaseStatus::Deployed)
        .await;
    let r = api
        .call(
            Method::POST,
            PATH,
            auth,
            Some(json!({"configs": {"B": "2"}, "avoid_restart": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"], json!({"A": "1", "B": "2"}));
    assert_eq!(api.releases(APP).await.len(), 1);
    assert_eq!(
        plain(&api.record(APP).await.config),
        json!({"A": "1", "B": "2"})
    );
    assert_eq!(api.pending(&watch).await, 0, "nothing announced");
}

#[tokio::test]
async fn bad_keys_reserved_keys_and_empty_sets_are_refused_and_nothing_is_stored() {
    let api = Api::new();
    let key = ada_with_app(&api).await;
    let auth = Some((ADA, key.as_str()));
    api.pushed_release(APP, 1, SHA1, ReleaseStatus::Deployed)
        .await;
    let watch = api.watch(Topic::RELEASE_CREATED).await;
    for (configs, needle) in [
        (json!({"1BAD": "x", "GOOD": "y"}), "`1BAD` is not a valid"),
        (json!({"BAD-KEY": "x"}), "`BAD-KEY` is not a valid"),
        (json!({"HAS SPACE": "x"}), "`HAS SPACE` is not a valid"),
        (json!({"": "x"}), "`` is not a valid"),
        (
            json!({"GOOD": "x", "PORT": "80"}),
            "`PORT` is reserved by the platform",
        ),
        (json!({"SECRET_KEY_BASE": "x"}), "reserved by the platform"),
        (json!({"RELEASE_COOKIE": "x"}), "reserved by the platform"),
        (json!({"HOST_INDEX": "1"}), "reserved by the platform"),
        (json!({"NUL": "a\u{0}b"}), "NUL"),
        (json!({}), "configs is empty"),
    ] {
        let r = api
            .call(
                Method::POST,
                PATH,
                auth,
                Some(json!({ "configs": configs })),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{configs}");
        assert!(r.error().contains(needle), "{configs}: {}", r.error());
    }
    // Not JSON of the right shape.
    let r = api
        .call(Method::POST, PATH, auth, Some(json!({"configs": ["A=1"]})))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(api.record(APP).await.config.is_empty());
    assert_eq!(api.releases(APP).await.len(), 1);
    assert_eq!(api.pending(&watch).await, 0);
}

#[tokio::test]
async fn a_config_over_32_kb_is_refused_whole() {
    let api = Api::new();
    let key = ada_with_app(&api).await;
    let auth = Some((ADA, key.as_str()));
    api.pushed_release(APP, 1, SHA1, ReleaseStatus::Deployed)
        .await;
    let watch = api.watch(Topic::RELEASE_CREATED).await;

    let big = "x".repeat(33 * 1024);
    let r = api
        .call(
            Method::POST,
            PATH,
            auth,
            Some(json!({"configs": {"SMALL": "1", "BIG": big}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.error().contains("config is larger than 32 kB"),
        "{}",
        r.error()
    );
    assert!(api.record(APP).await.config.is_empty(), "nothing stored");
    assert_eq!(api.releases(APP).await.len(), 1, "no release");
    assert_eq!(api.pending(&watch).await, 0);

    // The cap is on the whole config: two halves that fit alone do not fit together.
    let half = "y".repeat(20 * 1024);
    let r = api
        .call(
            Method::POST,
            PATH,
            auth,
            Some(json!({"configs": {"ONE": half}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = api
        .call(
            Method::POST,
            PATH,
            auth,
            Some(json!({"configs": {"TWO": half}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.error().contains("32 kB"), "{}", r.error());
    let config = api.record(APP).await.config;
    assert_eq!(config.keys().collect::<Vec<_>>(), ["ONE"]);
    assert_eq!(api.releases(APP).await.len(), 2, "only ONE's release");
    // Exactly at the cap is fine: replacing ONE by a value that fills 32 kB.
    let exact = "z".repeat(32 * 1024 - "ONE".len());
    let r = api
        .call(
            Method::POST,
            PATH,
            auth,
            Some(json!({"configs": {"ONE": exact}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn config_unset_removes_keys_in_one_release() {
    let api = Api::new();
    let key = ada_with_app(&api).await;
    let auth = Some((ADA, key.as_str()));
    api.call(
        Method::POST,
        PATH,
        auth,
        Some(json!({"configs": {"A": "1", "B": "2", "C": "3"}})),
    )
    .await;
    api.pushed_release(APP, 1, SHA1, ReleaseStatus::Deployed)
        .await;
    let watch = api.watch(Topic::RELEASE_CREATED).await;

    // GIGALIXIR's CLI sends one `key`.
    let r = api
        .call(Method::DELETE, PATH, auth, Some(json!({"key": "A"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"], json!({"B": "2", "C": "3"}));
    let releases = api.releases(APP).await;
    assert_eq!(releases.len(), 2);
    assert_eq!(releases[0].spec.summary, "Unset A");
    assert_eq!(plain(&releases[0].spec.config), json!({"B": "2", "C": "3"}));
    assert_eq!(releases[0].spec.slug, slug(1));

    // Ours may send several `keys`: still one release.
    let r = api
        .call(
            Method::DELETE,
            PATH,
            auth,
            Some(json!({"keys": ["C", "B"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"], json!({}));
    let releases = api.releases(APP).await;
    assert_eq!(releases.len(), 3);
    assert_eq!(releases[0].spec.summary, "Unset C, B");
    assert!(releases[0].spec.config.is_empty());
    assert_eq!(api.pending(&watch).await, 2);
}

#[tokio::test]
async fn unsetting_a_key_that_is_not_set_is_refused_and_changes_nothing() {
    let api = Api::new();
    let key = ada_with_app(&api).await;
    let auth = Some((ADA, key.as_str()));
    api.call(
        Method::POST,
        PATH,
        auth,
        Some(json!({"configs": {"A": "1"}})),
    )
    .await;
    api.pushed_release(APP, 1, SHA1, ReleaseStatus::Deployed)
        .await;
    let r = api
        .call(
            Method::DELETE,
            PATH,
            auth,
            Some(json!({"keys": ["A", "NOPE"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.error().contains("`NOPE` is not set on adas-app"),
        "{}",
        r.error()
    );
    let r = api.call(Method::DELETE, PATH, auth, Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.error().contains("key is missing"), "{}", r.error());
    assert_eq!(plain(&api.record(APP).await.config), json!({"A": "1"}));
    assert_eq!(api.releases(APP).await.len(), 1);
}

#[tokio::test]
async fn config_copy_merges_the_source_over_the_destination_in_one_release() {
    let api = Api::new();
    let key = ada_with_app(&api).await;
    let auth = Some((ADA, key.as_str()));
    api.app(ADA, &key, "ada-staging").await;
    api.call(
        Method::POST,
        "/api/apps/ada-staging/configs",
        auth,
        Some(json!({"configs": {"SHARED": "from staging", "ONLY_SRC": "s"}})),
    )
    .await;
    api.call(
        Method::POST,
        PATH,
        auth,
        Some(json!({"configs": {"SHARED": "mine", "ONLY_DST": "d"}})),
    )
    .await;
    api.pushed_release(APP, 1, SHA1, ReleaseStatus::Deployed)
        .await;
    let watch = api.watch(Topic::RELEASE_CREATED).await;

    let r = api
        .call(
            Method::POST,
            "/api/apps/adas-app/configs/copy",
            auth,
            Some(json!({"from": "ada-staging"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let merged = json!({"SHARED": "from staging", "ONLY_SRC": "s", "ONLY_DST": "d"});
    assert_eq!(r.body["data"], merged);
    assert_eq!(plain(&api.record(APP).await.config), merged);
    let releases = api.releases(APP).await;
    assert_eq!(releases.len(), 2);
    assert_eq!(releases[0].spec.summary, "Copy config from ada-staging");
    assert_eq!(plain(&releases[0].spec.config), merged);
    assert_eq!(api.pending(&watch).await, 1);
    // The source is untouched.
    assert_eq!(
        plain(&api.record("ada-staging").await.config),
        json!({"SHARED": "from staging", "ONLY_SRC": "s"})
    );

    // Onto itself, or from an app without config: refused.
    let r = api
        .call(
            Method::POST,
            "/api/apps/adas-app/configs/copy",
            auth,
            Some(json!({"from": APP})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    api.app(ADA, &key, "ada-empty").await;
    let r = api
        .call(
            Method::POST,
            "/api/apps/adas-app/configs/copy",
            auth,
            Some(json!({"from": "ada-empty"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.error().contains("no config vars"), "{}", r.error());
    assert_eq!(api.releases(APP).await.len(), 2);
}

#[tokio::test]
async fn another_users_apps_answer_404_and_leak_nothing() {
    let api = Api::new();
    let ada = ada_with_app(&api).await;
    let ada_auth = Some((ADA, ada.as_str()));
    api.call(
        Method::POST,
        PATH,
        ada_auth,
        Some(json!({"configs": {"DB_PASSWORD": "hunter2-secret"}})),
    )
    .await;
    let bob = api.user(BOB).await;
    api.app(BOB, &bob, "bobs-app").await;
    let bob_auth = Some((BOB, bob.as_str()));

    let copy = "/api/apps/adas-app/configs/copy";
    for (method, path, body) in [
        (Method::GET, PATH, None),
        (Method::POST, PATH, Some(json!({"configs": {"X": "1"}}))),
        (Method::DELETE, PATH, Some(json!({"key": "DB_PASSWORD"}))),
        (Method::POST, copy, Some(json!({"from": "bobs-app"}))),
        // Bob's own app as destination, Ada's as source: still 404.
        (
            Method::POST,
            "/api/apps/bobs-app/configs/copy",
            Some(json!({"from": APP})),
        ),
        (Method::GET, "/api/apps/no-such-app/configs", None),
    ] {
        let r = api.call(method.clone(), path, bob_auth, body).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            r.text
        );
        assert!(!r.text.contains("hunter2"), "{}", r.text);
    }
    assert!(api.record("bobs-app").await.config.is_empty());
    assert_eq!(
        plain(&api.record(APP).await.config),
        json!({"DB_PASSWORD": "hunter2-secret"})
    );
    // Without credentials: 401.
    let r = api.call(Method::GET, PATH, None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = api
        .call(Method::GET, PATH, Some((ADA, "wrong-key")), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
