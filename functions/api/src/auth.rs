//! HTTP Basic credentials, password hashing and API key issue/check.
//!
//! Every route but sign-up and login authenticates with `email:api_key`. GIGALIXIR's CLI
//! percent-encodes both parts of its login credentials, so each part is tried as sent and,
//! if different, percent-decoded.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{Duration, Utc};
use rand::rngs::OsRng;
use rand::RngCore;
use shared::auth::AuthError;
use shared::domain::{ApiKey, Password, Secret};
use shared::model::{ApiKeyRecord, User, API_KEY_LIFETIME_DAYS};
use shared::PortError;

use crate::error::ApiError;
use crate::ApiState;

pub use shared::auth::BasicAuth;

/// The caller, authenticated by `email:api_key`.
pub struct AuthUser(pub User);

impl FromRequestParts<ApiState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        match shared::auth::user_from_api_key(&*state.store, &parts.headers).await {
            Ok(user) => Ok(AuthUser(user)),
            Err(AuthError::Unauthorized) => Err(ApiError::unauthorized()),
            Err(AuthError::Store(err)) => Err(err.into()),
        }
    }
}

/// Hashes a new password (argon2id, random salt), off the async threads.
pub async fn hash_password(password: Password) -> Result<Secret, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| Secret::new(h.to_string()))
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
    .map_err(|e| ApiError::internal(&std::io::Error::other(e.to_string())))
}

/// A hash nobody's password matches, verified against when the email is unknown so that
/// both failures take the same time.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3Xf7i5ltG2J0A8m5T7r6Vx0tgS2yQ3U0C8lXcKQx0lU";

/// Checks `password` against a stored hash, off the async threads.
pub async fn verify_password(hash: Option<&Secret>, password: &[String]) -> bool {
    let hash = hash.map_or(DECOY_HASH.to_owned(), |h| h.expose().to_owned());
    let real = hash != DECOY_HASH;
    let candidates = password.to_vec();
    let ok = tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        candidates.iter().any(|p| {
            Argon2::default()
                .verify_password(p.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false);
    ok && real
}

/// The user whose `email:password` these are, or 401.
pub async fn password_user(state: &ApiState, basic: &BasicAuth) -> Result<User, ApiError> {
    let email = basic.email().ok_or_else(ApiError::unauthorized)?;
    let user = match state.store.user_by_email(&email).await {
        Ok(user) => Some(user),
        Err(PortError::NotFound) => None,
        Err(err) => return Err(err.into()),
    };
    if verify_password(user.as_ref().map(|u| &u.password_hash), basic.secrets()).await {
        user.ok_or_else(ApiError::unauthorized)
    } else {
        Err(ApiError::unauthorized())
    }
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A new API key for `user`: 256 random bits, valid for a year. The record holds its hash.
pub fn new_api_key(user: &User) -> (ApiKey, ApiKeyRecord) {
    let key = ApiKey::new(random_hex(32));
    let now = Utc::now();
    let record = ApiKeyRecord {
        hash: key.hash(),
        user: user.id.clone(),
        created_at: now,
        expires_at: now + Duration::days(API_KEY_LIFETIME_DAYS),
    };
    (key, record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let hash = hash_password(Password::given("correct horse"))
            .await
            .expect("hash");
        assert!(hash.expose().starts_with("$argon2id$"));
        assert!(verify_password(Some(&hash), &["correct horse".into()]).await);
        assert!(!verify_password(Some(&hash), &["wrong".into()]).await);
        assert!(!verify_password(None, &["anything".into()]).await);
    }
}
