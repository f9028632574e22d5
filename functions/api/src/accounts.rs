//! Accounts beyond sign-up and login: email confirmation, password reset and change, a new
//! email, destroying the account, and GIGALIXIR's step-by-step sign-up (`POST
//! /api/signup`, as its CLI's `signup` drives it).
//!
//! One-time tokens are 10 characters of Crockford's base32 (50 bits), mailed to the
//! address they prove, stored only as SHA-256 hashes in the account's record, spent when
//! used, void after their lifetime or after [`MAX_GUESSES`] wrong guesses. A token given
//! without its sign-up session goes with the account's id: `ID.TOKEN`.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Duration, Utc};
use rand::rngs::OsRng;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared::domain::{Email, Password, Secret, UserId};
use shared::model::{ApiKeyRecord, TokenPurpose, User, UserToken};
use shared::PortError;

use crate::auth::{hash_password, new_api_key, verify_password, AuthUser, BasicAuth};
use crate::error::{ApiError, ApiJson};
use crate::limits::ClientAddress;
use crate::ApiState;

/// Wrong guesses a token survives.
pub const MAX_GUESSES: u32 = 5;
/// How long a confirmation (sign-up, new email) token lives.
pub const CONFIRM_HOURS: i64 = 24;
/// How long a password reset token lives.
pub const RESET_HOURS: i64 = 1;
/// The password hash of an account that has none yet (a sign-up in progress): no password
/// matches it.
pub const NO_PASSWORD: &str = "!";

const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new token's text.
fn new_token() -> String {
    let mut rng = OsRng;
    (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A token as typed: case, spaces and dashes do not matter; I, L and O read as 1, 1, 0.
fn normalise(token: &str) -> String {
    token
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| match c.to_ascii_uppercase() {
            'I' | 'L' => '1',
            'O' => '0',
            c => c,
        })
        .collect()
}

/// Hex SHA-256 of a token's normalised text.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(normalise(token).as_bytes()))
}

fn same_kind(a: &TokenPurpose, b: &TokenPurpose) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Gives `user` a new token for `purpose` (replacing one of the same kind); returns its
/// text, to be mailed and never stored.
fn issue(user: &mut User, purpose: TokenPurpose, hours: i64) -> String {
    let token = new_token();
    user.tokens.retain(|t| !same_kind(&t.purpose, &purpose));
    user.tokens.push(UserToken {
        purpose,
        hash: token_hash(&token),
        expires_at: Utc::now() + Duration::hours(hours),
        failures: 0,
    });
    token
}

