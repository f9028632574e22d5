//! The bus on Google Cloud Pub/Sub (`pubsub://PROJECT`), with Google's official client
//! (`google-cloud-pubsub`). The same code talks to Pub/Sub and to its emulator: with
//! `PUBSUB_EMULATOR_HOST` set (or [`Connection::Emulator`]) it dials that host over plain
//! HTTP/2 with anonymous credentials, since the official client does not read the variable
//! itself.
//!
//! How the [`Bus`] contract maps onto Pub/Sub:
//! - `publish` sends the envelope's data with its attributes (event, app, build, trace id);
//!   a topic that does not exist yet is created first (in production Terraform creates them).
//!   Pub/Sub refuses a message with neither data nor attributes.
//! - `ensure_subscription` creates the topic, the dead-letter topic and the subscription, or
//!   updates the subscription's ack deadline, retry policy (the spec's backoffs), dead-letter
//!   policy and labels. Pub/Sub bounds some settings, so they are clamped: ack deadline to
//!   10–600 s, backoffs to at most 600 s, dead-letter attempts to 5–100. The exact ack
//!   deadline and attempt count go in the subscription's labels, for a `deliver` in another
//!   process (the emulator cannot update labels: there they are only set at creation).
//! - Push: a subscription named in [`PubSubOptions::push`] gets that URL as its push
//!   endpoint (other subscriptions are pull, and an existing push endpoint is left as it is).
//!   Pub/Sub POSTs each message there as the envelope `shared::push` decodes; a 2xx acks,
//!   anything else is redelivered after the retry policy's backoff; `deliver` returns at once.
//! - Pull: `deliver` runs a streaming-pull subscriber that calls the endpoint, at most 8
//!   messages at a time. The client extends each lease (by [`PubSubOptions::lease_extension`])
//!   while the endpoint works, up to the spec's ack deadline, which may exceed Pub/Sub's
//!   600 s; past it the delivery counts as failed. A failed delivery is nacked, and Pub/Sub
//!   redelivers it after the retry policy's backoff. On shutdown the running handlers are
//!   dropped and their messages nacked, for another subscriber to take.
//!
//! Dead letters, and where each path runs:
//! - Pulled subscriptions: the adapter. After exactly `max_attempts` failed deliveries it
//!   publishes the message to the dead-letter topic, attributes kept plus
//!   [`ATTR_DEAD_LETTER_SUBSCRIPTION`] and [`ATTR_DELIVERY_ATTEMPTS`] (as the embedded bus
//!   does), and acks it; without a dead-letter topic it logs and drops it. Attempt numbers
//!   come from Pub/Sub when the subscription has a dead-letter policy; without one Pub/Sub
//!   does not count, so the loop counts in memory (starting over in a new process).
//! - Pushed subscriptions, and pulled messages whose subscriber died: Pub/Sub's own
//!   dead-letter policy, after `max_attempts` clamped to 5–100. The message keeps its
//!   attributes and gains Pub/Sub's `CloudPubSubDeadLetterSource*` ones. Without a
//!   dead-letter topic a pushed message is retried until Pub/Sub's retention (7 days) ends.
//! - The emulator applies dead-letter policies on both paths, but its pushes carry no
//!   `deliveryAttempt` (so a pushed delivery reads as attempt 1 there) and it backs pushes
//!   off by its own growing delays, not the retry policy.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use google_cloud_auth::credentials::anonymous::Builder as Anonymous;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use google_cloud_pubsub::client::{
    BasePublisher, Publisher, Subscriber, SubscriptionAdmin, TopicAdmin,
};
use google_cloud_pubsub::error::PublishError;
use google_cloud_pubsub::model::{
    DeadLetterPolicy, Message, PushConfig, RetryPolicy, Subscription,
};
use google_cloud_pubsub::subscriber::handler::Handler;
use google_cloud_pubsub::subscriber::ShutdownBehavior;
use tokio::sync::OnceCell;
use tokio::task::JoinSet;

