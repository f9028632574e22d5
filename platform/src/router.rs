//! The HTTP router of the single-machine runtime: a request for `APP.localhost` (or
//! `APP.<domain>`) goes to the app's live release; anything else to the platform's own
//! routes (API, git).
//!
//! The hot path reads no store and asks no runtime: a routing table per app is kept in
//! memory, dropped whenever the runtime changes an app's live replicas and refreshed after
//! a second otherwise (an app created or destroyed). Upstream connections are kept alive;
//! an idempotent request without a body that its replica fails before answering (refused,
//! reset) is tried once on another replica. Upgrades (WebSockets) are bridged until either
//! side closes or nothing moves past the idle timeout; streamed responses pass as they
//! come. The client's address is appended to `X-Forwarded-For`; `X-Forwarded-Proto`,
//! `-Host`, `-Port` and `X-Request-Id` are set; hop-by-hop and spoofable forwarding headers
//! are dropped; one access-log line per request says what happened (never its query,
//! cookies or credentials).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderName};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use shared::domain::{AppName, Fqdn, UserId};
use shared::model::Canary;
use shared::ports::{Runtime, Store};
use shared::PortError;

/// How the router treats requests to apps.
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    /// How long an app may take to answer a request's headers (then 504).
    pub request_timeout: Duration,
    /// How long an upgraded connection (a WebSocket) may stay silent both ways.
    pub upgrade_idle: Duration,
    /// The largest request body passed to an app (then 413).
    pub max_body_bytes: u64,
    /// The most upgraded connections (WebSockets) one app may have open through the
    /// router (then 503): one app's visitors cannot take every descriptor of the platform.
    pub max_upgraded_per_app: usize,
    /// The most upgraded connections open through the router in all (then 503): each
    /// takes two descriptors, and the HTTP connection cap no longer counts it.
    pub max_upgraded: usize,
}

impl Default for EdgeLimits {
    /// 60 s to answer, 1 h of WebSocket silence, 100 MB of request body, 10,000
    /// WebSockets per app and 20,000 in all.
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            upgrade_idle: Duration::from_secs(3600),
            max_body_bytes: 100 << 20,
            max_upgraded_per_app: 10_000,
            max_upgraded: 20_000,
        }
    }
}

/// How long a routing-table entry is trusted when nothing says it changed.
const ROUTE_TTL: Duration = Duration::from_secs(1);
/// The most routes and custom-domain lookups kept each (any `Host` a client sends is looked
/// up once).
const MAX_CACHED_DOMAINS: usize = 10_000;
/// How long a replica that failed a request is passed over.
const SUSPECT_FOR: Duration = Duration::from_secs(2);

/// Marks a request that came in over HTTPS, on `port`.
#[derive(Debug, Clone, Copy)]
pub struct Https {
    /// The HTTPS port clients used.
    pub port: u16,
}

/// Custom domains looked up lately: the app (`None`: not an app's), and when.
type DomainCache = HashMap<Fqdn, (Option<AppName>, Instant)>;

/// What the router knows of one app.
#[derive(Clone)]
struct Route {
    /// `None`: there is no such app.
    endpoints: Option<Arc<[SocketAddr]>>,
    /// The app is in maintenance (`maintenance:on`).
    maintenance: bool,
    /// Where a share of its requests goes (`canary:set`).
    canary: Option<Canary>,
    /// Its owner (a canary must have the same).
    owner: Option<UserId>,
    fetched: Instant,
    /// The runtime's change counter when it was fetched.
    generation: u64,
}

