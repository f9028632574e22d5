//! The platform's own PostgreSQL cluster: Debian's server binaries (`postgresql`), a
//! cluster in `DATA_DIR/postgres/data`, its admin's password and port in
//! `DATA_DIR/postgres.json` (private to the platform).
//!
//! - Started with `pg_ctl` on first use; like app containers it outlives the platform (a
//!   platform that restarts finds it running and takes it over).
//! - It listens on loopback and on the addresses given (the Docker bridge's gateway, which
//!   app containers reach), on one port chosen at the first start.
//! - `pg_hba.conf`: the admin from loopback only; every other role only to the database of
//!   its own name (`sameuser`), from this machine's own addresses and the app networks
//!   given, by SCRAM password; everything else is refused. No Unix socket.
//! - As root, the server runs as Debian's `postgres` user (PostgreSQL refuses root): the
//!   data directory's group becomes `postgres` with `0710`, so that user may pass through
//!   it and nobody else may read it.

use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use gigalixir_core::error::{PortError, PortResult};
use gigalixir_core::ports::databases::Endpoint;
use serde::{Deserialize, Serialize};
use tokio_postgres::Config;

use crate::{debian_bin_dir, Server};

/// The admin role of the platform's cluster.
pub const ADMIN: &str = "gigalixir";

/// How the platform's cluster is laid out and reached.
#[derive(Debug, Clone)]
pub struct Options {
    /// The platform's data directory: the cluster is `postgres/data` in it.
    pub data_dir: PathBuf,
    /// The port tried first at the first start (then the next ones, up to 99 more).
    pub port: u16,
    /// Addresses it listens on besides 127.0.0.1.
    pub listen: Vec<IpAddr>,
    /// The host apps put in their `DATABASE_URL`.
    pub app_host: String,
    /// Networks (CIDR) apps connect from.
    pub app_networks: Vec<String>,
    /// Where `initdb`, `pg_ctl` and `postgres` are; `None`: the newest of
    /// `/usr/lib/postgresql/N/bin`.
    pub bin_dir: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct State {
    port: u16,
    password: String,
}

/// The cluster's directory under a data directory.
pub fn cluster_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("postgres")
}

fn unavailable(msg: String) -> PortError {
    PortError::unavailable(msg)
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The `postgres` user's uid and gid.
async fn postgres_user() -> PortResult<(u32, u32)> {
    let id = |flag: &'static str| async move {
        let out = tokio::process::Command::new("id")
            .args([flag, "postgres"])
            .output()
            .await
            .map_err(PortError::from_io)?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .map_err(|_| {
                unavailable(
                    "running PostgreSQL as root needs Debian's `postgres` user (apt install postgresql)"
                        .into(),
                )
            })
    };
    Ok((id("-u").await?, id("-g").await?))
}

/// Runs a PostgreSQL program, as the `postgres` user when the platform is root.
async fn run(owner: Option<(u32, u32)>, program: &Path, args: &[&str]) -> PortResult<String> {
    let mut cmd = match owner {
        Some(_) => {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        }
        None => tokio::process::Command::new(program),
    };
    let out = cmd
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| unavailable(format!("starting {}: {e}", program.display())))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(unavailable(format!(
            "{} {} failed: {}",
            program.display(),
            args.first().copied().unwrap_or(""),
            text.trim()
        )))
    }
}

/// Writes a file the server reads (owned by it when the platform is root).
fn write_owned(path: &Path, text: &str, owner: Option<(u32, u32)>, mode: u32) -> PortResult<()> {
    std::fs::write(path, text).map_err(PortError::from_io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(PortError::from_io)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(PortError::from_io)?;
    }
    Ok(())
}

fn free_port(first: u16, listen: &[IpAddr]) -> PortResult<u16> {
    (first..first.saturating_add(100))
        .find(|&port| {
            std::iter::once(IpAddr::from([127, 0, 0, 1]))
                .chain(listen.iter().copied())
                .all(|ip| std::net::TcpListener::bind((ip, port)).is_ok())
        })
        .ok_or_else(|| {
            unavailable(format!(
                "no free port for PostgreSQL in {first}–{}",
                first.saturating_add(99)
            ))
        })
}

