//! Every app route of `APP_ROUTES` × every kind of caller: the owner, a collaborator, a
//! viewer, another user, nobody (no credentials) and a revoked key. Allowed callers get
//! past authorization (whatever the handler then says of the empty request); the others
//! get exactly 401 (no or revoked credentials), 404 (no access: as if there were no such
//! app) or 403 (too little access).

mod common;

use axum::http::{Method, StatusCode};
use common::{Api, ADA, BOB};
use gigalixir_api::access::{Need, APP_ROUTES};
use serde_json::json;

const CAROL: &str = "carol@example.com";
const EVE: &str = "eve@example.com";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Nobody,
    Revoked,
    Other,
    Viewer,
    Collaborator,
    Owner,
}

fn expected(caller: Caller, need: Need) -> &'static str {
    match (caller, need) {
        (Caller::Nobody | Caller::Revoked, _) => "401",
        (Caller::Other, _) => "404",
        (Caller::Owner, _) => "allowed",
        (Caller::Collaborator, Need::Read | Need::Change) => "allowed",
        (Caller::Viewer, Need::Read) => "allowed",
        (Caller::Viewer | Caller::Collaborator, _) => "403",
    }
}

#[tokio::test]
async fn every_app_route_answers_each_kind_of_caller_as_the_table_says() {
    let api = Api::new();
    let revoked = api.user(ADA).await;
    let owner = api
        .call(Method::GET, "/api/login", Some((ADA, "password123")), None)
        .await
        .body["data"]["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let r = api
        .call(
            Method::POST,
            "/api/api_keys/regenerate",
            Some((ADA, &owner)),
            Some(json!({"current_password": "password123"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let owner = r.body["data"]["key"].as_str().expect("key").to_owned();
    let collaborator = api.user(BOB).await;
    let viewer = api.user(CAROL).await;
    let other = api.user(EVE).await;

    let mut cells = 0;
    let mut wrong = Vec::new();
    for (i, (method, route, need)) in APP_ROUTES.iter().enumerate() {
        let app = format!("matrix-{i}");
        api.app(ADA, &owner, &app).await;
        for (email, role) in [(BOB, "COLLABORATOR"), (CAROL, "VIEWER")] {
            let r = api
                .call(
                    Method::POST,
                    &format!("/api/apps/{app}/permissions"),
                    Some((ADA, &owner)),
                    Some(json!({"email": email, "role": role})),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        }
        let path = route.replace("{name}", &app).replace("{version}", "1");
        let method: Method = method.parse().expect("method");
        // The owner goes last: some of its calls destroy or give away the app.
        for caller in [
            Caller::Nobody,
            Caller::Revoked,
            Caller::Other,
            Caller::Viewer,
            Caller::Collaborator,
            Caller::Owner,
        ] {
            let auth = match caller {
                Caller::Nobody => None,
                Caller::Revoked => Some((ADA, revoked.as_str())),
                Caller::Other => Some((EVE, other.as_str())),
                Caller::Viewer => Some((CAROL, viewer.as_str())),
                Caller::Collaborator => Some((BOB, collaborator.as_str())),
                Caller::Owner => Some((ADA, owner.as_str())),
            };
            let body = (method != Method::GET).then(|| json!({}));
            let r = api.call(method.clone(), &path, auth, body).await;
            let not_found = r.status == StatusCode::NOT_FOUND && r.text.contains("App `");
            let got = match r.status {
                StatusCode::UNAUTHORIZED => "401",
                StatusCode::FORBIDDEN => "403",
                _ if not_found => "404",
                _ => "allowed",
            };
            let want = expected(caller, *need);
            cells += 1;
            if got != want {
                wrong.push(format!(
                    "{method} {route} as {caller:?}: {want} expected, got {} {}",
                    r.status, r.text
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(cells, APP_ROUTES.len() * 6);
    println!(
        "authorization matrix: {} routes × 6 callers = {cells} cells",
        APP_ROUTES.len()
    );
}

#[tokio::test]
async fn apps_shared_with_someone_are_listed_for_them_and_access_shows_everyone() {
    let api = Api::new();
    let ada = api.user(ADA).await;
    let bob = api.user(BOB).await;
    api.app(ADA, &ada, "shared-app").await;
    api.app(BOB, &bob, "bobs-own").await;
    let names = |key: String, email: &'static str| {
        let api = &api;
        async move {
            let r = api
                .call(Method::GET, "/api/apps", Some((email, &key)), None)
                .await;
            r.body["data"]
                .as_array()
                .expect("apps")
                .iter()
                .map(|a| a["unique_name"].as_str().expect("name").to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names(bob.clone(), BOB).await, ["bobs-own"]);
    let r = api
        .call(
            Method::POST,
            "/api/apps/shared-app/permissions",
            Some((ADA, &ada)),
            Some(json!({"email": BOB, "role": "viewer"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(names(bob.clone(), BOB).await, ["bobs-own", "shared-app"]);
    let r = api
        .call(
            Method::GET,
            "/api/apps/shared-app/permissions",
            Some((BOB, &bob)),
            None,
        )
        .await;
    assert_eq!(
        r.body["data"],
        json!([{"email": ADA, "role": "OWNER"}, {"email": BOB, "role": "VIEWER"}])
    );
    // Unknown people and bad roles are refused; nothing changes.
    for body in [
        json!({"email": "nobody@example.com"}),
        json!({"email": BOB, "role": "ADMIN"}),
    ] {
        let r = api
            .call(
                Method::POST,
                "/api/apps/shared-app/permissions",
                Some((ADA, &ada)),
                Some(body),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    }
    let r = api
        .call(
            Method::DELETE,
            "/api/apps/shared-app/permissions",
            Some((ADA, &ada)),
            Some(json!({"email": BOB})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(names(bob.clone(), BOB).await, ["bobs-own"]);
    let r = api
        .call(Method::GET, "/api/apps/shared-app", Some((BOB, &bob)), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_transferred_app_is_the_new_owners_and_the_old_owner_stays_a_collaborator() {
    let api = Api::new();
    let ada = api.user(ADA).await;
    let bob = api.user(BOB).await;
    api.app(ADA, &ada, "moving-app").await;
    let r = api
        .call(
            Method::PUT,
            "/api/apps/moving-app/owner",
            Some((ADA, &ada)),
            Some(json!({"email": BOB})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = api
        .call(
            Method::GET,
            "/api/apps/moving-app/permissions",
            Some((BOB, &bob)),
            None,
        )
        .await;
    assert_eq!(
        r.body["data"],
        json!([{"email": BOB, "role": "OWNER"}, {"email": ADA, "role": "COLLABORATOR"}])
    );
    let r = api
        .call(Method::GET, "/api/apps", Some((BOB, &bob)), None)
        .await;
    assert_eq!(
        r.body["data"][0]["unique_name"],
        json!("moving-app"),
        "{}",
        r.text
    );
    // Destroying Ada's account with her apps leaves what is now Bob's.
    let r = api
        .call(
            Method::POST,
            "/api/apps",
            Some((ADA, &ada)),
            Some(json!({"unique_name": "adas-other"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = api
        .call(
            Method::DELETE,
            "/api/users/destroy",
            Some((ADA, &ada)),
            Some(json!({"email": ADA, "current_password": "password123", "destroy_apps": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = api
        .call(Method::GET, "/api/apps/moving-app", Some((BOB, &bob)), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ada = api.user(ADA).await;
    // Ada (a new account of the same email) may no longer destroy it; Bob may.
    let r = api
        .call(
            Method::DELETE,
            "/api/apps/moving-app",
            Some((ADA, &ada)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = api
        .call(
            Method::DELETE,
            "/api/apps/moving-app",
            Some((BOB, &bob)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
