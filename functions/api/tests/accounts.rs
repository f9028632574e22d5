//! Accounts end to end through the API's router, with mail read from the outbox: email
//! confirmation, GIGALIXIR's step-by-step sign-up, password reset and change, a new email,
//! destroying an account, TOTP, and an app's activity.

mod common;

use axum::http::{Method, StatusCode};
use chrono::{Duration, Utc};
use common::{Api, ADA, BOB, SHA1, SHA2};

/// People of their own tests: mail is limited per recipient across the process.
const ROSE: &str = "rose@example.com";
const RITA: &str = "rita@example.com";
use serde_json::json;
use shared::domain::{AppName, Email};
use shared::model::ReleaseStatus;

/// The token a mail gives for `--token` (`ID.TOKEN`).
fn token_in(mail: &str) -> String {
    let at = mail
        .find("--token ")
        .unwrap_or_else(|| panic!("no token in:\n{mail}"));
    mail[at + 8..]
        .split_whitespace()
        .next()
        .expect("token")
        .to_owned()
}

/// The code a sign-up mail gives.
fn code_in(mail: &str) -> String {
    let at = mail
        .find("confirmation code: ")
        .unwrap_or_else(|| panic!("no code in:\n{mail}"));
    mail[at + 19..]
        .split_whitespace()
        .next()
        .expect("code")
        .to_owned()
}

