//! The platform's own cluster on Debian's real PostgreSQL server: made, taken over,
//! databases isolated from each other, limits enforced by the server, dumps restored.
//! Needs the `postgresql` package (`scripts/test` installs it).

use futures::StreamExt;
use gigalixir_core::domain::Secret;
use gigalixir_core::ports::databases::{DatabaseSpec, Databases};
use gigalixir_postgres::cluster::{self, Options};
use gigalixir_postgres::{debian_bin_dir, new_name, new_password};
use tokio_postgres::NoTls;

/// Stops the cluster when the test ends, whatever happens.
struct Stopper(std::path::PathBuf);

impl Drop for Stopper {
    fn drop(&mut self) {
        let dir = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(cluster::stop(&dir))
        })
        .join();
    }
}

/// A cluster of its own in a new directory, from `port` on: bind the three in this order,
/// so the cluster stops before its directory goes.
async fn started(port: u16) -> (tempfile::TempDir, Stopper, gigalixir_postgres::Server) {
    assert!(
        debian_bin_dir().is_some(),
        "PostgreSQL's server is not installed: run scripts/test (it installs `postgresql`)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = Stopper(dir.path().to_owned());
    let server = cluster::start(options(dir.path(), port))
        .await
        .expect("cluster starts");
    (dir, stop, server)
}

fn options(dir: &std::path::Path, port: u16) -> Options {
    Options {
        data_dir: dir.to_owned(),
        port,
        listen: Vec::new(),
        app_host: "127.0.0.1".into(),
        app_networks: Vec::new(),
        bin_dir: None,
    }
}

/// How many rows `table` holds.
async fn count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap_or_else(|e| panic!("counting {table}: {e}"))
        .get(0)
}

async fn connect(
    port: u16,
    user: &str,
    password: &Secret,
    db: &str,
) -> Result<tokio_postgres::Client, String> {
    let url = format!(
        "postgresql://{user}:{}@127.0.0.1:{port}/{db}",
        password.expose()
    );
    let (client, conn) = tokio_postgres::connect(&url, NoTls).await.map_err(|e| {
        e.as_db_error()
            .map(|d| d.message().to_owned())
            .unwrap_or_else(|| e.to_string())
    })?;
    tokio::spawn(conn);
    Ok(client)
}

/// A dump of `db`, whole, in memory.
async fn dump_of(server: &impl Databases, db: &DatabaseSpec) -> Vec<u8> {
    server
        .dump(&db.name, &db.password)
        .await
        .expect("dump")
        .map(|c| c.expect("chunk").to_vec())
        .concat()
        .await
}

/// Restores `dump` into `db`.
async fn restore_from(
    server: &impl Databases,
    db: &DatabaseSpec,
    dump: Vec<u8>,
) -> gigalixir_core::error::PortResult<()> {
    server
        .restore(
            &db.name,
            &db.password,
            futures::stream::iter(vec![Ok(bytes::Bytes::from(dump))]).boxed(),
        )
        .await
}

/// The server's refusal of a connection that should not be made.
fn refused(r: Result<tokio_postgres::Client, String>, what: &str) -> String {
    match r {
        Ok(_) => panic!("{what}: the connection was made"),
        Err(e) => e,
    }
}

fn spec(connections: u32) -> DatabaseSpec {
    DatabaseSpec {
        name: new_name(),
        password: new_password(),
        connections,
    }
}

