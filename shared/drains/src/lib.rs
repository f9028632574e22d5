//! Log drains (`drains:add URL`): what an app prints, its builds and deploys (the build
//! log), and the router's line per request, shipped to receivers of the app's owner.
//!
//! - `https://…`: batched POSTs in Heroku's logplex framing (`application/logplex-1`: each
//!   message an RFC 5424 syslog line, octet-counted; `Logplex-Msg-Count`,
//!   `Logplex-Frame-Id` — the same on a retry —, `Logplex-Drain-Token: d.ID`).
//! - `syslog+tls://HOST:PORT`: RFC 5424 over TLS, octet-counted (RFC 5425), one connection
//!   kept open.
//!
//! Each drain has a queue of its own ([`QUEUE_LIMIT`] lines, [`QUEUE_BYTES`]; all of them
//! together [`ALL_QUEUES_BYTES`]; past that the oldest go, and are counted): the app never waits for a receiver. A batch stays at the head of its queue
//! until the receiver took it (2xx, or written to a connection that was open), retried
//! with a backoff of 0.5 s doubling to [`MAX_BACKOFF`], so lines arrive in order, per
//! replica and across a receiver's outage.
//!
//! The platform connects only to public addresses (resolved names included, checked at
//! each connection, no redirects, no proxies), unless it allows loopback for tests.
//! Messages: `<PRI>1 TIMESTAMP APP app|gigalixir PROC - - LINE`, PROC `web.N`, `run.ID`,
//! `build` or `router`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use gigalixir_core::domain::{AppName, BuildId};
use gigalixir_core::model::{App, Drain};
use gigalixir_core::ports::{Runtime, Store};
use gigalixir_local::gitfetch::forbidden_address;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Lines a drain keeps while its receiver does not take them.
pub const QUEUE_LIMIT: usize = 20_000;
/// Bytes a drain keeps while its receiver does not take them.
pub const QUEUE_BYTES: u64 = 4 << 20;
/// Bytes all drains of the platform keep together (past it, the oldest lines of the
/// drain that gets a line go).
pub const ALL_QUEUES_BYTES: u64 = 256 << 20;
/// How often the apps and their drains are read again (lines are shipped every second).
pub const SCAN_EVERY: Duration = Duration::from_secs(5);
/// Lines per POST or write at most.
pub const BATCH: usize = 500;
/// The longest pause between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Drains an app may have.
pub const MAX_PER_APP: usize = 5;
/// The longest line shipped (longer ones are cut, at a character boundary).
pub const MAX_LINE: usize = 8 * 1024;

/// Where a drain sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Logplex POSTs.
    Https(url::Url),
    /// RFC 5425.
    SyslogTls {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
}

impl Target {
    fn host(&self) -> String {
        match self {
            Target::Https(url) => url.host_str().unwrap_or_default().to_owned(),
            Target::SyslogTls { host, .. } => host.clone(),
        }
    }
}

/// A drain URL, checked: `https://HOST[:PORT]/PATH` or `syslog+tls://HOST:PORT`; an
/// address in it must be public (or loopback, when allowed). Names are checked when
/// resolved, at each connection.
pub fn parse(raw: &str, allow_loopback: bool) -> Result<Target, String> {
    if raw.len() > 2048 {
        return Err("is longer than 2048 characters".into());
    }
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("is not a URL ({e})"))?;
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("names no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if let Ok(ip) = host.parse::<IpAddr>() {
        if let Some(why) = forbidden_address(ip, allow_loopback) {
            return Err(format!("points at {why}: drains go to public addresses"));
        }
    }
    match url.scheme() {
        "https" => Ok(Target::Https(url)),
        "syslog+tls" => {
            let port = url.port().ok_or("needs a port: syslog+tls://HOST:PORT")?;
            Ok(Target::SyslogTls { host, port })
        }
        other => Err(format!(
            "has the scheme `{other}`: drains take https://… (logplex) or syslog+tls://HOST:PORT"
        )),
    }
}

