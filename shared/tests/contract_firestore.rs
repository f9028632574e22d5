//! The store suite against the Firestore emulator, plus what only a shared, remote store
//! shows: concurrent writers racing for the same records.
//!
//! Needs the emulator: `scripts/emulator-firestore start` (it listens on 127.0.0.1:8682;
//! `FIRESTORE_EMULATOR_HOST` points elsewhere). Each test uses a project of its own, so runs
//! never see each other's data and need no cleanup.

use std::collections::BTreeSet;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Once};
use std::time::Duration;

use chrono::Utc;
use shared::contract::{unique, Guard};
use shared::domain::{AppName, BuildId, Secret, UserId};
use shared::gcp::firestore::{FirestoreStore, CHUNK_LINES, EMULATOR_HOST_ENV};
use shared::model::{App, Build, BuildFlags, BuildState, NewRelease, SlugRef};
use shared::ports::Store;
use shared::PortError;

const DEFAULT_HOST: &str = "127.0.0.1:8682";

/// The emulator's address; fails the test at once, naming the script, if nothing answers.
fn emulator() -> String {
    static SET: Once = Once::new();
    SET.call_once(|| {
        if std::env::var(EMULATOR_HOST_ENV).map_or(true, |h| h.is_empty()) {
            // Before any client exists: the client reads it when it connects.
            std::env::set_var(EMULATOR_HOST_ENV, DEFAULT_HOST);
        }
    });
    let host = std::env::var(EMULATOR_HOST_ENV).expect("emulator host is set");
    let reachable = host
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    assert!(
        reachable,
        "no Firestore emulator answers on {host} ({EMULATOR_HOST_ENV}); \
         start it with `scripts/emulator-firestore start`"
    );
    host
}

fn store() -> (Arc<dyn Store>, Guard) {
    (Arc::new(firestore()), Box::new(()))
}

fn firestore() -> FirestoreStore {
    emulator();
    FirestoreStore::new(&unique("contract"), None).expect("project id")
}

mod store_suite {
    use super::*;
    shared::store_contract!(store);
}

fn app(owner: &UserId) -> App {
    App {
        name: AppName::parse(&unique("app")).expect("name"),
        owner: owner.clone(),
        created_at: Utc::now(),
        health: Default::default(),
        webhook_secret: None,
        maintenance: false,
        canary: None,
        databases: Vec::new(),
        drains: Vec::new(),
        erlang_cookie: Secret::new("cookie"),
        secret_key_base: Secret::new("skb"),
        replicas: 1,
        size: 0.5,
        stack: None,
        config: Default::default(),
    }
}

fn new_release(key: &str) -> NewRelease {
    NewRelease {
        rollback_to: None,
        idempotency_key: key.into(),
        slug: SlugRef {
            process_types: None,
            stack: None,
            key: format!("slugs/{key}"),
            sha256: "0".repeat(64),
            size: 1,
        },
        config: Default::default(),
        commit: None,
        build: None,
        summary: format!("Deploy {key}"),
    }
}

fn build(app: &AppName) -> Build {
    Build {
        id: BuildId::random(),
        app: app.clone(),
        commit: "a".repeat(40),
        branch: "master".into(),
        flags: BuildFlags::default(),
        state: BuildState::Requested,
        failure: None,
        slug: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        stack: None,
        history: Vec::new(),
        pusher: None,
    }
}

/// Releases made at the same time, some with the same key, get versions 1..=N with no gap
/// and no duplicate, each rolling back to the one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_releases_number_without_gaps() {
    let store = Arc::new(firestore());
    let a = app(&UserId::random());
    store.create_app(&a).await.expect("app");
    let keys: Vec<String> = (0..6).map(|i| format!("build-{}", i % 4)).collect();
    let tasks: Vec<_> = keys
        .iter()
        .map(|key| {
            let (store, name, spec) = (store.clone(), a.name.clone(), new_release(key));
            tokio::spawn(async move { store.create_next_release(&name, &spec).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("join").expect("release");
    }
    let releases = store.releases(&a.name).await.expect("list");
    let versions: Vec<u32> = releases.iter().map(|r| r.version.0).collect();
    assert_eq!(versions, vec![4, 3, 2, 1], "one release per distinct key");
    let distinct: BTreeSet<&str> = releases
        .iter()
        .map(|r| r.spec.idempotency_key.as_str())
        .collect();
    assert_eq!(distinct.len(), 4);
    for r in &releases {
        let before = (r.version.0 > 1).then(|| r.version.0 - 1);
        assert_eq!(r.rollback_id.map(|v| v.0), before);
    }
}

/// Appends racing on one build keep every line, numbered 1..=N without gaps, each append's
/// lines together and in order; reading from the middle of a chunk works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_keep_every_line_in_order() {
    let store = Arc::new(firestore());
    let id = BuildId::random();
    let writers = 4;
    let per = 3;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                let lines: Vec<String> = (0..per).map(|i| format!("w{w} line {i}")).collect();
                store.append_build_log(&id, &lines).await
            })
        })
        .collect();
    let mut lasts = Vec::new();
    for task in tasks {
        lasts.push(task.await.expect("join").expect("append"));
    }
    lasts.sort();
    assert_eq!(lasts, (1..=writers).map(|n| n * per).collect::<Vec<u64>>());
    let all = store.build_log(&id, 0, 1000).await.expect("read");
    let numbers: Vec<u64> = all.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (1..=writers * per).collect::<Vec<u64>>());
    for group in all.chunks(per as usize) {
        let writer = &group[0].1[..2];
        let expected: Vec<String> = (0..per).map(|i| format!("{writer} line {i}")).collect();
        let got: Vec<String> = group.iter().map(|(_, l)| l.clone()).collect();
        assert_eq!(got, expected);
    }
    assert_eq!(
        store.build_log(&id, 4, 2).await.expect("middle"),
        vec![(5, all[4].1.clone()), (6, all[5].1.clone())]
    );
}