use crate::error::{PortError, PortResult};
use crate::messages::{Delivery, Envelope, Topic};
use crate::ports::bus::{
    Ack, Bus, PushEndpoint, SubscriptionSpec, ATTR_DEAD_LETTER_SUBSCRIPTION, ATTR_DELIVERY_ATTEMPTS,
};

/// The variable Google's tools read for the emulator's `host:port`.
pub const EMULATOR_HOST_VAR: &str = "PUBSUB_EMULATOR_HOST";

/// Bounds Pub/Sub puts on a subscription's ack deadline.
const ACK_DEADLINE_BOUNDS: (u64, u64) = (10, 600);
/// Bounds Pub/Sub puts on a dead-letter policy's delivery attempts.
const DEAD_LETTER_ATTEMPT_BOUNDS: (u32, u32) = (5, 100);
/// Longest backoff a retry policy may have.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Messages one `deliver` loop handles at once.
const CONCURRENCY: i64 = 8;
/// Pause before a pull stream that failed is opened again.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_secs(1);
/// Labels keeping the spec's exact values where Pub/Sub clamps them.
const LABEL_ACK_DEADLINE_MS: &str = "gigalixir-ack-deadline-ms";
const LABEL_MAX_ATTEMPTS: &str = "gigalixir-max-attempts";

/// Where the Pub/Sub API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Google's endpoint, with Application Default Credentials.
    Google,
    /// An emulator at `host:port`: plain HTTP/2, anonymous credentials.
    Emulator(String),
}

impl Connection {
    /// The emulator named by `PUBSUB_EMULATOR_HOST` if it is set, else Google.
    pub fn from_env() -> Self {
        match std::env::var(EMULATOR_HOST_VAR) {
            Ok(host) if !host.trim().is_empty() => Connection::Emulator(host.trim().to_owned()),
            _ => Connection::Google,
        }
    }
}

/// How to reach Pub/Sub and which subscriptions it pushes.
#[derive(Debug, Clone)]
pub struct PubSubOptions {
    /// The Google Cloud project holding the topics and subscriptions.
    pub project: String,
    /// Google or an emulator.
    pub connection: Connection,
    /// Bound on every API call, retries included: an unreachable service fails this fast.
    pub call_timeout: Duration,
    /// How far a pulled message's lease is extended at a time while it is handled (10 s to
    /// the subscription's Pub/Sub ack deadline): how soon Pub/Sub redelivers the messages
    /// of a subscriber that died.
    pub lease_extension: Duration,
    /// Subscription name → the URL Pub/Sub POSTs its messages to. Other subscriptions are
    /// pulled by `deliver` (and an existing subscription's push endpoint is left as it is).
    pub push_endpoints: BTreeMap<String, String>,
}

impl PubSubOptions {
    /// Options for `project` with a 10 s call timeout, 60 s lease extensions and no push
    /// subscription.
    pub fn new(project: impl Into<String>, connection: Connection) -> Self {
        Self {
            project: project.into(),
            connection,
            call_timeout: Duration::from_secs(10),
            lease_extension: Duration::from_secs(60),
            push_endpoints: BTreeMap::new(),
        }
    }

    /// Makes `subscription` a push subscription to `url`.
    pub fn push(mut self, subscription: impl Into<String>, url: impl Into<String>) -> Self {
        self.push_endpoints.insert(subscription.into(), url.into());
        self
    }

    /// Sets the bound on each API call.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets how far leases are extended at a time.
    pub fn lease_extension(mut self, extension: Duration) -> Self {
        self.lease_extension = extension;
        self
    }
}

/// The API clients, made on first use (making them needs a runtime; `open_bus` has none).
struct Clients {
    topics: TopicAdmin,
    subscriptions: SubscriptionAdmin,
    publisher: BasePublisher,
    subscriber: Subscriber,
}

