//! The `api` function: the HTTP JSON API that the `gigalixir` CLI (ours, and GIGALIXIR's
//! official one) speaks. Triggered by HTTP requests, not by the bus; emits
//! `release-requested` (config changes, rollbacks: the release step makes them),
//! `app-scaled`, `restart-requested`,
//! `app-destroyed`, `ssh-keys-changed` and `domains-changed`.
//!
//! Routes follow GIGALIXIR's API: `{"data": …}` replies, `{"errors": {…}}` errors, 201 for
//! creations, 401 for bad credentials, HTTP Basic `email:api_key` on every route but
//! sign-up (`POST /api/users`) and login (`GET /api/login`, Basic `email:password`).

pub mod access;
pub mod accounts;
pub mod apps;
pub mod auth;
pub mod configs;
pub mod databases;
pub mod domains;
pub mod drains;
pub mod error;
pub mod health;
pub mod limits;
pub mod mail;
pub mod mfa;
pub mod processes;
pub mod releases;
pub mod ssh_keys;
pub mod users;
pub mod webhooks;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post, put};
use axum::Router;
use shared::ports::{Blobs, Bus, Databases, Runtime, Store};

use error::ApiError;

/// Largest request body accepted; the API takes small JSON documents only.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the handlers share: the ports they use.
#[derive(Clone)]
pub struct ApiState {
    /// Users, keys, apps.
    pub store: Arc<dyn Store>,
    /// Where changes that the pipeline acts on are announced (`release-requested`,
    /// `app-scaled`, `restart-requested`, `app-destroyed`).
    pub bus: Arc<dyn Bus>,
    /// Where the apps run, for `ps` and `logs`; `None` where the API runs apart from the
    /// runtime (then those routes answer 503).
    pub runtime: Option<Arc<dyn Runtime>>,
    /// The apps' domain: an app answers on `APP.<app_domain>`, the CNAME target of its
    /// custom domains.
    pub app_domain: String,
    /// Who gets custom domains their HTTPS certificates, where the router runs in the same
    /// process (`None`: elsewhere, e.g. cert-manager on Kubernetes).
    pub certificates: Option<Arc<dyn DomainCertificates>>,
    /// Names no app may take as a custom domain, nor any name under them: the
    /// platform's own hosts (`--reserved-domains`).
    pub reserved_domains: Arc<[shared::domain::Fqdn]>,
    /// How accounts are confirmed and mailed.
    pub accounts: Accounts,
    /// Where managed databases are made (`pg:create`); `None`: not offered here (those
    /// routes answer 503).
    pub databases: Option<Arc<dyn Databases>>,
    /// Where database backups are kept (`backups/…`); needed with `databases`.
    pub blobs: Option<Arc<dyn Blobs>>,
    /// Log drains may point at loopback addresses (tests with a local receiver).
    pub drains_allow_loopback: bool,
}

/// How accounts are confirmed and mailed.
#[derive(Clone)]
pub struct Accounts {
    /// Where mail goes.
    pub mailer: mail::Mailer,
    /// Whether a new account must confirm its email before it logs in (off:
    /// `--no-email-confirmation`, a private installation's choice).
    pub confirm_email: bool,
    /// The API's address as users reach it, for links in mail.
    pub public_url: String,
}

impl Accounts {
    /// Accounts confirmed at once, mail in `outbox` (tests, private installations).
    pub fn unconfirmed_in(outbox: std::path::PathBuf) -> Self {
        Self {
            mailer: mail::Mailer::new(None, outbox, "noreply@localhost")
                .expect("a fixed sender address parses"),
            confirm_email: false,
            public_url: "http://localhost".into(),
        }
    }
}

/// The HTTPS certificates of custom domains, as the API sees them.
pub trait DomainCertificates: Send + Sync {
    /// A domain was added: get it a certificate.
    fn requested(&self, fqdn: &str);
    /// Where its certificate stands, in words (`issued, valid until …`, `failed: …`).
    fn status(&self, fqdn: &str) -> String;
}