/// What the router needs.
#[derive(Clone)]
pub struct Proxy {
    /// `localhost`, or the platform's domain: apps are its subdomains.
    pub domain: String,
    /// To tell unknown apps from apps not running.
    pub store: Arc<dyn Store>,
    /// Where the apps run.
    pub runtime: Arc<dyn Runtime>,
    /// The port clients reach the router on (`X-Forwarded-Port`).
    pub port: u16,
    limits: EdgeLimits,
    /// Counts the runtime's changes of live replicas: a new count empties the table.
    changes: Arc<AtomicU64>,
    table: Arc<RwLock<HashMap<AppName, Route>>>,
    /// Answers ACME HTTP-01 challenges, when certificates come from an ACME server.
    acme: Option<Arc<crate::acme::Acme>>,
    /// Custom domains looked up lately: the app (`None`: not an app's), and when.
    domains: Arc<RwLock<DomainCache>>,
    /// Replicas that just failed a request: passed over for [`SUSPECT_FOR`] while another
    /// one is there.
    suspects: Arc<RwLock<HashMap<SocketAddr, Instant>>>,
    client: Client<HttpConnector, Body>,
    next: Arc<AtomicUsize>,
    /// New visitors of each app with a canary so far (from a random start): which of them
    /// go to the canary is spread evenly, so its share is its weight at any count.
    visitors: Arc<Mutex<HashMap<AppName, u64>>>,
    /// Open upgraded connections, per app and in all.
    upgraded: Arc<Mutex<OpenUpgrades>>,
    /// Names no app answers on, whatever the store says (`--reserved-domains`).
    reserved: Arc<[Fqdn]>,
    /// Where each request's line also goes: the app's log drains.
    drains: Option<gigalixir_drains::Shipper>,
}

/// Open upgraded connections, per app and in all.
#[derive(Default)]
struct OpenUpgrades {
    per_app: HashMap<AppName, usize>,
    total: usize,
}

/// One open upgraded connection of an app, counted until dropped.
struct Upgraded {
    app: AppName,
    open: Arc<Mutex<OpenUpgrades>>,
}

/// Why an upgrade was not counted.
enum UpgradeRefused {
    App,
    Total,
}

impl Upgraded {
    /// Counts one more for `app`, unless it has `limits.max_upgraded_per_app` open
    /// already or the router `limits.max_upgraded`.
    fn take(
        open: &Arc<Mutex<OpenUpgrades>>,
        app: &AppName,
        limits: &EdgeLimits,
    ) -> Result<Self, UpgradeRefused> {
        let mut counts = open.lock().map_err(|_| UpgradeRefused::Total)?;
        if counts.total >= limits.max_upgraded {
            return Err(UpgradeRefused::Total);
        }
        let n = counts.per_app.entry(app.clone()).or_insert(0);
        if *n >= limits.max_upgraded_per_app {
            return Err(UpgradeRefused::App);
        }
        *n += 1;
        counts.total += 1;
        Ok(Self {
            app: app.clone(),
            open: open.clone(),
        })
    }
}

impl Drop for Upgraded {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.open.lock() {
            counts.total = counts.total.saturating_sub(1);
            if let Some(n) = counts.per_app.get_mut(&self.app) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.per_app.remove(&self.app);
                }
            }
        }
    }
}

impl Proxy {
    /// A router for apps under `domain`, served on `port`. `changes` is bumped by the runtime
    /// whenever an app's live replicas change.
    pub fn new(
        domain: String,
        port: u16,
        store: Arc<dyn Store>,
        runtime: Arc<dyn Runtime>,
        changes: Arc<AtomicU64>,
        limits: EdgeLimits,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Self {
            domain,
            store,
            runtime,
            port,
            limits,
            changes,
            table: Arc::default(),
            acme: None,
            domains: Arc::default(),
            suspects: Arc::default(),
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            next: Arc::new(AtomicUsize::new(0)),
            visitors: Arc::default(),
            upgraded: Arc::default(),
            reserved: Arc::from(Vec::new()),
            drains: None,
        }
    }

    /// The same router, its request lines also shipped to the apps' log drains.
    pub fn with_drains(mut self, drains: gigalixir_drains::Shipper) -> Self {
        self.drains = Some(drains);
        self
    }

    /// The same router, answering on none of `reserved` (nor names under them), even
    /// where a custom domain of that name was stored before they were reserved.
    pub fn with_reserved(mut self, reserved: Arc<[Fqdn]>) -> Self {
        self.reserved = reserved;
        self
    }

    /// The same router, answering `acme`'s HTTP-01 challenges.
    pub fn with_acme(mut self, acme: Arc<crate::acme::Acme>) -> Self {
        self.acme = Some(acme);
        self
    }

    /// The app's live replicas and whether it is in maintenance (`None`: no such app), from
    /// the table while it is current.
    async fn route(&self, app: &AppName) -> Result<Option<(Arc<[SocketAddr]>, bool)>, PortError> {
        let route = self.route_of(app).await?;
        Ok(route.endpoints.map(|e| (e, route.maintenance)))
    }

