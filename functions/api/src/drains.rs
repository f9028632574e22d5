//! Log drains, on GIGALIXIR's routes: `GET /api/apps/NAME/drains`, `POST …/drains`
//! `{"url"}` (201), `DELETE …/drains` `{"drain_id"}`. Shipping is `gigalixir_drains`'.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::domain::Secret;
use shared::model::Drain;
use shared::wire::Data;

use crate::access::AppAccess;
use crate::apps::{reload, with_record_lock};
use crate::error::{ApiError, ApiJson};
use crate::ApiState;

fn view(d: &Drain) -> Value {
    json!({
        "id": d.id,
        "url": d.url.expose(),
        "token": format!("d.{}", d.id),
        "created_at": d.created_at,
    })
}

/// `GET /api/apps/NAME/drains`.
pub async fn list(access: AppAccess) -> Json<Data<Vec<Value>>> {
    Json(Data {
        data: access.app.drains.iter().map(view).collect(),
    })
}

/// Body of `POST …/drains`.
#[derive(Debug, Deserialize)]
pub struct AddBody {
    /// `https://…` or `syslog+tls://HOST:PORT`.
    pub url: String,
}

/// `POST /api/apps/NAME/drains` `{"url"}` → 201 with the drain.
pub async fn add(
    State(state): State<ApiState>,
    access: AppAccess,
    ApiJson(body): ApiJson<AddBody>,
) -> Result<(StatusCode, Json<Data<Value>>), ApiError> {
    gigalixir_drains::parse(&body.url, state.drains_allow_loopback)
        .map_err(|why| ApiError::invalid("url", format!("the drain URL {why}")))?;
    let name = access.app.name.clone();
    let drain = Drain {
        id: uuid::Uuid::new_v4().to_string(),
        url: Secret::new(body.url.trim()),
        created_at: Utc::now(),
    };
    let made = drain.clone();
    with_record_lock(&state, &name, || async {
        let mut app = reload(&state, &name).await?;
        if app.drains.len() >= gigalixir_drains::MAX_PER_APP {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "`{name}` has {} drains, the most an app may have; remove one first (drains:remove).",
                    gigalixir_drains::MAX_PER_APP
                ),
            ));
        }
        if app.drains.iter().any(|d| d.url.expose() == made.url.expose()) {
            return Err(ApiError::invalid("url", "is a drain of this app already"));
        }
        app.drains.push(made);
        state.store.update_app(&app).await?;
        Ok(())
    })
    .await?;
    // The URL may hold a token: the activity names the drain only.
    crate::access::record(
        &state,
        &name,
        access.user.email.as_str(),
        "drains:add",
        format!("drain {}", drain.id),
    )
    .await;
    Ok((StatusCode::CREATED, Json(Data { data: view(&drain) })))
}

/// Body of `DELETE …/drains`.
#[derive(Debug, Deserialize)]
pub struct RemoveBody {
    /// The drain's id.
    pub drain_id: String,
}

/// `DELETE /api/apps/NAME/drains` `{"drain_id"}`.
pub async fn remove(
    State(state): State<ApiState>,
    access: AppAccess,
    ApiJson(body): ApiJson<RemoveBody>,
) -> Result<Json<Data<Value>>, ApiError> {
    let name = access.app.name.clone();
    let id = body.drain_id.trim().to_owned();
    with_record_lock(&state, &name, || async {
        let mut app = reload(&state, &name).await?;
        let before = app.drains.len();
        app.drains.retain(|d| d.id != id);
        if app.drains.len() == before {
            return Err(ApiError::not_found(format!(
                "No drain `{id}` on `{name}` (`gigalixir drains` lists them)."
            )));
        }
        state.store.update_app(&app).await?;
        Ok(())
    })
    .await?;
    crate::access::record(
        &state,
        &name,
        access.user.email.as_str(),
        "drains:remove",
        format!("drain {id}"),
    )
    .await;
    Ok(Json(Data { data: json!({}) }))
}
