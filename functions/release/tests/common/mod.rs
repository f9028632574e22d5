//! The world the release step's tests run in: an embedded store and bus, an account, the
//! app `my-app` (config FOO=bar), and one uploaded build of it.

use std::sync::Arc;

use chrono::Utc;
use gigalixir_release::StepState;
use shared::domain::{AppName, BuildId, Email, Secret};
use shared::embedded::{SqliteBus, SqliteStore};
use shared::messages::Topic;
use shared::model::{App, Build, BuildFlags, BuildState, User};
use shared::ports::{Bus, Store, SubscriptionSpec};

/// A subscription on `release-created`, to see what the step announces.
pub const WATCH: &str = "test.release-created";

/// The backends, the app and its uploaded build.
pub struct World {
    pub store: Arc<SqliteStore>,
    pub bus: Arc<SqliteBus>,
    pub app: AppName,
    pub build: BuildId,
    _dir: tempfile::TempDir,
}

/// A world whose uploaded build has the id `build`.
pub async fn world(build: BuildId) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).expect("store"));
    let bus = Arc::new(SqliteBus::open(&dir.path().join("bus.db")).expect("bus"));
    bus.ensure_subscription(&SubscriptionSpec::new(WATCH, Topic::RELEASE_CREATED))
        .await
        .expect("watch");
    let owner = User {
        confirmed: true,
        ..User::new(
            Email::parse("ada@example.com").expect("email"),
            Secret::new("x"),
        )
    };
    store.create_user(&owner).await.expect("user");
    let app = AppName::parse("my-app").expect("name");
    store
        .create_app(&App {
            name: app.clone(),
            owner: owner.id,
            created_at: Utc::now(),
            health: Default::default(),
            webhook_secret: None,
            maintenance: false,
            canary: None,
            databases: Vec::new(),
            drains: Vec::new(),
            erlang_cookie: Secret::new("c"),
            secret_key_base: Secret::new("s"),
            replicas: 1,
            size: 0.5,
            stack: None,
            config: [("FOO".to_owned(), Secret::new("bar"))].into(),
        })
        .await
        .expect("app");
    store
        .create_build(&Build {
            id: build.clone(),
            app: app.clone(),
            commit: "1a2b3c4d5e6f7081920a1b2c3d4e5f6071829304".into(),
            branch: "master".into(),
            flags: BuildFlags::default(),
            state: BuildState::Uploaded,
            failure: None,
            slug: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            stack: None,
            history: Vec::new(),
            pusher: None,
        })
        .await
        .expect("build");
    World {
        store,
        bus,
        app,
        build,
        _dir: dir,
    }
}

impl World {
    /// The step's ports.
    pub fn state(&self) -> StepState {
        StepState {
            store: self.store.clone(),
            bus: self.bus.clone(),
        }
    }
}
