//! `gigalixir-api`: the API as a service — HTTP on `$PORT` (Cloud Run), or Lambda events
//! (API Gateway, Function URL) when `AWS_LAMBDA_RUNTIME_API` is set. Its environment:
//! `PORT`, `GIGALIXIR_STORE`, `GIGALIXIR_BUS`, `GIGALIXIR_DOMAIN`,
//! `GIGALIXIR_RESERVED_DOMAINS` (`shared::deployment::env`).

use gigalixir_api::{router, ApiState};
use shared::deployment::Function;
use shared::service::Service;

const FUNCTION: Function = Function::Api;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some((_, env)) = shared::service::start(FUNCTION)? else {
        return Ok(());
    };
    let app = router(ApiState {
        store: env.store()?,
        bus: env.bus()?,
        // The runtime lives with `deploy`: `ps` and `logs` answer 503 here.
        runtime: None,
        app_domain: env.domain().to_owned(),
        certificates: None,
        reserved_domains: env.reserved_domains()?.into(),
    });
    Service::new(FUNCTION, app).run(&env).await?;
    Ok(())
}
