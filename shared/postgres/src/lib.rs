//! Managed PostgreSQL ([`Databases`]): databases and roles made over an admin connection
//! ([`Server`]), on a server given by URL (`--postgres-url`, Cloud SQL) or on the
//! platform's own cluster ([`cluster`]), started on first use ([`Lazy`]).
//!
//! Passwords reach the server as SCRAM-SHA-256 verifiers only, so no statement (nor the
//! server's log of a failed one) holds one in clear. Dumps and restores run Debian's
//! `pg_dump` and `pg_restore`, the admin's password in their environment (never their
//! arguments).

pub mod cluster;

use std::path::PathBuf;
use std::process::Stdio;
use std::str::FromStr;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use gigalixir_core::domain::Secret;
use gigalixir_core::error::{PortError, PortResult};
use gigalixir_core::ports::blobs::ByteStream;
pub use gigalixir_core::ports::databases::{new_name, new_password};
use gigalixir_core::ports::databases::{valid_name, DatabaseSpec, Databases, Endpoint};
use tokio::io::AsyncWriteExt;
use tokio_postgres::{Client, Config, NoTls};

fn check(name: &str) -> PortResult<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(PortError::Invalid(format!(
            "`{name}` is not a database name the platform gives"
        )))
    }
}

fn db_err(what: &str) -> impl Fn(tokio_postgres::Error) -> PortError + '_ {
    move |e| {
        // The server's own message (never holds a password: only verifiers are sent).
        let detail = e
            .as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_else(|| e.to_string());
        PortError::unavailable(format!("PostgreSQL: {what}: {detail}"))
    }
}

/// The longest a restore may load (then the content it replaced comes back).
pub const RESTORE_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Connections kept for the platform's own admin sessions beside the server's reserve.
const ADMIN_CONNECTIONS: i64 = 10;

/// The largest temporary files a database's role may write at once (its sorts and hashes
/// spilled to disk), where the admin may set it (a superuser).
const TEMP_FILE_LIMIT: &str = "2GB";

