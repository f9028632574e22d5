//! The deploy step's handler on the embedded store, bus and blobs, with an in-memory
//! runtime (`shared::fakes`): a release goes live once however often it is announced; a
//! release that fails to start is recorded and announced; a runtime out of reach is
//! retried; a release that does not exist is not.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use gigalixir_deploy::{deploy, StepState};
use shared::domain::{AppName, Fqdn, ReleaseVersion, Secret};
use shared::embedded::{FsBlobs, SqliteBus, SqliteStore};
use shared::fakes::{seed_app, FakeRuntime};
use shared::messages::Topic;
use shared::model::{CustomDomain, DeployedBy, NewRelease, ReleaseStatus, SlugRef};
use shared::ports::runtime::{DeployOutcome, PhaseOutcome};
use shared::ports::{Bus, Store, SubscriptionSpec};
use shared::push::StepError;
use shared::PortError;

const SUCCEEDED: &str = "test.deploy-succeeded";
const FAILED: &str = "test.deploy-failed";

struct World {
    store: Arc<SqliteStore>,
    bus: Arc<SqliteBus>,
    blobs: Arc<FsBlobs>,
    runtime: Arc<FakeRuntime>,
    app: AppName,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("store"));
        let bus = Arc::new(SqliteBus::open(&dir.path().join("bus.db")).expect("bus"));
        let blobs = Arc::new(FsBlobs::open(&dir.path().join("blobs")).expect("blobs"));
        for (name, topic) in [
            (SUCCEEDED, Topic::DEPLOY_SUCCEEDED),
            (FAILED, Topic::DEPLOY_FAILED),
        ] {
            bus.ensure_subscription(&SubscriptionSpec::new(name, topic))
                .await
                .expect("watch");
        }
        let mut app = seed_app(&*store, "my-app").await;
        app.replicas = 2;
        store.update_app(&app).await.expect("two replicas");
        let app = app.name;
        Self {
            store,
            bus,
            blobs,
            runtime: Arc::new(FakeRuntime::default()),
            app,
            _dir: dir,
        }
    }

    fn state(&self) -> StepState {
        StepState {
            store: self.store.clone(),
            bus: self.bus.clone(),
            runtime: self.runtime.clone(),
            blobs: self.blobs.clone(),
            boot_timeout: Duration::from_secs(5),
            app_domain: "apps.example.com".into(),
        }
    }

    /// A pending release made by a config change (no build).
    /// A pending release of a slug of its own (named after `key`).
    async fn release(&self, key: &str) -> ReleaseVersion {
        let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        self.release_of(key, &hex.repeat(64).chars().take(64).collect::<String>())
            .await
    }

    /// A pending release of the slug whose sha256 is `sha` repeated.
    async fn release_of(&self, key: &str, sha: &str) -> ReleaseVersion {
        self.release_with(key, sha, &["web"]).await
    }

    /// A pending release of a slug whose Procfile has `types`.
    async fn release_with(&self, key: &str, sha: &str, types: &[&str]) -> ReleaseVersion {
        let sha256 = sha.repeat(64 / sha.len().min(64));
        let spec = NewRelease {
            idempotency_key: key.into(),
            slug: SlugRef {
                key: shared::blob_keys::slug(&sha256),
                sha256,
                size: 10,
                process_types: Some(types.iter().map(|t| (*t).to_owned()).collect()),
                stack: None,
            },
            config: [("FOO".to_owned(), Secret::new("bar"))].into(),
            commit: None,
            build: None,
            summary: "Set FOO".into(),
            rollback_to: None,
        };
        self.store
            .create_next_release(&self.app, &spec)
            .await
            .expect("release")
            .version
    }

    async fn status(&self, version: ReleaseVersion) -> ReleaseStatus {
        self.store
            .release(&self.app, version)
            .await
            .expect("release")
            .status
    }

    async fn pending(&self, sub: &str) -> u64 {
        self.bus.pending(sub).await.expect("pending")
    }
}

