//! The push webhook end to end on one machine: real GitHub `push` payloads (with their
//! `clone_url` and `after` pointed at a local repository), signed as GitHub signs them,
//! posted to `receive`'s router; the commit is fetched with the real git from a local
//! smart-HTTP server (`git http-backend`) serving a repository of `tests/fixtures/hello`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use gigalixir_receive::webhook::{sign, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER};
use gigalixir_receive::{cgi, router, ReceiveState};
use http_body_util::BodyExt;
use serde_json::Value;
use shared::domain::{AppName, Email, Secret};
use shared::embedded::{FsBlobs, SqliteBus, SqliteStore};
use shared::messages::{Event, Topic};
use shared::model::{App, BuildState, User};
use shared::ports::{Blobs, Bus, Store, SubscriptionSpec};
use shared::push::{step_router, RouterEndpoint};
use tokio::sync::mpsc;
use tower::ServiceExt;

const SECRET: &str = "It's a Secret to Everybody";
const WATCH: &str = "test.build-requested";

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/github-push")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ada")
        .env("GIT_AUTHOR_EMAIL", "ada@example.com")
        .env("GIT_COMMITTER_NAME", "Ada")
        .env("GIT_COMMITTER_EMAIL", "ada@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// `git http-backend` serving the repositories under its root (read-only).
#[derive(Clone)]
struct GitServer {
    root: PathBuf,
}

async fn backend(
    server: &GitServer,
    method: &'static str,
    path_info: String,
    query: String,
    headers: &HeaderMap,
    body: Option<PathBuf>,
) -> Response {
    let started = cgi::start(cgi::CgiRequest {
        method,
        path_info,
        query,
        headers,
        remote_user: String::new(),
        project_root: &server.root,
        body,
        env: Vec::new(),
    })
    .await
    .expect("git http-backend starts");
    let (status, headers, body) = cgi::read_all(started)
        .await
        .expect("git http-backend answers");
    (status, headers, body).into_response()
}

async fn serve_git(root: PathBuf) -> String {
    async fn refs(
        State(s): State<GitServer>,
        UrlPath(repo): UrlPath<String>,
        RawQuery(q): RawQuery,
        headers: HeaderMap,
    ) -> Response {
        let q = q.unwrap_or_default();
        backend(&s, "GET", format!("/{repo}/info/refs"), q, &headers, None).await
    }
    async fn upload(
        State(s): State<GitServer>,
        UrlPath(repo): UrlPath<String>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> Response {
        let spool = tempfile::NamedTempFile::new().expect("spool");
        std::fs::write(spool.path(), &body).expect("spool body");
        let path = format!("/{repo}/git-upload-pack");
        backend(
            &s,
            "POST",
            path,
            String::new(),
            &headers,
            Some(spool.path().into()),
        )
        .await
    }
    let app = Router::new()
        .route("/{repo}/info/refs", get(refs))
        .route("/{repo}/git-upload-pack", post(upload))
        .with_state(GitServer { root });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

struct World {
    state: ReceiveState,
    store: Arc<SqliteStore>,
    bus: Arc<SqliteBus>,
    blobs: Arc<FsBlobs>,
    app: AppName,
    /// The commit of `tests/fixtures/hello` the served repository's master points at.
    commit: String,
    clone_url: String,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("hello");
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hello");
    copy_dir(&hello, &work);
    git(&work, &["init", "--quiet", "--initial-branch=master"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "--quiet", "-m", "first"]);
    let commit = git(&work, &["rev-parse", "HEAD"]);
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).expect("mkdir");
    git(
        &served,
        &[
            "clone",
            "--quiet",
            "--bare",
            &work.display().to_string(),
            "hello.git",
        ],
    );
    let base = serve_git(served).await;

    let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("store"));
    let bus = Arc::new(SqliteBus::open(&dir.path().join("bus.db")).expect("bus"));
    let blobs = Arc::new(FsBlobs::open(&dir.path().join("blobs")).expect("blobs"));
    bus.ensure_subscription(&SubscriptionSpec::new(WATCH, Topic::BUILD_REQUESTED))
        .await
        .expect("watch");
    let owner = User {
        confirmed: true,
        ..User::new(
            Email::parse("ada@example.com").expect("email"),
            Secret::new("x"),
        )
    };
    store.create_user(&owner).await.expect("user");
    let app = AppName::parse("my-app").expect("name");
    store
        .create_app(&App {
            name: app.clone(),
            owner: owner.id,
            created_at: Utc::now(),
            health: Default::default(),
            webhook_secret: Some(Secret::new(SECRET)),
            maintenance: false,
            canary: None,
            databases: Vec::new(),
            drains: Vec::new(),
            erlang_cookie: Secret::new("c"),
            secret_key_base: Secret::new("s"),
            replicas: 1,
            size: 0.5,
            stack: None,
            config: Default::default(),
        })
        .await
        .expect("app");
    World {
        state: ReceiveState {
            store: store.clone(),
            bus: bus.clone(),
            blobs: blobs.clone(),
            // Only git pushes run the hook.
            hook_exe: PathBuf::from("/nonexistent"),
            app_url_template: "http://{app}.localhost/".into(),
            // the served repository is on loopback
            git: shared::gitfetch::GitPolicy {
                allow_loopback: true,
                ..Default::default()
            },
            git_slots: Default::default(),
            min_free_bytes: 0,
        },
        store,
        bus,
        blobs,
        app,
        commit,
        clone_url: format!("{base}/hello.git"),
        _dir: dir,
    }
}

struct Reply {
    status: StatusCode,
    body: Value,
    text: String,
}

impl World {
    /// The real payload `name`, pointed at the local repository and its commit.
    fn payload(&self, name: &str, git_ref: Option<&str>) -> Vec<u8> {
        let mut payload: Value = serde_json::from_slice(&fixture(name)).expect("fixture JSON");
        payload["repository"]["clone_url"] = Value::String(self.clone_url.clone());
        if payload["after"] != "0000000000000000000000000000000000000000" {
            payload["after"] = Value::String(self.commit.clone());
        }
        if let Some(r) = git_ref {
            payload["ref"] = Value::String(r.into());
        }
        serde_json::to_vec_pretty(&payload).expect("json")
    }

    async fn deliver(&self, body: Vec<u8>, signature: Option<String>, delivery: &str) -> Reply {
        let mut req = Request::post(format!("/hooks/github/{}", self.app))
            .header("content-type", "application/json")
            .header(EVENT_HEADER, "push")
            .header(DELIVERY_HEADER, delivery)
            .header("user-agent", "GitHub-Hookshot/044aadd");
        if let Some(sig) = signature {
            req = req.header(SIGNATURE_HEADER, sig);
        }
        let resp = router(self.state.clone())
            .oneshot(req.body(Body::from(body)).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Reply {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
        }
    }

    async fn signed(&self, body: Vec<u8>, delivery: &str) -> Reply {
        let sig = sign(SECRET.as_bytes(), &body);
        self.deliver(body, Some(sig), delivery).await
    }

    async fn builds(&self) -> usize {
        self.store.builds_of(&self.app).await.expect("builds").len()
    }

    async fn announced(&self) -> u64 {
        self.bus.pending(WATCH).await.expect("pending")
    }

    /// The first `build-requested` event on the watch subscription (fails after 10 s).
    async fn first_event(&self) -> Event {
        let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
        let endpoint = RouterEndpoint::new(
            step_router(
                tx,
                |tx: mpsc::UnboundedSender<Event>, event, _| async move {
                    let _ = tx.send(event);
                    Ok(())
                },
            ),
            "/",
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let bus = self.bus.clone();
        let delivering = tokio::spawn(async move {
            bus.deliver(
                WATCH,
                Arc::new(endpoint),
                Box::pin(async move {
                    let _ = stopped.await;
                }),
            )
            .await
        });
        let event = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event within 10 s")
            .expect("an event");
        let _ = stop.send(());
        let _ = delivering.await;
        event
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_to_master_builds_the_pushed_commit() {
    let w = world().await;
    let r = w
        .signed(w.payload("with-new-branch.payload.json", None), "d-1")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["status"], "building");
    assert_eq!(r.body["commit"], w.commit.as_str());
    let id = r.body["build"].as_str().expect("build id").to_owned();

    let builds = w.store.builds_of(&w.app).await.expect("builds");
    assert_eq!(builds.len(), 1);
    let build = &builds[0];
    assert_eq!(build.id.0, id);
    assert_eq!(build.commit, w.commit);
    assert_eq!(build.branch, "master");
    assert_eq!(build.state, BuildState::Requested);

    // The source archive holds the commit's tree, as a git push stores it.
    let archive = w
        .blobs
        .get(&format!("sources/{}/{id}.tar", w.app))
        .await
        .expect("source archive");
    let mut names = Vec::new();
    let mut tar = tar::Archive::new(archive.as_ref());
    for entry in tar.entries().expect("tar") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").display().to_string();
        if path.ends_with("mix.exs") {
            let mut text = String::new();
            entry.read_to_string(&mut text).expect("read");
            assert!(text.contains(":hello"), "{text}");
        }
        names.push(path);
    }
    assert!(names.iter().any(|n| n.ends_with("mix.exs")), "{names:?}");

    assert_eq!(w.announced().await, 1);
    match w.first_event().await {
        Event::BuildRequested { app, build } => {
            assert_eq!(app, w.app);
            assert_eq!(build.0, id);
        }
        other => panic!("expected build-requested, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_missing_signatures_build_nothing() {
    let w = world().await;
    let body = w.payload("with-new-branch.payload.json", None);
    let wrong = sign(b"another key", &body);
    let r = w.deliver(body.clone(), Some(wrong), "d-1").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let r = w.deliver(body.clone(), None, "d-2").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    // Signed, then changed on the way.
    let sig = sign(SECRET.as_bytes(), &body);
    let mut tampered = body.clone();
    tampered.extend_from_slice(b"\n");
    let r = w.deliver(tampered, Some(sig), "d-3").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    assert_eq!(w.builds().await, 0);
    assert_eq!(w.announced().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_payload_is_a_bad_request() {
    let w = world().await;
    let r = w
        .signed(b"{\"ref\": \"refs/heads/master\",".to_vec(), "d-1")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = w
        .signed(
            br#"{"ref":"refs/heads/master","after":"x"}"#.to_vec(),
            "d-2",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(w.builds().await, 0);
    assert_eq!(w.announced().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_refs_and_deletions_are_ignored() {
    let w = world().await;
    let r = w
        .signed(
            w.payload("with-new-branch.payload.json", Some("refs/heads/feature")),
            "d-1",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["status"], "ignored");
    for (n, deleted_tag) in ["payload.json", "1.payload.json"].iter().enumerate() {
        let r = w
            .signed(w.payload(deleted_tag, None), &format!("t-{n}"))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        assert_eq!(r.body["status"], "ignored");
    }
    assert_eq!(w.builds().await, 0);
    assert_eq!(w.announced().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_delivery_twice_builds_once() {
    let w = world().await;
    let body = w.payload("with-new-branch.payload.json", None);
    let first = w
        .signed(body.clone(), "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    let again = w
        .signed(body.clone(), "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["status"], "already received");
    assert_eq!(again.body["build"], first.body["build"]);
    assert_eq!(w.builds().await, 1);
    // The same signed body under a new delivery id (the id is not signed: a replay of a
    // captured body, say to bring an older commit back) is the same build, not a new one.
    let replay = w.signed(body, "0a1b2c3d-cc78-11e3-81ab-4c9367dc0958").await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.text);
    assert_eq!(replay.body["status"], "already received");
    assert_eq!(replay.body["build"], first.body["build"]);
    assert_eq!(w.builds().await, 1);
}