/// The directory with the newest installed PostgreSQL's programs (Debian keeps each major
/// version in `/usr/lib/postgresql/N/bin`).
pub fn debian_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A PostgreSQL server the platform administers: an admin connection's settings, and
/// where apps reach the server.
#[derive(Clone)]
pub struct Server {
    /// Whether the built-in databases were closed to app roles (tried once per process).
    hardened: std::sync::Arc<tokio::sync::OnceCell<()>>,
    admin: Config,
    endpoint: Endpoint,
    /// Where `pg_dump` and `pg_restore` are; `None`: on the `PATH`.
    bin_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server whose admin (a role that may create roles and databases) connects with
    /// `admin_url` (`postgresql://USER:PASSWORD@HOST:PORT/DB`); apps reach it at
    /// `app_host` (default: the URL's host) on the URL's port.
    pub fn from_url(admin_url: &str, app_host: Option<&str>) -> PortResult<Self> {
        let admin = Config::from_str(admin_url).map_err(|_| {
            PortError::Invalid(
                "the PostgreSQL URL does not parse (postgresql://USER:PASSWORD@HOST:PORT/DB)"
                    .into(),
            )
        })?;
        let host = match admin.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => {
                return Err(PortError::Invalid(
                    "the PostgreSQL URL names no TCP host".into(),
                ))
            }
        };
        let port = admin.get_ports().first().copied().unwrap_or(5432);
        let endpoint = Endpoint {
            host: app_host.map(str::to_owned).unwrap_or(host),
            port,
        };
        Ok(Self {
            hardened: Default::default(),
            admin,
            endpoint,
            bin_dir: debian_bin_dir(),
        })
    }

    fn new(admin: Config, endpoint: Endpoint, bin_dir: Option<PathBuf>) -> Self {
        Self {
            hardened: Default::default(),
            admin,
            endpoint,
            bin_dir,
        }
    }

    async fn connect(&self) -> PortResult<Client> {
        self.connect_to(None).await
    }

    async fn connect_to(&self, database: Option<&str>) -> PortResult<Client> {
        let mut config = self.admin.clone();
        if let Some(db) = database {
            config.dbname(db);
        }
        config.connect_timeout(std::time::Duration::from_secs(10));
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(db_err("connecting as the admin"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL admin connection ended");
            }
        });
        Ok(client)
    }

    fn program(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }

    /// `pg_dump`/`pg_restore` as the database's own role, never as the admin: a dump and
    /// a restore run code the database's owner wrote (functions in constraints, indexes,
    /// defaults), which must not run with the admin's rights. The admin connection's host
    /// and port, the role's password in the environment (not the arguments).
    fn tool(&self, program: &str, role: &str, password: &Secret) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.program(program));
        if let Some(tokio_postgres::config::Host::Tcp(host)) = self.admin.get_hosts().first() {
            cmd.arg("--host").arg(host);
        }
        if let Some(port) = self.admin.get_ports().first() {
            cmd.arg("--port").arg(port.to_string());
        }
        cmd.arg("--username")
            .arg(role)
            .arg("--no-password")
            .arg("--dbname")
            .arg(role)
            .env("PGPASSWORD", password.expose())
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Starts a command of [`Self::tool`] (`program` names it in the error).
    fn spawn(
        &self,
        cmd: &mut tokio::process::Command,
        program: &str,
    ) -> PortResult<tokio::process::Child> {
        cmd.spawn().map_err(|e| {
            PortError::unavailable(format!("starting {}: {e}", self.program(program).display()))
        })
    }

    /// Statements one at a time (DROP and ALTER DATABASE run outside any transaction).
    async fn each(client: &Client, statements: &[String], what: &str) -> PortResult<()> {
        for statement in statements {
            client
                .batch_execute(statement)
                .await
                .map_err(db_err(what))?;
        }
        Ok(())
    }

    /// The content set aside by a restore takes the database's name again.
    async fn put_back(&self, client: &Client, name: &str, what: &str) -> PortResult<()> {
        self.end_sessions(client, name).await?;
        Self::each(
            client,
            &[
                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                format!("ALTER DATABASE \"{name}_previous\" RENAME TO \"{name}\""),
            ],
            what,
        )
        .await
    }

    async fn end_sessions(&self, client: &Client, name: &str) -> PortResult<()> {
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE (usename = $1 OR datname = $1) AND pid <> pg_backend_pid()",
                &[&name],
            )
            .await
            .map_err(db_err("ending sessions"))?;
        Ok(())
    }

    /// Makes `database` owned by `name`, closed to everyone else.
    async fn make_database(&self, client: &Client, database: &str, owner: &str) -> PortResult<()> {
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
            .await
            .map_err(db_err("looking for the database"))?
            .is_some();
        if !exists {
            client
                .batch_execute(&format!(
                    "CREATE DATABASE \"{database}\" OWNER \"{owner}\" ENCODING 'UTF8' TEMPLATE template0"
                ))
                .await
                .map_err(db_err("creating the database"))?;
        }
        client
            .batch_execute(&format!(
                "REVOKE ALL ON DATABASE \"{database}\" FROM PUBLIC; \
                 GRANT ALL ON DATABASE \"{database}\" TO \"{owner}\""
            ))
            .await
            .map_err(db_err("closing the database to other roles"))?;
        Ok(())
    }

    /// Whether the server can promise `connections` to `name` beside what it promised the
    /// other databases' roles (`gx_…`), keeping room for the admin.
    async fn room_for(&self, client: &Client, name: &str, connections: u32) -> PortResult<()> {
        let row = client
            .query_one(
                "SELECT current_setting('max_connections')::int8, \
                 current_setting('superuser_reserved_connections')::int8, \
                 coalesce(sum(rolconnlimit) FILTER (WHERE rolconnlimit > 0 \
                   AND rolname LIKE 'gx\\_%' AND rolname <> $1), 0)::int8 \
                 FROM pg_roles",
                &[&name],
            )
            .await
            .map_err(db_err("counting the connections promised"))?;
        let (max, reserved, promised): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        let free = max - reserved - ADMIN_CONNECTIONS - promised;
        if i64::from(connections) > free {
            return Err(PortError::Invalid(format!(
                "the database server has room for {} more connections, not {connections}: try a smaller size",
                free.max(0)
            )));
        }
        Ok(())
    }

    /// Hardening of a whole cluster the platform runs: no role but the admin connects to
    /// the built-in databases.
    async fn harden(&self) -> PortResult<()> {
        let client = self.connect().await?;
        client
            .batch_execute(
                "REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC; \
                 REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC",
            )
            .await
            .map_err(db_err("closing the built-in databases"))
    }
}

