//! Processes: `ps`, `ps:scale`, `restart` (`ps:restart`), `logs`.

use std::io::Write;

use anyhow::anyhow;
use gigalixir_core::ports::runtime::ReplicaState;
use gigalixir_core::wire::{AppStatus, ScaleView};

use super::apps::not_found;
use super::{say, Ctx};
use crate::args::{
    CanarySetArgs, CanaryUnsetArgs, LogsArgs, MaintenanceArgs, PsKillArgs, RunArgs, ScaleArgs,
};
use crate::client::ApiError;

/// `ps`.
pub fn status(ctx: &Ctx, app: Option<String>, json: bool) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let auth = ctx.auth()?;
    let status = ctx.client.status(&auth, &name).map_err(not_found(&name))?;
    if json {
        return say(serde_json::to_string_pretty(&status)?);
    }
    say(render(&status))
}

fn plural(n: u32, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// A duration in seconds as people say it: `42s`, `5m`, `3h`, `2d`.
fn ago(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn state(state: ReplicaState) -> &'static str {
    match state {
        ReplicaState::Running => "running",
        ReplicaState::Starting => "starting",
        ReplicaState::Stopped => "stopped",
    }
}

/// A summary line, then one line per replica.
fn render(status: &AppStatus) -> String {
    let head = format!(
        "{}: {} of {} running, {} GB each",
        status.unique_name,
        status.replicas_running,
        plural(status.replicas_desired, "replica"),
        status.size
    );
    if status.pods.is_empty() {
        let why = if status.replicas_desired == 0 {
            "Scaled to 0 replicas: `gigalixir ps:scale -r 1` starts one."
        } else {
            "No replicas: deploy with `git push gigalixir main`."
        };
        return format!("{head}\n{why}");
    }
    let rows: Vec<[String; 4]> = status
        .pods
        .iter()
        .map(|p| {
            [
                p.name.clone(),
                state(p.status).to_owned(),
                format!("v{}", p.version),
                format!(
                    "{} ({} ago)",
                    p.since.format("%Y-%m-%d %H:%M:%S UTC"),
                    ago(p.age)
                ),
            ]
        })
        .collect();
    let table = super::table(["REPLICA", "STATUS", "VERSION", "SINCE"], &rows);
    if status.jobs.is_empty() {
        return format!("{head}\n{table}");
    }
    let jobs: Vec<[String; 3]> = status
        .jobs
        .iter()
        .map(|j| {
            [
                j.name.clone(),
                format!("v{}", j.version),
                j.since.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            ]
        })
        .collect();
    let jobs = super::table(["JOB", "VERSION", "SINCE"], &jobs);
    format!("{head}\n{table}\n{jobs}")
}

/// `ps:scale`.
pub fn scale(ctx: &Ctx, args: ScaleArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.app.app)?;
    let auth = ctx.auth()?;
    let scaled = ctx
        .client
        .scale(&auth, &name, args.replicas, args.size)
        .map_err(|e| match e {
            ApiError::Invalid(errors) => {
                anyhow!("{}: nothing was changed", ApiError::Invalid(errors))
            }
            e => not_found(&name)(e),
        })?;
    say(scaled_message(&scaled))
}

fn scaled_message(s: &ScaleView) -> String {
    if s.replicas == 0 {
        format!(
            "Scaled {} to 0 replicas: it stops serving. `gigalixir ps:scale -r 1` starts it again.",
            s.unique_name
        )
    } else {
        format!(
            "Scaled {} to {} of {} GB: `gigalixir ps` shows them.",
            s.unique_name,
            plural(s.replicas, "replica"),
            s.size
        )
    }
}

/// `restart` / `ps:restart`.
pub fn restart(ctx: &Ctx, app: Option<String>) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let auth = ctx.auth()?;
    ctx.client.restart(&auth, &name).map_err(not_found(&name))?;
    say(format!(
        "Restarting {name} one replica at a time, each new one healthy before the old one stops: `gigalixir ps` shows the progress."
    ))
}

