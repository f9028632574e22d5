//! Custom domains: `domains`, `domains:add`, `domains:remove`.

use anyhow::anyhow;
use gigalixir_core::domain::AppName;

use super::apps::not_found;
use super::{say, Ctx};
use crate::client::ApiError;

/// `domains`.
pub fn list(ctx: &Ctx, app: Option<String>, json: bool) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let auth = ctx.auth()?;
    let domains = ctx.client.domains(&auth, &name).map_err(not_found(&name))?;
    if json {
        return say(serde_json::to_string_pretty(&domains)?);
    }
    if domains.is_empty() {
        return say(format!(
            "{name} has no custom domains: add one with `gigalixir domains:add www.example.com`."
        ));
    }
    if domains.iter().any(|d| d.certificate.is_some()) {
        let rows: Vec<[String; 3]> = domains
            .into_iter()
            .map(|d| [d.fqdn, d.cname, d.certificate.unwrap_or_default()])
            .collect();
        return say(super::table(
            ["DOMAIN", "CNAME TARGET", "CERTIFICATE"],
            &rows,
        ));
    }
    let rows: Vec<[String; 2]> = domains.into_iter().map(|d| [d.fqdn, d.cname]).collect();
    say(super::table(["DOMAIN", "CNAME TARGET"], &rows))
}

/// What a refusal of a domain change says.
fn refused<'a>(name: &'a AppName, nothing: &'a str) -> impl FnOnce(ApiError) -> anyhow::Error + 'a {
    move |e| match e {
        ApiError::Invalid(errors) => anyhow!("{}: {nothing}", ApiError::Invalid(errors)),
        ApiError::NotFound(message) if message.contains("has no domain") => {
            anyhow!("{message} `gigalixir domains -a {name}` lists its domains.")
        }
        e => not_found(name)(e),
    }
}

/// `domains:add FQDN`.
pub fn add(ctx: &Ctx, app: Option<String>, fqdn: &str) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let auth = ctx.auth()?;
    let domain = ctx
        .client
        .add_domain(&auth, &name, fqdn)
        .map_err(refused(&name, "nothing was added"))?;
    say(format!(
        "Added {fqdn} to {name}.\nCreate a CNAME (or ALIAS) record with your DNS provider pointing {fqdn} to {cname}.",
        fqdn = domain.fqdn,
        cname = domain.cname
    ))
}

/// `domains:remove FQDN`.
pub fn remove(ctx: &Ctx, app: Option<String>, fqdn: &str) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let auth = ctx.auth()?;
    ctx.client
        .remove_domain(&auth, &name, fqdn)
        .map_err(refused(&name, "nothing was removed"))?;
    say(format!(
        "Removed {fqdn} from {name}: it no longer reaches the app."
    ))
}
