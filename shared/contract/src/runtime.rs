//! The runtime suite: what every [`Runtime`] does, whatever runs the replicas. A backend
//! runs it with slugs it can start (see [`Slugs`]): the Docker runtime with slugs built by
//! the real builder image, the Kubernetes runtime against its fake API server.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::domain::{AppName, ReleaseVersion, Secret};
use crate::model::SlugRef;
use crate::ports::runtime::{DeployOutcome, PhaseOutcome, ReleaseSpec, ReplicaState};
use crate::ports::Runtime;

/// The slugs the suite deploys. Each one's release phase (the Procfile's `release:`) and
/// web process behave as named, printing what the suite looks for.
#[derive(Debug, Clone)]
pub struct Slugs {
    /// Answers HTTP on [`APP_PORT`](crate::ports::runtime::APP_PORT); its release phase
    /// prints `migrated $GREETING` and exits 0.
    pub serving: SlugRef,
    /// Its release phase prints `cannot migrate` and exits 3.
    pub failing_phase: SlugRef,
    /// Its web process prints `boom` and exits 1 at once.
    pub crashing: SlugRef,
}

/// A runtime under test, and an app of its own.
pub struct Subject {
    /// The runtime.
    pub runtime: Arc<dyn Runtime>,
    /// An app no other test uses.
    pub app: AppName,
    /// What it can run.
    pub slugs: Slugs,
}

/// The value of `GREETING` in every release of the suite.
pub const GREETING: &str = "conformance";

/// A release of `slug` with `replicas` replicas.
pub fn spec(s: &Subject, version: u32, slug: &SlugRef, replicas: u32) -> ReleaseSpec {
    let env = [
        ("APP_NAME", s.app.as_str()),
        ("RELEASE_COOKIE", "suite-cookie"),
        ("ERLANG_COOKIE", "suite-cookie"),
        (
            "SECRET_KEY_BASE",
            "suite-secret-key-base-suite-secret-key-base",
        ),
        ("GREETING", GREETING),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Secret::new(v)))
    .collect();
    ReleaseSpec {
        app: s.app.clone(),
        version: ReleaseVersion(version),
        slug: slug.clone(),
        env,
        replicas,
        memory_bytes: 512 << 20,
        boot_timeout: Duration::from_secs(60),
        health_path: None,
        health_status: 200,
        drain: Duration::from_secs(1),
        traffic: Default::default(),
    }
}

async fn deploy(s: &Subject, spec: &ReleaseSpec) {
    let outcome = s.runtime.deploy(spec).await.expect("deploy");
    assert_eq!(
        outcome,
        DeployOutcome::Healthy,
        "{} of {}",
        spec.version,
        s.app
    );
}

