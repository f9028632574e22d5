//! Releases: the list of an app's releases, newest first, in GIGALIXIR's shape plus our
//! status, rollback and slug fields. The config a release runs with is secret and never
//! shown.

use axum::extract::{Path, State};
use axum::Json;
use shared::model::Release;
use shared::wire::{Data, ReleaseView};

use crate::apps::owned_app;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::ApiState;

fn view(release: &Release) -> ReleaseView {
    ReleaseView {
        version: release.version.0,
        created_at: release.created_at,
        summary: release.spec.summary.clone(),
        sha: release.spec.commit.clone(),
        status: release.status,
        rollback_id: release.rollback_id.map(|v| v.0),
        slug_size: release.spec.slug.size,
    }
}

/// `GET /api/apps/NAME/releases`: the app's releases, newest first.
pub async fn list(
    State(state): State<ApiState>,
    caller: AuthUser,
    Path(name): Path<String>,
) -> Result<Json<Data<Vec<ReleaseView>>>, ApiError> {
    let app = owned_app(&state, &caller, &name).await?;
    let mut releases = state.store.releases(&app.name).await?;
    // The store promises newest first; the order is part of this route's contract too
    // (GIGALIXIR's CLI rolls back to the second entry), so it is not left to chance.
    releases.sort_by_key(|r| std::cmp::Reverse(r.version));
    Ok(Json(Data {
        data: releases.iter().map(view).collect(),
    }))
}
