//! Managed PostgreSQL (`pg:*`), on GIGALIXIR's routes: `GET/POST /api/apps/NAME/databases`,
//! `POST …/free_databases`, `DELETE/PUT …/databases/ID`, `PUT …/ID/restart|stop|start`,
//! `POST …/ID/upgrade`, `GET/POST …/ID/read_replicas`, `GET …/ID/backups`,
//! `POST …/ID/backups/BACKUP/restore`; and ours, `POST …/ID/backups` (a backup now).
//!
//! A database is a database and a role of one random name on the platform's server
//! ([`shared::ports::Databases`]); its URL becomes the app's `DATABASE_URL` (and
//! `POOL_SIZE`) in a new release. Backups are `pg_dump -Fc` streams in the blob store
//! (`backups/ID/BACKUP.dump`), listed in the app's record; the daily ones keep the newest
//! [`KEEP_DAILY`].

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::domain::{AppName, Secret};
use shared::model::{App, Backup, Database, DatabaseState, DatabaseTier};
use shared::ports::databases::{new_name, new_password, DatabaseSpec};
use shared::ports::{Blobs, Databases};
use shared::wire::Data;
use shared::PortError;

use crate::access::AppAccess;
use crate::apps::{reload, with_record_lock, CLOUD, REGION};
use crate::error::{ApiError, ApiJson};
use crate::ApiState;

/// Databases an app may have at once.
pub const MAX_PER_APP: usize = 3;
/// Databases an account's apps may have at once, all together.
pub const MAX_PER_ACCOUNT: usize = 5;
/// The longest a backup or a restore may take.
pub const BACKUP_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(3600);
/// The largest backup kept: a dump past it is refused while it streams.
pub const MAX_BACKUP_BYTES: u64 = 10 << 30;
/// Daily backups kept per database (the newest).
pub const KEEP_DAILY: usize = 7;
/// Backups on request kept per database (the newest).
pub const KEEP_MANUAL: usize = 7;
/// The sizes GIGALIXIR sells (GB of memory), with the connection limit each gets here.
pub const SIZES: [(f64, u32); 9] = [
    (0.6, 25),
    (1.7, 50),
    (4.0, 100),
    (8.0, 150),
    (16.0, 200),
    (32.0, 250),
    (48.0, 250),
    (64.0, 250),
    (96.0, 250),
];
/// A free database's connection limit.
pub const FREE_CONNECTIONS: u32 = 4;
/// `POOL_SIZE` of a free database (GIGALIXIR's: 2).
pub const FREE_POOL_SIZE: u32 = 2;
/// `POOL_SIZE` of a standard database (Ecto's default pool).
pub const STANDARD_POOL_SIZE: u32 = 10;

/// The connection limit of a standard database of `size`, or `None` for a size not sold.
pub fn connections_for(size: f64) -> Option<u32> {
    SIZES
        .iter()
        .find(|(s, _)| (s - size).abs() < 1e-9)
        .map(|(_, c)| *c)
}

