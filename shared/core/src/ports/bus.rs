//! Durable topics with push delivery.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;

use crate::error::PortResult;
use crate::messages::{Delivery, Envelope, Topic};

/// Attribute a dead-lettered message carries: the subscription that gave up on it.
pub const ATTR_DEAD_LETTER_SUBSCRIPTION: &str = "dead_letter_subscription";
/// Attribute a dead-lettered message carries: how many deliveries were tried.
pub const ATTR_DELIVERY_ATTEMPTS: &str = "delivery_attempts";

/// A subscriber's verdict on one delivery, as Pub/Sub push reads an HTTP status: a 2xx acks,
/// anything else asks for a redelivery later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Handled (or handled before, or never handleable): forget the message.
    Ack,
    /// Not handled this time: deliver again after the backoff.
    Retry,
}

/// Where a subscription pushes its messages: in production an HTTP endpoint, in one process
/// a function's router called directly (see `push::RouterEndpoint`).
#[async_trait]
pub trait PushEndpoint: Send + Sync + 'static {
    /// Hands over one delivery and reports whether it was handled.
    async fn push(&self, delivery: Delivery) -> Ack;
}

/// How a subscription delivers: one consuming function per subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSpec {
    /// Unique subscription name (e.g. `release.slug-uploaded`).
    pub name: String,
    /// The topic it receives.
    pub topic: Topic,
    /// A delivery not answered within this time counts as failed and is redelivered, also
    /// when the subscriber died while handling it.
    pub ack_deadline: Duration,
    /// After this many failed deliveries the message goes to `dead_letter`.
    pub max_attempts: u32,
    /// Backoff after the first failure; it doubles on each one.
    pub min_backoff: Duration,
    /// Upper bound of the backoff.
    pub max_backoff: Duration,
    /// Where exhausted messages go; with `None` they are dropped (and logged).
    pub dead_letter: Option<Topic>,
    /// Deliveries handled at once by one subscriber (Pub/Sub pull: its flow control); the
    /// rest wait, in publish order where the backend keeps one.
    pub max_in_flight: u32,
}

impl SubscriptionSpec {
    /// A subscription with the platform's defaults: 60 s ack deadline, 5 attempts, backoff
    /// from 1 s to 60 s, dead letters to [`Topic::DEAD_LETTER`], 8 deliveries at once.
    pub fn new(name: impl Into<String>, topic: Topic) -> Self {
        Self {
            name: name.into(),
            topic,
            ack_deadline: Duration::from_secs(60),
            max_attempts: 5,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            dead_letter: Some(Topic::DEAD_LETTER),
            max_in_flight: 8,
        }
    }

    /// The wait before delivery attempt `failed + 1`, after `failed` failures.
    pub fn backoff(&self, failed: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed.saturating_sub(1).min(30));
        self.min_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Durable topics. Delivery is at least once and unordered: consumers must be idempotent.
///
/// Contract (checked by `contract::bus`):
/// - `publish` returns once the message is stored: it will be delivered to every
///   subscription that existed at publish time, even if this process dies right after.
/// - Messages published before a subscription exists are not delivered to it.
/// - A delivery answered [`Ack::Retry`], or not answered within the ack deadline, is
///   delivered again after the subscription's backoff, with `attempt` one higher.
/// - After `max_attempts` failed deliveries the message is published to the dead-letter
///   topic (attributes kept) and no longer delivered on the subscription.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Stores a message on a topic. Returns the id it will be delivered with.
    async fn publish(&self, topic: &Topic, msg: &Envelope) -> PortResult<String>;

    /// Creates the subscription, or updates its settings if it exists. Idempotent.
    async fn ensure_subscription(&self, spec: &SubscriptionSpec) -> PortResult<()>;

    /// Delivers the subscription's messages to `endpoint` until `shutdown` completes.
    /// Backends whose service pushes by itself (Pub/Sub push) return at once.
    async fn deliver(
        &self,
        subscription: &str,
        endpoint: Arc<dyn PushEndpoint>,
        shutdown: BoxFuture<'static, ()>,
    ) -> PortResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let spec = SubscriptionSpec::new("s", Topic::SLUG_BUILT);
        let secs: Vec<u64> = (1..=8).map(|n| spec.backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
    }
}