/// `run`: the job's output, then its exit code as this command's.
pub fn run_job(ctx: &Ctx, args: RunArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.app.app)?;
    let auth = ctx.auth()?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let code = ctx
        .client
        .run_job(&auth, &name, &args.command, args.timeout, |chunk| {
            out.write_all(chunk)?;
            out.flush()
        })
        .map_err(|e| match e.downcast::<ApiError>() {
            Ok(api) => not_found(&name)(api),
            Err(e) => e,
        })?;
    match code {
        0 => Ok(()),
        137 => {
            eprintln!("The job was killed: it ran longer than {} s.", args.timeout);
            Err(super::Exit(137).into())
        }
        code => Err(super::Exit(u8::try_from(code).unwrap_or(1)).into()),
    }
}

/// `canary`, `canary:set` and `canary:unset` print what the app's canary is then.
fn say_canary(
    name: &gigalixir_core::domain::AppName,
    data: &serde_json::Value,
) -> anyhow::Result<()> {
    match data["canary"].as_str() {
        Some(canary) => say(format!(
            "{}% of {name}'s new visitors go to {canary} (each browser stays on its side).",
            data["weight"]
        )),
        None => say(format!("{name} has no canary: it serves every request.")),
    }
}

/// `canary`.
pub fn canary(ctx: &Ctx, app: Option<String>) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let auth = ctx.auth()?;
    let data = ctx.client.canary(&auth, &name).map_err(not_found(&name))?;
    say_canary(&name, &data)
}

/// `canary:set`.
pub fn set_canary(ctx: &Ctx, args: CanarySetArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.app.app)?;
    let auth = ctx.auth()?;
    let data = ctx
        .client
        .set_canary(&auth, &name, args.canary.as_deref(), args.weight)
        .map_err(not_found(&name))?;
    say_canary(&name, &data)
}

/// `canary:unset`.
pub fn unset_canary(ctx: &Ctx, args: CanaryUnsetArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.app.app)?;
    let auth = ctx.auth()?;
    let data = ctx
        .client
        .unset_canary(&auth, &name, &args.canary)
        .map_err(not_found(&name))?;
    say_canary(&name, &data)
}

/// `ps:kill`: asks first at a terminal, as GIGALIXIR's CLI does.
pub fn kill(ctx: &Ctx, args: PsKillArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.app.app)?;
    crate::prompt::confirm(
        args.yes,
        &format!("Kill {} of {name}?", args.pod),
        "nothing was killed",
    )?;
    let auth = ctx.auth()?;
    ctx.client
        .kill(&auth, &name, &args.pod)
        .map_err(|e| match e {
            // The app is there; the replica is not.
            crate::client::ApiError::NotFound(why) if why.contains("replica") => {
                anyhow::anyhow!(why)
            }
            e => not_found(&name)(e),
        })?;
    say(format!(
        "Killed {}: the platform starts it again within seconds (`gigalixir ps`).",
        args.pod
    ))
}

/// `maintenance:on` / `maintenance:off`: asks first at a terminal, as GIGALIXIR's CLI does.
pub fn maintenance(ctx: &Ctx, args: MaintenanceArgs, enable: bool) -> anyhow::Result<()> {
    let name = ctx.app(args.app.app)?;
    let question = if enable {
        format!("Put {name} in maintenance (every request answered 503)?")
    } else {
        format!("Take {name} out of maintenance?")
    };
    crate::prompt::confirm(args.yes, &question, "nothing changed")?;
    let auth = ctx.auth()?;
    ctx.client
        .set_maintenance(&auth, &name, enable)
        .map_err(not_found(&name))?;
    if enable {
        say(format!(
            "{name} is in maintenance: requests get 503 and its /maintenance.html (or a plain page) within a second; SSH and `ps:run` still work. `gigalixir maintenance:off` ends it."
        ))
    } else {
        say(format!(
            "{name} is out of maintenance: it serves requests again."
        ))
    }
}