fn sizes_text() -> String {
    SIZES
        .iter()
        .map(|(s, _)| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One round of daily backups: each database whose newest daily backup is a day old (or
/// that has none) gets one. Errors are logged; the next round tries again.
pub async fn daily_backups(state: &ApiState) {
    if ports(state).is_err() {
        return;
    }
    let apps = match state.store.all_apps().await {
        Ok(apps) => apps,
        Err(err) => {
            tracing::warn!(error = %err, "daily backups: listing apps");
            return;
        }
    };
    for app in apps {
        // A stopped database's role may not log in: nothing to dump.
        for db in app
            .databases
            .iter()
            .filter(|d| d.state == DatabaseState::Available)
        {
            let newest = db
                .backups
                .iter()
                .filter(|b| b.automatic)
                .map(|b| b.created_at)
                .max();
            if newest.is_some_and(|at| Utc::now() - at < chrono::Duration::hours(24)) {
                continue;
            }
            if let Err(err) = take_backup(state, &app.name, db, true).await {
                tracing::warn!(app = %app.name, database = %db.id, error = %err.message(), "daily backup failed");
            }
        }
    }
}

/// The blob key of a backup.
pub fn backup_key(database: &str, backup: &str) -> String {
    format!("backups/{database}/{backup}.dump")
}

/// The database server and the blob store of backups.
type Ports = (Arc<dyn Databases>, Arc<dyn Blobs>);

fn ports(state: &ApiState) -> Result<Ports, ApiError> {
    match (&state.databases, &state.blobs) {
        (Some(db), Some(blobs)) => Ok((db.clone(), blobs.clone())),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "This platform offers no managed databases (its operator gives none: see \
             --postgres-url); use a database of your own through DATABASE_URL.",
        )),
    }
}

fn db_error(err: PortError) -> ApiError {
    match err {
        PortError::Invalid(msg) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, msg),
        PortError::NoSpace => err.into(),
        other => {
            tracing::error!(error = %other, "database server");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The database server could not complete the request; try again shortly.",
            )
        }
    }
}

/// A database as GIGALIXIR's CLI shows it.
pub fn view(app: &AppName, db: &Database) -> Value {
    json!({
        "id": db.id,
        "app_name": app.as_str(),
        "state": db.state,
        "tier": db.tier,
        "size": db.size,
        "version": format!("POSTGRES_{}", db.version),
        "cloud": CLOUD,
        "region": REGION,
        "url": db.url().expose(),
        "host": db.host,
        "port": db.port,
        "database": db.name,
        "username": db.name,
        "password": db.password.expose(),
        "created_at": db.created_at,
        "backups": db.backups.len(),
    })
}

fn find<'a>(app: &'a App, id: &str) -> Result<&'a Database, ApiError> {
    app.databases
        .iter()
        .find(|d| d.id == id)
        .ok_or_else(|| ApiError::not_found(format!("No database `{id}` on `{}`.", app.name)))
}

/// `GET /api/apps/NAME/databases`.
pub async fn list(access: AppAccess) -> Json<Data<Vec<Value>>> {
    let app = access.app;
    Json(Data {
        data: app.databases.iter().map(|d| view(&app.name, d)).collect(),
    })
}

/// Body of `POST …/databases`.
#[derive(Debug, Deserialize)]
pub struct CreateBody {
    /// GB, one of [`SIZES`].
    #[serde(default)]
    pub size: Option<f64>,
    /// `POSTGRES_N`: must be the server's.
    #[serde(default)]
    pub version: Option<String>,
    /// Ignored beyond a check: one cloud.
    #[serde(default)]
    pub cloud: Option<String>,
    /// Ignored beyond a check: one region.
    #[serde(default)]
    pub region: Option<String>,
}

/// `POST /api/apps/NAME/databases` `{"size": 0.6}` → 201 with the database.
pub async fn create(
    State(state): State<ApiState>,
    access: AppAccess,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<Data<Value>>), ApiError> {
    let size = body.size.unwrap_or(0.6);
    let connections = connections_for(size).ok_or_else(|| {
        ApiError::invalid(
            "size",
            format!("{size} is not a database size: one of {}", sizes_text()),
        )
    })?;
    for (field, value) in [("cloud", &body.cloud), ("region", &body.region)] {
        if let Some(v) = value {
            if v != CLOUD && v != REGION {
                return Err(ApiError::invalid(
                    field,
                    format!("`{v}` is not offered: this platform runs its databases in `{CLOUD}`"),
                ));
            }
        }
    }
    let made = make(
        &state,
        &access,
        DatabaseTier::Standard,
        size,
        connections,
        body.version.as_deref(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(Data { data: made })))
}

