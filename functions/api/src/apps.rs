//! Apps: create, list, show, destroy. Another user's app is answered exactly like a
//! missing one.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};
use shared::domain::{AppName, Secret};
use shared::messages::{Envelope, Event};
use shared::model::App;
use shared::stack::Stack;
use shared::wire::StackChange;
use shared::wire::{AppView, Data, NewApp};
use shared::PortError;

use crate::access::AppAccess;
use crate::auth::{random_hex, AuthUser};
use crate::error::{ApiError, ApiJson};
use crate::ApiState;

/// Where apps run on the embedded platform, in GIGALIXIR's terms.
pub(crate) const CLOUD: &str = "local";
pub(crate) const REGION: &str = "local";
const DEFAULT_SIZE: f64 = 0.5;
/// Apps an account may have, as GIGALIXIR allows.
pub const MAX_APPS_PER_ACCOUNT: usize = 100;

fn view(app: &App) -> AppView {
    AppView {
        unique_name: app.name.to_string(),
        size: app.size,
        replicas: app.replicas,
        cloud: CLOUD.into(),
        region: REGION.into(),
        stack: app.stack.map(|s| s.as_str().to_owned()),
        maintenance: app.maintenance,
    }
}

/// A stack name from a request body: 422 naming the stacks for anything else.
fn parse_stack(raw: &str) -> Result<Stack, ApiError> {
    Stack::parse(raw).map_err(|e| ApiError::invalid("stack", e.0))
}

/// `GET /api/apps`: the apps the caller owns or has access to, by name.
pub async fn list(
    State(state): State<ApiState>,
    caller: AuthUser,
) -> Result<Json<Data<Vec<AppView>>>, ApiError> {
    let apps = state.store.apps_with_access(&caller.0.id).await?;
    Ok(Json(Data {
        data: apps.iter().map(view).collect(),
    }))
}

/// A name for apps created without one: `word-word-1234`.
fn generated_name() -> String {
    const FIRST: &[&str] = &[
        "amber", "brisk", "calm", "daring", "eager", "fuzzy", "gentle", "humble", "jolly",
        "lively", "mellow", "nimble", "proud", "quiet", "rapid", "sunny", "tidy", "vivid", "witty",
        "zesty",
    ];
    const SECOND: &[&str] = &[
        "badger", "comet", "dune", "falcon", "grove", "harbor", "island", "lagoon", "meadow",
        "nebula", "orchid", "pebble", "quartz", "river", "summit", "tundra", "valley", "willow",
        "yonder", "zephyr",
    ];
    let r = random_hex(6);
    let n = u64::from_str_radix(&r, 16).unwrap_or(0);
    let a = FIRST[(n % FIRST.len() as u64) as usize];
    let b = SECOND[((n / 97) % SECOND.len() as u64) as usize];
    format!("{a}-{b}-{:04}", n % 10_000)
}

/// `POST /api/apps`: creates an app with its own Erlang cookie and `SECRET_KEY_BASE`.
/// 201; 422 for an invalid, reserved or taken name.
pub async fn create(
    State(state): State<ApiState>,
    caller: AuthUser,
    ApiJson(body): ApiJson<NewApp>,
) -> Result<(StatusCode, Json<Data<AppView>>), ApiError> {
    let raw = body.unique_name.unwrap_or_else(generated_name);
    let name = AppName::parse(&raw).map_err(|e| ApiError::invalid("unique_name", e.0))?;
    let stack = body.stack.as_deref().map(parse_stack).transpose()?;
    // An app of that name being destroyed: the name is free once everything of it is gone.
    let lock = shared::cleanup::destroying_lock(&name);
    match state.store.lock_state(&lock).await {
        Ok(None) => {}
        Ok(Some(_)) => {
            return Err(ApiError::invalid(
                "unique_name",
                "is being destroyed: it is free again once everything of the old app is gone (seconds); try again shortly",
            ))
        }
        Err(err) => return Err(err.into()),
    }
    let app = App {
        name,
        owner: caller.0.id.clone(),
        created_at: Utc::now(),
        health: Default::default(),
        webhook_secret: None,
        maintenance: false,
        canary: None,
        databases: Vec::new(),
        drains: Vec::new(),
        erlang_cookie: Secret::new(random_hex(32)),
        secret_key_base: Secret::new(random_hex(48)),
        replicas: 1,
        size: DEFAULT_SIZE,
        stack,
        config: Default::default(),
    };
    with_account_lock(&state, &caller.0.id, || async {
        if state.store.apps_of(&caller.0.id).await?.len() >= MAX_APPS_PER_ACCOUNT {
            return Err(ApiError::invalid(
                "unique_name",
                format!(
                    "an account may have at most {MAX_APPS_PER_ACCOUNT} apps: destroy one first"
                ),
            ));
        }
        match state.store.create_app(&app).await {
            Ok(()) => {
                tracing::info!(app = %app.name, "app created");
                Ok((StatusCode::CREATED, Json(Data { data: view(&app) })))
            }
            Err(PortError::AlreadyExists) => {
                Err(ApiError::invalid("unique_name", "has already been taken"))
            }
            Err(err) => Err(err.into()),
        }
    })
    .await
}

