//! `gigalixir-deploy`: the deploy step as a service. Pub/Sub pushes `release-created`,
//! `app-scaled`, `restart-requested`, `ssh-keys-changed`, `domains-changed` and
//! `app-destroyed` to `POST /` on `$PORT`, or Lambda events, or `--pull` pulls them. The
//! runtime comes from `GIGALIXIR_RUNTIME`.

use std::sync::Arc;

use anyhow::Context;
use gigalixir_deploy::{router, StepState};
use shared::backends::{open_runtime, RuntimeContext, RuntimeRole};
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

/// The runtime `GIGALIXIR_RUNTIME` names ([`shared::backends::open_runtime`]): this
/// process deploys, so on Docker it walls the apps off and restarts crashed replicas.
async fn runtime(env: &FunctionEnv) -> anyhow::Result<Arc<dyn Runtime>> {
    let url = env.required(&deployment::RUNTIME)?;
    let context = RuntimeContext {
        blobs_url: env.required(&deployment::BLOBS)?.to_owned(),
        blobs: env.blobs()?,
        domain: env.domain().to_owned(),
        role: RuntimeRole::Runs,
    };
    let opened = open_runtime(url, context)
        .await
        .with_context(|| format!("{}={url}", deployment::RUNTIME.name))?;
    Ok(opened.runtime)
}
