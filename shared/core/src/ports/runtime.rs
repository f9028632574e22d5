//! Running releases: where apps live and how traffic reaches them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::domain::{AppName, Fqdn, ReleaseVersion, Secret};
use crate::error::PortResult;
use crate::model::SlugRef;

/// The port every app listens on inside its container.
pub const APP_PORT: u16 = 4000;

/// One release to run.
#[derive(Debug, Clone)]
pub struct ReleaseSpec {
    /// The app.
    pub app: AppName,
    /// The release.
    pub version: ReleaseVersion,
    /// The slug the runner downloads at boot.
    pub slug: SlugRef,
    /// The environment: the generated cookie and secret, the config vars, and the
    /// platform's own variables. Values are secrets.
    pub env: BTreeMap<String, Secret>,
    /// Replicas wanted.
    pub replicas: u32,
    /// Memory per replica, bytes.
    pub memory_bytes: i64,
    /// How long a replica may take to become healthy.
    pub boot_timeout: Duration,
    /// `Some(path)`: healthy once `GET path` answers `health_status`; `None`: once the
    /// port accepts connections.
    pub health_path: Option<String>,
    /// The status the health path must answer.
    pub health_status: u16,
    /// How long a replica leaving the rotation gets to finish its requests.
    pub drain: Duration,
    /// Where its requests go besides its replicas, as the deploy found it (a runtime with
    /// an ingress of its own renders it with the release; see [`Runtime::set_routes`]).
    pub traffic: Traffic,
}

/// Where an app's requests go besides its replicas: maintenance mode, a canary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Every request is answered 503 (`maintenance:on`); the replicas keep running.
    pub maintenance: bool,
    /// Another app of the same owner that gets a share of the app's new visitors, each
    /// browser kept on its side while the weight is 1–99 (`canary:set`).
    pub canary: Option<crate::model::Canary>,
    /// The apps of the same owner whose canary this app is (sorted): a share of any other
    /// app's requests that still reaches it (a transfer, a lost announcement) goes.
    pub serves: Vec<AppName>,
}

/// How a deploy ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployOutcome {
    /// The release answers; traffic goes to it; the previous release is stopped.
    Healthy,
    /// The release never became healthy; the previous release keeps serving.
    Failed {
        /// Why, for people (exit code, timeout).
        reason: String,
        /// The last lines the release printed.
        output: Vec<String>,
    },
}

/// How a release phase (the Procfile's `release:` command, run once per release before
/// its replicas start) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhaseOutcome {
    /// It exited 0.
    Done {
        /// The last lines it printed.
        output: Vec<String>,
    },
    /// It failed or ran too long: the release must not start.
    Failed {
        /// Why, for people (exit code, timeout).
        reason: String,
        /// The last lines it printed.
        output: Vec<String>,
    },
}

/// Where a replica stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Started, not yet accepting connections.
    Starting,
    /// Accepting connections.
    Running,
    /// Exited or stopped.
    Stopped,
}

/// One running copy of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    /// The runtime's name for it (container or pod).
    pub name: String,
    /// Its slot, 0..replicas, stable across releases (`HOST_INDEX`).
    pub index: u32,
    /// The release it runs.
    pub version: ReleaseVersion,
    /// Where it stands.
    pub state: ReplicaState,
    /// Since when.
    pub since: DateTime<Utc>,
    /// Where its SSH server answers, if it has one.
    pub ssh: Option<SocketAddr>,
}

/// How a hot upgrade ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HotOutcome {
    /// Every running replica runs the new code, without a restart.
    Upgraded {
        /// What the replicas reported.
        output: Vec<String>,
    },
    /// The upgrade cannot be done in place (first deploy, applications added, another
    /// Erlang runtime); nothing was changed.
    NotPossible {
        /// Why, for people.
        reason: String,
    },
    /// The upgrade failed on a replica (e.g. a `code_change/3` that raises on the running
    /// state): the replicas after it were not touched, and the push fails. Replicas the
    /// upgrade changed (those before it, and this one unless it failed before changing
    /// anything) count as the new release's: a deploy of the running release replaces
    /// them, and leaves the others alone.
    Failed {
        /// Why, for people.
        reason: String,
        /// What the replica's upgrade printed.
        output: Vec<String>,
    },
}

/// How long `gigalixir-hot-upgrade` may take in one replica.
pub const HOT_UPGRADE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The last lines a replica's hot upgrade printed, kept to show the pusher.
pub const HOT_UPGRADE_LINES: usize = 200;

