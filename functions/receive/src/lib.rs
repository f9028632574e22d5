//! The `receive` function. Trigger: HTTP — git smart HTTP at `/APP.git` (`info/refs`,
//! `git-receive-pack`, `git-upload-pack`), HTTP Basic `email:api_key` like the API, so the
//! netrc entry `gigalixir login` writes is all a pusher needs.
//!
//! Step: take the app's push lock (a second push waits, and is told so), unpack the app's
//! repository from the blob store, run the real `git http-backend` on it, and let git's
//! pre-receive hook hand the pushed refs to [`pipeline`]: archive the `master`/`main`
//! commit with its submodules, record a Build, publish `build-requested`, and stream the
//! build's log to the pusher until the build is deployed (exit 0: refs move) or failed
//! (exit 1: refs stay). Then store the repository back and free the lock.
//!
//! Also a push webhook, `POST /hooks/github/APP` ([`webhook`]): a signed GitHub `push`
//! event to `master` or `main` builds the pushed commit, fetched from the repository it
//! names, through the same archive, Build record and `build-requested`.
//!
//! Emits: `build-requested`.

pub mod cgi;
pub mod commands;
pub mod error;
pub mod hook;
pub mod pipeline;
pub mod repo;
pub mod webhook;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use futures::StreamExt;
use shared::auth::{user_from_api_key, AuthError};
use shared::domain::AppName;
use shared::error::DISK_FULL;
use shared::model::{App, BuildFlags, Role, User};
use shared::ports::{Blobs, Bus, Store};
use shared::PortError;
use tokio::io::AsyncWriteExt;

use crate::error::ReceiveError;
use tokio::sync::mpsc;

/// The ports and settings the function uses.
#[derive(Clone)]
pub struct ReceiveState {
    /// Users, apps, builds, logs, locks.
    pub store: Arc<dyn Store>,
    /// Where `build-requested` goes.
    pub bus: Arc<dyn Bus>,
    /// Repositories and source archives.
    pub blobs: Arc<dyn Blobs>,
    /// The program git runs as the pre-receive hook (with `__git-hook`).
    pub hook_exe: PathBuf,
    /// The app's public URL, `{app}` standing for its name.
    pub app_url_template: String,
    /// The rules for the git URLs the platform fetches (submodules, webhook sources).
    pub git: shared::gitfetch::GitPolicy,
    /// Git requests running per app (each unpacks the repository): at most
    /// [`GIT_REQUESTS_PER_APP`] at once, the others wait their turn.
    pub git_slots: GitSlots,
    /// Free space a push needs where it is spooled (the temporary directory) to start:
    /// below it, pushes are refused at once.
    pub min_free_bytes: u64,
}

/// `Some(why)` when the disk where pushes are spooled has less than the push needs.
fn too_full(state: &ReceiveState) -> Option<String> {
    let dir = std::env::temp_dir();
    let stat = rustix::fs::statvfs(&dir).ok()?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    (free < state.min_free_bytes).then(|| {
        tracing::error!(
            free_mb = free >> 20,
            needed_mb = state.min_free_bytes >> 20,
            dir = %dir.display(),
            "a push was refused: the disk is full"
        );
        format!(
            "{DISK_FULL} ({} MB free, a push needs {} MB); try again once the operator has freed space",
            free >> 20,
            state.min_free_bytes >> 20
        )
    })
}