/// `POST /api/apps/NAME/free_databases` → 201 with the database (a few connections).
pub async fn create_free(
    State(state): State<ApiState>,
    access: AppAccess,
) -> Result<(StatusCode, Json<Data<Value>>), ApiError> {
    if access
        .app
        .databases
        .iter()
        .any(|d| d.tier == DatabaseTier::Free)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`{}` already has a free database.", access.app.name),
        ));
    }
    let made = make(
        &state,
        &access,
        DatabaseTier::Free,
        0.6,
        FREE_CONNECTIONS,
        None,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(Data { data: made })))
}

async fn make(
    state: &ApiState,
    access: &AppAccess,
    tier: DatabaseTier,
    size: f64,
    connections: u32,
    version: Option<&str>,
) -> Result<Value, ApiError> {
    let (databases, _) = ports(state)?;
    if access.app.databases.len() >= MAX_PER_APP {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "`{}` has {MAX_PER_APP} databases, the most an app may have; destroy one first (pg:destroy).",
                access.app.name
            ),
        ));
    }
    let owned: usize = state
        .store
        .apps_of(&access.app.owner)
        .await?
        .iter()
        .map(|a| a.databases.len())
        .sum();
    if owned >= MAX_PER_ACCOUNT {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "The account owning `{}` has {MAX_PER_ACCOUNT} databases, the most an account may have; destroy one first (pg:destroy).",
                access.app.name
            ),
        ));
    }
    let server_version = databases.version().await.map_err(db_error)?;
    if let Some(v) = version {
        let asked = v.trim().trim_start_matches("POSTGRES_").parse::<u32>().ok();
        if asked != Some(server_version) {
            return Err(ApiError::invalid(
                "version",
                format!("`{v}` is not offered: this platform runs POSTGRES_{server_version}"),
            ));
        }
    }
    let endpoint = databases.endpoint().await.map_err(db_error)?;
    let db = Database {
        id: uuid::Uuid::new_v4().to_string(),
        name: new_name(),
        password: new_password(),
        host: endpoint.host,
        port: endpoint.port,
        size,
        tier,
        version: server_version,
        state: DatabaseState::Available,
        created_at: Utc::now(),
        backups: Vec::new(),
    };
    databases
        .create(&DatabaseSpec {
            name: db.name.clone(),
            password: db.password.clone(),
            connections,
        })
        .await
        .map_err(db_error)?;
    let name = access.app.name.clone();
    let record = db.clone();
    let kept = with_record_lock(state, &name, || async {
        let mut app = reload(state, &name).await?;
        let free_taken = tier == DatabaseTier::Free
            && app.databases.iter().any(|d| d.tier == DatabaseTier::Free);
        if app.databases.len() >= MAX_PER_APP || free_taken {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "Another database was made meanwhile; try again.",
            ));
        }
        app.databases.push(record);
        state.store.update_app(&app).await?;
        Ok(())
    })
    .await;
    if let Err(err) = kept {
        // Not recorded: nothing may stay behind on the server.
        let _ = databases.destroy(&db.name).await;
        return Err(err);
    }
    tracing::info!(app = %name, database = %db.id, tier = ?tier, "database made");
    let pool = match tier {
        DatabaseTier::Free => FREE_POOL_SIZE,
        DatabaseTier::Standard => STANDARD_POOL_SIZE,
    };
    // The database becomes the app's DATABASE_URL (a new release) unless the app has one:
    // its first database, or a server of the user's own, which stays.
    let takes_url = !access.app.config.contains_key("DATABASE_URL");
    if takes_url {
        let url = db.url();
        crate::configs::change(
            state,
            &name,
            (access.user.email.as_str(), "pg:create"),
            "Set DATABASE_URL, POOL_SIZE (pg:create)".into(),
            false,
            |config| {
                if !config.contains_key("DATABASE_URL") {
                    config.insert("DATABASE_URL".into(), url);
                    config.insert("POOL_SIZE".into(), Secret::new(pool.to_string()));
                }
                Ok(())
            },
        )
        .await?;
    } else {
        crate::access::record(
            state,
            &name,
            access.user.email.as_str(),
            "pg:create",
            format!("database {}", db.id),
        )
        .await;
    }
    let mut shown = view(&name, &db);
    shown["config_var"] = if takes_url {
        json!("DATABASE_URL")
    } else {
        Value::Null
    };
    Ok(shown)
}