impl HotOutcome {
    /// What the exit code of `gigalixir-hot-upgrade` in replica `web.N` means for the
    /// upgrade of every replica: `None`, it went on (0); else the outcome it ends with.
    /// 3 (not possible) is found before anything changes; any other code fails the
    /// upgrade (4: nothing changed in that replica; others: it may have, and the runtime
    /// counts it as the new release's), and the replicas after this one are not touched.
    pub fn of_replica(n: u32, code: i64, lines: &[String]) -> Option<Self> {
        match code {
            0 => None,
            3 => Some(Self::NotPossible {
                reason: lines
                    .last()
                    .cloned()
                    .unwrap_or_else(|| "incompatible change".into()),
            }),
            _ => {
                let why = lines
                    .iter()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(|l| l.trim_start_matches("hot upgrade failed: ").to_owned())
                    .unwrap_or_else(|| format!("exit code {code}"));
                Some(Self::Failed {
                    reason: format!("the hot upgrade failed on web.{n}: {why}"),
                    output: lines.to_vec(),
                })
            }
        }
    }
}

/// Runs apps.
///
/// Contract: `deploy` starts the new release beside the running one, moves traffic only
/// once it accepts connections, then stops the old one; if the new one fails, the old one
/// is untouched. It is idempotent per (app, version).
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Starts `release` and switches traffic to it when healthy.
    async fn deploy(&self, release: &ReleaseSpec) -> PortResult<DeployOutcome>;
    /// Runs the release phase of `release` once, in a one-off copy of the release (its
    /// slug, its environment, its network), to its end; nothing else of the app changes.
    /// Whether to run it is the deploy step's decision.
    async fn release_phase(&self, release: &ReleaseSpec) -> PortResult<PhaseOutcome>;
    /// Whether replicas of `version` of `app` already run or are rolling out: a deploy of
    /// it was delivered before, so its release phase has run.
    async fn runs(&self, app: &AppName, version: ReleaseVersion) -> PortResult<bool>;
    /// Where the app's live release answers HTTP, one address per healthy replica.
    async fn endpoints(&self, app: &AppName) -> PortResult<Vec<SocketAddr>>;
    /// Stops and removes everything of the app. Idempotent.
    async fn remove_app(&self, app: &AppName) -> PortResult<()>;
    /// The app's replicas, by slot.
    async fn replicas(&self, app: &AppName) -> PortResult<Vec<Replica>>;
    /// The last `tail` lines the app's replicas printed, then (with `follow`) new lines as
    /// they come, until the stream is dropped.
    async fn logs(
        &self,
        app: &AppName,
        tail: usize,
        follow: bool,
    ) -> PortResult<BoxStream<'static, String>>;
    /// Brings the live release to `release.replicas` replicas (starting or stopping slots).
    async fn scale(&self, release: &ReleaseSpec) -> PortResult<DeployOutcome>;
    /// Loads the code of `release` into the running replicas without restarting them. The
    /// release then counts as the running one (a later restart starts it).
    async fn hot_upgrade(&self, release: &ReleaseSpec) -> PortResult<HotOutcome>;
    /// Makes `release` the running one in the replicas of the live release `from` as they
    /// are, without restarting them: its slug and config are `from`'s (a push that changed
    /// nothing a build reads, or a rollback to the same slug and config). Missing slots
    /// get new replicas. `false` when none of `from` runs or this runtime cannot (then the
    /// release deploys normally).
    async fn adopt(&self, release: &ReleaseSpec, from: ReleaseVersion) -> PortResult<bool> {
        let _ = (release, from);
        Ok(false)
    }
    /// Sets the SSH public keys the app's replicas admit (read at each login).
    async fn set_ssh_keys(&self, app: &AppName, keys: &[String]) -> PortResult<()>;
    /// Sets how the app's requests are routed: the custom domains it answers on besides
    /// `APP.<domain>` (all of them, sorted; empty: none), and its [`Traffic`] (the canary
    /// already checked to be another app of the same owner). A runtime whose traffic comes
    /// through the platform's own router needs nothing here (the router reads them from
    /// the store); on Kubernetes they become Ingresses (hosts with their certificates, the
    /// maintenance backend, a canary Ingress in the canary app's namespace).
    async fn set_routes(
        &self,
        app: &AppName,
        domains: &[Fqdn],
        traffic: &Traffic,
    ) -> PortResult<()> {
        let _ = (app, domains, traffic);
        Ok(())
    }
    /// Removes what a killed process left running or stopped (finished builds' containers,
    /// replicas of gone apps or replaced releases), judged against `store`; the names
    /// removed. A runtime whose objects are pruned at each deploy needs nothing here.
    async fn remove_orphans(&self, store: &dyn crate::ports::Store) -> PortResult<Vec<String>> {
        let _ = store;
        Ok(Vec::new())
    }
    /// Replaces the live release's replicas one at a time, each new one healthy before its
    /// predecessor stops.
    async fn restart(&self, release: &ReleaseSpec) -> PortResult<DeployOutcome>;
    /// Runs `command` (a shell command line) once, in a container of its own with the
    /// release's slug and environment (not in a web replica), killed after `limit` even
    /// if nobody reads its output.
    async fn run_job(
        &self,
        release: &ReleaseSpec,
        command: &str,
        limit: Duration,
    ) -> PortResult<JobRun> {
        let _ = (release, command, limit);
        Err(crate::error::PortError::Invalid(
            "this runtime cannot run one-off jobs".into(),
        ))
    }
    /// The app's one-off jobs that run now.
    async fn jobs(&self, app: &AppName) -> PortResult<Vec<JobInfo>> {
        let _ = app;
        Ok(Vec::new())
    }
    /// What one of the app's replicas or jobs (`name`, as [`Runtime::replicas`] or
    /// [`Runtime::jobs`] give it) prints, line by line, from `since` (`None`: from its
    /// start), until it stops (log drains follow each one). `NotFound` for a name that is
    /// not the app's.
    async fn replica_logs(
        &self,
        app: &AppName,
        name: &str,
        since: Option<DateTime<Utc>>,
    ) -> PortResult<BoxStream<'static, String>> {
        let _ = (app, name, since);
        Err(crate::error::PortError::Invalid(
            "this runtime cannot follow one replica's output".into(),
        ))
    }
    /// Kills one of the app's replicas (`replica`: its name, as [`Runtime::replicas`]
    /// gives it) the way a crash would; the runtime brings it back as it brings back
    /// crashed ones (`ps:kill`). `NotFound` when the app has no replica of that name.
    async fn kill(&self, app: &AppName, replica: &str) -> PortResult<()> {
        let _ = (app, replica);
        Err(crate::error::PortError::Invalid(
            "this runtime cannot kill a single replica".into(),
        ))
    }
}