struct Inner {
    options: PubSubOptions,
    clients: OnceCell<Clients>,
    publishers: Mutex<HashMap<Topic, Publisher>>,
    specs: Mutex<HashMap<String, SubscriptionSpec>>,
}

/// The bus on Google Cloud Pub/Sub. Cheap to clone; clones share their clients.
#[derive(Clone)]
pub struct PubSubBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PubSubBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubBus")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// What `deliver` has to do for a subscription.
enum Mode {
    /// Pub/Sub POSTs the messages itself.
    Pushed(String),
    /// The loop pulls them.
    Pulled(SubscriptionSpec),
}

impl PubSubBus {
    /// A bus on `options.project`. Nothing is dialled until the first call.
    pub fn new(options: PubSubOptions) -> PortResult<Self> {
        let project = &options.project;
        let valid = !project.is_empty()
            && project
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':'));
        if !valid {
            return Err(PortError::Invalid(format!(
                "`{project}` is not a Google Cloud project id"
            )));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                options,
                clients: OnceCell::new(),
                publishers: Mutex::new(HashMap::new()),
                specs: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// A bus on `project`, on the emulator when `PUBSUB_EMULATOR_HOST` is set.
    pub fn from_env(project: &str) -> PortResult<Self> {
        Self::new(PubSubOptions::new(project, Connection::from_env()))
    }

    fn options(&self) -> &PubSubOptions {
        &self.inner.options
    }

    fn topic_path(&self, topic: &Topic) -> String {
        format!("projects/{}/topics/{topic}", self.options().project)
    }

    fn subscription_path(&self, name: &str) -> String {
        format!("projects/{}/subscriptions/{name}", self.options().project)
    }

    async fn clients(&self) -> PortResult<&Clients> {
        self.inner
            .clients
            .get_or_try_init(|| connect(self.options()))
            .await
    }

    /// Runs one API call within the call timeout.
    async fn timed<T>(
        &self,
        call: impl Future<Output = google_cloud_pubsub::Result<T>>,
    ) -> PortResult<T> {
        match tokio::time::timeout(self.options().call_timeout, call).await {
            Ok(result) => {
                result.map_err(|err| port_error(&err).unwrap_or_else(|| unavailable(err)))
            }
            Err(elapsed) => Err(PortError::unavailable(elapsed)),
        }
    }

    async fn ensure_topic(&self, topic: &Topic) -> PortResult<()> {
        let clients = self.clients().await?;
        let call = clients
            .topics
            .create_topic()
            .set_name(self.topic_path(topic))
            .send();
        match self.timed(call).await {
            Ok(_) | Err(PortError::AlreadyExists) => Ok(()),
            Err(err) => Err(err),
        }
    }

    async fn publisher(&self, topic: &Topic) -> PortResult<Publisher> {
        let clients = self.clients().await?;
        let mut publishers = self
            .inner
            .publishers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let publisher = publishers
            .entry(topic.clone())
            .or_insert_with(|| clients.publisher.publisher(self.topic_path(topic)).build());
        Ok(publisher.clone())
    }

    async fn publish_once(&self, topic: &Topic, message: Message) -> PortResult<String> {
        let publisher = self.publisher(topic).await?;
        match tokio::time::timeout(self.options().call_timeout, publisher.publish(message)).await {
            Ok(Ok(id)) => Ok(id),
            Ok(Err(PublishError::Rpc(err))) => {
                Err(port_error(&err).unwrap_or_else(|| unavailable(PublishError::Rpc(err))))
            }
            Ok(Err(err)) => Err(unavailable(err)),
            Err(elapsed) => Err(PortError::unavailable(elapsed)),
        }
    }

    /// The subscription as Pub/Sub should hold it.
    fn desired(&self, spec: &SubscriptionSpec) -> PortResult<Subscription> {
        let labels = [
            (
                LABEL_ACK_DEADLINE_MS.to_owned(),
                spec.ack_deadline.as_millis().to_string(),
            ),
            (LABEL_MAX_ATTEMPTS.to_owned(), spec.max_attempts.to_string()),
        ];
        let max_backoff = spec.max_backoff.min(MAX_BACKOFF);
        let min_backoff = spec.min_backoff.min(max_backoff);
        let retry = RetryPolicy::new()
            .set_minimum_backoff(wkt_duration(min_backoff)?)
            .set_maximum_backoff(wkt_duration(max_backoff)?);
        let dead_letter = spec.dead_letter.as_ref().map(|topic| {
            DeadLetterPolicy::new()
                .set_dead_letter_topic(self.topic_path(topic))
                .set_max_delivery_attempts(dead_letter_attempts(spec.max_attempts))
        });
        let push = match self.options().push_endpoints.get(&spec.name) {
            Some(url) => PushConfig::new().set_push_endpoint(url.clone()),
            None => PushConfig::new(),
        };
        Ok(Subscription::new()
            .set_name(self.subscription_path(&spec.name))
            .set_topic(self.topic_path(&spec.topic))
            .set_ack_deadline_seconds(server_ack_deadline(spec.ack_deadline))
            .set_retry_policy(retry)
            .set_or_clear_dead_letter_policy(dead_letter)
            .set_push_config(push)
            .set_labels(labels))
    }

    async fn update(&self, sub: Subscription, fields: Vec<&str>) -> PortResult<Subscription> {
        let clients = self.clients().await?;
        let call = clients
            .subscriptions
            .update_subscription()
            .set_subscription(sub)
            .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(fields))
            .send();
        self.timed(call).await
    }

    /// Reads a subscription: whether Pub/Sub pushes it, else the spec to pull it with (the
    /// one this bus ensured, else the one its settings and labels describe).
    async fn mode(&self, name: &str) -> PortResult<Mode> {
        let clients = self.clients().await?;
        let call = clients
            .subscriptions
            .get_subscription()
            .set_subscription(self.subscription_path(name))
            .send();
        let found = self.timed(call).await?;
        if let Some(url) = found
            .push_config
            .as_ref()
            .map(|push| push.push_endpoint.clone())
            .filter(|url| !url.is_empty())
        {
            return Ok(Mode::Pushed(url));
        }
        let known = self
            .inner
            .specs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned();
        match known {
            Some(spec) => Ok(Mode::Pulled(spec)),
            None => spec_of(name, &found).map(Mode::Pulled),
        }
    }

    /// Moves an exhausted delivery to the dead-letter topic (or drops it) and acks it.
    async fn give_up(&self, spec: &SubscriptionSpec, delivery: &Delivery, handler: Handler) {
        let (id, attempt) = (&delivery.message_id, delivery.attempt);
        let Some(dead) = &spec.dead_letter else {
            tracing::error!(subscription = %spec.name, message = %id, attempts = attempt,
                "message dropped after its last attempt");
            handler.ack();
            return;
        };
        let mut envelope = delivery.envelope.clone();
        envelope
            .attributes
            .insert(ATTR_DEAD_LETTER_SUBSCRIPTION.to_owned(), spec.name.clone());
        envelope
            .attributes
            .insert(ATTR_DELIVERY_ATTEMPTS.to_owned(), attempt.to_string());
        match self.publish(dead, &envelope).await {
            Ok(_) => {
                tracing::warn!(subscription = %spec.name, message = %id, attempts = attempt,
                    dead_letter = %dead, "message moved to the dead-letter topic");
                handler.ack();
            }
            Err(err) => {
                // Keep the message: it comes back and the move is tried again.
                tracing::error!(subscription = %spec.name, message = %id, error = %err,
                    "could not move a message to the dead-letter topic");
                handler.nack();
            }
        }
    }
}