async fn sign_up(api: &Api, email: &str, password: &str) -> axum::http::StatusCode {
    api.call(
        Method::POST,
        "/api/users",
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await
    .status
}

async fn login(api: &Api, email: &str, password: &str) -> common::Reply {
    api.call(Method::GET, "/api/login", Some((email, password)), None)
        .await
}

#[tokio::test]
async fn a_new_account_logs_in_once_its_email_is_confirmed_by_the_mailed_link() {
    let api = Api::confirming();
    assert_eq!(sign_up(&api, ADA, "password123").await, StatusCode::CREATED);
    let r = login(&api, ADA, "password123").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("account:confirmation:resend"), "{}", r.text);

    let mails = api.mails(ADA);
    assert_eq!(mails.len(), 1, "{mails:?}");
    let token = token_in(&mails[0]);
    assert!(
        mails[0].contains(&format!("http://paas.test/api/users/confirm?token={token}")),
        "{}",
        mails[0]
    );
    // The token is stored only as a hash.
    let user = api
        .store()
        .user_by_email(&Email::parse(ADA).expect("email"))
        .await
        .expect("user");
    let secret = token.split_once('.').expect("ID.TOKEN").1;
    assert!(!serde_json::to_string(&user).expect("json").contains(secret));

    let wrong = format!("{}.WRONGTOKEN", user.id);
    let r = api
        .call(
            Method::GET,
            &format!("/api/users/confirm?token={wrong}"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = api
        .call(
            Method::GET,
            &format!("/api/users/confirm?token={token}"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.text.contains("confirmed"), "{}", r.text);
    // Used once: the link does not work again.
    let r = api
        .call(
            Method::GET,
            &format!("/api/users/confirm?token={token}"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = login(&api, ADA, "password123").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let key = r.body["data"]["key"].as_str().expect("key").to_owned();
    let r = api
        .call(Method::GET, "/api/users", Some((ADA, &key)), None)
        .await;
    assert_eq!(r.body["data"]["email_confirmed"], json!(true), "{}", r.text);
}

#[tokio::test]
async fn resending_a_confirmation_voids_the_old_one_and_tells_nothing_of_other_emails() {
    let api = Api::confirming();
    assert_eq!(
        sign_up(&api, ROSE, "password123").await,
        StatusCode::CREATED
    );
    let first = token_in(&api.mails(ROSE)[0]);
    let known = api
        .call(
            Method::PUT,
            "/api/users/reconfirm_email",
            None,
            Some(json!({"email": ROSE})),
        )
        .await;
    let unknown = api
        .call(
            Method::PUT,
            "/api/users/reconfirm_email",
            None,
            Some(json!({"email": "nobody@example.com"})),
        )
        .await;
    assert_eq!(known.status, StatusCode::OK, "{}", known.text);
    assert_eq!((unknown.status, unknown.text), (known.status, known.text));
    assert!(api.mails("nobody@example.com").is_empty());
    let mails = api.mails(ROSE);
    assert_eq!(mails.len(), 2);
    let second = token_in(&mails[1]);
    let r = api
        .call(
            Method::POST,
            "/api/users/confirm",
            None,
            Some(json!({"token": first})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = api
        .call(
            Method::POST,
            "/api/users/confirm",
            None,
            Some(json!({"token": second})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn gigalixirs_sign_up_steps_confirm_by_code_and_end_with_a_key() {
    let api = Api::confirming();
    let step = |body: serde_json::Value| api.call(Method::POST, "/api/signup", None, Some(body));
    let r = step(json!({"email": ADA})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let uuid = r.body["data"]["uuid"].as_str().expect("uuid").to_owned();
    let code = code_in(&api.mails(ADA)[0]);
    assert_eq!(code.len(), 10, "{code}");
    // Nothing but the code moves it on.
    let r = step(json!({"uuid": uuid, "password": "password123"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = step(json!({"uuid": uuid, "confirmation_code": "0000000000"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = step(json!({"uuid": uuid, "confirmation_code": code.to_lowercase()})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = step(json!({"uuid": uuid, "password": "short"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = step(json!({"uuid": uuid, "password": "password123"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The password is set once: the sign-up cannot be used to change it later.
    let r = step(json!({"uuid": uuid, "password": "another-password"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = step(json!({"uuid": uuid, "promo_code": "FREE"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = step(json!({"uuid": uuid, "tier": "FREE"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"]["email"], json!(ADA));
    let key = r.body["data"]["key"].as_str().expect("key").to_owned();
    let r = api
        .call(Method::GET, "/api/users", Some((ADA, &key)), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // The last step gives one key, once.
    let r = step(json!({"uuid": uuid, "tier": "FREE"})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    // A confirmed email cannot be signed up again.
    let r = step(json!({"email": ADA})).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(login(&api, ADA, "password123").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_reset_by_mail_sets_a_new_password_once_and_revokes_every_key() {
    let api = Api::new();
    let old_key = api.user(RITA).await;
    let known = api
        .call(
            Method::PUT,
            "/api/users/reset_password",
            None,
            Some(json!({"email": RITA})),
        )
        .await;
    let unknown = api
        .call(
            Method::PUT,
            "/api/users/reset_password",
            None,
            Some(json!({"email": "nobody@example.com"})),
        )
        .await;
    assert_eq!(known.status, StatusCode::OK);
    assert_eq!((unknown.status, &unknown.text), (known.status, &known.text));
    let mails = api.mails(RITA);
    assert_eq!(mails.len(), 1);
    let token = token_in(&mails[0]);
    let set = |token: String, password: &str| {
        api.call(
            Method::POST,
            "/api/users/reset_password",
            None,
            Some(json!({"token": token, "password": password})),
        )
    };
    let r = set(token.clone(), "new-password-1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        login(&api, RITA, "password123").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&api, RITA, "new-password-1").await.status,
        StatusCode::OK
    );
    let r = api
        .call(Method::GET, "/api/users", Some((RITA, &old_key)), None)
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the old key still works"
    );
    // Used: refused, and the password stays.
    let r = set(token, "new-password-2").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        login(&api, RITA, "new-password-1").await.status,
        StatusCode::OK
    );

    // Expired: refused.
    api.call(
        Method::PUT,
        "/api/users/reset_password",
        None,
        Some(json!({"email": RITA})),
    )
    .await;
    let token = token_in(api.mails(RITA).last().expect("mail"));
    let email = Email::parse(RITA).expect("email");
    let mut user = api.store().user_by_email(&email).await.expect("user");
    for t in &mut user.tokens {
        t.expires_at = Utc::now() - Duration::seconds(1);
    }
    api.store().update_user(&user).await.expect("update");
    let r = set(token, "new-password-3").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        login(&api, RITA, "new-password-1").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_password_change_needs_the_current_one_and_keeps_only_the_callers_key() {
    let api = Api::new();
    let other = api.user(ADA).await;
    let mine = login(&api, ADA, "password123").await.body["data"]["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let change = |current: &str| {
        api.call(
            Method::PATCH,
            "/api/users/change_password",
            Some((ADA, &mine)),
            Some(json!({"current_password": current, "new_password": "changed-password"})),
        )
    };
    assert_eq!(
        change("wrong-password").await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = change("password123").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let me = api
        .call(Method::GET, "/api/users", Some((ADA, &mine)), None)
        .await;
    assert_eq!(me.status, StatusCode::OK, "the caller's key was revoked");
    let them = api
        .call(Method::GET, "/api/users", Some((ADA, &other)), None)
        .await;
    assert_eq!(
        them.status,
        StatusCode::UNAUTHORIZED,
        "another key survived"
    );
    assert_eq!(
        login(&api, ADA, "changed-password").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_new_email_takes_over_once_its_mail_is_confirmed() {
    let api = Api::new();
    let key = api.user(ADA).await;
    api.user(BOB).await;
    let set = |next: &str| {
        api.call(
            Method::POST,
            "/api/users/email",
            Some((ADA, &key)),
            Some(json!({"next_email": next, "current_password": "password123"})),
        )
    };
    assert_eq!(set(BOB).await.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = set("ada.new@example.com").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Until confirmed, the old email stays.
    assert_eq!(login(&api, ADA, "password123").await.status, StatusCode::OK);
    let token = token_in(&api.mails("ada.new@example.com")[0]);
    let r = api
        .call(
            Method::POST,
            "/api/users/confirm",
            None,
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        login(&api, ADA, "password123").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&api, "ada.new@example.com", "password123")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn destroying_an_account_refuses_while_it_owns_apps_unless_told_to_destroy_them() {
    let api = Api::new();
    let key = api.user(ADA).await;
    api.app(ADA, &key, "ada-app").await;
    let destroy = |password: &str, apps: bool| {
        api.call(
            Method::DELETE,
            "/api/users/destroy",
            Some((ADA, &key)),
            Some(json!({"email": ADA, "current_password": password, "destroy_apps": apps})),
        )
    };
    assert_eq!(
        destroy("wrong-password", true).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = destroy("password123", false).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("ada-app"), "{}", r.text);
    let r = destroy("password123", true).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        login(&api, ADA, "password123").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(api
        .store()
        .app(&AppName::parse("ada-app").expect("name"))
        .await
        .is_err());
    // The email is free again.
    assert_eq!(sign_up(&api, ADA, "password123").await, StatusCode::CREATED);
}

#[tokio::test]
async fn with_mfa_a_login_needs_a_fresh_code_or_a_recovery_code() {
    let api = Api::new();
    let key = api.user(ADA).await;
    let r = api
        .call(
            Method::POST,
            "/api/mfa/start",
            Some((ADA, &key)),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let url = r.body["data"]["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with("otpauth://totp/"), "{url}");
    let totp = totp_rs::TOTP::from_url_unchecked(&url).expect("otpauth url");
    let code_at = |step: u64| totp.generate(step * 30);
    let step = u64::try_from(Utc::now().timestamp()).expect("time") / 30;
    // Not active until verified: login needs no code yet.
    assert_eq!(login(&api, ADA, "password123").await.status, StatusCode::OK);
    let r = api
        .call(
            Method::POST,
            "/api/mfa/verify",
            Some((ADA, &key)),
            Some(json!({"mfa_token": "123"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = api
        .call(
            Method::POST,
            "/api/mfa/verify",
            Some((ADA, &key)),
            Some(json!({"mfa_token": code_at(step - 1)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let recovery: Vec<String> = r.body["data"]["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .map(|c| c.as_str().expect("code").to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);

    let with_token = |token: String| {
        let api = &api;
        async move {
            api.call(
                Method::GET,
                &format!("/api/login?mfa_token={token}"),
                Some((ADA, "password123")),
                None,
            )
            .await
        }
    };
    let r = login(&api, ADA, "password123").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert!(r.headers.get("location").is_none());
    assert_eq!(
        with_token("000000".into()).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The code the verification used does not log in again.
    assert_eq!(
        with_token(code_at(step - 1)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = with_token(code_at(step)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        with_token(code_at(step)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(with_token(recovery[0].clone()).await.status, StatusCode::OK);
    assert_eq!(
        with_token(recovery[0].clone()).await.status,
        StatusCode::UNAUTHORIZED
    );

    let r = api
        .call(
            Method::DELETE,
            "/api/mfa",
            Some((ADA, &key)),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(login(&api, ADA, "password123").await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_apps_activity_says_who_changed_what_newest_first_without_values() {
    let api = Api::new();
    let key = api.user(ADA).await;
    let bob = api.user(BOB).await;
    api.app(ADA, &key, "busy-app").await;
    api.pushed_release("busy-app", 1, SHA1, ReleaseStatus::Deployed)
        .await;
    api.pushed_release("busy-app", 2, SHA2, ReleaseStatus::Deployed)
        .await;
    let r = api
        .call(
            Method::POST,
            "/api/apps/busy-app/permissions",
            Some((ADA, &key)),
            Some(json!({"email": BOB, "role": "COLLABORATOR"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = api
        .call(
            Method::POST,
            "/api/apps/busy-app/configs",
            Some((BOB, &bob)),
            Some(json!({"configs": {"SECRET_TOKEN": "hunter2-value"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = api
        .call(
            Method::POST,
            "/api/apps/busy-app/releases/1/rollback",
            Some((ADA, &key)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = api
        .call(
            Method::GET,
            "/api/apps/busy-app/activity",
            Some((BOB, &bob)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!r.text.contains("hunter2-value"), "{}", r.text);
    let rows = r.body["data"].as_array().expect("rows");
    let seen: Vec<(String, String)> = rows
        .iter()
        .map(|a| {
            (
                a["action"].as_str().expect("action").to_owned(),
                a["actor"].as_str().expect("actor").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("rollback".to_owned(), ADA.to_owned()),
            ("config:set".to_owned(), BOB.to_owned()),
            ("access:add".to_owned(), ADA.to_owned()),
        ],
        "{}",
        r.text
    );
    assert!(rows[1]["detail"]
        .as_str()
        .expect("detail")
        .contains("SECRET_TOKEN"));
    assert!(rows[0]["detail"]
        .as_str()
        .expect("detail")
        .contains("to v1"));
}

#[tokio::test]
async fn mail_to_one_address_is_limited_and_the_answer_does_not_change() {
    let api = Api::new();
    const RUTH: &str = "ruth@example.com";
    api.user(RUTH).await;
    let mut answers = Vec::new();
    for _ in 0..gigalixir_api::limits::MAILS_PER_RECIPIENT + 3 {
        let r = api
            .call(
                Method::PUT,
                "/api/users/reset_password",
                None,
                Some(json!({"email": RUTH})),
            )
            .await;
        answers.push((r.status, r.text));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(answers[0].0, StatusCode::OK);
    assert_eq!(
        api.mails(RUTH).len(),
        gigalixir_api::limits::MAILS_PER_RECIPIENT
    );
}

#[tokio::test]
async fn a_sign_up_by_code_voids_the_password_someone_else_chose_for_the_address() {
    let api = Api::confirming();
    const OWEN: &str = "owen@example.com";
    // Someone registers Owen's address with a password of their own, unconfirmed.
    assert_eq!(
        sign_up(&api, OWEN, "squatter-password").await,
        StatusCode::CREATED
    );
    // Owen signs up with GIGALIXIR's CLI: the code reaches him, and his password counts.
    let step = |body: serde_json::Value| api.call(Method::POST, "/api/signup", None, Some(body));
    let r = step(json!({"email": OWEN})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let uuid = r.body["data"]["uuid"].as_str().expect("uuid").to_owned();
    let code = code_in(api.mails(OWEN).last().expect("mail"));
    for body in [
        json!({"uuid": uuid, "confirmation_code": code}),
        json!({"uuid": uuid, "password": "owens-own-password"}),
        json!({"uuid": uuid, "tier": "FREE"}),
    ] {
        let r = step(body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    assert_eq!(
        login(&api, OWEN, "squatter-password").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&api, OWEN, "owens-own-password").await.status,
        StatusCode::OK
    );
}
