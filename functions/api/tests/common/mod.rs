//! What the handler tests of config vars and processes share: the API on a real SQLite
//! store and bus in a temp dir, called through `router(state).oneshot`, with the release
//! step consuming `release-requested` from that bus (as the platform has it: config
//! changes and rollbacks are released there), and a watcher for what is published.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures::FutureExt;
use gigalixir_api::{router, ApiState};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use shared::domain::{AppName, BuildId, ReleaseVersion};
use shared::embedded::{SqliteBus, SqliteStore};
use shared::messages::{Event, Topic};
use shared::model::{App, NewRelease, Release, ReleaseStatus, SlugRef};
use shared::ports::{Bus, Store, SubscriptionSpec};
use shared::push::{step_router, RouterEndpoint};
use tokio::sync::mpsc;
use tower::ServiceExt;

pub const ADA: &str = "ada@example.com";
pub const BOB: &str = "bob@example.com";
pub const SHA1: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";
pub const SHA2: &str = "ffeeddccbbaa99887766554433221100ffeeddcc";

pub struct Api {
    pub state: ApiState,
    pub bus: Arc<SqliteBus>,
    /// The release step's delivery loop, started at the first call.
    release_step: tokio::sync::OnceCell<tokio::task::AbortHandle>,
    _dir: tempfile::TempDir,
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(step) = self.release_step.get() {
            step.abort();
        }
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
    pub headers: HeaderMap,
}

impl Reply {
    /// The error messages as one string.
    pub fn error(&self) -> String {
        self.body["errors"].to_string()
    }
}

impl Api {
    pub fn new() -> Self {
        Self::with_confirmation(false)
    }

    /// An API whose new accounts confirm their email (the platform's default); mail goes
    /// to the outbox ([`Api::mails`]).
    pub fn confirming() -> Self {
        Self::with_confirmation(true)
    }