/// `GET /api/apps/NAME`.
pub async fn info(access: AppAccess) -> Result<Json<Data<AppView>>, ApiError> {
    let app = access.app;
    Ok(Json(Data { data: view(&app) }))
}

/// `PUT /api/apps/NAME/stack` `{"stack": "trixie"}` (GIGALIXIR's `stack:set`): the stack
/// every later build of the app uses, whatever versions the app asks for; `null` or `""`
/// goes back to choosing per build. The next build starts from an empty build cache. 200
/// with the app; 422 for an unknown stack.
pub async fn set_stack(
    State(state): State<ApiState>,
    access: AppAccess,
    ApiJson(body): ApiJson<StackChange>,
) -> Result<Json<Data<AppView>>, ApiError> {
    let app = access.app;
    let stack = match body.stack.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(parse_stack(raw)?),
    };
    let app = with_record_lock(&state, &app.name, || async {
        let mut app = reload(&state, &app.name).await?;
        app.stack = stack;
        state.store.update_app(&app).await?;
        Ok(app)
    })
    .await?;
    tracing::info!(app = %app.name, stack = ?app.stack, "stack set");
    Ok(Json(Data { data: view(&app) }))
}

/// `PUT /api/apps/NAME/maintenance` `{"enable": true|false}` (`maintenance:on|off`).
#[derive(Debug, serde::Deserialize)]
pub struct Maintenance {
    enable: bool,
}

/// Turns maintenance on or off: the app keeps running (SSH, `ps:run`, deploys work), but
/// the router answers its requests with 503, `Retry-After` and a maintenance page (the
/// app's own `/maintenance.html`, else a plain one) within a second. 200 with the app.
pub async fn set_maintenance(
    State(state): State<ApiState>,
    access: AppAccess,
    ApiJson(body): ApiJson<Maintenance>,
) -> Result<Json<Data<AppView>>, ApiError> {
    let name = access.app.name.clone();
    let app = with_record_lock(&state, &name, || async {
        let mut app = reload(&state, &name).await?;
        app.maintenance = body.enable;
        state.store.update_app(&app).await?;
        Ok(app)
    })
    .await?;
    let action = if body.enable {
        "maintenance:on"
    } else {
        "maintenance:off"
    };
    crate::access::record(
        &state,
        &name,
        access.user.email.as_str(),
        action,
        String::new(),
    )
    .await;
    crate::domains::announce(&state, &name).await;
    tracing::info!(app = %name, maintenance = body.enable, "maintenance set");
    Ok(Json(Data { data: view(&app) }))
}

/// An app's canary as the API shows it.
fn canary_view(app: &App) -> Value {
    match &app.canary {
        Some(c) => json!({"canary": c.app.to_string(), "weight": c.weight}),
        None => json!({"canary": null, "weight": 0}),
    }
}

/// `GET /api/apps/NAME/canaries` (`canary`): `{"canary": NAME|null, "weight": N}`.
pub async fn canary(access: AppAccess) -> Json<Data<Value>> {
    Json(Data {
        data: canary_view(&access.app),
    })
}