    /// What the router knows of the app, from the table while it is current.
    async fn route_of(&self, app: &AppName) -> Result<Route, PortError> {
        let generation = self.changes.load(Ordering::Acquire);
        if let Some(route) = self.table.read().ok().and_then(|t| t.get(app).cloned()) {
            if route.generation == generation && route.fetched.elapsed() < ROUTE_TTL {
                return Ok(route);
            }
        }
        let (endpoints, maintenance, canary, owner) = match self.store.app(app).await {
            Ok(record) => (
                Some(Arc::from(self.runtime.endpoints(app).await?)),
                record.maintenance,
                record.canary,
                Some(record.owner),
            ),
            Err(PortError::NotFound) => (None, false, None, None),
            Err(err) => return Err(err),
        };
        let route = Route {
            endpoints,
            maintenance,
            canary,
            owner,
            fetched: Instant::now(),
            generation,
        };
        if let Ok(mut table) = self.table.write() {
            // any `Host` a client sends under the domain lands here once
            if table.len() >= MAX_CACHED_DOMAINS {
                table.clear();
            }
            table.insert(app.clone(), route.clone());
        }
        Ok(route)
    }

    /// The app that serves this request: the app itself, or its canary for the share of
    /// visitors its weight says (kept on one side by a cookie while the weight is neither
    /// 0 nor 100); with the cookie to set when a visitor was newly assigned.
    async fn canary_or(&self, app: AppName, headers: &HeaderMap) -> (AppName, Option<HeaderValue>) {
        let Ok(Route {
            canary: Some(canary),
            owner,
            ..
        }) = self.route_of(&app).await
        else {
            return (app, None);
        };
        // A canary that is gone, or no longer the same owner's (given away), serves
        // nothing: the app serves all.
        match self.route_of(&canary.app).await {
            Ok(Route {
                endpoints: Some(_),
                owner: canary_owner,
                ..
            }) if canary_owner == owner => {}
            _ => return (app, None),
        }
        let cookie = format!("gx_canary_{app}");
        let sticky = (1..100).contains(&canary.weight);
        let kept = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == cookie).then_some(v == "canary")
            });
        let to_canary = match kept {
            Some(side) if sticky => side,
            _ => self.new_visitor_to_canary(&app, canary.weight),
        };
        let set = if sticky && kept.is_none() {
            let side = if to_canary { "canary" } else { "app" };
            HeaderValue::from_str(&format!(
                "{cookie}={side}; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax"
            ))
            .ok()
        } else {
            None
        };
        let target = if to_canary { canary.app } else { app };
        (target, set)
    }

    /// Whether the app's next new visitor goes to its canary of `weight` percent: the
    /// n-th does when `n × weight / 100` reaches a new whole number, so every run of 100
    /// visitors sends exactly `weight` there (a random draw each time strays by ±3 % over
    /// a thousand), evenly spread; the count starts at random, per app.
    fn new_visitor_to_canary(&self, app: &AppName, weight: u8) -> bool {
        let weight = u64::from(weight.min(100));
        let Ok(mut visitors) = self.visitors.lock() else {
            return false;
        };
        let n = visitors
            .entry(app.clone())
            .or_insert_with(|| rand::Rng::gen_range(&mut rand::thread_rng(), 0..100u64));
        let to_canary = (*n + 1) * weight / 100 > *n * weight / 100;
        *n = (*n + 1) % 100;
        to_canary
    }

    /// The app a custom domain belongs to, if any (looked up at most once a second per
    /// name; the cache is emptied when it holds too many names).
    async fn app_of_domain(&self, fqdn: &Fqdn) -> Result<Option<AppName>, PortError> {
        if self.reserved.iter().any(|r| fqdn.is_within(r.as_str())) {
            return Ok(None);
        }
        if let Some((app, at)) = self.domains.read().ok().and_then(|d| d.get(fqdn).cloned()) {
            if at.elapsed() < ROUTE_TTL {
                return Ok(app);
            }
        }
        let app = match self.store.domain(fqdn).await {
            Ok(d) => Some(d.app),
            Err(PortError::NotFound) => None,
            Err(err) => return Err(err),
        };
        if let Ok(mut domains) = self.domains.write() {
            if domains.len() >= MAX_CACHED_DOMAINS {
                domains.clear();
            }
            domains.insert(fqdn.clone(), (app.clone(), Instant::now()));
        }
        Ok(app)
    }

    /// Whether a request for `name` (a host name, no port) would reach an app: an app of
    /// that name under the platform's domain, or an app's custom domain.
    pub async fn serves(&self, name: &str) -> bool {
        if let Some(app) = app_of(&self.domain, name) {
            return matches!(self.route(&app).await, Ok(Some(_)));
        }
        match Fqdn::parse(name) {
            Ok(fqdn) if !fqdn.is_within(&self.domain) => {
                matches!(self.app_of_domain(&fqdn).await, Ok(Some(_)))
            }
            _ => false,
        }
    }

    /// Forgets what the table says of `app` and passes over `replica` for a while (it
    /// failed a request).
    fn failed(&self, app: &AppName, replica: SocketAddr) {
        if let Ok(mut table) = self.table.write() {
            table.remove(app);
        }
        if let Ok(mut suspects) = self.suspects.write() {
            suspects.retain(|_, since| since.elapsed() < SUSPECT_FOR);
            suspects.insert(replica, Instant::now());
        }
    }

    /// The replica for the `n`th request: round robin over those that did not just fail.
    fn pick(&self, endpoints: &[SocketAddr], n: usize) -> SocketAddr {
        let first = endpoints[n % endpoints.len()];
        let Ok(suspects) = self.suspects.read() else {
            return first;
        };
        if suspects.is_empty() {
            return first;
        }
        (0..endpoints.len())
            .map(|i| endpoints[(n + i) % endpoints.len()])
            .find(|e| suspects.get(e).is_none_or(|t| t.elapsed() >= SUSPECT_FOR))
            .unwrap_or(first)
    }
}