    fn with_confirmation(confirm_email: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("store.db")).expect("store");
        let bus = Arc::new(SqliteBus::open(&dir.path().join("bus.db")).expect("bus"));
        Self {
            state: ApiState {
                store: Arc::new(store),
                bus: bus.clone(),
                runtime: None,
                app_domain: "localhost".into(),
                certificates: None,
                reserved_domains: Vec::new().into(),
                accounts: gigalixir_api::Accounts {
                    confirm_email,
                    public_url: "http://paas.test".into(),
                    ..gigalixir_api::Accounts::unconfirmed_in(dir.path().join("outbox"))
                },
                databases: None,
                blobs: None,
                drains_allow_loopback: false,
            },
            bus,
            release_step: tokio::sync::OnceCell::new(),
            _dir: dir,
        }
    }

    /// Starts the release step on the bus (once): `release-requested` becomes releases.
    async fn release_step(&self) {
        self.release_step
            .get_or_init(|| async {
                let spec =
                    SubscriptionSpec::new("release.release-requested", Topic::RELEASE_REQUESTED);
                self.bus
                    .ensure_subscription(&spec)
                    .await
                    .expect("subscription");
                let step = gigalixir_release::router(gigalixir_release::StepState {
                    store: self.state.store.clone(),
                    bus: self.bus.clone(),
                });
                let bus = self.bus.clone();
                let delivering = tokio::spawn(async move {
                    let endpoint = Arc::new(RouterEndpoint::new(step, "/"));
                    let _ = bus
                        .deliver(&spec.name, endpoint, futures::future::pending().boxed())
                        .await;
                });
                delivering.abort_handle()
            })
            .await;
    }

    /// The mails in the outbox to `to`, oldest first, each as its whole text (headers and
    /// a decoded body).
    pub fn mails(&self, to: &str) -> Vec<String> {
        let dir = self._dir.path().join("outbox");
        let mut files: Vec<_> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.map(|e| e.expect("entry").path()).collect(),
            Err(_) => return Vec::new(),
        };
        files.sort_by_key(|f| {
            std::fs::metadata(f)
                .and_then(|m| m.modified())
                .expect("mtime")
        });
        files
            .iter()
            .map(|f| std::fs::read_to_string(f).expect("mail"))
            .map(|text| {
                text.replace("=\r\n", "")
                    .replace("=\n", "")
                    .replace("=3D", "=")
            })
            .filter(|text| text.contains(&format!("To: {to}")))
            .collect()
    }

    pub fn store(&self) -> &dyn Store {
        &*self.state.store
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<(&str, &str)>,
        body: Option<Value>,
    ) -> Reply {
        self.release_step().await;
        let mut req = Request::builder().method(method).uri(path);
        if let Some((user, secret)) = auth {
            let token = STANDARD.encode(format!("{user}:{secret}"));
            req = req.header(header::AUTHORIZATION, format!("Basic {token}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        };
        let resp = router(self.state.clone())
            .oneshot(req.expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            body,
            text,
            headers,
        }
    }

    /// Signs up and logs in; returns the API key.
    pub async fn user(&self, email: &str) -> String {
        let r = self
            .call(
                Method::POST,
                "/api/users",
                None,
                Some(json!({"email": email, "password": "password123"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let r = self
            .call(
                Method::GET,
                "/api/login",
                Some((email, "password123")),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["data"]["key"].as_str().expect("key").to_owned()
    }

    /// Creates an app for `email`.
    pub async fn app(&self, email: &str, key: &str, name: &str) {
        let r = self
            .call(
                Method::POST,
                "/api/apps",
                Some((email, key)),
                Some(json!({"unique_name": name})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }

    /// The app's record as stored.
    pub async fn record(&self, name: &str) -> App {
        self.store()
            .app(&AppName::parse(name).expect("name"))
            .await
            .expect("app")
    }

    /// The app's releases, newest first.
    pub async fn releases(&self, name: &str) -> Vec<Release> {
        let mut all = self
            .store()
            .releases(&AppName::parse(name).expect("name"))
            .await
            .expect("releases");
        all.sort_by_key(|r| std::cmp::Reverse(r.version));
        all
    }

    /// Makes a release the way the release function does after a push, with the app's
    /// current config, and gives it `status`.
    pub async fn pushed_release(
        &self,
        name: &str,
        n: u8,
        commit: &str,
        status: ReleaseStatus,
    ) -> Release {
        let app = AppName::parse(name).expect("name");
        let config = self.record(name).await.config;
        let release = self
            .store()
            .create_next_release(
                &app,
                &NewRelease {
                    rollback_to: None,
                    idempotency_key: format!("push-{n}"),
                    slug: slug(n),
                    config,
                    commit: Some(commit.to_owned()),
                    build: Some(BuildId::random()),
                    summary: format!("Deploy {}", &commit[..7]),
                },
            )
            .await
            .expect("release");
        self.store()
            .set_release_status(&app, release.version, status)
            .await
            .expect("status");
        self.store()
            .release(&app, release.version)
            .await
            .expect("reread")
    }

    /// Subscribes a watcher to `topic`; call before the request that publishes.
    pub async fn watch(&self, topic: Topic) -> String {
        let name = format!("watch.{topic}");
        self.bus
            .ensure_subscription(&SubscriptionSpec::new(name.clone(), topic))
            .await
            .expect("watch");
        name
    }

    /// Messages waiting on a watcher's subscription.
    pub async fn pending(&self, subscription: &str) -> u64 {
        self.bus.pending(subscription).await.expect("pending")
    }

    /// Delivers the watcher's messages and returns the first `n` events (fails after 10 s).
    pub async fn events(&self, subscription: &str, n: usize) -> Vec<Event> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let endpoint = RouterEndpoint::new(
            step_router(
                tx,
                |tx: mpsc::UnboundedSender<Event>, event, _trace| async move {
                    let _ = tx.send(event);
                    Ok(())
                },
            ),
            "/",
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let bus = self.bus.clone();
        let sub = subscription.to_owned();
        let delivering = tokio::spawn(async move {
            bus.deliver(
                &sub,
                Arc::new(endpoint),
                Box::pin(async move {
                    let _ = stopped.await;
                }),
            )
            .await
        });
        let mut got = Vec::new();
        while got.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(event)) => got.push(event),
                _ => panic!("only {} of {n} events arrived: {got:?}", got.len()),
            }
        }
        let _ = stop.send(());
        let _ = delivering.await;
        got
    }
}

/// The slug of push `n`.
pub fn slug(n: u8) -> SlugRef {
    SlugRef {
        process_types: None,
        stack: None,
        key: format!("slugs/{n}.tgz"),
        sha256: format!("{n:064x}"),
        size: 1000 * u64::from(n),
    }
}

/// `v{n}`.
pub fn v(n: u32) -> ReleaseVersion {
    ReleaseVersion(n)
}