#[tokio::test]
async fn a_release_goes_live_once_however_often_it_is_announced() {
    let w = World::new().await;
    let fqdn = Fqdn::parse("shop.example.com").expect("fqdn");
    w.store
        .add_domain(&CustomDomain {
            fqdn: fqdn.clone(),
            app: w.app.clone(),
            created_at: Utc::now(),
        })
        .await
        .expect("domain");
    let v1 = w.release("k1").await;
    for _ in 0..2 {
        deploy(&w.state(), &w.app, v1, Some("trace"))
            .await
            .expect("deploy");
    }
    let deploys = w.runtime.deploys();
    assert_eq!(deploys.len(), 1, "the second announcement finds it live");
    let spec = &deploys[0];
    assert_eq!((spec.version, spec.replicas), (v1, 2));
    assert_eq!(spec.env["FOO"].expose(), "bar");
    assert_eq!(spec.env["PHX_HOST"].expose(), "my-app.apps.example.com");
    assert_eq!(spec.memory_bytes, 1 << 29);
    assert_eq!(w.status(v1).await, ReleaseStatus::Deployed);
    assert_eq!(w.pending(SUCCEEDED).await, 1);
    // the runtime answers on the app's custom domains too
    assert_eq!(w.runtime.domains(&w.app), [fqdn]);

    // the next release supersedes it
    let v2 = w.release("k2").await;
    deploy(&w.state(), &w.app, v2, None).await.expect("v2");
    assert_eq!(w.status(v1).await, ReleaseStatus::Superseded);
    assert_eq!(w.status(v2).await, ReleaseStatus::Deployed);
}

#[tokio::test]
async fn a_release_of_the_live_slug_and_config_is_adopted_by_its_replicas() {
    let w = World::new().await;
    let v1 = w.release_of("k1", "ab").await;
    deploy(&w.state(), &w.app, v1, None).await.expect("v1");
    let v2 = w.release_of("k2", "ab").await;
    deploy(&w.state(), &w.app, v2, None).await.expect("v2");
    assert_eq!(w.runtime.deploys().len(), 1, "v2 started replicas");
    let adopted = w.runtime.adopted();
    assert_eq!(adopted.len(), 1);
    assert_eq!(adopted[0].version, v2);
    assert_eq!(w.status(v1).await, ReleaseStatus::Superseded);
    let live = w.store.release(&w.app, v2).await.expect("v2");
    assert_eq!(
        (live.status, live.deployed_by),
        (ReleaseStatus::Deployed, Some(DeployedBy::Kept))
    );
    // another slug deploys new replicas
    let v3 = w.release_of("k3", "cd").await;
    deploy(&w.state(), &w.app, v3, None).await.expect("v3");
    assert_eq!(w.runtime.deploys().len(), 2);
}

#[tokio::test]
async fn a_release_that_fails_to_start_is_recorded_and_the_previous_one_stays() {
    let w = World::new().await;
    let v1 = w.release("k1").await;
    deploy(&w.state(), &w.app, v1, None).await.expect("v1");
    let v2 = w.release("k2").await;
    w.runtime.next_deploys(Ok(DeployOutcome::Failed {
        reason: "exited with code 1".into(),
        output: vec!["** (RuntimeError) boom".into()],
    }));
    deploy(&w.state(), &w.app, v2, None).await.expect("handled");
    assert_eq!(w.status(v2).await, ReleaseStatus::Failed);
    assert_eq!(w.status(v1).await, ReleaseStatus::Deployed);
    assert_eq!(w.pending(FAILED).await, 1);
}

#[tokio::test]
async fn a_runtime_out_of_reach_is_retried_and_records_nothing() {
    let w = World::new().await;
    let v1 = w.release("k1").await;
    w.runtime
        .next_deploys(Err(PortError::unavailable("the engine is restarting")));
    let err = deploy(&w.state(), &w.app, v1, None)
        .await
        .expect_err("transient");
    assert!(matches!(err, StepError::Transient(_)), "{err}");
    assert_eq!(w.status(v1).await, ReleaseStatus::Pending);
    assert_eq!(w.pending(SUCCEEDED).await + w.pending(FAILED).await, 0);
    // the redelivery finds the runtime back
    w.runtime.next_deploys(Ok(DeployOutcome::Healthy));
    deploy(&w.state(), &w.app, v1, None).await.expect("retried");
    assert_eq!(w.status(v1).await, ReleaseStatus::Deployed);
}