/// A `Host` header lowercased, without a trailing dot on its name.
fn normal_host(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) && !name.contains(':') => {
            format!("{}:{port}", name.trim_end_matches('.'))
        }
        _ => host.trim_end_matches('.').to_owned(),
    }
}

/// A `Host` header without its port.
fn host_name(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

/// The app a `Host` header names: `APP.<domain>`, with or without a port.
pub fn app_of(domain: &str, host: &str) -> Option<AppName> {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let label = host.strip_suffix(domain)?.strip_suffix('.')?;
    AppName::parse(label).ok()
}

fn page(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text + "\n",
    )
        .into_response()
}

/// Headers that concern one connection, never passed on (RFC 9110 7.6.1), besides those
/// the `Connection` header names.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Removes the hop-by-hop headers; `upgrade` (and `Connection: upgrade`) are kept when the
/// exchange is an upgrade.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrading: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        if !(upgrading && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if upgrading {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Whether the request asks to switch protocols (`Connection: upgrade` and `Upgrade`).
fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The client's request id if it is a sensible one (1–200 characters of letters, digits
/// and `-_.+/=`), else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            (1..=200).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.+/=".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().simple().to_string(), str::to_owned)
}

/// Methods a client may send twice with the same effect (RFC 9110 9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// What one request through the router did: logged once its response body has ended (or
/// was dropped), so that the bytes are the bytes sent.
struct AccessLog {
    method: Method,
    host: String,
    path: String,
    status: u16,
    bytes: u64,
    started: Instant,
    id: String,
    /// The app's drains, which get the line too (as Heroku's router lines).
    drain: Option<(gigalixir_drains::Shipper, AppName)>,
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        if let Some((drains, app)) = &self.drain {
            drains.emit(
                app,
                "router",
                &format!(
                    "at=info method={} path=\"{}\" host={} request_id={} status={} bytes={} service={:.0}ms",
                    self.method,
                    // Quoted: a quote or backslash in it cannot end the field.
                    self.path.replace('\\', "\\\\").replace('"', "\\\""),
                    self.host,
                    self.id,
                    self.status,
                    self.bytes,
                    self.started.elapsed().as_secs_f64() * 1000.0
                ),
            );
        }
        tracing::info!(
            target: "access",
            method = %self.method,
            host = %self.host,
            path = %self.path,
            status = self.status,
            bytes = self.bytes,
            ms = format!("{:.1}", self.started.elapsed().as_secs_f64() * 1000.0),
            request_id = %self.id,
            "routed"
        );
    }
}

