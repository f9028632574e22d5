//! Handler tests for custom domains (`GET`/`POST`/`DELETE /api/apps/NAME/domains`), through
//! `router(state).oneshot`, on a real SQLite store and bus in a temp dir: what the CLI is
//! told, and the `domains-changed` announcement the deploy step turns into the runtime's
//! ingress. Routing and certificates are exercised end to end in `tests/tests/edge.rs`.

mod common;

use axum::http::{Method, StatusCode};
use common::{Api, ADA, BOB};
use serde_json::json;
use shared::domain::AppName;
use shared::messages::{Event, Topic};

const DOMAINS: &str = "/api/apps/shop/domains";

#[tokio::test]
async fn a_domain_is_added_listed_removed_and_each_change_announced() {
    let api = Api::new();
    let key = api.user(ADA).await;
    let auth = Some((ADA, key.as_str()));
    api.app(ADA, &key, "shop").await;
    let watch = api.watch(Topic::DOMAINS_CHANGED).await;

    let r = api
        .call(
            Method::POST,
            DOMAINS,
            auth,
            Some(json!({"fqdn": "WWW.Example.com."})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"]["fqdn"], "www.example.com");
    assert_eq!(r.body["data"]["cname"], "shop.localhost");

    let r = api.call(Method::GET, DOMAINS, auth, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let listed: Vec<&str> = r.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|d| d["fqdn"].as_str().expect("fqdn"))
        .collect();
    assert_eq!(listed, ["www.example.com"]);

    let r = api
        .call(
            Method::DELETE,
            DOMAINS,
            auth,
            Some(json!({"fqdn": "www.example.com"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let shop = AppName::parse("shop").expect("name");
    assert_eq!(api.pending(&watch).await, 2, "one announcement per change");
    assert_eq!(
        api.events(&watch, 2).await,
        vec![
            Event::DomainsChanged { app: shop.clone() },
            Event::DomainsChanged { app: shop },
        ]
    );
}

#[tokio::test]
async fn refused_changes_announce_nothing() {
    let api = Api::new();
    let ada = api.user(ADA).await;
    let bob = api.user(BOB).await;
    api.app(ADA, &ada, "shop").await;
    api.app(BOB, &bob, "other").await;
    let r = api
        .call(
            Method::POST,
            DOMAINS,
            Some((ADA, &ada)),
            Some(json!({"fqdn": "shop.example.com"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let watch = api.watch(Topic::DOMAINS_CHANGED).await;

    for (auth, path, method, fqdn, status, needle) in [
        // another account's domain
        (
            (BOB, bob.as_str()),
            "/api/apps/other/domains",
            Method::POST,
            "shop.example.com",
            StatusCode::UNPROCESSABLE_ENTITY,
            "used by another app",
        ),
        // the platform's own names
        (
            (BOB, bob.as_str()),
            "/api/apps/other/domains",
            Method::POST,
            "shop.localhost",
            StatusCode::UNPROCESSABLE_ENTITY,
            "platform's own domain",
        ),
        // not a domain name
        (
            (BOB, bob.as_str()),
            "/api/apps/other/domains",
            Method::POST,
            "10.0.0.1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "an IP address is not a domain",
        ),
        // removing what the app does not have
        (
            (BOB, bob.as_str()),
            "/api/apps/other/domains",
            Method::DELETE,
            "shop.example.com",
            StatusCode::NOT_FOUND,
            "has no domain",
        ),
        // someone else's app
        (
            (BOB, bob.as_str()),
            DOMAINS,
            Method::DELETE,
            "shop.example.com",
            StatusCode::NOT_FOUND,
            "not found",
        ),
    ] {
        let r = api
            .call(method, path, Some(auth), Some(json!({ "fqdn": fqdn })))
            .await;
        assert_eq!(r.status, status, "{fqdn}: {}", r.text);
        assert!(r.text.contains(needle), "{fqdn}: {}", r.text);
    }
    assert_eq!(api.pending(&watch).await, 0);
}

#[tokio::test]
async fn the_platforms_own_names_are_refused() {
    let mut api = Api::new();
    api.state.reserved_domains =
        vec![shared::domain::Fqdn::parse("paas.example.com").expect("name")].into();
    let key = api.user(ADA).await;
    api.app(ADA, &key, "shop").await;
    for fqdn in [
        "paas.example.com",
        "git.paas.example.com",
        "PAAS.example.com.",
    ] {
        let r = api
            .call(
                Method::POST,
                DOMAINS,
                Some((ADA, &key)),
                Some(json!({ "fqdn": fqdn })),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{fqdn}: {}",
            r.text
        );
        assert!(r.text.contains("is reserved by the platform"), "{}", r.text);
    }
    // a name beside it is anyone's
    let r = api
        .call(
            Method::POST,
            DOMAINS,
            Some((ADA, &key)),
            Some(json!({"fqdn": "shop.example.com"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn maintenance_canary_and_a_transfer_announce_the_routes_they_change() {
    let api = Api::new();
    let key = api.user(ADA).await;
    let bob = api.user(BOB).await;
    let auth = Some((ADA, key.as_str()));
    api.app(ADA, &key, "shop").await;
    api.app(ADA, &key, "green").await;
    let watch = api.watch(Topic::DOMAINS_CHANGED).await;
    let shop = AppName::parse("shop").expect("name");
    let green = AppName::parse("green").expect("name");
    for (method, path, body) in [
        (
            Method::PUT,
            "/api/apps/shop/maintenance",
            Some(json!({"enable": true})),
        ),
        (
            Method::PUT,
            "/api/apps/shop/maintenance",
            Some(json!({"enable": false})),
        ),
        (
            Method::PUT,
            "/api/apps/shop/canaries",
            Some(json!({"canary": "green", "weight": 10})),
        ),
        (Method::DELETE, "/api/apps/shop/canaries/green", None),
        (
            Method::PUT,
            "/api/apps/shop/canaries",
            Some(json!({"canary": "green", "weight": 20})),
        ),
    ] {
        let r = api.call(method, path, auth, body).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    }
    assert_eq!(
        api.events(&watch, 5).await,
        vec![Event::DomainsChanged { app: shop.clone() }; 5]
    );
    // A refused change announces nothing.
    let r = api
        .call(
            Method::PUT,
            "/api/apps/shop/canaries",
            Some((BOB, bob.as_str())),
            Some(json!({"canary": "green", "weight": 50})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(api.pending(&watch).await, 0);
    // Green given to Bob: its routes and those of shop, whose canary it was, change.
    let r = api
        .call(
            Method::PUT,
            "/api/apps/green/owner",
            auth,
            Some(json!({"email": BOB})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        api.events(&watch, 2).await,
        vec![
            Event::DomainsChanged { app: green },
            Event::DomainsChanged { app: shop },
        ]
    );
}
