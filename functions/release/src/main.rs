//! `gigalixir-release`: the release step as a service. Pub/Sub pushes `slug-uploaded` to
//! `POST /` on `$PORT` (Cloud Run), or Lambda events, or `--pull` pulls them.

use gigalixir_release::{router, StepState};
use shared::deployment::Function;
use shared::service::Service;

const FUNCTION: Function = Function::Release;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some((flags, env)) = shared::service::start(FUNCTION)? else {
        return Ok(());
    };
    let bus = env.bus()?;
    let state = StepState {
        store: env.store()?,
        bus: bus.clone(),
    };
    Service::new(FUNCTION, router(state))
        .bus(bus)
        .force_pull(flags.pull)
        .run(&env)
        .await?;
    Ok(())
}
