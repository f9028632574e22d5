//! `gigalixir-build`: the build step as a pull worker next to a Docker engine (a GKE
//! workload with a Docker sidecar, `DOCKER_HOST`): it pulls `build-requested` from its
//! subscription and runs each message through the same router Pub/Sub would push to.
//! Opens no port.

use anyhow::Context;
use gigalixir_build::{router, StepState};
use shared::deployment::Function;
use shared::ports::builder::BuildLimits;
use shared::service::Service;

const FUNCTION: Function = Function::Build;

/// Labels the build containers, so that `upload` finds them on the same engine.
const INSTANCE: &str = "default";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some((flags, env)) = shared::service::start(FUNCTION)? else {
        return Ok(());
    };
    let docker =
        shared::docker::connect().context("connecting to the Docker engine (DOCKER_HOST)")?;
    let bus = env.bus()?;
    let state = StepState {
        store: env.store()?,
        bus: bus.clone(),
        blobs: env.blobs()?,
        builder: std::sync::Arc::new(shared::docker::DockerBuilder::new(docker, INSTANCE)),
        // The default build timeout is the one the subscription's ack deadline covers.
        limits: BuildLimits::default(),
        hex: None,
        git: Default::default(),
        tools: Default::default(),
        npm: false,
    };
    Service::new(FUNCTION, router(state))
        .bus(bus)
        .force_pull(flags.pull)
        .run(&env)
        .await?;
    Ok(())
}