/// Makes the API clients, pointed at the emulator when there is one.
async fn connect(options: &PubSubOptions) -> PortResult<Clients> {
    // Bounded retries: an unreachable service must fail within the call timeout.
    let retry = || Aip194Strict.with_time_limit(options.call_timeout);
    let build_error = |err: google_cloud_gax::client_builder::Error| PortError::unavailable(err);
    let clients = match &options.connection {
        Connection::Google => Clients {
            topics: TopicAdmin::builder()
                .with_retry_policy(retry())
                .build()
                .await
                .map_err(build_error)?,
            subscriptions: SubscriptionAdmin::builder()
                .with_retry_policy(retry())
                .build()
                .await
                .map_err(build_error)?,
            publisher: BasePublisher::builder()
                .with_retry_policy(retry())
                .build()
                .await
                .map_err(build_error)?,
            subscriber: Subscriber::builder().build().await.map_err(build_error)?,
        },
        Connection::Emulator(host) => {
            let endpoint = format!("http://{host}");
            Clients {
                topics: TopicAdmin::builder()
                    .with_endpoint(&endpoint)
                    .with_credentials(Anonymous::new().build())
                    .with_retry_policy(retry())
                    .build()
                    .await
                    .map_err(build_error)?,
                subscriptions: SubscriptionAdmin::builder()
                    .with_endpoint(&endpoint)
                    .with_credentials(Anonymous::new().build())
                    .with_retry_policy(retry())
                    .build()
                    .await
                    .map_err(build_error)?,
                publisher: BasePublisher::builder()
                    .with_endpoint(&endpoint)
                    .with_credentials(Anonymous::new().build())
                    .with_retry_policy(retry())
                    .build()
                    .await
                    .map_err(build_error)?,
                subscriber: Subscriber::builder()
                    .with_endpoint(&endpoint)
                    .with_credentials(Anonymous::new().build())
                    .build()
                    .await
                    .map_err(build_error)?,
            }
        }
    };
    Ok(clients)
}

