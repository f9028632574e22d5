//! Handler tests for SSH keys (`GET`/`POST`/`DELETE /api/ssh_keys`) and SSH access
//! (`GET /api/apps/NAME/ssh_ip`), through `router(state).oneshot`, on a real SQLite store
//! and bus in a temp dir. SSH access is tried without a runtime (503) and with a stand-in
//! runtime that only lists replicas; the real one is exercised by the end-to-end tests.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::{Method, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use common::{Api, ADA, BOB};
use futures::stream::BoxStream;
use serde_json::{json, Value};
use shared::domain::{AppName, Email, ReleaseVersion, UserId};
use shared::error::PortResult;
use shared::messages::{Event, Topic};
use shared::ports::runtime::{
    DeployOutcome, HotOutcome, PhaseOutcome, ReleaseSpec, Replica, ReplicaState,
};
use shared::ports::Runtime;

const KEYS: &str = "/api/ssh_keys";
/// A real key, as `ssh-keygen -t ed25519 -C ada@laptop` wrote it, and its fingerprint as
/// `ssh-keygen -lf` printed it.
const ADA_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIrloD7x9w/v15IUUUg24mSXyzhSvsi63NaloVoYCMTw ada@laptop";
const ADA_FP: &str = "SHA256:Pz+qqGLw4LqaK/z3a+ImNfyT7m2bF86CqoFO3kqTbQM";

/// A well-formed ed25519 key line whose 32 key bytes are all `n`.
fn synthetic_key(n: u8) -> String {
    let mut blob = Vec::new();
    for part in [&b"ssh-ed25519"[..], &[n; 32]] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!("ssh-ed25519 {} key-{n}", STANDARD.encode(blob))
}

async fn user_id(api: &Api, email: &str) -> UserId {
    api.store()
        .user_by_email(&Email::parse(email).expect("email"))
        .await
        .expect("user")
        .id
}

async fn add(api: &Api, auth: Option<(&str, &str)>, key: &str) -> common::Reply {
    api.call(Method::POST, KEYS, auth, Some(json!({ "ssh_key": key })))
        .await
}

#[tokio::test]
async fn a_key_is_added_listed_and_announced() {
    let api = Api::new();
    let key = api.user(ADA).await;
    let auth = Some((ADA, key.as_str()));
    let watch = api.watch(Topic::SSH_KEYS_CHANGED).await;

    let r = api.call(Method::GET, KEYS, auth, None).await;
    assert_eq!((r.status, &r.body), (StatusCode::OK, &json!({"data": []})));

    // As a .pub file reads, with its newline.
    let r = add(&api, auth, &format!("{ADA_KEY}\n")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let added = r.body["data"].clone();
    assert_eq!(added["key"], ADA_KEY);
    assert_eq!(added["fingerprint"], ADA_FP);
    let id = added["id"].as_str().expect("id").to_owned();
    assert!(uuid_like(&id), "{id}");
    assert!(added["created_at"].is_string());

    let r = api.call(Method::GET, KEYS, auth, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"], json!([added]));

    // Stored as given to the replicas' SSH servers: the normalised line.
    let stored = api
        .store()
        .ssh_keys(&user_id(&api, ADA).await)
        .await
        .expect("keys");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].key, ADA_KEY);

    assert_eq!(api.pending(&watch).await, 1);
    let events = api.events(&watch, 1).await;
    assert_eq!(
        events[0],
        Event::SshKeysChanged {
            user: user_id(&api, ADA).await,
            app: None,
        }
    );
}

fn uuid_like(id: &str) -> bool {
    id.len() == 36 && id.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test]