/// Starts the cluster (making it at the first start), or takes over the one running, and
/// returns it as a [`Server`].
pub async fn start(opts: Options) -> PortResult<Server> {
    let bin = opts
        .bin_dir
        .clone()
        .or_else(debian_bin_dir)
        .ok_or_else(|| {
            unavailable(
                "managed databases need PostgreSQL's server programs (apt install postgresql), \
             or a server given with --postgres-url"
                    .into(),
            )
        })?;
    let owner = if running_as_root() {
        Some(postgres_user().await?)
    } else {
        None
    };
    let root = cluster_dir(&opts.data_dir);
    let data = root.join("data");
    let state_file = opts.data_dir.join("postgres.json");
    if let Some((uid, gid)) = owner {
        // The postgres user passes through the data directory, and reads nothing there.
        std::os::unix::fs::chown(&opts.data_dir, None, Some(gid)).map_err(PortError::from_io)?;
        std::fs::set_permissions(&opts.data_dir, std::fs::Permissions::from_mode(0o710))
            .map_err(PortError::from_io)?;
        if !root.exists() {
            std::fs::create_dir(&root).map_err(PortError::from_io)?;
        }
        std::os::unix::fs::chown(&root, Some(uid), Some(gid)).map_err(PortError::from_io)?;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
            .map_err(PortError::from_io)?;
        if run(
            owner,
            Path::new("/usr/bin/test"),
            &["-w", &root.display().to_string()],
        )
        .await
        .is_err()
        {
            return Err(unavailable(format!(
                "the `postgres` user cannot reach {}: a folder above it is closed to other \
                 users (allow them through it, chmod o+x, or give the platform --postgres-url)",
                root.display()
            )));
        }
    } else {
        std::fs::create_dir_all(&root).map_err(PortError::from_io)?;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
            .map_err(PortError::from_io)?;
    }

    let state = if data.join("PG_VERSION").exists() {
        let text = std::fs::read_to_string(&state_file).map_err(|e| {
            unavailable(format!(
                "the cluster {} exists but {} cannot be read ({e}): its admin password is lost",
                data.display(),
                state_file.display()
            ))
        })?;
        serde_json::from_str::<State>(&text)
            .map_err(|e| unavailable(format!("{} does not parse: {e}", state_file.display())))?
    } else {
        // A half-made cluster from an interrupted first start goes.
        if data.exists() {
            std::fs::remove_dir_all(&data).map_err(PortError::from_io)?;
        }
        let state = State {
            port: free_port(opts.port, &opts.listen)?,
            password: crate::new_password().expose().to_owned(),
        };
        let pwfile = root.join("init.pw");
        write_owned(&pwfile, &state.password, owner, 0o600)?;
        let made = run(
            owner,
            &bin.join("initdb"),
            &[
                "-D",
                &data.display().to_string(),
                "-U",
                ADMIN,
                &format!("--pwfile={}", pwfile.display()),
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
        )
        .await;
        let _ = std::fs::remove_file(&pwfile);
        made?;
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(PortError::from_io)?;
        text.push_str("\n# The platform's settings.\ninclude_if_exists = 'gigalixir.conf'\n");
        write_owned(&conf, &text, owner, 0o600)?;
        // Written last: a state file means a whole cluster.
        let json = serde_json::to_string(&state).map_err(|e| unavailable(e.to_string()))?;
        write_owned(&state_file, &json, None, 0o600)?;
        tracing::info!(dir = %data.display(), port = state.port, "PostgreSQL cluster made");
        state
    };

    let listen: Vec<String> = std::iter::once("127.0.0.1".to_owned())
        .chain(opts.listen.iter().map(IpAddr::to_string))
        .collect();
    write_owned(
        &data.join("gigalixir.conf"),
        &format!(
            "# Written by the platform at each start.\n\
             listen_addresses = '{}'\n\
             port = {}\n\
             unix_socket_directories = ''\n\
             max_connections = 600\n\
             password_encryption = 'scram-sha-256'\n\
             log_min_messages = warning\n",
            listen.join(","),
            state.port
        ),
        owner,
        0o600,
    )?;
    // `samehost`: any of this machine's own addresses (a developer's psql on the host).
    let mut hba = format!(
        "# Written by the platform at each start.\n\
         host all {ADMIN} 127.0.0.1/32 scram-sha-256\n\
         host all {ADMIN} all reject\n\
         host sameuser all samehost scram-sha-256\n"
    );
    for net in &opts.app_networks {
        hba.push_str(&format!("host sameuser all {net} scram-sha-256\n"));
    }
    hba.push_str("host all all all reject\n");
    write_owned(&data.join("pg_hba.conf"), &hba, owner, 0o600)?;

    let data_arg = data.display().to_string();
    let pg_ctl = bin.join("pg_ctl");
    if run(owner, &pg_ctl, &["status", "-D", &data_arg])
        .await
        .is_ok()
    {
        run(owner, &pg_ctl, &["reload", "-D", &data_arg, "-s"]).await?;
        tracing::info!(port = state.port, "PostgreSQL cluster running: taken over");
    } else {
        let log = root.join("server.log").display().to_string();
        run(
            owner,
            &pg_ctl,
            &["start", "-D", &data_arg, "-l", &log, "-w", "-t", "60", "-s"],
        )
        .await
        .map_err(|e| {
            let why =
                std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
            unavailable(format!("{why} (the server's log: {log})"))
        })?;
        tracing::info!(port = state.port, "PostgreSQL cluster started");
    }

    let mut admin = Config::new();
    admin
        .host("127.0.0.1")
        .port(state.port)
        .user(ADMIN)
        .password(state.password.as_str())
        .dbname("postgres");
    let server = Server::new(
        admin,
        Endpoint {
            host: opts.app_host.clone(),
            port: state.port,
        },
        Some(bin),
    );
    server.harden().await?;
    let _ = server.hardened.set(());
    Ok(server)
}

/// Stops the cluster of `data_dir` if it runs (fast: sessions end). For tests and
/// `scripts/down`.
pub async fn stop(data_dir: &Path) -> PortResult<()> {
    let data = cluster_dir(data_dir).join("data");
    if !data.join("postmaster.pid").exists() {
        return Ok(());
    }
    let bin = debian_bin_dir()
        .ok_or_else(|| unavailable("PostgreSQL's programs are not installed".into()))?;
    let owner = if running_as_root() {
        Some(postgres_user().await?)
    } else {
        None
    };
    run(
        owner,
        &bin.join("pg_ctl"),
        &[
            "stop",
            "-D",
            &data.display().to_string(),
            "-m",
            "fast",
            "-s",
        ],
    )
    .await
    .map(drop)
}