/// What a program says on its error output, read as it comes (so that it never blocks on
/// a full pipe), the first 64 kB kept.
fn errors_of(stderr: Option<tokio::process::ChildStderr>) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let Some(mut stderr) = stderr else {
            return String::new();
        };
        let (mut kept, mut buf) = (Vec::new(), vec![0u8; 8192]);
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if kept.len() < 64 * 1024 {
                kept.extend_from_slice(&buf[..n.min(64 * 1024 - kept.len())]);
            }
        }
        String::from_utf8_lossy(&kept).trim().to_owned()
    })
}

#[async_trait]
impl Databases for Server {
    async fn version(&self) -> PortResult<u32> {
        let client = self.connect().await?;
        let row = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .map_err(db_err("asking the version"))?;
        let num: i32 = row.get(0);
        Ok((num / 10_000) as u32)
    }

    async fn endpoint(&self) -> PortResult<Endpoint> {
        Ok(self.endpoint.clone())
    }

    async fn create(&self, spec: &DatabaseSpec) -> PortResult<()> {
        check(&spec.name)?;
        // A server given by URL: its built-in databases closed to app roles too, where the
        // admin may (it must own them); else said once.
        self.hardened
            .get_or_init(|| async {
                if let Err(err) = self.harden().await {
                    tracing::warn!(error = %err, "the server's built-in databases stay open to app roles (pg_hba.conf still decides who connects)");
                }
            })
            .await;
        let name = &spec.name;
        let verifier =
            postgres_protocol::password::scram_sha_256(spec.password.expose().as_bytes());
        let client = self.connect().await?;
        self.room_for(&client, name, spec.connections).await?;
        let role_exists = client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[name])
            .await
            .map_err(db_err("looking for the role"))?
            .is_some();
        // A retry alters what the first try made; an admin that is not a superuser (Cloud
        // SQL) may not name the superuser attributes in an ALTER, only in a CREATE.
        let statement = if role_exists {
            format!(
                "ALTER ROLE \"{name}\" LOGIN CONNECTION LIMIT {} PASSWORD '{verifier}'",
                spec.connections
            )
        } else {
            format!(
                "CREATE ROLE \"{name}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
                 CONNECTION LIMIT {} PASSWORD '{verifier}'",
                spec.connections
            )
        };
        client
            .batch_execute(&statement)
            .await
            .map_err(db_err("making the role"))?;
        // An admin that is not a superuser (Cloud SQL) must be a member of a role to give
        // it a database.
        let superuser: bool = client
            .query_one(
                "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .map_err(db_err("asking the admin's rights"))?
            .get(0);
        if !superuser {
            client
                .batch_execute(&format!("GRANT \"{name}\" TO CURRENT_USER"))
                .await
                .map_err(db_err("joining the role"))?;
        }
        // Only a superuser may set it, and then the role cannot undo it.
        if superuser {
            client
                .batch_execute(&format!(
                    "ALTER ROLE \"{name}\" SET temp_file_limit = '{TEMP_FILE_LIMIT}'"
                ))
                .await
                .map_err(db_err("limiting the role's temporary files"))?;
        }
        self.make_database(&client, name, name).await
    }

    async fn destroy(&self, name: &str) -> PortResult<()> {
        check(name)?;
        let client = self.connect().await?;
        let _ = client
            .batch_execute(&format!("ALTER ROLE \"{name}\" NOLOGIN"))
            .await;
        self.end_sessions(&client, name).await?;
        Self::each(
            &client,
            &[
                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                format!("DROP DATABASE IF EXISTS \"{name}_previous\" WITH (FORCE)"),
            ],
            "dropping the database",
        )
        .await?;
        // What other roles granted this one in their own databases would keep it: it goes
        // first (a tenant cannot keep another's role, and with it its database, alive).
        let others: Vec<String> = client
            .query(
                "SELECT DISTINCT d.datname FROM pg_shdepend s \
                 JOIN pg_database d ON d.oid = s.dbid \
                 JOIN pg_roles r ON r.oid = s.refobjid \
                 WHERE r.rolname = $1 AND d.datname <> $1",
                &[&name],
            )
            .await
            .map_err(db_err("looking for the role's grants"))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for db in others {
            let there = self.connect_to(Some(&db)).await?;
            there
                .batch_execute(&format!("DROP OWNED BY \"{name}\""))
                .await
                .map_err(db_err("revoking what was granted to the role"))?;
        }
        client
            .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
            .await
            .map_err(db_err("dropping the role"))
    }

