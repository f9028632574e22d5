//! The port suites against the embedded backends, and the bus's crash durability.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use shared::contract::Guard;
use shared::embedded::{FsBlobs, SqliteBus, SqliteStore};
use shared::messages::{Delivery, Envelope, Topic};
use shared::ports::{Ack, Blobs, Bus, PushEndpoint, Store, SubscriptionSpec};

fn store() -> (Arc<dyn Store>, Guard) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("store.db")).expect("open");
    (Arc::new(store), Box::new(dir))
}

fn bus() -> (Arc<dyn Bus>, Guard) {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = SqliteBus::open(&dir.path().join("bus.db")).expect("open");
    (Arc::new(bus), Box::new(dir))
}

fn blobs() -> (Arc<dyn Blobs>, Guard) {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = FsBlobs::open(&dir.path().join("blobs")).expect("open");
    (Arc::new(blobs), Box::new(dir))
}

mod store_suite {
    use super::*;
    shared::store_contract!(store);
}

mod bus_suite {
    use super::*;
    shared::bus_contract!(bus);
}

mod blobs_suite {
    use super::*;
    shared::blobs_contract!(blobs);
}

/// Env var that turns this test binary into the process that gets killed.
const CHILD_DB: &str = "GIGALIXIR_TEST_BUS_CHILD_DB";

/// A long ack deadline, as a build's: a dead holder's lease must lapse with its heartbeat.
fn crash_spec() -> SubscriptionSpec {
    SubscriptionSpec {
        ack_deadline: Duration::from_secs(3600),
        min_backoff: Duration::from_millis(100),
        ..SubscriptionSpec::new("crash.sub", Topic::BUILD_REQUESTED)
    }
}

struct Hang;

#[async_trait]
impl PushEndpoint for Hang {
    async fn push(&self, _: Delivery) -> Ack {
        println!("in-flight");
        futures::future::pending().await
    }
}

/// Run only as the child of `a_message_survives_the_publisher_being_killed`: publishes two
/// messages, starts handling one (never finishing), says so, and waits to be killed.
#[tokio::test]
#[ignore = "helper process of a_message_survives_the_publisher_being_killed"]
async fn crash_child() {
    let Ok(db) = std::env::var(CHILD_DB) else {
        return;
    };
    let bus = Arc::new(
        SqliteBus::open(db.as_ref())
            .expect("open")
            .with_holder_ttl(Duration::from_secs(2)),
    );
    bus.ensure_subscription(&crash_spec()).await.expect("sub");
    for text in ["one", "two"] {
        let msg = Envelope {
            data: text.as_bytes().to_vec(),
            attributes: Default::default(),
        };
        bus.publish(&Topic::BUILD_REQUESTED, &msg)
            .await
            .expect("publish");
    }
    println!("published");
    let pending = futures::future::pending::<()>().boxed();
    bus.deliver("crash.sub", Arc::new(Hang), pending)
        .await
        .expect("deliver");
}

struct Collect(tokio::sync::mpsc::UnboundedSender<Delivery>);

#[async_trait]
impl PushEndpoint for Collect {
    async fn push(&self, d: Delivery) -> Ack {
        let _ = self.0.send(d);
        Ack::Ack
    }
}

/// Publish, kill the process (SIGKILL) while one message is in flight (its ack deadline an
/// hour away) and one waits, reopen the bus in this process: both messages are delivered
/// within seconds, once the dead process's heartbeat has lapsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_survives_the_publisher_being_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bus.db");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let mut seen = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        seen.push(line.clone());
        if line.contains("in-flight") {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("published")),
        "child output: {seen:?}"
    );
    child.kill().expect("SIGKILL the publisher");
    child.wait().expect("reap");

    let bus = SqliteBus::open(&db).expect("reopen");
    assert_eq!(bus.pending("crash.sub").await.expect("pending"), 2);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let shutdown = stopped.map(|_| ()).boxed();
            bus.deliver("crash.sub", Arc::new(Collect(tx)), shutdown)
                .await
        })
    };
    let mut texts = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("delivered after restart")
            .expect("open channel");
        texts.push(String::from_utf8(d.envelope.data).expect("utf8"));
    }
    texts.sort();
    assert_eq!(texts, ["one", "two"]);
    drop(stop);
    runner.await.expect("join").expect("deliver");
    assert_eq!(bus.pending("crash.sub").await.expect("pending"), 0);
}

/// A lease of a process that is alive is not taken by another process on the same file, however
/// long its delivery takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holders_lease_is_not_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bus.db");
    let ttl = Duration::from_millis(500);
    let holder = SqliteBus::open(&db).expect("open").with_holder_ttl(ttl);
    let other = SqliteBus::open(&db).expect("open").with_holder_ttl(ttl);
    holder
        .ensure_subscription(&crash_spec())
        .await
        .expect("sub");
    let msg = Envelope {
        data: b"one".to_vec(),
        attributes: Default::default(),
    };
    holder
        .publish(&Topic::BUILD_REQUESTED, &msg)
        .await
        .expect("publish");
    let (stop_holder, holder_stopped) = tokio::sync::oneshot::channel::<()>();
    let holding = tokio::spawn(async move {
        holder
            .deliver(
                "crash.sub",
                Arc::new(Hang),
                holder_stopped.map(|_| ()).boxed(),
            )
            .await
    });
    // The holder has leased it before the other starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_other, other_stopped) = tokio::sync::oneshot::channel::<()>();
    let delivering = {
        let other = other.clone();
        tokio::spawn(async move {
            other
                .deliver(
                    "crash.sub",
                    Arc::new(Collect(tx)),
                    other_stopped.map(|_| ()).boxed(),
                )
                .await
        })
    };
    let taken = tokio::time::timeout(ttl * 6, rx.recv()).await;
    assert!(taken.is_err(), "a live holder's lease was taken: {taken:?}");
    drop(stop_other);
    delivering.await.expect("join").expect("deliver");
    drop(stop_holder);
    holding.abort();
    assert_eq!(other.pending("crash.sub").await.expect("pending"), 1);
}
