//! `gigalixir-deploy`: the deploy step as a service. Pub/Sub pushes `release-created`,
//! `app-scaled`, `restart-requested`, `ssh-keys-changed`, `domains-changed` and
//! `app-destroyed` to `POST /` on `$PORT`, or Lambda events, or `--pull` pulls them. The
//! runtime comes from `GIGALIXIR_RUNTIME`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use gigalixir_deploy::{router, StepState};
use shared::deployment::{self, Function, Settings};
use shared::ports::Runtime;
use shared::service::{FunctionEnv, Service};

const FUNCTION: Function = Function::Deploy;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some((flags, env)) = shared::service::start(FUNCTION)? else {
        return Ok(());
    };
    let runtime = runtime(&env).await?;
    let bus = env.bus()?;
    let state = StepState {
        store: env.store()?,
        bus: bus.clone(),
        runtime,
        blobs: env.blobs()?,
        boot_timeout: Settings::default().boot,
        app_domain: env.domain().to_owned(),
    };
    Service::new(FUNCTION, router(state))
        .bus(bus)
        .force_pull(flags.pull)
        .run(&env)
        .await?;
    Ok(())
}

/// The runtime `GIGALIXIR_RUNTIME` names.
///
/// `docker://[?instance=NAME&ssh_dir=PATH&egress=BOOL&firewall=BOOL]`: the local Docker
/// engine, as the single-machine platform runs apps. It reads slugs from the `file://` blob
/// store (`BLOBS/slugs`) and the replicas' SSH keys from `ssh_dir` (default: `ssh` next to
/// the blob directory, the platform's layout); `egress` and `firewall` (default `true`)
/// mean what the platform's `--app-egress` and `--app-firewall` do. `kube://?image=…` (a
/// build with the `kube` feature): the cluster this runs in, else the current `KUBECONFIG`
/// context; replicas download slugs by URLs the blob store signs for 7 days.
async fn runtime(env: &FunctionEnv) -> anyhow::Result<Arc<dyn Runtime>> {
    let name = deployment::RUNTIME.name;
    let url = env.required(&deployment::RUNTIME)?;
    let (scheme, rest) = url
        .split_once("://")
        .with_context(|| format!("{name}={url:?} is not a runtime URL (docker:// or kube://)"))?;
    match scheme {
        "docker" => {
            let query = rest.trim_start_matches('/').trim_start_matches('?');
            let mut instance = "default".to_owned();
            let mut ssh_dir = None;
            let (mut egress, mut firewall) = (true, true);
            let flag = |key: &str, value: &str| match value {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(anyhow::anyhow!("{name}: `{key}` is true or false, not {value:?}")),
            };
            for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
                match key.as_ref() {
                    "instance" => instance = value.into_owned(),
                    "ssh_dir" => ssh_dir = Some(PathBuf::from(value.as_ref())),
                    "egress" => egress = flag("egress", &value)?,
                    "firewall" => firewall = flag("firewall", &value)?,
                    other => bail!(
                        "{name}: docker:// takes `instance`, `ssh_dir`, `egress` and `firewall`, not `{other}`"
                    ),
                }
            }
            let blobs_url = env.required(&deployment::BLOBS)?;
            let blobs_dir = blobs_url.strip_prefix("file://").map(Path::new).with_context(|| {
                format!(
                    "{name}=docker:// reads slugs from a file:// blob store, and {} is {blobs_url:?}",
                    deployment::BLOBS.name
                )
            })?;
            let ssh_dir = match ssh_dir {
                Some(dir) => dir,
                None => blobs_dir.parent().unwrap_or(blobs_dir).join("ssh"),
            };
            let slug_dir = blobs_dir.join("slugs");
            std::fs::create_dir_all(&slug_dir)
                .with_context(|| format!("creating {}", slug_dir.display()))?;
            let docker = shared::docker::connect()
                .context("connecting to the Docker engine (DOCKER_HOST)")?;
            let runtime = shared::docker::DockerRuntime::new(docker, instance, slug_dir, ssh_dir)
                .with_egress(egress);
            if firewall {
                runtime.guard().await.context("walling off app containers (firewall=false runs apps without it)")?;
            }
            // Replicas that crash after going live are started again.
            let _supervisor = runtime.supervise();
            Ok(Arc::new(runtime))
        }
        #[cfg(feature = "kube")]
        "kube" => {
            let _ = rest;
            let blobs = env.blobs()?;
            let slugs = Arc::new(shared::kube_runtime::SignedSlugs::new(
                blobs,
                std::time::Duration::from_secs(7 * 24 * 3600),
            ));
            Ok(shared::backends::open_kube_runtime(url, Some(env.domain()), slugs)
                .await
                .context("connecting to Kubernetes")?)
        }
        #[cfg(not(feature = "kube"))]
        "kube" => bail!(
            "{name}={url:?}: the Kubernetes runtime (kube://) is not available in this build of gigalixir-deploy (build it with --features kube); use docker://"
        ),
        other => bail!("{name}={url:?}: unknown runtime `{other}`; use docker:// or kube://"),
    }
}
