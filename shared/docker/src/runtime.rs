//! [`Runtime`] on the Docker engine: one network per app (where the app's name resolves to
//! every replica), one container per replica from the runner image, each published on
//! loopback ports for the router (4000) and SSH (2222).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, EndpointSettings, HostConfig, Mount, MountTypeEnum,
    NetworkCreateRequest, NetworkingConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptions, StartContainerOptions,
    StopContainerOptionsBuilder,
};
use bollard::Docker;
use chrono::{DateTime, TimeZone, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{labels, map_err, LineSplitter, LABEL_APP, LABEL_INSTANCE, LABEL_RELEASE};
use crate::domain::{AppName, ReleaseVersion};
use crate::error::{PortError, PortResult};
use crate::ports::runtime::{
    DeployOutcome, HotOutcome, JobEvent, JobInfo, JobRun, PhaseOutcome, ReleaseSpec, Replica,
    ReplicaState, Runtime, APP_PORT, HOT_UPGRADE_LINES, HOT_UPGRADE_TIMEOUT,
};

/// Label naming a replica's slot.
pub const LABEL_INDEX: &str = "gigalixir.index";
/// The port of the runner's SSH server.
pub const SSH_PORT: u16 = 2222;
/// Label of a release-phase container (its value: the release).
pub const LABEL_PHASE: &str = "gigalixir.release-phase";
/// On a one-off job's container (`run`): the release it runs.
pub const LABEL_JOB: &str = "gigalixir.job";
/// How old an ended job's container must be to be taken for one whose watcher died: the
/// longest a job may run, and then some.
const JOB_LEFT_AFTER_SECS: i64 = 3600 + 300;

/// How long after its build ended a warm builder still named after that build is left to
/// the push's steps, which sweep, empty and rename it once the slug is stored (seconds).
const WARM_SETTLE_SECS: i64 = 30;
/// Where a replica sees its directory of [`DockerRuntime::hot_dir`].
pub const HOT_MOUNT: &str = "/etc/gigalixir/hot";
/// Processes a replica may have (a fork bomb stops there).
pub const REPLICA_PIDS: i64 = 512;

/// A replica's CPU weight: 1024 per GB of memory (GIGALIXIR sizes CPU with memory), at
/// least 2.
fn cpu_shares(memory_bytes: i64) -> i64 {
    (memory_bytes / (1 << 20)).max(2)
}

/// Where a container finds its release's slug (the one file of the slug store it sees).
pub const SLUG_MOUNT: &str = "/run/gigalixir/slug.tgz";

/// How long a release phase may run.
const RELEASE_PHASE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Runs releases in containers of their stack's runner image (`gigalixir-runner:<stack>`).
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    instance: String,
    /// The host directory holding the slugs (`<sha256>.tgz`); a container gets only its
    /// release's, mounted read-only at [`SLUG_MOUNT`].
    slug_dir: PathBuf,
    /// Per app, a directory with `authorized_keys`, mounted read-only at
    /// `/etc/gigalixir/ssh`.
    ssh_dir: PathBuf,
    /// Replicas taking traffic, per app: (container name, published address).
    live: Arc<Mutex<HashMap<AppName, Vec<LiveReplica>>>>,
    /// Where slugs missing from `slug_dir` are fetched (a blob store that is not a local
    /// directory, e.g. Cloud Storage); `None` when `slug_dir` is the blob store's own.
    slug_source: Option<Arc<dyn crate::ports::Blobs>>,
    /// Per replica brought back after a crash: when, and the pause before the next time.
    revivals: Arc<Mutex<HashMap<String, (std::time::Instant, Duration)>>>,
    /// Old replicas draining before they stop: not orphans while they do.
    retiring: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Counts the changes of any app's live replicas (see [`Self::route_changes`]).
    route_changes: Arc<std::sync::atomic::AtomicU64>,
    /// Whether app containers may open connections beyond their own network (the
    /// internet); see [`super::guard`].
    egress: bool,
    /// Per replica container, a directory `<name>/` mounted read-only at [`HOT_MOUNT`]:
    /// after a hot upgrade it holds `release`, the release the container runs (labels
    /// cannot change: what every later deploy, scale and cleanup goes by, also after the
    /// platform restarts), and `slug.tgz`, that release's slug, which the runner boots
    /// when the container starts again after a crash (its `/app` is memory, lost then).
    hot_dir: PathBuf,
}

/// A replica taking traffic: its container and published address.
type LiveReplica = (String, SocketAddr);

/// A container just started for a replica.
struct Started {
    name: String,
    ip: IpAddr,
    published: SocketAddr,
}

/// A container of the app, as listed.
struct Existing {
    name: String,
    version: u32,
    index: u32,
    running: bool,
    created: i64,
    ssh: Option<u16>,
    http: Option<u16>,
}

fn published(summary: &ContainerSummary, private: u16) -> Option<u16> {
    summary
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.private_port == private && p.public_port.is_some())
        .and_then(|p| p.public_port)
}

impl DockerRuntime {
    /// A runtime whose containers carry `gigalixir.instance=<instance>`, read slugs from
    /// `slug_dir` (the blob store's `slugs/`) and SSH keys from `ssh_dir/<app>/`.
    pub fn new(
        docker: Docker,
        instance: impl Into<String>,
        slug_dir: PathBuf,
        ssh_dir: PathBuf,
    ) -> Self {
        let hot_dir = ssh_dir.parent().unwrap_or(&ssh_dir).join("hot-upgrades");
        Self {
            docker,
            instance: instance.into(),
            slug_dir,
            ssh_dir,
            hot_dir,
            live: Arc::new(Mutex::new(HashMap::new())),
            slug_source: None,
            revivals: Arc::new(Mutex::new(HashMap::new())),
            retiring: Arc::default(),
            route_changes: Arc::default(),
            egress: true,
        }
    }

    /// Whether app containers may reach the internet (by default they may: apps call
    /// APIs); either way they reach neither the host nor the link-local range once
    /// [`guard`](Self::guard) ran.
    pub fn with_egress(mut self, egress: bool) -> Self {
        self.egress = egress;
        self
    }

    /// Installs the packet filter rules that wall app containers off from the host, the
    /// cloud metadata address and (without egress) the internet: see [`super::guard`].
    pub async fn guard(&self) -> PortResult<()> {
        super::guard::install().await
    }