/// Spends the token `given` if it is `user`'s, unexpired, of one of the `kinds`: its
/// purpose. A wrong guess counts against every such token (and voids it at
/// [`MAX_GUESSES`]). The caller stores `user` either way.
fn spend(user: &mut User, kinds: &[TokenPurpose], given: &str) -> Option<TokenPurpose> {
    let now = Utc::now();
    user.tokens.retain(|t| t.expires_at > now);
    let hash = token_hash(given);
    let found = user.tokens.iter().position(|t| {
        kinds.iter().any(|k| same_kind(k, &t.purpose))
            && constant_time_eq(t.hash.as_bytes(), hash.as_bytes())
    });
    match found {
        Some(i) => Some(user.tokens.remove(i).purpose),
        None => {
            for t in user
                .tokens
                .iter_mut()
                .filter(|t| kinds.iter().any(|k| same_kind(k, &t.purpose)))
            {
                t.failures += 1;
            }
            user.tokens.retain(|t| t.failures < MAX_GUESSES);
            None
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `ID.TOKEN` split, or `None`.
fn split_token(raw: &str) -> Option<(UserId, &str)> {
    let (id, token) = raw.trim().split_once('.')?;
    (!id.is_empty() && !token.is_empty()).then(|| (UserId(id.to_owned()), token))
}

fn bad_token() -> ApiError {
    ApiError::invalid(
        "token",
        "is invalid, already used or expired: ask for a new one",
    )
}

/// Runs `change` on the account `id` under the account's lock, and stores what it leaves
/// (whatever it answers: a wrong guess is counted too).
async fn with_user<T>(
    state: &ApiState,
    id: &UserId,
    change: impl FnOnce(&mut User) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    crate::apps::with_account_lock(state, id, || async {
        let mut user = match state.store.user(id).await {
            Ok(user) => user,
            Err(PortError::NotFound) => return Err(bad_token()),
            Err(err) => return Err(err.into()),
        };
        let answer = change(&mut user);
        match state.store.update_user(&user).await {
            Ok(()) => answer,
            Err(PortError::AlreadyExists) => Err(ApiError::invalid(
                "email",
                "has been taken meanwhile: choose another",
            )),
            Err(err) => Err(err.into()),
        }
    })
    .await
}

/// The platform's address, for links.
fn link(state: &ApiState, path: &str, token: &str) -> String {
    format!(
        "{}{path}?token={token}",
        state.accounts.public_url.trim_end_matches('/')
    )
}

/// Mails `to`, limited per recipient: 429 when it must wait.
async fn mail(
    state: &ApiState,
    to: &str,
    subject: &str,
    body: String,
    what: &str,
) -> Result<(), ApiError> {
    if let Some(wait) = crate::limits::mail_attempt(to) {
        return Err(ApiError::too_many(wait));
    }
    state
        .accounts
        .mailer
        .send(to, subject, body, what)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, what, "mail not sent");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The mail could not be sent; try again in a while.",
            )
        })
}

/// The confirmation mail's text: the code (typed into `signup`), the link, the command.
fn confirmation_body(state: &ApiState, user: &User, token: &str) -> String {
    let full = format!("{}.{token}", user.id);
    format!(
        "Welcome!\n\nYour confirmation code: {token}\n\n\
         Or open this link to confirm {email}:\n{url}\n\n\
         or run: gigalixir account:confirm --token {full}\n\n\
         It works once, for {CONFIRM_HOURS} hours. If you did not sign up, ignore this mail.\n",
        email = user.email,
        url = link(state, "/api/users/confirm", &full),
    )
}

/// Mails `user` a new confirmation token (the caller stores the user).
async fn send_confirmation(state: &ApiState, user: &mut User) -> Result<(), ApiError> {
    let token = issue(user, TokenPurpose::Confirm, CONFIRM_HOURS);
    let body = confirmation_body(state, user, &token);
    mail(
        state,
        user.email.as_str(),
        "Confirm your email",
        body,
        "confirmation",
    )
    .await
}

/// Creates an account from `POST /api/users` (ours): confirmed at once when the platform
/// does not confirm emails, else unconfirmed with a confirmation mailed.
pub async fn created(state: &ApiState, mut user: User) -> Result<User, ApiError> {
    user.confirmed = !state.accounts.confirm_email;
    let token = (!user.confirmed).then(|| issue(&mut user, TokenPurpose::Confirm, CONFIRM_HOURS));
    state.store.create_user(&user).await.map_err(taken)?;
    if let Some(token) = token {
        let body = confirmation_body(state, &user, &token);
        mail(
            state,
            user.email.as_str(),
            "Confirm your email",
            body,
            "confirmation",
        )
        .await?;
    }
    Ok(user)
}

fn taken(err: PortError) -> ApiError {
    match err {
        PortError::AlreadyExists => ApiError::invalid("email", "has already been taken"),
        err => err.into(),
    }
}

/// What login says to an account whose email is not confirmed.
pub fn unconfirmed() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "Confirm your email first: open the link in the mail we sent (resend it with `gigalixir account:confirmation:resend`).",
    )
}

/// A token, from the query (a link) or the body (`account:confirm`).
#[derive(Debug, Default, Deserialize)]
pub struct TokenBody {
    token: Option<String>,
}

