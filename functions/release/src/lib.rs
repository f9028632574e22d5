//! The `release` function, the one place that numbers releases. Triggers: a
//! `slug-uploaded` message (a push's build) and a `release-requested` one (a config change,
//! a rollback: the api asks), Pub/Sub pushes to `POST /`. Step: holding the app's release
//! lock (so that pushes, config changes and rollbacks take turns), record the app's next
//! release `vN` in one store transaction — a build's slug with the app's config; for a
//! config change the app's config with the slug of its newest release that did not fail;
//! for a rollback an earlier release's slug with the app's config (which the rollback set
//! to that release's) — `rollback_id` pointing at the release it replaces; mark a build
//! released. Emits: `release-created`, with the trace id it was given.
//!
//! Idempotent: the build id, or the request's key, is the release's idempotency key, so a
//! redelivered message finds its release and only re-publishes the event (consumers are
//! idempotent too).
//!
//! It also holds the dead-letter consumer (`POST /dead-letters`, `shared::dead_letters`): a
//! message the pipeline gave up on ends its build as failed.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use shared::domain::{AppName, BuildId};
use shared::messages::{Event, ReleaseKind, ReleaseRequest};
use shared::model::{BuildState, NewRelease, ReleaseStatus, SlugRef};
use shared::ports::{Bus, Store};
use shared::push::{
    emit, fail_pending_releases, required, step_router, stop_if_push_gone, unexpected, StepError,
};
use shared::PortError;

/// The ports the step uses.
#[derive(Clone)]
pub struct StepState {
    /// Apps, builds, releases.
    pub store: Arc<dyn Store>,
    /// Where `release-created` goes.
    pub bus: Arc<dyn Bus>,
}

/// The function's router: the push endpoint and a health check.
pub fn router(state: StepState) -> Router {
    let dead_letters = shared::dead_letters::router(state.store.clone());
    step_router(state, |state, event, trace| async move {
        match event {
            Event::SlugUploaded { app, build, slug } => {
                release_build(&state, &app, &build, &slug, trace.as_deref()).await
            }
            Event::ReleaseRequested { app, request } => {
                release_requested(&state, &app, &request, trace.as_deref()).await
            }
            other => Err(unexpected("release", &other)),
        }
    })
    .merge(dead_letters)
}

/// Records the release of an uploaded build and announces it.
#[tracing::instrument(skip_all, fields(app = %app, build = %build))]
pub async fn release_build(
    state: &StepState,
    app: &AppName,
    build: &BuildId,
    slug: &SlugRef,
    trace: Option<&str>,
) -> Result<(), StepError> {
    let record = required(state.store.build(build).await, "the build")?;
    if record.state == BuildState::Uploaded {
        if let Err(stop) = stop_if_push_gone(&*state.store, &record, BuildState::Uploaded).await {
            // a release made just before the platform died is not deployed either
            fail_pending_releases(&*state.store, app, build).await?;
            return Err(stop);
        }
    }
    // The config is read under the lock: a config change released meanwhile is in it.
    let held = take_release_lock(state, app).await?;
    let made = async {
        let current = match state.store.app(app).await {
            Ok(a) => a,
            Err(PortError::NotFound) => {
                return Err(StepError::Permanent("the app was destroyed".into()))
            }
            Err(err) => return Err(err.into()),
        };
        let short = record.commit.get(..7).unwrap_or(&record.commit).to_owned();
        let spec = NewRelease {
            rollback_to: None,
            idempotency_key: format!("build:{build}"),
            slug: slug.clone(),
            config: current.config.clone(),
            commit: Some(record.commit.clone()),
            build: Some(build.clone()),
            summary: format!("Deploy {short}"),
        };
        Ok(state.store.create_next_release(app, &spec).await?)
    }
    .await;
    held.release().await;
    let release = made?;
    match state
        .store
        .transition_build(build, BuildState::Uploaded, BuildState::Released, &|_| {})
        .await
    {
        // Recorded once: a redelivery finds the build moved on.
        Ok(_) => {
            let activity = shared::model::Activity {
                app: app.clone(),
                at: chrono::Utc::now(),
                actor: "platform".into(),
                action: "release".into(),
                detail: format!("{}: {}", release.version, release.spec.summary),
            };
            if let Err(err) = state.store.add_activity(&activity).await {
                tracing::warn!(error = %err, "release not recorded in the app's activity");
            }
        }
        // Precondition: a previous delivery already moved it on.
        Err(PortError::Precondition) => {}
        Err(err) => return Err(err.into()),
    }
    let event = Event::ReleaseCreated {
        app: app.clone(),
        build: Some(build.clone()),
        version: release.version,
    };
    emit(&*state.bus, &event, trace).await?;
    tracing::info!(version = %release.version, "release created");
    Ok(())
}

