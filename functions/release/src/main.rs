//! `gigalixir-release`: the release step as a service. Pub/Sub pushes `slug-uploaded` to
//! `POST /` on `$PORT` (Cloud Run), or Lambda events, or `--pull` pulls them.

use gigalixir_release::{router, StepState};
use shared::deployment::Function;
use shared::service::{usage, Flags, FunctionEnv, Service};

const FUNCTION: Function = Function::Release;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(flags) = Flags::parse(FUNCTION, std::env::args().skip(1)).map_err(anyhow::Error::msg)?
    else {
        println!("{}", usage(FUNCTION));
        return Ok(());
    };
    shared::web::init_tracing();
    let env = FunctionEnv::from_env(FUNCTION)?;
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