async fn invalid_keys_are_refused_with_a_reason_and_nothing_is_stored() {
    let api = Api::new();
    let key = api.user(ADA).await;
    let auth = Some((ADA, key.as_str()));
    let watch = api.watch(Topic::SSH_KEYS_CHANGED).await;
    for (body, needle) in [
        (json!({"ssh_key": ""}), "SSH key is empty"),
        (json!({"ssh_key": "not a key"}), "unknown type `not`"),
        (
            json!({"ssh_key": "ssh-ed25519 AAAA!!!! me"}),
            "not valid base64",
        ),
        (
            json!({"ssh_key": ADA_KEY.replace("ssh-ed25519 ", "ssh-rsa ")}),
            "says `ssh-rsa` but its data is a `ssh-ed25519` key",
        ),
        (
            json!({"ssh_key": format!("{ADA_KEY}\n{ADA_KEY}")}),
            "has 2 lines",
        ),
        (
            json!({"ssh_key": format!("command=\"/bin/sh\" {ADA_KEY}")}),
            "something before its type",
        ),
        (
            json!({"ssh_key": "-----BEGIN OPENSSH PRIVATE KEY-----"}),
            "private key",
        ),
    ] {
        let r = api.call(Method::POST, KEYS, auth, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            r.body["errors"]["ssh_key"][0]
                .as_str()
                .is_some_and(|m| m.contains(needle)),
            "{body}: {}",
            r.text
        );
    }
    // The wrong field name, or none.
    for body in [json!({"key": ADA_KEY}), json!({})] {
        let r = api.call(Method::POST, KEYS, auth, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    let r = api.call(Method::GET, KEYS, auth, None).await;
    assert_eq!(r.body["data"], json!([]));
    assert_eq!(api.pending(&watch).await, 0);
}

#[tokio::test]
async fn a_key_already_added_is_refused_even_with_another_comment() {
    let api = Api::new();
    let key = api.user(ADA).await;
    let auth = Some((ADA, key.as_str()));
    let r = add(&api, auth, ADA_KEY).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["data"]["id"].as_str().expect("id").to_owned();
    let watch = api.watch(Topic::SSH_KEYS_CHANGED).await;

    for again in [
        ADA_KEY.to_owned(),
        ADA_KEY.replace("ada@laptop", "another comment"),
    ] {
        let r = add(&api, auth, &again).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        let m = r.error();
        assert!(
            m.contains("already added") && m.contains(ADA_FP) && m.contains(&id),
            "{m}"
        );
    }
    let r = api.call(Method::GET, KEYS, auth, None).await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(api.pending(&watch).await, 0);

    // Another account may add the same public key: it admits that account only.
    let bob = api.user(BOB).await;
    let r = add(&api, Some((BOB, bob.as_str())), ADA_KEY).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn an_account_holds_at_most_50_keys() {
    let api = Api::new();
    let key = api.user(ADA).await;
    let auth = Some((ADA, key.as_str()));
    for n in 0..50u8 {
        let r = add(&api, auth, &synthetic_key(n)).await;
        assert_eq!(r.status, StatusCode::CREATED, "key {n}: {}", r.text);
    }
    let watch = api.watch(Topic::SSH_KEYS_CHANGED).await;
    let r = add(&api, auth, &synthetic_key(50)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.error().contains("the most it may have is 50"),
        "{}",
        r.error()
    );
    assert_eq!(api.pending(&watch).await, 0);

    // Removing one makes room again.
    let r = api.call(Method::GET, KEYS, auth, None).await;
    let listed = r.body["data"].as_array().expect("list").clone();
    assert_eq!(listed.len(), 50);
    assert_eq!(listed[0]["key"], synthetic_key(0), "oldest first");
    let r = api
        .call(
            Method::DELETE,
            KEYS,
            auth,
            Some(json!({"id": listed[0]["id"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = add(&api, auth, &synthetic_key(50)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn keys_are_removed_by_their_owner_only() {
    let api = Api::new();
    let ada = api.user(ADA).await;
    let bob = api.user(BOB).await;
    let ada_auth = Some((ADA, ada.as_str()));
    let bob_auth = Some((BOB, bob.as_str()));
    let r = add(&api, ada_auth, ADA_KEY).await;
    let id: Value = r.body["data"]["id"].clone();
    let watch = api.watch(Topic::SSH_KEYS_CHANGED).await;

    // Bob sees none of Ada's keys and cannot remove them.
    let r = api.call(Method::GET, KEYS, bob_auth, None).await;
    assert_eq!(r.body["data"], json!([]));
    let r = api
        .call(Method::DELETE, KEYS, bob_auth, Some(json!({ "id": id })))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(r.error().contains("no SSH key with id"), "{}", r.error());
    let r = api.call(Method::GET, KEYS, ada_auth, None).await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(api.pending(&watch).await, 0);

    // Ada can; the change is announced; a second removal is 404.
    let r = api
        .call(Method::DELETE, KEYS, ada_auth, Some(json!({ "id": id })))
        .await;
    assert_eq!((r.status, &r.body), (StatusCode::OK, &json!({"data": {}})));
    let r = api.call(Method::GET, KEYS, ada_auth, None).await;
    assert_eq!(r.body["data"], json!([]));
    assert_eq!(api.pending(&watch).await, 1);
    assert_eq!(
        api.events(&watch, 1).await[0],
        Event::SshKeysChanged {
            user: user_id(&api, ADA).await,
            app: None,
        }
    );
    let r = api
        .call(Method::DELETE, KEYS, ada_auth, Some(json!({ "id": id })))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = api
        .call(Method::DELETE, KEYS, ada_auth, Some(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
}

#[tokio::test]
async fn key_routes_need_credentials() {
    let api = Api::new();
    for method in [Method::GET, Method::POST, Method::DELETE] {
        let r = api
            .call(
                method.clone(),
                KEYS,
                Some((ADA, "nope")),
                Some(json!({"ssh_key": ADA_KEY, "id": "x"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method}");
    }
}

#[tokio::test]
async fn ssh_ip_without_the_runtime_is_503_and_checks_the_app_first() {
    let api = Api::new();
    let ada = api.user(ADA).await;
    let bob = api.user(BOB).await;
    api.app(ADA, &ada, "adas-app").await;
    let r = api
        .call(
            Method::GET,
            "/api/apps/adas-app/ssh_ip",
            Some((ADA, ada.as_str())),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(r.error().contains("SSH access"), "{}", r.error());
    let r = api
        .call(
            Method::GET,
            "/api/apps/adas-app/ssh_ip",
            Some((BOB, bob.as_str())),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = api
        .call(Method::GET, "/api/apps/adas-app/ssh_ip", None, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}

/// A runtime that only lists the replicas it is given.
struct Replicas(Vec<Replica>);

#[async_trait]
impl Runtime for Replicas {
    async fn deploy(&self, _: &ReleaseSpec) -> PortResult<DeployOutcome> {
        unimplemented!("not used by ssh_ip")
    }
    async fn endpoints(&self, _: &AppName) -> PortResult<Vec<SocketAddr>> {
        unimplemented!("not used by ssh_ip")
    }
    async fn remove_app(&self, _: &AppName) -> PortResult<()> {
        unimplemented!("not used by ssh_ip")
    }
    async fn replicas(&self, _: &AppName) -> PortResult<Vec<Replica>> {
        Ok(self.0.clone())
    }
    async fn logs(&self, _: &AppName, _: usize, _: bool) -> PortResult<BoxStream<'static, String>> {
        unimplemented!("not used by ssh_ip")
    }
    async fn scale(&self, _: &ReleaseSpec) -> PortResult<DeployOutcome> {
        unimplemented!("not used by ssh_ip")
    }
    async fn set_ssh_keys(&self, _: &AppName, _: &[String]) -> PortResult<()> {
        unimplemented!("not used by ssh_ip")
    }
    async fn restart(&self, _: &ReleaseSpec) -> PortResult<DeployOutcome> {
        unimplemented!("not used by ssh_ip")
    }
    async fn hot_upgrade(&self, _: &ReleaseSpec) -> PortResult<HotOutcome> {
        unimplemented!("not used by ssh_ip")
    }
    async fn release_phase(&self, _: &ReleaseSpec) -> PortResult<PhaseOutcome> {
        unimplemented!("not used by ssh_ip")
    }
    async fn runs(&self, _: &AppName, _: ReleaseVersion) -> PortResult<bool> {
        unimplemented!("not used by ssh_ip")
    }
}

fn replica(index: u32, state: ReplicaState, port: u16) -> Replica {
    Replica {
        name: format!("gx-local-adas-app-v2-{index}"),
        index,
        version: ReleaseVersion(2),
        state,
        since: Utc::now(),
        ssh: Some(SocketAddr::from(([127, 0, 0, 1], port))),
    }
}

#[tokio::test]
async fn ssh_ip_names_the_first_running_replica_in_gigalixirs_shape() {
    let mut api = Api::new();
    let ada = api.user(ADA).await;
    api.app(ADA, &ada, "adas-app").await;
    let auth = Some((ADA, ada.as_str()));

    api.state.runtime = Some(Arc::new(Replicas(vec![
        replica(1, ReplicaState::Running, 32002),
        replica(0, ReplicaState::Running, 32001),
    ])));
    let r = api
        .call(Method::GET, "/api/apps/adas-app/ssh_ip", auth, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.body["data"],
        json!({
            "ssh_ip": "127.0.0.1",
            "ssh_port": 32001,
            "ssh_user": "app",
            "replicas": [
                {"index": 0, "host": "127.0.0.1", "port": 32001, "version": 2},
                {"index": 1, "host": "127.0.0.1", "port": 32002, "version": 2},
            ]
        })
    );

    api.state.runtime = Some(Arc::new(Replicas(vec![replica(
        0,
        ReplicaState::Stopped,
        32001,
    )])));
    let r = api
        .call(Method::GET, "/api/apps/adas-app/ssh_ip", auth, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert!(
        r.error()
            .contains("adas-app has no running replica: deploy it first"),
        "{}",
        r.error()
    );
}
