//! `gigalixir-platform`: every function in one process on the embedded backends — the API,
//! git, the pipeline steps (each subscribed to its topic on the durable SQLite bus and
//! called in-process through its own router), the Docker builder and runtime, and the
//! router that sends `APP.localhost` to the app.

mod acme;
mod router;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use clap::Parser;
use futures::FutureExt;
use shared::deployment::{self, Function, Settings};
use shared::ports::builder::BuildLimits;
use shared::ports::{Blobs, Builder, Bus, Runtime, Store};
use shared::push::RouterEndpoint;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Runs the whole platform on one machine: SQLite store and bus, blobs in a directory,
/// builds and apps in Docker containers.
#[derive(Debug, Parser)]
#[command(name = "gigalixir-platform", version, about)]
struct Args {
    /// Port for the API, git and the apps (http://APP.localhost:PORT).
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
    /// Apps answer at APP.DOMAIN.
    #[arg(long, env = "GIGALIXIR_DOMAIN", default_value = "localhost")]
    domain: String,
    /// Names this platform's containers and networks (label gigalixir.instance), so that
    /// several platforms share one Docker engine.
    #[arg(long, env = "GIGALIXIR_INSTANCE", default_value = "default")]
    instance: String,
    /// Seconds a release may take to accept connections.
    #[arg(long, env = "GIGALIXIR_BOOT_TIMEOUT", default_value_t = 60)]
    boot_timeout: u64,
    /// Minutes a build may take.
    #[arg(long, env = "GIGALIXIR_BUILD_TIMEOUT", default_value_t = 30)]
    build_timeout: u64,
    /// Size cap of each app's build cache, in MB; least recently used entries (one per
    /// mix.lock, Erlang/Elixir, buildpack version and MIX_ENV) are evicted beyond it.
    #[arg(long, env = "GIGALIXIR_BUILD_CACHE_MB", default_value_t = 1024)]
    build_cache_mb: u64,
    /// Most output of one build kept and shown to the pusher, in MB; beyond, one line says
    /// it was truncated.
    #[arg(long, env = "GIGALIXIR_BUILD_LOG_MB", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=1024))]
    build_log_mb: u64,
    /// Disk one build may fill, in MB: its files and its app's cache together (a sparse file
    /// counts whole); beyond, it is stopped and the push told why.
    #[arg(long, env = "GIGALIXIR_BUILD_DISK_MB", default_value_t = 8192,
          value_parser = clap::value_parser!(u64).range(64..=1_048_576))]
    build_disk_mb: u64,
    /// Builds that run at once, across apps; later pushes wait in order and say so.
    #[arg(long, env = "GIGALIXIR_BUILD_CONCURRENCY", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    build_concurrency: u32,
    /// The Hex repository the package cache pulls from [default: hex.pm's,
    /// https://repo.hex.pm].
    #[arg(long, env = "GIGALIXIR_HEX_UPSTREAM", value_name = "URL")]
    hex_upstream: Option<String>,
    /// The PEM public key that upstream signs its registry with [default: hex.pm's].
    #[arg(long, env = "GIGALIXIR_HEX_UPSTREAM_KEY", value_name = "FILE")]
    hex_upstream_key: Option<PathBuf>,
    /// Seconds a registry record is served from the package cache before the upstream is
    /// asked again (while the upstream does not answer, older copies are served, with a
    /// warning in the build's output).
    #[arg(long, env = "GIGALIXIR_HEX_REGISTRY_TTL", default_value_t = 300)]
    hex_registry_ttl: u64,
    /// Let git URLs (submodules, git dependencies, webhook sources) point at loopback
    /// addresses: for tests with a local git server, never in production.
    #[arg(long, env = "GIGALIXIR_GIT_ALLOW_LOOPBACK")]
    git_allow_loopback: bool,
    /// Seconds one git fetch of the platform's (a submodule, a git dependency, a webhook's
    /// commit) may take.
    #[arg(long, env = "GIGALIXIR_GIT_TIMEOUT", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    git_timeout: u64,
    /// A URL prefix asset tools (tailwind) may be fetched from; repeat for several
    /// [default: tailwind's GitHub releases].
    #[arg(
        long = "tool-allow",
        env = "GIGALIXIR_TOOL_ALLOW",
        value_name = "PREFIX",
        value_delimiter = ','
    )]
    tool_allow: Vec<String>,
    /// Where a tool comes from, as NAME=URL with {version} and {target}
    /// [default: tailwind=its GitHub release download].
    #[arg(
        long = "tool-source",
        env = "GIGALIXIR_TOOL_SOURCE",
        value_name = "NAME=URL",
        value_delimiter = ','
    )]
    tool_source: Vec<String>,
    /// Let apps whose assets/package.json lists npm packages build as they are (off: they
    /// are told to vendor them; the platform runs no `npm install` either way).
    #[arg(long, env = "GIGALIXIR_NPM_ACCESS")]
    npm_access: bool,
    /// Seconds a client has to send a request's headers (and an idle keep-alive connection
    /// lasts).
    #[arg(long, env = "GIGALIXIR_HEADER_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    header_timeout: u64,
    /// The port apps answer HTTPS on (`https://APP.<domain>:PORT/` and their custom
    /// domains), with certificates from the platform's local CA (`DATA_DIR/ca/ca.pem`);
    /// 0: no HTTPS.
    #[arg(long, env = "GIGALIXIR_HTTPS_PORT", default_value_t = 5443)]
    https_port: u16,
    /// An ACME server's directory URL (Let's Encrypt's, or a test server's): certificates
    /// for apps and custom domains come from it (HTTP-01 on the HTTP port), the local CA's
    /// serving until they do.
    #[arg(long, env = "GIGALIXIR_ACME_DIRECTORY", value_name = "URL")]
    acme_directory: Option<String>,
    /// A PEM file of a CA to trust when talking to the ACME server (a test server's own).
    #[arg(long, env = "GIGALIXIR_ACME_CA_FILE", value_name = "PATH")]
    acme_ca_file: Option<PathBuf>,
    /// Comma-separated names no app may add as a custom domain, nor any name under them:
    /// the names this platform itself is reached on (its API and git host, a website), so
    /// that no app can take their traffic.
    #[arg(
        long,
        env = "GIGALIXIR_RESERVED_DOMAINS",
        value_name = "NAMES",
        default_value = ""
    )]
    reserved_domains: String,
    /// Seconds an app may take to answer a request's headers through the router (then 504).
    #[arg(long, env = "GIGALIXIR_REQUEST_TIMEOUT", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout: u64,
    /// Seconds an upgraded connection (a WebSocket) may stay silent both ways before the
    /// router closes it.
    #[arg(long, env = "GIGALIXIR_UPGRADE_IDLE_TIMEOUT", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    upgrade_idle_timeout: u64,
    /// The most WebSockets (upgraded connections) one app may have open through the router
    /// (then 503).
    #[arg(long, env = "GIGALIXIR_MAX_WEBSOCKETS_PER_APP", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_websockets_per_app: u64,
    /// The most WebSockets open through the router in all (then 503); each takes two file
    /// descriptors of the platform.
    #[arg(long, env = "GIGALIXIR_MAX_WEBSOCKETS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_websockets: u64,
    /// The largest request body the router passes to an app, in MB (then 413).
    #[arg(long, env = "GIGALIXIR_MAX_APP_BODY_MB", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=10_240))]
    max_app_body_mb: u64,
    /// Open connections at most (API, git and apps together); beyond, new ones get 503.
    #[arg(long, env = "GIGALIXIR_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Whether apps may open connections to the internet (`false`: only to their own
    /// replicas). Either way they reach neither this host nor the cloud metadata address.
    #[arg(long, env = "GIGALIXIR_APP_EGRESS", default_value_t = true,
          action = clap::ArgAction::Set, value_name = "BOOL")]
    app_egress: bool,
    /// Whether the platform installs the packet filter rules that wall app containers off
    /// from this host and the cloud metadata address (needs root or CAP_NET_ADMIN). Off
    /// only on a machine where you run your own apps alone.
    #[arg(long, env = "GIGALIXIR_APP_FIREWALL", default_value_t = true,
          action = clap::ArgAction::Set, value_name = "BOOL")]
    app_firewall: bool,
    /// Free space, in MB, a push needs in the data directory to start (a slug of the
    /// largest size and room); below it pushes are refused at once, saying so.
    #[arg(long, env = "GIGALIXIR_MIN_FREE_MB", default_value_t = 1536)]
    min_free_mb: u64,
    /// SMTP server for account mail (sign-up confirmations, password resets):
    /// `smtp://[USER:PASSWORD@]HOST:PORT` (`?tls=required` for STARTTLS) or
    /// `smtps://…`. Unset: each mail is an `.eml` file in DATA_DIR/outbox, and the log says
    /// so.
    #[arg(long, env = "GIGALIXIR_SMTP_URL", value_name = "URL")]
    smtp_url: Option<String>,
    /// Sender of account mail (default `noreply@DOMAIN`).
    #[arg(long, env = "GIGALIXIR_MAIL_FROM", value_name = "ADDRESS")]
    mail_from: Option<String>,
    /// The platform's address as users reach it, for the links in account mail (default
    /// `http://localhost:PORT`).
    #[arg(long, env = "GIGALIXIR_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// New accounts are active at once, without confirming their email (a private
    /// installation: you know who signs up).
    #[arg(long, env = "GIGALIXIR_NO_EMAIL_CONFIRMATION")]
    no_email_confirmation: bool,
    /// Managed databases (`pg:create`) on this PostgreSQL server instead of the platform's
    /// own cluster: an admin URL, `postgresql://USER:PASSWORD@HOST:PORT/DB`, of a role that
    /// may create roles and databases.
    #[arg(long, env = "GIGALIXIR_POSTGRES_URL", value_name = "URL")]
    postgres_url: Option<String>,
    /// The host apps put in their `DATABASE_URL` [default: with --postgres-url, its host;
    /// else the host's address on Docker's default bridge, which app containers reach].
    #[arg(long, env = "GIGALIXIR_POSTGRES_HOST", value_name = "HOST")]
    postgres_host: Option<String>,
    /// The port the platform's own PostgreSQL cluster (DATA_DIR/postgres, made on the first
    /// `pg:create`, from Debian's `postgresql`) takes at its first start, or the next free
    /// one; 54320–54419, the ports app containers may reach on this host.
    #[arg(long, env = "GIGALIXIR_POSTGRES_PORT", default_value_t = 54320,
          value_parser = clap::value_parser!(u16).range(54320..=54419))]
    postgres_port: u16,
    /// Log drains may point at loopback addresses (tests with a local receiver); other
    /// private, link-local and reserved addresses stay refused.
    #[arg(long, env = "GIGALIXIR_DRAINS_ALLOW_LOOPBACK")]
    drains_allow_loopback: bool,
    /// A PEM file of CA certificates log drains' receivers are trusted by, besides
    /// Mozilla's roots (a private receiver's CA).
    #[arg(long, env = "GIGALIXIR_DRAIN_CA_FILE", value_name = "PEM")]
    drain_ca_file: Option<PathBuf>,
    /// Print the wiring (topics, subscriptions, blob spaces, each function's environment)
    /// as JSON and exit; the infrastructure checks compare it with `infra/`.
    #[arg(long)]
    print_deployment: bool,
}

fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("gigalixir-platform"));
    }
    let home = std::env::var_os("HOME").context("neither --data-dir nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/gigalixir-platform"))
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    // git runs this same binary as the pre-receive hook of every push.
    if std::env::args().nth(1).as_deref() == Some(gigalixir_receive::hook::HOOK_ARG) {
        return Ok(gigalixir_receive::hook::main());
    }
    let args = Args::parse();
    // Two rustls providers are compiled in (ring, aws-lc-rs): the process uses ring, so that
    // clients that take the default (the ACME client) find one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data_dir = if args.print_deployment {
        None
    } else {
        Some(prepare_data_dir(&args)?)
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args, data_dir))?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// The data directory, made and private (users' data, keys and config: the platform's
/// user alone reads it), with `tmp/` inside emptied and made everyone's temporary
/// directory in this process: spools, checkouts and archives a killed platform left there
/// go at the next start. Runs before any thread starts (it sets `TMPDIR`).
fn prepare_data_dir(args: &Args) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let data_dir = match args.data_dir.clone() {
        Some(dir) => dir,
        None => default_data_dir()?,
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    // With the platform's database cluster inside, its server's user passes through (and
    // reads nothing here): see `gigalixir_postgres::cluster`.
    let mode = if gigalixir_postgres::cluster::cluster_dir(&data_dir).exists() {
        0o710
    } else {
        0o700
    };
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("making {} private", data_dir.display()))?;
    let tmp = data_dir.join("tmp");
    if tmp.exists() {
        let left = std::fs::read_dir(&tmp).map(Iterator::count).unwrap_or(0);
        std::fs::remove_dir_all(&tmp).with_context(|| format!("emptying {}", tmp.display()))?;
        if left > 0 {
            eprintln!(
                "removed {left} temporary item(s) a previous run left in {}",
                tmp.display()
            );
        }
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    std::env::set_var("TMPDIR", &tmp);
    Ok(data_dir)
}

