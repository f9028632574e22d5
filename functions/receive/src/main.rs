//! `gigalixir-receive`: git smart HTTP (`/APP.git/…`) and the push webhook
//! (`POST /hooks/github/APP`) as a service — HTTP on `$PORT` (Cloud Run), or Lambda events
//! when `AWS_LAMBDA_RUNTIME_API` is set. git runs this same binary as the pre-receive hook
//! of every push (`gigalixir-receive __git-hook pre-receive`).

use anyhow::Context;
use gigalixir_receive::{router, ReceiveState};
use shared::deployment::Function;
use shared::service::{usage, with_health, Flags, FunctionEnv, Service};

const FUNCTION: Function = Function::Receive;

fn main() -> anyhow::Result<std::process::ExitCode> {
    if std::env::args().nth(1).as_deref() == Some(gigalixir_receive::hook::HOOK_ARG) {
        return Ok(gigalixir_receive::hook::main());
    }
    if Flags::parse(FUNCTION, std::env::args().skip(1))
        .map_err(anyhow::Error::msg)?
        .is_none()
    {
        println!("{}", usage(FUNCTION));
        return Ok(std::process::ExitCode::SUCCESS);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())?;
    Ok(std::process::ExitCode::SUCCESS)
}

async fn run() -> anyhow::Result<()> {
    shared::web::init_tracing();
    let env = FunctionEnv::from_env(FUNCTION)?;
    let domain = env.domain();
    // Apps are served over TLS except on a developer's machine.
    let scheme = if domain == "localhost" || domain.ends_with(".localhost") {
        "http"
    } else {
        "https"
    };
    let state = ReceiveState {
        store: env.store()?,
        bus: env.bus()?,
        blobs: env.blobs()?,
        hook_exe: std::env::current_exe().context("locating this binary for git's hook")?,
        app_url_template: format!("{scheme}://{{app}}.{domain}/"),
        git: shared::gitfetch::GitPolicy::default(),
        git_slots: Default::default(),
        // Cloud Run's temporary directory is memory the size of the instance's: refuse
        // pushes only when nearly none of it is left.
        min_free_bytes: 256 << 20,
    };
    Service::new(FUNCTION, with_health(router(state)))
        .run(&env)
        .await?;
    Ok(())
}