/// How the platform ships.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Receivers on loopback addresses are allowed (tests).
    pub allow_loopback: bool,
    /// A PEM file of certificates trusted besides Mozilla's roots (a private receiver's CA).
    pub ca_file: Option<PathBuf>,
}

/// One log line on its way.
#[derive(Debug, Clone)]
struct Frame {
    seq: u64,
    at: DateTime<Utc>,
    app: AppName,
    proc: String,
    line: String,
}

impl Frame {
    /// The RFC 5424 message.
    fn message(&self) -> String {
        let (pri, sender) = match self.proc.as_str() {
            "router" => (158, "gigalixir"),
            "build" => (190, "gigalixir"),
            _ => (190, "app"),
        };
        format!(
            "<{pri}>1 {} {} {sender} {} - - {}",
            self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            self.app,
            self.proc,
            self.line
        )
    }
}

impl Frame {
    /// What it holds in memory, about.
    fn weight(&self) -> u64 {
        (self.line.len() + self.proc.len() + 64) as u64
    }
}

fn cut(line: &str) -> String {
    let clean = line.trim_end_matches(['\r', '\n']);
    if clean.len() <= MAX_LINE {
        return clean.to_owned();
    }
    let mut end = MAX_LINE;
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    clean[..end].to_owned()
}

/// A drain's queue and its counts.
struct Queue {
    drain: Drain,
    target: Target,
    frames: Mutex<VecDeque<Frame>>,
    next_seq: AtomicU64,
    wake: tokio::sync::Notify,
    dropped: AtomicU64,
    delivered: AtomicU64,
    sender: Mutex<Option<tokio::task::AbortHandle>>,
    /// Bytes queued here, and in all queues.
    bytes: AtomicU64,
    all: Arc<AtomicU64>,
}

impl Queue {
    fn push(&self, app: &AppName, proc: &str, line: &str, at: DateTime<Utc>) {
        let frame = Frame {
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            at,
            app: app.clone(),
            proc: proc.to_owned(),
            line: cut(line),
        };
        let weight = frame.weight();
        if let Ok(mut frames) = self.frames.lock() {
            let mut dropped = 0u64;
            loop {
                let here = self.bytes.load(Ordering::Relaxed);
                let all = self.all.load(Ordering::Relaxed);
                let full = frames.len() >= QUEUE_LIMIT
                    || here + weight > QUEUE_BYTES
                    || all + weight > ALL_QUEUES_BYTES;
                if !full {
                    break;
                }
                match frames.pop_front() {
                    Some(old) => {
                        self.bytes.fetch_sub(old.weight(), Ordering::Relaxed);
                        self.all.fetch_sub(old.weight(), Ordering::Relaxed);
                        dropped += 1;
                    }
                    None => {
                        // Nothing of this drain's left to drop: the new line goes.
                        self.count_dropped(app, 1);
                        return;
                    }
                }
            }
            if dropped > 0 {
                self.count_dropped(app, dropped);
            }
            self.bytes.fetch_add(weight, Ordering::Relaxed);
            self.all.fetch_add(weight, Ordering::Relaxed);
            frames.push_back(frame);
        }
        self.wake.notify_one();
    }

    fn count_dropped(&self, app: &AppName, n: u64) {
        let before = self.dropped.fetch_add(n, Ordering::Relaxed);
        if before == 0 || (before + n) / 1000 > before / 1000 {
            tracing::warn!(app = %app, drain = %self.drain.id, dropped = before + n, "a drain's receiver is behind: its oldest lines are dropped");
        }
    }

    fn batch(&self) -> Vec<Frame> {
        self.frames
            .lock()
            .map(|f| f.iter().take(BATCH).cloned().collect())
            .unwrap_or_default()
    }

    /// The batch ending with `last` was taken.
    fn taken(&self, last: u64, count: usize) {
        if let Ok(mut frames) = self.frames.lock() {
            while frames.front().is_some_and(|f| f.seq <= last) {
                if let Some(f) = frames.pop_front() {
                    self.bytes.fetch_sub(f.weight(), Ordering::Relaxed);
                    self.all.fetch_sub(f.weight(), Ordering::Relaxed);
                }
            }
        }
        self.delivered.fetch_add(count as u64, Ordering::Relaxed);
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.all
            .fetch_sub(self.bytes.load(Ordering::Relaxed), Ordering::Relaxed);
        if let Ok(Some(task)) = self.sender.lock().map(|mut s| s.take()) {
            task.abort();
        }
    }
}