/// `resp` with its body counted into `log`, which is written when the body ends.
fn logged(resp: Response, mut log: AccessLog) -> Response {
    log.status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let mut log = Some(log);
    let stream = body.into_data_stream().map(move |chunk| {
        if let (Ok(data), Some(log)) = (&chunk, log.as_mut()) {
            log.bytes += data.len() as u64;
        }
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// A request body that fails once it passes `max` bytes (checked as it streams); `tripped`
/// says so afterwards.
fn capped_body(body: Body, max: u64, tripped: Arc<std::sync::atomic::AtomicBool>) -> Body {
    let mut seen = 0u64;
    Body::from_stream(body.into_data_stream().map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len() as u64;
        if seen > max {
            tripped.store(true, Ordering::Relaxed);
            return Err(axum::Error::new(
                "the request body is larger than the router passes on",
            ));
        }
        Ok(chunk)
    }))
}

fn too_large(proxy: &Proxy) -> Response {
    page(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "The request body is larger than the {} MB an app may receive.",
            proxy.limits.max_body_bytes >> 20
        ),
    )
}

/// Middleware: proxies app hosts, passes the rest on.
pub async fn route_by_host(State(proxy): State<Proxy>, req: Request, next: Next) -> Response {
    if let (Some(acme), Some(token)) = (
        proxy.acme.as_ref(),
        req.uri()
            .path()
            .strip_prefix("/.well-known/acme-challenge/"),
    ) {
        if let Some(answer) = acme.challenge(token) {
            return ([(header::CONTENT_TYPE, "application/octet-stream")], answer).into_response();
        }
    }
    // Host names are case-blind and may end with a dot: the same name as TLS's SNI.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().host().map(str::to_owned))
        .map(|h| normal_host(&h));
    let Some(host) = host else {
        return next.run(req).await;
    };
    let app = match app_of(&proxy.domain, &host) {
        Some(app) => app,
        // Another name (not the platform's own, not an address): an app's custom domain?
        None => match Fqdn::parse(host_name(&host)) {
            Ok(fqdn) if !fqdn.is_within(&proxy.domain) => match proxy.app_of_domain(&fqdn).await {
                Ok(Some(app)) => app,
                Ok(None) => return next.run(req).await,
                Err(err) => {
                    tracing::error!(error = %err, "the router could not look a domain up");
                    return page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The platform is busy; try again.".into(),
                    );
                }
            },
            _ => return next.run(req).await,
        },
    };
    let id = request_id(req.headers());
    let log = AccessLog {
        method: req.method().clone(),
        host: host.clone(),
        path: req.uri().path().to_owned(),
        status: 0,
        bytes: 0,
        started: Instant::now(),
        id: id.clone(),
        drain: proxy.drains.clone().map(|d| (d, app.clone())),
    };
    let (app, canary_cookie) = proxy.canary_or(app, req.headers()).await;
    let mut resp = proxy_to(&proxy, &app, &host, &id, req).await;
    if let Some(cookie) = canary_cookie {
        resp.headers_mut().append(header::SET_COOKIE, cookie);
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // no body to count: the connection is the app's now
        let mut log = log;
        log.status = 101;
        return resp;
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    logged(resp, log)
}

