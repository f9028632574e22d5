//! Accounts and credentials: `signup`/`create user`, `login`, `logout`, `account`,
//! `account:api_key:reset`, `account:confirm`, `account:confirmation:resend`, the
//! password commands, `account:email:set`, `account:destroy`.

use anyhow::{anyhow, bail};
use gigalixir_core::domain::{Email, Password};
use gigalixir_core::wire::KeyView;

use super::{say, Ctx};
use crate::args::{
    AccountDestroyArgs, EmailSetArgs, LoginArgs, PasswordChangeArgs, PasswordResetArgs, ResetArgs,
    SignupArgs,
};
use crate::client::{ApiError, Auth};
use crate::{netrc, prompt};

fn email(given: Option<String>) -> anyhow::Result<Email> {
    email_asking(given, "Email: ")
}

fn email_asking(given: Option<String>, question: &str) -> anyhow::Result<Email> {
    let raw = prompt::value_or_ask(given, question, "-e EMAIL")?;
    Email::parse(&raw).map_err(|e| anyhow!("{e}: check it and try again"))
}

/// A new password: given, or typed twice; refused here when too short, before it travels.
fn new_password(given: Option<String>, flag: &str, nothing: &str) -> anyhow::Result<String> {
    let password = prompt::password_or_ask(given, "New password: ", flag, true)?;
    Password::new_for_account(&password)
        .map_err(|e| anyhow!("{e}: choose a longer one; {nothing}"))?;
    Ok(password)
}

/// `signup` / `create user`.
pub fn sign_up(ctx: &Ctx, args: SignupArgs) -> anyhow::Result<()> {
    let email = email(args.email)?;
    let password = prompt::password_or_ask(args.password, "Password: ", "-p PASSWORD", true)?;
    // Checked here as well as by the platform, so a weak password is refused before it
    // travels anywhere.
    Password::new_for_account(&password)
        .map_err(|e| anyhow!("{e}: choose a longer one; no account was created"))?;
    let user = ctx
        .client
        .sign_up(email.as_str(), &password)
        .map_err(|e| match e {
            e if e.is_invalid("email", "taken") => anyhow!(
                "an account with email {email} already exists: log in with `gigalixir login`, or sign up with another email (not confirmed yet? `gigalixir account:confirmation:resend -e {email}` mails the link again)"
            ),
            ApiError::Invalid(_) => anyhow!("{e}: no account was created"),
            // The account exists by the time its confirmation mail is sent.
            ApiError::Unavailable(Some(message)) if message.contains("mail") => anyhow!(
                "{message}: the account {email} was created; `gigalixir account:confirmation:resend -e {email}` sends its confirmation mail again"
            ),
            e => anyhow!(e),
        })?;
    if !user.email_confirmed {
        return say(format!(
            "Created account {email}; it must confirm its email before it can log in.\n\
             A confirmation mail was sent to {email}: open the link in it, or run `gigalixir account:confirm --token TOKEN` with the token it gives.\n\
             Then run `gigalixir login` to save your API key. (No mail? `gigalixir account:confirmation:resend -e {email}` sends another.)"
        ));
    }
    say(format!(
        "Created account {} (tier {}).\nNext: run `gigalixir login` to save your API key, then `gigalixir create app NAME` inside your project.",
        user.email, user.tier
    ))
}

/// Whether a new key may be written to netrc: `-y`, else a question asked later (`None`),
/// else (no terminal) a refusal before anything happens.
fn may_write(ctx: &Ctx, yes: bool, command: &str) -> anyhow::Result<Option<bool>> {
    if yes {
        return Ok(Some(true));
    }
    if !prompt::interactive() {
        bail!(
            "cannot ask whether to save your API key in {} (no terminal): rerun as `{command} -y` to save it",
            ctx.netrc_path()?.display()
        );
    }
    Ok(None)
}