    async fn set_connections(&self, name: &str, connections: u32) -> PortResult<()> {
        check(name)?;
        let client = self.connect().await?;
        self.room_for(&client, name, connections).await?;
        client
            .batch_execute(&format!(
                "ALTER ROLE \"{name}\" CONNECTION LIMIT {connections}"
            ))
            .await
            .map_err(db_err("changing the connection limit"))
    }

    async fn set_login(&self, name: &str, allowed: bool) -> PortResult<()> {
        check(name)?;
        let client = self.connect().await?;
        let login = if allowed { "LOGIN" } else { "NOLOGIN" };
        client
            .batch_execute(&format!("ALTER ROLE \"{name}\" {login}"))
            .await
            .map_err(db_err("changing whether the role logs in"))?;
        if !allowed {
            self.end_sessions(&client, name).await?;
        }
        Ok(())
    }

    async fn disconnect(&self, name: &str) -> PortResult<()> {
        check(name)?;
        let client = self.connect().await?;
        self.end_sessions(&client, name).await
    }

    async fn dump(&self, name: &str, password: &Secret) -> PortResult<ByteStream> {
        check(name)?;
        let mut child = self.spawn(
            self.tool("pg_dump", name, password).arg("--format=custom"),
            "pg_dump",
        )?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| PortError::unavailable("pg_dump has no output pipe".to_string()))?;
        let errors = errors_of(child.stderr.take());
        let body = tokio_util::io::ReaderStream::new(stdout).map_err(PortError::from_io);
        // After the last byte: the exit status decides whether the dump is whole.
        let end = futures::stream::once(async move {
            let status = child.wait().await.map_err(PortError::from_io)?;
            let err = errors.await.unwrap_or_default();
            if status.success() {
                Ok(None)
            } else {
                Err(PortError::unavailable(format!(
                    "pg_dump failed ({status}): {err}"
                )))
            }
        })
        .filter_map(|r: PortResult<Option<Bytes>>| async move { r.transpose() });
        Ok(body.chain(end).boxed())
    }

    async fn restore(&self, name: &str, password: &Secret, mut dump: ByteStream) -> PortResult<()> {
        check(name)?;
        let previous = format!("{name}_previous");
        let client = self.connect().await?;
        // A restore cut off (a killed platform) left the content it replaced aside: that
        // comes back first, so that nothing is ever lost between two restores.
        let interrupted = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&previous])
            .await
            .map_err(db_err("looking for an earlier restore"))?
            .is_some();
        if interrupted {
            self.put_back(
                &client,
                name,
                "putting an interrupted restore's content back",
            )
            .await?;
        }
        // The current content steps aside (kept until the backup has loaded), a new empty
        // database takes its name, and the role loads the backup into it as itself.
        client
            .batch_execute(&format!("ALTER ROLE \"{name}\" NOLOGIN"))
            .await
            .map_err(db_err("closing the database"))?;
        self.end_sessions(&client, name).await?;
        let moved = client
            .batch_execute(&format!(
                "ALTER DATABASE \"{name}\" RENAME TO \"{previous}\""
            ))
            .await
            .map_err(db_err("setting the current content aside"));
        let made = match moved {
            Ok(()) => self.make_database(&client, name, name).await,
            Err(e) => Err(e),
        };
        let opened = client
            .batch_execute(&format!("ALTER ROLE \"{name}\" LOGIN"))
            .await
            .map_err(db_err("opening the database"));
        made?;
        opened?;
        let loaded = async {
            let mut child = self.spawn(
                self.tool("pg_restore", name, password)
                    .arg("--no-owner")
                    .arg("--exit-on-error")
                    .arg("--single-transaction")
                    .stdin(Stdio::piped()),
                "pg_restore",
            )?;
            let mut stdin = child.stdin.take().ok_or_else(|| {
                PortError::unavailable("pg_restore has no input pipe".to_string())
            })?;
            let errors = errors_of(child.stderr.take());
            let feed = async {
                while let Some(chunk) = dump.next().await {
                    let chunk = chunk?;
                    if stdin.write_all(&chunk).await.is_err() {
                        // pg_restore stopped reading: its exit status says why.
                        break;
                    }
                }
                drop(stdin);
                PortResult::Ok(())
            };
            let Ok((fed, status)) = tokio::time::timeout(RESTORE_TIME_LIMIT, async {
                tokio::join!(feed, child.wait())
            })
            .await
            else {
                let _ = child.kill().await;
                return Err(PortError::Invalid(format!(
                    "the backup took longer than {} s to load",
                    RESTORE_TIME_LIMIT.as_secs()
                )));
            };
            let status = status.map_err(PortError::from_io)?;
            fed?;
            if status.success() {
                Ok(())
            } else {
                Err(PortError::Invalid(format!(
                    "the backup does not load: {}",
                    errors.await.unwrap_or_default()
                )))
            }
        }
        .await;
        if let Err(err) = loaded {
            // The content as it was comes back.
            self.put_back(&client, name, "putting the content back")
                .await?;
            return Err(err);
        }
        client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{previous}\" WITH (FORCE)"
            ))
            .await
            .map_err(db_err("dropping the content replaced"))
    }
}

