//! The dead-letter consumer: a message that a step could not handle after every attempt
//! ends its build as failed, so the pusher hears about it instead of waiting, and the
//! release it concerns (if any) is marked failed.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use shared::messages::{Delivery, Event};
use shared::model::{BuildState, ReleaseStatus};
use shared::ports::Store;
use shared::push::{fail_build, handle, StepError};
use shared::PortError;

/// The consumer's router.
pub fn router(store: Arc<dyn Store>) -> Router {
    Router::new().route("/", post(push)).with_state(store)
}

async fn push(State(store): State<Arc<dyn Store>>, body: Bytes) -> Response {
    handle(body, |delivery| bury(store, delivery)).await
}

async fn bury(store: Arc<dyn Store>, delivery: Delivery) -> Result<(), StepError> {
    let step = delivery
        .envelope
        .attributes
        .get("dead_letter_subscription")
        .cloned()
        .unwrap_or_else(|| "a pipeline step".into());
    let attempts = delivery
        .envelope
        .attributes
        .get("delivery_attempts")
        .cloned()
        .unwrap_or_default();
    let Ok(event) = delivery.envelope.decode_event() else {
        tracing::error!(step, "an unreadable message was dead-lettered");
        return Ok(());
    };
    tracing::error!(step, attempts, event = event.kind(), app = ?event.app(), "gave up on a message");
    let reason =
        format!("the platform gave up at {step} after {attempts} attempts; see the platform log");
    if let Event::ReleaseCreated { app, version, .. } = &event {
        match store
            .set_release_status(app, *version, ReleaseStatus::Failed)
            .await
        {
            Ok(()) | Err(PortError::NotFound) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let Some(id) = event.build() else {
        return Ok(());
    };
    let build = match store.build(id).await {
        Ok(b) => b,
        Err(PortError::NotFound) => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    if matches!(build.state, BuildState::Deployed | BuildState::Failed) {
        return Ok(());
    }
    match fail_build(&*store, id, build.state, &reason).await {
        StepError::Permanent(_) => Ok(()),
        transient => Err(transient),
    }
}