async fn proxy_to(
    proxy: &Proxy,
    app: &AppName,
    host: &str,
    id: &str,
    mut req: Request,
) -> Response {
    let endpoints = match proxy.route(app).await {
        Ok(Some((e, true))) => return maintenance_page(proxy, app, &e).await,
        Ok(Some((e, false))) => e,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                format!("There is no app called {app} here."),
            )
        }
        Err(err) => {
            tracing::error!(error = %err, "the router could not look the app up");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The platform is busy; try again.".into(),
            );
        }
    };
    if endpoints.is_empty() {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{app} has no running release yet: deploy it with `git push gigalixir main`."),
        );
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > proxy.limits.max_body_bytes) {
        return too_large(proxy);
    }
    let upgrading = is_upgrade(req.headers());
    let counted = if upgrading {
        match Upgraded::take(&proxy.upgraded, app, &proxy.limits) {
            Ok(counted) => Some(counted),
            Err(refused) => {
                let (why, max) = match refused {
                    UpgradeRefused::App => (
                        "the app has as many open as it may",
                        proxy.limits.max_upgraded_per_app,
                    ),
                    UpgradeRefused::Total => (
                        "the router holds as many as it may",
                        proxy.limits.max_upgraded,
                    ),
                };
                tracing::warn!(app = %app, max, "upgrade refused: {why}");
                return page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{app} has too many open WebSocket connections; try again later."),
                );
            }
        }
    } else {
        None
    };
    let client_side = upgrading.then(|| hyper::upgrade::on(&mut req));
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let https = req.extensions().get::<Https>().copied();
    // Without a body, the request can be sent again (decided before the framing headers go:
    // in HTTP/1 a request without Content-Length or Transfer-Encoding has none).
    let framed_empty = req.version() <= axum::http::Version::HTTP_11
        && !req.headers().contains_key(header::TRANSFER_ENCODING)
        && declared.is_none_or(|n| n == 0);
    let repeatable = idempotent(req.method())
        && !upgrading
        && (framed_empty || axum::body::HttpBody::size_hint(req.body()).exact() == Some(0));
    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers, upgrading);
    // The router is where clients enter: forwarding headers other than the ones it sets
    // below are the client's say-so, and go.
    for spoofable in [
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "x-forwarded-ssl",
        "x-forwarded-scheme",
    ] {
        headers.remove(spoofable);
    }
    if let Some(peer) = peer {
        let chain = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(before) if !before.trim().is_empty() => format!("{}, {peer}", before.trim()),
            _ => peer.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&chain) {
            headers.insert("x-forwarded-for", v);
        }
    }
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if https.is_some() { "https" } else { "http" }),
    );
    if let Ok(v) = HeaderValue::from_str(host) {
        headers.insert("x-forwarded-host", v);
    }
    headers.insert(
        "x-forwarded-port",
        HeaderValue::from(https.map_or(proxy.port, |h| h.port)),
    );
    if let Ok(v) = HeaderValue::from_str(id) {
        headers.insert("x-request-id", v);
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let tripped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let body = capped_body(body, proxy.limits.max_body_bytes, tripped.clone());
    let first = proxy.next.fetch_add(1, Ordering::Relaxed);
    let mut body = Some(body);
    let mut attempt = 0;
    let resp = loop {
        let target = match attempt {
            0 => proxy.pick(&endpoints, first),
            _ => proxy.pick(&endpoints, first + 1),
        };
        let Ok(uri) = format!("http://{target}{path}").parse::<Uri>() else {
            return page(StatusCode::BAD_REQUEST, "Bad request path.".into());
        };
        let mut upstream = axum::http::Request::new(body.take().unwrap_or_else(Body::empty));
        *upstream.method_mut() = parts.method.clone();
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = parts.headers.clone();
        let sent =
            tokio::time::timeout(proxy.limits.request_timeout, proxy.client.request(upstream))
                .await;
        match sent {
            Ok(Ok(resp)) => break resp,
            // Nothing of the answer came: a request that can be sent again goes to another
            // replica (this one refused it or died with it).
            Ok(Err(err))
                if repeatable
                    && attempt == 0
                    && endpoints.len() > 1
                    && !tripped.load(Ordering::Relaxed) =>
            {
                tracing::warn!(app = %app, replica = %target, error = %err, "a replica failed a request; trying another");
                proxy.failed(app, target);
                attempt += 1;
            }
            Ok(Err(err)) => {
                if tripped.load(Ordering::Relaxed) {
                    return too_large(proxy);
                }
                if err.is_connect() {
                    proxy.failed(app, target);
                }
                tracing::warn!(app = %app, error = %err, "the app did not answer");
                return page(StatusCode::BAD_GATEWAY, format!("{app} did not answer."));
            }
            Err(_) => {
                return page(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "{app} did not answer within {} s.",
                        proxy.limits.request_timeout.as_secs()
                    ),
                )
            }
        }
    };
    let (mut parts, body) = resp.into_parts();
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_side) = client_side else {
            return page(
                StatusCode::BAD_GATEWAY,
                format!("{app} switched protocols unasked."),
            );
        };
        let mut upstream_resp = Response::from_parts(parts, body);
        let app_side = hyper::upgrade::on(&mut upstream_resp);
        let (mut parts, _) = upstream_resp.into_parts();
        let idle = proxy.limits.upgrade_idle;
        tokio::spawn(async move {
            let _counted = counted;
            match tokio::try_join!(client_side, app_side) {
                Ok((client, app)) => bridge(TokioIo::new(client), TokioIo::new(app), idle).await,
                Err(err) => tracing::debug!(error = %err, "an upgrade did not complete"),
            }
        });
        strip_hop_by_hop(&mut parts.headers, true);
        return Response::from_parts(parts, Body::empty());
    }
    strip_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(parts, Body::new(body))
}

