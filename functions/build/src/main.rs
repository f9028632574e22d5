//! `gigalixir-build`: the build step as a pull worker next to a Docker engine (a GKE
//! workload with a Docker sidecar, `DOCKER_HOST`): it pulls `build-requested` from its
//! subscription and runs each message through the same router Pub/Sub would push to.
//! Opens no port.

use anyhow::Context;
use gigalixir_build::{router, StepState};
use shared::deployment::{self, Function};
use shared::ports::builder::BuildLimits;
use shared::service::Service;

const FUNCTION: Function = Function::Build;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some((flags, env)) = shared::service::start(FUNCTION)? else {
        return Ok(());
    };
    let bus = env.bus()?;
    let blobs = env.blobs()?;
    // The package cache, over the same blobs as every other worker's: served to this
    // worker's builds on a socket in a directory the Docker engine mounts into them.
    let settings = shared::hex::HexSettings::new(
        env.get(&deployment::HEX_UPSTREAM),
        env.get(&deployment::HEX_UPSTREAM_KEY)
            .map(std::path::Path::new),
        std::time::Duration::from_secs(300),
    )
    .map_err(anyhow::Error::msg)?;
    let hex = shared::hex::HexCache::new(blobs.clone(), settings).map_err(anyhow::Error::msg)?;
    let packages_dir = std::path::PathBuf::from(
        env.get(&deployment::PACKAGES_DIR)
            .unwrap_or("/run/gigalixir/packages"),
    );
    let _packages = shared::hex::router::serve_socket(&packages_dir, hex.clone())
        .await
        .with_context(|| format!("serving the package cache in {}", packages_dir.display()))?;
    let state = StepState {
        store: env.store()?,
        bus: bus.clone(),
        blobs,
        // GIGALIXIR_BUILDER: build containers on this pod's engine, found again by upload.
        builder: env.builder(Some(packages_dir))?,
        // The default build timeout is the one the subscription's ack deadline covers.
        limits: BuildLimits::default(),
        hex: Some(hex),
        git: Default::default(),
        tools: Default::default(),
        npm: false,
        turns: gigalixir_build::turns::Turns::new(
            shared::deployment::Settings::default().build_concurrency as usize,
        ),
    };
    Service::new(FUNCTION, router(state))
        .bus(bus)
        .force_pull(flags.pull)
        .run(&env)
        .await?;
    Ok(())
}