/// The port error a Pub/Sub status means; `None` when the service did not answer.
fn port_error(err: &google_cloud_pubsub::Error) -> Option<PortError> {
    let status = err.status()?;
    match status.code {
        Code::NotFound => Some(PortError::NotFound),
        Code::AlreadyExists => Some(PortError::AlreadyExists),
        Code::FailedPrecondition => Some(PortError::Precondition),
        Code::InvalidArgument | Code::OutOfRange => {
            Some(PortError::Invalid(status.message.clone()))
        }
        _ => None,
    }
}

fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> PortError {
    PortError::unavailable(err)
}

fn wkt_duration(d: Duration) -> PortResult<google_cloud_wkt::Duration> {
    google_cloud_wkt::Duration::try_from(d)
        .map_err(|err| PortError::Invalid(format!("duration {d:?}: {err}")))
}

/// The ack deadline Pub/Sub accepts for `wanted`, in seconds.
fn server_ack_deadline(wanted: Duration) -> i32 {
    let (min, max) = ACK_DEADLINE_BOUNDS;
    let secs = wanted.as_secs() + u64::from(wanted.subsec_nanos() > 0);
    // Within 10..=600, so it fits an i32.
    i32::try_from(secs.clamp(min, max)).unwrap_or(600)
}

/// The attempts a Pub/Sub dead-letter policy accepts for `wanted`.
fn dead_letter_attempts(wanted: u32) -> i32 {
    let (min, max) = DEAD_LETTER_ATTEMPT_BOUNDS;
    // Within 5..=100, so it fits an i32.
    i32::try_from(wanted.clamp(min, max)).unwrap_or(100)
}

/// The last segment of `projects/P/topics/NAME`, as a topic.
fn topic_of(path: &str) -> PortResult<Topic> {
    let name = path.rsplit('/').next().unwrap_or(path);
    Topic::parse(name).map_err(|err| PortError::Invalid(err.0))
}