/// How long a client is asked to wait before trying an app in maintenance again.
const MAINTENANCE_RETRY_AFTER: &str = "120";
/// Largest maintenance page taken from an app.
const MAX_MAINTENANCE_PAGE: usize = 256 * 1024;

/// The answer to every request of an app in maintenance: 503 with `Retry-After`, and the
/// app's own `/maintenance.html` (an HTML answer of at most 256 kB within 2 s from one of
/// its replicas, e.g. Phoenix's `priv/static/maintenance.html`), else a plain page.
async fn maintenance_page(proxy: &Proxy, app: &AppName, endpoints: &[SocketAddr]) -> Response {
    let own = match endpoints.first() {
        Some(replica) => own_maintenance_page(proxy, *replica).await,
        None => None,
    };
    let (content_type, body) = own.unwrap_or_else(|| {
        (
            HeaderValue::from_static("text/plain; charset=utf-8"),
            Bytes::from(format!(
                "{app} is down for maintenance; it will be back shortly.\n"
            )),
        )
    });
    let mut resp = (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(MAINTENANCE_RETRY_AFTER),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /maintenance.html` from `replica`: its content type and body when it is an HTML
/// page that fits.
async fn own_maintenance_page(proxy: &Proxy, replica: SocketAddr) -> Option<(HeaderValue, Bytes)> {
    let uri: Uri = format!("http://{replica}/maintenance.html").parse().ok()?;
    let mut req = axum::http::Request::new(Body::empty());
    *req.uri_mut() = uri;
    let resp = tokio::time::timeout(Duration::from_secs(2), proxy.client.request(req))
        .await
        .ok()?
        .ok()?;
    let content_type = resp.headers().get(header::CONTENT_TYPE)?.clone();
    if resp.status() != StatusCode::OK
        || !content_type
            .to_str()
            .is_ok_and(|t| t.to_ascii_lowercase().starts_with("text/html"))
    {
        return None;
    }
    let body = axum::body::Body::new(resp.into_body());
    let body = tokio::time::timeout(
        Duration::from_secs(2),
        axum::body::to_bytes(body, MAX_MAINTENANCE_PAGE),
    )
    .await
    .ok()?
    .ok()?;
    Some((content_type, body))
}

/// Copies both ways between an upgraded client connection and the app until either side
/// closes or fails, or nothing moves either way for `idle` (a side that stops reading
/// counts as nothing moving: its writes wait).
async fn bridge<A, B>(client: A, app: B, idle: Duration)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let started = Instant::now();
    let last = AtomicU64::new(0);
    let (client_read, client_write) = tokio::io::split(client);
    let (app_read, app_write) = tokio::io::split(app);
    let up = pump(client_read, app_write, &last, started);
    let down = pump(app_read, client_write, &last, started);
    tokio::pin!(up, down);
    let mut tick = tokio::time::interval((idle / 4).max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            () = &mut up => break,
            () = &mut down => break,
            _ = tick.tick() => {
                let quiet = started.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if quiet >= idle {
                    break;
                }
            }
        }
    }
}

/// Copies `from` into `to` until either ends, noting in `last` (ms since `started`) each
/// time bytes moved.
async fn pump<R, W>(mut from: R, mut to: W, last: &AtomicU64, started: Instant)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // a small buffer: thousands of idle WebSockets must stay cheap
    let mut buf = [0u8; 4096];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        last.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A router for `localhost` over `store` and a runtime with nothing running.
    fn proxy_over(store: shared::embedded::SqliteStore) -> Proxy {
        Proxy::new(
            "localhost".into(),
            5080,
            Arc::new(store),
            Arc::new(shared::fakes::FakeRuntime::default()),
            Arc::default(),
            EdgeLimits::default(),
        )
    }

    #[tokio::test]
    async fn reserved_names_reach_no_app_even_when_stored_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = shared::embedded::SqliteStore::open(&dir.path().join("s.db")).expect("store");
        let app = shared::fakes::seed_app(&store, "shop").await.name;
        for name in [
            "paas.example.com",
            "git.paas.example.com",
            "www.example.com",
        ] {
            store
                .add_domain(&shared::model::CustomDomain {
                    fqdn: Fqdn::parse(name).expect("fqdn"),
                    app: app.clone(),
                    created_at: chrono::Utc::now(),
                })
                .await
                .expect("domain");
        }
        let proxy = proxy_over(store)
            .with_reserved(vec![Fqdn::parse("paas.example.com").expect("fqdn")].into());
        assert!(!proxy.serves("paas.example.com").await);
        assert!(!proxy.serves("git.paas.example.com").await);
        assert!(
            proxy.serves("www.example.com").await,
            "other names still route"
        );
    }

    #[tokio::test]
    async fn every_hundred_new_visitors_send_exactly_the_weight_to_the_canary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = shared::embedded::SqliteStore::open(&dir.path().join("s.db")).expect("store");
        let proxy = proxy_over(store);
        for weight in [0u8, 1, 10, 33, 50, 99, 100] {
            let app = AppName::parse(&format!("shop-{weight}")).expect("name");
            // another tenant's visitors in between move nothing of this app's share
            let other = AppName::parse(&format!("other-{weight}")).expect("name");
            // any hundred in a row, from wherever the count starts
            let sides: Vec<bool> = (0..300)
                .map(|i| {
                    for _ in 0..i % 3 {
                        proxy.new_visitor_to_canary(&other, 50);
                    }
                    proxy.new_visitor_to_canary(&app, weight)
                })
                .collect();
            for start in [0, 17, 200] {
                let sent = sides[start..start + 100].iter().filter(|s| **s).count();
                assert_eq!(sent, usize::from(weight), "weight {weight} from {start}");
            }
        }
    }

    #[test]
    fn app_hosts_are_recognised() {
        let p = |host: &str| app_of("localhost", host).map(|a| a.to_string());
        assert_eq!(p("my-app.localhost:5080").as_deref(), Some("my-app"));
        assert_eq!(p("my-app.localhost").as_deref(), Some("my-app"));
        assert_eq!(p("localhost:5080"), None);
        assert_eq!(p("a.b.localhost"), None);
        assert_eq!(p("www.localhost"), None);
        assert_eq!(
            app_of("apps.example.com", "shop.apps.example.com")
                .map(|a| a.to_string())
                .as_deref(),
            Some("shop")
        );
    }

    #[test]
    fn hop_by_hop_headers_go_and_upgrades_keep_theirs() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        let mut plain = h.clone();
        strip_hop_by_hop(&mut plain, false);
        assert_eq!(
            plain.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["x-kept"]
        );
        let mut up = h;
        up.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        assert!(is_upgrade(&up));
        strip_hop_by_hop(&mut up, true);
        assert_eq!(up[header::UPGRADE], "websocket");
        assert_eq!(up[header::CONNECTION], "upgrade");
        assert!(!up.contains_key("keep-alive"));
    }

    #[test]
    fn request_ids_are_kept_when_sensible() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(
            "x-request-id",
            HeaderValue::from_static("no spaces <allowed>"),
        );
        let made = request_id(&h);
        assert_eq!(made.len(), 32);
        assert!(made.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(request_id(&HeaderMap::new()), made);
    }

    #[test]
    fn hosts_are_compared_lowercased_without_a_trailing_dot() {
        assert_eq!(normal_host("Shop.LocalHost.:5080"), "shop.localhost:5080");
        assert_eq!(normal_host("WWW.Example.COM."), "www.example.com");
        assert_eq!(normal_host("[::1]:80"), "[::1]:80");
    }

    #[tokio::test]
    async fn a_bridge_whose_sides_stop_reading_ends_after_the_idle_time() {
        use tokio::io::AsyncWriteExt;
        let (client, mut client_peer) = tokio::io::duplex(1024);
        let (app, mut app_peer) = tokio::io::duplex(1024);
        // both peers write more than the pipes hold and never read
        let flood = vec![0u8; 64 << 10];
        let writers = async {
            let _ = tokio::join!(client_peer.write_all(&flood), app_peer.write_all(&flood));
        };
        let bridged = bridge(client, app, Duration::from_millis(300));
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::select! {
                () = bridged => true,
                () = writers => false,
            }
        })
        .await;
        assert_eq!(ended, Ok(true), "the bridge did not end");
    }
}
