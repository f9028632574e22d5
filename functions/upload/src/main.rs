//! `gigalixir-upload`: the upload step as a service. It reads the slug out of the build
//! container, so it runs where the build's Docker engine is reachable (`DOCKER_HOST`).
//! Pub/Sub pushes `slug-built` to `POST /` on `$PORT`, or Lambda events, or `--pull` pulls
//! them.

use gigalixir_upload::{router, StepState};
use shared::deployment::Function;
use shared::service::Service;

const FUNCTION: Function = Function::Upload;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some((flags, env)) = shared::service::start(FUNCTION)? else {
        return Ok(());
    };
    let bus = env.bus()?;
    let state = StepState {
        store: env.store()?,
        bus: bus.clone(),
        blobs: env.blobs()?,
        // GIGALIXIR_BUILDER: the engine and instance the build ran its container with.
        builder: env.builder(None)?,
    };
    Service::new(FUNCTION, router(state))
        .bus(bus)
        .force_pull(flags.pull)
        .run(&env)
        .await?;
    Ok(())
}