#[tokio::test]
async fn a_release_that_does_not_exist_is_not_retried() {
    let w = World::new().await;
    let err = deploy(&w.state(), &w.app, ReleaseVersion(7), None)
        .await
        .expect_err("no v7");
    assert!(matches!(err, StepError::Permanent(_)), "{err}");
    assert!(w.runtime.deploys().is_empty());
}

#[tokio::test]
async fn a_release_announced_after_a_newer_one_went_live_is_superseded() {
    let w = World::new().await;
    let v1 = w.release_of("k1", "ab").await;
    let v2 = w.release_of("k2", "ab").await;
    // v2's announcement comes first
    deploy(&w.state(), &w.app, v2, None).await.expect("v2");
    deploy(&w.state(), &w.app, v1, None).await.expect("v1 late");
    let deployed: Vec<ReleaseVersion> = w.runtime.deploys().iter().map(|d| d.version).collect();
    assert_eq!(deployed, [v2], "the app is not taken back to v1");
    assert_eq!(w.status(v1).await, ReleaseStatus::Superseded);
    assert_eq!(w.status(v2).await, ReleaseStatus::Deployed);
    // v1 runs the same slug as v2 (a config change after it): announced as live
    assert_eq!(w.pending(SUCCEEDED).await, 2);
    assert_eq!(w.pending(FAILED).await, 0);
}

#[tokio::test]
async fn a_late_release_of_another_slug_fails_and_says_why() {
    let w = World::new().await;
    let v1 = w.release_of("k1", "11").await;
    let v2 = w.release_of("k2", "22").await;
    deploy(&w.state(), &w.app, v2, None).await.expect("v2");
    deploy(&w.state(), &w.app, v1, None).await.expect("v1 late");
    assert_eq!(w.runtime.deploys().len(), 1);
    assert_eq!(w.status(v1).await, ReleaseStatus::Superseded);
    assert_eq!(
        (w.pending(SUCCEEDED).await, w.pending(FAILED).await),
        (1, 1)
    );
}

#[tokio::test]
async fn a_release_phase_runs_once_per_release_before_its_replicas() {
    let w = World::new().await;
    let v1 = w.release_with("k1", "11", &["web", "release"]).await;
    for _ in 0..2 {
        deploy(&w.state(), &w.app, v1, None).await.expect("deploy");
    }
    let phases: Vec<ReleaseVersion> = w
        .runtime
        .release_phases()
        .iter()
        .map(|p| p.version)
        .collect();
    assert_eq!(phases, [v1], "not again for the redelivery");
    assert_eq!(w.runtime.deploys().len(), 1);
    assert_eq!(w.status(v1).await, ReleaseStatus::Deployed);
    // a slug whose Procfile has no release: command needs none
    let v2 = w.release_with("k2", "22", &["web"]).await;
    deploy(&w.state(), &w.app, v2, None).await.expect("v2");
    assert_eq!(w.runtime.release_phases().len(), 1);
    assert_eq!(w.status(v2).await, ReleaseStatus::Deployed);
}

#[tokio::test]
async fn a_failed_release_phase_starts_no_replica_and_the_previous_release_stays() {
    let w = World::new().await;
    let v1 = w.release("k1").await;
    deploy(&w.state(), &w.app, v1, None).await.expect("v1");
    let v2 = w.release_with("k2", "22", &["web", "release"]).await;
    w.runtime.next_release_phases(PhaseOutcome::Failed {
        reason: "the release phase (the Procfile's release: command) exited with code 1".into(),
        output: vec!["** (Postgrex.Error) relation \"users\" does not exist".into()],
    });
    deploy(&w.state(), &w.app, v2, None).await.expect("handled");
    let deployed: Vec<ReleaseVersion> = w.runtime.deploys().iter().map(|d| d.version).collect();
    assert_eq!(deployed, [v1], "v2 never started");
    assert_eq!(w.status(v2).await, ReleaseStatus::Failed);
    assert_eq!(w.status(v1).await, ReleaseStatus::Deployed);
    assert_eq!(w.pending(FAILED).await, 1);
    // out of reach: retried, nothing recorded
    let v3 = w.release_with("k3", "33", &["web", "release"]).await;
    w.runtime
        .next_deploys(Err(PortError::unavailable("the engine is restarting")));
    let err = deploy(&w.state(), &w.app, v3, None)
        .await
        .expect_err("transient");
    assert!(matches!(err, StepError::Transient(_)), "{err}");
    assert_eq!(w.status(v3).await, ReleaseStatus::Pending);
}

