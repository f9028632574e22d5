//! [`Store`] on SQLite: one row per record, the record as JSON, keys and indexes as columns.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension};

use super::sqlite::{from_json, map_err, now_ms, to_json, Db};
use crate::domain::{AppName, BuildId, Email, Fqdn, KeyHash, ReleaseVersion, UserId};
use crate::error::{PortError, PortResult};
use crate::model::{
    Activity, ApiKeyRecord, App, Build, BuildState, CustomDomain, DeployedBy, Member, NewRelease,
    Release, ReleaseStatus, SshKey, User, ACTIVITY_RETENTION_DAYS,
};
use crate::ports::Store;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id);
CREATE TABLE IF NOT EXISTS apps (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS apps_owner ON apps (owner, name);
CREATE TABLE IF NOT EXISTS builds (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS builds_app ON builds (app, created_at);
CREATE TABLE IF NOT EXISTS build_logs (
    build TEXT NOT NULL,
    seq INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (build, seq)
);
CREATE TABLE IF NOT EXISTS releases (
    app TEXT NOT NULL,
    version INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (app, version),
    UNIQUE (app, idempotency_key)
);
CREATE TABLE IF NOT EXISTS ssh_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    json TEXT NOT NULL,
    UNIQUE (user_id, fingerprint)
);
CREATE TABLE IF NOT EXISTS domains (
    fqdn TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS domains_by_app ON domains (app);
CREATE TABLE IF NOT EXISTS members (
    app TEXT NOT NULL,
    user_id TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (app, user_id)
);
CREATE INDEX IF NOT EXISTS members_by_user ON members (user_id, app);
CREATE TABLE IF NOT EXISTS activity (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    at INTEGER NOT NULL,
    json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS activity_by_app ON activity (app, at);
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    fence INTEGER NOT NULL DEFAULT 1
);
";

/// The embedded store: a SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    db: Db,
    /// Moves on every write to a build ([`Store::build_changes`]).
    builds_changed: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl SqliteStore {
    /// Opens or creates the store in `path`.
    pub fn open(path: &Path) -> PortResult<Self> {
        let db = Db::open(path, SCHEMA)?;
        // Locks recorded before they had fencing tokens.
        db.blocking_call(|c| {
            if c.prepare("SELECT fence FROM locks LIMIT 0").is_err() {
                c.execute_batch("ALTER TABLE locks ADD COLUMN fence INTEGER NOT NULL DEFAULT 1")
                    .map_err(map_err)?;
            }
            Ok(())
        })?;
        Ok(Self {
            db,
            builds_changed: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    fn build_changed(&self) {
        self.builds_changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes a release's record (read and written in one call of the store's connection).
    async fn update_release(
        &self,
        app: &AppName,
        version: ReleaseVersion,
        change: impl FnOnce(&mut Release) + Send + 'static,
    ) -> PortResult<()> {
        let app = app.to_string();
        self.db
            .call(move |c| {
                let mut release: Release = one(
                    c,
                    "SELECT json FROM releases WHERE app = ?1 AND version = ?2",
                    params![app, version.0],
                )?;
                change(&mut release);
                c.execute(
                    "UPDATE releases SET json = ?3 WHERE app = ?1 AND version = ?2",
                    params![app, version.0, to_json(&release)?],
                )
                .map_err(map_err)?;
                Ok(())
            })
            .await
    }
}

/// A write that changed `n` rows: `NotFound` when it changed none.
fn found(n: usize) -> PortResult<()> {
    if n == 0 {
        Err(PortError::NotFound)
    } else {
        Ok(())
    }
}

fn one<T: serde::de::DeserializeOwned>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> PortResult<T> {
    let json: String = conn
        .query_row(sql, params, |row| row.get(0))
        .map_err(map_err)?;
    from_json(&json)
}

fn many<T: serde::de::DeserializeOwned>(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> PortResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let rows = stmt
        .query_map(params, |row| row.get::<_, String>(0))
        .map_err(map_err)?;
    rows.map(|r| from_json(&r.map_err(map_err)?)).collect()
}

fn insert_key(conn: &rusqlite::Connection, key: &ApiKeyRecord) -> PortResult<()> {
    conn.execute(
        "INSERT INTO api_keys (hash, user_id, expires_at, json) VALUES (?1, ?2, ?3, ?4)",
        params![
            key.hash.0,
            key.user.0,
            key.expires_at.timestamp_millis(),
            to_json(key)?
        ],
    )
    .map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_user(&self, user: &User) -> PortResult<()> {
        let (id, email, json) = (user.id.0.clone(), user.email.to_string(), to_json(user)?);
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO users (id, email, json) VALUES (?1, ?2, ?3)",
                    params![id, email, json],
                )
                .map_err(map_err)?;
                Ok(())
            })
            .await
    }

    async fn user_by_email(&self, email: &Email) -> PortResult<User> {
        let email = email.to_string();
        self.db
            .call(move |c| one(c, "SELECT json FROM users WHERE email = ?1", [email]))
            .await
    }

    async fn user(&self, id: &UserId) -> PortResult<User> {
        let id = id.0.clone();
        self.db
            .call(move |c| one(c, "SELECT json FROM users WHERE id = ?1", [id]))
            .await
    }

    async fn update_user(&self, user: &User) -> PortResult<()> {
        let (id, email, json) = (user.id.0.clone(), user.email.to_string(), to_json(user)?);
        self.db
            .call(move |c| {
                let n = c
                    .execute(
                        "UPDATE users SET email = ?2, json = ?3 WHERE id = ?1",
                        params![id, email, json],
                    )
                    .map_err(map_err)?;
                found(n)
            })
            .await
    }

    async fn delete_user(&self, id: &UserId) -> PortResult<()> {
        let id = id.0.clone();
        self.db
            .call(move |c| {
                let tx = c.transaction().map_err(map_err)?;
                let n = tx
                    .execute("DELETE FROM users WHERE id = ?1", [&id])
                    .map_err(map_err)?;
                if n == 0 {
                    return Err(PortError::NotFound);
                }
                for table in ["api_keys", "ssh_keys", "members"] {
                    tx.execute(&format!("DELETE FROM {table} WHERE user_id = ?1"), [&id])
                        .map_err(map_err)?;
                }
                tx.commit().map_err(map_err)
            })
            .await
    }

    async fn add_api_key(&self, key: &ApiKeyRecord) -> PortResult<()> {
        let key = key.clone();
        self.db.call(move |c| insert_key(c, &key)).await
    }

    async fn replace_api_keys(&self, key: &ApiKeyRecord) -> PortResult<()> {
        let key = key.clone();
        self.db
            .call(move |c| {
                let tx = c.transaction().map_err(map_err)?;
                tx.execute("DELETE FROM api_keys WHERE user_id = ?1", [&key.user.0])
                    .map_err(map_err)?;
                insert_key(&tx, &key)?;
                tx.commit().map_err(map_err)
            })
            .await
    }

    async fn user_by_api_key(&self, hash: &KeyHash, now: DateTime<Utc>) -> PortResult<User> {
        let hash = hash.0.clone();
        let now = now.timestamp_millis();
        self.db
            .call(move |c| {
                one(
                    c,
                    "SELECT users.json FROM api_keys JOIN users ON users.id = api_keys.user_id
                     WHERE api_keys.hash = ?1 AND api_keys.expires_at > ?2",
                    params![hash, now],
                )
            })
            .await
    }

    async fn create_app(&self, app: &App) -> PortResult<()> {
        let (name, owner, json) = (app.name.to_string(), app.owner.0.clone(), to_json(app)?);
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO apps (name, owner, json) VALUES (?1, ?2, ?3)",
                    params![name, owner, json],
                )
                .map_err(map_err)?;
                Ok(())
            })
            .await
    }

    async fn app(&self, name: &AppName) -> PortResult<App> {
        let name = name.to_string();
        self.db
            .call(move |c| one(c, "SELECT json FROM apps WHERE name = ?1", [name]))
            .await
    }

    async fn update_app(&self, app: &App) -> PortResult<()> {
        let (name, owner, json) = (app.name.to_string(), app.owner.0.clone(), to_json(app)?);
        self.db
            .call(move |c| {
                let n = c
                    .execute(
                        "UPDATE apps SET owner = ?2, json = ?3 WHERE name = ?1",
                        params![name, owner, json],
                    )
                    .map_err(map_err)?;
                found(n)
            })
            .await
    }

    async fn apps_of(&self, owner: &UserId) -> PortResult<Vec<App>> {
        let owner = owner.0.clone();
        self.db
            .call(move |c| {
                many(
                    c,
                    "SELECT json FROM apps WHERE owner = ?1 ORDER BY name",
                    [owner],
                )
            })
            .await
    }

    async fn all_apps(&self) -> PortResult<Vec<App>> {
        self.db
            .call(move |c| many(c, "SELECT json FROM apps ORDER BY name", []))
            .await
    }

    async fn delete_app(&self, name: &AppName) -> PortResult<()> {
        let name = name.to_string();
        self.db
            .call(move |c| {
                let tx = c.transaction().map_err(map_err)?;
                let n = tx
                    .execute("DELETE FROM apps WHERE name = ?1", [&name])
                    .map_err(map_err)?;
                if n == 0 {
                    return Err(PortError::NotFound);
                }
                tx.execute(
                    "DELETE FROM build_logs WHERE build IN (SELECT id FROM builds WHERE app = ?1)",
                    [&name],
                )
                .map_err(map_err)?;
                tx.execute("DELETE FROM builds WHERE app = ?1", [&name])
                    .map_err(map_err)?;
                tx.execute("DELETE FROM releases WHERE app = ?1", [&name])
                    .map_err(map_err)?;
                for table in ["domains", "members", "activity"] {
                    tx.execute(&format!("DELETE FROM {table} WHERE app = ?1"), [&name])
                        .map_err(map_err)?;
                }
                tx.commit().map_err(map_err)
            })
            .await
    }

    async fn put_member(&self, member: &Member) -> PortResult<()> {
        let (app, user, at, json) = (
            member.app.to_string(),
            member.user.0.clone(),
            member.added_at.timestamp_millis(),
            to_json(member)?,
        );
        self.db
            .call(move |c| {
                let tx = c.transaction().map_err(map_err)?;
                let exists: Option<i64> = tx
                    .query_row("SELECT 1 FROM apps WHERE name = ?1", [&app], |r| r.get(0))
                    .optional()
                    .map_err(map_err)?;
                if exists.is_none() {
                    return Err(PortError::NotFound);
                }
                tx.execute(
                    "INSERT INTO members (app, user_id, added_at, json) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (app, user_id) DO UPDATE SET json = excluded.json",
                    params![app, user, at, json],
                )
                .map_err(map_err)?;
                tx.commit().map_err(map_err)
            })
            .await
    }

    async fn remove_member(&self, app: &AppName, user: &UserId) -> PortResult<()> {
        let (app, user) = (app.to_string(), user.0.clone());
        self.db
            .call(move |c| {
                let n = c
                    .execute(
                        "DELETE FROM members WHERE app = ?1 AND user_id = ?2",
                        params![app, user],
                    )
                    .map_err(map_err)?;
                found(n)
            })
            .await
    }

    async fn members_of(&self, app: &AppName) -> PortResult<Vec<Member>> {
        let app = app.to_string();
        self.db
            .call(move |c| {
                many(
                    c,
                    "SELECT json FROM members WHERE app = ?1 ORDER BY added_at, user_id",
                    [app],
                )
            })
            .await
    }

    async fn memberships_of(&self, user: &UserId) -> PortResult<Vec<Member>> {
        let user = user.0.clone();
        self.db
            .call(move |c| {
                many(
                    c,
                    "SELECT json FROM members WHERE user_id = ?1 ORDER BY app",
                    [user],
                )
            })
            .await
    }

    async fn add_activity(&self, activity: &Activity) -> PortResult<()> {
        let (app, at, json) = (
            activity.app.to_string(),
            activity.at.timestamp_millis(),
            to_json(activity)?,
        );
        let horizon =
            (Utc::now() - chrono::Duration::days(ACTIVITY_RETENTION_DAYS)).timestamp_millis();
        self.db
            .call(move |c| {
                let tx = c.transaction().map_err(map_err)?;
                tx.execute(
                    "INSERT INTO activity (app, at, json) VALUES (?1, ?2, ?3)",
                    params![app, at, json],
                )
                .map_err(map_err)?;
                tx.execute(
                    "DELETE FROM activity WHERE app = ?1 AND at < ?2",
                    params![app, horizon],
                )
                .map_err(map_err)?;
                tx.commit().map_err(map_err)
            })
            .await
    }

    async fn activity_of(&self, app: &AppName, limit: usize) -> PortResult<Vec<Activity>> {
        let app = app.to_string();
        let horizon =
            (Utc::now() - chrono::Duration::days(ACTIVITY_RETENTION_DAYS)).timestamp_millis();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .call(move |c| {
                many(
                    c,
                    "SELECT json FROM activity WHERE app = ?1 AND at >= ?2
                     ORDER BY at DESC, seq DESC LIMIT ?3",
                    params![app, horizon, limit],
                )
            })
            .await
    }

    async fn create_build(&self, build: &Build) -> PortResult<()> {
        let (id, app, at, json) = (
            build.id.0.clone(),
            build.app.to_string(),
            build.created_at.timestamp_millis(),
            to_json(build)?,
        );
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO builds (id, app, created_at, json) VALUES (?1, ?2, ?3, ?4)",
                    params![id, app, at, json],
                )
                .map_err(map_err)?;
                Ok(())
            })
            .await?;
        self.build_changed();
        Ok(())
    }

    async fn build(&self, id: &BuildId) -> PortResult<Build> {
        let id = id.0.clone();
        self.db
            .call(move |c| one(c, "SELECT json FROM builds WHERE id = ?1", [id]))
            .await
    }

    async fn transition_build(
        &self,
        id: &BuildId,
        from: BuildState,
        to: BuildState,
        update: &(dyn for<'b> Fn(&'b mut Build) + Send + Sync),
    ) -> PortResult<Build> {
        // The update closure is not 'static, so read, apply and write back conditionally:
        // the row is rewritten only if its JSON is still exactly what was read.
        let current = self.build(id).await?;
        if current.state != from {
            return Err(PortError::Precondition);
        }
        let before = to_json(&current)?;
        let mut next = current;
        update(&mut next);
        next.state = to;
        next.updated_at = Utc::now();
        next.history.push((to, next.updated_at));
        let after = to_json(&next)?;
        let id = id.0.clone();
        self.db
            .call(move |c| {
                let n = c
                    .execute(
                        "UPDATE builds SET json = ?3 WHERE id = ?1 AND json = ?2",
                        params![id, before, after],
                    )
                    .map_err(map_err)?;
                if n == 0 {
                    Err(PortError::Precondition)
                } else {
                    Ok(())
                }
            })
            .await?;
        self.build_changed();
        Ok(next)
    }

    async fn builds_of(&self, app: &AppName) -> PortResult<Vec<Build>> {
        let app = app.to_string();
        self.db
            .call(move |c| {
                many(
                    c,
                    "SELECT json FROM builds WHERE app = ?1 ORDER BY created_at DESC, id DESC",
                    [app],
                )
            })
            .await
    }

    async fn append_build_log(&self, build: &BuildId, lines: &[String]) -> PortResult<u64> {
        let (build, lines) = (build.0.clone(), lines.to_vec());
        let seq = self
            .db
            .call(move |c| {
                let tx = c.transaction().map_err(map_err)?;
                let mut seq: u64 = tx
                    .query_row(
                        "SELECT COALESCE(MAX(seq), 0) FROM build_logs WHERE build = ?1",
                        [&build],
                        |r| r.get(0),
                    )
                    .map_err(map_err)?;
                {
                    let mut stmt = tx
                        .prepare_cached(
                            "INSERT INTO build_logs (build, seq, line) VALUES (?1, ?2, ?3)",
                        )
                        .map_err(map_err)?;
                    for line in &lines {
                        seq += 1;
                        stmt.execute(params![build, seq, line]).map_err(map_err)?;
                    }
                }
                tx.commit().map_err(map_err)?;
                Ok(seq)
            })
            .await;
        if seq.is_ok() {
            self.build_changed();
        }
        seq
    }

    fn build_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.builds_changed.subscribe())
    }

    async fn build_log(
        &self,
        build: &BuildId,
        after: u64,
        limit: usize,
    ) -> PortResult<Vec<(u64, String)>> {
        let build = build.0.clone();
        self.db
            .call(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT seq, line FROM build_logs WHERE build = ?1 AND seq > ?2
                         ORDER BY seq LIMIT ?3",
                    )
                    .map_err(map_err)?;
                let rows = stmt
                    .query_map(params![build, after, limit as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .map_err(map_err)?;
                rows.collect::<Result<_, _>>().map_err(map_err)
            })
            .await
    }

    async fn create_next_release(
        &self,
        app: &AppName,
        release: &NewRelease,
    ) -> PortResult<Release> {
        let app = app.clone();
        let spec = release.clone();
        self.db
            .call(move |c| {
                let tx = c.transaction().map_err(map_err)?;
                let name = app.to_string();
                let exists: Option<i64> = tx
                    .query_row("SELECT 1 FROM apps WHERE name = ?1", [&name], |r| r.get(0))
                    .optional()
                    .map_err(map_err)?;
                if exists.is_none() {
                    return Err(PortError::NotFound);
                }
                let same: Option<String> = tx
                    .query_row(
                        "SELECT json FROM releases WHERE app = ?1 AND idempotency_key = ?2",
                        params![name, spec.idempotency_key],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(map_err)?;
                if let Some(json) = same {
                    return from_json(&json);
                }
                let latest: Option<u32> = tx
                    .query_row(
                        "SELECT MAX(version) FROM releases WHERE app = ?1",
                        [&name],
                        |r| r.get(0),
                    )
                    .map_err(map_err)?;
                let release = Release {
                    app: app.clone(),
                    version: ReleaseVersion(latest.unwrap_or(0) + 1),
                    rollback_id: latest.map(ReleaseVersion),
                    spec,
                    status: ReleaseStatus::Pending,
                    deployed_by: None,
                    created_at: Utc::now(),
                };
                tx.execute(
                    "INSERT INTO releases (app, version, idempotency_key, json)
                     VALUES (?1, ?2, ?3, ?4)",
                    params![
                        name,
                        release.version.0,
                        release.spec.idempotency_key,
                        to_json(&release)?
                    ],
                )
                .map_err(map_err)?;
                tx.commit().map_err(map_err)?;
                Ok(release)
            })
            .await
    }

    async fn release(&self, app: &AppName, version: ReleaseVersion) -> PortResult<Release> {
        let app = app.to_string();
        self.db
            .call(move |c| {
                one(
                    c,
                    "SELECT json FROM releases WHERE app = ?1 AND version = ?2",
                    params![app, version.0],
                )
            })
            .await
    }

    async fn releases(&self, app: &AppName) -> PortResult<Vec<Release>> {
        let app = app.to_string();
        self.db
            .call(move |c| {
                many(
                    c,
                    "SELECT json FROM releases WHERE app = ?1 ORDER BY version DESC",
                    [app],
                )
            })
            .await
    }

    async fn set_release_deployed(
        &self,
        app: &AppName,
        version: ReleaseVersion,
        by: DeployedBy,
    ) -> PortResult<()> {
        self.update_release(app, version, move |r| {
            r.status = ReleaseStatus::Deployed;
            r.deployed_by = Some(by);
        })
        .await
    }

    async fn set_release_status(
        &self,
        app: &AppName,
        version: ReleaseVersion,
        status: ReleaseStatus,
    ) -> PortResult<()> {
        self.update_release(app, version, move |r| r.status = status)
            .await
    }

    async fn add_ssh_key(&self, key: &SshKey) -> PortResult<()> {
        let (id, user, fp, at, json) = (
            key.id.clone(),
            key.user.0.clone(),
            key.fingerprint.clone(),
            key.created_at.timestamp_millis(),
            to_json(key)?,
        );
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO ssh_keys (id, user_id, fingerprint, created_at, json)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, user, fp, at, json],
                )
                .map_err(map_err)?;
                Ok(())
            })
            .await
    }

    async fn ssh_keys(&self, user: &UserId) -> PortResult<Vec<SshKey>> {
        let user = user.0.clone();
        self.db
            .call(move |c| {
                many(
                    c,
                    "SELECT json FROM ssh_keys WHERE user_id = ?1 ORDER BY created_at, rowid",
                    [user],
                )
            })
            .await
    }

    async fn remove_ssh_key(&self, user: &UserId, id: &str) -> PortResult<()> {
        let (user, id) = (user.0.clone(), id.to_owned());
        self.db
            .call(move |c| {
                let n = c
                    .execute(
                        "DELETE FROM ssh_keys WHERE user_id = ?1 AND id = ?2",
                        params![user, id],
                    )
                    .map_err(map_err)?;
                found(n)
            })
            .await
    }

    async fn add_domain(&self, domain: &CustomDomain) -> PortResult<()> {
        let (fqdn, app, json) = (
            domain.fqdn.to_string(),
            domain.app.to_string(),
            to_json(domain)?,
        );
        self.db
            .call(move |c| {
                let tx = c.transaction().map_err(map_err)?;
                tx.query_row("SELECT 1 FROM apps WHERE name = ?1", [&app], |_| Ok(()))
                    .map_err(map_err)?;
                tx.execute(
                    "INSERT INTO domains (fqdn, app, json) VALUES (?1, ?2, ?3)",
                    params![fqdn, app, json],
                )
                .map_err(map_err)?;
                tx.commit().map_err(map_err)
            })
            .await
    }

    async fn domains_of(&self, app: &AppName) -> PortResult<Vec<CustomDomain>> {
        let app = app.to_string();
        self.db
            .call(move |c| {
                many(
                    c,
                    "SELECT json FROM domains WHERE app = ?1 ORDER BY fqdn",
                    [&app],
                )
            })
            .await
    }

    async fn domain(&self, fqdn: &Fqdn) -> PortResult<CustomDomain> {
        let fqdn = fqdn.to_string();
        self.db
            .call(move |c| one(c, "SELECT json FROM domains WHERE fqdn = ?1", [&fqdn]))
            .await
    }

    async fn remove_domain(&self, app: &AppName, fqdn: &Fqdn) -> PortResult<()> {
        let (app, fqdn) = (app.to_string(), fqdn.to_string());
        self.db
            .call(move |c| {
                let n = c
                    .execute(
                        "DELETE FROM domains WHERE fqdn = ?1 AND app = ?2",
                        params![fqdn, app],
                    )
                    .map_err(map_err)?;
                found(n)
            })
            .await
    }

    async fn try_lock(&self, name: &str, holder: &str, ttl: Duration) -> PortResult<u64> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.db
            .call(move |c| {
                let now = now_ms();
                let tx = c.transaction().map_err(map_err)?;
                // The right-hand sides read the row as it was: the token grows only when
                // the lock passes to another holder.
                let n = tx
                    .execute(
                        "INSERT INTO locks (name, holder, expires_at, fence) VALUES (?1, ?2, ?3, 1)
                         ON CONFLICT (name) DO UPDATE SET holder = ?2, expires_at = ?3,
                             fence = CASE WHEN locks.holder = ?2 THEN locks.fence
                                          ELSE locks.fence + 1 END
                         WHERE locks.holder = ?2 OR locks.expires_at <= ?4",
                        params![name, holder, now.saturating_add(ttl_ms), now],
                    )
                    .map_err(map_err)?;
                if n == 0 {
                    return Err(PortError::Precondition);
                }
                let fence: i64 = tx
                    .query_row(
                        "SELECT fence FROM locks WHERE name = ?1",
                        params![name],
                        |r| r.get(0),
                    )
                    .map_err(map_err)?;
                tx.commit().map_err(map_err)?;
                Ok(u64::try_from(fence).unwrap_or(0))
            })
            .await
    }

    async fn unlock(&self, name: &str, holder: &str) -> PortResult<()> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.db
            .call(move |c| {
                c.execute(
                    "UPDATE locks SET expires_at = 0 WHERE name = ?1 AND holder = ?2",
                    params![name, holder],
                )
                .map_err(map_err)?;
                Ok(())
            })
            .await
    }

    async fn lock_state(&self, name: &str) -> PortResult<Option<crate::ports::LockState>> {
        let name = name.to_owned();
        self.db
            .call(move |c| {
                c.query_row(
                    "SELECT holder, fence FROM locks WHERE name = ?1 AND expires_at > ?2",
                    params![name, now_ms()],
                    |r| {
                        Ok(crate::ports::LockState {
                            holder: r.get(0)?,
                            fence: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        })
                    },
                )
                .optional()
                .map_err(map_err)
            })
            .await
    }

    async fn free_locks_of(&self, prefix: &str) -> PortResult<u64> {
        let prefix = prefix.to_owned();
        self.db
            .call(move |c| {
                let n = c
                    .execute(
                        "UPDATE locks SET expires_at = 0
                         WHERE expires_at > ?1 AND substr(holder, 1, length(?2)) = ?2",
                        params![now_ms(), prefix],
                    )
                    .map_err(map_err)?;
                Ok(n as u64)
            })
            .await
    }
}
