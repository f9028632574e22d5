//! [`KubeRuntime`]: applies the rendered objects, follows rollouts, reads pods and logs.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use futures::stream::BoxStream;
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerStateTerminated, Namespace, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, AttachParams, DeleteParams, ListParams, LogParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::render::{
    app_selector, canary_name, canary_service, namespace_object, one_off_job, release_phase_job,
    release_phase_selector, release_selector, render, render_canary, render_domains, restart_patch,
    ssh_keys_object, upgrading_patch, web_ingress, AppObjects, JOB_START_ALLOWANCE,
};
use super::{
    namespace_of, KubeSettings, SlugUrls, ANNOTATION_RESTARTED_AT, ANNOTATION_TEMPLATE,
    ANNOTATION_UPGRADING, API_APP_ROLE, CANARY, DOMAINS, DOMAINS_MANAGER, FIELD_MANAGER,
    HOT_UPGRADE_MANAGER, LABEL_CANARY_OF, LABEL_JOB, LABEL_RELEASE, LIBCLUSTER, MAINTENANCE,
    MAINTENANCE_HEADERS, RELEASE_PHASE_TIMEOUT, RESTART_MANAGER, SSH_KEYS, SSH_KEYS_MANAGER,
    SSH_SERVICE, WEB,
};
use crate::domain::{AppName, Fqdn, ReleaseVersion};
use crate::error::{PortError, PortResult};
use crate::lines::LineSplitter;
use crate::ports::runtime::{
    DeployOutcome, HotOutcome, JobEvent, JobInfo, JobRun, PhaseOutcome, ReleaseSpec, Replica,
    ReplicaState, Runtime, Traffic, APP_PORT, HOT_UPGRADE_LINES, HOT_UPGRADE_TIMEOUT,
};

/// How many log lines a failed deploy reports.
const FAILURE_LOG_LINES: i64 = 50;
/// How many lines of a successful release phase the pusher sees.
const RELEASE_PHASE_LOG_LINES: i64 = 200;

/// Runs releases on a Kubernetes cluster; see the [module docs](super).
#[derive(Clone)]
pub struct KubeRuntime {
    client: Client,
    settings: KubeSettings,
    slugs: Arc<dyn SlugUrls>,
}

/// Maps API errors onto the port's meanings.
fn map_err(err: kube::Error) -> PortError {
    match &err {
        kube::Error::Api(status) => match status.code {
            404 => PortError::NotFound,
            409 => PortError::AlreadyExists,
            400 | 422 => PortError::Invalid(format!("the cluster refused: {}", status.message)),
            _ => PortError::unavailable(err),
        },
        _ => PortError::unavailable(err),
    }
}

/// A deletion's outcome: done, or nothing was there to delete.
fn deleted<T>(result: Result<T, kube::Error>) -> PortResult<()> {
    match result.map_err(map_err) {
        Ok(_) | Err(PortError::NotFound) => Ok(()),
        Err(err) => Err(err),
    }
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn exited(t: &ContainerStateTerminated) -> String {
    if t.reason.as_deref() == Some("OOMKilled") {
        "the release ran out of memory while booting".into()
    } else {
        format!("the release exited with code {} while booting", t.exit_code)
    }
}

/// Why an unready pod of a rollout will not become ready by itself, and whether its
/// previous container holds the logs: `(reason, previous)`.
fn crashed(pod: &Pod) -> Option<(String, bool)> {
    if ready(pod) {
        return None;
    }
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        return Some((
            format!(
                "the replica failed: {}",
                status
                    .message
                    .clone()
                    .or_else(|| status.reason.clone())
                    .unwrap_or_else(|| "no reason given".into())
            ),
            false,
        ));
    }
    let cs = status
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == WEB)?;
    let state = cs.state.as_ref();
    let last = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
        let message = waiting.message.clone().unwrap_or_default();
        match waiting.reason.as_deref() {
            Some("CrashLoopBackOff") => {
                let why = last
                    .map(exited)
                    .unwrap_or_else(|| "the release keeps exiting while booting".to_owned());
                return Some((format!("{why} (CrashLoopBackOff)"), true));
            }
            Some("ErrImagePull" | "ImagePullBackOff" | "InvalidImageName") => {
                return Some((
                    format!("the runner image {} cannot be pulled: {message}", cs.image),
                    false,
                ))
            }
            Some("CreateContainerConfigError" | "CreateContainerError") => {
                return Some((format!("the replica cannot start: {message}"), false))
            }
            _ => {}
        }
    }
    if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
        if t.exit_code != 0 {
            return Some((exited(t), false));
        }
    }
    match last {
        Some(t) if t.exit_code != 0 => Some((exited(t), true)),
        _ => None,
    }
}

/// Whether the Deployment runs `want` replicas of its current template, all available,
/// and nothing else.
fn rolled_out(d: &Deployment, want: u32) -> bool {
    let want = i32::try_from(want).unwrap_or(i32::MAX);
    let Some(status) = d.status.as_ref() else {
        return false;
    };
    let generation = d.metadata.generation.unwrap_or(0);
    status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) >= want
        && status.replicas.unwrap_or(0) == want
}

fn stalled(d: &Deployment) -> bool {
    d.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            })
        })
}

fn unschedulable(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find_map(|c| {
            (c.type_ == "PodScheduled" && c.status == "False")
                .then(|| c.message.clone().unwrap_or_else(|| "unschedulable".into()))
        })
}

/// The previous Deployment as an apply body: its template and settings, none of the
/// server's bookkeeping.
fn as_applied(prev: Deployment) -> Deployment {
    let annotations = prev.metadata.annotations.map(|a| {
        a.into_iter()
            .filter(|(k, _)| {
                k != "deployment.kubernetes.io/revision"
                    && k != "kubectl.kubernetes.io/last-applied-configuration"
            })
            .collect::<BTreeMap<_, _>>()
    });
    let spec = prev.spec.map(|mut spec| {
        if let Some(meta) = spec.template.metadata.as_mut() {
            meta.creation_timestamp = None;
        }
        spec
    });
    Deployment {
        metadata: ObjectMeta {
            name: prev.metadata.name,
            namespace: prev.metadata.namespace,
            labels: prev.metadata.labels,
            annotations,
            ..Default::default()
        },
        spec,
        status: None,
    }
}

