//! Pub/Sub push delivery, shared by every function: the JSON envelope Pub/Sub POSTs, the
//! mapping of a step's result to ack (2xx) or redeliver (non-2xx), and the endpoint that lets
//! the embedded bus call a function's router in-process through that same path.

use std::collections::BTreeMap;
use std::future::Future;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

use crate::messages::{Delivery, Envelope, Event, ATTR_TRACE};
use crate::ports::bus::{Ack, PushEndpoint};

/// The body of a Pub/Sub push request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushBody {
    /// The message.
    pub message: PushMessage,
    /// `projects/PROJECT/subscriptions/NAME`.
    pub subscription: String,
    /// Present when the subscription has a dead-letter policy.
    #[serde(
        rename = "deliveryAttempt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub delivery_attempt: Option<u32>,
}

/// The message inside a push request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushMessage {
    /// Base64 of the payload.
    #[serde(default)]
    pub data: String,
    /// String attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The id given at publish.
    #[serde(rename = "messageId")]
    pub message_id: String,
    /// When it was published.
    #[serde(
        rename = "publishTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub publish_time: Option<DateTime<Utc>>,
}

/// The project name used in subscription paths of the embedded bus.
pub const LOCAL_PROJECT: &str = "local";

impl PushBody {
    /// The push request Pub/Sub would send for this delivery.
    pub fn from_delivery(delivery: &Delivery, project: &str) -> Self {
        Self {
            message: PushMessage {
                data: STANDARD.encode(&delivery.envelope.data),
                attributes: delivery.envelope.attributes.clone(),
                message_id: delivery.message_id.clone(),
                publish_time: Some(delivery.publish_time),
            },
            subscription: format!("projects/{project}/subscriptions/{}", delivery.subscription),
            delivery_attempt: Some(delivery.attempt),
        }
    }

    /// Reads a push request body.
    pub fn decode(body: &[u8]) -> Result<Delivery, String> {
        let push: PushBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let data = STANDARD
            .decode(push.message.data.as_bytes())
            .map_err(|e| format!("message data is not base64: {e}"))?;
        Ok(Delivery {
            message_id: push.message.message_id,
            envelope: Envelope {
                data,
                attributes: push.message.attributes,
            },
            attempt: push.delivery_attempt.unwrap_or(1),
            subscription: push
                .subscription
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned(),
            publish_time: push.message.publish_time.unwrap_or_else(Utc::now),
        })
    }
}

/// How a step failed, which decides whether the bus redelivers.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Worth retrying (backend down, lock held): answer non-2xx so the message comes back.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Will fail again (bad input, failed build): the step has recorded it; ack.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl From<crate::error::PortError> for StepError {
    fn from(err: crate::error::PortError) -> Self {
        let text = match std::error::Error::source(&err) {
            Some(cause) => format!("{err}: {cause}"),
            None => err.to_string(),
        };
        if err.is_transient() {
            StepError::Transient(text)
        } else {
            StepError::Permanent(text)
        }
    }
}

