//! Config vars: `config`, `config:set`, `config:unset`, `config:copy`.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use gigalixir_core::domain::AppName;

use super::apps::not_found;
use super::{say, Ctx};
use crate::args::{ConfigCopyArgs, ConfigSetArgs};
use crate::client::ApiError;
use crate::prompt;

/// `config`.
pub fn show(ctx: &Ctx, app: Option<String>, json: bool) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let auth = ctx.auth()?;
    let config = ctx.client.configs(&auth, &name).map_err(not_found(&name))?;
    if json {
        return say(serde_json::to_string_pretty(&config)?);
    }
    if config.is_empty() {
        return say(format!(
            "{name} has no config vars: set some with `gigalixir config:set KEY=VALUE`."
        ));
    }
    say(table(&config))
}

/// KEY and VALUE columns; control characters in values are shown escaped (`\n`), so that
/// one var is one line (`--json` gives the values exactly).
fn table(config: &BTreeMap<String, String>) -> String {
    let rows: Vec<[String; 2]> = config
        .iter()
        .map(|(k, v)| [k.clone(), printable(v)])
        .collect();
    super::table(["KEY", "VALUE"], &rows)
}

pub(super) fn printable(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out
}

/// Splits `KEY=VALUE` assignments at their first `=`; a later assignment of the same key
/// wins. Refuses, before anything is sent, an assignment without `=` or without a key.
pub fn parse_assignments(assignments: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut configs = BTreeMap::new();
    for assignment in assignments {
        let Some((key, value)) = assignment.split_once('=') else {
            bail!(
                "`{assignment}` is not KEY=VALUE: write `{assignment}=value` (quote values with spaces: KEY=\"two words\"); nothing was set"
            );
        };
        if key.is_empty() {
            bail!("`{assignment}` has no key before `=`: write KEY=VALUE; nothing was set");
        }
        configs.insert(key.to_owned(), value.to_owned());
    }
    Ok(configs)
}

/// `config:set`.
pub fn set(ctx: &Ctx, args: ConfigSetArgs) -> anyhow::Result<()> {
    let configs = parse_assignments(&args.assignments)?;
    let name = ctx.app(args.app.app)?;
    let auth = ctx.auth()?;
    let keys = configs.keys().cloned().collect::<Vec<_>>().join(", ");
    ctx.client
        .set_configs(&auth, &name, configs, args.no_restart)
        .map_err(refused(&name, "nothing was set"))?;
    if args.no_restart {
        say(format!(
            "Set {keys} on {name} without a restart: the app gets it with its next release (a push or a config change)."
        ))
    } else {
        say(format!(
            "Set {keys} on {name}: a new release restarts the app with it (`gigalixir releases`, `gigalixir ps`)."
        ))
    }
}

/// `config:unset`.
pub fn unset(ctx: &Ctx, app: Option<String>, keys: Vec<String>) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let auth = ctx.auth()?;
    let mut unique = Vec::new();
    for key in keys {
        if !unique.contains(&key) {
            unique.push(key);
        }
    }
    ctx.client
        .unset_configs(&auth, &name, &unique)
        .map_err(refused(&name, "nothing was removed"))?;
    say(format!(
        "Removed {} from {name}: a new release restarts the app without it.",
        unique.join(", ")
    ))
}

/// `config:copy`.
pub fn copy(ctx: &Ctx, args: ConfigCopyArgs) -> anyhow::Result<()> {
    let parse = |raw: &str, flag: &str| {
        AppName::parse(raw).map_err(|e| anyhow!("{e}: check the app given with {flag}"))
    };
    let src = parse(&args.src, "-s")?;
    let dst = parse(&args.dst, "-d")?;
    let auth = ctx.auth()?;
    if !args.yes && prompt::interactive() {
        let question = format!(
            "Copy every config var of {src} into {dst}? Keys set on both take {src}'s value."
        );
        if !prompt::yes_no(&question)? {
            bail!("nothing was copied");
        }
    }
    let config = ctx
        .client
        .copy_configs(&auth, &src, &dst)
        .map_err(|e| match e {
            ApiError::NotFound(message) => {
                anyhow!("{message}: run `gigalixir apps` to see yours; nothing was copied")
            }
            ApiError::Invalid(errors) => {
                nothing_changed(ApiError::Invalid(errors), "nothing was copied")
            }
            e => anyhow!(e),
        })?;
    say(format!(
        "Copied the config of {src} into {dst}, which now has {} var{}: a new release restarts it.",
        config.len(),
        if config.len() == 1 { "" } else { "s" }
    ))
}