/// A [`Databases`] whose server is made on first use (the platform's own cluster starts
/// only once someone asks for a database).
pub struct Lazy<F> {
    make: F,
    server: tokio::sync::OnceCell<Server>,
}

impl<F, Fut> Lazy<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: std::future::Future<Output = PortResult<Server>> + Send,
{
    /// A server that `make` brings up when first needed (again after a failure).
    pub fn new(make: F) -> Self {
        Self {
            make,
            server: tokio::sync::OnceCell::new(),
        }
    }

    async fn server(&self) -> PortResult<&Server> {
        self.server.get_or_try_init(|| (self.make)()).await
    }
}

#[async_trait]
impl<F, Fut> Databases for Lazy<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: std::future::Future<Output = PortResult<Server>> + Send,
{
    async fn version(&self) -> PortResult<u32> {
        self.server().await?.version().await
    }
    async fn endpoint(&self) -> PortResult<Endpoint> {
        self.server().await?.endpoint().await
    }
    async fn create(&self, spec: &DatabaseSpec) -> PortResult<()> {
        self.server().await?.create(spec).await
    }
    async fn destroy(&self, name: &str) -> PortResult<()> {
        self.server().await?.destroy(name).await
    }
    async fn set_connections(&self, name: &str, connections: u32) -> PortResult<()> {
        self.server()
            .await?
            .set_connections(name, connections)
            .await
    }
    async fn set_login(&self, name: &str, allowed: bool) -> PortResult<()> {
        self.server().await?.set_login(name, allowed).await
    }
    async fn disconnect(&self, name: &str) -> PortResult<()> {
        self.server().await?.disconnect(name).await
    }
    async fn dump(&self, name: &str, password: &Secret) -> PortResult<ByteStream> {
        self.server().await?.dump(name, password).await
    }
    async fn restore(&self, name: &str, password: &Secret, dump: ByteStream) -> PortResult<()> {
        self.server().await?.restore(name, password, dump).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords_need_no_quoting() {
        for _ in 0..100 {
            let name = new_name();
            assert!(valid_name(&name), "{name}");
            assert!(new_password()
                .expose()
                .chars()
                .all(|c| c.is_ascii_alphanumeric()));
        }
        for bad in ["", "Gx", "gx-1", "1gx", "gx\"; drop", &"a".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_url_gives_the_admin_and_where_apps_connect() {
        let server =
            Server::from_url("postgresql://admin:pw@10.1.2.3:6432/postgres", None).expect("parses");
        assert_eq!(
            server.endpoint,
            Endpoint {
                host: "10.1.2.3".into(),
                port: 6432
            }
        );
        let other = Server::from_url(
            "postgresql://admin:pw@10.1.2.3/postgres",
            Some("db.internal"),
        )
        .expect("parses");
        assert_eq!(other.endpoint.host, "db.internal");
        assert_eq!(other.endpoint.port, 5432);
        assert!(format!("{other:?}").find("pw").is_none());
        assert!(Server::from_url("not a url at all", None).is_err());
    }
}