/// Saves `key` as the entry for the API host, or (when the user declines) shows it once.
fn save_key(ctx: &Ctx, email: &str, key: &KeyView, decided: Option<bool>) -> anyhow::Result<()> {
    let path = &ctx.netrc_path()?;
    let host = ctx.api().host();
    let write = match decided {
        Some(write) => write,
        None => prompt::yes_no(&format!(
            "Save your API key in {} (used by the CLI and git push)?",
            path.display()
        ))?,
    };
    if !write {
        say(format!(
            "Your API key was not saved, so other commands and git push cannot use it.\n\
             Rerun with -y to save it, or add this entry to {} yourself (the key is shown only this once):\n\
             machine {host} login {email} password {}",
            path.display(),
            key.key
        ))?;
        return Ok(());
    }
    // Read again right before writing: the file may have changed since the command began.
    let netrc = netrc::load(path).map_err(netrc::LoadError::refusing_to_edit)?;
    netrc::save(path, &netrc.with_credentials(host, email, &key.key))?;
    say(format!(
        "Saved your API key for `{host}` in {} (mode 0600); the CLI and git push use it. It expires on {}.",
        path.display(),
        key.expires_at.format("%Y-%m-%d")
    ))
}

/// `login`.
pub fn log_in(ctx: &Ctx, args: LoginArgs) -> anyhow::Result<()> {
    // Refuse a malformed netrc before asking anything or issuing a key.
    netrc::load(&ctx.netrc_path()?).map_err(netrc::LoadError::refusing_to_edit)?;
    let decided = may_write(ctx, args.yes, "gigalixir login")?;
    let email = email(args.email)?;
    let password = prompt::password_or_ask(args.password, "Password: ", "-p PASSWORD", false)?;
    let given = args.mfa_token.as_deref().filter(|t| !t.trim().is_empty());
    let key = match ctx.client.log_in(email.as_str(), &password, given) {
        // The password is right (the platform checks it first); a second factor is missing.
        Err(ApiError::MfaRequired) if given.is_none() => {
            if !prompt::interactive() {
                bail!(
                    "{email} has multi-factor authentication and there is no terminal to ask for a code on: pass -t TOKEN (a code from your authenticator app, or a recovery code)"
                );
            }
            let token = prompt::line("Multi-factor authentication token: ")?;
            ctx.client
                .log_in(email.as_str(), &password, Some(token.as_str()))
                .map_err(|e| match e {
                    ApiError::Unauthorized => anyhow!(
                        "the multi-factor authentication token was not accepted (a code works once, and only for a minute or so; a recovery code works too): run `gigalixir login` again"
                    ),
                    e => login_refused(e, &email),
                })
        }
        Err(ApiError::Unauthorized) if given.is_some() => Err(anyhow!(
            "wrong email, password or multi-factor authentication token: check them and try again"
        )),
        other => other.map_err(|e| login_refused(e, &email)),
    }?;
    say(format!("Logged in as {email}."))?;
    save_key(ctx, email.as_str(), &key, decided)
}

/// Why a login failed, in the user's terms.
fn login_refused(e: ApiError, email: &Email) -> anyhow::Error {
    match e {
        ApiError::Unauthorized => anyhow!(
            "wrong email or password: check them and try again (no account yet? run `gigalixir signup`; forgot the password? `gigalixir account:password:reset -e {email}`)"
        ),
        // An unconfirmed email: the platform's message says what to do.
        ApiError::Forbidden(message) => anyhow!(message),
        e => anyhow!(e),
    }
}

/// `logout`.
pub fn log_out(ctx: &Ctx) -> anyhow::Result<()> {
    let path = &ctx.netrc_path()?;
    let host = ctx.api().host();
    if forget_key(ctx)? {
        say(format!(
            "Logged out: removed the entry for `{host}` from {}.\n\
             The key stays valid until it expires; `gigalixir account:api_key:reset` revokes every key.",
            path.display()
        ))
    } else {
        say(format!(
            "Not logged in: {} has no entry for `{host}`; nothing to do.",
            path.display()
        ))
    }
}

