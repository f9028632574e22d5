//! `gigalixir-upload`: the upload step as a service. It reads the slug out of the build
//! container, so it runs where the build's Docker engine is reachable (`DOCKER_HOST`).
//! Pub/Sub pushes `slug-built` to `POST /` on `$PORT`, or Lambda events, or `--pull` pulls
//! them.

use anyhow::Context;
use gigalixir_upload::{router, StepState};
use shared::deployment::Function;
use shared::service::Service;

const FUNCTION: Function = Function::Upload;

/// The label `build` gives its containers.
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
    };
    Service::new(FUNCTION, router(state))
        .bus(bus)
        .force_pull(flags.pull)
        .run(&env)
        .await?;
    Ok(())
}