/// The versions of the app's running replicas, by slot, once the runtime has settled on
/// `want` (replicas leaving the rotation get a moment to go); what it runs at the end.
async fn settle(s: &Subject, want: &[u32]) -> Vec<u32> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let running: Vec<u32> = s
            .runtime
            .replicas(&s.app)
            .await
            .expect("replicas")
            .iter()
            .filter(|r| r.state == ReplicaState::Running)
            .map(|r| r.version.0)
            .collect();
        if running == want || tokio::time::Instant::now() >= deadline {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A release goes live, and a second deploy of it changes nothing.
pub async fn a_release_goes_live_once_per_version(s: Subject) {
    let v1 = spec(&s, 1, &s.slugs.serving, 1);
    assert!(!s.runtime.runs(&s.app, v1.version).await.expect("runs"));
    deploy(&s, &v1).await;
    assert!(s.runtime.runs(&s.app, v1.version).await.expect("runs"));
    assert_eq!(settle(&s, &[1]).await, [1]);
    assert_eq!(
        s.runtime.endpoints(&s.app).await.expect("endpoints").len(),
        1
    );
    deploy(&s, &v1).await;
    assert_eq!(
        settle(&s, &[1]).await,
        [1],
        "the redelivery started nothing"
    );
    s.runtime.remove_app(&s.app).await.expect("remove");
}

/// A release phase runs to its end, tells its output and changes no replica.
pub async fn a_release_phase_reports_and_touches_no_replica(s: Subject) {
    deploy(&s, &spec(&s, 1, &s.slugs.serving, 1)).await;
    let v2 = spec(&s, 2, &s.slugs.serving, 1);
    match s.runtime.release_phase(&v2).await.expect("release phase") {
        PhaseOutcome::Done { output } => assert!(
            output
                .iter()
                .any(|l| l.contains(&format!("migrated {GREETING}"))),
            "{output:#?}"
        ),
        failed => panic!("the release phase failed: {failed:?}"),
    }
    assert_eq!(settle(&s, &[1]).await, [1]);
    assert!(!s.runtime.runs(&s.app, v2.version).await.expect("runs"));
    s.runtime.remove_app(&s.app).await.expect("remove");
}

/// A failing release phase says its exit code and shows its last lines.
pub async fn a_failed_release_phase_says_why(s: Subject) {
    let v1 = spec(&s, 1, &s.slugs.failing_phase, 1);
    match s.runtime.release_phase(&v1).await.expect("release phase") {
        PhaseOutcome::Failed { reason, output } => {
            assert!(reason.contains("exited with code 3"), "{reason}");
            assert!(
                output.iter().any(|l| l.contains("cannot migrate")),
                "{output:#?}"
            );
        }
        done => panic!("a failing release phase passed: {done:?}"),
    }
    assert!(s
        .runtime
        .replicas(&s.app)
        .await
        .expect("replicas")
        .is_empty());
    s.runtime.remove_app(&s.app).await.expect("remove");
}

/// A release that never becomes healthy fails with its output; the previous one keeps
/// serving.
pub async fn a_release_that_crashes_leaves_the_previous_one_serving(s: Subject) {
    deploy(&s, &spec(&s, 1, &s.slugs.serving, 1)).await;
    let v2 = spec(&s, 2, &s.slugs.crashing, 1);
    match s.runtime.deploy(&v2).await.expect("deploy") {
        DeployOutcome::Failed { reason, output } => {
            assert!(!reason.is_empty());
            assert!(output.iter().any(|l| l.contains("boom")), "{output:#?}");
        }
        DeployOutcome::Healthy => panic!("a crashing release went live"),
    }
    assert!(s
        .runtime
        .runs(&s.app, ReleaseVersion(1))
        .await
        .expect("runs"));
    assert!(!s.runtime.runs(&s.app, v2.version).await.expect("runs"));
    assert_eq!(settle(&s, &[1]).await, [1]);
    assert!(!s
        .runtime
        .endpoints(&s.app)
        .await
        .expect("endpoints")
        .is_empty());
    s.runtime.remove_app(&s.app).await.expect("remove");
}

/// Scaling changes the number of replicas of the live release; a new release replaces
/// every one of them.
pub async fn scale_and_a_new_release_replace_replicas(s: Subject) {
    deploy(&s, &spec(&s, 1, &s.slugs.serving, 1)).await;
    let outcome = s
        .runtime
        .scale(&spec(&s, 1, &s.slugs.serving, 2))
        .await
        .expect("scale");
    assert_eq!(outcome, DeployOutcome::Healthy);
    assert_eq!(settle(&s, &[1, 1]).await, [1, 1]);
    deploy(&s, &spec(&s, 2, &s.slugs.serving, 2)).await;
    assert_eq!(settle(&s, &[2, 2]).await, [2, 2]);
    assert_eq!(
        s.runtime.endpoints(&s.app).await.expect("endpoints").len(),
        2
    );
    s.runtime.remove_app(&s.app).await.expect("remove");
}

/// The replicas' output can be read, each line naming its replica.
pub async fn logs_name_their_replica(s: Subject) {
    deploy(&s, &spec(&s, 1, &s.slugs.serving, 1)).await;
    let stream = s.runtime.logs(&s.app, 100, false).await.expect("logs");
    let lines: Vec<String> = tokio::time::timeout(Duration::from_secs(30), stream.collect())
        .await
        .expect("a log without follow ends");
    assert!(!lines.is_empty(), "no log lines");
    let prefix = format!("{}[web.1]: ", s.app);
    assert!(lines.iter().all(|l| l.starts_with(&prefix)), "{lines:#?}");
    s.runtime.remove_app(&s.app).await.expect("remove");
}

/// Removing an app leaves nothing of it running, and can be done twice.
pub async fn removing_an_app_leaves_nothing(s: Subject) {
    deploy(&s, &spec(&s, 1, &s.slugs.serving, 1)).await;
    s.runtime.remove_app(&s.app).await.expect("remove");
    assert!(s
        .runtime
        .replicas(&s.app)
        .await
        .expect("replicas")
        .is_empty());
    assert!(s
        .runtime
        .endpoints(&s.app)
        .await
        .expect("endpoints")
        .is_empty());
    assert!(!s
        .runtime
        .runs(&s.app, ReleaseVersion(1))
        .await
        .expect("runs"));
    s.runtime.remove_app(&s.app).await.expect("again");
}