/// Spends a confirmation or new-email token: the account is confirmed, or moves to its
/// new email.
async fn confirm_token(state: &ApiState, raw: &str) -> Result<String, ApiError> {
    let (id, token) = split_token(raw).ok_or_else(bad_token)?;
    let kinds = [
        TokenPurpose::Confirm,
        TokenPurpose::Email {
            next: Email::parse("x@example.com").map_err(|_| bad_token())?,
        },
    ];
    let message = with_user(state, &id, |user| match spend(user, &kinds, token) {
        Some(TokenPurpose::Confirm) => {
            user.confirmed = true;
            Ok(format!("{} is confirmed: you can log in now.", user.email))
        }
        Some(TokenPurpose::Email { next }) => {
            user.email = next;
            user.confirmed = true;
            Ok(format!("Your account's email is now {}.", user.email))
        }
        _ => Err(bad_token()),
    })
    .await?;
    tracing::info!(user = %id, "email confirmed");
    Ok(message)
}

/// `GET /api/users/confirm?token=…`: the link in a confirmation mail.
pub async fn confirm_link(
    State(state): State<ApiState>,
    Query(query): Query<TokenBody>,
) -> Response {
    match confirm_token(&state, query.token.as_deref().unwrap_or_default()).await {
        Ok(message) => (StatusCode::OK, format!("{message}\n")).into_response(),
        Err(err) => (
            err.status(),
            "This link is invalid, already used or expired. Ask for a new one with `gigalixir account:confirmation:resend`.\n",
        )
            .into_response(),
    }
}

