//! Accounts and API keys: sign-up, login, account info, key reset.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use shared::domain::{Email, Password};
use shared::model::User;
use shared::wire::{Data, KeyView, NewUser, UserView};

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
        email_confirmed: user.confirmed,
        mfa_active: user.mfa.as_ref().is_some_and(|m| m.active),
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
    let user = User::new(email, hash_password(password).await?);
    let user = crate::accounts::created(&state, user).await?;
    tracing::info!(user = %user.id, confirmed = user.confirmed, "account created");
    Ok((StatusCode::CREATED, Json(Data { data: view(&user) })))
}

/// The second factor of a login, as GIGALIXIR's CLI sends it.
#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    mfa_token: Option<String>,
}

/// `GET /api/login` with Basic `email:password`: issues a new API key; the account's other
/// keys stay valid, so other machines stay logged in. 403 while the email is unconfirmed
/// (where the platform confirms emails); with MFA active, 303 without `mfa_token` (the
/// official CLI then asks for it) and 401 for a wrong one.
pub async fn login(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    Query(query): Query<LoginQuery>,
    headers: HeaderMap,
) -> Result<Json<Data<KeyView>>, ApiError> {
    let basic = BasicAuth::from_headers(&headers).ok_or_else(ApiError::unauthorized)?;
    let user = password_user(&state, &basic, address).await?;
    if state.accounts.confirm_email && !user.confirmed {
        return Err(crate::accounts::unconfirmed());
    }
    if user.mfa.as_ref().is_some_and(|m| m.active) {
        let Some(token) = query.mfa_token.filter(|t| !t.trim().is_empty()) else {
            return Err(ApiError::new(
                StatusCode::SEE_OTHER,
                "Multi-factor authentication token required: log in with `-t TOKEN`.",
            ));
        };
        // A wrong code counts as a failed login: 6 digits are not many to guess.
        if let Some(wait) = crate::limits::attempt(Some(user.email.as_str()), address) {
            return Err(ApiError::too_many(wait));
        }
        let id = user.id.clone();
        let ok = crate::apps::with_account_lock(&state, &id, || async {
            let mut user = state.store.user(&id).await?;
            let ok = crate::mfa::spend(&mut user, &token)?;
            if ok {
                state.store.update_user(&user).await?;
            }
            Ok(ok)
        })
        .await?;
        if !ok {
            return Err(ApiError::unauthorized());
        }
        crate::limits::succeeded(user.email.as_str(), address);
    }
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