/// `DELETE /api/apps/NAME/databases/ID`: drops the database, its role and its backups,
/// and takes its URL out of the config (a new release).
pub async fn destroy(
    State(state): State<ApiState>,
    access: AppAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Data<Value>>, ApiError> {
    let db = find(&access.app, &id)?.clone();
    drop_database(&state, &access.app.name, &db).await?;
    let name = access.app.name.clone();
    with_record_lock(&state, &name, || async {
        let mut app = reload(&state, &name).await?;
        app.databases.retain(|d| d.id != db.id);
        state.store.update_app(&app).await?;
        Ok(())
    })
    .await?;
    let url = db.url();
    if access.app.config.get("DATABASE_URL").map(Secret::expose) == Some(url.expose()) {
        crate::configs::change(
            &state,
            &name,
            (access.user.email.as_str(), "pg:destroy"),
            "Unset DATABASE_URL, POOL_SIZE (pg:destroy)".into(),
            false,
            |config| {
                config.remove("DATABASE_URL");
                config.remove("POOL_SIZE");
                Ok(())
            },
        )
        .await?;
    } else {
        crate::access::record(
            &state,
            &name,
            access.user.email.as_str(),
            "pg:destroy",
            format!("database {}", db.id),
        )
        .await;
    }
    tracing::info!(app = %name, database = %db.id, "database destroyed");
    Ok(Json(Data { data: json!({}) }))
}

/// Drops a database on the server and deletes its backups (app and database destroys).
pub(crate) async fn drop_database(
    state: &ApiState,
    app: &AppName,
    db: &Database,
) -> Result<(), ApiError> {
    let (Some(databases), Some(blobs)) = (&state.databases, &state.blobs) else {
        // The operator gave up the server these were made on: nothing to drop here.
        tracing::warn!(app = %app, database = %db.id, "no database server: the database is forgotten, not dropped");
        return Ok(());
    };
    databases.destroy(&db.name).await.map_err(db_error)?;
    for key in blobs
        .list(&format!("backups/{}/", db.id))
        .await
        .unwrap_or_default()
    {
        if let Err(err) = blobs.delete(&key).await {
            tracing::warn!(app = %app, key, error = %err, "backup of a destroyed database not deleted");
        }
    }
    Ok(())
}

/// Body of `PUT …/databases/ID` (`pg:scale`).
#[derive(Debug, Deserialize)]
pub struct ScaleBody {
    /// The new size.
    #[serde(default)]
    pub size: Option<f64>,
    /// `enabled`/`disabled`: not offered here.
    #[serde(default)]
    pub high_availability: Option<String>,
}

/// `PUT /api/apps/NAME/databases/ID` `{"size": 1.7}` (`pg:scale`): a new connection limit.
pub async fn scale(
    State(state): State<ApiState>,
    access: AppAccess,
    Path((_, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<ScaleBody>,
) -> Result<Json<Data<Value>>, ApiError> {
    let (databases, _) = ports(&state)?;
    let db = find(&access.app, &id)?.clone();
    if body.high_availability.as_deref() == Some("enabled") {
        return Err(ApiError::invalid(
            "high_availability",
            "is not offered: databases here run on one server",
        ));
    }
    if db.tier == DatabaseTier::Free {
        return Err(ApiError::invalid(
            "size",
            "a free database keeps its size: create a standard one (pg:create -s SIZE)",
        ));
    }
    let Some(size) = body.size else {
        return Ok(Json(Data {
            data: view(&access.app.name, &db),
        }));
    };
    let connections = connections_for(size).ok_or_else(|| {
        ApiError::invalid(
            "size",
            format!("{size} is not a database size: one of {}", sizes_text()),
        )
    })?;
    databases
        .set_connections(&db.name, connections)
        .await
        .map_err(db_error)?;
    let updated = update(&state, &access.app.name, &id, |d| d.size = size).await?;
    Ok(Json(Data {
        data: view(&access.app.name, &updated),
    }))
}

async fn update(
    state: &ApiState,
    name: &AppName,
    id: &str,
    edit: impl FnOnce(&mut Database),
) -> Result<Database, ApiError> {
    with_record_lock(state, name, || async {
        let mut app = reload(state, name).await?;
        let db = app
            .databases
            .iter_mut()
            .find(|d| d.id == id)
            .ok_or_else(|| ApiError::not_found(format!("No database `{id}` on `{name}`.")))?;
        edit(db);
        let db = db.clone();
        state.store.update_app(&app).await?;
        Ok(db)
    })
    .await
}

/// `PUT …/databases/ID/restart`: ends every session (pools reconnect).
pub async fn restart(
    State(state): State<ApiState>,
    access: AppAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Data<Value>>, ApiError> {
    let (databases, _) = ports(&state)?;
    let db = find(&access.app, &id)?;
    databases.disconnect(&db.name).await.map_err(db_error)?;
    Ok(Json(Data {
        data: view(&access.app.name, db),
    }))
}

/// `PUT …/databases/ID/stop`: its role may not log in; its sessions end.
pub async fn stop(
    State(state): State<ApiState>,
    access: AppAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Data<Value>>, ApiError> {
    set_state(state, access, id, DatabaseState::Stopped).await
}

/// `PUT …/databases/ID/start`.
pub async fn start(
    State(state): State<ApiState>,
    access: AppAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Data<Value>>, ApiError> {
    set_state(state, access, id, DatabaseState::Available).await
}

async fn set_state(
    state: ApiState,
    access: AppAccess,
    id: String,
    to: DatabaseState,
) -> Result<Json<Data<Value>>, ApiError> {
    let (databases, _) = ports(&state)?;
    let db = find(&access.app, &id)?;
    databases
        .set_login(&db.name, to == DatabaseState::Available)
        .await
        .map_err(db_error)?;
    let updated = update(&state, &access.app.name, &id, |d| d.state = to).await?;
    Ok(Json(Data {
        data: view(&access.app.name, &updated),
    }))
}

/// Body of `POST …/databases/ID/upgrade`.
#[derive(Debug, Deserialize)]
pub struct UpgradeBody {
    /// `POSTGRES_N`.
    #[serde(default)]
    pub version: Option<String>,
}

/// `POST …/databases/ID/upgrade`: the platform runs one major version; asking for it is a
/// no-op, anything else is refused.
pub async fn upgrade(
    access: AppAccess,
    Path((_, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpgradeBody>,
) -> Result<Json<Data<Value>>, ApiError> {
    let db = find(&access.app, &id)?;
    let current = format!("POSTGRES_{}", db.version);
    match body.version.as_deref() {
        Some(v) if v == current => Ok(Json(Data {
            data: view(&access.app.name, db),
        })),
        other => Err(ApiError::invalid(
            "version",
            format!(
                "`{}` is not offered: the database runs {current}, the only version here",
                other.unwrap_or("")
            ),
        )),
    }
}

/// `GET …/databases/ID/read_replicas`: none (not offered).
pub async fn read_replicas(
    access: AppAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Data<Vec<Value>>>, ApiError> {
    find(&access.app, &id)?;
    Ok(Json(Data { data: Vec::new() }))
}

/// `POST …/databases/ID/read_replicas`: refused (one server).
pub async fn create_read_replica(
    access: AppAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Data<Value>>, ApiError> {
    find(&access.app, &id)?;
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Read replicas are not offered: databases here run on one server.",
    ))
}

fn backup_view(db: &Database, b: &Backup) -> Value {
    json!({
        "id": b.id,
        "database_id": db.id,
        "created_at": b.created_at,
        "size": b.size,
        "type": if b.automatic { "DAILY" } else { "ON_DEMAND" },
        "status": "SUCCESSFUL",
    })
}

/// `GET …/databases/ID/backups`: newest first.
pub async fn backups(
    access: AppAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Data<Vec<Value>>>, ApiError> {
    let db = find(&access.app, &id)?;
    Ok(Json(Data {
        data: db
            .backups
            .iter()
            .rev()
            .map(|b| backup_view(db, b))
            .collect(),
    }))
}

/// `POST …/databases/ID/backups` (ours, `pg:backups:create`) → 201 with the backup.
pub async fn create_backup(
    State(state): State<ApiState>,
    access: AppAccess,
    Path((_, id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Data<Value>>), ApiError> {
    let db = find(&access.app, &id)?.clone();
    if db.state == DatabaseState::Stopped {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Database `{id}` is stopped: start it first (pg:start)."),
        ));
    }
    let backup = take_backup(&state, &access.app.name, &db, false).await?;
    crate::access::record(
        &state,
        &access.app.name,
        access.user.email.as_str(),
        "pg:backups:create",
        format!("database {} backup {}", db.id, backup.id),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(Data {
            data: backup_view(&db, &backup),
        }),
    ))
}

/// A database's lock for a backup or a restore.
struct Busy {
    name: String,
    holder: String,
}

impl Busy {
    async fn release(self, state: &ApiState) {
        let _ = state.store.unlock(&self.name, &self.holder).await;
    }
}

async fn busy_lock(state: &ApiState, id: &str) -> Result<Busy, ApiError> {
    let busy = Busy {
        name: format!("database-busy:{id}"),
        holder: uuid::Uuid::new_v4().to_string(),
    };
    match state
        .store
        .try_lock(&busy.name, &busy.holder, BACKUP_TIME_LIMIT * 2)
        .await
    {
        Ok(_) => Ok(busy),
        Err(PortError::Precondition) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "A backup or a restore of this database is in progress; wait for it to finish.",
        )),
        Err(err) => Err(err.into()),
    }
}

/// Stores `dump` at `key` within [`BACKUP_TIME_LIMIT`]; its size. Nothing stays of a
/// dump that failed.
async fn put_counted(
    blobs: &dyn Blobs,
    key: &str,
    dump: shared::ports::blobs::ByteStream,
) -> Result<u64, ApiError> {
    let counted = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = counted.clone();
    let dump = futures::StreamExt::boxed(futures::StreamExt::inspect(dump, move |chunk| {
        if let Ok(bytes) = chunk {
            counter.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
    }));
    let stored = tokio::time::timeout(BACKUP_TIME_LIMIT, blobs.put_stream(key, dump))
        .await
        .unwrap_or_else(|_| {
            Err(PortError::Invalid(format!(
                "took longer than {} s",
                BACKUP_TIME_LIMIT.as_secs()
            )))
        });
    if let Err(err) = stored {
        let _ = blobs.delete(key).await;
        return Err(match err {
            PortError::Invalid(why) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "The backup was stopped: its dump {}; nothing was kept.",
                    why.replace("larger than", "grew larger than")
                ),
            ),
            other => db_error(other),
        });
    }
    Ok(counted.load(std::sync::atomic::Ordering::Relaxed))
}

/// Dumps `db` into the blob store and lists the backup on it, dropping the oldest of its
/// kind beyond what is kept.
pub async fn take_backup(
    state: &ApiState,
    app: &AppName,
    db: &Database,
    automatic: bool,
) -> Result<Backup, ApiError> {
    let (databases, blobs) = ports(state)?;
    let now = Utc::now();
    let id = format!(
        "{}-{}-{}",
        now.format("%Y%m%dT%H%M%S%3fZ"),
        if automatic { "daily" } else { "manual" },
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let key = backup_key(&db.id, &id);
    // One backup or restore of a database at a time.
    let lock = busy_lock(state, &db.id).await?;
    // Its own task: a client that goes away does not leave half a dump behind.
    let (name, password, task_key) = (db.name.clone(), db.password.clone(), key.clone());
    let (task_state, task_blobs) = (state.clone(), blobs.clone());
    let size = tokio::spawn(async move {
        let dumped = async {
            let dump = shared::ports::blobs::capped(
                databases.dump(&name, &password).await.map_err(db_error)?,
                MAX_BACKUP_BYTES,
            );
            put_counted(&*task_blobs, &task_key, dump).await
        }
        .await;
        lock.release(&task_state).await;
        dumped
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    let backup = Backup {
        id,
        created_at: now,
        size,
        automatic,
    };
    let record = backup.clone();
    let mut dropped = Vec::new();
    let listed = update(state, app, &db.id, |d| {
        d.backups.push(record);
        let keep = |auto: bool| if auto { KEEP_DAILY } else { KEEP_MANUAL };
        for auto in [true, false] {
            let of_kind: Vec<String> = d
                .backups
                .iter()
                .filter(|b| b.automatic == auto)
                .map(|b| b.id.clone())
                .collect();
            let excess = of_kind.len().saturating_sub(keep(auto));
            dropped.extend(of_kind.into_iter().take(excess));
        }
        d.backups.retain(|b| !dropped.contains(&b.id));
    })
    .await;
    if let Err(err) = listed {
        let _ = blobs.delete(&key).await;
        return Err(err);
    }
    for old in dropped {
        if let Err(err) = blobs.delete(&backup_key(&db.id, &old)).await {
            tracing::warn!(app = %app, backup = old, error = %err, "old backup not deleted");
        }
    }
    tracing::info!(app = %app, database = %db.id, backup = %backup.id, bytes = backup.size, "backup taken");
    Ok(backup)
}

/// `POST …/databases/ID/backups/BACKUP/restore`: the database's content becomes the
/// backup's (its sessions end). A backup that does not load leaves the database as it was.
pub async fn restore(
    State(state): State<ApiState>,
    access: AppAccess,
    Path((_, id, backup)): Path<(String, String, String)>,
) -> Result<Json<Data<Value>>, ApiError> {
    let (databases, blobs) = ports(&state)?;
    let db = find(&access.app, &id)?.clone();
    let Some(b) = db.backups.iter().find(|b| b.id == backup) else {
        return Err(ApiError::not_found(format!(
            "No backup `{backup}` of database `{id}` (pg:backups -d {id} lists them)."
        )));
    };
    if db.state == DatabaseState::Stopped {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Database `{id}` is stopped: start it first (pg:start)."),
        ));
    }
    let lock = busy_lock(&state, &db.id).await?;
    // Its own task: a client that goes away does not cut a restore in the middle.
    let (name, password, key) = (
        db.name.clone(),
        db.password.clone(),
        backup_key(&db.id, &b.id),
    );
    let task_state = state.clone();
    let restored = tokio::spawn(async move {
        let done = match blobs.get_stream(&key).await {
            Ok(dump) => databases
                .restore(&name, &password, dump)
                .await
                .map_err(db_error),
            Err(err) => Err(db_error(err)),
        };
        lock.release(&task_state).await;
        done
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    restored?;
    crate::access::record(
        &state,
        &access.app.name,
        access.user.email.as_str(),
        "pg:backups:restore",
        format!("database {} from backup {}", db.id, b.id),
    )
    .await;
    tracing::info!(app = %access.app.name, database = %db.id, backup = %b.id, "database restored");
    Ok(Json(Data {
        data: backup_view(&db, b),
    }))
}
