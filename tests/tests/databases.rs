//! Managed PostgreSQL on a real platform, with the platform's own cluster (Debian's
//! `postgresql`), real app containers and `psql`:
//! - `pg:create` puts `DATABASE_URL` in the app's environment (a new release); the app's
//!   container reaches the server, and so does `psql "$DATABASE_URL"` from the host;
//! - another account's app, with its own database, reaches nothing of the first one's;
//! - a backup, a write, a restore: the write is gone;
//! - stop/start, scale, destroy (the URL leaves the config); the server outlives a killed
//!   platform and the restarted platform takes it over.

use std::process::Command;
use std::time::Duration;

use gigalixir_tests::{require_images, texts, wait_for, Account, Platform};

/// `psql URL -c SQL`: whether it succeeded, and what it printed.
fn psql(url: &str, sql: &str) -> (bool, String) {
    let out = Command::new("psql")
        .args([
            url,
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("psql is installed (scripts/test installs postgresql)");
    let (stdout, stderr) = texts(&out);
    (out.status.success(), format!("{stdout}{stderr}"))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn a_managed_database_reaches_its_app_alone_and_comes_back_from_a_backup() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "pg", work.path());
    let out = p.git_ok(&repo, &["push", "gigalixir", "master"]);
    assert!(out.contains("Deployed v1"), "{out}");

    // pg:create: the URL is in the config and, with the new release, in the replicas.
    let said = p.cli_ok(&repo, &["pg:create"]);
    assert!(said.contains("DATABASE_URL"), "{said}");
    let list = json(&p.cli_ok(&repo, &["config", "--json"]));
    let url = list["DATABASE_URL"]
        .as_str()
        .expect("DATABASE_URL")
        .to_owned();
    assert!(url.starts_with("postgresql://gx_"), "{url}");
    assert_eq!(list["POOL_SIZE"], "10");
    let listed = p.cli_ok(&repo, &["pg"]);
    assert!(
        listed.contains("AVAILABLE") && listed.contains(&url),
        "{listed}"
    );
    let id = listed
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("an id")
        .to_owned();
    wait_for(
        "the release with DATABASE_URL",
        Duration::from_secs(90),
        || {
            let out = p.cli(&repo, &["run", "printenv", "DATABASE_URL"]);
            texts(&out).0.trim().lines().last() == Some(url.as_str())
        },
    );

    // The app's container reaches the server: PostgreSQL answers its SSL request ('N').
    let host_port = url
        .rsplit('@')
        .next()
        .expect("host")
        .split('/')
        .next()
        .expect("host:port");
    let (host, port) = host_port.split_once(':').expect("host:port");
    let probe = format!(
        "exec 3<>/dev/tcp/{host}/{port} && printf '\\000\\000\\000\\010\\004\\322\\026\\057' >&3 && head -c1 <&3"
    );
    let out = p.cli(&repo, &["run", "bash", "-c", &probe]);
    assert_eq!(
        texts(&out).0.trim().lines().last(),
        Some("N"),
        "the app container could not reach PostgreSQL: {:?}",
        texts(&out)
    );

    // From the host: psql with the URL as it is.
    let (ok, said) = psql(&url, "select 1");
    assert!(ok && said.trim() == "1", "{said}");
    let (ok, said) = psql(
        &url,
        "create table notes (body text); insert into notes values ('before the backup')",
    );
    assert!(ok, "{said}");

    // Another account, another app, its own database: nothing of Ada's is reachable.
    let bob = Account::sign_up(&p, "bob@example.com");
    let bob_app = format!("bobs-{}", std::process::id());
    let bob_repo = bob.new_app("hello", &bob_app, &work.path().join("bob"));
    bob.cli_ok(&bob_repo, &["pg:create", "-a", &bob_app]);
    let bob_config = json(&bob.cli_ok(&bob_repo, &["config", "--json", "-a", &bob_app]));
    let bob_url = bob_config["DATABASE_URL"]
        .as_str()
        .expect("Bob's URL")
        .to_owned();
    assert_ne!(bob_url, url);
    let ada_db = url.rsplit('/').next().expect("db");
    let (bob_base, _) = bob_url.rsplit_once('/').expect("db");
    let (ok, said) = psql(&format!("{bob_base}/{ada_db}"), "select 1");
    assert!(
        !ok && said.contains("pg_hba.conf rejects connection"),
        "Bob reached Ada's database: {said}"
    );
    let (ok, said) = psql(&bob_url, "\\l");
    assert!(ok, "{said}");
    assert!(
        !said.contains(&app) && !said.contains("before the backup"),
        "{said}"
    );
    let (ok, said) = psql(
        &bob_url,
        &format!("select count(*) from {ada_db}.public.notes"),
    );
    assert!(!ok, "a cross-database reference worked: {said}");
    let out = p
        .cli_command_as(bob.home.path(), &bob_repo, &["pg", "-a", &app])
        .output()
        .expect("gigalixir");
    assert!(
        !out.status.success() && !texts(&out).0.contains(ada_db),
        "Bob sees Ada's databases: {:?}",
        texts(&out)
    );

    // Backup, write, restore: the write is gone.
    let said = p.cli_ok(&repo, &["pg:backups:create", "-d", &id]);
    let backup = said
        .split_whitespace()
        .nth(1)
        .expect("the backup's id")
        .to_owned();
    assert!(p
        .cli_ok(&repo, &["pg:backups", "-d", &id])
        .contains(&backup));
    let (ok, said) = psql(&url, "insert into notes values ('after the backup')");
    assert!(ok, "{said}");
    // Without -y and no terminal to ask at: refused, nothing restored.
    let out = p.cli(&repo, &["pg:backups:restore", "-d", &id, "-b", &backup]);
    assert!(!out.status.success(), "{:?}", texts(&out));
    assert_eq!(psql(&url, "select count(*) from notes").1.trim(), "2");
    p.cli_ok(
        &repo,
        &["pg:backups:restore", "-d", &id, "-b", &backup, "-y"],
    );
    let (ok, said) = psql(&url, "select body from notes");
    assert!(ok && said.trim() == "before the backup", "{said}");

    // Stop: nobody connects; start: back.
    p.cli_ok(&repo, &["pg:stop", "-d", &id, "-y"]);
    assert!(!psql(&url, "select 1").0);
    p.cli_ok(&repo, &["pg:start", "-d", &id]);
    assert!(psql(&url, "select 1").0);
    p.cli_ok(&repo, &["pg:scale", "-d", &id, "-s", "1.7"]);
    let out = p.cli(&repo, &["pg:scale", "-d", &id, "-s", "3"]);
    assert!(
        !out.status.success() && texts(&out).1.contains("0.6, 1.7"),
        "{:?}",
        texts(&out)
    );

    // The server outlives a killed platform; the platform taken up again finds it.
    p.kill();
    assert!(
        psql(&url, "select 1").0,
        "the database went with the platform"
    );
    p.start_again();
    assert!(p.cli_ok(&repo, &["pg"]).contains(&id));

    // Destroyed: the URL leaves the config, the role and its data go.
    p.cli_ok(&repo, &["pg:destroy", "-d", &id, "-y"]);
    let config = json(&p.cli_ok(&repo, &["config", "--json"]));
    assert!(config.get("DATABASE_URL").is_none(), "{config}");
    let (ok, said) = psql(&url, "select 1");
    assert!(!ok, "{said}");
    // Bob's app destroyed: its database goes with it.
    bob.cli_ok(&bob_repo, &["apps:destroy", "-a", &bob_app, "-y"]);
    assert!(!psql(&bob_url, "select 1").0);
}
