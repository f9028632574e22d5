//! Releases the api asks for (`release-requested`: config changes, rollbacks), numbered by
//! the release step like pushes' releases, on the embedded store and bus.

use std::time::Duration;

use chrono::Utc;
use gigalixir_release::{release_build, release_requested};
use shared::domain::{BuildId, ReleaseVersion, Secret};
use shared::messages::{ReleaseKind, ReleaseRequest};
use shared::model::{BuildFlags, BuildState, Release, SlugRef};
use shared::ports::Store;

mod common;

use common::{world, World, WATCH};

fn slug(name: &str) -> SlugRef {
    SlugRef {
        process_types: None,
        stack: None,
        key: format!("slugs/{name}.tgz"),
        sha256: "ab".repeat(32),
        size: 1234,
    }
}

fn config(key: &str) -> ReleaseRequest {
    ReleaseRequest {
        key: key.into(),
        summary: "Set FOO".into(),
        kind: ReleaseKind::Config,
    }
}

impl World {
    /// v1 (slug a, FOO=bar) and v2 (slug b, FOO=baz).
    async fn new_with_two_releases() -> Self {
        let w = world(BuildId::random()).await;
        release_build(&w.state(), &w.app, &w.build, &slug("a"), None)
            .await
            .expect("v1");
        w.set_foo("baz").await;
        let second = w.another_build().await;
        release_build(&w.state(), &w.app, &second, &slug("b"), None)
            .await
            .expect("v2");
        w
    }

    /// Another uploaded build of the app.
    async fn another_build(&self) -> BuildId {
        let id = BuildId::random();
        let mut build = self.store.build(&self.build).await.expect("build");
        build.id = id.clone();
        build.state = BuildState::Uploaded;
        build.commit = "ffeeddccbbaa99887766554433221100ffeeddcc".into();
        build.created_at = Utc::now();
        build.flags = BuildFlags::default();
        build.history = Vec::new();
        self.store.create_build(&build).await.expect("build");
        id
    }

    async fn set_foo(&self, value: &str) {
        let mut app = self.store.app(&self.app).await.expect("app");
        app.config.insert("FOO".into(), Secret::new(value));
        self.store.update_app(&app).await.expect("update");
    }

    async fn releases(&self) -> Vec<Release> {
        let mut all = self.store.releases(&self.app).await.expect("releases");
        all.sort_by_key(|r| r.version);
        all
    }
}

#[tokio::test]
async fn a_config_change_runs_the_newest_slug_with_the_config_of_now() {
    let w = world(BuildId::random()).await;
    release_build(&w.state(), &w.app, &w.build, &slug("a"), None)
        .await
        .expect("v1");
    w.set_foo("baz").await;
    release_requested(&w.state(), &w.app, &config("k1"), Some("trace-2"))
        .await
        .expect("v2");
    let all = w.releases().await;
    assert_eq!(all.len(), 2);
    let v2 = &all[1];
    assert_eq!(v2.version, ReleaseVersion(2));
    assert_eq!(v2.spec.slug.key, "slugs/a.tgz");
    assert_eq!(v2.spec.config["FOO"].expose(), "baz");
    assert_eq!(v2.spec.summary, "Set FOO");
    assert_eq!(v2.spec.build, None);
    assert_eq!(v2.rollback_id, Some(ReleaseVersion(1)));
    assert_eq!(w.bus.pending(WATCH).await.expect("pending"), 2);
}

#[tokio::test]
async fn the_same_request_delivered_twice_makes_one_release() {
    let w = world(BuildId::random()).await;
    release_build(&w.state(), &w.app, &w.build, &slug("a"), None)
        .await
        .expect("v1");
    for _ in 0..2 {
        release_requested(&w.state(), &w.app, &config("k1"), None)
            .await
            .expect("request");
    }
    assert_eq!(w.releases().await.len(), 2, "a redelivery must not make v3");
    // announced each time (deploy is idempotent)
    assert_eq!(w.bus.pending(WATCH).await.expect("pending"), 3);
}

#[tokio::test]
async fn a_config_change_before_any_release_makes_none() {
    let w = world(BuildId::random()).await;
    release_requested(&w.state(), &w.app, &config("k1"), None)
        .await
        .expect("nothing to do");
    assert!(w.releases().await.is_empty());
    assert_eq!(w.bus.pending(WATCH).await.expect("pending"), 0);
}