/// Everything the functions share in one process.
struct Ports {
    hex: shared::hex::HexCache,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    blobs: Arc<dyn Blobs>,
    builder: Arc<dyn Builder>,
    runtime: Arc<dyn Runtime>,
}

async fn run(args: Args, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    shared::web::init_tracing();
    if args.print_deployment {
        let manifest = deployment::manifest(Settings {
            build: Duration::from_secs(args.build_timeout * 60),
            boot: Duration::from_secs(args.boot_timeout),
            build_concurrency: args.build_concurrency,
        });
        println!("{manifest:#}");
        return Ok(());
    }
    let data_dir = data_dir.context("the data directory")?;
    let store_url = args
        .store
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("store.db").display()));
    let bus_url = args
        .bus
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("bus.db").display()));
    let blobs_url = args
        .blobs
        .clone()
        .unwrap_or_else(|| format!("file://{}", data_dir.join("blobs").display()));
    let blobs = shared::backends::open_blobs(&blobs_url).context("opening the blob store")?;
    // The Docker runtime, as the deploy function opens it: containers read slugs from the
    // blob store's own directory, or from a copy kept of a remote one; it walls the apps
    // off and restarts crashed replicas.
    let runtime_url = {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("instance", &args.instance)
            .append_pair("ssh_dir", &data_dir.join("ssh").display().to_string())
            .append_pair(
                "slug_cache",
                &data_dir.join("slug-cache").display().to_string(),
            )
            .append_pair("egress", &args.app_egress.to_string())
            .append_pair("firewall", &args.app_firewall.to_string());
        format!("docker://?{}", query.finish())
    };
    let opened = shared::backends::open_runtime(
        &runtime_url,
        shared::backends::RuntimeContext {
            blobs_url: blobs_url.clone(),
            blobs: blobs.clone(),
            domain: args.domain.clone(),
            role: shared::backends::RuntimeRole::Runs,
        },
    )
    .await
    .map_err(|e| {
        let why = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
        // the runtime's own setting is the platform's flag here
        let why = why.replace("`firewall=false`", "--app-firewall=false");
        anyhow::anyhow!("opening the Docker runtime: {why}")
    })?;
    let route_changes = opened
        .route_changes
        .context("the Docker runtime counts its route changes")?;
    // The package cache: builds reach it, and nothing else, through a socket in a directory
    // mounted into each build.
    let hex_settings = shared::hex::HexSettings::new(
        args.hex_upstream.as_deref(),
        args.hex_upstream_key.as_deref(),
        Duration::from_secs(args.hex_registry_ttl),
    )
    .map_err(anyhow::Error::msg)?;
    let hex =
        shared::hex::HexCache::new(blobs.clone(), hex_settings).map_err(anyhow::Error::msg)?;
    let packages_dir = data_dir.join("run").join("packages");
    let packages = shared::hex::router::serve_socket(&packages_dir, hex.clone())
        .await
        .with_context(|| format!("serving the package cache in {}", packages_dir.display()))?;
    let ports = Ports {
        hex,
        store: shared::backends::open_store(&store_url).context("opening the store")?,
        bus: shared::backends::open_bus(&bus_url).context("opening the bus")?,
        blobs,
        builder: shared::backends::open_builder(
            &format!(
                "docker://?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("instance", &args.instance)
                    .finish()
            ),
            Some(packages_dir),
        )
        .context("connecting to the Docker engine")?,
        runtime: opened.runtime,
    };
    // The locks a killed run of this platform held (pushes, deploys) are freed now rather
    // than when they expire: its work is over.
    let family = format!("platform-{}", args.instance);
    match shared::locks::free_dead(&*ports.store, &family).await {
        Ok(0) => {}
        Ok(freed) => tracing::warn!(freed, "freed the locks of an earlier run of this platform"),
        Err(err) => {
            tracing::warn!(error = %err, "freeing an earlier run's locks; they expire by themselves")
        }
    }
    shared::locks::set_process(&family);
    // What a killed run left (finished builds' containers, release phases, replicas of gone
    // apps or replaced releases) is removed at start, then every minute.
    let (reconcile_store, runtime) = (ports.store.clone(), ports.runtime.clone());
    let _reconciler = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        loop {
            match runtime.remove_orphans(&*reconcile_store).await {
                Ok(removed) if !removed.is_empty() => {
                    tracing::warn!(count = removed.len(), "removed orphan containers");
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "looking for orphan containers"),
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });

    let https_listener = match args.https_port {
        0 => None,
        https_port => {
            let addr = SocketAddr::new(args.listen, https_port);
            Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen for HTTPS on {addr}: is another platform running? (--https-port 0 turns HTTPS off)")
            })?)
        }
    };
    let addr = SocketAddr::new(args.listen, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}: is another platform running?"))?;
    let port = listener.local_addr()?.port();

    private_files(&data_dir);
    let shutdown = CancellationToken::new();
    let git_policy = shared::gitfetch::GitPolicy {
        allow_loopback: args.git_allow_loopback,
        timeout: Duration::from_secs(args.git_timeout),
        ..Default::default()
    };
    let steps = start_steps(&ports, &args, &shutdown, git_policy).await?;

    let receive = gigalixir_receive::router(gigalixir_receive::ReceiveState {
        store: ports.store.clone(),
        bus: ports.bus.clone(),
        blobs: ports.blobs.clone(),
        hook_exe: std::env::current_exe().context("locating this binary for git's hook")?,
        app_url_template: format!("http://{{app}}.{}:{port}/", args.domain),
        git: git_policy,
        git_slots: Default::default(),
        min_free_bytes: args.min_free_mb << 20,
    });
    let reserved_domains: Arc<[shared::domain::Fqdn]> =
        shared::domain::Fqdn::parse_list(&args.reserved_domains)
            .map_err(|why| anyhow::anyhow!("--reserved-domains: {why}"))?
            .into();
    let acme = args.acme_directory.clone().map(|directory| {
        acme::Acme::new(directory, args.acme_ca_file.clone(), ports.blobs.clone())
    });
    let certificates: Option<Arc<dyn gigalixir_api::DomainCertificates>> =
        match (&acme, args.https_port) {
            (_, 0) => None,
            (Some(acme), _) => Some(Arc::new(acme::ForApi(acme.clone()))),
            (None, _) => Some(Arc::new(tls::LocalForApi)),
        };
    let mailer = gigalixir_api::mail::Mailer::new(
        args.smtp_url.as_deref(),
        data_dir.join("outbox"),
        &args
            .mail_from
            .clone()
            .unwrap_or_else(|| format!("noreply@{}", args.domain)),
    )?;
    tracing::info!(
        mail = %mailer.describe(),
        email_confirmation = !args.no_email_confirmation,
        "account mail"
    );
    let databases = databases(&args, &data_dir).await?;
    // Log drains: the replicas' output, build and deploy lines, the router's lines.
    let drains = gigalixir_drains::Shipper::new(
        ports.store.clone(),
        Some(ports.runtime.clone()),
        gigalixir_drains::Settings {
            allow_loopback: args.drains_allow_loopback,
            ca_file: args.drain_ca_file.clone(),
        },
    )
    .map_err(|why| anyhow::anyhow!("log drains: {why}"))?;
    let _drains = drains.spawn();
    let api_state = gigalixir_api::ApiState {
        store: ports.store.clone(),
        bus: ports.bus.clone(),
        runtime: Some(ports.runtime.clone()),
        app_domain: args.domain.clone(),
        certificates,
        reserved_domains: reserved_domains.clone(),
        accounts: gigalixir_api::Accounts {
            mailer,
            confirm_email: !args.no_email_confirmation,
            public_url: args
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://localhost:{port}")),
        },
        databases,
        blobs: Some(ports.blobs.clone()),
        drains_allow_loopback: args.drains_allow_loopback,
    };
    // Daily backups of every managed database, checked each hour.
    {
        let state = api_state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            loop {
                gigalixir_api::databases::daily_backups(&state).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        });
    }
    let api = gigalixir_api::router(api_state);
    let proxy = router::Proxy::new(
        args.domain.clone(),
        port,
        ports.store.clone(),
        ports.runtime.clone(),
        route_changes,
        router::EdgeLimits {
            request_timeout: Duration::from_secs(args.request_timeout),
            upgrade_idle: Duration::from_secs(args.upgrade_idle_timeout),
            max_body_bytes: args.max_app_body_mb << 20,
            max_upgraded_per_app: args.max_websockets_per_app as usize,
            max_upgraded: args.max_websockets as usize,
        },
    )
    .with_reserved(reserved_domains)
    .with_drains(drains);
    let proxy = match &acme {
        Some(acme) => {
            let proxy = proxy.with_acme(acme.clone());
            acme.spawn_upkeep(proxy.clone());
            proxy
        }
        None => proxy,
    };
    // Requests to apps get the router's own access log line, not the platform's.
    let app: Router = api.merge(receive).layer(shared::web::trace_layer()).layer(
        axum::middleware::from_fn_with_state(proxy.clone(), router::route_by_host),
    );
    if let Some(listener) = https_listener {
        let certs = Arc::new(
            tls::Certificates::open(&data_dir.join("ca"), &args.instance, acme.clone())
                .context("opening the local certificate authority")?,
        );
        tracing::info!(
            apps = %format!("https://APP.{}:{}", args.domain, listener.local_addr()?.port()),
            ca = %certs.ca_file.display(),
            "serving HTTPS (trust the CA file, e.g. curl --cacert)"
        );
        tokio::spawn(tls::serve(
            listener,
            app.clone(),
            proxy,
            certs,
            shared::web::ServeLimits {
                header_read_timeout: Duration::from_secs(args.header_timeout),
                max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
                ..Default::default()
            },
            shutdown.clone(),
        ));
    }

    tracing::info!(
        url = %format!("http://localhost:{port}"),
        apps = %format!("http://APP.{}:{port}", args.domain),
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
    // A push holds its request open until its deploy ends: open requests get a bounded
    // grace after the signal.
    let limits = shared::web::ServeLimits {
        header_read_timeout: Duration::from_secs(args.header_timeout),
        max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
        ..Default::default()
    };
    shared::service::serve_until_with(listener, app, shutdown.clone().cancelled_owned(), limits)
        .await?;
    shutdown.cancel();
    packages.abort();
    for step in steps {
        step.await.context("a delivery loop panicked")??;
    }
    tracing::info!("platform stopped");
    Ok(())
}