/// A refusal of a config change, in the user's terms: the platform's reason, and that
/// nothing changed (unless the reason says so already).
fn refused<'a>(name: &'a AppName, nothing: &'a str) -> impl FnOnce(ApiError) -> anyhow::Error + 'a {
    move |e| match e {
        ApiError::Invalid(errors) => nothing_changed(ApiError::Invalid(errors), nothing),
        e => not_found(name)(e),
    }
}

fn nothing_changed(e: ApiError, nothing: &str) -> anyhow::Error {
    let reason = e.to_string();
    if reason.contains("nothing was") {
        anyhow!(reason)
    } else {
        anyhow!("{reason}: {nothing}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn assignments_split_at_the_first_equals_sign() {
        let got = parse_assignments(&strings(&[
            "A=1",
            "URL=postgres://u:p@h/db?x=y=z",
            "EMPTY=",
            "SPACES=two words ",
            "MULTI=line one\nline two",
            "UNICODE=héllo ✓",
        ]))
        .expect("valid");
        assert_eq!(got["A"], "1");
        assert_eq!(got["URL"], "postgres://u:p@h/db?x=y=z");
        assert_eq!(got["EMPTY"], "");
        assert_eq!(got["SPACES"], "two words ");
        assert_eq!(got["MULTI"], "line one\nline two");
        assert_eq!(got["UNICODE"], "héllo ✓");
        assert_eq!(got.len(), 6);
    }

    #[test]
    fn a_later_assignment_of_a_key_wins() {
        let got = parse_assignments(&strings(&["A=1", "A=2"])).expect("valid");
        assert_eq!(got.len(), 1);
        assert_eq!(got["A"], "2");
    }

    #[test]
    fn assignments_without_equals_or_key_are_refused() {
        let err = parse_assignments(&strings(&["A=1", "FOO"])).expect_err("no =");
        assert!(err.to_string().contains("`FOO` is not KEY=VALUE"), "{err}");
        assert!(err.to_string().contains("nothing was set"), "{err}");
        let err = parse_assignments(&strings(&["=value"])).expect_err("no key");
        assert!(err.to_string().contains("has no key"), "{err}");
    }

    #[test]
    fn the_table_keeps_one_var_per_line() {
        let config: BTreeMap<String, String> = [
            ("DATABASE_URL", "ecto://u:p@db/prod"),
            ("MULTI", "a\nb\tc"),
            ("A", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            table(&config),
            "KEY           VALUE\n\
             A\n\
             DATABASE_URL  ecto://u:p@db/prod\n\
             MULTI         a\\nb\\tc"
        );
    }

    #[test]
    fn refusals_read_as_one_sentence() {
        let name = AppName::parse("my-app").expect("name");
        let e = refused(&name, "nothing was set")(ApiError::Invalid(
            gigalixir_core::wire::Errors::general(
                "config is larger than 32 kB (40000 bytes of keys and values, at most 32768); nothing was changed",
            ),
        ));
        assert_eq!(
            e.to_string(),
            "config is larger than 32 kB (40000 bytes of keys and values, at most 32768); nothing was changed"
        );
        let e = refused(&name, "nothing was set")(ApiError::Invalid(
            gigalixir_core::wire::Errors::field("key", "key `PORT` is reserved by the platform"),
        ));
        assert_eq!(
            e.to_string(),
            "key `PORT` is reserved by the platform: nothing was set"
        );
        let e = refused(&name, "nothing was set")(ApiError::NotFound("x".into()));
        assert!(e.to_string().contains("you have no app named `my-app`"));
    }
}