#[tokio::test]
async fn a_rollback_brings_back_a_releases_slug_and_config() {
    let w = world(BuildId::random()).await;
    release_build(&w.state(), &w.app, &w.build, &slug("a"), None)
        .await
        .expect("v1");
    w.set_foo("baz").await;
    let second = w.another_build().await;
    release_build(&w.state(), &w.app, &second, &slug("b"), None)
        .await
        .expect("v2");
    let rollback = ReleaseRequest {
        key: "r1".into(),
        summary: "Rollback to v1".into(),
        kind: ReleaseKind::Rollback {
            to: ReleaseVersion(1),
        },
    };
    // the api sets the app's config to v1's, then asks
    w.set_foo("bar").await;
    release_requested(&w.state(), &w.app, &rollback, None)
        .await
        .expect("v3");
    let v3 = &w.releases().await[2];
    assert_eq!(v3.spec.slug.key, "slugs/a.tgz");
    assert_eq!(v3.spec.config["FOO"].expose(), "bar");
    assert_eq!(v3.spec.rollback_to, Some(ReleaseVersion(1)));
    // a release that does not exist is a permanent failure
    let nowhere = ReleaseRequest {
        key: "r2".into(),
        summary: "Rollback to v9".into(),
        kind: ReleaseKind::Rollback {
            to: ReleaseVersion(9),
        },
    };
    let err = release_requested(&w.state(), &w.app, &nowhere, None)
        .await
        .expect_err("no v9");
    assert!(err.to_string().contains("no release v9"), "{err}");
}

/// A config change and a push race: whatever the order, the releases are consecutive, a
/// config change's release runs the slug of the release before it, and the newest release
/// runs the pushed slug with the changed config.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_config_change_racing_a_push_loses_neither() {
    for round in 0..12 {
        let w = world(BuildId::random()).await;
        release_build(&w.state(), &w.app, &w.build, &slug("a"), None)
            .await
            .expect("v1");
        let pushed = w.another_build().await;
        let (state, app) = (w.state(), w.app.clone());
        let push = {
            let (state, app, pushed) = (state.clone(), app.clone(), pushed.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(round % 4)).await;
                release_build(&state, &app, &pushed, &slug("b"), None).await
            })
        };
        // the api: the config is stored, then its release is asked for
        w.set_foo("new").await;
        let change = {
            let (state, app) = (state.clone(), app.clone());
            tokio::spawn(async move { release_requested(&state, &app, &config("k"), None).await })
        };
        push.await.expect("join").expect("push release");
        change.await.expect("join").expect("config release");

        let all = w.releases().await;
        let versions: Vec<u32> = all.iter().map(|r| r.version.0).collect();
        assert_eq!(versions, [1, 2, 3], "round {round}");
        for pair in all.windows(2) {
            if pair[1].spec.build.is_none() {
                assert_eq!(
                    pair[1].spec.slug.key, pair[0].spec.slug.key,
                    "round {round}: a config release runs the slug before it"
                );
            }
        }
        let newest = &all[2];
        assert_eq!(newest.spec.slug.key, "slugs/b.tgz", "round {round}");
        assert_eq!(newest.spec.config["FOO"].expose(), "new", "round {round}");
        assert_eq!(
            w.store.build(&pushed).await.expect("build").state,
            BuildState::Released
        );
    }
}

/// Releases of one app are numbered one at a time: while another holds the app's release
/// lock, neither a push's release nor a requested one reads or writes anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_of_an_app_wait_for_each_other() {
    let w = world(BuildId::random()).await;
    release_build(&w.state(), &w.app, &w.build, &slug("a"), None)
        .await
        .expect("v1");
    let store: std::sync::Arc<dyn Store> = w.store.clone();
    let other = shared::locks::Held::take(
        &store,
        &shared::locks::release_lock(&w.app),
        "another-release",
    )
    .await
    .expect("lock");
    let pushed = w.another_build().await;
    let (state, app) = (w.state(), w.app.clone());
    let push = tokio::spawn({
        let (state, app) = (state.clone(), app.clone());
        async move { release_build(&state, &app, &pushed, &slug("b"), None).await }
    });
    let change =
        tokio::spawn(async move { release_requested(&state, &app, &config("k"), None).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.releases().await.len(), 1, "nothing is released meanwhile");
    // what the other release changed is what they see
    w.set_foo("meanwhile").await;
    other.release().await;
    push.await.expect("join").expect("push release");
    change.await.expect("join").expect("config release");
    let all = w.releases().await;
    assert_eq!(all.len(), 3);
    for release in &all[1..] {
        assert_eq!(release.spec.config["FOO"].expose(), "meanwhile");
    }
}

/// A rollback, then a config change, whose requests arrive the other way round (a bus
/// that does not keep order): what runs last is the rolled-back slug with the change.
#[tokio::test]
async fn a_rollback_and_a_later_config_change_arriving_reversed_keep_both() {
    let w = World::new_with_two_releases().await;
    // the api: rollback to v1 (config back to v1's), then config:set FOO=later
    w.set_foo("bar").await;
    let rollback = ReleaseRequest {
        key: "r1".into(),
        summary: "Rollback to v1".into(),
        kind: ReleaseKind::Rollback {
            to: ReleaseVersion(1),
        },
    };
    w.set_foo("later").await;
    release_requested(&w.state(), &w.app, &config("c1"), None)
        .await
        .expect("the config change first");
    release_requested(&w.state(), &w.app, &rollback, None)
        .await
        .expect("then the rollback");
    let newest = w.releases().await.pop().expect("releases");
    assert_eq!(newest.spec.slug.key, "slugs/a.tgz");
    assert_eq!(newest.spec.config["FOO"].expose(), "later");
}