/// Where managed databases are made: the server of `--postgres-url`, or the platform's own
/// cluster, made on the first `pg:create` (started at once when it exists, so that apps
/// find it after a reboot).
async fn databases(
    args: &Args,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<Arc<dyn shared::ports::Databases>>> {
    if let Some(url) = &args.postgres_url {
        let server = gigalixir_postgres::Server::from_url(url, args.postgres_host.as_deref())
            .context("--postgres-url")?;
        return Ok(Some(Arc::new(server)));
    }
    let gateway = match shared::docker::guard::bridge_gateway().await {
        Ok(ip) => ip,
        Err(err) => {
            let why =
                std::error::Error::source(&err).map_or_else(|| err.to_string(), |s| s.to_string());
            tracing::warn!(error = %why, "no managed databases: app containers could not reach a server here");
            return Ok(None);
        }
    };
    if args.app_firewall {
        shared::docker::guard::admit_databases(gateway)
            .await
            .context("letting app containers reach the platform's PostgreSQL")?;
    }
    let options = gigalixir_postgres::cluster::Options {
        data_dir: data_dir.to_owned(),
        port: args.postgres_port,
        listen: vec![gateway],
        app_host: args
            .postgres_host
            .clone()
            .unwrap_or_else(|| gateway.to_string()),
        // Docker's address pools, where app networks are.
        app_networks: vec![
            "172.16.0.0/12".into(),
            "192.168.0.0/16".into(),
            "10.0.0.0/8".into(),
        ],
        bin_dir: None,
    };
    let exists = gigalixir_postgres::cluster::cluster_dir(data_dir)
        .join("data/PG_VERSION")
        .exists();
    let lazy: Arc<dyn shared::ports::Databases> =
        Arc::new(gigalixir_postgres::Lazy::new(move || {
            gigalixir_postgres::cluster::start(options.clone())
        }));
    if exists {
        let lazy = lazy.clone();
        tokio::spawn(async move {
            if let Err(err) = lazy.version().await {
                tracing::error!(error = %err, "the platform's PostgreSQL cluster did not start");
            }
        });
    }
    Ok(Some(lazy))
}

/// The store's and the bus's files (SQLite's database, journal and shared memory) are the
/// platform's user's alone.
fn private_files(data_dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    for name in ["store.db", "bus.db"] {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let file = data_dir.join(format!("{name}{suffix}"));
            if file.exists() {
                if let Err(err) =
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                {
                    tracing::warn!(file = %file.display(), error = %err, "could not make a data file private");
                }
            }
        }
    }
}