#[derive(Default)]
struct State {
    /// Per drain id.
    queues: HashMap<String, Arc<Queue>>,
    /// Per app, its drains' queues.
    by_app: HashMap<AppName, Vec<Arc<Queue>>>,
    /// Containers followed now.
    following: HashSet<String>,
    /// When a container's output last ended (it may start again: a revived replica).
    ended: HashMap<String, DateTime<Utc>>,
    /// Per app, per recent build: the last line shipped (`u64::MAX`: a build older than
    /// the app's drains).
    builds: HashMap<AppName, HashMap<BuildId, u64>>,
}

/// Ships the lines of every app with drains. Cheap to clone.
#[derive(Clone)]
pub struct Shipper {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    runtime: Option<Arc<dyn Runtime>>,
    settings: Settings,
    http: reqwest::Client,
    tls: Arc<rustls::ClientConfig>,
    started: DateTime<Utc>,
    /// Told apart from an earlier run's in frame ids (sequence numbers start again).
    nonce: String,
    /// Bytes queued in all drains.
    queued: Arc<AtomicU64>,
    state: Mutex<State>,
}

/// Resolves drain hosts to public addresses only.
struct Guarded {
    allow_loopback: bool,
}

async fn public_addrs(
    host: &str,
    port: u16,
    allow_loopback: bool,
) -> Result<Vec<SocketAddr>, String> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("{host} does not resolve: {e}"))?
        .collect();
    let mut why = None;
    let ok: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| match forbidden_address(a.ip(), allow_loopback) {
            Some(w) => {
                why = Some(w);
                false
            }
            None => true,
        })
        .collect();
    if ok.is_empty() {
        return Err(format!(
            "{host} resolves to {}: drains go to public addresses",
            why.unwrap_or("no address")
        ));
    }
    Ok(ok)
}

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_loopback;
        Box::pin(async move {
            let addrs = public_addrs(name.as_str(), 0, allow).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

fn extra_roots(
    settings: &Settings,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let Some(file) = &settings.ca_file else {
        return Ok(Vec::new());
    };
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(file)
        .map_err(|e| format!("reading {}: {e}", file.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("reading {}: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", file.display()));
    }
    Ok(certs)
}

impl Shipper {
    /// A shipper over `store` (the apps and their drains, the build logs) and `runtime`
    /// (what the replicas print; `None`: builds and router lines only).
    pub fn new(
        store: Arc<dyn Store>,
        runtime: Option<Arc<dyn Runtime>>,
        settings: Settings,
    ) -> Result<Self, String> {
        let extra = extra_roots(&settings)?;
        let mut http = reqwest::Client::builder()
            .user_agent("gigalixir-drains")
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(20))
            .dns_resolver(Arc::new(Guarded {
                allow_loopback: settings.allow_loopback,
            }));
        for der in &extra {
            let cert = reqwest::Certificate::from_der(der)
                .map_err(|e| format!("a drain CA certificate: {e}"))?;
            http = http.add_root_certificate(cert);
        }
        let http = http
            .build()
            .map_err(|e| format!("the drains' HTTP client: {e}"))?;
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for der in extra {
            roots
                .add(der)
                .map_err(|e| format!("a drain CA certificate: {e}"))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                runtime,
                settings,
                http,
                tls: Arc::new(tls),
                started: Utc::now(),
                nonce: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
                queued: Arc::default(),
                state: Mutex::default(),
            }),
        })
    }

    /// Rounds: every [`SCAN_EVERY`] the apps with drains (drains added or removed), every
    /// second their replicas and jobs to follow and build lines to ship. Runs until the
    /// task is aborted.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut apps: Vec<App> = Vec::new();
            let mut scanned: Option<std::time::Instant> = None;
            loop {
                if scanned.is_none_or(|at| at.elapsed() >= SCAN_EVERY) {
                    match me.scan().await {
                        Ok(found) => apps = found,
                        Err(err) => tracing::warn!(error = %err, "log drains: reading the apps"),
                    }
                    scanned = Some(std::time::Instant::now());
                }
                me.round(&apps).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    /// A line of the platform's own about `app` (the router's), to the app's drains.
    pub fn emit(&self, app: &AppName, proc: &str, line: &str) {
        let queues = self
            .inner
            .state
            .lock()
            .ok()
            .and_then(|s| s.by_app.get(app).cloned());
        for q in queues.unwrap_or_default() {
            q.push(app, proc, line, Utc::now());
        }
    }

    /// Lines taken by each drain's receiver and lines dropped, per drain id.
    pub fn counts(&self) -> HashMap<String, (u64, u64)> {
        self.inner
            .state
            .lock()
            .map(|s| {
                s.queues
                    .iter()
                    .map(|(id, q)| {
                        (
                            id.clone(),
                            (
                                q.delivered.load(Ordering::Relaxed),
                                q.dropped.load(Ordering::Relaxed),
                            ),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The apps with drains, their queues made or dropped to match.
    async fn scan(&self) -> Result<Vec<App>, String> {
        let apps: Vec<App> = self
            .inner
            .store
            .all_apps()
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|a| !a.drains.is_empty())
            .collect();
        self.sync_queues(&apps);
        Ok(apps)
    }

    async fn round(&self, apps: &[App]) {
        for app in apps {
            if let Err(err) = self.follow(app).await {
                tracing::debug!(app = %app.name, error = %err, "log drains: following replicas");
            }
            if let Err(err) = self.ship_builds(app).await {
                tracing::debug!(app = %app.name, error = %err, "log drains: build lines");
            }
        }
    }

    /// A queue and a sender per drain; those of removed drains go.
    fn sync_queues(&self, apps: &[App]) {
        let Ok(mut state) = self.inner.state.lock() else {
            return;
        };
        let wanted: HashSet<&str> = apps
            .iter()
            .flat_map(|a| a.drains.iter().map(|d| d.id.as_str()))
            .collect();
        state.queues.retain(|id, _| wanted.contains(id.as_str()));
        let mut by_app: HashMap<AppName, Vec<Arc<Queue>>> = HashMap::new();
        for app in apps {
            for drain in &app.drains {
                let queue = match state.queues.get(&drain.id) {
                    Some(q) => q.clone(),
                    None => {
                        let Ok(target) =
                            parse(drain.url.expose(), self.inner.settings.allow_loopback)
                        else {
                            continue;
                        };
                        let q = Arc::new(Queue {
                            drain: drain.clone(),
                            target,
                            frames: Mutex::default(),
                            next_seq: AtomicU64::new(0),
                            wake: tokio::sync::Notify::new(),
                            dropped: AtomicU64::new(0),
                            delivered: AtomicU64::new(0),
                            sender: Mutex::new(None),
                            bytes: AtomicU64::new(0),
                            all: self.inner.queued.clone(),
                        });
                        let task = tokio::spawn(send_loop(self.inner.clone(), Arc::downgrade(&q)));
                        if let Ok(mut s) = q.sender.lock() {
                            *s = Some(task.abort_handle());
                        }
                        state.queues.insert(drain.id.clone(), q.clone());
                        q
                    }
                };
                by_app.entry(app.name.clone()).or_default().push(queue);
            }
        }
        state.builds.retain(|app, _| by_app.contains_key(app));
        state.by_app = by_app;
        let hour_ago = Utc::now() - chrono::Duration::hours(1);
        state.ended.retain(|_, at| *at > hour_ago);
    }

    /// Follows each running replica and job of `app` not followed yet.
    async fn follow(&self, app: &App) -> Result<(), String> {
        let Some(runtime) = self.inner.runtime.clone() else {
            return Ok(());
        };
        let mut targets: Vec<(String, String, DateTime<Utc>)> = runtime
            .replicas(&app.name)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|r| r.state == gigalixir_core::ports::runtime::ReplicaState::Running)
            .map(|r| (r.name, format!("web.{}", r.index + 1), r.since))
            .collect();
        targets.extend(
            runtime
                .jobs(&app.name)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|j| {
                    let short = j.name.rsplit('-').next().unwrap_or_default().to_owned();
                    (j.name, format!("run.{short}"), j.since)
                }),
        );
        let cutoff = self.cutoff(app);
        for (name, proc, since) in targets {
            let from = {
                let Ok(mut state) = self.inner.state.lock() else {
                    return Ok(());
                };
                if state.following.contains(&name) {
                    continue;
                }
                let from = match state.ended.get(&name) {
                    Some(at) => Some(*at),
                    None if since >= cutoff => None,
                    None => Some(Utc::now()),
                };
                state.following.insert(name.clone());
                from
            };
            let inner = self.inner.clone();
            let runtime = runtime.clone();
            let app_name = app.name.clone();
            tokio::spawn(async move {
                match runtime.replica_logs(&app_name, &name, from).await {
                    Ok(mut lines) => {
                        while let Some(line) = lines.next().await {
                            let queues = inner
                                .state
                                .lock()
                                .ok()
                                .and_then(|s| s.by_app.get(&app_name).cloned())
                                .unwrap_or_default();
                            let at = Utc::now();
                            for q in queues {
                                q.push(&app_name, &proc, &line, at);
                            }
                        }
                    }
                    Err(err) => {
                        tracing::debug!(app = %app_name, replica = %name, error = %err, "log drains: not followed")
                    }
                }
                if let Ok(mut state) = inner.state.lock() {
                    state.following.remove(&name);
                    state.ended.insert(name, Utc::now());
                }
            });
        }
        Ok(())
    }

    /// What is older is not shipped: lines from the drains' creation (or this shipper's
    /// start) on.
    fn cutoff(&self, app: &App) -> DateTime<Utc> {
        app.drains
            .iter()
            .map(|d| d.created_at)
            .min()
            .unwrap_or_else(Utc::now)
            .max(self.inner.started)
    }

    /// Ships the new lines of the app's latest builds (their deploy lines included).
    async fn ship_builds(&self, app: &App) -> Result<(), String> {
        let store = &self.inner.store;
        let builds = store
            .builds_of(&app.name)
            .await
            .map_err(|e| e.to_string())?;
        let cutoff = self.cutoff(app);
        let mut recent: Vec<_> = builds.into_iter().collect();
        recent.sort_by_key(|b| std::cmp::Reverse(b.created_at));
        recent.truncate(3);
        let kept: HashSet<BuildId> = recent.iter().map(|b| b.id.clone()).collect();
        for build in recent {
            let after = {
                let Ok(mut state) = self.inner.state.lock() else {
                    return Ok(());
                };
                *state
                    .builds
                    .entry(app.name.clone())
                    .or_default()
                    .entry(build.id.clone())
                    .or_insert(if build.created_at < cutoff {
                        u64::MAX
                    } else {
                        0
                    })
            };
            if after == u64::MAX {
                continue;
            }
            let lines = store
                .build_log(&build.id, after, 1000)
                .await
                .map_err(|e| e.to_string())?;
            let Some((last, _)) = lines.last() else {
                continue;
            };
            let last = *last;
            let queues = self
                .inner
                .state
                .lock()
                .ok()
                .and_then(|s| s.by_app.get(&app.name).cloned())
                .unwrap_or_default();
            let at = Utc::now();
            for (_, line) in &lines {
                for q in &queues {
                    q.push(&app.name, "build", line, at);
                }
            }
            if let Ok(mut state) = self.inner.state.lock() {
                state
                    .builds
                    .entry(app.name.clone())
                    .or_default()
                    .insert(build.id.clone(), last);
            }
        }
        // Only the recent builds are remembered.
        if let Ok(mut state) = self.inner.state.lock() {
            if let Some(seen) = state.builds.get_mut(&app.name) {
                seen.retain(|id, _| kept.contains(id));
            }
        }
        Ok(())
    }
}

/// Delivers a queue's lines in order until the queue goes.
async fn send_loop(inner: Arc<Inner>, queue: std::sync::Weak<Queue>) {
    let mut backoff = Duration::from_millis(500);
    let mut conn: Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> = None;
    // A batch that failed is sent again as it was (same lines, same frame id), so a
    // receiver that took it but could not answer can drop the repeat.
    let mut pending: Option<Vec<Frame>> = None;
    // Syslog: the last batch written, and when (sent again if its connection was reset).
    let mut last_written: Option<(Vec<Frame>, std::time::Instant)> = None;
    loop {
        let Some(q) = queue.upgrade() else {
            return;
        };
        let batch = match pending.take() {
            Some(batch) => batch,
            None => {
                let batch = q.batch();
                if batch.is_empty() {
                    // Wakes on a new line, or checks again now and then (the queue may
                    // have gone).
                    let _ = tokio::time::timeout(Duration::from_secs(5), q.wake.notified()).await;
                    continue;
                }
                batch
            }
        };
        let last = batch.last().map(|f| f.seq).unwrap_or_default();
        let sent = match &q.target {
            Target::Https(url) => post(&inner, &q, url, &batch).await,
            Target::SyslogTls { host, port } => {
                match write_syslog(&inner, &mut conn, host, *port, &batch).await {
                    Ok(()) => {
                        last_written = Some((batch.clone(), std::time::Instant::now()));
                        Ok(())
                    }
                    Err(Broken::Reset(why)) => {
                        // What the reset connection took last goes again, before this.
                        let mut again = match last_written.take() {
                            Some((frames, at)) if at.elapsed() < Duration::from_secs(5) => frames,
                            _ => Vec::new(),
                        };
                        let first = batch.first().map(|f| f.seq).unwrap_or(u64::MAX);
                        again.retain(|f| f.seq < first);
                        if !again.is_empty() {
                            again.extend(batch.iter().cloned());
                            let count = again.len();
                            pending = Some(again);
                            tracing::warn!(drain = %q.drain.id, error = %why, lines = count, "log drain: connection reset; the last lines written go again");
                            drop(q);
                            continue;
                        }
                        Err(why)
                    }
                    Err(Broken::Other(why)) => Err(why),
                }
            }
        };
        match sent {
            Ok(()) => {
                q.taken(last, batch.len());
                backoff = Duration::from_millis(500);
            }
            Err(err) => {
                tracing::warn!(app = %q.drain_app(), drain = %q.drain.id, host = %q.target.host(), error = %err, retry_in_ms = backoff.as_millis() as u64, "log drain: delivery failed");
                pending = Some(batch);
                drop(q);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

impl Queue {
    fn drain_app(&self) -> String {
        self.frames
            .lock()
            .ok()
            .and_then(|f| f.front().map(|fr| fr.app.to_string()))
            .unwrap_or_default()
    }
}

async fn post(inner: &Inner, q: &Queue, url: &url::Url, batch: &[Frame]) -> Result<(), String> {
    // An address written in the URL is checked here; names, by the resolver.
    parse(url.as_str(), inner.settings.allow_loopback)?;
    let mut body = String::new();
    for f in batch {
        let m = f.message();
        body.push_str(&format!("{} {m}\n", m.len() + 1));
    }
    // The same frame id for the same first line: a receiver may drop a repeat.
    let frame_id = format!(
        "{}-{}-{}",
        inner.nonce,
        q.drain.id,
        batch.first().map(|f| f.seq).unwrap_or_default()
    );
    let resp = inner
        .http
        .post(url.clone())
        .header("Content-Type", "application/logplex-1")
        .header("Logplex-Msg-Count", batch.len().to_string())
        .header("Logplex-Frame-Id", frame_id)
        .header("Logplex-Drain-Token", format!("d.{}", q.drain.id))
        .body(body)
        .send()
        .await
        .map_err(|e| {
            // Not the URL: it may hold the drain's token.
            let e = e.without_url();
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                why = format!("{why}: {s}");
                source = s.source();
            }
            why
        })?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", resp.status()))
    }
}

/// Why a syslog write failed.
enum Broken {
    /// The connection was reset: what was last written on it may be lost.
    Reset(String),
    /// Nothing written was lost (no connection, a timeout…).
    Other(String),
}

impl From<String> for Broken {
    fn from(why: String) -> Self {
        Broken::Other(why)
    }
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Reset(why) | Broken::Other(why) => f.write_str(why),
        }
    }
}

async fn write_syslog(
    inner: &Inner,
    conn: &mut Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    host: &str,
    port: u16,
    batch: &[Frame],
) -> Result<(), Broken> {
    // A connection the receiver closed (it went away) is not written to: what would be
    // written there is lost. A moment's wait lets a close that has arrived be seen. A
    // reset (the receiver left bytes unread, or got some after it closed) means the last
    // batch written may be lost: it is sent again.
    if let Some(stream) = conn.as_mut() {
        let mut probe = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(2), stream.read(&mut probe)).await {
            Ok(Ok(0)) => *conn = None,
            Ok(Err(e)) => {
                *conn = None;
                if e.kind() == std::io::ErrorKind::ConnectionReset {
                    return Err(Broken::Reset(format!("{host}:{port} reset the connection")));
                }
            }
            _ => {}
        }
    }
    if conn.is_none() {
        let addrs = public_addrs(host, port, inner.settings.allow_loopback).await?;
        let tcp = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect(&addrs[..]),
        )
        .await
        .map_err(|_| format!("connecting to {host}:{port} timed out"))?
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host}: {e}"))?;
        let tls = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_rustls::TlsConnector::from(inner.tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| format!("TLS with {host}:{port} timed out"))?
        .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
        *conn = Some(tls);
    }
    let Some(stream) = conn.as_mut() else {
        return Err(Broken::Other("no connection".into()));
    };
    let mut bytes = Vec::new();
    for f in batch {
        let m = f.message();
        bytes.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
    }
    let written = tokio::time::timeout(Duration::from_secs(20), async {
        stream.write_all(&bytes).await?;
        stream.flush().await
    })
    .await;
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            *conn = None;
            let why = format!("writing to {host}:{port}: {e}");
            Err(match e.kind() {
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
                    Broken::Reset(why)
                }
                _ => Broken::Other(why),
            })
        }
        Err(_) => {
            *conn = None;
            Err(Broken::Other(format!("writing to {host}:{port} timed out")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_urls_are_https_or_syslog_over_tls_to_public_addresses() {
        assert!(matches!(
            parse("https://logs.example.com/ingest?token=x", false),
            Ok(Target::Https(_))
        ));
        assert_eq!(
            parse("syslog+tls://logs.example.com:6514", false),
            Ok(Target::SyslogTls {
                host: "logs.example.com".into(),
                port: 6514
            })
        );
        for (bad, says) in [
            ("http://logs.example.com/", "scheme `http`"),
            ("syslog://logs.example.com:514", "scheme `syslog`"),
            ("syslog+tls://logs.example.com", "needs a port"),
            ("https://169.254.169.254/", "link-local"),
            ("https://10.0.0.8/", "private"),
            ("https://127.0.0.1:8443/", "loopback"),
            ("syslog+tls://[::1]:6514", "loopback"),
            ("not a url", "is not a URL"),
        ] {
            let err = parse(bad, false).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(parse("https://127.0.0.1:8443/", true).is_ok());
    }

    #[test]
    fn messages_are_rfc5424_with_the_app_and_process() {
        let f = Frame {
            seq: 0,
            at: DateTime::parse_from_rfc3339("2026-12-07T17:09:05.123456Z")
                .expect("time")
                .with_timezone(&Utc),
            app: AppName::parse("shop").expect("name"),
            proc: "web.1".into(),
            line: "GET / 200".into(),
        };
        assert_eq!(
            f.message(),
            "<190>1 2026-12-07T17:09:05.123456Z shop app web.1 - - GET / 200"
        );
        let long = "é".repeat(MAX_LINE);
        assert!(cut(&long).len() <= MAX_LINE);
    }
}
