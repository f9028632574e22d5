//! The bus suite against the Pub/Sub emulator, and push delivery: the emulator POSTs each
//! message to a real HTTP server, which acks or asks for a redelivery by its status code.
//!
//! Needs the emulator: `scripts/emulator-pubsub start` (127.0.0.1:8681, or the `host:port`
//! in `PUBSUB_EMULATOR_HOST`). Every test uses its own project, so runs never collide.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use futures::FutureExt;
use shared::contract::{unique, Guard};
use shared::domain::{AppName, BuildId};
use shared::gcp::pubsub::{Connection, PubSubBus, PubSubOptions, EMULATOR_HOST_VAR};
use shared::messages::{
    Delivery, Envelope, Event, Topic, ATTR_APP, ATTR_BUILD, ATTR_EVENT, ATTR_TRACE,
};
use shared::ports::{Ack, Bus, PushEndpoint, SubscriptionSpec};
use shared::push::{handle, StepError};
use tokio::sync::mpsc;

const DEFAULT_HOST: &str = "127.0.0.1:8681";
/// Longest wait for an expected delivery.
const PATIENCE: Duration = Duration::from_secs(30);

/// The emulator's address; fails the test at once, naming the script, if nothing answers.
fn emulator_host() -> String {
    let host = std::env::var(EMULATOR_HOST_VAR).unwrap_or_else(|_| DEFAULT_HOST.to_owned());
    let reachable = host
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "no Pub/Sub emulator answers on {host}: start it with `scripts/emulator-pubsub start` \
         (or set {EMULATOR_HOST_VAR} to where one runs)"
    );
    host
}

fn options() -> PubSubOptions {
    // A project of its own per test: names never collide across tests or runs.
    let project = format!("test-{}", &unique("p")[2..14]);
    PubSubOptions::new(project, Connection::Emulator(emulator_host()))
        .call_timeout(Duration::from_secs(10))
}

fn bus() -> (Arc<dyn Bus>, Guard) {
    let bus = PubSubBus::new(options()).expect("bus");
    (Arc::new(bus), Box::new(()))
}

mod bus_suite {
    use super::*;
    shared::bus_contract!(bus);
}

fn topic() -> Topic {
    Topic::parse(&unique("t")).expect("topic")
}

/// How the push server answers its `n`th push (from 1).
type Answer = fn(u32) -> Result<(), StepError>;

/// An HTTP server on 127.0.0.1 taking the emulator's pushes on `POST /push` through the
/// functions' push handler: each decoded delivery is recorded, and answered 204 (ack) or
/// 503 (redeliver) as `answer` says.
async fn push_server(answer: Answer) -> (String, mpsc::UnboundedReceiver<Delivery>) {
    #[derive(Clone)]
    struct Seen {
        tx: mpsc::UnboundedSender<Delivery>,
        count: Arc<AtomicU32>,
        answer: Answer,
    }
    async fn push(State(seen): State<Seen>, body: Bytes) -> Response {
        handle(body, |delivery| async move {
            let n = seen.count.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = seen.tx.send(delivery);
            (seen.answer)(n)
        })
        .await
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/push", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = Seen {
        tx,
        count: Arc::new(AtomicU32::new(0)),
        answer,
    };
    let app = Router::new().route("/push", post(push)).with_state(seen);
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Delivery>) -> Delivery {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("a delivery within the patience window")
        .expect("server alive")
}

/// Fails the test if `deliver` is called on a push subscription's endpoint.
struct Unused;

#[async_trait]
impl PushEndpoint for Unused {
    async fn push(&self, d: Delivery) -> Ack {
        panic!("a pushed subscription was also pulled: {d:?}");
    }
}

fn push_spec(name: &str, topic: &Topic, dead: &Topic) -> SubscriptionSpec {
    SubscriptionSpec {
        ack_deadline: Duration::from_secs(10),
        max_attempts: 5,
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        dead_letter: Some(dead.clone()),
        ..SubscriptionSpec::new(name, topic.clone())
    }
}