/// `logs`: prints the log as it streams, until the platform ends it (`--no_tail`) or
/// Ctrl-C.
pub fn logs(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<()> {
    let name = ctx.app(args.app.app)?;
    let auth = ctx.auth()?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    ctx.client
        .logs(&auth, &name, args.num, !args.no_tail, |chunk| {
            out.write_all(chunk)?;
            out.flush()
        })
        .map_err(|e| match e.downcast::<ApiError>() {
            Ok(api) => not_found(&name)(api),
            Err(other) => other,
        })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use gigalixir_core::wire::PodView;

    use super::*;

    fn pod(index: u32, status: ReplicaState, version: u32, age: u64) -> PodView {
        PodView {
            name: format!("gx-local-my-app-v{version}-{index}-abc123"),
            status,
            version,
            sha: Some("1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d".into()),
            since: Utc
                .with_ymd_and_hms(2024, 5, 1, 9, 3, index)
                .single()
                .expect("a date"),
            age,
            host_index: index,
        }
    }

    fn status(desired: u32, pods: Vec<PodView>) -> AppStatus {
        AppStatus {
            unique_name: "my-app".into(),
            size: 0.5,
            replicas_desired: desired,
            replicas_running: pods
                .iter()
                .filter(|p| p.status == ReplicaState::Running)
                .count() as u32,
            cloud: "local".into(),
            region: "local".into(),
            stack: None,
            pods,
            jobs: Vec::new(),
        }
    }

    #[test]
    fn ps_lists_replicas_with_version_status_and_age() {
        let s = status(
            3,
            vec![
                pod(0, ReplicaState::Running, 3, 42),
                pod(1, ReplicaState::Running, 3, 300),
                pod(2, ReplicaState::Starting, 4, 7200),
            ],
        );
        assert_eq!(
            render(&s),
            "my-app: 2 of 3 replicas running, 0.5 GB each\n\
             REPLICA                      STATUS    VERSION  SINCE\n\
             gx-local-my-app-v3-0-abc123  running   v3       2024-05-01 09:03:00 UTC (42s ago)\n\
             gx-local-my-app-v3-1-abc123  running   v3       2024-05-01 09:03:01 UTC (5m ago)\n\
             gx-local-my-app-v4-2-abc123  starting  v4       2024-05-01 09:03:02 UTC (2h ago)"
        );
    }

    #[test]
    fn ps_without_replicas_says_what_to_do() {
        assert_eq!(
            render(&status(1, vec![])),
            "my-app: 0 of 1 replica running, 0.5 GB each\nNo replicas: deploy with `git push gigalixir main`."
        );
        assert!(render(&status(0, vec![])).contains("ps:scale -r 1"));
    }

    #[test]
    fn ages_read_in_the_largest_unit() {
        assert_eq!(ago(0), "0s");
        assert_eq!(ago(59), "59s");
        assert_eq!(ago(60), "1m");
        assert_eq!(ago(3599), "59m");
        assert_eq!(ago(3600), "1h");
        assert_eq!(ago(86_400 * 3 + 5), "3d");
    }

    #[test]
    fn scale_messages_name_the_new_shape() {
        let s = |replicas| ScaleView {
            unique_name: "my-app".into(),
            replicas,
            size: 0.5,
        };
        assert_eq!(
            scaled_message(&s(3)),
            "Scaled my-app to 3 replicas of 0.5 GB: `gigalixir ps` shows them."
        );
        assert!(scaled_message(&s(1)).contains("1 replica of"));
        assert!(scaled_message(&s(0)).contains("stops serving"));
    }

    #[test]
    fn replica_states_read_as_the_api_spells_them() {
        for s in [
            ReplicaState::Running,
            ReplicaState::Starting,
            ReplicaState::Stopped,
        ] {
            assert_eq!(
                serde_json::to_value(s).expect("json"),
                serde_json::Value::from(state(s))
            );
        }
    }
}