/// A release number the Deployment's annotation `key` holds.
fn annotated(d: &Deployment, key: &str) -> Option<u32> {
    d.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

/// `spec` as the app's pods run it: when hot upgrades moved the pods of release T's
/// template on to `spec`'s release, on T's template (its labels and its Secret, which
/// holds `spec`'s environment and slug), so that nothing restarts; otherwise `spec`.
fn on_template(spec: &ReleaseSpec, current: Option<&Deployment>) -> ReleaseSpec {
    let mut on = spec.clone();
    if let Some(d) = current {
        if annotated(d, LABEL_RELEASE) == Some(spec.version.0) {
            if let Some(template) = annotated(d, ANNOTATION_TEMPLATE) {
                on.version = ReleaseVersion(template);
            }
        }
    }
    on
}

/// Reads what `from` has next (0 at its end, or when it is gone).
async fn read_some(
    from: &mut Option<tokio::io::ReadHalf<tokio::io::SimplexStream>>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt as _;
    match from {
        Some(reader) => reader.read(buf).await,
        None => Ok(0),
    }
}

/// Runs `gigalixir-hot-upgrade URL SHA256` in `pod`'s web container: its exit code and its
/// last lines (stdout and stderr).
async fn exec_upgrade(
    pods: &Api<Pod>,
    pod: &str,
    url: &str,
    sha256: &str,
) -> PortResult<(i64, Vec<String>)> {
    let params = AttachParams::default()
        .container(WEB)
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let mut attached = pods
        .exec(pod, ["gigalixir-hot-upgrade", url, sha256], &params)
        .await
        .map_err(map_err)?;
    let status = attached.take_status();
    // Both streams to their ends, in the order lines come, each line capped and any bytes
    // taken (what the app prints is not trusted to be short or UTF-8); the last lines kept.
    let (mut out, mut err) = (attached.stdout(), attached.stderr());
    let (mut out_lines, mut err_lines) = (LineSplitter::default(), LineSplitter::default());
    let (mut out_buf, mut err_buf) = (vec![0u8; 8192], vec![0u8; 8192]);
    let mut lines: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            n = read_some(&mut out, &mut out_buf), if out.is_some() => match n {
                Ok(0) | Err(_) => {
                    lines.extend(out_lines.finish());
                    out = None;
                }
                Ok(n) => lines.extend(out_lines.push(&out_buf[..n])),
            },
            n = read_some(&mut err, &mut err_buf), if err.is_some() => match n {
                Ok(0) | Err(_) => {
                    lines.extend(err_lines.finish());
                    err = None;
                }
                Ok(n) => lines.extend(err_lines.push(&err_buf[..n])),
            },
            else => break,
        }
        if lines.len() > HOT_UPGRADE_LINES {
            lines.drain(..lines.len() - HOT_UPGRADE_LINES);
        }
    }
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    let _ = attached.join().await;
    let code = match status {
        Some(s) if s.status.as_deref() == Some("Success") => 0,
        Some(s) => s
            .details
            .iter()
            .flat_map(|d| d.causes.iter().flatten())
            .find(|c| c.reason.as_deref() == Some("ExitCode"))
            .and_then(|c| c.message.as_deref()?.parse().ok())
            .unwrap_or(1),
        None => 1,
    };
    Ok((code, lines))
}

