//! Releases: the list of an app's releases, newest first, in GIGALIXIR's shape plus our
//! status, rollback and slug fields. The config a release runs with is secret and never
//! shown.

use axum::extract::{Path, State};
use axum::Json;
use std::time::Duration;

use axum::http::StatusCode;
use shared::domain::{AppName, ReleaseVersion};
use shared::messages::{Envelope, Event, ReleaseKind, ReleaseRequest};
use shared::model::{Release, ReleaseStatus};
use shared::wire::{Data, ReleaseView};
use shared::PortError;

use crate::access::AppAccess;
use crate::apps::{reload, with_record_lock};
use crate::error::ApiError;
use crate::ApiState;

/// How long the API waits for the release step to make a release it asked for (under
/// API Gateway's 29 s and Cloud Run's default request timeout).
const RELEASE_WAIT: Duration = Duration::from_secs(20);

/// Asks the release step for a release of `app` (it numbers every release, pushes' too)
/// under a new trace id; the request's key, which the release will carry.
pub(crate) async fn request_release(
    state: &ApiState,
    app: &AppName,
    summary: String,
    kind: ReleaseKind,
) -> Result<String, ApiError> {
    let key = uuid::Uuid::new_v4().to_string();
    let trace = uuid::Uuid::new_v4().to_string();
    let event = Event::ReleaseRequested {
        app: app.clone(),
        request: ReleaseRequest {
            key: key.clone(),
            summary,
            kind,
        },
    };
    state
        .bus
        .publish(&event.topic(), &Envelope::event(&event, Some(&trace)))
        .await?;
    tracing::info!(app = %app, %key, %trace, "release requested");
    Ok(key)
}

/// The release made for the request `key`, once the release step has made it (waiting up
/// to [`RELEASE_WAIT`]).
pub(crate) async fn made_release(
    state: &ApiState,
    app: &AppName,
    key: &str,
) -> Result<Release, ApiError> {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(release) = state
            .store
            .releases(app)
            .await?
            .into_iter()
            .find(|r| r.spec.idempotency_key == key)
        {
            return Ok(release);
        }
        if started.elapsed() > RELEASE_WAIT {
            tracing::warn!(app = %app, %key, "the requested release was not made in time");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "The change is saved, but its release has not been made yet; it will show in `gigalixir releases -a {app}` and deploy when it is."
                ),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

fn view(release: &Release) -> ReleaseView {
    ReleaseView {
        version: release.version.0,
        created_at: release.created_at,
        summary: release.spec.summary.clone(),
        sha: release.spec.commit.clone(),
        status: release.status,
        rollback_id: release.rollback_id.map(|v| v.0),
        slug_size: release.spec.slug.size,
        deployed_by: release.deployed_by,
    }
}

/// `GET /api/apps/NAME/releases`: the app's releases, newest first.
pub async fn list(
    State(state): State<ApiState>,
    access: AppAccess,
) -> Result<Json<Data<Vec<ReleaseView>>>, ApiError> {
    let app = access.app;
    let mut releases = state.store.releases(&app.name).await?;
    // The store promises newest first; the order is part of this route's contract too
    // (GIGALIXIR's CLI rolls back to the second entry), so it is not left to chance.
    releases.sort_by_key(|r| std::cmp::Reverse(r.version));
    Ok(Json(Data {
        data: releases.iter().map(view).collect(),
    }))
}

/// `POST /api/apps/NAME/releases/VERSION/rollback`: a new release with the slug **and the
/// config** of release VERSION ("Rollback to vN"), deployed like any release. The app's
/// config becomes that config again. 422 for a failed or the running release.
pub async fn rollback(
    State(state): State<ApiState>,
    access: AppAccess,
    Path((_, version)): Path<(String, String)>,
) -> Result<Json<Data<ReleaseView>>, ApiError> {
    let app = access.app;
    let wanted = version
        .trim_start_matches('v')
        .parse::<u32>()
        .map_err(|_| {
            ApiError::invalid("version", format!("`{version}` is not a release version"))
        })?;
    let target = match state.store.release(&app.name, ReleaseVersion(wanted)).await {
        Ok(r) => r,
        Err(PortError::NotFound) => {
            return Err(ApiError::not_found(format!(
                "`{}` has no release v{wanted}.",
                app.name
            )))
        }
        Err(err) => return Err(err.into()),
    };
    if target.status == ReleaseStatus::Failed {
        return Err(ApiError::invalid(
            "version",
            format!("v{wanted} failed to start; roll back to a release that ran"),
        ));
    }
    let name = app.name.clone();
    let key = with_record_lock(&state, &name, || async {
        let releases = state.store.releases(&name).await?;
        if releases
            .iter()
            .find(|r| r.status == ReleaseStatus::Deployed)
            .is_some_and(|r| r.version == target.version)
        {
            return Err(ApiError::invalid(
                "version",
                format!("v{wanted} is the running release already"),
            ));
        }
        let mut app = reload(&state, &name).await?;
        app.config = target.spec.config.clone();
        state.store.update_app(&app).await?;
        request_release(
            &state,
            &name,
            format!("Rollback to v{wanted}"),
            ReleaseKind::Rollback { to: target.version },
        )
        .await
    })
    .await?;
    let release = made_release(&state, &name, &key).await?;
    tracing::info!(app = %name, to = wanted, version = %release.version, "rollback released");
    crate::access::record(
        &state,
        &name,
        access.user.email.as_str(),
        "rollback",
        format!("to v{wanted} ({})", release.version),
    )
    .await;
    Ok(Json(Data {
        data: view(&release),
    }))
}
