//! HTTP Basic credentials, password hashing and API key issue/check.
//!
//! Every route but sign-up and login authenticates with `email:api_key`. GIGALIXIR's CLI
//! percent-encodes both parts of its login credentials, so each part is tried as sent and,
//! if different, percent-decoded.

use std::cell::RefCell;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

thread_local! {
    /// The Argon2 memory of a hashing thread (19 MiB with the default parameters), kept
    /// from one hash to the next rather than allocated and freed each time.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// The most Argon2 memory a stored hash may ask for (64 MiB).
const MAX_BLOCKS: usize = 64 * 1024;

/// Argon2 of `password` and `salt` into `out`, in this thread's kept memory.
fn argon2_into(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let need = argon.params().block_count();
    if need > MAX_BLOCKS {
        return Err(argon2::Error::MemoryTooMuch);
    }
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < need {
            memory.resize(need, Block::default());
        }
        argon.hash_password_into_with_memory(password, salt, out, &mut memory[..need])
    })
}

/// A PHC string of `password` with a random salt (argon2id, the default parameters).
fn phc_hash(password: &[u8]) -> Result<String, argon2::password_hash::Error> {
    let argon = Argon2::default();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.as_salt().decode_b64(&mut salt_bytes)?;
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        Ok(argon2_into(&argon, password, salt_raw, out)?)
    })?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params())?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `stored` (compared in constant time).
fn phc_verify(stored: &str, password: &[u8]) -> Result<bool, argon2::password_hash::Error> {
    let parsed = PasswordHash::new(stored)?;
    let algorithm = Algorithm::try_from(parsed.algorithm)?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let argon = Argon2::new(algorithm, version, Params::try_from(&parsed)?);
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Ok(false);
    };
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes)?;
    let computed = Output::init_with(expected.len(), |out| {
        Ok(argon2_into(&argon, password, salt_raw, out)?)
    })?;
    Ok(computed == expected)
}

/// Hashes a new password (argon2id, random salt), on a hashing thread.
pub async fn hash_password(password: Password) -> Result<Secret, ApiError> {
    crate::limits::hashing(move || phc_hash(password.expose().as_bytes()).map(Secret::new))
        .await
        .ok_or_else(ApiError::busy)?
        .map_err(|e| ApiError::internal(&std::io::Error::other(e.to_string())))
}

/// A hash nobody's password matches, verified against when the email is unknown so that
/// both failures take the same time.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3Xf7i5ltG2J0A8m5T7r6Vx0tgS2yQ3U0C8lXcKQx0lU";

/// Checks `password` against a stored hash, on a hashing thread; 503 when too many
/// checks wait.
pub async fn verify_password(hash: Option<&Secret>, password: &[String]) -> Result<bool, ApiError> {
    let hash = hash.map_or(DECOY_HASH.to_owned(), |h| h.expose().to_owned());
    let real = hash != DECOY_HASH;
    let candidates = password.to_vec();
    let ok = crate::limits::hashing(move || {
        candidates
            .iter()
            .any(|p| phc_verify(&hash, p.as_bytes()).unwrap_or(false))
    })
    .await
    .ok_or_else(ApiError::busy)?;
    Ok(ok && real)
}

/// The user whose `email:password` these are, or 401; 429 after repeated failures from
/// `address` ([`crate::limits`]).
pub async fn password_user(
    state: &ApiState,
    basic: &BasicAuth,
    address: Option<std::net::IpAddr>,
) -> Result<User, ApiError> {
    let email = basic.email().ok_or_else(ApiError::unauthorized)?;
    if let Some(wait) = crate::limits::attempt(Some(email.as_str()), address) {
        return Err(ApiError::too_many(wait));
    }
    let user = match state.store.user_by_email(&email).await {
        Ok(user) => Some(user),
        Err(PortError::NotFound) => None,
        Err(err) => return Err(err.into()),
    };
    if verify_password(user.as_ref().map(|u| &u.password_hash), basic.secrets()).await? {
        crate::limits::succeeded(email.as_str(), address);
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

    #[test]
    fn hashes_are_the_standard_phc_strings_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::generate(&mut OsRng);
        let standard = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .expect("hash")
            .to_string();
        assert!(phc_verify(&standard, b"correct horse").expect("verify"));
        assert!(!phc_verify(&standard, b"wrong").expect("verify"));
        let ours = phc_hash(b"battery staple").expect("hash");
        let parsed = PasswordHash::new(&ours).expect("parse");
        assert!(Argon2::default()
            .verify_password(b"battery staple", &parsed)
            .is_ok());
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
    }

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let hash = hash_password(Password::given("correct horse"))
            .await
            .expect("hash");
        assert!(hash.expose().starts_with("$argon2id$"));
        assert!(verify_password(Some(&hash), &["correct horse".into()])
            .await
            .expect("a hashing slot"));
        assert!(!verify_password(Some(&hash), &["wrong".into()])
            .await
            .expect("a hashing slot"));
        assert!(!verify_password(None, &["anything".into()])
            .await
            .expect("a hashing slot"));
    }
}
