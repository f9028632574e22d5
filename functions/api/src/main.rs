//! `gigalixir-api`: the API as a service — HTTP on `$PORT` (Cloud Run), or Lambda events
//! (API Gateway, Function URL) when `AWS_LAMBDA_RUNTIME_API` is set. Its environment:
//! `PORT`, `GIGALIXIR_STORE`, `GIGALIXIR_BUS`, `GIGALIXIR_BLOBS`, `GIGALIXIR_RUNTIME`,
//! `GIGALIXIR_DOMAIN`, `GIGALIXIR_RESERVED_DOMAINS` (`shared::deployment::env`).

use anyhow::Context;
use gigalixir_api::{router, ApiState};
use shared::backends::{RuntimeContext, RuntimeRole};
use shared::deployment::{self, Function};
use shared::service::Service;

const FUNCTION: Function = Function::Api;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some((_, env)) = shared::service::start(FUNCTION)? else {
        return Ok(());
    };
    // The apps' runtime, to look at (`ps`, `logs`, `ps:ssh`): deploy changes it, not this.
    let runtime = shared::backends::open_runtime(
        env.required(&deployment::RUNTIME)?,
        RuntimeContext {
            blobs_url: env.required(&deployment::BLOBS)?.to_owned(),
            blobs: env.blobs()?,
            domain: env.domain().to_owned(),
            role: RuntimeRole::Reads,
        },
    )
    .await
    .with_context(|| format!("opening {}", deployment::RUNTIME.name))?;
    let app = router(ApiState {
        store: env.store()?,
        bus: env.bus()?,
        runtime: Some(runtime.runtime),
        app_domain: env.domain().to_owned(),
        certificates: None,
        reserved_domains: env.reserved_domains()?.into(),
    });
    Service::new(FUNCTION, app).run(&env).await?;
    Ok(())
}
