//! The dead-letter consumer: a message that a step could not handle after every attempt
//! ends its build as failed, so the pusher hears about it instead of waiting, and the
//! release it concerns (if any) is marked failed. Served by the `release` function at
//! [`PATH`] (see `deployment::subscriptions`).

use std::sync::Arc;

use crate::error::PortError;
use crate::messages::{Delivery, Event};
use crate::model::{BuildState, ReleaseStatus};
use crate::ports::bus::{ATTR_DEAD_LETTER_SUBSCRIPTION, ATTR_DELIVERY_ATTEMPTS};
use crate::ports::Store;
use crate::push::{fail_build, handle, StepError};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::Router;

/// Where the consumer takes Pub/Sub pushes.
pub const PATH: &str = crate::deployment::DEAD_LETTERS_PATH;

/// Pub/Sub's own dead-letter attributes (a dead-letter policy moved the message).
const PUBSUB_SOURCE: &str = "CloudPubSubDeadLetterSourceSubscription";
const PUBSUB_COUNT: &str = "CloudPubSubDeadLetterSourceDeliveryCount";

/// The consumer's router, answering at [`PATH`].
pub fn router(store: Arc<dyn Store>) -> Router {
    Router::new().route(PATH, post(push)).with_state(store)
}

async fn push(State(store): State<Arc<dyn Store>>, body: Bytes) -> Response {
    handle(body, |delivery| bury(store, delivery)).await
}

async fn bury(store: Arc<dyn Store>, delivery: Delivery) -> Result<(), StepError> {
    let attr = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|n| delivery.envelope.attributes.get(*n).cloned())
    };
    let step = attr([ATTR_DEAD_LETTER_SUBSCRIPTION, PUBSUB_SOURCE])
        .map(|s| s.rsplit('/').next().unwrap_or(&s).to_owned())
        .unwrap_or_else(|| "a pipeline step".into());
    let attempts = attr([ATTR_DELIVERY_ATTEMPTS, PUBSUB_COUNT]).unwrap_or_default();
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