#[tokio::test]
async fn databases_are_isolated_limited_dumped_and_restored_on_a_real_server() {
    let (dir, _stop, server) = started(54370).await;
    let endpoint = server.endpoint().await.expect("endpoint");
    let port = endpoint.port;
    assert!((54370..54470).contains(&port), "{port}");
    assert!(
        server.version().await.expect("version") >= 13,
        "DROP DATABASE … WITH (FORCE)"
    );

    let (a, b) = (spec(5), spec(2));
    server.create(&a).await.expect("a");
    server.create(&b).await.expect("b");
    // Again: a retry finds its work done.
    server.create(&a).await.expect("a again");

    let client_a = connect(port, &a.name, &a.password, &a.name)
        .await
        .expect("a reaches its database");
    client_a
        .batch_execute("CREATE TABLE notes (body text); INSERT INTO notes VALUES ('kept')")
        .await
        .expect("a owns its database");
    // Nobody reaches another's database, or the built-in ones.
    let err = refused(
        connect(port, &b.name, &b.password, &a.name).await,
        "b is refused a's database",
    );
    assert!(
        err.contains("no pg_hba.conf entry") || err.contains("rejects"),
        "{err}"
    );
    let err = refused(
        connect(port, &a.name, &a.password, "postgres").await,
        "refused",
    );
    assert!(err.contains("pg_hba.conf"), "{err}");
    let err = refused(
        connect(port, &a.name, &b.password, &a.name).await,
        "wrong password",
    );
    assert!(err.contains("password authentication failed"), "{err}");
    // The catalog shows names (random), never content; and no role may make roles.
    let client_b = connect(port, &b.name, &b.password, &b.name)
        .await
        .expect("b");
    let err = client_b
        .batch_execute("CREATE ROLE sneaky LOGIN")
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("permission denied") || err.as_db_error().is_some(),
        "{err}"
    );
    let err = client_b
        .batch_execute("CREATE DATABASE sneaky")
        .await
        .expect_err("refused");
    assert!(
        err.as_db_error()
            .map(|d| d.message().contains("permission denied"))
            .unwrap_or(false),
        "{err}"
    );

    // b's connection limit is the server's: 2 at once.
    let _second = connect(port, &b.name, &b.password, &b.name)
        .await
        .expect("second");
    let err = refused(
        connect(port, &b.name, &b.password, &b.name).await,
        "third refused",
    );
    assert!(err.contains("too many connections"), "{err}");

    // A dump, a write after it, a restore: the write is gone.
    let dump = dump_of(&server, &a).await;
    assert!(dump.starts_with(b"PGDMP"), "custom format");
    client_a
        .batch_execute("INSERT INTO notes VALUES ('after the backup')")
        .await
        .expect("write");
    drop(client_a);
    let chunks = futures::stream::iter(
        dump.chunks(1000)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    )
    .boxed();
    server
        .restore(&a.name, &a.password, chunks)
        .await
        .expect("restore");
    let client_a = connect(port, &a.name, &a.password, &a.name)
        .await
        .expect("a after restore");
    let rows: Vec<String> = client_a
        .query("SELECT body FROM notes ORDER BY body", &[])
        .await
        .expect("owned by a after the restore")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, vec!["kept".to_owned()]);
    // A dump that does not load leaves the database as it was.
    let garbage =
        futures::stream::iter(vec![Ok(bytes::Bytes::from_static(b"PGDMP not really"))]).boxed();
    assert!(server.restore(&a.name, &a.password, garbage).await.is_err());
    // (The attempt ended the sessions.)
    let client_a = connect(port, &a.name, &a.password, &a.name)
        .await
        .expect("a after a failed restore");
    assert_eq!(count(&client_a, "notes").await, 1);

    // Stopped: no login, sessions ended; started again.
    server.set_login(&a.name, false).await.expect("stop");
    assert!(
        client_a.query_one("SELECT 1", &[]).await.is_err(),
        "session ended"
    );
    assert!(connect(port, &a.name, &a.password, &a.name).await.is_err());
    server.set_login(&a.name, true).await.expect("start");
    connect(port, &a.name, &a.password, &a.name)
        .await
        .expect("back");

    // A platform that starts again takes the running cluster over: same port, same admin.
    let again = cluster::start(options(dir.path(), 54370))
        .await
        .expect("taken over");
    assert_eq!(again.endpoint().await.expect("endpoint").port, port);
    again.destroy(&a.name).await.expect("destroy");
    again.destroy(&a.name).await.expect("destroy again is fine");
    let err = refused(connect(port, &a.name, &a.password, &a.name).await, "gone");
    assert!(
        err.contains("does not exist") || err.contains("authentication failed"),
        "{err}"
    );
}

