//! The build step's handler on the embedded store, bus and blobs, with an in-memory
//! builder (`shared::fakes`): a requested build runs once and is announced however often
//! its message comes; a missing source archive and failing buildpacks end the build for
//! good.

use std::sync::Arc;

use gigalixir_build::{run_build, turns::Turns, StepState};
use shared::domain::{AppName, BuildId};
use shared::embedded::{FsBlobs, SqliteBus, SqliteStore};
use shared::fakes::{seed_app, seed_build, tar_of, FakeBuilder};
use shared::messages::Topic;
use shared::model::{Build, BuildState};
use shared::ports::{Blobs, Bus, Store, SubscriptionSpec};
use shared::push::StepError;

const WATCH: &str = "test.slug-built";
const MIX_EXS: &[u8] = b"defmodule Hello.MixProject do\n  use Mix.Project\n  def project, do: [app: :hello, version: \"0.1.0\", elixir: \"~> 1.14\", deps: []]\nend\n";

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
        bus.ensure_subscription(&SubscriptionSpec::new(WATCH, Topic::SLUG_BUILT))
            .await
            .expect("watch");
        let app = seed_app(&*store, "my-app").await.name;
        let build = seed_build(&*store, &app, BuildState::Requested).await;
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

    async fn with_source(self) -> Self {
        self.blobs
            .put(
                &shared::blob_keys::source(&self.app, &self.build),
                tar_of("mix.exs", MIX_EXS).into(),
            )
            .await
            .expect("source");
        self
    }

    fn state(&self) -> StepState {
        StepState {
            store: self.store.clone(),
            bus: self.bus.clone(),
            blobs: self.blobs.clone(),
            builder: self.builder.clone(),
            limits: Default::default(),
            hex: None,
            git: Default::default(),
            tools: Default::default(),
            npm: false,
            turns: Turns::new(2),
        }
    }

    async fn run(&self) -> Result<(), StepError> {
        run_build(&self.state(), &self.app, &self.build, Some("trace")).await
    }

    async fn build(&self) -> Build {
        self.store.build(&self.build).await.expect("build")
    }
}

#[tokio::test]
async fn a_requested_build_runs_once_however_often_it_is_announced() {
    let w = World::new().await.with_source().await;
    w.run().await.expect("built");
    w.run().await.expect("again");
    assert_eq!(w.builder.runs(), std::slice::from_ref(&w.build), "one run");
    let build = w.build().await;
    assert_eq!(build.state, BuildState::Built);
    assert!(build.stack.is_some(), "the stack it was built on is kept");
    // announced each time: upload is idempotent
    assert_eq!(w.bus.pending(WATCH).await.expect("pending"), 2);
    let log = w.store.build_log(&w.build, 0, 100).await.expect("log");
    assert!(
        log.iter().any(|(_, l)| l.contains("Building (fake)")),
        "the builder's output is the build's log: {log:?}"
    );
}

#[tokio::test]
async fn a_missing_source_archive_fails_the_build_for_good() {
    let w = World::new().await;
    let err = w.run().await.expect_err("no source");
    assert!(matches!(err, StepError::Permanent(_)), "{err}");
    let build = w.build().await;
    assert_eq!(build.state, BuildState::Failed);
    assert!(
        build
            .failure
            .as_deref()
            .unwrap_or("")
            .contains("source archive is missing"),
        "{:?}",
        build.failure
    );
    assert!(w.builder.runs().is_empty());
    assert_eq!(w.bus.pending(WATCH).await.expect("pending"), 0);
}

#[tokio::test]
async fn failing_buildpacks_fail_the_build_and_free_the_builder() {
    let w = World::new().await.with_source().await;
    w.builder.runs_fail(Some("mix compile failed"));
    let err = w.run().await.expect_err("failed");
    assert!(matches!(err, StepError::Permanent(_)), "{err}");
    let build = w.build().await;
    assert_eq!(build.state, BuildState::Failed);
    assert!(
        build
            .failure
            .as_deref()
            .unwrap_or("")
            .contains("mix compile failed"),
        "{:?}",
        build.failure
    );
    assert_eq!(w.builder.discarded(), std::slice::from_ref(&w.build));
    assert_eq!(w.bus.pending(WATCH).await.expect("pending"), 0);
}
