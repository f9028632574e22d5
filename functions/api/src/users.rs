//! Accounts and API keys: sign-up, login, account info, key reset.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use shared::domain::{Email, Password, UserId};
use shared::model::User;
use shared::wire::{Data, KeyView, NewUser, UserView};
use shared::PortError;

use crate::auth::{
    hash_password, new_api_key, password_user, verify_password, AuthUser, BasicAuth,
};
use crate::error::{ApiError, ApiJson};
use crate::limits::ClientAddress;
use crate::ApiState;

fn view(user: &User) -> UserView {
    UserView {
        email: user.email.to_string(),
        tier: "FREE".into(),
        credit_cents: 0,
        created_at: user.created_at,
    }
}

/// `POST /api/users`: creates an account. 201 with the account, 422 on a bad email, a weak
/// password or an email already registered; 429 after many from one address (each costs
/// a password hash).
pub async fn create(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<Data<UserView>>), ApiError> {
    let email = Email::parse(&body.email).map_err(|e| ApiError::invalid("email", e.0))?;
    let password = Password::new_for_account(&body.password)
        .map_err(|e| ApiError::invalid("password", e.0))?;
    if let Some(wait) = crate::limits::attempt(None, address) {
        return Err(ApiError::too_many(wait));
    }
    let user = User {
        id: UserId::random(),
        email,
        password_hash: hash_password(password).await?,
        created_at: Utc::now(),
    };
    match state.store.create_user(&user).await {
        Ok(()) => {
            tracing::info!(user = %user.id, "account created");
            Ok((StatusCode::CREATED, Json(Data { data: view(&user) })))
        }
        Err(PortError::AlreadyExists) => Err(ApiError::invalid("email", "has already been taken")),
        Err(err) => Err(err.into()),
    }
}

/// `GET /api/login` with Basic `email:password`: issues a new API key; the account's other
/// keys stay valid, so other machines stay logged in.
pub async fn login(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
) -> Result<Json<Data<KeyView>>, ApiError> {
    let basic = BasicAuth::from_headers(&headers).ok_or_else(ApiError::unauthorized)?;
    let user = password_user(&state, &basic, address).await?;
    let (key, record) = new_api_key(&user);
    state.store.add_api_key(&record).await?;
    tracing::info!(user = %user.id, "logged in");
    Ok(Json(Data {
        data: KeyView {
            key: key.expose().to_owned(),
            expires_at: record.expires_at,
        },
    }))
}

/// `GET /api/users`: the caller's account.
pub async fn account(AuthUser(user): AuthUser) -> Json<Data<UserView>> {
    Json(Data { data: view(&user) })
}

/// The current password, from the query (GIGALIXIR's CLI) or a JSON body (ours).
#[derive(Debug, Default, Deserialize)]
pub struct CurrentPassword {
    current_password: Option<String>,
}

/// `POST /api/api_keys/regenerate?current_password=…`: revokes every key of the account
/// and issues one new key. Needs the password as well as a valid key.
pub async fn regenerate(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    AuthUser(user): AuthUser,
    Query(query): Query<CurrentPassword>,
    body: Bytes,
) -> Result<(StatusCode, Json<Data<KeyView>>), ApiError> {
    let from_body = || {
        serde_json::from_slice::<CurrentPassword>(&body)
            .ok()
            .and_then(|b| b.current_password)
    };
    let password = query
        .current_password
        .or_else(from_body)
        .ok_or_else(|| ApiError::invalid("current_password", "is required"))?;
    // The same limits as a login: each check costs a hash.
    if let Some(wait) = crate::limits::attempt(Some(user.email.as_str()), address) {
        return Err(ApiError::too_many(wait));
    }
    if !verify_password(Some(&user.password_hash), &[password]).await? {
        return Err(ApiError::unauthorized());
    }
    crate::limits::succeeded(user.email.as_str(), address);
    let (key, record) = new_api_key(&user);
    state.store.replace_api_keys(&record).await?;
    tracing::info!(user = %user.id, "api keys reset");
    Ok((
        StatusCode::CREATED,
        Json(Data {
            data: KeyView {
                key: key.expose().to_owned(),
                expires_at: record.expires_at,
            },
        }),
    ))
}