/// `POST /api/users/confirm` `{"token"}` (`account:confirm`).
pub async fn confirm(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<Json<Value>, ApiError> {
    let message = confirm_token(&state, body.token.as_deref().unwrap_or_default()).await?;
    Ok(Json(json!({"data": {"message": message}})))
}

/// An email in a body.
#[derive(Debug, Deserialize)]
pub struct EmailBody {
    email: String,
}

const SENT_IF_KNOWN: &str = "If an account has this email, a mail is on its way.";

/// The account of an email given by someone who is not logged in: `None` when there is
/// none (the answer must not tell).
async fn user_of(state: &ApiState, raw: &str) -> Result<Option<User>, ApiError> {
    let Ok(email) = Email::parse(raw) else {
        return Ok(None);
    };
    match state.store.user_by_email(&email).await {
        Ok(user) => Ok(Some(user)),
        Err(PortError::NotFound) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// `PUT /api/users/reconfirm_email` `{"email"}` (`account:confirmation:resend`): a new
/// confirmation mail for an unconfirmed account. The same answer whatever the email.
pub async fn resend(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<EmailBody>,
) -> Result<Json<Value>, ApiError> {
    if let Some(wait) = crate::limits::attempt(None, address) {
        return Err(ApiError::too_many(wait));
    }
    if let Some(user) = user_of(&state, &body.email).await? {
        if !user.confirmed {
            let id = user.id.clone();
            let mut sent = None;
            crate::apps::with_account_lock(&state, &id, || async {
                let mut user = state.store.user(&id).await?;
                sent = Some(send_confirmation(&state, &mut user).await);
                state.store.update_user(&user).await?;
                Ok(())
            })
            .await?;
            if let Some(Err(err)) = sent {
                if err.status() != StatusCode::TOO_MANY_REQUESTS {
                    return Err(err);
                }
            }
        }
    }
    Ok(Json(json!({"data": {"message": SENT_IF_KNOWN}})))
}

/// `PUT /api/users/reset_password` `{"email"}` (`account:password:reset`): mails a reset
/// token. The same answer whether the email has an account or not.
pub async fn reset_request(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<EmailBody>,
) -> Result<Json<Value>, ApiError> {
    if let Some(wait) = crate::limits::attempt(None, address) {
        return Err(ApiError::too_many(wait));
    }
    if let Some(user) = user_of(&state, &body.email).await? {
        let id = user.id.clone();
        let token = crate::apps::with_account_lock(&state, &id, || async {
            let mut user = state.store.user(&id).await?;
            let token = issue(&mut user, TokenPurpose::Reset, RESET_HOURS);
            state.store.update_user(&user).await?;
            Ok(token)
        })
        .await?;
        let full = format!("{id}.{token}");
        let body = format!(
            "Someone asked to reset the password of {email}.\n\n\
             Set a new one with:\n  gigalixir account:password:set --token {full} --password NEW_PASSWORD\n\n\
             The token works once, for {RESET_HOURS} hour. If it was not you, ignore this mail: \
             your password stays as it is.\n",
            email = user.email,
        );
        match mail(
            &state,
            user.email.as_str(),
            "Reset your password",
            body,
            "reset",
        )
        .await
        {
            Ok(()) => tracing::info!(user = %id, "password reset mailed"),
            // Held back: the answer is the same, so that it tells nothing.
            Err(err) if err.status() == StatusCode::TOO_MANY_REQUESTS => {}
            Err(err) => return Err(err),
        }
    }
    Ok(Json(json!({"data": {"message": SENT_IF_KNOWN}})))
}

/// `POST /api/users/reset_password` `{"token", "password"}` (`account:password:set`).
#[derive(Debug, Deserialize)]
pub struct ResetBody {
    token: String,
    password: String,
}

/// Sets a new password with a reset token: every API key of the account is revoked, and
/// the email counts as confirmed (the mail reached it).
pub async fn reset(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<ResetBody>,
) -> Result<Json<Value>, ApiError> {
    let password = Password::new_for_account(&body.password)
        .map_err(|e| ApiError::invalid("password", e.0))?;
    let (id, token) = split_token(&body.token).ok_or_else(bad_token)?;
    let hash = hash_password(password).await?;
    with_user(&state, &id, |user| {
        match spend(user, &[TokenPurpose::Reset], token) {
            Some(_) => {
                user.password_hash = hash;
                user.confirmed = true;
                Ok(())
            }
            None => Err(bad_token()),
        }
    })
    .await?;
    revoke_keys(&state, &id, None).await?;
    tracing::info!(user = %id, "password reset");
    Ok(Json(
        json!({"data": {"message": "Password set. Log in again with `gigalixir login`."}}),
    ))
}

/// Revokes every API key of the account but `keep` (the caller's).
async fn revoke_keys(
    state: &ApiState,
    id: &UserId,
    keep: Option<ApiKeyRecord>,
) -> Result<(), ApiError> {
    let user = state.store.user(id).await?;
    // Replacing the keys with one that is then forgotten (or the caller's) revokes the rest.
    let record = keep.unwrap_or_else(|| new_api_key(&user).1);
    state.store.replace_api_keys(&record).await?;
    Ok(())
}

/// The API key the caller authenticated with, as a record to keep.
fn callers_key(headers: &HeaderMap, user: &User) -> Option<ApiKeyRecord> {
    let basic = BasicAuth::from_headers(headers)?;
    let key = basic.secrets().first()?;
    let now = Utc::now();
    Some(ApiKeyRecord {
        hash: shared::domain::ApiKey::new(key.clone()).hash(),
        user: user.id.clone(),
        created_at: now,
        expires_at: now + Duration::days(shared::model::API_KEY_LIFETIME_DAYS),
    })
}

/// `PATCH /api/users/change_password` `{"current_password", "new_password"}`.
#[derive(Debug, Deserialize)]
pub struct ChangePassword {
    current_password: String,
    new_password: String,
}

/// `account:password:change`: needs the current password; every other API key of the
/// account is revoked (the caller's stays).
pub async fn change_password(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<Json<Value>, ApiError> {
    check_password(&user, &body.current_password, address).await?;
    let password = Password::new_for_account(&body.new_password)
        .map_err(|e| ApiError::invalid("new_password", e.0))?;
    let hash = hash_password(password).await?;
    let id = user.id.clone();
    crate::apps::with_account_lock(&state, &id, || async {
        let mut user = state.store.user(&id).await?;
        user.password_hash = hash;
        state.store.update_user(&user).await?;
        Ok(())
    })
    .await?;
    // The caller's key stays valid: it was checked against the store just now.
    let key = callers_key(&headers, &user);
    revoke_keys(&state, &id, key).await?;
    tracing::info!(user = %id, "password changed");
    Ok(Json(
        json!({"data": {"message": "Password changed; every other API key of the account is revoked."}}),
    ))
}

/// 401 unless `given` is the account's password (429 after repeated failures).
async fn check_password(
    user: &User,
    given: &str,
    address: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    if let Some(wait) = crate::limits::attempt(Some(user.email.as_str()), address) {
        return Err(ApiError::too_many(wait));
    }
    if !verify_password(Some(&user.password_hash), &[given.to_owned()]).await? {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "The password is wrong.",
        ));
    }
    crate::limits::succeeded(user.email.as_str(), address);
    Ok(())
}

/// `POST /api/users/email` `{"next_email", "current_password"}`.
#[derive(Debug, Deserialize)]
pub struct NewEmail {
    next_email: String,
    current_password: String,
}

/// `account:email:set`: mails a confirmation to the new address; the account moves there
/// when it is confirmed (until then the old email stays).
pub async fn set_email(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<NewEmail>,
) -> Result<Json<Value>, ApiError> {
    let next = Email::parse(&body.next_email).map_err(|e| ApiError::invalid("next_email", e.0))?;
    check_password(&user, &body.current_password, address).await?;
    match state.store.user_by_email(&next).await {
        Ok(_) => return Err(ApiError::invalid("next_email", "has already been taken")),
        Err(PortError::NotFound) => {}
        Err(err) => return Err(err.into()),
    }
    let id = user.id.clone();
    let token = with_user(&state, &id, |user| {
        Ok(issue(
            user,
            TokenPurpose::Email { next: next.clone() },
            CONFIRM_HOURS,
        ))
    })
    .await?;
    let full = format!("{id}.{token}");
    let body = format!(
        "Open this link to make {next} the email of your account (now {old}):\n{url}\n\n\
         or run: gigalixir account:confirm --token {full}\n\n\
         It works once, for {CONFIRM_HOURS} hours. If you did not ask for this, ignore this mail.\n",
        old = user.email,
        url = link(&state, "/api/users/confirm", &full),
    );
    mail(
        &state,
        next.as_str(),
        "Confirm your new email",
        body,
        "email change",
    )
    .await?;
    tracing::info!(user = %id, "email change mailed");
    Ok(Json(
        json!({"data": {"message": "Confirmation email sent. Please check your email to continue."}}),
    ))
}

/// `DELETE /api/users/destroy` `{"email", "current_password", "destroy_apps"}`.
#[derive(Debug, Deserialize)]
pub struct DestroyBody {
    email: String,
    current_password: String,
    #[serde(default)]
    destroy_apps: bool,
}

/// `account:destroy`: needs the account's email and password. Refused while the account
/// owns apps, unless `destroy_apps` (our CLI's `-y`): then they are destroyed first.
pub async fn destroy(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<DestroyBody>,
) -> Result<Json<Value>, ApiError> {
    if Email::parse(&body.email).ok().as_ref() != Some(&user.email) {
        return Err(ApiError::invalid("email", "is not this account's email"));
    }
    check_password(&user, &body.current_password, address).await?;
    let apps = state.store.apps_of(&user.id).await?;
    if !apps.is_empty() && !body.destroy_apps {
        let names: Vec<String> = apps.iter().map(|a| a.name.to_string()).collect();
        return Err(ApiError::invalid(
            "email",
            format!(
                "the account owns {} app(s): {}. Destroy them first (`gigalixir apps:destroy -a APP`); this platform's own CLI destroys them with the account (`gigalixir account:destroy -y`)",
                names.len(),
                names.join(", ")
            ),
        ));
    }
    for app in &apps {
        crate::apps::destroy_app(&state, app).await?;
    }
    let memberships = state.store.memberships_of(&user.id).await?;
    match state.store.delete_user(&user.id).await {
        Ok(()) | Err(PortError::NotFound) => {}
        Err(err) => return Err(err.into()),
    }
    // The apps they collaborated on stop admitting their SSH keys.
    for member in memberships {
        crate::access::keys_changed(&state, &user.id, &member.app).await?;
    }
    tracing::info!(user = %user.id, apps = apps.len(), "account destroyed");
    Ok(Json(json!({"data": {"message": "Account destroyed."}})))
}

/// `POST /api/signup`: GIGALIXIR's sign-up, one step per request, tied together by the
/// `uuid` the first step answers (the new account's id).
#[derive(Debug, Default, Deserialize)]
pub struct SignupStep {
    uuid: Option<String>,
    email: Option<String>,
    confirmation_code: Option<String>,
    password: Option<String>,
    promo_code: Option<String>,
    tier: Option<String>,
    oauth: Option<String>,
    stripe_token: Option<String>,
    explanation: Option<String>,
}

/// The sign-up marker's token text: the marker is state, not a secret (the sign-up's
/// `uuid` is what only its starter knows), and only the sign-up's last step spends it.
const SIGNUP_MARKER: &str = "SIGNUP";

/// The steps: `{email}` mails a code (200 `{uuid}`); `{uuid, confirmation_code}` confirms
/// the email; `{uuid, password}` sets the first password; `{uuid, promo_code}` (none are
/// valid here); `{uuid, tier}` finishes with the account's first API key (`{email, key}`).
pub async fn signup(
    State(state): State<ApiState>,
    ClientAddress(address): ClientAddress,
    ApiJson(step): ApiJson<SignupStep>,
) -> Result<Json<Value>, ApiError> {
    if step.oauth.is_some() || step.stripe_token.is_some() || step.explanation.is_some() {
        return Err(ApiError::invalid(
            "signup",
            "sign-up by email is the only kind here (no OAuth, no cards, no reviews)",
        ));
    }
    if let (Some(raw), None) = (&step.email, &step.uuid) {
        return signup_start(&state, address, raw).await;
    }
    let id = UserId(step.uuid.clone().unwrap_or_default());
    let gone = || ApiError::invalid("uuid", "is not a sign-up in progress: start again");
    if let Some(code) = &step.confirmation_code {
        if let Some(wait) = crate::limits::attempt(None, address) {
            return Err(ApiError::too_many(wait));
        }
        with_user(&state, &id, |user| {
            match spend(user, &[TokenPurpose::Confirm], code) {
                Some(_) => {
                    user.confirmed = true;
                    Ok(())
                }
                None => Err(ApiError::invalid(
                    "confirmation_code",
                    "is wrong or expired",
                )),
            }
        })
        .await?;
        crate::limits::succeeded("", address);
        return Ok(Json(json!({"data": {}})));
    }
    let user = match state.store.user(&id).await {
        Ok(user) => user,
        Err(PortError::NotFound) => return Err(gone()),
        Err(err) => return Err(err.into()),
    };
    if !user.confirmed {
        return Err(ApiError::invalid(
            "confirmation_code",
            "the email is not confirmed yet",
        ));
    }
    if let Some(raw) = &step.password {
        if user.password_hash.expose() != NO_PASSWORD {
            return Err(gone());
        }
        let password =
            Password::new_for_account(raw).map_err(|e| ApiError::invalid("password", e.0))?;
        let hash = hash_password(password).await?;
        with_user(&state, &id, |user| {
            if user.password_hash.expose() != NO_PASSWORD {
                return Err(gone());
            }
            user.password_hash = hash;
            user.tokens.push(UserToken {
                purpose: TokenPurpose::Signup,
                hash: token_hash(SIGNUP_MARKER),
                expires_at: Utc::now() + Duration::hours(RESET_HOURS),
                failures: 0,
            });
            Ok(())
        })
        .await?;
        return Ok(Json(json!({"data": {}})));
    }
    if step.promo_code.is_some() {
        return Err(ApiError::invalid("promo_code", "is not valid here"));
    }
    if step.tier.is_some() {
        with_user(&state, &id, |user| {
            spend(user, &[TokenPurpose::Signup], SIGNUP_MARKER)
                .map(|_| ())
                .ok_or_else(gone)
        })
        .await?;
        let (key, record) = new_api_key(&user);
        state.store.add_api_key(&record).await?;
        tracing::info!(user = %id, "signed up");
        return Ok(Json(json!({"data": {
            "email": user.email.to_string(),
            "key": key.expose(),
        }})));
    }
    Err(ApiError::invalid(
        "signup",
        "give email, or uuid with one next step",
    ))
}

/// The first step: an unconfirmed account without a password, and a code mailed to it.
async fn signup_start(
    state: &ApiState,
    address: Option<std::net::IpAddr>,
    raw: &str,
) -> Result<Json<Value>, ApiError> {
    let email = Email::parse(raw).map_err(|e| ApiError::invalid("email", e.0))?;
    if let Some(wait) = crate::limits::attempt(None, address) {
        return Err(ApiError::too_many(wait));
    }
    let existing = match state.store.user_by_email(&email).await {
        Ok(user) if user.confirmed => {
            return Err(ApiError::invalid("email", "has already been taken"))
        }
        Ok(user) => Some(user),
        Err(PortError::NotFound) => None,
        Err(err) => return Err(err.into()),
    };
    let mut user = match existing {
        // Nobody has proved this address yet: whatever password was chosen for it goes,
        // so that someone who registered another's email cannot keep a way in once its
        // owner confirms it here.
        Some(mut user) => {
            user.password_hash = Secret::new(NO_PASSWORD);
            user.tokens.clear();
            user.mfa = None;
            user
        }
        None => {
            let user = User::new(email, Secret::new(NO_PASSWORD));
            state.store.create_user(&user).await.map_err(taken)?;
            user
        }
    };
    send_confirmation(state, &mut user).await?;
    state.store.update_user(&user).await?;
    Ok(Json(json!({"data": {"uuid": user.id.0}})))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn someone() -> User {
        User::new(
            Email::parse("ada@example.com").expect("email"),
            Secret::new(NO_PASSWORD),
        )
    }

    #[test]
    fn a_token_works_once_and_not_for_another_purpose() {
        let mut user = someone();
        let token = issue(&mut user, TokenPurpose::Reset, 1);
        assert_eq!(token.len(), 10);
        assert!(!user.tokens[0].hash.contains(&token));
        assert!(spend(&mut user, &[TokenPurpose::Confirm], &token).is_none());
        assert_eq!(
            spend(&mut user, &[TokenPurpose::Reset], &token.to_lowercase()),
            Some(TokenPurpose::Reset)
        );
        assert!(spend(&mut user, &[TokenPurpose::Reset], &token).is_none());
    }

    #[test]
    fn wrong_guesses_and_time_void_a_token() {
        let mut user = someone();
        let token = issue(&mut user, TokenPurpose::Confirm, 1);
        for _ in 0..MAX_GUESSES {
            assert!(spend(&mut user, &[TokenPurpose::Confirm], "WRONGWRONG").is_none());
        }
        assert!(spend(&mut user, &[TokenPurpose::Confirm], &token).is_none());
        let token = issue(&mut user, TokenPurpose::Confirm, 1);
        user.tokens[0].expires_at = Utc::now() - Duration::seconds(1);
        assert!(spend(&mut user, &[TokenPurpose::Confirm], &token).is_none());
        assert!(user.tokens.is_empty());
    }

    #[test]
    fn tokens_with_their_account_split_at_the_dot() {
        let (id, token) = split_token(" abc-1.TOKEN ").expect("split");
        assert_eq!((id.0.as_str(), token), ("abc-1", "TOKEN"));
        assert!(split_token("nodot").is_none());
        assert!(split_token(".x").is_none());
    }
}