/// The spec a subscription's settings and labels describe.
fn spec_of(name: &str, sub: &Subscription) -> PortResult<SubscriptionSpec> {
    let defaults = SubscriptionSpec::new(name, topic_of(&sub.topic)?);
    let label = |key: &str| sub.labels.get(key).and_then(|v| v.parse::<u64>().ok());
    let server_deadline = u64::try_from(sub.ack_deadline_seconds)
        .ok()
        .filter(|s| *s > 0);
    let ack_deadline = label(LABEL_ACK_DEADLINE_MS)
        .map(Duration::from_millis)
        .or(server_deadline.map(Duration::from_secs))
        .unwrap_or(defaults.ack_deadline);
    let policy = sub.dead_letter_policy.as_ref();
    let max_attempts = label(LABEL_MAX_ATTEMPTS)
        .and_then(|n| u32::try_from(n).ok())
        .or(policy.and_then(|p| u32::try_from(p.max_delivery_attempts).ok()))
        .filter(|n| *n > 0)
        .unwrap_or(defaults.max_attempts);
    let dead_letter = policy
        .map(|p| p.dead_letter_topic.as_str())
        .filter(|t| !t.is_empty())
        .map(topic_of)
        .transpose()?;
    let backoff =
        |d: Option<&google_cloud_wkt::Duration>| d.and_then(|d| Duration::try_from(*d).ok());
    let retry = sub.retry_policy.as_ref();
    Ok(SubscriptionSpec {
        ack_deadline,
        max_attempts,
        min_backoff: backoff(retry.and_then(|r| r.minimum_backoff.as_ref()))
            .unwrap_or(defaults.min_backoff),
        max_backoff: backoff(retry.and_then(|r| r.maximum_backoff.as_ref()))
            .unwrap_or(defaults.max_backoff),
        dead_letter,
        ..defaults
    })
}

fn publish_time(message: &Message) -> DateTime<Utc> {
    message
        .publish_time
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds(), u32::try_from(t.nanos()).ok()?))
        .unwrap_or_else(Utc::now)
}

/// Attempt counts for subscriptions Pub/Sub does not count for (no dead-letter policy):
/// kept by one `deliver` loop, so they start over in a new process.
#[derive(Default)]
struct Attempts(Mutex<HashMap<String, u32>>);

impl Attempts {
    /// Entries kept at most; past it the oldest counts are forgotten wholesale.
    const LIMIT: usize = 10_000;

    fn next(&self, id: &str) -> u32 {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.len() >= Self::LIMIT && !counts.contains_key(id) {
            counts.clear();
        }
        let n = counts.entry(id.to_owned()).or_insert(0);
        *n += 1;
        *n
    }

    fn forget(&self, id: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

/// One pulled message: hands it to the endpoint and settles it with Pub/Sub.
async fn handle(
    bus: PubSubBus,
    spec: Arc<SubscriptionSpec>,
    endpoint: Arc<dyn PushEndpoint>,
    attempts: Arc<Attempts>,
    message: Message,
    handler: Handler,
) {
    let id = message.message_id.clone();
    let attempt = handler
        .delivery_attempt()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| attempts.next(&id));
    let delivery = Delivery {
        message_id: id.clone(),
        envelope: Envelope {
            data: message.data.to_vec(),
            attributes: message.attributes.clone().into_iter().collect(),
        },
        attempt,
        subscription: spec.name.clone(),
        publish_time: publish_time(&message),
    };
    // The spec's deadline, not Pub/Sub's clamped one: the client keeps extending the lease
    // until the endpoint answers or this runs out.
    let answer =
        match tokio::time::timeout(spec.ack_deadline, endpoint.push(delivery.clone())).await {
            Ok(answer) => answer,
            Err(_) => {
                tracing::warn!(subscription = %spec.name, message = %id, attempt,
                "no answer within the ack deadline; the delivery counts as failed");
                Ack::Retry
            }
        };
    match answer {
        Ack::Ack => {
            attempts.forget(&id);
            handler.ack();
        }
        Ack::Retry if attempt < spec.max_attempts => {
            // Pub/Sub redelivers after the subscription's retry policy (its backoff).
            handler.nack();
        }
        Ack::Retry => {
            attempts.forget(&id);
            bus.give_up(&spec, &delivery, handler).await;
        }
    }
}

#[async_trait]
impl Bus for PubSubBus {
    async fn publish(&self, topic: &Topic, msg: &Envelope) -> PortResult<String> {
        let message = Message::new()
            .set_data(bytes::Bytes::from(msg.data.clone()))
            .set_attributes(msg.attributes.clone());
        match self.publish_once(topic, message.clone()).await {
            Err(PortError::NotFound) => {
                tracing::info!(topic = %topic, "creating the missing topic");
                self.ensure_topic(topic).await?;
                self.publish_once(topic, message).await
            }
            other => other,
        }
    }