/// A refusal git shows and exits on: a ref advertisement holding only `ERR message`
/// (git prints "remote error: message").
fn git_refusal(service: &str, message: &str) -> Response {
    let pkt = |text: &str| format!("{:04x}{text}", text.len() + 4);
    let body = format!(
        "{}0000{}",
        pkt(&format!("# service={service}\n")),
        pkt(&format!("ERR {message}\n"))
    );
    let mut resp = (StatusCode::OK, body).into_response();
    if let Ok(kind) = HeaderValue::from_str(&format!("application/x-{service}-advertisement")) {
        resp.headers_mut().insert(header::CONTENT_TYPE, kind);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Git requests (clones, fetches, pushes) of one app served at once.
pub const GIT_REQUESTS_PER_APP: usize = 4;

/// A turnstile per app for its git requests.
#[derive(Clone, Default)]
pub struct GitSlots(Arc<std::sync::Mutex<HashMap<AppName, Arc<tokio::sync::Semaphore>>>>);

impl GitSlots {
    /// Waits for a slot of `app`; held until the permit drops.
    pub async fn enter(&self, app: &AppName) -> tokio::sync::OwnedSemaphorePermit {
        let gate = {
            let mut gates = self.0.lock().unwrap_or_else(|e| e.into_inner());
            // Apps nobody waits for are forgotten.
            gates.retain(|_, g| Arc::strong_count(g) > 1);
            gates
                .entry(app.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(GIT_REQUESTS_PER_APP)))
                .clone()
        };
        // The semaphore is never closed.
        gate.acquire_owned().await.expect("an open semaphore")
    }
}

impl ReceiveState {
    /// The URL an app answers on.
    pub fn app_url(&self, app: &AppName) -> String {
        self.app_url_template.replace("{app}", app.as_str())
    }
}

/// The git routes and the push webhook.
pub fn router(state: ReceiveState) -> Router {
    Router::new()
        .route("/{repo}/info/refs", get(info_refs))
        .route("/{repo}/git-receive-pack", post(receive_pack))
        .route("/{repo}/git-upload-pack", post(upload_pack))
        .route(
            "/hooks/github/{app}",
            post(webhook::github).layer(DefaultBodyLimit::max(webhook::MAX_BODY_BYTES)),
        )
        .with_state(state)
}

fn text(status: StatusCode, message: &str) -> Response {
    let mut resp = (status, format!("{message}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"gigalixir\""),
        );
    }
    resp
}

fn internal(err: &ReceiveError) -> Response {
    tracing::error!(error = %err, "git request failed");
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the platform could not serve this git request; try again shortly",
    )
}

/// The caller and the app they own, or the response that refuses them.
async fn authorize(
    state: &ReceiveState,
    headers: &HeaderMap,
    repo: &str,
) -> Result<(User, App), Response> {
    let not_found = || {
        text(
            StatusCode::NOT_FOUND,
            &format!("app `{}` not found", repo.trim_end_matches(".git")),
        )
    };
    let user = match user_from_api_key(&*state.store, headers).await {
        Ok(user) => user,
        Err(AuthError::Unauthorized) => {
            return Err(text(
                StatusCode::UNAUTHORIZED,
                "authentication required: run `gigalixir login`",
            ))
        }
        Err(AuthError::Store(err)) => return Err(internal(&err.into())),
    };
    let name = repo.strip_suffix(".git").ok_or_else(not_found)?;
    let name = AppName::parse(name).map_err(|_| not_found())?;
    let app = match state.store.app(&name).await {
        Ok(app) => app,
        Err(PortError::NotFound) => return Err(not_found()),
        Err(err) => return Err(internal(&err.into())),
    };
    if app.owner == user.id {
        return Ok((user, app));
    }
    // Collaborators push and fetch like the owner; viewers only look, through the API.
    match state.store.members_of(&name).await {
        Ok(members) => match members.iter().find(|m| m.user == user.id).map(|m| m.role) {
            Some(Role::Collaborator) => Ok((user, app)),
            Some(Role::Viewer) => Err(text(
                StatusCode::FORBIDDEN,
                &format!("as a viewer of `{name}` you may not push to it or fetch its code"),
            )),
            None => Err(not_found()),
        },
        Err(err) => Err(internal(&err.into())),
    }
}

fn service_of(query: &Option<String>) -> Option<&'static str> {
    let q = query.as_deref().unwrap_or_default();
    q.split('&').find_map(|kv| match kv {
        "service=git-upload-pack" => Some("git-upload-pack"),
        "service=git-receive-pack" => Some("git-receive-pack"),
        _ => None,
    })
}