/// The API's router, with its state.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/users", post(users::create).get(users::account))
        .route("/api/free_users", post(users::create))
        .route("/api/login", get(users::login))
        .route("/api/api_keys/regenerate", post(users::regenerate))
        .route("/api/signup", post(accounts::signup))
        .route(
            "/api/users/confirm",
            get(accounts::confirm_link).post(accounts::confirm),
        )
        .route("/api/users/reconfirm_email", put(accounts::resend))
        .route(
            "/api/users/reset_password",
            put(accounts::reset_request).post(accounts::reset),
        )
        .route(
            "/api/users/change_password",
            patch(accounts::change_password),
        )
        .route("/api/users/email", post(accounts::set_email))
        .route("/api/users/destroy", delete(accounts::destroy))
        .route("/api/mfa", delete(mfa::deactivate))
        .route("/api/mfa/start", post(mfa::start))
        .route("/api/mfa/verify", post(mfa::verify))
        .route("/api/mfa/recovery_codes", post(mfa::regenerate))
        .route(
            "/api/ssh_keys",
            get(ssh_keys::list)
                .post(ssh_keys::add)
                .delete(ssh_keys::remove),
        )
        .route("/api/apps", get(apps::list).post(apps::create))
        .route("/api/apps/{name}", get(apps::info).delete(apps::destroy))
        .route("/api/apps/{name}/releases", get(releases::list))
        .route(
            "/api/apps/{name}/domains",
            get(domains::list)
                .post(domains::add)
                .delete(domains::remove),
        )
        .route("/api/apps/{name}/stack", put(apps::set_stack))
        .route("/api/apps/{name}/health", get(health::get).put(health::set))
        .route(
            "/api/apps/{name}/releases/{version}/rollback",
            post(releases::rollback),
        )
        .route(
            "/api/apps/{name}/configs",
            get(configs::get).post(configs::set).delete(configs::unset),
        )
        .route("/api/apps/{name}/configs/copy", post(configs::copy))
        .route("/api/apps/{name}/status", get(processes::status))
        .route("/api/apps/{name}/scale", put(processes::scale))
        .route("/api/apps/{name}/restart", put(processes::restart))
        .route("/api/apps/{name}/logs", get(processes::logs))
        .route("/api/apps/{name}/ssh_ip", get(processes::ssh_ip))
        .route("/api/apps/{name}/activity", get(access::activity))
        .route(
            "/api/apps/{name}/permissions",
            get(access::list).post(access::add).delete(access::remove),
        )
        .route("/api/apps/{name}/owner", put(access::transfer))
        .route("/api/apps/{name}/maintenance", put(apps::set_maintenance))
        .route("/api/apps/{name}/pods/{pod}", delete(processes::kill))
        .route("/api/apps/{name}/run", post(processes::run))
        .route(
            "/api/apps/{name}/canaries",
            get(apps::canary).put(apps::set_canary),
        )
        .route(
            "/api/apps/{name}/canaries/{canary}",
            delete(apps::unset_canary),
        )
        .route(
            "/api/apps/{name}/drains",
            get(drains::list).post(drains::add).delete(drains::remove),
        )
        .route(
            "/api/apps/{name}/databases",
            get(databases::list).post(databases::create),
        )
        .route(
            "/api/apps/{name}/free_databases",
            post(databases::create_free),
        )
        .route(
            "/api/apps/{name}/databases/{id}",
            put(databases::scale).delete(databases::destroy),
        )
        .route(
            "/api/apps/{name}/databases/{id}/restart",
            put(databases::restart),
        )
        .route("/api/apps/{name}/databases/{id}/stop", put(databases::stop))
        .route(
            "/api/apps/{name}/databases/{id}/start",
            put(databases::start),
        )
        .route(
            "/api/apps/{name}/databases/{id}/upgrade",
            post(databases::upgrade),
        )
        .route(
            "/api/apps/{name}/databases/{id}/read_replicas",
            get(databases::read_replicas).post(databases::create_read_replica),
        )
        .route(
            "/api/apps/{name}/databases/{id}/backups",
            get(databases::backups).post(databases::create_backup),
        )
        .route(
            "/api/apps/{name}/databases/{id}/backups/{backup}/restore",
            post(databases::restore),
        )
        .route(
            "/api/apps/{name}/webhook",
            post(webhooks::create).delete(webhooks::remove),
        )
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"data": {"status": "ok"}})) }),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "No such route.") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
