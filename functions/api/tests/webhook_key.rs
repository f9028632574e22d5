//! `POST /api/apps/NAME/webhook`: a new push webhook key, shown once, kept on the app;
//! `DELETE` forgets it; another user's app is a 404.

mod common;

use axum::http::{Method, StatusCode};

use common::{Api, ADA, BOB};

#[tokio::test]
async fn a_new_key_replaces_the_old_one_and_can_be_removed() {
    let api = Api::new();
    let key = api.user(ADA).await;
    api.app(ADA, &key, "my-app").await;
    assert!(api.record("my-app").await.webhook_secret.is_none());

    let r = api
        .call(
            Method::POST,
            "/api/apps/my-app/webhook",
            Some((ADA, &key)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let first = r.body["data"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_eq!(first.len(), 64);
    assert_eq!(r.body["data"]["path"], "/hooks/github/my-app");
    assert_eq!(r.body["data"]["content_type"], "application/json");
    let stored = api.record("my-app").await.webhook_secret.expect("stored");
    assert_eq!(stored.expose(), first);
    // The app's own views never show it.
    let info = api
        .call(Method::GET, "/api/apps/my-app", Some((ADA, &key)), None)
        .await;
    assert!(!info.text.contains(&first), "{}", info.text);

    let r = api
        .call(
            Method::POST,
            "/api/apps/my-app/webhook",
            Some((ADA, &key)),
            None,
        )
        .await;
    let second = r.body["data"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_ne!(first, second);
    assert_eq!(
        api.record("my-app")
            .await
            .webhook_secret
            .expect("stored")
            .expose(),
        second
    );

    let r = api
        .call(
            Method::DELETE,
            "/api/apps/my-app/webhook",
            Some((ADA, &key)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(api.record("my-app").await.webhook_secret.is_none());
}

#[tokio::test]
async fn only_the_owner_gets_a_key() {
    let api = Api::new();
    let key = api.user(ADA).await;
    api.app(ADA, &key, "my-app").await;
    let bob = api.user(BOB).await;
    let r = api
        .call(
            Method::POST,
            "/api/apps/my-app/webhook",
            Some((BOB, &bob)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = api
        .call(Method::POST, "/api/apps/my-app/webhook", None, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert!(api.record("my-app").await.webhook_secret.is_none());
}
