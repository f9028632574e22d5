//! Log drains: `drains`, `drains:add`, `drains:remove`.

use serde_json::json;
use ureq::http::Method;

use super::databases::call;
use super::{say, Ctx};
use crate::args::{DrainsAddArgs, DrainsRemoveArgs};

/// `drains`.
pub fn list(ctx: &Ctx, app: Option<String>) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let list = call(ctx, &name, Method::GET, "drains", None, false)?;
    let rows: Vec<[String; 2]> = list
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|d| {
            [
                d["id"].as_str().unwrap_or("").to_owned(),
                d["url"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    if rows.is_empty() {
        return say(format!(
            "{name} has no log drains: add one with `gigalixir drains:add URL`."
        ));
    }
    say(super::table(["ID", "URL"], &rows))
}

/// `drains:add URL`.
pub fn add(ctx: &Ctx, args: DrainsAddArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.app.app)?;
    let drain = call(
        ctx,
        &name,
        Method::POST,
        "drains",
        Some(json!({ "url": args.url })),
        false,
    )?;
    say(format!(
        "Added drain {}: {name}'s lines go there within seconds (its replicas, jobs, builds, deploys and the router's).",
        drain["id"].as_str().unwrap_or("")
    ))
}

/// `drains:remove ID`.
pub fn remove(ctx: &Ctx, args: DrainsRemoveArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.app.app)?;
    call(
        ctx,
        &name,
        Method::DELETE,
        "drains",
        Some(json!({ "drain_id": args.drain_id })),
        false,
    )?;
    say(format!("Removed drain {}.", args.drain_id))
}