/// A Kubernetes time to the second (now when there is none).
fn utc(time: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> DateTime<Utc> {
    time.and_then(|t| Utc.timestamp_opt(t.0.as_second(), 0).single())
        .unwrap_or_else(Utc::now)
}

fn since(pod: &Pod) -> DateTime<Utc> {
    utc(pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(pod.metadata.creation_timestamp.as_ref()))
}

/// A pod's log, line by line, until it ends or fails.
fn lines_of(reader: impl futures::AsyncBufRead + Send + 'static) -> BoxStream<'static, String> {
    reader
        .lines()
        .into_stream()
        .take_while(|l| futures::future::ready(l.is_ok()))
        .filter_map(|l| futures::future::ready(l.ok()))
        .boxed()
}

impl KubeRuntime {
    /// A runtime on `client`'s cluster.
    pub fn new(client: Client, settings: KubeSettings, slugs: Arc<dyn SlugUrls>) -> Self {
        Self {
            client,
            settings,
            slugs,
        }
    }

    /// A runtime on the cluster this process runs in, else the current context of
    /// `KUBECONFIG` (or `~/.kube/config`).
    pub async fn connect(settings: KubeSettings, slugs: Arc<dyn SlugUrls>) -> PortResult<Self> {
        let client = Client::try_default()
            .await
            .map_err(PortError::unavailable)?;
        Ok(Self::new(client, settings, slugs))
    }

    /// The settings in use.
    pub fn settings(&self) -> &KubeSettings {
        &self.settings
    }

    fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    async fn apply<K>(&self, api: &Api<K>, obj: &K, manager: &str) -> PortResult<()>
    where
        K: Resource + Clone + DeserializeOwned + Serialize + Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(obj),
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn apply_all(&self, ns: &str, o: &AppObjects) -> PortResult<()> {
        let m = FIELD_MANAGER;
        self.apply(&Api::all(self.client.clone()), &o.namespace, m)
            .await?;
        self.apply(&self.api(ns), &o.network_policy, m).await?;
        self.apply(&self.api(ns), &o.resource_quota, m).await?;
        self.apply(&self.api(ns), &o.limit_range, m).await?;
        self.apply(&self.api(ns), &o.service_account, m).await?;
        self.apply(&self.api(ns), &o.role, m).await?;
        self.apply(&self.api(ns), &o.role_binding, m).await?;
        if let Some(binding) = &o.api_binding {
            self.apply(&self.api(ns), binding, m).await?;
        }
        self.apply(&self.api(ns), &o.ssh_keys, m).await?;
        self.apply(&self.api(ns), &o.secret, m).await?;
        let services: Api<Service> = self.api(ns);
        for svc in [
            &o.web_service,
            &o.cluster_service,
            &o.ssh_service,
            &o.canary_service,
            &o.maintenance_service,
        ] {
            self.apply(&services, svc, m).await?;
        }
        self.apply(&self.api(ns), &o.maintenance_headers, m).await?;
        self.apply(&self.api(ns), &o.ingress, m).await
    }

    /// Deletes the app's objects of kind `K` that are not named in `keep`.
    async fn prune_kind<K>(&self, ns: &str, app: &AppName, keep: &[&str]) -> PortResult<()>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = self.api(ns);
        let found = api
            .list_metadata(&ListParams::default().labels(&app_selector(app)))
            .await
            .map_err(map_err)?;
        for obj in found.items {
            let name = obj.name_any();
            if keep.contains(&name.as_str()) {
                continue;
            }
            tracing::info!(app = %app, kind = %K::kind(&Default::default()), name = %name, "pruning");
            deleted(api.delete(&name, &DeleteParams::background()).await)?;
        }
        Ok(())
    }

    /// Removes what the app no longer needs: the Secrets of earlier releases, and any
    /// labelled object a newer platform stopped rendering.
    async fn prune(&self, ns: &str, app: &AppName, o: &AppObjects) -> PortResult<()> {
        let secret = o.secret.metadata.name.clone().unwrap_or_default();
        self.prune_kind::<ServiceAccount>(ns, app, &[WEB]).await?;
        self.prune_kind::<Role>(ns, app, &[LIBCLUSTER]).await?;
        self.prune_kind::<RoleBinding>(ns, app, &[LIBCLUSTER, API_APP_ROLE])
            .await?;
        self.prune_kind::<ConfigMap>(ns, app, &[SSH_KEYS, MAINTENANCE_HEADERS])
            .await?;
        self.prune_kind::<Secret>(ns, app, &[secret.as_str()])
            .await?;
        self.prune_kind::<Service>(
            ns,
            app,
            &[WEB, app.as_str(), SSH_SERVICE, CANARY, MAINTENANCE],
        )
        .await?;
        // the custom domains' Ingress belongs to set_routes
        self.prune_kind::<Ingress>(ns, app, &[WEB, DOMAINS]).await?;
        // Finished release phases: their output was read when they ran.
        self.prune_kind::<Job>(ns, app, &[]).await?;
        self.prune_kind::<Deployment>(ns, app, &[WEB]).await
    }

    /// The last lines of a pod's web container (of its previous run with `previous`).
    async fn tail(&self, ns: &str, pod: &str, previous: bool) -> Vec<String> {
        self.tail_lines(ns, pod, previous, FAILURE_LOG_LINES).await
    }

    /// The last `lines` lines of a pod's web container.
    async fn tail_lines(&self, ns: &str, pod: &str, previous: bool, lines: i64) -> Vec<String> {
        let params = LogParams {
            container: Some(WEB.into()),
            previous,
            tail_lines: Some(lines),
            ..Default::default()
        };
        match self.api::<Pod>(ns).logs(pod, &params).await {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(err) => vec![format!("(no logs of {pod}: {})", map_err(err))],
        }
    }

    /// Follows the rollout of the Deployment until it runs `spec.replicas` ready
    /// replicas of its template, or says why it never will.
    async fn wait_rollout(
        &self,
        spec: &ReleaseSpec,
        ns: &str,
    ) -> PortResult<Result<(), DeployOutcome>> {
        let deployments: Api<Deployment> = self.api(ns);
        let pods: Api<Pod> = self.api(ns);
        let selector = release_selector(&spec.app, spec.version.0);
        let rounds = spec.replicas.max(1) + 1;
        let deadline = tokio::time::Instant::now() + spec.boot_timeout * rounds;
        loop {
            let d = deployments.get(WEB).await.map_err(map_err)?;
            if rolled_out(&d, spec.replicas) {
                return Ok(Ok(()));
            }
            let listed = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(map_err)?;
            if let Some((pod, (reason, previous))) = listed
                .items
                .iter()
                .find_map(|p| crashed(p).map(|why| (p.name_any(), why)))
            {
                let output = self.tail(ns, &pod, previous).await;
                return Ok(Err(DeployOutcome::Failed { reason, output }));
            }
            if stalled(&d) || tokio::time::Instant::now() >= deadline {
                let waiting = listed.items.iter().find(|p| !ready(p));
                let reason = match waiting.and_then(unschedulable) {
                    Some(why) => format!("no node can run a replica: {why}"),
                    None => not_ready(spec),
                };
                let output = match waiting {
                    Some(p) => self.tail(ns, &p.name_any(), false).await,
                    None => Vec::new(),
                };
                return Ok(Err(DeployOutcome::Failed { reason, output }));
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    /// Runs the release phase's Job to its end: its output, or its failure with its last
    /// lines.
    async fn run_phase_job(&self, ns: &str, job: &Job) -> PortResult<PhaseOutcome> {
        let jobs: Api<Job> = self.api(ns);
        self.apply(&jobs, job, FIELD_MANAGER).await?;
        let name = job.metadata.name.clone().unwrap_or_default();
        let version = job
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get(super::LABEL_RELEASE_PHASE))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // The Job's own deadline stops it; this one covers a cluster that never starts it.
        let deadline = tokio::time::Instant::now()
            + RELEASE_PHASE_TIMEOUT
            + std::time::Duration::from_secs(60);
        let too_long = || {
            format!(
                "the release phase ran longer than {} minutes",
                RELEASE_PHASE_TIMEOUT.as_secs() / 60
            )
        };
        loop {
            let status = jobs
                .get(&name)
                .await
                .map_err(map_err)?
                .status
                .unwrap_or_default();
            if status.succeeded.unwrap_or(0) > 0 {
                let pods = self
                    .api::<Pod>(ns)
                    .list(&ListParams::default().labels(&release_phase_selector(version)))
                    .await
                    .map_err(map_err)?;
                return Ok(PhaseOutcome::Done {
                    output: match pods.items.first() {
                        Some(p) => {
                            self.tail_lines(ns, &p.name_any(), false, RELEASE_PHASE_LOG_LINES)
                                .await
                        }
                        None => Vec::new(),
                    },
                });
            }
            let failed = status.conditions.as_ref().and_then(|c| {
                c.iter()
                    .find(|c| c.type_ == "Failed" && c.status == "True")
                    .map(|c| c.reason.clone().unwrap_or_default())
            });
            if failed.is_some() || status.failed.unwrap_or(0) > 0 {
                let pods = self
                    .api::<Pod>(ns)
                    .list(&ListParams::default().labels(&release_phase_selector(version)))
                    .await
                    .map_err(map_err)?;
                let pod = pods.items.first();
                let code = pod
                    .and_then(|p| {
                        p.status
                            .as_ref()?
                            .container_statuses
                            .as_ref()?
                            .first()
                            .cloned()
                    })
                    .and_then(|c| c.state?.terminated)
                    .map(|t| t.exit_code);
                let output = match pod {
                    Some(p) => self.tail(ns, &p.name_any(), false).await,
                    None => Vec::new(),
                };
                let reason = match (failed.as_deref(), code) {
                    (Some("DeadlineExceeded"), _) => too_long(),
                    (_, Some(code)) => format!(
                        "the release phase (the Procfile's release: command) exited with code {code}"
                    ),
                    _ => "the release phase (the Procfile's release: command) failed".into(),
                };
                return Ok(PhaseOutcome::Failed { reason, output });
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(PhaseOutcome::Failed {
                    reason: too_long(),
                    output: Vec::new(),
                });
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        }
    }

    /// Puts the Deployment back as it was before a failed rollout (or removes it when
    /// there was none), so the replicas that served go on serving.
    async fn restore(&self, ns: &str, previous: Option<Deployment>) -> PortResult<()> {
        let api: Api<Deployment> = self.api(ns);
        match previous {
            Some(prev) => self.apply(&api, &as_applied(prev), FIELD_MANAGER).await,
            None => deleted(api.delete(WEB, &DeleteParams::background()).await),
        }
    }

    /// The app's web Deployment in namespace `ns`, if there is one.
    async fn web_deployment(&self, ns: &str) -> PortResult<Option<Deployment>> {
        match self.api::<Deployment>(ns).get_opt(WEB).await {
            Ok(found) => Ok(found),
            Err(err) => match map_err(err) {
                PortError::NotFound => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Applies everything of `spec` and follows the rollout; on failure restores the
    /// previous Deployment.
    async fn roll(&self, spec: &ReleaseSpec) -> PortResult<DeployOutcome> {
        let ns = namespace_of(&self.settings, &spec.app);
        let url = self.slugs.download_url(&spec.slug.key).await?;
        let previous = self.web_deployment(&ns).await?;
        let on = on_template(spec, previous.as_ref());
        let objects = render_on(spec, &on, &self.settings, &url);
        self.apply_all(&ns, &objects).await?;
        let deployments: Api<Deployment> = self.api(&ns);
        self.apply(&deployments, &objects.deployment, FIELD_MANAGER)
            .await?;
        // A hot upgrade to another release may have changed pods: all of them restart.
        let upgrading = previous
            .as_ref()
            .and_then(|d| annotated(d, ANNOTATION_UPGRADING));
        if upgrading.is_some_and(|v| v != spec.version.0) {
            tracing::info!(app = %spec.app, "restarting the pods an interrupted hot upgrade may have changed");
            let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            deployments
                .patch(
                    WEB,
                    &PatchParams::apply(RESTART_MANAGER).force(),
                    &Patch::Apply(restart_patch(&ns, Some(&now))),
                )
                .await
                .map_err(map_err)?;
        }
        match self.wait_rollout(&on, &ns).await? {
            Ok(()) => {
                if upgrading.is_some() {
                    self.mark_upgrading(&ns, None).await?;
                }
                self.prune(&ns, &spec.app, &objects).await?;
                Ok(DeployOutcome::Healthy)
            }
            Err(failed) => {
                tracing::warn!(app = %spec.app, version = %spec.version, "rollout failed; restoring the previous template");
                self.restore(&ns, previous).await?;
                Ok(failed)
            }
        }
    }

    /// Puts the hot upgrade's mark on the web Deployment, or (`None`) takes it away.
    async fn mark_upgrading(&self, ns: &str, release: Option<u32>) -> PortResult<()> {
        self.api::<Deployment>(ns)
            .patch(
                WEB,
                &PatchParams::apply(HOT_UPGRADE_MANAGER).force(),
                &Patch::Apply(upgrading_patch(ns, release)),
            )
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn pods_of(&self, app: &AppName) -> PortResult<Vec<Pod>> {
        let ns = namespace_of(&self.settings, app);
        match self
            .api::<Pod>(&ns)
            .list(&ListParams::default().labels(&app_selector_pods(app)))
            .await
            .map_err(map_err)
        {
            Ok(list) => {
                let mut pods = list.items;
                pods.sort_by_key(|p| (since(p), p.name_any()));
                Ok(pods)
            }
            Err(PortError::NotFound) => Ok(Vec::new()),
            Err(err) => Err(err),
        }
    }

    /// Where the SSH Service answers from outside the cluster, if it has an address yet.
    async fn ssh_address(&self, app: &AppName) -> PortResult<Option<SocketAddr>> {
        let ns = namespace_of(&self.settings, app);
        let svc = match self.api::<Service>(&ns).get_opt(SSH_SERVICE).await {
            Ok(svc) => svc,
            Err(err) => match map_err(err) {
                PortError::NotFound => None,
                other => return Err(other),
            },
        };
        Ok(svc
            .and_then(|s| s.status?.load_balancer?.ingress?.into_iter().next()?.ip)
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 22)))
    }
}

/// The objects of `spec` on the pod template of `on` (see [`on_template`]): the
/// Deployment's annotations name `spec`'s release as the one that runs.
fn render_on(
    spec: &ReleaseSpec,
    on: &ReleaseSpec,
    settings: &KubeSettings,
    url: &str,
) -> AppObjects {
    let mut objects = render(on, settings, url);
    objects
        .deployment
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(LABEL_RELEASE.into(), spec.version.0.to_string());
    objects
}

/// The pods of `app` carry only the app label (and the release's), not the managed-by one.
fn app_selector_pods(app: &AppName) -> String {
    format!("{}={app}", super::LABEL_APP)
}

fn not_ready(spec: &ReleaseSpec) -> String {
    let secs = spec.boot_timeout.as_secs();
    match &spec.health_path {
        None => {
            format!("the release did not accept connections on port {APP_PORT} within {secs} s")
        }
        Some(path) => format!(
            "the release did not answer {} on GET {path} within {secs} s",
            spec.health_status
        ),
    }
}

/// The label selector of a one-off Job's pod (the Job controller's own label).
fn job_pod_selector(job: &str) -> String {
    format!("job-name={job}")
}

/// How a one-off job's pod ended: its container's exit code; 137 when it was killed (its
/// time limit, inside or by the Job's deadline).
fn job_exit(pod: &Pod) -> Option<i64> {
    let status = pod.status.as_ref()?;
    let terminated = status
        .container_statuses
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.name == WEB))
        .and_then(|c| c.state.as_ref()?.terminated.clone());
    match (terminated, status.phase.as_deref()) {
        (Some(t), _) => Some(t.exit_code.into()),
        // Failed with no container state: the deadline took it before or while it ran.
        (None, Some("Failed")) => Some(137),
        (None, Some("Succeeded")) => Some(0),
        _ => None,
    }
}

/// Whether a one-off job's pod has started its container (or already ended).
fn job_started(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running" | "Succeeded" | "Failed")
    )
}

impl KubeRuntime {
    /// Deletes the canary Ingresses labelled with `selector` (in every namespace) for
    /// which `stale` (namespace, the app whose share it takes) holds.
    async fn remove_canaries(
        &self,
        selector: &str,
        stale: impl Fn(&str, &str) -> bool,
    ) -> PortResult<()> {
        let params = ListParams::default().labels(selector);
        let found = Api::<Ingress>::all(self.client.clone())
            .list_metadata(&params)
            .await
            .map_err(map_err)?
            .items;
        for obj in found {
            let ns = obj.metadata.namespace.clone().unwrap_or_default();
            let of = obj
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_CANARY_OF))
                .cloned()
                .unwrap_or_default();
            if !stale(&ns, &of) {
                continue;
            }
            let name = obj.name_any();
            deleted(
                self.api::<Ingress>(&ns)
                    .delete(&name, &DeleteParams::background())
                    .await,
            )?;
            tracing::info!(app = %of, namespace = %ns, name = %name, "canary route removed");
        }
        Ok(())
    }
}

impl KubeRuntime {
    /// Follows one-off job `job` in `ns`: its pod's output as it comes, then its exit code;
    /// at `deadline` (the command's limit and the start allowance, a backstop for a
    /// cluster that never runs it) the Job goes and the code is 137.
    async fn follow_job(
        &self,
        ns: &str,
        job: &str,
        deadline: tokio::time::Instant,
        tx: tokio::sync::mpsc::UnboundedSender<JobEvent>,
    ) {
        let pods: Api<Pod> = self.api(ns);
        let selector = job_pod_selector(job);
        let find = || async {
            pods.list(&ListParams::default().labels(&selector))
                .await
                .ok()
                .and_then(|l| l.items.into_iter().next())
        };
        // Its pod, once it runs (nobody listening: the Job's own deadline ends it).
        let mut said_waiting = false;
        let pod = loop {
            if tx.is_closed() {
                return;
            }
            match find().await {
                Some(p) if job_started(&p) => break Some(p),
                Some(p) => {
                    if let (Some(why), false) = (unschedulable(&p), said_waiting) {
                        let _ = tx.send(JobEvent::Line(format!(
                            "gigalixir: the job waits for room in the cluster: {why}"
                        )));
                        said_waiting = true;
                    }
                }
                None => {}
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(self.settings.poll_interval).await;
        };
        let code = match pod {
            None => {
                let _ = tx.send(JobEvent::Line(
                    "gigalixir: the job did not start before its time limit".into(),
                ));
                137
            }
            Some(pod) => {
                let name = pod.name_any();
                let params = LogParams {
                    container: Some(WEB.into()),
                    follow: true,
                    ..Default::default()
                };
                let cut = match pods.log_stream(&name, &params).await {
                    Ok(reader) => {
                        let mut lines = reader.lines();
                        tokio::time::timeout_at(deadline, async {
                            loop {
                                match lines.next().await {
                                    Some(Ok(line)) => {
                                        if tx.send(JobEvent::Line(line)).is_err() {
                                            return None;
                                        }
                                    }
                                    Some(Err(err)) => return Some(err.to_string()),
                                    None => return None,
                                }
                            }
                        })
                        .await
                        .unwrap_or(None)
                    }
                    Err(err) => Some(map_err(err).to_string()),
                };
                if let Some(why) = cut {
                    let _ = tx.send(JobEvent::Line(format!(
                        "gigalixir: the job's output could not be read further: {why}"
                    )));
                }
                // Its end, as the pod's status says it (an unanswered question is asked
                // again; a pod that is gone was taken by the Job's deadline or removed).
                loop {
                    if tx.is_closed() {
                        return;
                    }
                    match pods.get_opt(&name).await {
                        Ok(Some(p)) => {
                            if let Some(code) = job_exit(&p) {
                                break code;
                            }
                        }
                        Ok(None) => break 137,
                        Err(_) => {}
                    }
                    if tokio::time::Instant::now() >= deadline {
                        break 137;
                    }
                    tokio::time::sleep(self.settings.poll_interval).await;
                }
            }
        };
        if tokio::time::Instant::now() >= deadline {
            let jobs: Api<Job> = self.api(ns);
            let _ = jobs.delete(job, &DeleteParams::background()).await;
        }
        let _ = tx.send(JobEvent::Exited(code));
    }
}

impl KubeRuntime {
    /// Makes `spec` the release the pods of `current` run, as they are: their template
    /// stays (no pod restarts); the Secret it names gets `spec`'s environment and slug, so
    /// a pod started again, or a new one, boots `spec`; the annotations say which runs.
    async fn repoint(
        &self,
        ns: &str,
        spec: &ReleaseSpec,
        current: &Deployment,
        url: &str,
    ) -> PortResult<()> {
        let mut on = spec.clone();
        on.version = ReleaseVersion(
            annotated(current, ANNOTATION_TEMPLATE)
                .or_else(|| annotated(current, LABEL_RELEASE))
                .unwrap_or(spec.version.0),
        );
        let objects = render_on(spec, &on, &self.settings, url);
        self.apply_all(ns, &objects).await?;
        self.apply(&self.api(ns), &objects.deployment, FIELD_MANAGER)
            .await
    }
}

impl KubeRuntime {
    /// The Ingress of the app's custom domains as `traffic` wants it, or none.
    async fn set_domains(
        &self,
        app: &AppName,
        domains: &[Fqdn],
        traffic: &Traffic,
    ) -> PortResult<()> {
        let ns = namespace_of(&self.settings, app);
        let api: Api<Ingress> = self.api(&ns);
        match render_domains(&self.settings, app, domains, traffic) {
            Some(ingress) => {
                self.apply(
                    &Api::all(self.client.clone()),
                    &namespace_object(&self.settings, app),
                    DOMAINS_MANAGER,
                )
                .await?;
                self.apply(&api, &ingress, DOMAINS_MANAGER).await
            }
            None => deleted(api.delete(DOMAINS, &DeleteParams::background()).await),
        }
    }
}

#[async_trait]
impl Runtime for KubeRuntime {
    #[tracing::instrument(skip_all, fields(app = %spec.app, version = %spec.version))]
    async fn deploy(&self, spec: &ReleaseSpec) -> PortResult<DeployOutcome> {
        self.roll(spec).await
    }

    /// A Job from the Deployment's pod template, after everything the release needs
    /// (namespace, its Secret, its network policy) is applied.
    #[tracing::instrument(skip_all, fields(app = %spec.app, version = %spec.version))]
    async fn release_phase(&self, spec: &ReleaseSpec) -> PortResult<PhaseOutcome> {
        let ns = namespace_of(&self.settings, &spec.app);
        let url = self.slugs.download_url(&spec.slug.key).await?;
        let objects = render(spec, &self.settings, &url);
        self.apply_all(&ns, &objects).await?;
        let job = release_phase_job(spec, &ns, &objects.deployment);
        self.run_phase_job(&ns, &job).await
    }

    async fn runs(&self, app: &AppName, version: ReleaseVersion) -> PortResult<bool> {
        let ns = namespace_of(&self.settings, app);
        let found = self.web_deployment(&ns).await?;
        Ok(found
            .as_ref()
            .and_then(|d| d.metadata.annotations.as_ref())
            .and_then(|a| a.get(LABEL_RELEASE))
            .is_some_and(|v| *v == version.0.to_string()))
    }

    async fn endpoints(&self, app: &AppName) -> PortResult<Vec<SocketAddr>> {
        Ok(self
            .pods_of(app)
            .await?
            .iter()
            .filter(|p| ready(p) && p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.status.as_ref()?.pod_ip.as_ref()?.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, APP_PORT))
            .collect())
    }

    async fn remove_app(&self, app: &AppName) -> PortResult<()> {
        // Its canary's share of its hosts goes first: an app of that name made later, by
        // anyone, must not send visitors to the canary.
        self.remove_canaries(&format!("{LABEL_CANARY_OF}={app}"), |_, _| true)
            .await?;
        let ns = namespace_of(&self.settings, app);
        deleted(
            Api::<Namespace>::all(self.client.clone())
                .delete(&ns, &DeleteParams::background())
                .await,
        )
    }

    async fn replicas(&self, app: &AppName) -> PortResult<Vec<Replica>> {
        let pods = self.pods_of(app).await?;
        if pods.is_empty() {
            return Ok(Vec::new());
        }
        let ssh = self.ssh_address(app).await?;
        // Pods of a template a hot upgrade moved on run the release the Deployment names.
        let moved = self
            .web_deployment(&namespace_of(&self.settings, app))
            .await?
            .and_then(|d| {
                Some((
                    annotated(&d, ANNOTATION_TEMPLATE)?,
                    annotated(&d, LABEL_RELEASE)?,
                ))
            });
        Ok(pods
            .iter()
            .enumerate()
            .map(|(index, p)| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                let state = if p.metadata.deletion_timestamp.is_some()
                    || matches!(phase, Some("Failed" | "Succeeded"))
                {
                    ReplicaState::Stopped
                } else if ready(p) {
                    ReplicaState::Running
                } else {
                    ReplicaState::Starting
                };
                Replica {
                    name: p.name_any(),
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    version: ReleaseVersion({
                        let label = p
                            .labels()
                            .get(LABEL_RELEASE)
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        match moved {
                            Some((template, runs)) if template == label => runs,
                            _ => label,
                        }
                    }),
                    state,
                    since: since(p),
                    ssh,
                }
            })
            .collect())
    }

    async fn logs(
        &self,
        app: &AppName,
        tail: usize,
        follow: bool,
    ) -> PortResult<BoxStream<'static, String>> {
        let ns = namespace_of(&self.settings, app);
        let pods: Api<Pod> = self.api(&ns);
        let mut streams = Vec::new();
        for (i, pod) in self.pods_of(app).await?.iter().enumerate() {
            if pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running") {
                continue;
            }
            let params = LogParams {
                container: Some(WEB.into()),
                follow,
                tail_lines: Some(i64::try_from(tail).unwrap_or(i64::MAX)),
                ..Default::default()
            };
            let reader = pods
                .log_stream(&pod.name_any(), &params)
                .await
                .map_err(map_err)?;
            let prefix = format!("{app}[web.{}]: ", i + 1);
            streams.push(
                lines_of(reader)
                    .map(move |line| format!("{prefix}{line}"))
                    .boxed(),
            );
        }
        Ok(futures::stream::select_all(streams).boxed())
    }

    async fn scale(&self, spec: &ReleaseSpec) -> PortResult<DeployOutcome> {
        self.roll(spec).await
    }

    #[tracing::instrument(skip_all, fields(app = %spec.app, version = %spec.version))]
    async fn hot_upgrade(&self, spec: &ReleaseSpec) -> PortResult<HotOutcome> {
        let ns = namespace_of(&self.settings, &spec.app);
        let Some(current) = self.web_deployment(&ns).await? else {
            return Ok(HotOutcome::NotPossible {
                reason: "nothing runs yet (first deploy)".into(),
            });
        };
        // Every pod, or none: one still starting (or crashing) would boot the old release.
        let pods_now: Vec<Pod> = self
            .pods_of(&spec.app)
            .await?
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        if pods_now.is_empty() || !pods_now.iter().all(ready) {
            return Ok(HotOutcome::NotPossible {
                reason: "hot upgrade not possible: a replica is not ready (starting or crashing)"
                    .into(),
            });
        }
        let url = self.slugs.download_url(&spec.slug.key).await?;
        let pods: Api<Pod> = self.api(&ns);
        self.mark_upgrading(&ns, Some(spec.version.0)).await?;
        let mut output = Vec::new();
        for (n, pod) in (1..).zip(&pods_now) {
            let name = pod.name_any();
            let run = exec_upgrade(&pods, &name, &url, &spec.slug.sha256);
            let Ok(done) = tokio::time::timeout(HOT_UPGRADE_TIMEOUT, run).await else {
                return Ok(HotOutcome::Failed {
                    reason: format!(
                        "the hot upgrade of web.{n} did not finish within {} s",
                        HOT_UPGRADE_TIMEOUT.as_secs()
                    ),
                    output: Vec::new(),
                });
            };
            let (code, lines) = done?;
            if let Some(end) = HotOutcome::of_replica(n, code, &lines) {
                // Nothing changed anywhere when the first pod refused cleanly; else the
                // mark stays, and the deploy that follows restarts every pod.
                if n == 1 && matches!(code, 3 | 4) {
                    self.mark_upgrading(&ns, None).await?;
                }
                return Ok(end);
            }
            output.extend(lines.into_iter().map(|l| format!("web.{n}: {l}")));
        }
        self.repoint(&ns, spec, &current, &url).await?;
        self.mark_upgrading(&ns, None).await?;
        Ok(HotOutcome::Upgraded { output })
    }

    async fn adopt(&self, spec: &ReleaseSpec, from: ReleaseVersion) -> PortResult<bool> {
        let ns = namespace_of(&self.settings, &spec.app);
        let Some(current) = self.web_deployment(&ns).await? else {
            return Ok(false);
        };
        // Only pods known to run `from` (not ones a failed hot upgrade left behind).
        if annotated(&current, LABEL_RELEASE) != Some(from.0)
            || annotated(&current, ANNOTATION_UPGRADING).is_some()
        {
            return Ok(false);
        }
        let url = self.slugs.download_url(&spec.slug.key).await?;
        self.repoint(&ns, spec, &current, &url).await?;
        Ok(true)
    }

    async fn set_ssh_keys(&self, app: &AppName, keys: &[String]) -> PortResult<()> {
        let ns = namespace_of(&self.settings, app);
        self.apply(
            &Api::all(self.client.clone()),
            &namespace_object(&self.settings, app),
            SSH_KEYS_MANAGER,
        )
        .await?;
        self.apply(
            &self.api(&ns),
            &ssh_keys_object(&self.settings, app, Some(keys)),
            SSH_KEYS_MANAGER,
        )
        .await
    }

    async fn set_routes(
        &self,
        app: &AppName,
        domains: &[Fqdn],
        traffic: &Traffic,
    ) -> PortResult<()> {
        let ns = namespace_of(&self.settings, app);
        // The app's own host follows maintenance and the canary's cookie at once; an app
        // not deployed yet gets its Ingress with its first release.
        if self.web_deployment(&ns).await?.is_some() {
            self.apply(
                &self.api(&ns),
                &web_ingress(&self.settings, app, traffic),
                FIELD_MANAGER,
            )
            .await?;
        }
        self.set_domains(app, domains, traffic).await?;
        // A share of other apps' requests this app no longer serves (given away, or the
        // other app's canary changed) goes from its namespace.
        self.remove_canaries(
            &format!("{}={app},{LABEL_CANARY_OF}", super::LABEL_APP),
            |at, of| at == ns && !traffic.serves.iter().any(|s| s.as_str() == of),
        )
        .await?;
        // The canary's share: where it belongs now, none left elsewhere. A canary not
        // deployed yet has no namespace: its first deploy announces this app's routes.
        let canary = render_canary(&self.settings, app, domains, traffic);
        let keep = canary
            .as_ref()
            .and_then(|ingress| ingress.metadata.namespace.clone());
        self.remove_canaries(&format!("{LABEL_CANARY_OF}={app}"), |at, _| {
            keep.as_deref() != Some(at)
        })
        .await?;
        if let (Some(ingress), Some(target)) = (&canary, traffic.canary.as_ref()) {
            let at = keep.as_deref().unwrap_or_default();
            let applied = match self
                .apply(
                    &self.api(at),
                    &canary_service(&self.settings, &target.app),
                    FIELD_MANAGER,
                )
                .await
            {
                Ok(()) => self.apply(&self.api(at), ingress, DOMAINS_MANAGER).await,
                Err(err) => Err(err),
            };
            match applied {
                Ok(()) => {}
                Err(PortError::NotFound) => {
                    tracing::info!(app = %app, canary = %canary_name(app), "the canary app has no namespace yet; its first deploy routes it");
                }
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// A Job of the web pod's template running `command` (see [`one_off_job`]); its
    /// output and exit code are followed from its pod.
    #[tracing::instrument(skip_all, fields(app = %spec.app, version = %spec.version))]
    async fn run_job(
        &self,
        spec: &ReleaseSpec,
        command: &str,
        limit: std::time::Duration,
    ) -> PortResult<JobRun> {
        let ns = namespace_of(&self.settings, &spec.app);
        let Some(web) = self.web_deployment(&ns).await? else {
            return Err(PortError::NotFound);
        };
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let name = format!("run-v{}-{suffix}", spec.version.0);
        let job = one_off_job(spec, &ns, &web, &name, command, limit);
        self.api::<Job>(&ns)
            .create(&kube::api::PostParams::default(), &job)
            .await
            .map_err(map_err)?;
        let deadline = tokio::time::Instant::now()
            + limit
            + JOB_START_ALLOWANCE
            + std::time::Duration::from_secs(10);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let me = self.clone();
        let job_name = name.clone();
        tokio::spawn(async move { me.follow_job(&ns, &job_name, deadline, tx).await });
        Ok(JobRun {
            name,
            events: futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|event| (event, rx))
            })
            .boxed(),
        })
    }

    async fn jobs(&self, app: &AppName) -> PortResult<Vec<JobInfo>> {
        let ns = namespace_of(&self.settings, app);
        let listed = match self
            .api::<Job>(&ns)
            .list(&ListParams::default().labels(&format!("{}={app},{LABEL_JOB}", super::LABEL_APP)))
            .await
            .map_err(map_err)
        {
            Ok(list) => list.items,
            Err(PortError::NotFound) => Vec::new(),
            Err(err) => return Err(err),
        };
        let mut jobs: Vec<JobInfo> = listed
            .iter()
            .filter(|j| {
                let status = j.status.as_ref();
                status.and_then(|s| s.completion_time.as_ref()).is_none()
                    && status.and_then(|s| s.succeeded).unwrap_or(0) == 0
                    && status.and_then(|s| s.failed).unwrap_or(0) == 0
                    && j.metadata.deletion_timestamp.is_none()
            })
            .map(|j| JobInfo {
                name: j.name_any(),
                version: j
                    .labels()
                    .get(LABEL_JOB)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                since: utc(j.metadata.creation_timestamp.as_ref()),
            })
            .collect();
        jobs.sort_by(|a, b| a.since.cmp(&b.since).then(a.name.cmp(&b.name)));
        Ok(jobs)
    }

    /// A web pod of the app by its name, or a one-off Job of it by the Job's name (as
    /// [`Runtime::jobs`] gives it): its web container's lines from `since`.
    async fn replica_logs(
        &self,
        app: &AppName,
        name: &str,
        since: Option<DateTime<Utc>>,
    ) -> PortResult<BoxStream<'static, String>> {
        let ns = namespace_of(&self.settings, app);
        let pods: Api<Pod> = self.api(&ns);
        let pod = if self
            .pods_of(app)
            .await?
            .iter()
            .any(|p| p.name_any() == name)
        {
            name.to_owned()
        } else if self.jobs(app).await?.iter().any(|j| j.name == name) {
            pods.list(&ListParams::default().labels(&job_pod_selector(name)))
                .await
                .map_err(map_err)?
                .items
                .first()
                .map(ResourceExt::name_any)
                .ok_or(PortError::NotFound)?
        } else {
            return Err(PortError::NotFound);
        };
        let params = LogParams {
            container: Some(WEB.into()),
            follow: true,
            since_seconds: since.map(|t| (Utc::now() - t).num_seconds().max(1)),
            ..Default::default()
        };
        let reader = pods.log_stream(&pod, &params).await.map_err(map_err)?;
        Ok(lines_of(reader))
    }

    /// Deletes the pod with a one-second grace period (zero would be a forced deletion:
    /// the object gone while its container may still run), about as a crash ends it; its
    /// Deployment starts another in its place.
    async fn kill(&self, app: &AppName, replica: &str) -> PortResult<()> {
        // Only a pod of this app's web Deployment, by the name `ps` gives it.
        if !self
            .pods_of(app)
            .await?
            .iter()
            .any(|p| p.name_any() == replica && p.metadata.deletion_timestamp.is_none())
        {
            return Err(PortError::NotFound);
        }
        let ns = namespace_of(&self.settings, app);
        let params = DeleteParams {
            grace_period_seconds: Some(1),
            ..DeleteParams::default()
        };
        match self
            .api::<Pod>(&ns)
            .delete(replica, &params)
            .await
            .map_err(map_err)
        {
            Ok(_) => {}
            Err(PortError::NotFound) => return Err(PortError::NotFound),
            Err(err) => return Err(err),
        }
        tracing::info!(app = %app, replica, "replica killed (ps:kill)");
        Ok(())
    }

    async fn restart(&self, spec: &ReleaseSpec) -> PortResult<DeployOutcome> {
        let ns = namespace_of(&self.settings, &spec.app);
        let api: Api<Deployment> = self.api(&ns);
        let previous = match api.get_opt(WEB).await {
            Ok(Some(d)) => d,
            Ok(None) => return Err(PortError::NotFound),
            Err(err) => return Err(map_err(err)),
        };
        let before = previous
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(ANNOTATION_RESTARTED_AT))
            .cloned();
        let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let params = PatchParams::apply(RESTART_MANAGER).force();
        api.patch(WEB, &params, &Patch::Apply(restart_patch(&ns, Some(&now))))
            .await
            .map_err(map_err)?;
        let on = on_template(spec, Some(&previous));
        match self.wait_rollout(&on, &ns).await? {
            Ok(()) => Ok(DeployOutcome::Healthy),
            Err(failed) => {
                api.patch(
                    WEB,
                    &params,
                    &Patch::Apply(restart_patch(&ns, before.as_deref())),
                )
                .await
                .map_err(map_err)?;
                Ok(failed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus,
    };

    fn pod(status: ContainerStatus, ready_now: bool) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready_now { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![status]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn status(waiting: Option<&str>, last_exit: Option<(i32, &str)>) -> ContainerStatus {
        ContainerStatus {
            name: WEB.into(),
            image: "runner:1".into(),
            state: Some(ContainerState {
                waiting: waiting.map(|r| ContainerStateWaiting {
                    reason: Some(r.into()),
                    message: Some("back-off".into()),
                }),
                ..Default::default()
            }),
            last_state: last_exit.map(|(code, reason)| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: code,
                    reason: Some(reason.into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn crash_loops_and_oom_kills_say_so_like_docker() {
        let p = pod(status(Some("CrashLoopBackOff"), Some((1, "Error"))), false);
        assert_eq!(
            crashed(&p),
            Some((
                "the release exited with code 1 while booting (CrashLoopBackOff)".into(),
                true
            ))
        );
        let p = pod(status(None, Some((137, "OOMKilled"))), false);
        assert_eq!(
            crashed(&p),
            Some(("the release ran out of memory while booting".into(), true))
        );
        let p = pod(status(Some("ImagePullBackOff"), None), false);
        let (why, previous) = crashed(&p).expect("image pull");
        assert!(why.contains("runner:1 cannot be pulled"), "{why}");
        assert!(!previous);
    }

    #[test]
    fn a_ready_pod_that_crashed_long_ago_is_no_failure() {
        let p = pod(status(None, Some((1, "Error"))), true);
        assert_eq!(crashed(&p), None);
        let p = pod(status(Some("ContainerCreating"), None), false);
        assert_eq!(crashed(&p), None);
    }
}