/// A pipeline event published on a push subscription reaches the HTTP endpoint as Pub/Sub's
/// push envelope, attributes and all; a 503 brings it back with the next attempt number, a
/// 204 acks it for good. `deliver` has nothing to do for a pushed subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulator_pushes_events_to_http_and_redelivers_after_a_non_2xx() {
    let (url, mut pushed) = push_server(|n| {
        if n < 2 {
            Err(StepError::Transient("not yet".into()))
        } else {
            Ok(())
        }
    })
    .await;
    let (t, dead) = (topic(), topic());
    let name = unique("push");
    let bus = PubSubBus::new(options().push(&name, &url)).expect("bus");
    bus.ensure_subscription(&push_spec(&name, &t, &dead))
        .await
        .expect("subscription");
    // Ensuring again changes nothing.
    bus.ensure_subscription(&push_spec(&name, &t, &dead))
        .await
        .expect("subscription again");
    tokio::time::timeout(
        PATIENCE,
        bus.deliver(&name, Arc::new(Unused), futures::future::pending().boxed()),
    )
    .await
    .expect("deliver returns at once for a pushed subscription")
    .expect("deliver");

    let event = Event::BuildRequested {
        app: AppName::parse("my-app").expect("app"),
        build: BuildId("b-1".into()),
    };
    let envelope = Envelope::event(&event, Some("trace-7"));
    let id = bus.publish(&t, &envelope).await.expect("publish");

    let first = next(&mut pushed).await;
    assert_eq!(first.message_id, id);
    assert_eq!(first.subscription, name);
    assert_eq!(first.attempt, 1);
    assert_eq!(first.envelope, envelope);
    assert_eq!(first.envelope.decode_event().expect("event"), event);
    let attrs = &first.envelope.attributes;
    assert_eq!(attrs[ATTR_EVENT], "build-requested");
    assert_eq!(attrs[ATTR_APP], "my-app");
    assert_eq!(attrs[ATTR_BUILD], "b-1");
    assert_eq!(attrs[ATTR_TRACE], "trace-7");

    // Pub/Sub numbers the attempt in the push (`deliveryAttempt`, with a dead-letter policy);
    // the emulator leaves it out, so only the message itself is compared.
    let second = next(&mut pushed).await;
    assert_eq!(second.message_id, id);
    assert_eq!(second.envelope, envelope);
    // Acked by the 204: not pushed again.
    if let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(3), pushed.recv()).await {
        panic!("delivered again after a 204: {d:?}");
    }
}

struct Collect(mpsc::UnboundedSender<Delivery>);

#[async_trait]
impl PushEndpoint for Collect {
    async fn push(&self, d: Delivery) -> Ack {
        let _ = self.0.send(d);
        Ack::Ack
    }
}

