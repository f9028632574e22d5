//! The `receive` function. Trigger: HTTP — git smart-HTTP (`/APP.git/info/refs`,
//! `/APP.git/git-receive-pack`) and a GitHub-style push webhook. Step: authenticate, run the
//! real `git` against the app's repository (kept in the blob store between pushes, under a
//! per-app lock), archive the pushed `master`/`main` commit, record a Build. Emits:
//! `build-requested`; streams the build and deploy back to the pusher.
//!
//! The step itself lands with the push-deploy work; until then the crate holds its place in
//! the layout and serves its health check.

use axum::routing::get;
use axum::Router;

/// The function's router.
pub fn router() -> Router {
    Router::new().route("/healthz", get(|| async { "ok" }))
}