/// Runs `step` on the delivery in a push request body and answers as Pub/Sub expects:
/// 204 (ack) on success or permanent failure, 503 (redeliver) on transient failure, and 200
/// (ack) for a body that can never parse, since redelivering it cannot help.
pub async fn handle<F, Fut>(body: Bytes, step: F) -> Response
where
    F: FnOnce(Delivery) -> Fut,
    Fut: Future<Output = Result<(), StepError>>,
{
    let delivery = match PushBody::decode(&body) {
        Ok(d) => d,
        Err(why) => {
            tracing::error!(error = %why, "malformed push envelope acked and dropped");
            return (StatusCode::OK, "malformed push envelope: dropped").into_response();
        }
    };
    let (id, attempt) = (delivery.message_id.clone(), delivery.attempt);
    match step(delivery).await {
        Ok(()) => {
            tracing::info!(message = %id, attempt, "step done");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(StepError::Transient(why)) => {
            tracing::warn!(message = %id, attempt, error = %why, "step will be retried");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "transient failure: retry later",
            )
                .into_response()
        }
        Err(StepError::Permanent(why)) => {
            tracing::error!(message = %id, attempt, error = %why, "step failed for good");
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

/// The router of a bus-triggered function: `POST /` takes Pub/Sub pushes, decodes the
/// pipeline event and runs `step` on it with the message's trace id (answering as
/// [`handle`] does); `GET /healthz` answers `ok`.
pub fn step_router<S, F, Fut>(state: S, step: F) -> Router
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S, Event, Option<String>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), StepError>> + Send + 'static,
{
    let on_push = move |State(state): State<S>, body: Bytes| {
        let step = step.clone();
        async move {
            handle(body, |delivery| async move {
                let trace = delivery.envelope.attributes.get(ATTR_TRACE).cloned();
                match delivery.envelope.decode_event() {
                    Ok(event) => step(state, event, trace).await,
                    Err(err) => Err(StepError::Permanent(format!("unreadable event: {err}"))),
                }
            })
            .await
        }
    };
    Router::new()
        .route("/", post(on_push))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// Publishes a pipeline event on its topic, carrying the trace id on.
pub async fn emit(
    bus: &dyn crate::ports::Bus,
    event: &Event,
    trace: Option<&str>,
) -> Result<(), StepError> {
    bus.publish(&event.topic(), &Envelope::event(event, trace))
        .await?;
    Ok(())
}

/// A record a step needs: if it is gone, the step can never succeed (a permanent failure,
/// acked); other errors keep their meaning.
pub fn required<T>(found: crate::error::PortResult<T>, what: &str) -> Result<T, StepError> {
    match found {
        Ok(value) => Ok(value),
        Err(crate::error::PortError::NotFound) => {
            Err(StepError::Permanent(format!("{what} no longer exists")))
        }
        Err(err) => Err(err.into()),
    }
}

/// Ends a build as failed: the reason goes to its log (so the pusher sees it) and to the
/// build, if the build is still in `from` (a redelivery finds it moved on and changes
/// nothing). Returns the permanent error the step answers with.
pub async fn fail_build(
    store: &dyn crate::ports::Store,
    id: &crate::domain::BuildId,
    from: crate::model::BuildState,
    reason: &str,
) -> StepError {
    let record = async {
        store
            .append_build_log(id, &[format!(" !     {reason}")])
            .await?;
        let why = reason.to_owned();
        match store
            .transition_build(id, from, crate::model::BuildState::Failed, &|b| {
                b.failure = Some(why.clone())
            })
            .await
        {
            Ok(_) | Err(crate::error::PortError::Precondition) => Ok(()),
            Err(err) => Err(StepError::from(err)),
        }
    };
    match record.await {
        Ok(()) => {
            tracing::info!(build = %id, reason, "build failed");
            StepError::Permanent(reason.to_owned())
        }
        Err(err) => err,
    }
}

/// Why a build whose `git push` died with its platform ends (see
/// [`stop_if_push_gone`]).
pub const PUSH_INTERRUPTED: &str = "interrupted by a platform restart: the push's connection was lost before it was deployed, so nothing of it was deployed and the app keeps its live release; push again";

/// For a step about to work on `build` (now in `from`): when the `git push` that started it
/// is gone (its receiver died, see [`crate::locks::pusher_gone`]), the build ends as failed
/// with [`PUSH_INTERRUPTED`] and the step answers that permanent error, so that an
/// interrupted push never goes live behind its pusher's back.
pub async fn stop_if_push_gone(
    store: &dyn crate::ports::Store,
    build: &crate::model::Build,
    from: crate::model::BuildState,
) -> Result<(), StepError> {
    if crate::locks::pusher_gone(store, build).await? {
        tracing::warn!(build = %build.id, app = %build.app, "the push of this build is gone; stopping it");
        return Err(fail_build(store, &build.id, from, PUSH_INTERRUPTED).await);
    }
    Ok(())
}

/// Marks failed the releases of `build` that were made and never deployed (a push that
/// was cut off after its release was recorded).
pub async fn fail_pending_releases(
    store: &dyn crate::ports::Store,
    app: &crate::domain::AppName,
    build: &crate::domain::BuildId,
) -> Result<(), StepError> {
    use crate::model::ReleaseStatus;
    for made in store.releases(app).await? {
        if made.spec.build.as_ref() == Some(build) && made.status == ReleaseStatus::Pending {
            store
                .set_release_status(app, made.version, ReleaseStatus::Failed)
                .await?;
        }
    }
    Ok(())
}

/// The error for an event a step does not consume: acked, since it will never apply.
pub fn unexpected(step: &str, event: &Event) -> StepError {
    StepError::Permanent(format!("{step} does not handle {} events", event.kind()))
}

/// Delivers to a function's router in-process: the embedded bus's push endpoint. The
/// request is exactly what Pub/Sub would POST, so the same handler serves both.
#[derive(Clone)]
pub struct RouterEndpoint {
    router: Router,
    path: String,
}

impl RouterEndpoint {
    /// Pushes to `path` of `router`.
    pub fn new(router: Router, path: impl Into<String>) -> Self {
        Self {
            router,
            path: path.into(),
        }
    }
}

#[async_trait]
impl PushEndpoint for RouterEndpoint {
    async fn push(&self, delivery: Delivery) -> Ack {
        let body = match serde_json::to_vec(&PushBody::from_delivery(&delivery, LOCAL_PROJECT)) {
            Ok(b) => b,
            Err(_) => return Ack::Retry,
        };
        let request = Request::post(&self.path)
            .header("content-type", "application/json")
            .body(Body::from(body));
        let Ok(request) = request else {
            return Ack::Retry;
        };
        match self.router.clone().oneshot(request).await {
            Ok(resp) if resp.status().is_success() => Ack::Ack,
            _ => Ack::Retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    fn delivery() -> Delivery {
        Delivery {
            message_id: "42".into(),
            envelope: Envelope {
                data: b"{\"x\":1}".to_vec(),
                attributes: [("app".to_owned(), "my-app".to_owned())].into(),
            },
            attempt: 3,
            subscription: "release.slug-uploaded".into(),
            publish_time: Utc::now(),
        }
    }

    #[test]
    fn push_body_matches_pubsub_shape_and_round_trips() {
        let d = delivery();
        let json = serde_json::to_value(PushBody::from_delivery(&d, "proj")).expect("json");
        assert_eq!(json["message"]["data"], "eyJ4IjoxfQ==");
        assert_eq!(json["message"]["messageId"], "42");
        assert_eq!(json["message"]["attributes"]["app"], "my-app");
        assert_eq!(
            json["subscription"],
            "projects/proj/subscriptions/release.slug-uploaded"
        );
        assert_eq!(json["deliveryAttempt"], 3);
        let back = PushBody::decode(json.to_string().as_bytes()).expect("decodes");
        assert_eq!(back.envelope, d.envelope);
        assert_eq!(back.subscription, d.subscription);
        assert_eq!(back.attempt, 3);
    }

    #[test]
    fn a_real_pubsub_push_body_decodes() {
        // As documented for push subscriptions: no deliveryAttempt without a dead-letter policy.
        let body = br#"{"message":{"attributes":{"key":"value"},"data":"SGVsbG8gQ2xvdWQgUHViL1N1YiEgSGVyZSBpcyBteSBtZXNzYWdlIQ==","messageId":"2070443601311540","message_id":"2070443601311540","publishTime":"2021-02-26T19:13:55.749Z","publish_time":"2021-02-26T19:13:55.749Z"},"subscription":"projects/myproject/subscriptions/mysubscription"}"#;
        let d = PushBody::decode(body).expect("decodes");
        assert_eq!(d.envelope.data, b"Hello Cloud Pub/Sub! Here is my message!");
        assert_eq!(d.subscription, "mysubscription");
        assert_eq!(d.attempt, 1);
    }

    async fn status_of(result: Result<(), StepError>, body: &[u8]) -> StatusCode {
        let resp = handle(Bytes::copy_from_slice(body), |_| async move { result }).await;
        resp.status()
    }

    #[tokio::test]
    async fn results_map_to_ack_or_redeliver() {
        let body = serde_json::to_vec(&PushBody::from_delivery(&delivery(), "p")).expect("json");
        assert_eq!(status_of(Ok(()), &body).await, StatusCode::NO_CONTENT);
        assert_eq!(
            status_of(Err(StepError::Transient("db down".into())), &body).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(Err(StepError::Permanent("bad".into())), &body).await,
            StatusCode::NO_CONTENT
        );
        // Malformed envelopes are acked (2xx) without running the step.
        assert_eq!(
            status_of(Err(StepError::Transient("x".into())), b"{not json").await,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn router_endpoint_goes_through_the_push_handler() {
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let router = Router::new().route(
            "/",
            post(move |body: Bytes| {
                let seen = seen.clone();
                async move {
                    handle(body, |d| async move {
                        seen.fetch_add(1, Ordering::SeqCst);
                        if d.attempt < 2 {
                            Err(StepError::Transient("first time".into()))
                        } else {
                            Ok(())
                        }
                    })
                    .await
                }
            }),
        );
        let endpoint = RouterEndpoint::new(router, "/");
        let mut d = delivery();
        d.attempt = 1;
        assert_eq!(endpoint.push(d.clone()).await, Ack::Retry);
        d.attempt = 2;
        assert_eq!(endpoint.push(d).await, Ack::Ack);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