    /// Brings back replicas taking traffic that stop on their own (a crash, the OOM
    /// killer): the same container starts again — after 1 s, doubling up to 5 min while
    /// it keeps crashing within a minute of its last start — and the router follows its
    /// new address. Replicas the platform stops itself have left the rotation first and
    /// are not touched. Runs until the task is dropped; follows the engine's events.
    pub fn supervise(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            // Replicas started before this process (a platform restart) are known first.
            me.adopt_running().await;
            loop {
                me.watch_deaths().await;
                // The engine went away (restarting?): listen again shortly.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    }

    async fn watch_deaths(&self) {
        let mut filters = self.instance_filters();
        filters.insert("type".to_owned(), vec!["container".to_owned()]);
        filters.insert("event".to_owned(), vec!["die".to_owned()]);
        let options = bollard::query_parameters::EventsOptionsBuilder::new()
            .filters(&filters)
            .build();
        let mut events = self.docker.events(Some(options));
        while let Some(Ok(event)) = events.next().await {
            let Some(attributes) = event.actor.and_then(|a| a.attributes) else {
                continue;
            };
            let (Some(name), Some(app)) = (
                attributes.get("name").cloned(),
                attributes
                    .get(LABEL_APP)
                    .and_then(|a| AppName::parse(a).ok()),
            ) else {
                continue;
            };
            if self.is_live(&app, &name) {
                let code = attributes.get("exitCode").cloned().unwrap_or_default();
                tracing::warn!(app = %app, replica = %name, exit_code = %code, "a replica stopped on its own; starting it again");
                let me = self.clone();
                tokio::spawn(async move { me.revive(&app, &name).await });
            }
        }
    }

    /// Takes the replicas already running on the engine as the live ones of their apps.
    async fn adopt_running(&self) {
        let Ok(list) = self.instance_containers(false).await else {
            return;
        };
        let apps: std::collections::BTreeSet<AppName> = list
            .iter()
            .filter_map(|c| AppName::parse(c.labels.as_ref()?.get(LABEL_APP)?).ok())
            .collect();
        for app in apps {
            if self.live_of(&app).is_none() {
                if let Ok(live) = self.discover_live(&app).await {
                    if !live.is_empty() {
                        self.set_live(&app, live);
                    }
                }
            }
        }
    }

    /// Removes this instance's containers that nothing will use again, as the store says:
    /// builds whose slug was taken (or that failed, or whose record is gone), release
    /// phases of releases no longer pending, and replicas of apps that are gone or of
    /// releases that failed or were replaced and take no traffic. Apps whose deploy lock is
    /// held are left alone (a deploy moves their replicas). Run at start and now and then:
    /// what a killed platform left behind goes. Returns the names removed.
    pub async fn remove_orphans(&self, store: &dyn crate::ports::Store) -> PortResult<Vec<String>> {
        use crate::model::{BuildState, ReleaseStatus};
        let list = self.instance_containers(true).await?;
        let mut removed = Vec::new();
        for c in list {
            let (Some(labels), Some(name)) = (
                c.labels.as_ref(),
                c.names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_owned()),
            ) else {
                continue;
            };
            let Some(app) = labels.get(LABEL_APP).and_then(|a| AppName::parse(a).ok()) else {
                continue;
            };
            if self.retiring.lock().is_ok_and(|r| r.contains(&name)) {
                continue; // drains, then stops
            }
            // A warm builder: idle between builds (kept while it runs), or named after the
            // build it holds.
            let warm = labels.contains_key(super::LABEL_WARM);
            let running = c.state.as_ref().is_some_and(|s| s.to_string() == "running");
            if warm && name.contains("-idle-") && running {
                continue;
            }
            let build = labels.get(super::LABEL_BUILD).cloned().or_else(|| {
                warm.then(|| name.strip_prefix("gx-build-").map(str::to_owned))
                    .flatten()
            });
            let orphan = if warm && name.contains("-idle-") {
                true // its idle time is over
            } else if labels.contains_key(LABEL_JOB) {
                // A job's watcher removes it when it ends; one that ended long ago lost its
                // watcher (a killed platform). A running one ends at its own time limit.
                let created = c.created.unwrap_or_default();
                !running && Utc::now().timestamp() - created > JOB_LEFT_AFTER_SECS
            } else if let Some(build) = build {
                match store.build(&crate::domain::BuildId(build.clone())).await {
                    Ok(b) => {
                        let done = matches!(
                            b.state,
                            BuildState::Uploaded
                                | BuildState::Released
                                | BuildState::Deployed
                                | BuildState::Failed
                        );
                        // A running warm builder whose build has ended is made idle by
                        // the push's own steps: left to them while the push runs (its
                        // receiver still holds the app's push lock) or ended just now.
                        let settling = warm && running && done && {
                            let recent =
                                (Utc::now() - b.updated_at).num_seconds() < WARM_SETTLE_SECS;
                            let pushing = match &b.pusher {
                                Some(pusher) => store
                                    .lock_state(&crate::lock_keys::push_lock(&app))
                                    .await?
                                    .is_some_and(|s| &s.holder == pusher),
                                None => false,
                            };
                            recent || pushing
                        };
                        done && !settling
                    }
                    Err(PortError::NotFound) => true,
                    Err(err) => return Err(err),
                }
            } else {
                let version = match labels.get(LABEL_PHASE) {
                    Some(phase) => phase.parse::<u32>().ok(),
                    None => labels
                        .get(LABEL_RELEASE)
                        .and_then(|v| v.parse::<u32>().ok())
                        .map(|v| self.runs_release(&name, v)),
                };
                let Some(version) = version else { continue };
                match store.app(&app).await {
                    Err(PortError::NotFound) => true,
                    Err(err) => return Err(err),
                    Ok(_) => {
                        // a deploy runs: its containers are its business
                        if store
                            .lock_state(&crate::lock_keys::deploy_lock(&app))
                            .await?
                            .is_some()
                        {
                            continue;
                        }
                        let status = match store.release(&app, ReleaseVersion(version)).await {
                            Ok(r) => Some(r.status),
                            Err(PortError::NotFound) => None,
                            Err(err) => return Err(err),
                        };
                        if labels.contains_key(LABEL_PHASE) {
                            status != Some(ReleaseStatus::Pending)
                        } else {
                            matches!(
                                status,
                                None | Some(
                                    ReleaseStatus::Failed
                                        | ReleaseStatus::RolledBack
                                        | ReleaseStatus::Superseded
                                )
                            ) && !self.is_live(&app, &name)
                        }
                    }
                }
            };
            if orphan {
                tracing::info!(app = %app, container = %name, "removing an orphan container");
                self.remove(&name).await?;
                removed.push(name);
            }
        }
        self.sweep_hot_dirs().await?;
        Ok(removed)
    }

    /// Removes the hot directories of this instance's containers that no longer exist
    /// (removed by someone else, or the platform died between the two): with them go the
    /// slugs they kept.
    async fn sweep_hot_dirs(&self) -> PortResult<()> {
        let Ok(entries) = std::fs::read_dir(&self.hot_dir) else {
            return Ok(());
        };
        let mine = format!("gx-{}-", self.instance);
        // Not one a replica being created right now has (made just before its container).
        let settled = |e: &std::fs::DirEntry| {
            e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(60))
        };
        let names: Vec<String> = entries
            .flatten()
            .filter(settled)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with(&mine))
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        let existing: Vec<String> = self
            .instance_containers(true)
            .await?
            .into_iter()
            .filter_map(|c| {
                c.names?
                    .first()
                    .map(|n| n.trim_start_matches('/').to_owned())
            })
            .collect();
        for name in names.iter().filter(|n| !existing.contains(n)) {
            self.forget_hot(name)?;
        }
        Ok(())
    }

    fn is_live(&self, app: &AppName, name: &str) -> bool {
        self.live_of(app)
            .is_some_and(|live| live.iter().any(|(n, _)| n == name))
    }

    /// Starts a crashed live replica again and points the router at its new address.
    async fn revive(&self, app: &AppName, name: &str) {
        const QUICK: Duration = Duration::from_secs(60);
        const MAX_PAUSE: Duration = Duration::from_secs(300);
        let pause = {
            let Ok(mut revivals) = self.revivals.lock() else {
                return;
            };
            let pause = match revivals.get(name) {
                Some((at, pause)) if at.elapsed() < QUICK => (*pause * 2).min(MAX_PAUSE),
                _ => Duration::from_secs(1),
            };
            // Remembered as started at the end of this pause.
            revivals.insert(name.to_owned(), (std::time::Instant::now() + pause, pause));
            pause
        };
        tokio::time::sleep(pause).await;
        if !self.is_live(app, name) {
            return; // replaced or stopped meanwhile
        }
        if let Err(err) = self
            .docker
            .start_container(name, None::<StartContainerOptions>)
            .await
        {
            tracing::warn!(app = %app, replica = %name, error = %err, "could not start a crashed replica again");
            return;
        }
        let http = format!("{APP_PORT}/tcp");
        let port = match self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => info
                .network_settings
                .and_then(|n| n.ports)
                .and_then(|p| p.get(&http).cloned().flatten())
                .and_then(|b| b.first().and_then(|b| b.host_port.clone()))
                .and_then(|p| p.parse::<u16>().ok()),
            Err(_) => None,
        };
        if let (Some(port), Ok(mut live)) = (port, self.live.lock()) {
            if let Some(replicas) = live.get_mut(app) {
                for (n, addr) in replicas.iter_mut() {
                    if n == name {
                        *addr = SocketAddr::from(([127, 0, 0, 1], port));
                    }
                }
            }
            self.routes_changed();
        }
        tracing::info!(app = %app, replica = %name, "a crashed replica was started again");
    }

    /// Keeps `slug_dir` as a local copy of the slugs of `blobs`: each release's slug is
    /// fetched (and its sha256 checked) before its first container starts.
    pub fn with_slug_source(mut self, blobs: Arc<dyn crate::ports::Blobs>) -> Self {
        self.slug_source = Some(blobs);
        self
    }

    /// Where the slug `key` lies in `slug_dir`; a key outside the slug space is refused.
    fn slug_path(&self, key: &str) -> PortResult<PathBuf> {
        crate::blob_keys::slug_file(key)
            .map(|name| self.slug_dir.join(name))
            .ok_or_else(|| PortError::Invalid(format!("`{key}` is not a slug's key")))
    }

    /// Makes sure the release's slug is in `slug_dir` (every entry point that starts
    /// containers calls this first, so their slug keys are checked).
    async fn ensure_slug(&self, slug: &crate::model::SlugRef) -> PortResult<()> {
        let file = self.slug_path(&slug.key)?;
        let Some(blobs) = &self.slug_source else {
            return Ok(());
        };
        if tokio::fs::try_exists(&file).await.unwrap_or(false) {
            return Ok(());
        }
        if let Some(dir) = file.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(PortError::unavailable)?;
        }
        // Streamed to disk (slugs go up to 1 GB), hashed on the way.
        use sha2::Digest;
        use tokio::io::AsyncWriteExt;
        let partial = file.with_extension("partial");
        let mut out = tokio::fs::File::create(&partial)
            .await
            .map_err(PortError::unavailable)?;
        let mut hash = sha2::Sha256::new();
        let mut chunks = blobs.get_stream(&slug.key).await?;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            hash.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(PortError::unavailable)?;
        }
        out.flush().await.map_err(PortError::unavailable)?;
        if hex::encode(hash.finalize()) != slug.sha256 {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(PortError::Invalid(format!(
                "the slug {} does not match its sha256",
                slug.key
            )));
        }
        tokio::fs::rename(&partial, &file)
            .await
            .map_err(PortError::unavailable)
    }

    /// A container's output as lines, until it ends or the engine fails.
    fn log_lines(
        &self,
        name: &str,
        options: bollard::query_parameters::LogsOptions,
    ) -> impl futures::Stream<Item = String> + Send + 'static {
        let mut split = LineSplitter::default();
        self.docker
            .logs(name, Some(options))
            .take_while(|r| futures::future::ready(r.is_ok()))
            .flat_map(move |chunk| {
                let lines = chunk
                    .map(|c| split.push(&c.into_bytes()))
                    .unwrap_or_default();
                futures::stream::iter(lines)
            })
    }

    fn network(&self, app: &AppName) -> String {
        format!("gx-{}-{app}", self.instance)
    }

    /// Writes the keys that the app's SSH servers admit; they read the file at each login.
    pub fn write_ssh_keys(&self, app: &AppName, keys: &[String]) -> PortResult<()> {
        let dir = self.ssh_dir.join(app.as_str());
        std::fs::create_dir_all(&dir).map_err(PortError::unavailable)?;
        let tmp = dir.join(".authorized_keys.tmp");
        let mut text = keys.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(&tmp, text).map_err(PortError::unavailable)?;
        // The replicas' SSH server runs as an unprivileged user: it must be able to read.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |m| std::fs::Permissions::from_mode(m);
            std::fs::set_permissions(&dir, mode(0o755)).map_err(PortError::unavailable)?;
            std::fs::set_permissions(&tmp, mode(0o644)).map_err(PortError::unavailable)?;
        }
        std::fs::rename(&tmp, dir.join("authorized_keys")).map_err(PortError::unavailable)
    }

    /// The app's network, made if missing, on a bridge named for the packet filter rules
    /// of [`super::guard`]. The engine allows several networks with one name, so look
    /// before creating, and keep one.
    async fn ensure_network(&self, app: &AppName) -> PortResult<()> {
        let name = self.network(app);
        let mut filters = self.app_filters(app);
        filters.insert("name".to_owned(), vec![name.clone()]);
        let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let mut found: Vec<(String, String)> = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(map_err)?
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name.as_str()))
            .filter_map(|n| Some((n.created.clone().unwrap_or_default(), n.id?)))
            .collect();
        found.sort();
        if !found.is_empty() {
            for (_, extra) in found.iter().skip(1) {
                let _ = self.docker.remove_network(extra).await;
            }
            return Ok(());
        }
        let bridge = super::guard::bridge_name(&name, self.egress);
        let request = NetworkCreateRequest {
            name,
            driver: Some("bridge".into()),
            options: Some([("com.docker.network.bridge.name".to_owned(), bridge)].into()),
            labels: Some(labels(&[
                (LABEL_INSTANCE, &self.instance),
                (LABEL_APP, app.as_str()),
            ])),
            ..Default::default()
        };
        self.docker.create_network(request).await.map_err(map_err)?;
        Ok(())
    }

    /// The label filter that selects this instance's containers, networks and volumes.
    fn instance_filters(&self) -> HashMap<String, Vec<String>> {
        [(
            "label".to_owned(),
            vec![format!("{LABEL_INSTANCE}={}", self.instance)],
        )]
        .into()
    }

    /// The label filter that selects the app's containers, networks and volumes of this
    /// instance.
    fn app_filters(&self, app: &AppName) -> HashMap<String, Vec<String>> {
        let mut filters = self.instance_filters();
        if let Some(labels) = filters.get_mut("label") {
            labels.push(format!("{LABEL_APP}={app}"));
        }
        filters
    }

    /// This instance's containers: running ones, or (`all`) every one.
    async fn instance_containers(&self, all: bool) -> PortResult<Vec<ContainerSummary>> {
        self.list_containers(&self.instance_filters(), all).await
    }

    /// The containers matching `filters`: running ones, or (`all`) every one.
    async fn list_containers(
        &self,
        filters: &HashMap<String, Vec<String>>,
        all: bool,
    ) -> PortResult<Vec<ContainerSummary>> {
        let options = ListContainersOptionsBuilder::new()
            .all(all)
            .filters(filters)
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(map_err)
    }

    /// Every container of the app on this instance, running or not: replicas, release
    /// phases, and builds on this engine.
    async fn all_containers_of(&self, app: &AppName) -> PortResult<Vec<ContainerSummary>> {
        self.list_containers(&self.app_filters(app), true).await
    }

    /// The app's containers of this instance.
    async fn containers_of(&self, app: &AppName) -> PortResult<Vec<Existing>> {
        let list = self.all_containers_of(app).await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let name = c
                    .names
                    .as_ref()?
                    .first()?
                    .trim_start_matches('/')
                    .to_owned();
                let l = c.labels.as_ref()?;
                let version = self.runs_release(&name, l.get(LABEL_RELEASE)?.parse().ok()?);
                let index = l.get(LABEL_INDEX).and_then(|i| i.parse().ok()).unwrap_or(0);
                let running = c
                    .state
                    .as_ref()
                    .map(|s| s.to_string() == "running")
                    .unwrap_or(false);
                Some(Existing {
                    name,
                    version,
                    index,
                    running,
                    created: c.created.unwrap_or_default(),
                    ssh: published(&c, SSH_PORT),
                    http: published(&c, APP_PORT),
                })
            })
            .collect())
    }

    /// The container of a replica in slot `index`, or (`None`) of the release phase, which
    /// runs `release-phase` and is neither published nor part of the cluster's DNS name.
    fn container_body(&self, spec: &ReleaseSpec, index: Option<u32>) -> ContainerCreateBody {
        let network = self.network(&spec.app);
        let ssh_dir = self.ssh_dir.join(spec.app.as_str());
        // checked by ensure_slug before any container is made
        let slug_file = crate::blob_keys::slug_file(&spec.slug.key).unwrap_or("missing.tgz");
        let mut env: Vec<String> = spec
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", v.expose()))
            .collect();
        env.push(format!("SLUG_URL=file://{SLUG_MOUNT}"));
        env.push(format!("SLUG_SHA256={}", spec.slug.sha256));
        let (http, ssh) = (format!("{APP_PORT}/tcp"), format!("{SSH_PORT}/tcp"));
        let loopback = || {
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }])
        };
        let version = spec.version.0.to_string();
        let mut labels = labels(&[
            (LABEL_INSTANCE, &self.instance),
            (LABEL_APP, spec.app.as_str()),
        ]);
        // Only this release's slug, not the directory of every app's; a mount (unlike a
        // bind) fails when its source is missing instead of making a directory there.
        let slug = Mount {
            target: Some(SLUG_MOUNT.into()),
            source: Some(self.slug_dir.join(slug_file).display().to_string()),
            typ: Some(MountTypeEnum::BIND),
            read_only: Some(true),
            ..Default::default()
        };
        let mut binds = Vec::new();
        let mut body = ContainerCreateBody {
            image: Some(spec.slug.stack().runner_image()),
            ..Default::default()
        };
        // One tenant's replica cannot take the machine: its memory (swap included) and
        // processes are capped, its CPU share follows its size, it holds no capability,
        // its root file system is read-only (the app lives in memory, in /app and /tmp),
        // and its log is rotated by the engine.
        let tmpfs_size = spec.memory_bytes.max(64 << 20);
        let mut host = HostConfig {
            network_mode: Some(network.clone()),
            memory: Some(spec.memory_bytes),
            memory_swap: Some(spec.memory_bytes),
            pids_limit: Some(REPLICA_PIDS),
            cpu_shares: Some(cpu_shares(spec.memory_bytes)),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            readonly_rootfs: Some(true),
            // The slug unpacks into memory: several times faster than the overlay.
            tmpfs: Some(
                [
                    (
                        "/app".to_owned(),
                        format!("exec,uid=1000,gid=1000,mode=0755,size={tmpfs_size}"),
                    ),
                    (
                        "/tmp".to_owned(),
                        format!("exec,mode=1777,size={}", 256 << 20),
                    ),
                ]
                .into(),
            ),
            log_config: Some(bollard::models::HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(
                    [
                        ("max-size".to_owned(), "10m".to_owned()),
                        ("max-file".to_owned(), "3".to_owned()),
                    ]
                    .into(),
                ),
            }),
            ..Default::default()
        };
        match index {
            Some(index) => {
                env.push(format!("HOST_INDEX={index}"));
                labels.insert(LABEL_RELEASE.to_owned(), version);
                labels.insert(LABEL_INDEX.to_owned(), index.to_string());
                binds.push(format!("{}:/etc/gigalixir/ssh:ro", ssh_dir.display()));
                body.exposed_ports = Some(
                    [
                        (http.clone(), HashMap::new()),
                        (ssh.clone(), HashMap::new()),
                    ]
                    .into(),
                );
                // Loopback only: the router and `ps:ssh` are the ways in.
                host.port_bindings = Some([(http, loopback()), (ssh, loopback())].into());
                // The app's name resolves to every replica on its network: the cluster's DNS.
                body.networking_config = Some(NetworkingConfig {
                    endpoints_config: Some(
                        [(
                            network,
                            EndpointSettings {
                                aliases: Some(vec![spec.app.to_string()]),
                                ..Default::default()
                            },
                        )]
                        .into(),
                    ),
                });
            }
            None => {
                labels.insert(LABEL_PHASE.to_owned(), version);
                body.cmd = Some(vec!["release-phase".into()]);
            }
        }
        host.binds = Some(binds);
        host.mounts = Some(vec![slug]);
        body.env = Some(env);
        body.labels = Some(labels);
        body.host_config = Some(host);
        body
    }

    /// Copies the host file `from` into the container as `to` (written by the app user,
    /// readable by it alone), streamed through a process's standard input: the container's
    /// root file system is read-only, `to` lies in its `/tmp`.
    async fn copy_into(&self, container: &str, from: &std::path::Path, to: &str) -> PortResult<()> {
        use tokio::io::AsyncWriteExt;
        let mut file = tokio::fs::File::open(from).await.map_err(|e| {
            PortError::Invalid(format!("the slug {} is missing: {e}", from.display()))
        })?;
        let exec = self
            .docker
            .create_exec(
                container,
                bollard::models::ExecConfig {
                    cmd: Some(vec![
                        "sh".into(),
                        "-c".into(),
                        "umask 077 && cat >\"$1\"".into(),
                        "sh".into(),
                        to.into(),
                    ]),
                    user: Some("app".into()),
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(map_err)?;
        if let bollard::exec::StartExecResults::Attached {
            mut output,
            mut input,
        } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(map_err)?
        {
            tokio::io::copy(&mut file, &mut input)
                .await
                .map_err(PortError::unavailable)?;
            input.shutdown().await.map_err(PortError::unavailable)?;
            drop(input);
            while output.next().await.is_some() {}
        }
        let code = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(map_err)?
            .exit_code
            .unwrap_or(-1);
        if code == 0 {
            Ok(())
        } else {
            Err(PortError::Invalid(format!(
                "could not copy the new slug into {container} (exit code {code})"
            )))
        }
    }

    /// Runs `cmd` in the container as the app user; its outcome does not matter.
    async fn exec_quietly(&self, container: &str, cmd: Vec<String>) {
        let Ok(exec) = self
            .docker
            .create_exec(
                container,
                bollard::models::ExecConfig {
                    cmd: Some(cmd),
                    user: Some("app".into()),
                    ..Default::default()
                },
            )
            .await
        else {
            return;
        };
        let _ = self.docker.start_exec(&exec.id, None).await;
    }

    /// Creates and starts a container, naming the image script when the image is missing.
    async fn create_and_start(&self, name: &str, body: ContainerCreateBody) -> PortResult<()> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let image = body.image.clone().unwrap_or_default();
        self.docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| match map_err(e) {
                PortError::NotFound => PortError::Invalid(format!(
                    "the image {image} is missing: the operator runs scripts/images{}",
                    image
                        .strip_prefix("gigalixir-runner:")
                        .filter(|s| *s == "forky")
                        .map(|s| format!(" --stack {s}"))
                        .unwrap_or_default()
                )),
                other => other,
            })?;
        self.docker
            .start_container(name, None::<StartContainerOptions>)
            .await
            .map_err(map_err)
    }

    /// Runs the Procfile's `release:` command once in a one-off container of the release.
    async fn run_release_phase(&self, spec: &ReleaseSpec) -> PortResult<PhaseOutcome> {
        self.ensure_slug(&spec.slug).await?;
        self.ensure_network(&spec.app).await?;
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let name = format!(
            "gx-{}-{}-v{}-release-{suffix}",
            self.instance, spec.app, spec.version.0
        );
        self.create_and_start(&name, self.container_body(spec, None))
            .await?;
        let mut waits = self.docker.wait_container(
            &name,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        let finished = tokio::time::timeout(RELEASE_PHASE_TIMEOUT, async {
            while let Some(w) = waits.next().await {
                if w.is_err() {
                    break;
                }
            }
        })
        .await;
        let output = self.tail(&name, 200).await;
        let info = self
            .docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .map_err(map_err)?;
        self.remove(&name).await?;
        let code = info.state.and_then(|s| s.exit_code).unwrap_or(-1);
        if finished.is_err() {
            return Ok(PhaseOutcome::Failed {
                reason: format!(
                    "the release phase ran longer than {} minutes",
                    RELEASE_PHASE_TIMEOUT.as_secs() / 60
                ),
                output,
            });
        }
        if code != 0 {
            let tail = output.len().saturating_sub(50);
            return Ok(PhaseOutcome::Failed {
                reason: format!(
                    "the release phase (the Procfile's release: command) exited with code {code}"
                ),
                output: output[tail..].to_vec(),
            });
        }
        Ok(PhaseOutcome::Done { output })
    }

    /// Starts a one-off job of `spec`: `command` under `sh -c`, killed by `timeout` inside
    /// its container at `limit` (so even if this process dies), and here a little after.
    async fn start_job(
        &self,
        spec: &ReleaseSpec,
        command: &str,
        limit: Duration,
    ) -> PortResult<JobRun> {
        self.ensure_slug(&spec.slug).await?;
        self.ensure_network(&spec.app).await?;
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let name = format!(
            "gx-{}-{}-v{}-run-{suffix}",
            self.instance, spec.app, spec.version.0
        );
        let mut body = self.container_body(spec, None);
        if let Some(labels) = body.labels.as_mut() {
            labels.remove(LABEL_PHASE);
            labels.insert(LABEL_JOB.to_owned(), spec.version.0.to_string());
        }
        body.cmd = Some(vec![
            "timeout".into(),
            "-s".into(),
            "KILL".into(),
            limit.as_secs().max(1).to_string(),
            "sh".into(),
            "-c".into(),
            command.to_owned(),
        ]);
        self.create_and_start(&name, body).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<JobEvent>();
        let me = self.clone();
        let job = name.clone();
        tokio::spawn(async move {
            let options = LogsOptionsBuilder::new()
                .stdout(true)
                .stderr(true)
                .follow(true)
                .build();
            let mut logs = me.docker.logs(&job, Some(options));
            let mut split = LineSplitter::default();
            let mut received = 0usize;
            // Its output until it ends (its own timeout kills it at the limit; this one
            // is the backstop).
            let _ = tokio::time::timeout(limit + Duration::from_secs(10), async {
                while let Some(Ok(chunk)) = logs.next().await {
                    let bytes = chunk.into_bytes();
                    received += bytes.len();
                    for line in split.push(&bytes) {
                        let _ = tx.send(JobEvent::Line(line));
                    }
                }
            })
            .await;
            let _ = me
                .docker
                .kill_container(
                    &job,
                    None::<bollard::query_parameters::KillContainerOptions>,
                )
                .await;
            let mut waits = me.docker.wait_container(
                &job,
                None::<bollard::query_parameters::WaitContainerOptions>,
            );
            while let Some(w) = waits.next().await {
                if w.is_err() {
                    break;
                }
            }
            // A following read misses the engine's last output when it ends without a
            // newline (the engine's race): what it has past the bytes received comes now.
            let options = LogsOptionsBuilder::new().stdout(true).stderr(true).build();
            let mut rest = me.docker.logs(&job, Some(options));
            let mut skip = received;
            while let Some(Ok(chunk)) = rest.next().await {
                let bytes = chunk.into_bytes();
                if skip >= bytes.len() {
                    skip -= bytes.len();
                    continue;
                }
                for line in split.push(&bytes[skip..]) {
                    let _ = tx.send(JobEvent::Line(line));
                }
                skip = 0;
            }
            if let Some(line) = split.finish() {
                let _ = tx.send(JobEvent::Line(line));
            }
            let code = me
                .docker
                .inspect_container(&job, None::<InspectContainerOptions>)
                .await
                .ok()
                .and_then(|i| i.state)
                .and_then(|s| s.exit_code)
                .unwrap_or(-1);
            let _ = tx.send(JobEvent::Exited(code));
            if let Err(err) = me.remove(&job).await {
                tracing::warn!(job, error = %err, "a finished job's container was not removed");
            }
        });
        let events = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|event| (event, rx))
        })
        .boxed();
        Ok(JobRun { name, events })
    }

    /// Starts one replica of `spec` in slot `index`.
    async fn start(&self, spec: &ReleaseSpec, index: u32) -> PortResult<Started> {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let name = format!(
            "gx-{}-{}-v{}-{index}-{suffix}",
            self.instance, spec.app, spec.version.0
        );
        let network = self.network(&spec.app);
        let ssh_dir = self.ssh_dir.join(spec.app.as_str());
        if !ssh_dir.join("authorized_keys").exists() {
            self.write_ssh_keys(&spec.app, &[])?;
        }
        let http = format!("{APP_PORT}/tcp");
        let mut body = self.container_body(spec, Some(index));
        let hot = self.hot_dir.join(&name);
        std::fs::create_dir_all(&hot).map_err(PortError::from_io)?;
        if let Some(binds) = body.host_config.as_mut().and_then(|h| h.binds.as_mut()) {
            binds.push(format!("{}:{HOT_MOUNT}:ro", hot.display()));
        }
        if let Err(err) = self.create_and_start(&name, body).await {
            let _ = self.forget_hot(&name);
            return Err(err);
        }
        let info = self
            .docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .map_err(map_err)?;
        let settings = info.network_settings.unwrap_or_default();
        let ip = settings
            .networks
            .as_ref()
            .and_then(|n| n.get(&network))
            .and_then(|e| e.ip_address.clone())
            .and_then(|ip| ip.parse().ok())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let host_port = settings
            .ports
            .as_ref()
            .and_then(|p| p.get(&http).cloned().flatten())
            .and_then(|b| b.first().and_then(|b| b.host_port.clone()))
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(0);
        Ok(Started {
            name,
            ip,
            published: SocketAddr::from(([127, 0, 0, 1], host_port)),
        })
    }

    /// Waits until the container accepts connections on the app port, or says why not.
    /// Probes every [`PROBE_EVERY`]; asks the engine whether the container still runs
    /// every [`ALIVE_EVERY`] (a probe costs a connection attempt, an engine call more).
    async fn wait_healthy(&self, started: &Started, spec: &ReleaseSpec) -> Result<(), String> {
        let timeout = spec.boot_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::from("no answer");
        let mut asked: Option<tokio::time::Instant> = None;
        loop {
            if asked.is_none_or(|at| at.elapsed() >= ALIVE_EVERY) {
                asked = Some(tokio::time::Instant::now());
                let info = self
                    .docker
                    .inspect_container(&started.name, None::<InspectContainerOptions>)
                    .await
                    .map_err(|e| format!("the container vanished: {e}"))?;
                let state = info.state.unwrap_or_default();
                if !state.running.unwrap_or(false) {
                    let code = state.exit_code.unwrap_or(-1);
                    return Err(if state.oom_killed.unwrap_or(false) {
                        "the release ran out of memory while booting".into()
                    } else {
                        format!("the release exited with code {code} while booting")
                    });
                }
            }
            // Straight to the container: a published port accepts connections through the
            // engine's proxy even when nothing listens inside.
            let target = SocketAddr::new(started.ip, APP_PORT);
            let probe = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(target),
            )
            .await;
            if matches!(probe, Ok(Ok(_))) {
                match &spec.health_path {
                    None => return Ok(()),
                    Some(path) => match http_status(target, path).await {
                        Ok(code) if code == spec.health_status => return Ok(()),
                        Ok(code) => last = format!("it answered {code}"),
                        Err(why) => last = why,
                    },
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(match &spec.health_path {
                    None => format!(
                        "the release did not accept connections on port {APP_PORT} within {} s",
                        timeout.as_secs()
                    ),
                    Some(path) => format!(
                        "the release did not answer {} on GET {path} within {} s ({last})",
                        spec.health_status,
                        timeout.as_secs()
                    ),
                });
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// Starts replicas in `slots` and waits for all; on any failure removes them all.
    async fn start_healthy(
        &self,
        spec: &ReleaseSpec,
        slots: &[u32],
    ) -> PortResult<Result<Vec<Started>, DeployOutcome>> {
        let mut started = Vec::new();
        for index in slots {
            match self.start(spec, *index).await {
                Ok(s) => started.push(s),
                Err(err) => {
                    for s in &started {
                        let _ = self.remove(&s.name).await;
                    }
                    return Err(err);
                }
            }
        }
        let checks =
            futures::future::join_all(started.iter().map(|s| self.wait_healthy(s, spec))).await;
        if let Some((i, Err(reason))) = checks.iter().enumerate().find(|(_, r)| r.is_err()) {
            let output = self.tail(&started[i].name, 50).await;
            for s in &started {
                self.remove(&s.name).await?;
            }
            return Ok(Err(DeployOutcome::Failed {
                reason: reason.clone(),
                output,
            }));
        }
        Ok(Ok(started))
    }

    async fn tail(&self, name: &str, lines: usize) -> Vec<String> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut logs = self.docker.logs(name, Some(options));
        let mut split = LineSplitter::default();
        let mut out = Vec::new();
        while let Some(Ok(chunk)) = logs.next().await {
            out.extend(split.push(&chunk.into_bytes()));
        }
        out.extend(split.finish());
        out
    }

    async fn stop(&self, name: &str, drain: Duration) -> PortResult<()> {
        let seconds = i32::try_from(drain.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(seconds).build();
        match self
            .docker
            .stop_container(name, Some(options))
            .await
            .map_err(map_err)
        {
            Ok(()) | Err(PortError::NotFound) => {}
            Err(err) => return Err(err),
        }
        self.remove(name).await
    }

    /// The release a container runs: its label's, unless a hot upgrade moved it on.
    fn runs_release(&self, name: &str, label: u32) -> u32 {
        self.hot_upgraded_to(name).unwrap_or(label)
    }

    /// The release a hot upgrade moved `name` to, if one did.
    fn hot_upgraded_to(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.hot_dir.join(name).join("release"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
    }

    /// Records that `name` runs `version` (`None`: what its label says).
    fn set_runs_release(&self, name: &str, version: Option<u32>) -> PortResult<()> {
        let dir = self.hot_dir.join(name);
        let Some(version) = version else {
            return match std::fs::remove_file(dir.join("release")) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    Err(PortError::from_io(err))
                }
                _ => Ok(()),
            };
        };
        std::fs::create_dir_all(&dir).map_err(PortError::from_io)?;
        let part = dir.join(".release.part");
        std::fs::write(&part, version.to_string()).map_err(PortError::from_io)?;
        std::fs::rename(&part, dir.join("release")).map_err(PortError::from_io)
    }

    /// Puts `slug` in the hot directory of `name` as `file` (what the replica reads at
    /// [`HOT_MOUNT`]): a hard link of the slug store's file (a copy across file systems).
    fn stage_hot_slug(&self, name: &str, slug: &std::path::Path, file: &str) -> PortResult<()> {
        let dir = self.hot_dir.join(name);
        let part = dir.join(format!(".{file}.part"));
        let _ = std::fs::remove_file(&part);
        if std::fs::hard_link(slug, &part).is_err() {
            std::fs::copy(slug, &part).map_err(PortError::from_io)?;
        }
        std::fs::rename(&part, dir.join(file)).map_err(PortError::from_io)
    }

    /// Forgets what hot upgrades left for container `name`.
    fn forget_hot(&self, name: &str) -> PortResult<()> {
        match std::fs::remove_dir_all(self.hot_dir.join(name)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(PortError::from_io(err)),
            _ => Ok(()),
        }
    }

    async fn remove(&self, name: &str) -> PortResult<()> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self
            .docker
            .remove_container(name, Some(options))
            .await
            .map_err(map_err)
        {
            Ok(()) | Err(PortError::NotFound) => self.forget_hot(name),
            Err(err) => Err(err),
        }
    }

    /// Stops containers in the background: traffic has already left them.
    fn retire(&self, names: Vec<String>, drain: Duration) {
        if names.is_empty() {
            return;
        }
        if let Ok(mut retiring) = self.retiring.lock() {
            retiring.extend(names.iter().cloned());
        }
        let me = self.clone();
        tokio::spawn(async move {
            for name in names {
                if let Err(err) = me.stop(&name, drain).await {
                    tracing::warn!(container = %name, error = %err, "could not stop an old replica");
                }
                if let Ok(mut retiring) = me.retiring.lock() {
                    retiring.remove(&name);
                }
            }
        });
    }

    fn live_of(&self, app: &AppName) -> Option<Vec<LiveReplica>> {
        self.live.lock().ok().and_then(|l| l.get(app).cloned())
    }

    fn set_live(&self, app: &AppName, replicas: Vec<LiveReplica>) {
        if let Ok(mut live) = self.live.lock() {
            live.insert(app.clone(), replicas);
        }
        self.routes_changed();
    }

    fn routes_changed(&self) {
        self.route_changes
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// A counter that grows whenever an app's live replicas change (a deploy, a scale, a
    /// replica brought back, an app removed): a router that caches where apps run drops
    /// its cache when it moves.
    pub fn route_changes(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.route_changes.clone()
    }

    /// Names of the replicas taking traffic.
    async fn serving(&self, app: &AppName) -> PortResult<Vec<String>> {
        let live = match self.live_of(app) {
            Some(live) if !live.is_empty() => live,
            _ => self.discover_live(app).await?,
        };
        Ok(live.into_iter().map(|(name, _)| name).collect())
    }

    /// The live release's running replicas, from the engine (after a platform restart).
    async fn discover_live(&self, app: &AppName) -> PortResult<Vec<LiveReplica>> {
        let containers = self.containers_of(app).await?;
        let newest = containers
            .iter()
            .filter(|c| c.running)
            .map(|c| c.version)
            .max();
        let live: Vec<(String, SocketAddr)> = containers
            .into_iter()
            .filter(|c| c.running && Some(c.version) == newest)
            .filter_map(|c| Some((c.name, SocketAddr::from(([127, 0, 0, 1], c.http?)))))
            .collect();
        if !live.is_empty() {
            self.set_live(app, live.clone());
        }
        Ok(live)
    }
}

/// How often a booting replica's port is tried.
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// How often the engine is asked whether a booting replica still runs.
const ALIVE_EVERY: Duration = Duration::from_millis(100);

#[async_trait]
impl Runtime for DockerRuntime {
    async fn deploy(&self, spec: &ReleaseSpec) -> PortResult<DeployOutcome> {
        // independent of each other: at once
        let ((), (), existing) = tokio::try_join!(
            self.ensure_slug(&spec.slug),
            self.ensure_network(&spec.app),
            self.containers_of(&spec.app)
        )?;
        let current: Vec<&Existing> = existing
            .iter()
            .filter(|c| c.version == spec.version.0 && c.running)
            .collect();
        let wanted = spec.replicas.max(1);
        // Already deployed (a redelivery): make it live again and stop.
        if current.len() as u32 >= wanted {
            let live = current
                .iter()
                .filter_map(|c| Some((c.name.clone(), SocketAddr::from(([127, 0, 0, 1], c.http?)))))
                .collect();
            self.set_live(&spec.app, live);
            return Ok(DeployOutcome::Healthy);
        }
        let old: Vec<&Existing> = existing
            .iter()
            .filter(|c| c.running && c.version != spec.version.0)
            .collect();
        // Replicas of this release that already run keep their slots (a redelivery
        // part-way, or those a failed hot upgrade did not change); only the other slots
        // get new replicas.
        let mut kept: Vec<&Existing> = Vec::new();
        for c in &current {
            if c.index < wanted && !kept.iter().any(|k| k.index == c.index) {
                kept.push(c);
            }
        }
        let kept_live: Vec<LiveReplica> = kept
            .iter()
            .filter_map(|c| Some((c.name.clone(), SocketAddr::from(([127, 0, 0, 1], c.http?)))))
            .collect();
        let missing: Vec<u32> = (0..wanted)
            .filter(|i| !kept.iter().any(|k| k.index == *i))
            .collect();
        if old.is_empty() {
            let started = match self.start_healthy(spec, &missing).await? {
                Ok(started) => started,
                Err(failed) => return Ok(failed),
            };
            let mut live = kept_live;
            live.extend(started.into_iter().map(|s| (s.name, s.published)));
            self.set_live(&spec.app, live.clone());
            self.retire(
                existing
                    .into_iter()
                    .map(|c| c.name)
                    .filter(|n| !live.iter().any(|(l, _)| l == n))
                    .collect(),
                spec.drain,
            );
            return Ok(DeployOutcome::Healthy);
        }
        // Roll one slot at a time: each new replica takes traffic once healthy, and only
        // then does the old replica of its slot leave the rotation. The old ones keep
        // running until every slot is replaced, so a failure part-way puts them back.
        let before = match self.live_of(&spec.app) {
            Some(live) if !live.is_empty() => live,
            _ => old
                .iter()
                .filter_map(|c| Some((c.name.clone(), SocketAddr::from(([127, 0, 0, 1], c.http?)))))
                .collect(),
        };
        let mut live = before.clone();
        let mut fresh: Vec<String> = Vec::new();
        for index in missing {
            let started = match self.start_healthy(spec, &[index]).await? {
                Ok(mut started) => started.remove(0),
                Err(failed) => {
                    self.set_live(&spec.app, before);
                    for name in fresh {
                        self.remove(&name).await?;
                    }
                    return Ok(failed);
                }
            };
            let leaving: Vec<&str> = old
                .iter()
                .filter(|c| c.index == index)
                .map(|c| c.name.as_str())
                .collect();
            live.retain(|(name, _)| !leaving.contains(&name.as_str()));
            fresh.push(started.name.clone());
            live.push((started.name, started.published));
            self.set_live(&spec.app, live.clone());
        }
        let mut serving: Vec<LiveReplica> = live
            .into_iter()
            .filter(|(n, _)| fresh.contains(n))
            .collect();
        serving.extend(kept_live);
        let replaced: Vec<String> = existing
            .iter()
            .map(|c| c.name.clone())
            .filter(|n| !serving.iter().any(|(s, _)| s == n))
            .collect();
        self.set_live(&spec.app, serving);
        self.retire(replaced, spec.drain);
        Ok(DeployOutcome::Healthy)
    }

    async fn release_phase(&self, spec: &ReleaseSpec) -> PortResult<PhaseOutcome> {
        self.run_release_phase(spec).await
    }

    async fn runs(&self, app: &AppName, version: ReleaseVersion) -> PortResult<bool> {
        Ok(self
            .containers_of(app)
            .await?
            .iter()
            .any(|c| c.version == version.0 && c.running))
    }

    async fn endpoints(&self, app: &AppName) -> PortResult<Vec<SocketAddr>> {
        let live = match self.live_of(app) {
            Some(live) => live,
            None => self.discover_live(app).await?,
        };
        Ok(live.into_iter().map(|(_, addr)| addr).collect())
    }

    async fn remove_app(&self, app: &AppName) -> PortResult<()> {
        if let Ok(mut live) = self.live.lock() {
            live.remove(app);
        }
        self.routes_changed();
        let filters = self.app_filters(app);
        // A build still running is stopped too: its app is gone.
        let containers = self.all_containers_of(app).await?;
        for c in containers {
            let name = c.names.as_ref().and_then(|n| n.first()).cloned().or(c.id);
            if let Some(name) = name {
                self.remove(name.trim_start_matches('/')).await?;
            }
        }
        let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let networks = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(map_err)?;
        for id in networks.into_iter().filter_map(|n| n.id) {
            match self.docker.remove_network(&id).await.map_err(map_err) {
                Ok(()) | Err(PortError::NotFound) => {}
                Err(err) => return Err(err),
            }
        }
        // The app's build cache, kept by the builder on this engine.
        let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
        let volumes = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(map_err)?;
        for volume in volumes.volumes.unwrap_or_default() {
            match self
                .docker
                .remove_volume(&volume.name, None::<RemoveVolumeOptions>)
                .await
                .map_err(map_err)
            {
                Ok(()) | Err(PortError::NotFound) => {}
                Err(err) => return Err(err),
            }
        }
        let _ = std::fs::remove_dir_all(self.ssh_dir.join(app.as_str()));
        Ok(())
    }

    async fn run_job(
        &self,
        release: &ReleaseSpec,
        command: &str,
        limit: Duration,
    ) -> PortResult<JobRun> {
        self.start_job(release, command, limit).await
    }

    async fn jobs(&self, app: &AppName) -> PortResult<Vec<JobInfo>> {
        let mut jobs: Vec<JobInfo> = self
            .all_containers_of(app)
            .await?
            .into_iter()
            .filter(|c| c.state.as_ref().is_some_and(|s| s.to_string() == "running"))
            .filter_map(|c| {
                let version = c.labels.as_ref()?.get(LABEL_JOB)?.parse().ok()?;
                Some(JobInfo {
                    name: c
                        .names
                        .as_ref()?
                        .first()?
                        .trim_start_matches('/')
                        .to_owned(),
                    version,
                    since: Utc
                        .timestamp_opt(c.created.unwrap_or_default(), 0)
                        .single()
                        .unwrap_or_else(Utc::now),
                })
            })
            .collect();
        jobs.sort_by(|a, b| a.since.cmp(&b.since).then(a.name.cmp(&b.name)));
        Ok(jobs)
    }

    async fn replica_logs(
        &self,
        app: &AppName,
        name: &str,
        since: Option<DateTime<Utc>>,
    ) -> PortResult<BoxStream<'static, String>> {
        // Only a container of this app (a replica or a job), by its labels.
        if !self.all_containers_of(app).await?.iter().any(|c| {
            c.names
                .iter()
                .flatten()
                .any(|n| n.trim_start_matches('/') == name)
        }) {
            return Err(PortError::NotFound);
        }
        let mut options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(true);
        if let Some(since) = since {
            options = options.since(i32::try_from(since.timestamp()).unwrap_or(i32::MAX));
        }
        Ok(self.log_lines(name, options.build()).boxed())
    }

    async fn kill(&self, app: &AppName, replica: &str) -> PortResult<()> {
        // Only a container of this app, by the name the app's own listing gives.
        if !self
            .containers_of(app)
            .await?
            .iter()
            .any(|c| c.name == replica && c.running)
        {
            return Err(PortError::NotFound);
        }
        self.docker
            .kill_container(
                replica,
                None::<bollard::query_parameters::KillContainerOptions>,
            )
            .await
            .map_err(PortError::unavailable)?;
        tracing::info!(app = %app, replica, "replica killed (ps:kill)");
        Ok(())
    }

    async fn replicas(&self, app: &AppName) -> PortResult<Vec<Replica>> {
        let live: Vec<String> = self
            .live_of(app)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let mut out: Vec<Replica> = self
            .containers_of(app)
            .await?
            .into_iter()
            .map(|c| Replica {
                state: match (c.running, live.contains(&c.name)) {
                    (true, true) => ReplicaState::Running,
                    (true, false) if live.is_empty() => ReplicaState::Running,
                    (true, false) => ReplicaState::Starting,
                    (false, _) => ReplicaState::Stopped,
                },
                since: Utc
                    .timestamp_opt(c.created, 0)
                    .single()
                    .unwrap_or_else(Utc::now),
                ssh: c.ssh.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
                name: c.name,
                index: c.index,
                version: ReleaseVersion(c.version),
            })
            .collect();
        out.sort_by_key(|r| (r.index, r.version));
        Ok(out)
    }

    async fn logs(
        &self,
        app: &AppName,
        tail: usize,
        follow: bool,
    ) -> PortResult<BoxStream<'static, String>> {
        // The web replicas, then the one-off jobs that run now.
        let mut sources: Vec<(String, String)> = self
            .containers_of(app)
            .await?
            .into_iter()
            .filter(|c| c.running)
            .map(|c| (c.name, format!("web.{}", c.index + 1)))
            .collect();
        sources.extend(self.jobs(app).await?.into_iter().map(|j| {
            let short = j.name.rsplit('-').next().unwrap_or_default().to_owned();
            (j.name, format!("run.{short}"))
        }));
        let mut streams = Vec::new();
        for (name, process) in sources {
            let options = LogsOptionsBuilder::new()
                .stdout(true)
                .stderr(true)
                .follow(follow)
                .tail(&tail.to_string())
                .build();
            let prefix = format!("{app}[{process}]: ");
            let lines = self
                .log_lines(&name, options)
                .map(move |line| format!("{prefix}{line}"));
            streams.push(lines.boxed());
        }
        Ok(futures::stream::select_all(streams).boxed())
    }

    async fn hot_upgrade(&self, spec: &ReleaseSpec) -> PortResult<HotOutcome> {
        self.ensure_slug(&spec.slug).await?;
        let running: Vec<Existing> = self
            .containers_of(&spec.app)
            .await?
            .into_iter()
            .filter(|c| c.running)
            .collect();
        if running.is_empty() {
            return Ok(HotOutcome::NotPossible {
                reason: "nothing runs yet (first deploy)".into(),
            });
        }
        // Each replica sees only its own slug: the new one reaches it through its hot
        // directory as `next.tgz` (a hard link, read-only inside), and becomes `slug.tgz`,
        // what it boots after a crash, once installed. A replica made before replicas had
        // a hot directory gets a copy streamed into its /tmp instead.
        let file = self.slug_path(&spec.slug.key)?;
        let mut output = Vec::new();
        for c in &running {
            let staged = self.hot_dir.join(&c.name).is_dir();
            let slug = if staged {
                self.stage_hot_slug(&c.name, &file, "next.tgz")?;
                format!("{HOT_MOUNT}/next.tgz")
            } else {
                let copy = format!("/tmp/gigalixir-upgrade-{}.tgz", &spec.slug.sha256[..12]);
                self.copy_into(&c.name, &file, &copy).await?;
                copy
            };
            // Recorded before the upgrade starts: if the platform dies during it, or it
            // fails once it changed something, the replica counts as the new release's,
            // which a deploy of the old one replaces (a restart on a known slug rather than
            // code nobody knows runs).
            let before = self.hot_upgraded_to(&c.name);
            self.set_runs_release(&c.name, Some(spec.version.0))?;
            let exec = self
                .docker
                .create_exec(
                    &c.name,
                    bollard::models::ExecConfig {
                        cmd: Some(vec![
                            "gigalixir-hot-upgrade".into(),
                            slug.clone(),
                            spec.slug.sha256.clone(),
                        ]),
                        user: Some("app".into()),
                        attach_stdout: Some(true),
                        attach_stderr: Some(true),
                        ..Default::default()
                    },
                )
                .await
                .map_err(map_err)?;
            let mut lines = Vec::new();
            if let bollard::exec::StartExecResults::Attached { mut output, .. } = self
                .docker
                .start_exec(&exec.id, None)
                .await
                .map_err(map_err)?
            {
                // What the app prints is kept to its last lines, and the upgrade has a
                // time limit: a replica cannot hold the deploy or the platform's memory.
                let read = tokio::time::timeout(HOT_UPGRADE_TIMEOUT, async {
                    let mut split = LineSplitter::default();
                    while let Some(Ok(chunk)) = output.next().await {
                        lines.extend(split.push(&chunk.into_bytes()));
                        if lines.len() > HOT_UPGRADE_LINES {
                            lines.drain(..lines.len() - HOT_UPGRADE_LINES);
                        }
                    }
                    lines.extend(split.finish());
                })
                .await;
                if read.is_err() {
                    return Ok(HotOutcome::Failed {
                        reason: format!(
                            "the hot upgrade of web.{} did not finish within {} s",
                            c.index + 1,
                            HOT_UPGRADE_TIMEOUT.as_secs()
                        ),
                        output: lines,
                    });
                }
            }
            let code = self
                .docker
                .inspect_exec(&exec.id)
                .await
                .map_err(map_err)?
                .exit_code
                .unwrap_or(-1);
            if staged {
                let next = self.hot_dir.join(&c.name).join("next.tgz");
                if code == 0 {
                    std::fs::rename(&next, self.hot_dir.join(&c.name).join("slug.tgz"))
                        .map_err(PortError::from_io)?;
                } else {
                    let _ = std::fs::remove_file(&next);
                }
            } else {
                self.exec_quietly(&c.name, vec!["rm".into(), "-f".into(), slug])
                    .await;
            }
            // Kept as the new release's unless the replica said nothing changed in it: one
            // the upgrade may have changed is replaced by the deploy that follows a failure.
            if matches!(code, 3 | 4) {
                self.set_runs_release(&c.name, before)?;
            }
            let n = c.index + 1;
            if let Some(end) = HotOutcome::of_replica(n, code, &lines) {
                return Ok(end);
            }
            output.extend(lines.into_iter().map(|l| format!("web.{n}: {l}")));
        }
        Ok(HotOutcome::Upgraded { output })
    }

    async fn adopt(&self, spec: &ReleaseSpec, from: ReleaseVersion) -> PortResult<bool> {
        let running: Vec<Existing> = self
            .containers_of(&spec.app)
            .await?
            .into_iter()
            .filter(|c| c.running && c.version == from.0)
            .collect();
        if running.is_empty() {
            return Ok(false);
        }
        // Recorded like a hot upgrade's: the replicas count as the release's from now on
        // (a crash restarts the slug they hold, which is the release's).
        for c in &running {
            self.set_runs_release(&c.name, Some(spec.version.0))?;
        }
        // Routes them again, and fills the slots none of them holds.
        match self.deploy(spec).await? {
            DeployOutcome::Healthy => Ok(true),
            DeployOutcome::Failed { reason, .. } => {
                tracing::warn!(app = %spec.app, %reason, "a slot missing from the adopted replicas did not start");
                Ok(true)
            }
        }
    }

    async fn remove_orphans(&self, store: &dyn crate::ports::Store) -> PortResult<Vec<String>> {
        // the inherent method: what the store says nothing will use again
        DockerRuntime::remove_orphans(self, store).await
    }

    async fn set_ssh_keys(&self, app: &AppName, keys: &[String]) -> PortResult<()> {
        self.write_ssh_keys(app, keys)
    }

    async fn scale(&self, spec: &ReleaseSpec) -> PortResult<DeployOutcome> {
        self.ensure_slug(&spec.slug).await?;
        self.ensure_network(&spec.app).await?;
        let existing = self.containers_of(&spec.app).await?;
        // The replicas taking traffic, whatever release label they carry (a hot upgrade
        // moves replicas to a new release without replacing them); replicas still
        // draining after a deploy are not the app's any more.
        let serving = self.serving(&spec.app).await?;
        let mine: Vec<&Existing> = existing
            .iter()
            .filter(|c| c.running && serving.contains(&c.name))
            .collect();
        let have: Vec<u32> = mine.iter().map(|c| c.index).collect();
        let missing: Vec<u32> = (0..spec.replicas).filter(|i| !have.contains(i)).collect();
        let mut live: Vec<(String, SocketAddr)> = mine
            .iter()
            .filter(|c| c.index < spec.replicas)
            .filter_map(|c| Some((c.name.clone(), SocketAddr::from(([127, 0, 0, 1], c.http?)))))
            .collect();
        if !missing.is_empty() {
            match self.start_healthy(spec, &missing).await? {
                Ok(started) => live.extend(started.into_iter().map(|s| (s.name, s.published))),
                Err(failed) => return Ok(failed),
            }
        }
        let extra: Vec<String> = mine
            .iter()
            .filter(|c| c.index >= spec.replicas)
            .map(|c| c.name.clone())
            .collect();
        self.set_live(&spec.app, live);
        self.retire(extra, spec.drain);
        Ok(DeployOutcome::Healthy)
    }

    async fn restart(&self, spec: &ReleaseSpec) -> PortResult<DeployOutcome> {
        self.ensure_slug(&spec.slug).await?;
        self.ensure_network(&spec.app).await?;
        let serving = self.serving(&spec.app).await?;
        let old: Vec<Existing> = self
            .containers_of(&spec.app)
            .await?
            .into_iter()
            .filter(|c| c.running && serving.contains(&c.name))
            .collect();
        let mut live = self.live_of(&spec.app).unwrap_or_default();
        for index in 0..spec.replicas {
            let fresh = match self.start_healthy(spec, &[index]).await? {
                Ok(mut started) => started.remove(0),
                Err(failed) => return Ok(failed),
            };
            let retired: Vec<String> = old
                .iter()
                .filter(|c| c.index == index)
                .map(|c| c.name.clone())
                .collect();
            live.retain(|(name, _)| !retired.contains(name));
            live.push((fresh.name, fresh.published));
            self.set_live(&spec.app, live.clone());
            for name in retired {
                self.stop(&name, spec.drain).await?;
            }
        }
        Ok(DeployOutcome::Healthy)
    }
}

/// The status of `GET path` on a replica, within two seconds.
async fn http_status(target: SocketAddr, path: &str) -> Result<u16, String> {
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Empty<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://{target}{path}")
        .parse()
        .map_err(|e| format!("bad health path: {e}"))?;
    let request = http::Request::get(uri)
        .header("host", "localhost")
        .header("user-agent", "gigalixir-health-check")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(2), client.request(request)).await {
        Ok(Ok(resp)) => Ok(resp.status().as_u16()),
        Ok(Err(err)) => Err(format!("the health check failed: {err}")),
        Err(_) => Err("the health check timed out".into()),
    }
}