/// How long a release waits for another release of the same app to be numbered.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// The app's release lock: releases are numbered one at a time per app.
async fn take_release_lock(
    state: &StepState,
    app: &AppName,
) -> Result<shared::locks::Held, StepError> {
    let lock = shared::locks::release_lock(app);
    let holder = shared::locks::holder(&format!("release-{}", uuid::Uuid::new_v4()));
    match shared::locks::Held::take_waiting(&state.store, &lock, &holder, LOCK_WAIT).await {
        Ok(held) => Ok(held),
        Err(PortError::Precondition) => Err(StepError::Transient(
            "another release of the app is being made".into(),
        )),
        Err(err) => Err(err.into()),
    }
}

/// Records the release a config change or a rollback asked for, and announces it.
#[tracing::instrument(skip_all, fields(app = %app, key = %request.key))]
pub async fn release_requested(
    state: &StepState,
    app: &AppName,
    request: &ReleaseRequest,
    trace: Option<&str>,
) -> Result<(), StepError> {
    let held = take_release_lock(state, app).await?;
    let made = make_requested(state, app, request).await;
    held.release().await;
    let Some(release) = made? else {
        return Ok(());
    };
    let event = Event::ReleaseCreated {
        app: app.clone(),
        build: None,
        version: release.version,
    };
    emit(&*state.bus, &event, trace).await?;
    tracing::info!(version = %release.version, summary = %request.summary, "release created");
    Ok(())
}

/// The release `request` asks for, made while the app's release lock is held; `None` when
/// there is nothing to release (no release ran yet: the next push takes the config).
async fn make_requested(
    state: &StepState,
    app: &AppName,
    request: &ReleaseRequest,
) -> Result<Option<shared::model::Release>, StepError> {
    let current = match state.store.app(app).await {
        Ok(a) => a,
        Err(PortError::NotFound) => {
            return Err(StepError::Permanent("the app was destroyed".into()))
        }
        Err(err) => return Err(err.into()),
    };
    let releases = state.store.releases(app).await?;
    if let Some(made) = releases
        .iter()
        .find(|r| r.spec.idempotency_key == request.key)
    {
        // a redelivery: the release exists; announce it again
        return Ok(Some(made.clone()));
    }
    let spec = match &request.kind {
        ReleaseKind::Config => {
            // The slug that runs, or is about to: a failed release's slug would fail again.
            let Some(base) = releases
                .iter()
                .filter(|r| r.status != ReleaseStatus::Failed)
                .max_by_key(|r| r.version)
            else {
                tracing::info!("no release to base a config change on yet");
                return Ok(None);
            };
            NewRelease {
                rollback_to: None,
                idempotency_key: request.key.clone(),
                slug: base.spec.slug.clone(),
                config: current.config.clone(),
                commit: base.spec.commit.clone(),
                build: None,
                summary: request.summary.clone(),
            }
        }
        ReleaseKind::Rollback { to } => {
            let Some(target) = releases.iter().find(|r| r.version == *to) else {
                return Err(StepError::Permanent(format!("{app} has no release {to}")));
            };
            // The app's config, which the rollback set to the target's: a config change
            // made after the rollback, even one whose release came first, is kept.
            NewRelease {
                rollback_to: Some(target.version),
                idempotency_key: request.key.clone(),
                slug: target.spec.slug.clone(),
                config: current.config.clone(),
                commit: target.spec.commit.clone(),
                build: None,
                summary: request.summary.clone(),
            }
        }
    };
    Ok(Some(state.store.create_next_release(app, &spec).await?))
}
