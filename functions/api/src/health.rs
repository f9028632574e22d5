//! The app's health check: when a new replica counts as ready, how long it may take, and
//! how long a leaving replica drains. Applies from the next deploy, scale or restart.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use shared::model::HealthCheck;
use shared::wire::Data;

use crate::access::AppAccess;
use crate::apps::{reload, with_record_lock};
use crate::error::ApiError;
use crate::ApiState;

/// `PUT /api/apps/NAME/health`: fields left out keep their value; `"path": null` (or
/// `"tcp": true`) goes back to the TCP check.
#[derive(Debug, Default, Deserialize)]
pub struct HealthUpdate {
    #[serde(default, deserialize_with = "some_or_null")]
    path: Option<Option<String>>,
    tcp: Option<bool>,
    status: Option<u16>,
    boot_timeout: Option<u32>,
    drain: Option<u32>,
}

fn some_or_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// `GET /api/apps/NAME/health`.
pub async fn get(access: AppAccess) -> Result<Json<Data<HealthCheck>>, ApiError> {
    let app = access.app;
    Ok(Json(Data { data: app.health }))
}

/// `PUT /api/apps/NAME/health`.
pub async fn set(
    State(state): State<ApiState>,
    access: AppAccess,
    crate::error::ApiJson(update): crate::error::ApiJson<HealthUpdate>,
) -> Result<Json<Data<HealthCheck>>, ApiError> {
    let app = access.app;
    if let Some(Some(path)) = &update.path {
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiError::invalid(
                "path",
                format!("`{path}` is not a path: it starts with / and has no spaces"),
            ));
        }
    }
    if let Some(status) = update.status {
        if !(100..=599).contains(&status) {
            return Err(ApiError::invalid(
                "status",
                "status must be an HTTP status, 100 to 599",
            ));
        }
    }
    if let Some(secs) = update.boot_timeout {
        if !(5..=900).contains(&secs) {
            return Err(ApiError::invalid(
                "boot_timeout",
                "boot_timeout must be 5 to 900 seconds",
            ));
        }
    }
    if let Some(secs) = update.drain {
        if secs > 300 {
            return Err(ApiError::invalid("drain", "drain must be 0 to 300 seconds"));
        }
    }
    let name = app.name.clone();
    let health = with_record_lock(&state, &name, || async {
        let mut app = reload(&state, &name).await?;
        if let Some(path) = update.path {
            app.health.path = path;
        }
        if update.tcp == Some(true) {
            app.health.path = None;
        }
        if let Some(status) = update.status {
            app.health.status = status;
        }
        if let Some(secs) = update.boot_timeout {
            app.health.boot_timeout_secs = Some(secs);
        }
        if let Some(secs) = update.drain {
            app.health.drain_secs = secs;
        }
        state.store.update_app(&app).await?;
        Ok(app.health)
    })
    .await?;
    tracing::info!(app = %name, "health check set");
    Ok(Json(Data { data: health }))
}
