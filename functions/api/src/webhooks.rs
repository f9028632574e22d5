//! The app's push webhook key. `POST /api/apps/NAME/webhook` makes a new random key (the
//! previous one stops working) and shows it this once, with the path to give GitHub;
//! `DELETE` turns the webhook off. The `receive` function checks each delivery's
//! `X-Hub-Signature-256` against it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use shared::domain::Secret;
use shared::wire::Data;

use crate::access::AppAccess;
use crate::apps::{reload, with_record_lock};
use crate::auth::random_hex;
use crate::error::ApiError;
use crate::ApiState;

/// `POST /api/apps/NAME/webhook`: a new key (256 random bits, hex), replacing any. 201
/// with `{"data": {"secret", "path", "content_type", "events"}}`.
pub async fn create(
    State(state): State<ApiState>,
    access: AppAccess,
) -> Result<(StatusCode, Json<Data<Value>>), ApiError> {
    let app = access.app;
    let secret = random_hex(32);
    let stored = secret.clone();
    with_record_lock(&state, &app.name, || async {
        let mut record = reload(&state, &app.name).await?;
        record.webhook_secret = Some(Secret::new(stored));
        state.store.update_app(&record).await?;
        Ok(())
    })
    .await?;
    tracing::info!(app = %app.name, "webhook key replaced");
    Ok((
        StatusCode::CREATED,
        Json(Data {
            data: json!({
                "secret": secret,
                "path": format!("/hooks/github/{}", app.name),
                "content_type": "application/json",
                "events": ["push"],
            }),
        }),
    ))
}

/// `DELETE /api/apps/NAME/webhook`: forgets the key; deliveries are refused from now on.
pub async fn remove(
    State(state): State<ApiState>,
    access: AppAccess,
) -> Result<Json<Data<Value>>, ApiError> {
    let app = access.app;
    with_record_lock(&state, &app.name, || async {
        let mut record = reload(&state, &app.name).await?;
        record.webhook_secret = None;
        state.store.update_app(&record).await?;
        Ok(())
    })
    .await?;
    tracing::info!(app = %app.name, "webhook turned off");
    Ok(Json(Data { data: json!({}) }))
}