/// `PUT /api/apps/NAME/canaries` `{"canary", "weight"}`.
#[derive(Debug, serde::Deserialize)]
pub struct CanaryChange {
    canary: Option<String>,
    weight: Option<i64>,
}

/// `canary:set`: WEIGHT percent of the app's new visitors (its own host and its custom
/// domains) go to the canary app, each browser kept on one side by a cookie. The canary
/// must be another app of the same owner that the caller may change too. Without
/// `canary`, changes the weight of the one set.
pub async fn set_canary(
    State(state): State<ApiState>,
    access: AppAccess,
    ApiJson(body): ApiJson<CanaryChange>,
) -> Result<Json<Data<Value>>, ApiError> {
    let weight = match body.weight {
        Some(w) if (0..=100).contains(&w) => Some(w as u8),
        Some(_) => return Err(ApiError::invalid("weight", "is a percentage, 0 to 100")),
        None => None,
    };
    let target = match &body.canary {
        Some(raw) => {
            let (canary, _) =
                crate::access::app_for(&state, &access.user, raw, crate::access::Need::Change)
                    .await
                    .map_err(|_| {
                        ApiError::invalid("canary", format!("`{raw}` is not an app you may change"))
                    })?;
            if canary.name == access.app.name {
                return Err(ApiError::invalid("canary", "is the app itself"));
            }
            if canary.owner != access.app.owner {
                return Err(ApiError::invalid(
                    "canary",
                    "belongs to another owner: an app's canary is an app of the same owner",
                ));
            }
            Some(canary.name)
        }
        None => None,
    };
    let name = access.app.name.clone();
    let app = with_record_lock(&state, &name, || async {
        let mut app = reload(&state, &name).await?;
        let canary = match (target, &app.canary) {
            (Some(target), current) => shared::model::Canary {
                app: target,
                weight: weight.or(current.as_ref().map(|c| c.weight)).unwrap_or(10),
            },
            (None, Some(current)) => shared::model::Canary {
                app: current.app.clone(),
                weight: weight.unwrap_or(current.weight),
            },
            (None, None) => {
                return Err(ApiError::invalid(
                    "canary",
                    "the app has no canary: name one (`canary:set -c APP -w WEIGHT`)",
                ))
            }
        };
        app.canary = Some(canary);
        state.store.update_app(&app).await?;
        Ok(app)
    })
    .await?;
    let detail = canary_view(&app).to_string();
    crate::access::record(
        &state,
        &name,
        access.user.email.as_str(),
        "canary:set",
        detail,
    )
    .await;
    crate::domains::announce(&state, &name).await;
    tracing::info!(app = %name, canary = ?app.canary, "canary set");
    Ok(Json(Data {
        data: canary_view(&app),
    }))
}

/// `DELETE /api/apps/NAME/canaries/CANARY` (`canary:unset`): all requests go to the app
/// again. 422 when CANARY is not its canary.
pub async fn unset_canary(
    State(state): State<ApiState>,
    access: AppAccess,
    axum::extract::Path((_, canary)): axum::extract::Path<(String, String)>,
) -> Result<Json<Data<Value>>, ApiError> {
    let name = access.app.name.clone();
    let app = with_record_lock(&state, &name, || async {
        let mut app = reload(&state, &name).await?;
        if app.canary.as_ref().map(|c| c.app.as_str()) != Some(canary.as_str()) {
            return Err(ApiError::invalid(
                "canary",
                format!("`{canary}` is not the canary of `{name}`"),
            ));
        }
        app.canary = None;
        state.store.update_app(&app).await?;
        Ok(app)
    })
    .await?;
    crate::access::record(
        &state,
        &name,
        access.user.email.as_str(),
        "canary:unset",
        canary,
    )
    .await;
    crate::domains::announce(&state, &name).await;
    Ok(Json(Data {
        data: canary_view(&app),
    }))
}

/// `DELETE /api/apps/NAME`: deletes the app with its builds and releases. Owner only.
pub async fn destroy(
    State(state): State<ApiState>,
    access: AppAccess,
) -> Result<Json<Data<Value>>, ApiError> {
    destroy_app(&state, &access.app).await?;
    Ok(Json(Data { data: json!({}) }))
}