async fn info_refs(
    State(state): State<ReceiveState>,
    UrlPath(repo): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let (user, app) = match authorize(&state, &headers, &repo).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let Some(service) = service_of(&query) else {
        return text(
            StatusCode::FORBIDDEN,
            "only smart HTTP is served: update git",
        );
    };
    if service == "git-receive-pack" {
        if let Some(why) = too_full(&state) {
            return git_refusal(service, &why);
        }
    }
    let run = async {
        let _slot = state.git_slots.enter(&app.name).await;
        let checkout = repo::fetch(&*state.blobs, &app.name, &state.hook_exe).await?;
        let resp = cgi::start(cgi::CgiRequest {
            method: "GET",
            path_info: format!("/{}.git/info/refs", app.name),
            query: query.clone().unwrap_or_default(),
            headers: &headers,
            remote_user: user.email.to_string(),
            project_root: &checkout.root,
            body: None,
            env: Vec::new(),
        })
        .await?;
        cgi::read_all(resp).await
    };
    match run.await {
        Ok((status, headers, body)) => (status, headers, body).into_response(),
        Err(err) => internal(&err),
    }
}

/// Largest request body spooled.
const MAX_BODY: u64 = repo::MAX_REPO_BYTES;

fn spool_failed(err: std::io::Error) -> Response {
    if shared::error::is_disk_full(&err) {
        tracing::error!("a push was refused: the disk filled while it was received");
        text(StatusCode::INSUFFICIENT_STORAGE, DISK_FULL)
    } else {
        internal(&err.into())
    }
}

/// Writes the request body to `path`, refusing more than [`MAX_BODY`] bytes.
async fn spool(body: Body, path: &Path) -> Result<(), Response> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| internal(&e.into()))?;
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| text(StatusCode::BAD_REQUEST, "the push was interrupted"))?;
        total += chunk.len() as u64;
        if total > MAX_BODY {
            return Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the push is larger than 1 GB",
            ));
        }
        file.write_all(&chunk).await.map_err(spool_failed)?;
    }
    file.flush().await.map_err(spool_failed)?;
    Ok(())
}

async fn upload_pack(
    State(state): State<ReceiveState>,
    UrlPath(repo): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (user, app) = match authorize(&state, &headers, &repo).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    let slot = state.git_slots.enter(&app.name).await;
    let checkout = match repo::fetch(&*state.blobs, &app.name, &state.hook_exe).await {
        Ok(c) => c,
        Err(err) => return internal(&err),
    };
    let spooled = checkout.dir.path().join("request");
    if let Err(resp) = spool(body, &spooled).await {
        return resp;
    }
    let started = cgi::start(cgi::CgiRequest {
        method: "POST",
        path_info: format!("/{}.git/git-upload-pack", app.name),
        query: String::new(),
        headers: &headers,
        remote_user: user.email.to_string(),
        project_root: &checkout.root,
        body: Some(spooled),
        env: Vec::new(),
    })
    .await;
    match started {
        Ok(resp) => {
            let (status, headers) = (resp.status, resp.headers.clone());
            let mut child = resp.child;
            let stream = tokio_util::io::ReaderStream::new(resp.body);
            // The checkout must outlive the stream; so must the child until it is reaped.
            let body = Body::from_stream(stream.chain(futures::stream::once(async move {
                let _ = child.wait().await;
                drop(checkout);
                drop(slot);
                Ok::<Bytes, std::io::Error>(Bytes::new())
            })));
            (status, headers, body).into_response()
        }
        Err(err) => internal(&err),
    }
}

/// A side-band-64k progress packet: `remote: <text>` on the pusher's terminal.
fn sideband_message(text: &str) -> Bytes {
    let payload = format!("\u{2}{text}\n");
    Bytes::from(format!("{:04x}{payload}", payload.len() + 4))
}

