//! `health`, `health:set`: when a new replica counts as ready, and how replicas leave.

use gigalixir_core::model::HealthCheck;
use serde_json::json;

use super::apps::not_found;
use super::{say, Ctx};
use crate::args::HealthSetArgs;

fn describe(name: &str, h: &HealthCheck) -> String {
    let check = match &h.path {
        Some(path) => format!("HTTP: GET {path} must answer {}", h.status),
        None => "TCP: the port accepts connections".to_owned(),
    };
    let boot = h
        .boot_timeout_secs
        .map_or("the platform's default (60 s)".to_owned(), |s| {
            format!("{s} s")
        });
    format!(
        "{name}\n  check:        {check}\n  boot timeout: {boot}\n  drain:        {} s",
        h.drain_secs
    )
}

/// `health`.
pub fn show(ctx: &Ctx, app: Option<String>) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let auth = ctx.auth()?;
    let health = ctx.client.health(&auth, &name).map_err(not_found(&name))?;
    say(describe(name.as_str(), &health))
}

/// `health:set`.
pub fn set(ctx: &Ctx, args: HealthSetArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.app.app)?;
    if args.path.is_none()
        && !args.tcp
        && args.status.is_none()
        && args.boot_timeout.is_none()
        && args.drain.is_none()
    {
        anyhow::bail!("nothing to set: give --path, --tcp, --status, --boot-timeout or --drain");
    }
    let mut update = serde_json::Map::new();
    if let Some(path) = args.path {
        update.insert("path".into(), json!(path));
    }
    if args.tcp {
        update.insert("tcp".into(), json!(true));
    }
    if let Some(status) = args.status {
        update.insert("status".into(), json!(status));
    }
    if let Some(secs) = args.boot_timeout {
        update.insert("boot_timeout".into(), json!(secs));
    }
    if let Some(secs) = args.drain {
        update.insert("drain".into(), json!(secs));
    }
    let auth = ctx.auth()?;
    let health = ctx
        .client
        .set_health(&auth, &name, &update.into())
        .map_err(not_found(&name))?;
    say(format!(
        "{}\nApplies from the next deploy, scale or restart.",
        describe(name.as_str(), &health)
    ))
}
