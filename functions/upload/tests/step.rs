//! The upload step's handler on the embedded store, bus and blobs, with an in-memory
//! builder (`shared::fakes`): a finished build's slug goes to the slug store and on;
//! the same message twice; a build that left no slug; a builder out of reach.

use std::sync::Arc;

use gigalixir_upload::{upload, StepState};
use shared::domain::{AppName, BuildId};
use shared::embedded::{FsBlobs, SqliteBus, SqliteStore};
use shared::fakes::{seed_app, seed_build, tar_of, FakeBuilder};
use shared::messages::Topic;
use shared::model::{Build, BuildState};
use shared::ports::builder::BuildOutput;
use shared::ports::{Blobs, Bus, Store, SubscriptionSpec};
use shared::push::StepError;

const WATCH: &str = "test.slug-uploaded";

struct World {
    store: Arc<SqliteStore>,
    bus: Arc<SqliteBus>,
    blobs: Arc<FsBlobs>,
    builder: Arc<FakeBuilder>,
    app: AppName,
    build: BuildId,
    _dir: tempfile::TempDir,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("store"));
        let bus = Arc::new(SqliteBus::open(&dir.path().join("bus.db")).expect("bus"));
        let blobs = Arc::new(FsBlobs::open(&dir.path().join("blobs")).expect("blobs"));
        bus.ensure_subscription(&SubscriptionSpec::new(WATCH, Topic::SLUG_UPLOADED))
            .await
            .expect("watch");
        let app = seed_app(&*store, "my-app").await.name;
        let build = seed_build(&*store, &app, BuildState::Built).await;
        Self {
            store,
            bus,
            blobs,
            builder: Arc::new(FakeBuilder::default()),
            app,
            build,
            _dir: dir,
        }
    }

    fn state(&self) -> StepState {
        StepState {
            store: self.store.clone(),
            bus: self.bus.clone(),
            blobs: self.blobs.clone(),
            builder: self.builder.clone(),
        }
    }

    async fn run(&self) -> Result<(), StepError> {
        upload(&self.state(), &self.app, &self.build, Some("trace")).await
    }

    async fn build(&self) -> Build {
        self.store.build(&self.build).await.expect("build")
    }
}

#[tokio::test]
async fn a_finished_builds_slug_is_stored_by_its_hash_and_announced() {
    let w = World::new().await;
    let slug = b"a slug's bytes".repeat(1000);
    w.builder
        .finished(&w.build, BuildOutput::Slug, tar_of("slug.tgz", &slug));
    w.builder.finished(
        &w.build,
        BuildOutput::SlugMeta,
        tar_of(
            "slug.json",
            br#"{"process_types":{"web":"x","release":"y"}}"#,
        ),
    );
    w.run().await.expect("uploaded");
    let build = w.build().await;
    assert_eq!(build.state, BuildState::Uploaded);
    let stored = build.slug.expect("slug");
    assert_eq!(stored.size, slug.len() as u64);
    assert_eq!(stored.key, shared::blob_keys::slug(&stored.sha256));
    let mut types = stored.process_types.expect("types");
    types.sort();
    assert_eq!(types, ["release", "web"]);
    let kept = w.blobs.get(&stored.key).await.expect("in the slug store");
    assert_eq!(&kept[..], &slug[..]);
    assert_eq!(w.builder.discarded(), std::slice::from_ref(&w.build));
    assert_eq!(w.bus.pending(WATCH).await.expect("pending"), 1);
    let log = w.store.build_log(&w.build, 0, 100).await.expect("log");
    assert!(
        log.iter().any(|(_, l)| l.contains("Slug stored")),
        "{log:?}"
    );
}

#[tokio::test]
async fn the_same_message_twice_stores_once_and_announces_again() {
    let w = World::new().await;
    w.builder
        .finished(&w.build, BuildOutput::Slug, tar_of("slug.tgz", b"slug"));
    w.run().await.expect("first");
    let first = w.build().await.slug.expect("slug");
    // the build is gone from the builder now: the second delivery needs nothing of it
    w.run().await.expect("second");
    assert_eq!(w.build().await.slug.expect("slug"), first);
    assert_eq!(w.builder.discarded().len(), 1);
    assert_eq!(w.bus.pending(WATCH).await.expect("pending"), 2);
}

#[tokio::test]
async fn a_build_that_left_no_slug_fails_for_good() {
    let w = World::new().await;
    // finished, but its slug is not there
    w.builder
        .finished(&w.build, BuildOutput::SlugMeta, tar_of("slug.json", b"{}"));
    let err = w.run().await.expect_err("no slug");
    assert!(matches!(err, StepError::Permanent(_)), "{err}");
    let build = w.build().await;
    assert_eq!(build.state, BuildState::Failed);
    assert!(
        build.failure.as_deref().unwrap_or("").contains("no slug"),
        "{:?}",
        build.failure
    );
    assert_eq!(w.bus.pending(WATCH).await.expect("pending"), 0);
}

#[tokio::test]
async fn a_builder_out_of_reach_is_retried_and_changes_nothing() {
    let w = World::new().await;
    w.builder
        .finished(&w.build, BuildOutput::Slug, tar_of("slug.tgz", b"slug"));
    w.builder.unreachable(Some("the engine is restarting"));
    let err = w.run().await.expect_err("transient");
    assert!(matches!(err, StepError::Transient(_)), "{err}");
    assert_eq!(w.build().await.state, BuildState::Built);
    assert!(w.builder.discarded().is_empty(), "the slug is still needed");
    // the retry finds the builder back
    w.builder.unreachable(None);
    w.run().await.expect("retried");
    assert_eq!(w.build().await.state, BuildState::Uploaded);
}

#[tokio::test]
async fn a_missing_build_record_is_permanent() {
    let w = World::new().await;
    let err = upload(&w.state(), &w.app, &BuildId::random(), None)
        .await
        .expect_err("no such build");
    assert!(matches!(err, StepError::Permanent(_)), "{err}");
}