/// Removes the platform's entry from netrc, keeping the rest of the file; whether there
/// was one.
fn forget_key(ctx: &Ctx) -> anyhow::Result<bool> {
    let path = &ctx.netrc_path()?;
    let netrc = netrc::load(path).map_err(netrc::LoadError::refusing_to_edit)?;
    match netrc.without(ctx.api().host()) {
        Some(text) => {
            netrc::save(path, &text)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// `account`.
pub fn show(ctx: &Ctx) -> anyhow::Result<()> {
    let auth = ctx.auth()?;
    let user = ctx.client.account(&auth)?;
    say(format!(
        "email:    {}{}\ntier:     {}\ncreated:  {}\nmfa:      {}",
        user.email,
        if user.email_confirmed {
            ""
        } else {
            " (not confirmed)"
        },
        user.tier,
        user.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
        if user.mfa_active { "active" } else { "off" }
    ))
}

/// `account:api_key:reset`.
pub fn reset_key(ctx: &Ctx, args: ResetArgs) -> anyhow::Result<()> {
    netrc::load(&ctx.netrc_path()?).map_err(netrc::LoadError::refusing_to_edit)?;
    let decided = may_write(ctx, args.yes, "gigalixir account:api_key:reset")?;
    let auth: Auth = ctx.auth()?;
    // The platform answers 401 both for a bad key and for a wrong password; checking the
    // key first tells the two apart.
    ctx.client.account(&auth)?;
    let password = prompt::password_or_ask(args.password, "Password: ", "-p PASSWORD", false)?;
    let key = ctx
        .client
        .regenerate_key(&auth, &password)
        .map_err(|e| match e {
            ApiError::Unauthorized => {
                anyhow!("wrong password: your API key was not reset; check it and try again")
            }
            e => anyhow!(e),
        })?;
    say(format!(
        "Reset the API keys of {}: every earlier key is revoked, so other machines must run `gigalixir login` again.",
        auth.email
    ))?;
    save_key(ctx, &auth.email, &key, decided)
}

/// `account:confirm`.
pub fn confirm(ctx: &Ctx, token: Option<String>) -> anyhow::Result<()> {
    let token = prompt::value_or_ask(token, "Token (from the mail): ", "--token TOKEN")?;
    let reply = ctx
        .client
        .confirm_email(token.trim())
        .map_err(|e| match e {
            e if e.is_invalid("token", "") => anyhow!(
                "the token is invalid, already used or expired: `gigalixir account:confirmation:resend -e EMAIL` mails a new one (for a new email, run `gigalixir account:email:set` again)"
            ),
            e => anyhow!(e),
        })?;
    say(reply.message)
}

/// `account:confirmation:resend`.
pub fn resend_confirmation(ctx: &Ctx, given: Option<String>) -> anyhow::Result<()> {
    let email = email(given)?;
    let reply = ctx.client.resend_confirmation(email.as_str())?;
    say(format!(
        "{}\nConfirm with the link in it, or with `gigalixir account:confirm --token TOKEN`; then `gigalixir login`.",
        reply.message
    ))
}

/// `account:password:reset`: `-e EMAIL` mails a token; `--token T [--password P]` uses one.
pub fn reset_password(ctx: &Ctx, args: PasswordResetArgs) -> anyhow::Result<()> {
    if args.token.is_some() {
        return set_password(ctx, args.token, args.password);
    }
    if args.email.is_none() && !prompt::interactive() {
        bail!(
            "-e EMAIL (to be mailed a reset token) or --token TOKEN (to use one) is missing and there is no terminal to ask on: pass one"
        );
    }
    let email = email(args.email)?;
    let reply = ctx.client.request_password_reset(email.as_str())?;
    say(format!(
        "{}\nThen set a new password with `gigalixir account:password:set --token TOKEN` (the token works once, for an hour).",
        reply.message
    ))
}

/// `account:password:set` (and `account:password:reset --token`).
pub fn set_password(
    ctx: &Ctx,
    token: Option<String>,
    password: Option<String>,
) -> anyhow::Result<()> {
    const NOTHING: &str = "the password was not changed";
    let token = prompt::value_or_ask(token, "Token (from the mail): ", "-t TOKEN")?;
    let password = new_password(password, "-p PASSWORD", NOTHING)?;
    let reply = ctx
        .client
        .reset_password(token.trim(), &password)
        .map_err(|e| match e {
            e if e.is_invalid("token", "") => anyhow!(
                "the token is invalid, already used or expired: `gigalixir account:password:reset -e EMAIL` mails a new one; {NOTHING}"
            ),
            ApiError::Invalid(_) => anyhow!("{e}: {NOTHING}"),
            e => anyhow!(e),
        })?;
    say(format!(
        "{}\nEvery API key of the account was revoked, on every machine.",
        reply.message
    ))
}

/// `account:password:change`.
pub fn change_password(ctx: &Ctx, args: PasswordChangeArgs) -> anyhow::Result<()> {
    const NOTHING: &str = "your password was not changed";
    let auth = ctx.auth()?;
    // The platform answers 401 both for a bad key and for a wrong password; checking the
    // key first tells the two apart.
    ctx.client.account(&auth)?;
    let current = prompt::password_or_ask(
        args.current_password,
        "Current password: ",
        "-p CURRENT_PASSWORD",
        false,
    )?;
    let new = new_password(args.new_password, "-n NEW_PASSWORD", NOTHING)?;
    let reply = ctx
        .client
        .change_password(&auth, &current, &new)
        .map_err(|e| match e {
            ApiError::Unauthorized => {
                anyhow!("wrong current password: {NOTHING}; check it and try again")
            }
            ApiError::Invalid(_) => anyhow!("{e}: {NOTHING}"),
            e => anyhow!(e),
        })?;
    say(reply.message)
}

/// `account:email:set`.
pub fn set_email(ctx: &Ctx, args: EmailSetArgs) -> anyhow::Result<()> {
    const NOTHING: &str = "your email was not changed";
    let auth = ctx.auth()?;
    let user = ctx.client.account(&auth)?;
    let next = email_asking(args.email, "New email: ")?;
    if next.as_str() == user.email {
        bail!("{next} is already your account's email: nothing was changed");
    }
    let password = prompt::password_or_ask(args.password, "Password: ", "-p PASSWORD", false)?;
    let reply = ctx
        .client
        .set_email(&auth, next.as_str(), &password)
        .map_err(|e| match e {
            ApiError::Unauthorized => anyhow!("wrong password: {NOTHING}; check it and try again"),
            e if e.is_invalid("next_email", "taken") => {
                anyhow!("another account has the email {next}: {NOTHING}")
            }
            ApiError::Invalid(_) => anyhow!("{e}: {NOTHING}"),
            e => anyhow!(e),
        })?;
    say(format!(
        "{}\nUntil {next} is confirmed (with the link in the mail, or `gigalixir account:confirm --token TOKEN`), the account keeps the email {}. \
         Once it is, log in again with `gigalixir login -e {next}`, here and on your other machines.",
        reply.message, user.email
    ))
}

/// `account:destroy`.
pub fn destroy(ctx: &Ctx, args: AccountDestroyArgs) -> anyhow::Result<()> {
    const NOTHING: &str = "nothing was destroyed";
    // Refuse a malformed netrc before anything is destroyed: the key is removed from it after.
    netrc::load(&ctx.netrc_path()?).map_err(netrc::LoadError::refusing_to_edit)?;
    prompt::can_confirm(args.yes, "destroy the account and every app it owns")?;
    let auth = ctx.auth()?;
    // The key is checked first: then a 401 below means a wrong password.
    let user = ctx.client.account(&auth)?;
    let email = email(args.email)?;
    if email.as_str() != user.email {
        bail!(
            "{email} is not the email of the account you are logged in as ({}): {NOTHING}",
            user.email
        );
    }
    let password = prompt::password_or_ask(args.password, "Password: ", "-p PASSWORD", false)?;
    if !args.yes {
        eprintln!("This destroys the account {email} and every app it owns, with their releases and configuration; it cannot be undone.");
    }
    prompt::confirm(
        args.yes,
        &format!("Destroy the account {email} and every app it owns?"),
        NOTHING,
    )?;
    ctx.client
        .destroy_account(&auth, email.as_str(), &password, true)
        .map_err(|e| match e {
            ApiError::Unauthorized => anyhow!("wrong password: {NOTHING}; check it and try again"),
            ApiError::Invalid(_) => anyhow!("{e}: {NOTHING}"),
            e => anyhow!(e),
        })?;
    say(format!(
        "Destroyed the account {email} and every app it owned."
    ))?;
    let forgot = forget_key(ctx).map_err(|e| {
        anyhow!("the account is destroyed, but its API key could not be removed from netrc ({e:#}): run `gigalixir logout`")
    })?;
    if forgot {
        say(format!(
            "Removed its entry for `{}` from {}.",
            ctx.api().host(),
            ctx.netrc_path()?.display()
        ))?;
    }
    Ok(())
}
