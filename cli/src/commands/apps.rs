//! Apps: `create app`/`apps:create`, `apps`, `apps:info`, `apps:destroy`, `git:remote`.

use anyhow::{anyhow, bail};
use gigalixir_core::domain::AppName;
use gigalixir_core::stack::Stack;
use gigalixir_core::wire::AppView;

use super::{say, Ctx};
use crate::client::{ApiError, Auth};
use crate::git::{self, RemoteChange};
use crate::prompt;

fn parse_name(raw: &str) -> anyhow::Result<AppName> {
    AppName::parse(raw).map_err(|e| anyhow!("{e}: choose another name; nothing was created"))
}

/// How an app without a stack of its own shows.
const AUTO: &str = "auto";
const AUTO_LONG: &str = "auto (each build picks the stack with the versions the app asks for)";

/// `stack:set`.
pub fn set_stack(ctx: &Ctx, app: Option<String>, stack: &str) -> anyhow::Result<()> {
    let stack = match stack.trim() {
        "auto" | "" => None,
        s => Some(Stack::parse(s).map_err(|e| anyhow!("{e}, or auto; nothing was changed"))?),
    };
    let name = ctx.app(app)?;
    let auth = ctx.auth()?;
    ctx.client
        .set_stack(&auth, &name, stack)
        .map_err(not_found(&name))?;
    say(match stack {
        Some(stack) => format!(
            "{name} now builds on stack {stack} ({}); the next push starts from an empty build cache.",
            stack_versions(stack)
        ),
        None => format!(
            "{name} has no stack of its own: each build picks the stack with the Elixir and Erlang versions the app asks for."
        ),
    })
}

fn stack_versions(stack: Stack) -> String {
    let v = stack.nominal();
    let mut text = format!("Erlang/OTP {}, Elixir {}", v.otp, v.elixir);
    if stack.moving() {
        text.push_str(", Debian testing: moves");
    }
    text
}

/// An app lookup's 404 in the user's terms.
pub(super) fn not_found(name: &AppName) -> impl FnOnce(ApiError) -> anyhow::Error + '_ {
    move |e| match e {
        ApiError::NotFound(_) => {
            anyhow!("you have no app named `{name}`: run `gigalixir apps` to see yours")
        }
        e => anyhow!(e),
    }
}

/// `create app NAME` / `apps:create -n NAME` / `create -n NAME`.
pub fn create(ctx: &Ctx, name: Option<String>, stack: Option<String>) -> anyhow::Result<()> {
    let name = name.as_deref().map(parse_name).transpose()?;
    let stack = stack
        .as_deref()
        .map(|s| Stack::parse(s).map_err(|e| anyhow!("{e}; nothing was created")))
        .transpose()?;
    let auth = ctx.auth()?;
    let app = ctx
        .client
        .create_app(&auth, name.as_ref(), stack)
        .map_err(|e| match (&name, e) {
            (Some(name), e) if e.is_invalid("unique_name", "taken") => anyhow!(
                "the app name `{name}` is already taken: choose another name; nothing was created"
            ),
            (_, ApiError::Invalid(errors)) => {
                anyhow!("{}: nothing was created", ApiError::Invalid(errors))
            }
            (_, e) => anyhow!(e),
        })?;
    let name = AppName::parse(&app.unique_name)
        .map_err(|e| anyhow!("the platform created an app with a name this CLI refuses ({e})"))?;
    match stack {
        Some(stack) => say(format!("Created app {name} on stack {stack}."))?,
        None => say(format!("Created app {name}."))?,
    }
    if !git::is_repository(&ctx.cwd) {
        return say(format!(
            "This directory is not in a git repository, so no git remote was added: inside your project, run `gigalixir git:remote {name}`."
        ));
    }
    let url = ctx.api().git_remote(&name);
    match git::set_remote(&ctx.cwd, git::REMOTE, &url) {
        Ok(change) => say(remote_message(&change, &url)),
        Err(e) => Err(anyhow!(
            "created app {name}, but could not set the git remote `{}` ({e:#}): run `gigalixir git:remote {name}` in your repository",
            git::REMOTE
        )),
    }
}

fn remote_message(change: &RemoteChange, url: &str) -> String {
    let remote = git::REMOTE;
    let what = match change {
        RemoteChange::Added => format!("Added git remote `{remote}` → {url}."),
        RemoteChange::Replaced(old) => {
            format!("Pointed git remote `{remote}` at {url} (it was {old}).")
        }
        RemoteChange::Unchanged => format!("Git remote `{remote}` already points at {url}."),
    };
    format!("{what}\nDeploy with `git push {remote} main` (or master).")
}

