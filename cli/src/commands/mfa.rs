//! Multi-factor authentication: `account:mfa:activate`, `account:mfa:deactivate`,
//! `account:mfa:recovery_codes:regenerate`.

use anyhow::{anyhow, bail};

use super::{say, Ctx};
use crate::args::MfaActivateArgs;
use crate::client::{ApiError, RecoveryCodes};
use crate::prompt;

/// `account:mfa:activate`: without `-t`, makes a new secret and shows it, then asks for a
/// code from it (with no terminal: stops there, and `-t CODE` finishes later); with `-t`,
/// activates the secret made last time.
pub fn activate(ctx: &Ctx, args: MfaActivateArgs) -> anyhow::Result<()> {
    let auth = ctx.auth()?;
    let code = match args.mfa_token {
        Some(code) => code,
        None => {
            let started = ctx.client.mfa_start(&auth).map_err(|e| match e {
                e if e.is_invalid("mfa", "already active") => anyhow!(
                    "multi-factor authentication is already active for {}: `gigalixir account:mfa:deactivate` turns it off",
                    auth.email
                ),
                e => anyhow!(e),
            })?;
            // No QR code here: the secret is typed (or the URL pasted) into the app.
            say(format!(
                "{}\nThis CLI shows no QR code: add the account to your app with the secret, or with the URL.\n\nURL:    {}\nSecret: {}",
                started.message, started.url, started.secret
            ))?;
            if !prompt::interactive() {
                return say(
                    "Once your authenticator app has the secret, finish with `gigalixir account:mfa:activate -t CODE`, CODE being the code it shows. Until then login does not ask for one.",
                );
            }
            prompt::line("Multi-factor authentication token: ")?
        }
    };
    let verified = ctx
        .client
        .mfa_verify(&auth, code.trim())
        .map_err(|e| match e {
            e if e.is_invalid("mfa_token", "nothing to verify") => anyhow!(
                "there is no secret waiting for a code: run `gigalixir account:mfa:activate` without -t to make one"
            ),
            e if e.is_invalid("mfa_token", "") => anyhow!(
                "that is not the code your authenticator app shows now: multi-factor authentication is not active yet; try again with a fresh code (`gigalixir account:mfa:activate -t CODE`)"
            ),
            e => anyhow!(e),
        })?;
    if let Some(message) = &verified.message {
        say(message)?;
    }
    show_codes(&verified, args.yes)
}

/// Prints recovery codes, one per line; asks first at a terminal, unless `yes`.
fn show_codes(codes: &RecoveryCodes, yes: bool) -> anyhow::Result<()> {
    if !yes
        && prompt::interactive()
        && !prompt::yes_no_default_yes(
            "Are you ready to save your recovery codes? They are shown only this once.",
        )?
    {
        eprintln!(
            "Your recovery codes were not shown. Without them, losing your authenticator app locks you out: `gigalixir account:mfa:recovery_codes:regenerate` makes new ones."
        );
        return Ok(());
    }
    say("Recovery codes (each logs in once instead of a code; keep them somewhere safe):")?;
    for code in &codes.recovery_codes {
        say(code)?;
    }
    Ok(())
}

/// `account:mfa:deactivate`.
pub fn deactivate(ctx: &Ctx, yes: bool) -> anyhow::Result<()> {
    let auth = ctx.auth()?;
    let user = ctx.client.account(&auth)?;
    if user.mfa_active {
        prompt::can_confirm(yes, "deactivate multi-factor authentication")?;
        prompt::confirm(
            yes,
            &format!(
                "Deactivate multi-factor authentication for {}? Login will need only the password.",
                user.email
            ),
            "nothing was changed",
        )?;
    }
    // Also clears an activation begun and never finished.
    let reply = ctx.client.mfa_deactivate(&auth)?;
    if !user.mfa_active {
        return say(format!(
            "Multi-factor authentication was not active for {}: nothing to deactivate.",
            user.email
        ));
    }
    say(reply.message)
}

/// `account:mfa:recovery_codes:regenerate`.
pub fn regenerate(ctx: &Ctx, yes: bool) -> anyhow::Result<()> {
    let auth = ctx.auth()?;
    let user = ctx.client.account(&auth)?;
    if !user.mfa_active {
        bail!(
            "multi-factor authentication is not active for {}: turn it on with `gigalixir account:mfa:activate`",
            user.email
        );
    }
    prompt::can_confirm(yes, "replace your recovery codes")?;
    prompt::confirm(
        yes,
        "Replace your recovery codes? The current ones stop working.",
        "nothing was changed",
    )?;
    let codes = ctx.client.mfa_recovery_codes(&auth).map_err(|e| match e {
        e @ ApiError::Invalid(_) => anyhow!("{e}: nothing was changed"),
        e => anyhow!(e),
    })?;
    // Already confirmed: the new codes are shown at once (the old ones are void).
    show_codes(&codes, true)
}
