//! Who may do what to an app, and what they did: `access`, `access:add`,
//! `access:remove`, `apps:activity`, `apps:transfer`.

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use gigalixir_core::domain::{AppName, Email};

use super::apps::not_found;
use super::config::printable;
use super::{say, Ctx};
use crate::args::{AccessAddArgs, TransferArgs};
use crate::client::{AccessView, ActivityView, ApiError};
use crate::prompt;

fn parse_email(raw: &str) -> anyhow::Result<Email> {
    Email::parse(raw).map_err(|e| anyhow!("{e}: check it and try again"))
}

/// What a refused change says: the platform's reasons, then `nothing`.
fn refused<'a>(name: &'a AppName, nothing: &'a str) -> impl FnOnce(ApiError) -> anyhow::Error + 'a {
    move |e| match e {
        ApiError::Invalid(errors) => anyhow!("{}: {nothing}", ApiError::Invalid(errors)),
        ApiError::Forbidden(message) => anyhow!("{message}; {nothing}"),
        e => not_found(name)(e),
    }
}

/// `access`.
pub fn list(ctx: &Ctx, app: Option<String>, json: bool) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let auth = ctx.auth()?;
    let people = ctx
        .client
        .permissions(&auth, &name)
        .map_err(not_found(&name))?;
    if json {
        return say(serde_json::to_string_pretty(&people)?);
    }
    say(access_table(&people))
}

fn access_table(people: &[AccessView]) -> String {
    let rows: Vec<[String; 2]> = people
        .iter()
        .map(|p| [printable(&p.email), printable(&p.role)])
        .collect();
    super::table(["EMAIL", "ROLE"], &rows)
}

/// `access:add`.
pub fn add(ctx: &Ctx, args: AccessAddArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.app.app)?;
    let email = parse_email(&args.email)?;
    let role = args.role.to_ascii_uppercase();
    let auth = ctx.auth()?;
    let added = ctx
        .client
        .add_permission(&auth, &name, email.as_str(), &role)
        .map_err(|e| match e {
            e if e.is_invalid("email", "owner") => {
                anyhow!("{email} owns {name}: owners have every right already")
            }
            e => refused(&name, "nobody was given access")(e),
        })?;
    let what = if added.role == "VIEWER" {
        "they may see it, not change it"
    } else {
        "they may deploy it, configure it and reach into it (ps:ssh), not destroy it"
    };
    say(format!(
        "{} has access to {name} as a {}: {what}.",
        added.email,
        added.role.to_lowercase()
    ))
}

/// `access:remove`.
pub fn remove(ctx: &Ctx, app: Option<String>, email: &str) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let email = parse_email(email)?;
    let auth = ctx.auth()?;
    ctx.client
        .remove_permission(&auth, &name, email.as_str())
        .map_err(refused(&name, "nothing was changed"))?;
    say(format!("{email} no longer has access to {name}."))
}

/// `apps:activity`.
pub fn activity(ctx: &Ctx, app: Option<String>, json: bool) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let auth = ctx.auth()?;
    let entries = ctx
        .client
        .activity(&auth, &name)
        .map_err(not_found(&name))?;
    if json {
        return say(serde_json::to_string_pretty(&entries)?);
    }
    if entries.is_empty() {
        return say(format!("No activity recorded for {name} yet."));
    }
    say(activity_table(&entries))
}

/// The entries in the order given (the platform sends them newest first).
fn activity_table(entries: &[ActivityView]) -> String {
    let rows: Vec<[String; 4]> = entries
        .iter()
        .map(|a| {
            let when = DateTime::parse_from_rfc3339(&a.at)
                .map(|t| {
                    t.with_timezone(&Utc)
                        .format("%Y-%m-%d %H:%M:%S UTC")
                        .to_string()
                })
                .unwrap_or_else(|_| printable(&a.at));
            [
                when,
                printable(&a.actor),
                printable(&a.action),
                printable(&a.detail),
            ]
        })
        .collect();
    super::table(["WHEN", "WHO", "ACTION", "DETAIL"], &rows)
}

/// `apps:transfer`.
pub fn transfer(ctx: &Ctx, args: TransferArgs) -> anyhow::Result<()> {
    const NOTHING: &str = "nothing was transferred";
    let name = ctx.app(args.app.app)?;
    let email = parse_email(&args.email)?;
    prompt::can_confirm(args.yes, &format!("transfer {name}"))?;
    let auth = ctx.auth()?;
    // Look it up first, so nobody is asked to confirm the transfer of a typo.
    ctx.client.app(&auth, &name).map_err(not_found(&name))?;
    prompt::confirm(
        args.yes,
        &format!("Give {name} to {email}? They become its owner; you stay on as a collaborator."),
        NOTHING,
    )?;
    let owner = ctx
        .client
        .transfer_app(&auth, &name, email.as_str())
        .map_err(|e| match e {
            e if e.is_invalid("email", "already owns") => {
                anyhow!("{email} already owns {name}: {NOTHING}")
            }
            e => refused(&name, NOTHING)(e),
        })?;
    say(format!(
        "{name} now belongs to {}; you stay on as a collaborator (its new owner can take that away with `gigalixir access:remove`).",
        owner.owner
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lists_as_a_table() {
        let people = [
            AccessView {
                email: "owner@example.com".into(),
                role: "OWNER".into(),
            },
            AccessView {
                email: "v@example.com".into(),
                role: "VIEWER".into(),
            },
        ];
        assert_eq!(
            access_table(&people),
            "EMAIL              ROLE\n\
             owner@example.com  OWNER\n\
             v@example.com      VIEWER"
        );
    }

    #[test]
    fn activity_shows_times_in_utc_and_escapes_control_characters() {
        let entries = [
            ActivityView {
                at: "2025-01-02T03:04:05+01:00".into(),
                actor: "ada@example.com".into(),
                action: "access:add".into(),
                detail: "bob@example.com as VIEWER".into(),
            },
            ActivityView {
                at: "yesterday".into(),
                actor: "ada@example.com".into(),
                action: "deploy".into(),
                detail: "line\none\u{1b}[31m".into(),
            },
        ];
        assert_eq!(
            activity_table(&entries),
            "WHEN                     WHO              ACTION      DETAIL\n\
             2025-01-02 02:04:05 UTC  ada@example.com  access:add  bob@example.com as VIEWER\n\
             yesterday                ada@example.com  deploy      line\\none\\u{1b}[31m"
        );
    }
}