fn flag(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}

async fn receive_pack(
    State(state): State<ReceiveState>,
    UrlPath(repo): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (user, app) = match authorize(&state, &headers, &repo).await {
        Ok(ok) => ok,
        Err(resp) => return resp,
    };
    if let Some(why) = too_full(&state) {
        return text(StatusCode::INSUFFICIENT_STORAGE, &why);
    }
    let spool_dir = match tempfile::Builder::new().prefix("gx-push-").tempdir() {
        Ok(d) => d,
        Err(err) => return internal(&err.into()),
    };
    let spooled = spool_dir.path().join("request");
    if let Err(resp) = spool(body, &spooled).await {
        return resp;
    }
    // Messages before git's own output only reach clients that demultiplex side bands.
    let head = head_of(&spooled, 8192).unwrap_or_default();
    let (to_pusher, rx) = mpsc::unbounded_channel::<Result<Bytes, std::io::Error>>();
    let push = Incoming {
        flags: BuildFlags {
            clean: flag(&headers, "gigalixir-clean"),
            hot: flag(&headers, "gigalixir-hot"),
        },
        sideband: head.windows(9).any(|w| w == b"side-band"),
        trace: uuid::Uuid::new_v4().to_string(),
        user,
        app,
        headers,
        spooled,
        to_pusher,
    };
    tokio::spawn(async move {
        let _keep = spool_dir;
        if let Err(err) = receive_under_lock(&state, &push).await {
            tracing::error!(app = %push.app.name, error = %err, "push failed");
            push.tell(&format!(
                "error: the platform could not store this push: {err}"
            ));
        }
    });
    let stream = tokio_stream_from(rx);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-git-receive-pack-result"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn tokio_stream_from(
    mut rx: mpsc::UnboundedReceiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

// --- the push lock ---------------------------------------------------------------------------

/// A push as it arrived: who sent it, to which app, its request spooled to disk, and the
/// channel to the pusher's terminal.
struct Incoming {
    user: User,
    app: App,
    headers: HeaderMap,
    spooled: PathBuf,
    flags: BuildFlags,
    /// Whether the pusher's git shows side-band messages (those sent before git's own
    /// output reach no other).
    sideband: bool,
    trace: String,
    to_pusher: mpsc::UnboundedSender<Result<Bytes, std::io::Error>>,
}

impl Incoming {
    /// A `remote:` line on the pusher's terminal, if its git shows them.
    fn tell(&self, text: &str) {
        if self.sideband {
            let _ = self.to_pusher.send(Ok(sideband_message(text)));
        }
    }
}

/// Takes the app's push lock (a second push waits, and is told so), runs the push, and
/// frees the lock.
async fn receive_under_lock(state: &ReceiveState, push: &Incoming) -> error::Result<()> {
    let lock = shared::locks::push_lock(&push.app.name);
    let holder = shared::locks::holder(&format!("push-{}", push.trace));
    let mut waited = 0u32;
    // Held while the push runs, renewed by a heartbeat: a push whose platform died frees
    // the app within seconds.
    let held = loop {
        match shared::locks::Held::take(&state.store, &lock, &holder).await {
            Ok(held) => break held,
            Err(PortError::Precondition) => {
                if waited.is_multiple_of(30) {
                    push.tell(&if waited == 0 {
                        format!(
                            "-----> Another push of {} is in progress; waiting for it to finish...",
                            push.app.name
                        )
                    } else {
                        "-----> Still waiting for the previous push...".to_owned()
                    });
                }
                waited += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => return Err(err.into()),
        }
    };
    let slot = state.git_slots.enter(&push.app.name).await;
    let result = receive_with_hook(state, push, &held, holder).await;
    drop(slot);
    held.release().await;
    result
}

// --- the hook --------------------------------------------------------------------------------

/// Runs `git receive-pack` on the app's repository, its pre-receive hook answered by
/// [`pipeline::serve_hook`] (which builds and deploys the push), relays git's answer to the
/// pusher, and stores the repository back if the push still holds the lock (`held`, as
/// `holder`).
async fn receive_with_hook(
    state: &ReceiveState,
    push: &Incoming,
    held: &shared::locks::Held,
    holder: String,
) -> error::Result<()> {
    let app = &push.app.name;
    let checkout = repo::fetch(&*state.blobs, app, &state.hook_exe).await?;
    let rebased = rebase_commands(&checkout.git_dir, &push.headers, &push.spooled).await?;
    let socket = checkout.dir.path().join("hook.sock");
    let listener = tokio::net::UnixListener::bind(&socket)?;
    let hook_state = state.clone();
    let hook_push = pipeline::Push {
        app: app.clone(),
        flags: push.flags,
        git_dir: checkout.git_dir.clone(),
        trace: push.trace.clone(),
        pusher: holder,
        actor: push.user.email.to_string(),
        rebased,
    };
    let hooks = tokio::spawn(async move {
        // git runs the hook once per push.
        if let Ok((stream, _)) = listener.accept().await {
            if let Err(err) = pipeline::serve_hook(hook_state, hook_push, stream).await {
                tracing::warn!(error = %err, "hook connection ended badly");
            }
        }
    });
    let resp = cgi::start(cgi::CgiRequest {
        method: "POST",
        path_info: format!("/{app}.git/git-receive-pack"),
        query: String::new(),
        headers: &push.headers,
        remote_user: push.user.email.to_string(),
        project_root: &checkout.root,
        body: Some(push.spooled.clone()),
        env: vec![(hook::SOCKET_ENV.to_owned(), socket.display().to_string())],
    })
    .await?;
    let mut child = resp.child;
    let mut body = tokio_util::io::ReaderStream::new(resp.body);
    while let Some(chunk) = body.next().await {
        if push.to_pusher.send(chunk).is_err() {
            tracing::warn!(app = %app, "the pusher went away");
        }
    }
    let status = child.wait().await?;
    hooks.abort();
    if !status.success() {
        return Err(ReceiveError::Git(format!(
            "git receive-pack exited with {status}"
        )));
    }
    // Fenced: a push that lost its lock (its process was paused past the lock's life) must
    // not write its repository over a newer push's.
    if held.check().await.is_err() {
        return Err(ReceiveError::LostLock);
    }
    repo::store(&*state.blobs, app, &checkout).await?;
    Ok(())
}

/// The most of a push request's head read for its ref-update commands.
const COMMANDS_MAX: u64 = 1 << 20;

/// The first `max` bytes of the file at `path` (fewer if it is shorter).
fn head_of(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)?
        .take(max)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// Points the push's commands at the refs as they are now (see [`commands`]). Returns the
/// refs rewritten and the old ids the client had seen.
async fn rebase_commands(
    git_dir: &Path,
    headers: &HeaderMap,
    spooled: &Path,
) -> error::Result<std::collections::BTreeMap<String, String>> {
    if headers.contains_key(header::CONTENT_ENCODING) {
        return Ok(Default::default());
    }
    let out = tokio::process::Command::new("git")
        .args(["for-each-ref", "--format=%(objectname) %(refname)"])
        .env("GIT_DIR", git_dir)
        .output()
        .await?;
    if !out.status.success() {
        return Err(ReceiveError::Git("git for-each-ref failed".into()));
    }
    let current = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(o, n)| (n.to_owned(), o.to_owned())))
        .collect();
    // The commands lead the body; only they are read and, rewritten in place (same
    // length), written back.
    let mut head = head_of(spooled, COMMANDS_MAX)?;
    let rewritten = commands::rebase(&mut head, &current);
    if !rewritten.is_empty() {
        use std::io::{Seek, Write};
        let mut file = std::fs::OpenOptions::new().write(true).open(spooled)?;
        file.rewind()?;
        file.write_all(&head)?;
    }
    Ok(rewritten)
}
