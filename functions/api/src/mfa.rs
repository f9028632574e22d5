//! A second factor for login: TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, as every
//! authenticator app reads an `otpauth://` URL), and ten single-use recovery codes.
//!
//! `POST /api/mfa/start` makes a secret (not yet active); `POST /api/mfa/verify` with a
//! code from it activates it and answers the recovery codes; from then on login needs
//! `mfa_token` (a code, or a recovery code, each good once). A code is accepted one step
//! either side of now, and never twice.

use axum::extract::State;
use axum::Json;
use chrono::Utc;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared::domain::Secret;
use shared::model::{Mfa, User};
use totp_rs::{Algorithm, TOTP};

use crate::auth::AuthUser;
use crate::error::{ApiError, ApiJson};
use crate::ApiState;

/// Recovery codes issued at once.
pub const RECOVERY_CODES: usize = 10;
/// The issuer an authenticator app shows.
const ISSUER: &str = "GIGALIXIR-PaaS";

fn totp(user: &User, secret: &Secret) -> Result<TOTP, ApiError> {
    let raw = totp_rs::Secret::Encoded(secret.expose().to_owned())
        .to_bytes()
        .map_err(|e| ApiError::internal(&std::io::Error::other(format!("{e:?}"))))?;
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        30,
        raw,
        Some(ISSUER.into()),
        user.email.to_string(),
    )
    .map_err(|e| ApiError::internal(&std::io::Error::other(e.to_string())))
}

/// The time step `code` belongs to (now, or one either side), if it is right for `mfa`
/// and newer than the last one accepted.
fn code_step(user: &User, mfa: &Mfa, code: &str) -> Result<Option<u64>, ApiError> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let totp = totp(user, &mfa.secret)?;
    let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
    let step = now / 30;
    for candidate in [step.saturating_sub(1), step, step + 1] {
        if candidate > mfa.last_step && totp.generate(candidate * 30) == code {
            return Ok(Some(candidate));
        }
    }
    Ok(None)
}

fn recovery_hash(code: &str) -> String {
    hex::encode(Sha256::digest(code.trim().to_ascii_lowercase().as_bytes()))
}

/// New recovery codes (`xxxx-xxxx-xxxx`), and their hashes to store.
fn new_recovery_codes() -> (Vec<String>, Vec<String>) {
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 6];
            OsRng.fill_bytes(&mut bytes);
            let h = hex::encode(bytes);
            format!("{}-{}-{}", &h[0..4], &h[4..8], &h[8..12])
        })
        .collect();
    let hashes = codes.iter().map(|c| recovery_hash(c)).collect();
    (codes, hashes)
}

/// Whether `token` is a second factor of `user`'s active MFA; spends it (the caller stores
/// the user). Users without MFA need none.
pub fn spend(user: &mut User, token: &str) -> Result<bool, ApiError> {
    let snapshot = user.clone();
    let Some(mfa) = user.mfa.as_mut().filter(|m| m.active) else {
        return Ok(true);
    };
    if let Some(step) = code_step(&snapshot, mfa, token)? {
        mfa.last_step = step;
        return Ok(true);
    }
    let hash = recovery_hash(token);
    if let Some(i) = mfa.recovery_codes.iter().position(|h| *h == hash) {
        mfa.recovery_codes.remove(i);
        return Ok(true);
    }
    Ok(false)
}

