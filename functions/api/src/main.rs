//! `gigalixir-api`: the API as a service — HTTP on `$PORT` (Cloud Run), or Lambda events
//! (API Gateway, Function URL) when `AWS_LAMBDA_RUNTIME_API` is set.

use gigalixir_api::{router, ApiState, Config};
use shared::deployment::Function;
use shared::service::{usage, Flags, Service};

const FUNCTION: Function = Function::Api;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if Flags::parse(FUNCTION, std::env::args().skip(1))
        .map_err(anyhow::Error::msg)?
        .is_none()
    {
        println!("{}", usage(FUNCTION));
        return Ok(());
    }
    shared::web::init_tracing();
    let config = Config::from_env()?;
    let app = router(ApiState {
        store: config.env.store()?,
        bus: config.env.bus()?,
        // The runtime lives with `deploy`: `ps` and `logs` answer 503 here.
        runtime: None,
    });
    Service::new(FUNCTION, app).run(&config.env).await?;
    Ok(())
}
