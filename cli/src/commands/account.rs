//! Accounts and credentials: `signup`/`create user`, `login`, `logout`, `account`,
//! `account:api_key:reset`.

use anyhow::{anyhow, bail};
use gigalixir_core::domain::{Email, Password};
use gigalixir_core::wire::KeyView;

use super::{say, Ctx};
use crate::args::{LoginArgs, ResetArgs, SignupArgs};
use crate::client::{ApiError, Auth};
use crate::{netrc, prompt};

fn email(given: Option<String>) -> anyhow::Result<Email> {
    let raw = prompt::value_or_ask(given, "Email: ", "-e EMAIL")?;
    Email::parse(&raw).map_err(|e| anyhow!("{e}: check it and try again"))
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
                "an account with email {email} already exists: log in with `gigalixir login`, or sign up with another email"
            ),
            ApiError::Invalid(_) => anyhow!("{e}: no account was created"),
            e => anyhow!(e),
        })?;
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
    let key = ctx
        .client
        .log_in(email.as_str(), &password)
        .map_err(|e| match e {
            ApiError::Unauthorized => anyhow!(
                "wrong email or password: check them and try again (no account yet? run `gigalixir signup`)"
            ),
            e => anyhow!(e),
        })?;
    say(format!("Logged in as {email}."))?;
    save_key(ctx, email.as_str(), &key, decided)
}

/// `logout`.
pub fn log_out(ctx: &Ctx) -> anyhow::Result<()> {
    let path = &ctx.netrc_path()?;
    let host = ctx.api().host();
    let netrc = netrc::load(path).map_err(netrc::LoadError::refusing_to_edit)?;
    match netrc.without(host) {
        Some(text) => {
            netrc::save(path, &text)?;
            say(format!(
                "Logged out: removed the entry for `{host}` from {}.\n\
                 The key stays valid until it expires; `gigalixir account:api_key:reset` revokes every key.",
                path.display()
            ))
        }
        None => say(format!(
            "Not logged in: {} has no entry for `{host}`; nothing to do.",
            path.display()
        )),
    }
}

/// `account`.
pub fn show(ctx: &Ctx) -> anyhow::Result<()> {
    let auth = ctx.auth()?;
    let user = ctx.client.account(&auth)?;
    say(format!(
        "email:    {}\ntier:     {}\ncreated:  {}",
        user.email,
        user.tier,
        user.created_at.format("%Y-%m-%d %H:%M:%S UTC")
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
