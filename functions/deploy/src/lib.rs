//! The `deploy` function. Trigger: `release-created`. Step: apply the release to the
//! runtime (Docker on one machine, Kubernetes in production), wait for health, roll back to
//! the last healthy release on failure. Emits: `deploy-succeeded` or `deploy-failed`.
//!
//! The step itself lands with the push-deploy work; until then the crate holds its place in
//! the layout and serves its health check.

use axum::routing::get;
use axum::Router;

/// The function's router.
pub fn router() -> Router {
    Router::new().route("/healthz", get(|| async { "ok" }))
}
