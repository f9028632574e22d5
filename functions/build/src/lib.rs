//! The `build` function. Trigger: `build-requested` (pull subscription on build workers,
//! which need a Docker engine). Step: run the buildpacks in a container (bollard) with the
//! app's build cache, streaming output lines to the build log. Emits: `slug-built`.
//!
//! The step itself lands with the push-deploy work; until then the crate holds its place in
//! the layout and serves its health check.

use axum::routing::get;
use axum::Router;

/// The function's router.
pub fn router() -> Router {
    Router::new().route("/healthz", get(|| async { "ok" }))
}
