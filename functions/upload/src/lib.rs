//! The `upload` function. Trigger: `slug-built`. Step: stream the slug out of the build
//! container into the slug store, content-addressed by sha256, verify it, remove the
//! container. A failed upload retries the upload, never the build. Emits: `slug-uploaded`.
//!
//! The step itself lands with the push-deploy work; until then the crate holds its place in
//! the layout and serves its health check.

use axum::routing::get;
use axum::Router;

/// The function's router.
pub fn router() -> Router {
    Router::new().route("/healthz", get(|| async { "ok" }))
}