/// Deletes an app's records and announces `app-destroyed` (deploy removes what runs).
pub(crate) async fn destroy_app(state: &ApiState, app: &App) -> Result<(), ApiError> {
    // Its databases first: a server that fails leaves the app to destroy again.
    for db in &app.databases {
        crate::databases::drop_database(state, &app.name, db).await?;
    }
    // Held until the cleanup (deploy, on app-destroyed) has removed everything of the app.
    state
        .store
        .try_lock(
            &shared::cleanup::destroying_lock(&app.name),
            shared::cleanup::DESTROYING_HOLDER,
            shared::cleanup::DESTROYING_TTL,
        )
        .await?;
    match state.store.delete_app(&app.name).await {
        Ok(()) | Err(PortError::NotFound) => {}
        Err(err) => return Err(err.into()),
    }
    let event = Event::AppDestroyed {
        app: app.name.clone(),
    };
    // The app is gone either way; a lost message leaves containers for the operator.
    if let Err(err) = state
        .bus
        .publish(&event.topic(), &Envelope::event(&event, None))
        .await
    {
        tracing::error!(app = %app.name, error = %err, "app-destroyed not published");
    }
    tracing::info!(app = %app.name, "app destroyed");
    Ok(())
}

/// How long a change to an app's record waits for another one to finish.
const RECORD_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a change to an app's record may hold its lock (if the process dies, the lock
/// frees itself after this).
const RECORD_LOCK_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `change` while holding the account's lock, so that two requests cannot both pass
/// a per-account limit (apps, capacity) that only one of them fits under. Taken after an
/// app's record lock where both are held, never before.
pub(crate) async fn with_account_lock<T, Fut>(
    state: &ApiState,
    owner: &shared::domain::UserId,
    change: impl FnOnce() -> Fut,
) -> Result<T, ApiError>
where
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    with_lock(
        state,
        &format!("account:{}", owner.0),
        || "Another change to your account is in progress; try again shortly.".to_owned(),
        change,
    )
    .await
}

/// Runs `change` while holding the app's record lock, so that concurrent read-modify-write
/// changes of one app (config, scale) do not lose each other's updates.
pub(crate) async fn with_record_lock<T, Fut>(
    state: &ApiState,
    app: &AppName,
    change: impl FnOnce() -> Fut,
) -> Result<T, ApiError>
where
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    with_lock(
        state,
        &format!("app-record:{app}"),
        || format!("Another change to `{app}` is in progress; try again shortly."),
        change,
    )
    .await
}

/// Runs `change` while holding the store's lock `lock`; waits for it up to
/// [`RECORD_LOCK_WAIT`], then answers 409 with `busy()`.
pub(crate) async fn with_lock<T, Fut>(
    state: &ApiState,
    lock: &str,
    busy: impl FnOnce() -> String,
    change: impl FnOnce() -> Fut,
) -> Result<T, ApiError>
where
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let holder = shared::locks::holder(&format!("record-{}", uuid::Uuid::new_v4()));
    let waited = tokio::time::Instant::now();
    loop {
        match state.store.try_lock(lock, &holder, RECORD_LOCK_TTL).await {
            Ok(_) => break,
            Err(PortError::Precondition) if waited.elapsed() < RECORD_LOCK_WAIT => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(PortError::Precondition) => {
                return Err(ApiError::new(StatusCode::CONFLICT, busy()))
            }
            Err(err) => return Err(err.into()),
        }
    }
    let result = change().await;
    if let Err(err) = state.store.unlock(lock, &holder).await {
        tracing::warn!(lock, error = %err, "lock not released; it expires");
    }
    result
}

/// The app's record as it is now, read again under its lock; 404 if it went meanwhile.
pub(crate) async fn reload(state: &ApiState, app: &AppName) -> Result<App, ApiError> {
    match state.store.app(app).await {
        Ok(app) => Ok(app),
        Err(PortError::NotFound) => Err(ApiError::not_found(format!("App `{app}` not found."))),
        Err(err) => Err(err.into()),
    }
}