    async fn ensure_subscription(&self, spec: &SubscriptionSpec) -> PortResult<()> {
        self.ensure_topic(&spec.topic).await?;
        if let Some(dead) = &spec.dead_letter {
            self.ensure_topic(dead).await?;
        }
        let desired = self.desired(spec)?;
        let clients = self.clients().await?;
        let create = clients
            .subscriptions
            .create_subscription()
            .with_request(desired.clone())
            .send();
        match self.timed(create).await {
            Ok(_) => {}
            Err(PortError::AlreadyExists) => {
                let mut fields = vec!["ack_deadline_seconds", "retry_policy", "dead_letter_policy"];
                if self.options().push_endpoints.contains_key(&spec.name) {
                    fields.push("push_config");
                }
                let topic = desired.topic.clone();
                let with_labels = [fields.clone(), vec!["labels"]].concat();
                let updated = match self.update(desired.clone(), with_labels).await {
                    // The emulator cannot update labels; Pub/Sub can. The spec is also kept
                    // in memory for this process's `deliver`.
                    Err(PortError::Invalid(why)) if why.contains("labels") => {
                        tracing::debug!(subscription = %spec.name, "labels not updated: {why}");
                        self.update(desired, fields).await?
                    }
                    other => other?,
                };
                if updated.topic != topic {
                    return Err(PortError::Invalid(format!(
                        "subscription `{}` exists on another topic ({})",
                        spec.name, updated.topic
                    )));
                }
            }
            Err(err) => return Err(err),
        }
        self.inner
            .specs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(spec.name.clone(), spec.clone());
        Ok(())
    }

