//! The `api` function as a standalone HTTP service (a container on Cloud Run).

use anyhow::Context;
use gigalixir_api::{router, ApiState, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::web::init_tracing();
    let config = Config::from_env()?;
    let store = shared::backends::open_store(&config.store_url).context("opening the store")?;
    let bus = shared::backends::open_bus(&config.bus_url).context("opening the bus")?;
    let app = router(ApiState {
        store,
        bus,
        runtime: None,
    })
    .layer(shared::web::trace_layer());
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port))
        .await
        .with_context(|| format!("binding port {}", config.port))?;
    shared::web::serve(listener, app, shared::web::shutdown_signal()).await?;
    Ok(())
}