/// `POST /api/mfa/start`: a new secret for the account, not yet active; its `otpauth://`
/// URL (the CLI shows it as a QR code) and the secret itself.
pub async fn start(
    State(state): State<ApiState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Value>, ApiError> {
    if user.mfa.as_ref().is_some_and(|m| m.active) {
        return Err(ApiError::invalid(
            "mfa",
            "is already active: deactivate it first (`gigalixir account:mfa:deactivate`)",
        ));
    }
    let mut raw = [0u8; 20];
    OsRng.fill_bytes(&mut raw);
    let secret = Secret::new(totp_rs::Secret::Raw(raw.to_vec()).to_encoded().to_string());
    let url = totp(&user, &secret)?.get_url();
    let id = user.id.clone();
    let stored = secret.clone();
    crate::apps::with_account_lock(&state, &id, || async {
        let mut user = state.store.user(&id).await?;
        user.mfa = Some(Mfa {
            secret: stored,
            active: false,
            recovery_codes: Vec::new(),
            last_step: 0,
        });
        state.store.update_user(&user).await?;
        Ok(())
    })
    .await?;
    Ok(Json(json!({"data": {
        "message": "Add this account to your authenticator app (the QR code, or the otpauth:// URL or its secret), then enter the code it shows.",
        "url": url,
        "secret": secret.expose(),
    }})))
}

/// `POST /api/mfa/verify` `{"mfa_token"}`.
#[derive(Debug, Deserialize)]
pub struct Verify {
    mfa_token: String,
}

/// Activates the started secret with a code from it; answers the recovery codes (shown
/// once, stored hashed).
pub async fn verify(
    State(state): State<ApiState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<Verify>,
) -> Result<Json<Value>, ApiError> {
    let id = user.id.clone();
    let codes = crate::apps::with_account_lock(&state, &id, || async {
        let mut user = state.store.user(&id).await?;
        let snapshot = user.clone();
        let Some(mfa) = user.mfa.as_mut().filter(|m| !m.active) else {
            return Err(ApiError::invalid(
                "mfa_token",
                "nothing to verify: start with `gigalixir account:mfa:activate`",
            ));
        };
        let Some(step) = code_step(&snapshot, mfa, &body.mfa_token)? else {
            return Err(ApiError::invalid("mfa_token", "is not the current code"));
        };
        let (codes, hashes) = new_recovery_codes();
        mfa.active = true;
        mfa.last_step = step;
        mfa.recovery_codes = hashes;
        state.store.update_user(&user).await?;
        Ok(codes)
    })
    .await?;
    tracing::info!(user = %id, "mfa activated");
    Ok(Json(json!({"data": {
        "message": "Multi-factor authentication is active: login asks for a code from now on.",
        "recovery_codes": codes,
    }})))
}

/// `DELETE /api/mfa`: login needs the password alone again.
pub async fn deactivate(
    State(state): State<ApiState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Value>, ApiError> {
    let id = user.id.clone();
    crate::apps::with_account_lock(&state, &id, || async {
        let mut user = state.store.user(&id).await?;
        user.mfa = None;
        state.store.update_user(&user).await?;
        Ok(())
    })
    .await?;
    tracing::info!(user = %id, "mfa deactivated");
    Ok(Json(
        json!({"data": {"message": "Multi-factor authentication is deactivated."}}),
    ))
}

/// `POST /api/mfa/recovery_codes`: new recovery codes; the old ones stop working.
pub async fn regenerate(
    State(state): State<ApiState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Value>, ApiError> {
    let id = user.id.clone();
    let codes = crate::apps::with_account_lock(&state, &id, || async {
        let mut user = state.store.user(&id).await?;
        let Some(mfa) = user.mfa.as_mut().filter(|m| m.active) else {
            return Err(ApiError::invalid("mfa", "is not active"));
        };
        let (codes, hashes) = new_recovery_codes();
        mfa.recovery_codes = hashes;
        state.store.update_user(&user).await?;
        Ok(codes)
    })
    .await?;
    Ok(Json(json!({"data": {"recovery_codes": codes}})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::domain::Email;

    fn with_mfa() -> (User, TOTP) {
        let mut user = User::new(
            Email::parse("ada@example.com").expect("email"),
            Secret::new("x"),
        );
        let secret = Secret::new(totp_rs::Secret::Raw(vec![7u8; 20]).to_encoded().to_string());
        let totp = totp(&user, &secret).expect("totp");
        let (_, hashes) = new_recovery_codes();
        user.mfa = Some(Mfa {
            secret,
            active: true,
            recovery_codes: hashes,
            last_step: 0,
        });
        (user, totp)
    }

    #[test]
    fn a_code_works_once_and_a_wrong_one_never() {
        let (mut user, totp) = with_mfa();
        let code = totp.generate_current().expect("code");
        assert!(!spend(&mut user, "000000x").expect("spend"));
        assert!(spend(&mut user, &code).expect("spend"));
        assert!(!spend(&mut user, &code).expect("spend"), "replayed");
        let url = totp.get_url();
        assert!(url.starts_with("otpauth://totp/"), "{url}");
    }

    #[test]
    fn recovery_codes_work_once_each() {
        let (mut user, _) = with_mfa();
        let (codes, hashes) = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        if let Some(mfa) = user.mfa.as_mut() {
            mfa.recovery_codes = hashes;
        }
        assert!(spend(&mut user, &codes[3].to_uppercase()).expect("spend"));
        assert!(!spend(&mut user, &codes[3]).expect("spend"));
        assert!(spend(&mut user, &codes[4]).expect("spend"));
    }
}
