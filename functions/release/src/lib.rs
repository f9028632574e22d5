//! The `release` function. Trigger: a `slug-uploaded` message (Pub/Sub push to `POST /`).
//! Step: in one store transaction, record the app's next release `vN` from the build's
//! slug and a snapshot of the app's config, `rollback_id` pointing at the release it
//! replaces; mark the build released. Emits: `release-created`.
//!
//! Idempotent: the build id is the release's idempotency key, so a redelivered message
//! finds its release and only re-publishes the event (consumers are idempotent too).
//!
//! It also holds the dead-letter consumer (`POST /dead-letters`, `shared::dead_letters`): a
//! message the pipeline gave up on ends its build as failed.

use std::sync::Arc;

use axum::Router;
use shared::domain::{AppName, BuildId};
use shared::messages::Event;
use shared::model::{BuildState, NewRelease, SlugRef};
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
    let release = state.store.create_next_release(app, &spec).await?;
    match state
        .store
        .transition_build(build, BuildState::Uploaded, BuildState::Released, &|_| {})
        .await
    {
        // Precondition: a previous delivery already moved it on.
        Ok(_) | Err(PortError::Precondition) => {}
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
