//! The bus suite. Subscriptions use short deadlines and backoffs so retries show quickly.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::unique;
use crate::messages::{Delivery, Envelope, Topic};
use crate::ports::bus::{Ack, Bus, PushEndpoint, SubscriptionSpec};

/// Longest wait for an expected delivery.
const PATIENCE: Duration = Duration::from_secs(20);

type Behaviour = dyn Fn(&Delivery) -> Option<Ack> + Send + Sync;

/// Records deliveries; answers as `behaviour` says (`None`: never answer).
struct Recorder {
    seen: mpsc::UnboundedSender<Delivery>,
    behaviour: Box<Behaviour>,
}

#[async_trait]
impl PushEndpoint for Recorder {
    async fn push(&self, delivery: Delivery) -> Ack {
        let answer = (self.behaviour)(&delivery);
        let _ = self.seen.send(delivery);
        match answer {
            Some(ack) => ack,
            None => futures::future::pending().await,
        }
    }
}

/// A subscription being delivered; stops when dropped.
struct Running {
    seen: mpsc::UnboundedReceiver<Delivery>,
    _stop: oneshot::Sender<()>,
}

impl Running {
    async fn next(&mut self) -> Delivery {
        tokio::time::timeout(PATIENCE, self.seen.recv())
            .await
            .expect("a delivery within the patience window")
            .expect("delivery loop alive")
    }

    async fn none_within(&mut self, wait: Duration) {
        if let Ok(Some(d)) = tokio::time::timeout(wait, self.seen.recv()).await {
            panic!("unexpected delivery {d:?}");
        }
    }
}

fn fast(name: &str, topic: &Topic) -> SubscriptionSpec {
    SubscriptionSpec {
        ack_deadline: Duration::from_secs(10),
        max_attempts: 5,
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        dead_letter: None,
        ..SubscriptionSpec::new(name, topic.clone())
    }
}

async fn run(
    bus: &Arc<dyn Bus>,
    spec: &SubscriptionSpec,
    behaviour: impl Fn(&Delivery) -> Option<Ack> + Send + Sync + 'static,
) -> Running {
    bus.ensure_subscription(spec).await.expect("subscription");
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let endpoint = Arc::new(Recorder {
        seen: tx,
        behaviour: Box::new(behaviour),
    });
    let (bus, name) = (bus.clone(), spec.name.clone());
    tokio::spawn(async move {
        let shutdown = stopped.map(|_| ()).boxed();
        bus.deliver(&name, endpoint, shutdown)
            .await
            .expect("deliver");
    });
    Running {
        seen: rx,
        _stop: stop,
    }
}

fn message(text: &str) -> Envelope {
    Envelope {
        data: text.as_bytes().to_vec(),
        attributes: [("trace_id".to_owned(), format!("trace-{text}"))].into(),
    }
}

fn topic() -> Topic {
    Topic::parse(&unique("t")).expect("topic")
}

/// A published message reaches the subscriber whole, with its id and attempt 1.
pub async fn delivers_what_was_published(bus: Arc<dyn Bus>) {
    let t = topic();
    let spec = fast(&unique("s"), &t);
    let mut sub = run(&bus, &spec, |_| Some(Ack::Ack)).await;
    let id = bus.publish(&t, &message("hello")).await.expect("publish");
    let got = sub.next().await;
    assert_eq!(got.message_id, id);
    assert_eq!(got.envelope, message("hello"));
    assert_eq!(got.attempt, 1);
    assert_eq!(got.subscription, spec.name);
    sub.none_within(Duration::from_millis(600)).await;
}

/// Each subscription of the topic gets its own copy; earlier messages are not replayed.
pub async fn only_subscriptions_existing_at_publish_receive(bus: Arc<dyn Bus>) {
    let t = topic();
    bus.publish(&t, &message("before"))
        .await
        .expect("publish early");
    let mut a = run(&bus, &fast(&unique("a"), &t), |_| Some(Ack::Ack)).await;
    let mut b = run(&bus, &fast(&unique("b"), &t), |_| Some(Ack::Ack)).await;
    bus.publish(&t, &message("after")).await.expect("publish");
    assert_eq!(a.next().await.envelope, message("after"));
    assert_eq!(b.next().await.envelope, message("after"));
    a.none_within(Duration::from_millis(600)).await;
    b.none_within(Duration::from_millis(100)).await;
}

/// A refused delivery comes back, attempt by attempt, until it is acked.
pub async fn retries_with_backoff_until_acked(bus: Arc<dyn Bus>) {
    let t = topic();
    let spec = fast(&unique("s"), &t);
    let mut sub = run(&bus, &spec, |d| {
        Some(if d.attempt < 3 { Ack::Retry } else { Ack::Ack })
    })
    .await;
    let id = bus.publish(&t, &message("flaky")).await.expect("publish");
    let attempts: Vec<(String, u32)> = vec![sub.next().await, sub.next().await, sub.next().await]
        .into_iter()
        .map(|d| (d.message_id, d.attempt))
        .collect();
    assert_eq!(attempts, vec![(id.clone(), 1), (id.clone(), 2), (id, 3)]);
    sub.none_within(Duration::from_millis(800)).await;
}

/// A delivery left unanswered past the ack deadline is delivered again.
pub async fn unanswered_deliveries_come_back(bus: Arc<dyn Bus>) {
    let t = topic();
    let spec = SubscriptionSpec {
        ack_deadline: Duration::from_secs(1),
        ..fast(&unique("s"), &t)
    };
    let mut sub = run(&bus, &spec, |d| {
        if d.attempt == 1 {
            None
        } else {
            Some(Ack::Ack)
        }
    })
    .await;
    bus.publish(&t, &message("slow")).await.expect("publish");
    assert_eq!(sub.next().await.attempt, 1);
    assert_eq!(sub.next().await.attempt, 2);
}

/// After the last attempt the message moves to the dead-letter topic, attributes kept.
pub async fn exhausted_messages_go_to_the_dead_letter_topic(bus: Arc<dyn Bus>) {
    let (t, dead) = (topic(), topic());
    let mut dead_sub = run(&bus, &fast(&unique("dead"), &dead), |_| Some(Ack::Ack)).await;
    let spec = SubscriptionSpec {
        max_attempts: 3,
        dead_letter: Some(dead.clone()),
        ..fast(&unique("s"), &t)
    };
    let mut sub = run(&bus, &spec, |_| Some(Ack::Retry)).await;
    bus.publish(&t, &message("poison")).await.expect("publish");
    for n in 1..=3 {
        assert_eq!(sub.next().await.attempt, n);
    }
    let buried = dead_sub.next().await;
    assert_eq!(buried.envelope.data, b"poison");
    assert_eq!(buried.envelope.attributes["trace_id"], "trace-poison");
    sub.none_within(Duration::from_millis(800)).await;
}
