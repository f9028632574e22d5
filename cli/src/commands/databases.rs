//! Managed PostgreSQL: `pg`, `pg:create`, `pg:destroy`, `pg:psql`, `pg:scale`,
//! `pg:restart`, `pg:stop`, `pg:start`, `pg:backups`, `pg:backups:create`,
//! `pg:backups:restore`.

use anyhow::anyhow;
use gigalixir_core::domain::AppName;
use serde_json::{json, Value};
use ureq::http::Method;

use super::{say, Ctx};
use crate::args::{PgCreateArgs, PgDbArgs, PgDbYesArgs, PgRestoreArgs, PgScaleArgs};
use crate::client::ApiError;

/// A 404 in the user's terms: the platform says whether the app or the database is missing.
pub(super) fn missing(name: &AppName) -> impl FnOnce(ApiError) -> anyhow::Error + '_ {
    move |e| match e {
        ApiError::NotFound(why)
            if why.contains("database") || why.contains("backup") || why.contains("drain") =>
        {
            anyhow!("{why}")
        }
        e => super::apps::not_found(name)(e),
    }
}

pub(super) fn call(
    ctx: &Ctx,
    name: &AppName,
    method: Method,
    rest: &str,
    body: Option<Value>,
    long: bool,
) -> anyhow::Result<Value> {
    let auth = ctx.auth()?;
    ctx.client
        .app_call(&auth, name, method, rest, body, long)
        .map_err(missing(name))
}

fn db_path(id: &str, rest: &str) -> String {
    let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    format!("databases/{id}{rest}")
}

fn rows(list: &Value) -> Vec<[String; 5]> {
    list.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|d| {
            [
                d["id"].as_str().unwrap_or("").to_owned(),
                d["state"].as_str().unwrap_or("").to_owned(),
                d["tier"].as_str().unwrap_or("").to_owned(),
                d["size"].to_string(),
                d["url"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect()
}

/// `pg`.
pub fn list(ctx: &Ctx, app: Option<String>) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let list = call(ctx, &name, Method::GET, "databases", None, false)?;
    let rows = rows(&list);
    if rows.is_empty() {
        return say(format!(
            "{name} has no databases: create one with `gigalixir pg:create`."
        ));
    }
    say(super::table(["ID", "STATE", "TIER", "SIZE", "URL"], &rows))
}

/// `pg:create`.
pub fn create(ctx: &Ctx, args: PgCreateArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.app.app)?;
    let db = if args.free {
        if args.version.is_some() {
            return Err(anyhow!(
                "a free database takes no --version; nothing was created"
            ));
        }
        crate::prompt::confirm(
            args.yes,
            "A free database has 4 connections and is meant for trying things. Create one?",
            "nothing was created",
        )?;
        call(
            ctx,
            &name,
            Method::POST,
            "free_databases",
            Some(json!({})),
            false,
        )?
    } else {
        let mut body = json!({ "size": args.size });
        if let Some(v) = &args.version {
            body["version"] = json!(v);
        }
        call(ctx, &name, Method::POST, "databases", Some(body), false)?
    };
    let config = if db["config_var"] == "DATABASE_URL" {
        format!("DATABASE_URL is set in {name}'s config: its replicas get it with the new release.")
    } else {
        format!(
            "{name} has a DATABASE_URL already, which stays: its URL is in `gigalixir pg -a {name}`."
        )
    };
    say(format!(
        "Created database {} ({}, {}) for {name}.\n{config}\n\
         `gigalixir pg:psql -a {name}` opens psql on it.",
        db["id"].as_str().unwrap_or(""),
        db["tier"].as_str().unwrap_or(""),
        db["version"].as_str().unwrap_or(""),
    ))
}

/// `pg:destroy`: asks first.
pub fn destroy(ctx: &Ctx, args: PgDbYesArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.db.app.app)?;
    crate::prompt::confirm(
        args.yes,
        &format!(
            "Destroy database {} of {name}, all its data and its backups?",
            args.db.database
        ),
        "nothing was destroyed",
    )?;
    call(
        ctx,
        &name,
        Method::DELETE,
        &db_path(&args.db.database, ""),
        None,
        false,
    )?;
    say(format!(
        "Destroyed database {}, its data and its backups.",
        args.db.database
    ))
}

/// `pg:psql`: runs `psql` on the first available database.
pub fn psql(ctx: &Ctx, app: Option<String>) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let list = call(ctx, &name, Method::GET, "databases", None, false)?;
    let available: Vec<&Value> = list
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|d| d["state"] == "AVAILABLE")
        .collect();
    let Some(db) = available.first() else {
        return Err(anyhow!(
            "{name} has no available database: create one with `gigalixir pg:create`"
        ));
    };
    if available.len() > 1 {
        eprintln!(
            "{name} has {} databases; using {}.",
            available.len(),
            db["id"].as_str().unwrap_or("")
        );
    }
    // The password through the environment, not the arguments (which `ps` shows).
    let mut url = url::Url::parse(db["url"].as_str().unwrap_or(""))
        .map_err(|_| anyhow!("the platform gave a database URL that does not parse"))?;
    let password = url.password().unwrap_or("").to_owned();
    let _ = url.set_password(None);
    let status = std::process::Command::new("psql")
        .arg(url.as_str())
        .env("PGPASSWORD", password)
        .status()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow!(
                "psql is not installed: install PostgreSQL's client (apt install postgresql-client)"
            ),
            _ => anyhow!("running psql: {e}"),
        })?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(super::Exit(u8::try_from(code).unwrap_or(1)).into()),
        None => Err(super::Exit(1).into()),
    }
}