#[tokio::test]
async fn a_release_carries_maintenance_and_only_a_canary_of_the_same_owner() {
    let w = World::new().await;
    w.bus
        .ensure_subscription(&SubscriptionSpec::new(
            "test.domains-changed",
            Topic::DOMAINS_CHANGED,
        ))
        .await
        .expect("watch");
    let mut app = w.store.app(&w.app).await.expect("app");
    // Another app of Ada's, and one of Bob's.
    let green = shared::model::App {
        name: AppName::parse("green").expect("name"),
        canary: None,
        ..app.clone()
    };
    w.store.create_app(&green).await.expect("green");
    let bob = shared::model::User {
        confirmed: true,
        ..shared::model::User::new(
            shared::domain::Email::parse("bob@example.com").expect("email"),
            Secret::new("y"),
        )
    };
    w.store.create_user(&bob).await.expect("bob");
    let bobs = shared::model::App {
        name: AppName::parse("bobs").expect("name"),
        owner: bob.id.clone(),
        ..green.clone()
    };
    w.store.create_app(&bobs).await.expect("bob's app");

    app.maintenance = true;
    app.canary = Some(shared::model::Canary {
        app: green.name.clone(),
        weight: 10,
    });
    w.store.update_app(&app).await.expect("update");
    let v1 = w.release("k1").await;
    deploy(&w.state(), &w.app, v1, None).await.expect("deploy");
    let want = shared::ports::runtime::Traffic {
        maintenance: true,
        canary: app.canary.clone(),
        serves: Vec::new(),
    };
    assert_eq!(w.runtime.deploys()[0].traffic, want);
    assert_eq!(w.runtime.traffic(&w.app), want);

    // A canary that is another owner's (a stale record) gets nothing.
    app.maintenance = false;
    app.canary = Some(shared::model::Canary {
        app: bobs.name.clone(),
        weight: 50,
    });
    w.store.update_app(&app).await.expect("update");
    let v2 = w.release("k2").await;
    deploy(&w.state(), &w.app, v2, None).await.expect("deploy");
    assert_eq!(
        w.runtime.deploys()[1].traffic,
        shared::ports::runtime::Traffic::default()
    );
    assert_eq!(
        w.runtime.traffic(&w.app),
        shared::ports::runtime::Traffic::default()
    );

    // A deploy of the canary announces the routes of the apps it is the canary of.
    app.canary = Some(shared::model::Canary {
        app: green.name.clone(),
        weight: 10,
    });
    w.store.update_app(&app).await.expect("update");
    assert_eq!(w.pending("test.domains-changed").await, 0);
    let spec = NewRelease {
        idempotency_key: "g1".into(),
        slug: SlugRef {
            key: shared::blob_keys::slug(&"ab".repeat(32)),
            sha256: "ab".repeat(32),
            size: 10,
            process_types: Some(vec!["web".into()]),
            stack: None,
        },
        config: Default::default(),
        commit: None,
        build: None,
        summary: "green".into(),
        rollback_to: None,
    };
    let g1 = w
        .store
        .create_next_release(&green.name, &spec)
        .await
        .expect("release")
        .version;
    deploy(&w.state(), &green.name, g1, None)
        .await
        .expect("deploy green");
    assert_eq!(w.pending("test.domains-changed").await, 1);
    assert_eq!(
        w.runtime.traffic(&green.name).serves,
        std::slice::from_ref(&w.app)
    );
}