impl ReleaseSpec {
    /// `release` of `app` as its replicas run it: its slug, [`release_env`], the app's
    /// size and health check, `replicas` of them, `boot_timeout` to become healthy.
    pub fn of(
        app: &crate::model::App,
        release: &crate::model::Release,
        domain: &str,
        replicas: u32,
        boot_timeout: Duration,
    ) -> Self {
        Self {
            app: app.name.clone(),
            version: release.version,
            slug: release.spec.slug.clone(),
            env: release_env(app, release, domain),
            replicas,
            memory_bytes: (app.size * f64::from(1u32 << 30)) as i64,
            boot_timeout,
            health_path: app.health.path.clone(),
            health_status: app.health.status,
            drain: Duration::from_secs(app.health.drain_secs.into()),
            traffic: Traffic {
                maintenance: app.maintenance,
                canary: app.canary.clone(),
                serves: Vec::new(),
            },
        }
    }
}

/// The environment a release runs with: the platform's variables, then the config vars
/// (which may not override the platform's own). What a generated Phoenix release reads —
/// `PHX_SERVER`, `PHX_HOST` (the host users reach the app on) — comes as a default the
/// app's own config vars override.
pub fn release_env(
    app: &crate::model::App,
    release: &crate::model::Release,
    domain: &str,
) -> BTreeMap<String, Secret> {
    let mut env = release.spec.config.clone();
    for (k, v) in [
        ("PHX_SERVER", "true".to_owned()),
        ("PHX_HOST", format!("{}.{domain}", app.name)),
    ] {
        env.entry(k.to_owned()).or_insert_with(|| Secret::new(v));
    }
    let mut set = |k: &str, v: &str| {
        env.insert(k.to_owned(), Secret::new(v));
    };
    set("PORT", &APP_PORT.to_string());
    set("APP_NAME", app.name.as_str());
    set(
        "SOURCE_VERSION",
        release.spec.commit.as_deref().unwrap_or_default(),
    );
    set("RELEASE_COOKIE", app.erlang_cookie.expose());
    set("ERLANG_COOKIE", app.erlang_cookie.expose());
    set("SECRET_KEY_BASE", app.secret_key_base.expose());
    set("MIX_ENV", "prod");
    // Clustering: the Kubernetes strategy's variables, and a DNS name that resolves to
    // every replica (the app's network alias on Docker, its headless service on Kubernetes).
    set(
        "LIBCLUSTER_KUBERNETES_SELECTOR",
        &format!("gigalixir.app={}", app.name),
    );
    set("LIBCLUSTER_KUBERNETES_NODE_BASENAME", app.name.as_str());
    set("GIGALIXIR_CLUSTER_DNS", app.name.as_str());
    env
}

/// A one-off job's output as it comes, then how it ended (`run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// A line it printed (standard output or error).
    Line(String),
    /// It ended with this exit code (137 when killed at its time limit).
    Exited(i64),
}

/// A one-off job started by [`Runtime::run_job`].
pub struct JobRun {
    /// The runtime's name for it (its container), as `ps` lists it while it runs.
    pub name: String,
    /// Its output, then one [`JobEvent::Exited`]; the job goes on if this is dropped.
    pub events: BoxStream<'static, JobEvent>,
}

/// A one-off job that runs now (`ps`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    /// Its name.
    pub name: String,
    /// The release it runs.
    pub version: u32,
    /// Since when.
    pub since: DateTime<Utc>,
}