/// A server given by URL whose admin is no superuser (as on Cloud SQL): databases made,
/// made again (a retry), dumped, restored and dropped all the same.
#[tokio::test]
async fn an_admin_without_superuser_rights_manages_databases_through_a_url() {
    let (dir, _stop, cluster) = started(54400).await;
    let port = cluster.endpoint().await.expect("endpoint").port;
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("postgres.json")).expect("state"),
    )
    .expect("json");
    let root = Secret::new(state["password"].as_str().expect("password"));
    let superuser = connect(port, cluster::ADMIN, &root, "postgres")
        .await
        .expect("admin");
    let admin_password = new_password();
    superuser
        .batch_execute(&format!(
            "CREATE ROLE platform_admin LOGIN CREATEROLE CREATEDB PASSWORD '{}'",
            admin_password.expose()
        ))
        .await
        .expect("a non-superuser admin");
    superuser
        .batch_execute("CREATE DATABASE platform_admin OWNER platform_admin")
        .await
        .expect("its database");
    // As a hosted server lets its admin in everywhere.
    let hba = dir.path().join("postgres/data/pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
    std::fs::write(
        &hba,
        format!("host all platform_admin 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .expect("write pg_hba.conf");
    superuser
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reload");
    let server = gigalixir_postgres::Server::from_url(
        &format!(
            "postgresql://platform_admin:{}@127.0.0.1:{port}/platform_admin",
            admin_password.expose()
        ),
        None,
    )
    .expect("url");
    let a = spec(3);
    server.create(&a).await.expect("made by a non-superuser");
    server.create(&a).await.expect("and made again (a retry)");
    let client = connect(port, &a.name, &a.password, &a.name)
        .await
        .expect("a");
    client
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        .await
        .expect("write");
    let dump = dump_of(&server, &a).await;
    client
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .expect("write");
    drop(client);
    restore_from(&server, &a, dump).await.expect("restore");
    let client = connect(port, &a.name, &a.password, &a.name)
        .await
        .expect("a");
    assert_eq!(count(&client, "t").await, 1);
    drop(client);
    server.destroy(&a.name).await.expect("dropped");
    assert!(connect(port, &a.name, &a.password, &a.name).await.is_err());
}

/// A backup runs code its owner wrote (here a CHECK constraint's function, evaluated as
/// the rows load): the restore loads it as the owner's own role, so the code gets no more
/// rights than the owner has. Another tenant's grants do not keep a role from going, and
/// the server promises no more connections than it has.
#[tokio::test]
async fn a_restore_runs_its_owners_code_with_the_owners_rights_only() {
    let (_dir, _stop, server) = started(54430).await;
    let port = server.endpoint().await.expect("endpoint").port;
    let (a, b) = (spec(5), spec(5));
    server.create(&a).await.expect("a");
    server.create(&b).await.expect("b");
    let client = connect(port, &a.name, &a.password, &a.name)
        .await
        .expect("a");
    client
        .batch_execute(
            "CREATE FUNCTION climb(n int) RETURNS bool LANGUAGE plpgsql AS $$ \
             DECLARE me text := current_user; BEGIN \
               BEGIN RESET ROLE; EXECUTE format('ALTER ROLE %I SUPERUSER', me); \
               EXCEPTION WHEN others THEN NULL; END; \
               RETURN true; END $$; \
             CREATE TABLE t (n int CHECK (climb(n))); INSERT INTO t VALUES (1);",
        )
        .await
        .expect("a's table");
    // a lets b read it: b's role gets a dependency in a's database.
    client
        .batch_execute(&format!("GRANT SELECT ON t TO \"{}\"", b.name))
        .await
        .expect("grant");
    let dump = dump_of(&server, &a).await;
    drop(client);
    restore_from(&server, &a, dump).await.expect("restore");
    let client = connect(port, &a.name, &a.password, &a.name)
        .await
        .expect("a");
    let superuser: bool = client
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .expect("rolsuper")
        .get(0);
    assert!(!superuser, "the restore made the owner a superuser");
    assert_eq!(count(&client, "t").await, 1);
    drop(client);
    // b goes, whatever a granted it.
    server.destroy(&b.name).await.expect("b destroyed");
    assert!(connect(port, &b.name, &b.password, &b.name).await.is_err());
    // More connections than the server has are not promised.
    let greedy = DatabaseSpec {
        connections: 10_000,
        ..spec(1)
    };
    let err = server
        .create(&greedy)
        .await
        .expect_err("too many connections");
    assert!(
        err.to_string().contains("room for") || format!("{err:?}").contains("room for"),
        "{err:?}"
    );
}