/// `apps`.
pub fn list(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let auth = ctx.auth()?;
    let apps = ctx.client.apps(&auth)?;
    if json {
        return say(serde_json::to_string_pretty(&apps)?);
    }
    if apps.is_empty() {
        return say("You have no apps yet: create one with `gigalixir create app NAME` inside your project.");
    }
    say(table(&apps))
}

fn table(apps: &[AppView]) -> String {
    let rows: Vec<[String; 4]> = apps
        .iter()
        .map(|a| {
            [
                a.unique_name.clone(),
                a.replicas.to_string(),
                a.size.to_string(),
                a.stack.clone().unwrap_or_else(|| AUTO.into()),
            ]
        })
        .collect();
    super::table(["NAME", "REPLICAS", "SIZE", "STACK"], &rows)
}

/// `apps:info`.
pub fn info(ctx: &Ctx, app: Option<String>, json: bool) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let auth = ctx.auth()?;
    let app = ctx.client.app(&auth, &name).map_err(not_found(&name))?;
    if json {
        return say(serde_json::to_string_pretty(&app)?);
    }
    say(format!(
        "name:        {}\nreplicas:    {}\nsize:        {} GB\nstack:       {}\ncloud:       {}\nregion:      {}\nmaintenance: {}\ngit remote:  {}",
        app.unique_name,
        app.replicas,
        app.size,
        app.stack.as_deref().unwrap_or(AUTO_LONG),
        app.cloud,
        app.region,
        if app.maintenance { "on" } else { "off" },
        ctx.api().git_remote(&name)
    ))
}

/// `apps:destroy`.
pub fn destroy(ctx: &Ctx, app: Option<String>, yes: bool) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let auth: Auth = ctx.auth()?;
    // Look it up first, so nobody is asked to confirm the destruction of a typo.
    ctx.client.app(&auth, &name).map_err(not_found(&name))?;
    if !yes {
        if !prompt::interactive() {
            bail!(
                "refusing to destroy {name} without confirmation (no terminal to ask on): pass -y to destroy it"
            );
        }
        eprintln!("This destroys {name} with its releases and configuration; it cannot be undone.");
        let typed = prompt::line(&format!("Type the app name ({name}) to confirm: "))?;
        if typed != name.as_str() {
            bail!("`{typed}` is not `{name}`: nothing was destroyed");
        }
    }
    ctx.client
        .destroy_app(&auth, &name)
        .map_err(not_found(&name))?;
    say(format!("Destroyed app {name}."))?;
    let remote = git::remote_url(&ctx.cwd, git::REMOTE);
    if remote.as_deref() == Some(ctx.api().git_remote(&name).as_str()) {
        say(format!(
            "This repository's `{r}` remote still points at it: remove it with `git remote remove {r}`.",
            r = git::REMOTE
        ))?;
    }
    Ok(())
}

/// `git:remote NAME`.
pub fn git_remote(ctx: &Ctx, name: Option<String>) -> anyhow::Result<()> {
    let raw = name.ok_or_else(|| anyhow!("no app given: pass the app's name"))?;
    let name = AppName::parse(&raw)
        .map_err(|e| anyhow!("{e}: check the name (`gigalixir apps` lists yours)"))?;
    if !git::is_repository(&ctx.cwd) {
        bail!(
            "this directory is not in a git repository: run this inside your project (or `git init` first)"
        );
    }
    let auth = ctx.auth()?;
    ctx.client.app(&auth, &name).map_err(not_found(&name))?;
    let url = ctx.api().git_remote(&name);
    let change = git::set_remote(&ctx.cwd, git::REMOTE, &url)?;
    say(remote_message(&change, &url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, replicas: u32, size: f64) -> AppView {
        AppView {
            unique_name: name.into(),
            size,
            replicas,
            cloud: "local".into(),
            region: "local".into(),
            stack: None,
            maintenance: false,
        }
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&[app("a-long-app-name", 1, 0.5), app("abc", 12, 1.0)]);
        assert_eq!(
            t,
            "NAME             REPLICAS  SIZE  STACK\n\
             a-long-app-name  1         0.5   auto\n\
             abc              12        1     auto"
        );
    }
}