    async fn deliver(
        &self,
        subscription: &str,
        endpoint: Arc<dyn PushEndpoint>,
        shutdown: BoxFuture<'static, ()>,
    ) -> PortResult<()> {
        let spec = match self.mode(subscription).await? {
            Mode::Pushed(url) => {
                tracing::info!(subscription, endpoint = %url, "Pub/Sub pushes this subscription");
                return Ok(());
            }
            Mode::Pulled(spec) => Arc::new(spec),
        };
        let clients = self.clients().await?;
        let attempts = Arc::new(Attempts::default());
        let mut shutdown = shutdown;
        // Dropping the set aborts the handlers still running; their handlers nack on drop,
        // so the messages come back to another subscriber.
        let mut running = JoinSet::new();
        // Longer than the spec's deadline, which `handle` enforces itself.
        let max_lease = spec.ack_deadline + Duration::from_secs(60);
        let server_deadline = server_ack_deadline(spec.ack_deadline);
        let extension = self.options().lease_extension.min(Duration::from_secs(
            u64::try_from(server_deadline).unwrap_or(600),
        ));
        loop {
            let mut stream = clients
                .subscriber
                .subscribe(self.subscription_path(subscription))
                .set_max_lease(max_lease)
                .set_max_lease_extension(extension)
                .set_max_outstanding_messages(CONCURRENCY)
                .set_shutdown_behavior(ShutdownBehavior::NackImmediately)
                .build();
            let failed = loop {
                tokio::select! {
                    _ = &mut shutdown => {
                        running.abort_all();
                        while running.join_next().await.is_some() {}
                        let token = stream.shutdown_token();
                        let _ = tokio::time::timeout(self.options().call_timeout, token.shutdown()).await;
                        return Ok(());
                    }
                    Some(_) = running.join_next(), if !running.is_empty() => {}
                    next = stream.next() => match next {
                        Some(Ok((message, handler))) => {
                            running.spawn(handle(
                                self.clone(),
                                spec.clone(),
                                endpoint.clone(),
                                attempts.clone(),
                                message,
                                handler,
                            ));
                        }
                        Some(Err(err)) => break Some(err),
                        None => break None,
                    }
                }
            };
            if let Some(err) = failed {
                if let Some(PortError::NotFound) = port_error(&err) {
                    return Err(PortError::NotFound);
                }
                tracing::warn!(subscription, error = %err, "pull stream failed; opening it again");
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(RESUBSCRIBE_PAUSE) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus(options: PubSubOptions) -> PubSubBus {
        PubSubBus::new(options).expect("valid options")
    }

    #[test]
    fn settings_pubsub_bounds_are_clamped() {
        assert_eq!(server_ack_deadline(Duration::from_millis(1)), 10);
        assert_eq!(server_ack_deadline(Duration::from_millis(60_500)), 61);
        assert_eq!(server_ack_deadline(Duration::from_secs(35 * 60)), 600);
        assert_eq!(dead_letter_attempts(3), 5);
        assert_eq!(dead_letter_attempts(7), 7);
        assert_eq!(dead_letter_attempts(1000), 100);
    }

    #[test]
    fn a_subscription_reads_back_as_the_spec_it_was_made_from() {
        let b = bus(PubSubOptions::new(
            "proj",
            Connection::Emulator("h:1".into()),
        ));
        let spec = SubscriptionSpec {
            ack_deadline: Duration::from_secs(35 * 60),
            max_attempts: 3,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(900),
            ..SubscriptionSpec::new("build.build-requested", Topic::BUILD_REQUESTED)
        };
        let sub = b.desired(&spec).expect("desired");
        assert_eq!(sub.ack_deadline_seconds, 600);
        assert_eq!(sub.topic, "projects/proj/topics/build-requested");
        let policy = sub.dead_letter_policy.clone().expect("dead-letter policy");
        assert_eq!(policy.dead_letter_topic, "projects/proj/topics/dead-letter");
        assert_eq!(policy.max_delivery_attempts, 5);
        let back = spec_of(&spec.name, &sub).expect("spec");
        assert_eq!(
            back,
            SubscriptionSpec {
                max_backoff: MAX_BACKOFF,
                ..spec
            }
        );
    }

    #[test]
    fn push_endpoints_come_from_the_options() {
        let b =
            bus(PubSubOptions::new("proj", Connection::Google)
                .push("upload.slug-built", "https://u/"));
        let pushed = b
            .desired(&SubscriptionSpec::new(
                "upload.slug-built",
                Topic::SLUG_BUILT,
            ))
            .expect("desired");
        let pulled = b
            .desired(&SubscriptionSpec::new(
                "build.build-requested",
                Topic::BUILD_REQUESTED,
            ))
            .expect("desired");
        let url = |s: &Subscription| s.push_config.clone().unwrap_or_default().push_endpoint;
        assert_eq!(url(&pushed), "https://u/");
        assert_eq!(url(&pulled), "");
    }

    #[test]
    fn project_ids_are_checked() {
        let err =
            PubSubBus::new(PubSubOptions::new("a/b", Connection::Google)).expect_err("refused");
        assert!(err.to_string().contains("project id"), "{err}");
    }
}