/// A pushed message refused on every attempt goes, after the last one, to the dead-letter
/// topic (Pub/Sub's own dead-letter policy), its attributes kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_message_refused_every_time_is_dead_lettered() {
    let (url, mut pushed) = push_server(|_| Err(StepError::Transient("down".into()))).await;
    let (t, dead) = (topic(), topic());
    let (name, dead_name) = (unique("push"), unique("dead"));
    let bus = PubSubBus::new(options().push(&name, &url)).expect("bus");
    let dead_spec = SubscriptionSpec {
        dead_letter: None,
        ..SubscriptionSpec::new(&dead_name, dead.clone())
    };
    bus.ensure_subscription(&dead_spec).await.expect("dead sub");
    bus.ensure_subscription(&push_spec(&name, &t, &dead))
        .await
        .expect("subscription");
    let (tx, mut buried) = mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = {
        let bus = bus.clone();
        tokio::spawn(async move {
            bus.deliver(
                &dead_name,
                Arc::new(Collect(tx)),
                stopped.map(|_| ()).boxed(),
            )
            .await
        })
    };

    let envelope = Envelope {
        data: b"poison".to_vec(),
        attributes: [(ATTR_TRACE.to_owned(), "trace-poison".to_owned())].into(),
    };
    let id = bus.publish(&t, &envelope).await.expect("publish");
    // Refused, then pushed again (the emulator's push backoff is its own, growing to
    // seconds), until Pub/Sub gives up after the policy's attempts.
    for _ in 1..=2 {
        assert_eq!(next(&mut pushed).await.message_id, id);
    }
    let d = tokio::time::timeout(Duration::from_secs(60), buried.recv())
        .await
        .expect("dead-lettered within a minute")
        .expect("subscriber alive");
    assert_eq!(d.envelope.data, b"poison");
    assert_eq!(d.envelope.attributes[ATTR_TRACE], "trace-poison");
    assert_eq!(
        d.envelope.attributes["CloudPubSubDeadLetterSourceSubscription"],
        name
    );
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(200), pushed.recv()).await {
        assert_eq!(d.message_id, id, "only the poison message was pushed");
    }
    if let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(3), pushed.recv()).await {
        panic!("pushed again after being dead-lettered: {d:?}");
    }
    drop(stop);
    runner.await.expect("join").expect("deliver");
}

/// With nothing listening, a call fails as "unavailable" (worth retrying), within the
/// call timeout rather than hanging.
#[tokio::test]
async fn an_unreachable_pubsub_is_reported_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let bus = PubSubBus::new(
        PubSubOptions::new("nowhere", Connection::Emulator(format!("127.0.0.1:{port}")))
            .call_timeout(Duration::from_secs(3)),
    )
    .expect("bus");
    let sent = tokio::time::timeout(
        PATIENCE,
        bus.publish(&Topic::BUILD_REQUESTED, &Envelope::default()),
    )
    .await
    .expect("the call gives up by itself");
    let err = sent.expect_err("nothing to publish to");
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.to_string(), "backend unavailable");
}

/// Takes `hold` to answer each delivery, then acks it.
struct Slow {
    seen: mpsc::UnboundedSender<Delivery>,
    hold: Duration,
}

#[async_trait]
impl PushEndpoint for Slow {
    async fn push(&self, d: Delivery) -> Ack {
        let _ = self.seen.send(d);
        tokio::time::sleep(self.hold).await;
        Ack::Ack
    }
}

/// A pulled message whose handling outlasts its lease, but not the subscription's ack
/// deadline, has its lease extended and is delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_keeps_its_lease_past_pubsubs_minimum() {
    // Leases of 10 s, extended by the client while the handler works for 14 s.
    let bus =
        Arc::new(PubSubBus::new(options().lease_extension(Duration::from_secs(10))).expect("bus"));
    let t = topic();
    let spec = SubscriptionSpec {
        ack_deadline: Duration::from_secs(25),
        dead_letter: None,
        ..SubscriptionSpec::new(unique("slow"), t.clone())
    };
    bus.ensure_subscription(&spec).await.expect("subscription");
    let (tx, mut seen) = mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = {
        let (bus, name) = (bus.clone(), spec.name.clone());
        let endpoint = Arc::new(Slow {
            seen: tx,
            hold: Duration::from_secs(14),
        });
        tokio::spawn(async move {
            bus.deliver(&name, endpoint, stopped.map(|_| ()).boxed())
                .await
        })
    };
    let slow = Envelope {
        data: b"slow".to_vec(),
        attributes: Default::default(),
    };
    let id = bus.publish(&t, &slow).await.expect("publish");
    let first = next(&mut seen).await;
    assert_eq!((first.message_id.as_str(), first.attempt), (id.as_str(), 1));
    if let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(18), seen.recv()).await {
        panic!("redelivered while still being handled: {d:?}");
    }
    drop(stop);
    runner.await.expect("join").expect("deliver");
}