/// `pg:scale`.
pub fn scale(ctx: &Ctx, args: PgScaleArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.db.app.app)?;
    let db = call(
        ctx,
        &name,
        Method::PUT,
        &db_path(&args.db.database, ""),
        Some(json!({ "size": args.size })),
        false,
    )?;
    say(format!(
        "Database {} is now size {}.",
        args.db.database, db["size"]
    ))
}

/// `pg:restart`, `pg:stop` (ask first) and `pg:start`.
fn lifecycle(
    ctx: &Ctx,
    db: PgDbArgs,
    confirm: Option<(bool, &str)>,
    verb: &str,
    done: &str,
) -> anyhow::Result<()> {
    let name = ctx.app(db.app.app)?;
    if let Some((yes, question)) = confirm {
        crate::prompt::confirm(
            yes,
            &format!("{question} ({} of {name})", db.database),
            "nothing changed",
        )?;
    }
    call(
        ctx,
        &name,
        Method::PUT,
        &db_path(&db.database, &format!("/{verb}")),
        None,
        false,
    )?;
    say(format!("Database {} {done}", db.database))
}

/// `pg:restart`.
pub fn restart(ctx: &Ctx, args: PgDbYesArgs) -> anyhow::Result<()> {
    lifecycle(
        ctx,
        args.db,
        Some((args.yes, "End every session of the database?")),
        "restart",
        "restarted: every session ended; pools reconnect.",
    )
}

/// `pg:stop`.
pub fn stop(ctx: &Ctx, args: PgDbYesArgs) -> anyhow::Result<()> {
    lifecycle(
        ctx,
        args.db,
        Some((
            args.yes,
            "Stop the database (nobody may connect until pg:start)?",
        )),
        "stop",
        "stopped: nobody may connect until `gigalixir pg:start`.",
    )
}

/// `pg:start`.
pub fn start(ctx: &Ctx, args: PgDbArgs) -> anyhow::Result<()> {
    lifecycle(ctx, args, None, "start", "started: it takes connections.")
}

fn backup_rows(list: &Value) -> Vec<[String; 4]> {
    list.as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|b| {
            [
                b["id"].as_str().unwrap_or("").to_owned(),
                b["type"].as_str().unwrap_or("").to_owned(),
                b["created_at"].as_str().unwrap_or("").to_owned(),
                b["size"].to_string(),
            ]
        })
        .collect()
}

/// `pg:backups`.
pub fn backups(ctx: &Ctx, args: PgDbArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.app.app)?;
    let list = call(
        ctx,
        &name,
        Method::GET,
        &db_path(&args.database, "/backups"),
        None,
        false,
    )?;
    let rows = backup_rows(&list);
    if rows.is_empty() {
        return say(format!(
            "Database {} has no backups yet: the first daily one comes within a day, or take one with `gigalixir pg:backups:create -d {}`.",
            args.database, args.database
        ));
    }
    say(super::table(["ID", "TYPE", "TAKEN", "BYTES"], &rows))
}

/// `pg:backups:create`.
pub fn create_backup(ctx: &Ctx, args: PgDbArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.app.app)?;
    eprintln!("Taking a backup of database {}...", args.database);
    let b = call(
        ctx,
        &name,
        Method::POST,
        &db_path(&args.database, "/backups"),
        Some(json!({})),
        true,
    )?;
    say(format!(
        "Backup {} taken ({} bytes). Restore it with `gigalixir pg:backups:restore -d {} -b {}`.",
        b["id"].as_str().unwrap_or(""),
        b["size"],
        args.database,
        b["id"].as_str().unwrap_or("")
    ))
}

/// `pg:backups:restore`: asks first.
pub fn restore(ctx: &Ctx, args: PgRestoreArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.db.app.app)?;
    crate::prompt::confirm(
        args.yes,
        &format!(
            "Replace everything in database {} of {name} with backup {}? Its sessions end.",
            args.db.database, args.backup
        ),
        "nothing was restored",
    )?;
    eprintln!(
        "Restoring database {} from backup {}...",
        args.db.database, args.backup
    );
    let backup: String = url::form_urlencoded::byte_serialize(args.backup.as_bytes()).collect();
    call(
        ctx,
        &name,
        Method::POST,
        &db_path(&args.db.database, &format!("/backups/{backup}/restore")),
        None,
        true,
    )?;
    say(format!(
        "Database {} now holds backup {}.",
        args.db.database, args.backup
    ))
}