/// An append larger than one chunk document reads back whole, from any point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_appends_span_several_documents() {
    let store = firestore();
    let id = BuildId::random();
    let lines: Vec<String> = (1..=CHUNK_LINES * 2 + 10)
        .map(|i| format!("line {i}"))
        .collect();
    let last = store.append_build_log(&id, &lines).await.expect("append");
    assert_eq!(last, lines.len() as u64);
    let all = store.build_log(&id, 0, usize::MAX).await.expect("all");
    assert_eq!(all.len(), lines.len());
    assert!(all.iter().all(|(n, l)| *l == format!("line {n}")));
    let across = store
        .build_log(&id, CHUNK_LINES as u64 - 2, 4)
        .await
        .expect("across a chunk boundary");
    let numbers: Vec<u64> = across.iter().map(|(n, _)| *n).collect();
    let from = CHUNK_LINES as u64 - 1;
    assert_eq!(numbers, (from..from + 4).collect::<Vec<u64>>());
    assert_eq!(
        store.append_build_log(&id, &[]).await.expect("nothing"),
        last
    );
}

/// Of many holders racing for a free lock, exactly one gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_racing_holders_takes_a_lock() {
    let store = Arc::new(firestore());
    let name = unique("lock");
    let tasks: Vec<_> = (0..5)
        .map(|h| {
            let (store, name) = (store.clone(), name.clone());
            tokio::spawn(async move {
                store
                    .try_lock(&name, &format!("holder-{h}"), Duration::from_secs(60))
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(_) => won += 1,
            Err(PortError::Precondition) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(won, 1);
}

/// A build moved by two steps at once moves once; the other sees `Precondition`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_transitions_move_a_build_once() {
    let store = Arc::new(firestore());
    let b = build(&AppName::parse(&unique("app")).expect("name"));
    store.create_build(&b).await.expect("build");
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let (store, id) = (store.clone(), b.id.clone());
            tokio::spawn(async move {
                store
                    .transition_build(
                        &id,
                        BuildState::Requested,
                        BuildState::Building,
                        &move |b| b.failure = Some(format!("step {i}")),
                    )
                    .await
            })
        })
        .collect();
    let mut moved = Vec::new();
    for task in tasks {
        match task.await.expect("join") {
            Ok(build) => moved.push(build),
            Err(PortError::Precondition) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(moved.len(), 1);
    let stored = store.build(&b.id).await.expect("get");
    assert_eq!(stored.history.len(), 1);
    assert_eq!(stored.failure, moved[0].failure);
}

/// Keys with characters document ids cannot hold (`/` in an SSH fingerprint, in a lock
/// name) work like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_slashes_are_kept_apart() {
    let store = firestore();
    let user = UserId::random();
    let key = |fp: &str| shared::model::SshKey {
        id: unique("key"),
        user: user.clone(),
        key: format!("ssh-ed25519 AAAA{fp} laptop"),
        fingerprint: fp.into(),
        created_at: Utc::now(),
    };
    store.add_ssh_key(&key("SHA256:a/b")).await.expect("a/b");
    store
        .add_ssh_key(&key("SHA256:a%2Fb"))
        .await
        .expect("a%2Fb");
    assert!(matches!(
        store.add_ssh_key(&key("SHA256:a/b")).await,
        Err(PortError::AlreadyExists)
    ));
    assert_eq!(store.ssh_keys(&user).await.expect("list").len(), 2);
    store
        .try_lock("app/x", "a", Duration::from_secs(60))
        .await
        .expect("app/x");
    store
        .try_lock("app%2Fx", "b", Duration::from_secs(60))
        .await
        .expect("another lock");
}