/// Subscribes each pipeline function to its topic and delivers to its router in-process,
/// exactly as Pub/Sub would push to it. Returns the delivery loops.
async fn start_steps(
    ports: &Ports,
    args: &Args,
    shutdown: &CancellationToken,
    git: shared::gitfetch::GitPolicy,
) -> anyhow::Result<Vec<JoinHandle<Result<(), shared::PortError>>>> {
    let boot_timeout = Duration::from_secs(args.boot_timeout);
    let build_timeout = Duration::from_secs(args.build_timeout * 60);
    let build = gigalixir_build::router(gigalixir_build::StepState {
        store: ports.store.clone(),
        bus: ports.bus.clone(),
        blobs: ports.blobs.clone(),
        builder: ports.builder.clone(),
        limits: BuildLimits {
            timeout: build_timeout,
            cache_bytes: args.build_cache_mb << 20,
            log_bytes: args.build_log_mb << 20,
            disk_bytes: args.build_disk_mb << 20,
            ..BuildLimits::default()
        },
        hex: Some(ports.hex.clone()),
        git,
        tools: gigalixir_build::tools::ToolPolicy {
            allow: args.tool_allow.clone(),
            sources: args.tool_source.clone(),
            allow_loopback: args.git_allow_loopback,
        },
        npm: args.npm_access,
        turns: gigalixir_build::turns::Turns::new(args.build_concurrency as usize),
    });
    let upload = gigalixir_upload::router(gigalixir_upload::StepState {
        store: ports.store.clone(),
        bus: ports.bus.clone(),
        blobs: ports.blobs.clone(),
        builder: ports.builder.clone(),
    });
    let release = gigalixir_release::router(gigalixir_release::StepState {
        store: ports.store.clone(),
        bus: ports.bus.clone(),
    });
    let deploy = gigalixir_deploy::router(gigalixir_deploy::StepState {
        store: ports.store.clone(),
        bus: ports.bus.clone(),
        runtime: ports.runtime.clone(),
        blobs: ports.blobs.clone(),
        boot_timeout,
        app_domain: args.domain.clone(),
    });
    let wiring = deployment::subscriptions(Settings {
        build: build_timeout,
        boot: boot_timeout,
        build_concurrency: args.build_concurrency,
    })
    .into_iter()
    .filter_map(|wire| {
        let router = match wire.function {
            Function::Build => build.clone(),
            Function::Upload => upload.clone(),
            Function::Release => release.clone(),
            Function::Deploy => deploy.clone(),
            // Served over HTTP, not subscribed.
            Function::Api | Function::Receive => return None,
        };
        Some((wire.spec, wire.path, router))
    });
    let mut loops = Vec::new();
    for (spec, path, router) in wiring {
        ports
            .bus
            .ensure_subscription(&spec)
            .await
            .with_context(|| format!("creating the subscription {}", spec.name))?;
        let (bus, stop) = (
            ports.bus.clone(),
            shutdown.clone().cancelled_owned().boxed(),
        );
        let endpoint = Arc::new(RouterEndpoint::new(router, path));
        loops.push(tokio::spawn(async move {
            bus.deliver(&spec.name, endpoint, stop).await
        }));
    }
    Ok(loops)
}
