//! `gigalixir-platform`: every function in one process on the embedded backends — the API
//! (and, as the pipeline lands, git and the bus-triggered steps) on one port.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use futures::FutureExt;
use shared::ports::{Bus, Store, SubscriptionSpec};
use shared::push::RouterEndpoint;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Runs the whole platform on one machine: SQLite store and bus, blobs in a directory.
#[derive(Debug, Parser)]
#[command(name = "gigalixir-platform", version, about)]
struct Args {
    /// Port for the API and git (http://localhost:PORT).
    #[arg(long, env = "GIGALIXIR_PORT", default_value_t = 5080)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "GIGALIXIR_LISTEN", default_value = "127.0.0.1")]
    listen: std::net::IpAddr,
    /// Where the store, bus and blobs live [default: $XDG_DATA_HOME/gigalixir-platform,
    /// else ~/.local/share/gigalixir-platform].
    #[arg(long, env = "GIGALIXIR_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Store backend URL [default: sqlite://DATA_DIR/store.db].
    #[arg(long, env = "GIGALIXIR_STORE")]
    store: Option<String>,
    /// Bus backend URL [default: sqlite://DATA_DIR/bus.db].
    #[arg(long, env = "GIGALIXIR_BUS")]
    bus: Option<String>,
    /// Blobs backend URL [default: file://DATA_DIR/blobs].
    #[arg(long, env = "GIGALIXIR_BLOBS")]
    blobs: Option<String>,
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("gigalixir-platform"));
    }
    let home = std::env::var_os("HOME").context("neither --data-dir nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/gigalixir-platform"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::web::init_tracing();
    let args = Args::parse();
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => default_data_dir()?,
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let store_url = args
        .store
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("store.db").display()));
    let bus_url = args
        .bus
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("bus.db").display()));
    let blobs_url = args
        .blobs
        .unwrap_or_else(|| format!("file://{}", data_dir.join("blobs").display()));

    let store = shared::backends::open_store(&store_url).context("opening the store")?;
    let bus = shared::backends::open_bus(&bus_url).context("opening the bus")?;
    // Opened now so a bad URL fails at start; the steps that use blobs join with the
    // push-deploy work.
    let _blobs = shared::backends::open_blobs(&blobs_url).context("opening the blob store")?;

    let shutdown = CancellationToken::new();
    let steps = start_steps(&store, &bus, &shutdown).await?;

    let app =
        gigalixir_api::router(gigalixir_api::ApiState { store }).layer(shared::web::trace_layer());
    let addr = SocketAddr::new(args.listen, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}: is another platform running?"))?;
    let local = listener.local_addr()?;
    tracing::info!(
        url = %format!("http://localhost:{}", local.port()),
        data_dir = %data_dir.display(),
        "platform ready"
    );
    {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shared::web::shutdown_signal().await;
            shutdown.cancel();
        });
    }
    shared::web::serve(listener, app, shutdown.clone().cancelled_owned()).await?;
    shutdown.cancel();
    for step in steps {
        step.await.context("a delivery loop panicked")??;
    }
    tracing::info!("platform stopped");
    Ok(())
}

/// Subscribes each bus-triggered function to its topic and delivers to its router
/// in-process, exactly as Pub/Sub would push to it. Returns the delivery loops.
async fn start_steps(
    store: &Arc<dyn Store>,
    bus: &Arc<dyn Bus>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<Result<(), shared::PortError>>>> {
    let release = gigalixir_release::router(gigalixir_release::ReleaseState {
        store: store.clone(),
        bus: bus.clone(),
    });
    let wiring = [(
        SubscriptionSpec::new(
            "release.slug-uploaded",
            shared::messages::Topic::SLUG_UPLOADED,
        ),
        release,
    )];
    let mut loops = Vec::new();
    for (spec, router) in wiring {
        bus.ensure_subscription(&spec)
            .await
            .with_context(|| format!("creating the subscription {}", spec.name))?;
        let (bus, stop) = (bus.clone(), shutdown.clone().cancelled_owned().boxed());
        let endpoint = Arc::new(RouterEndpoint::new(router, "/"));
        loops.push(tokio::spawn(async move {
            bus.deliver(&spec.name, endpoint, stop).await
        }));
    }
    Ok(loops)
}
