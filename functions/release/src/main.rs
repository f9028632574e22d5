//! The `release` function as a standalone service receiving Pub/Sub pushes on `$PORT`.

use anyhow::Context;
use gigalixir_release::{router, StepState};
use shared::web::{backend_url_from_env, port_from_env};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::web::init_tracing();
    let port = port_from_env().map_err(anyhow::Error::msg)?;
    let store_url = backend_url_from_env("STORE_URL", "sqlite:///var/lib/gigalixir/store.db")
        .map_err(anyhow::Error::msg)?;
    let bus_url = backend_url_from_env("BUS_URL", "sqlite:///var/lib/gigalixir/bus.db")
        .map_err(anyhow::Error::msg)?;
    let state = StepState {
        store: shared::backends::open_store(&store_url).context("opening the store")?,
        bus: shared::backends::open_bus(&bus_url).context("opening the bus")?,
    };
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("binding port {port}"))?;
    let app = router(state).layer(shared::web::trace_layer());
    shared::web::serve(listener, app, shared::web::shutdown_signal()).await?;
    Ok(())
}
