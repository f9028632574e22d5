//! Processes: status (`ps`), scale, restart, logs, and where to SSH into a replica. Scale
//! and restart change the app's record and announce it (`app-scaled`,
//! `restart-requested`); the deploy function acts on the live release. Status, logs and SSH
//! access ask the runtime, and answer 503 where the API runs apart from it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use shared::domain::AppName;
use shared::messages::{Envelope, Event};
use shared::model::ReleaseStatus;
use shared::ports::runtime::{JobEvent, Replica, ReplicaState};
use shared::ports::Runtime;
use shared::wire::{AppStatus, Data, PodView, ScaleRequest, ScaleView, SshAccess, SshReplica};
use shared::PortError;

use crate::access::AppAccess;
use crate::apps::{reload, with_account_lock, with_record_lock, CLOUD, REGION};
use crate::error::{ApiError, ApiJson};
use crate::ApiState;

/// Most replicas an app may have.
pub const MAX_REPLICAS: i64 = shared::model::MAX_REPLICAS as i64;
/// Memory an account's replicas may take together, GB (replicas × size across its apps):
/// one app at the largest scale.
pub const ACCOUNT_CAPACITY_GB: f64 = 128.0;
/// Smallest and largest replica size, GB of memory.
pub const SIZE_RANGE: std::ops::RangeInclusive<f64> = 0.2..=8.0;
/// Lines of log sent when `num_lines` is not given.
pub const DEFAULT_LOG_LINES: usize = 30;
/// Most lines of past log one request may ask for.
pub const MAX_LOG_LINES: usize = 10_000;

fn runtime(state: &ApiState) -> Result<Arc<dyn Runtime>, ApiError> {
    state.runtime.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Process status, logs and SSH access are not available from this API: it runs apart from the platform's runtime.",
        )
    })
}

/// `GET /api/apps/NAME/status`: the app and its replicas (`gigalixir ps`).
pub async fn status(
    State(state): State<ApiState>,
    access: AppAccess,
) -> Result<Json<Data<AppStatus>>, ApiError> {
    let app = access.app;
    let runtime = runtime(&state)?;
    let replicas = runtime.replicas(&app.name).await?;
    let releases = state.store.releases(&app.name).await?;
    // The stack the app runs on: its newest deployed release's, else the one its owner set.
    let stack = releases
        .iter()
        .find(|r| r.status == shared::model::ReleaseStatus::Deployed)
        .map(|r| r.spec.slug.stack())
        .or(app.stack);
    let commits: BTreeMap<u32, Option<String>> = releases
        .into_iter()
        .map(|r| (r.version.0, r.spec.commit))
        .collect();
    let now = Utc::now();
    let pods: Vec<PodView> = replicas
        .into_iter()
        .map(|r| PodView {
            status: r.state,
            version: r.version.0,
            sha: commits.get(&r.version.0).cloned().flatten(),
            since: r.since,
            age: u64::try_from((now - r.since).num_seconds()).unwrap_or(0),
            host_index: r.index,
            name: r.name,
        })
        .collect();
    let running = pods
        .iter()
        .filter(|p| p.status == ReplicaState::Running)
        .count();
    Ok(Json(Data {
        data: AppStatus {
            unique_name: app.name.to_string(),
            size: app.size,
            replicas_desired: app.replicas,
            replicas_running: u32::try_from(running).unwrap_or(u32::MAX),
            cloud: CLOUD.into(),
            region: REGION.into(),
            stack: stack.map(|s| s.as_str().to_owned()),
            pods,
            jobs: runtime.jobs(&app.name).await?,
        },
    }))
}

/// `PUT /api/apps/NAME/scale` `{"replicas": N, "size": S}` (either may be absent): 0–16
/// replicas, 0.2–8 GB each. Announces `app-scaled`; 200 with what the app is scaled to.
pub async fn scale(
    State(state): State<ApiState>,
    access: AppAccess,
    ApiJson(body): ApiJson<ScaleRequest>,
) -> Result<Json<Data<ScaleView>>, ApiError> {
    let app = access.app;
    // Capacity is the owner's, whoever scales.
    let owner = app.owner.clone();
    if body.replicas.is_none() && body.size.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Give replicas, size or both.",
        ));
    }
    let replicas = match body.replicas {
        Some(n) if (0..=MAX_REPLICAS).contains(&n) => Some(n as u32),
        Some(_) => {
            return Err(ApiError::invalid(
                "replicas",
                format!("replicas must be between 0 and {MAX_REPLICAS}"),
            ))
        }
        None => None,
    };
    if let Some(size) = body.size {
        if !size.is_finite() || !SIZE_RANGE.contains(&size) {
            return Err(ApiError::invalid(
                "size",
                format!(
                    "size must be between {} and {} (GB of memory per replica)",
                    SIZE_RANGE.start(),
                    SIZE_RANGE.end()
                ),
            ));
        }
    }
    let app = with_record_lock(&state, &app.name, || async {
        let mut app = reload(&state, &app.name).await?;
        let before = f64::from(app.replicas) * app.size;
        if let Some(n) = replicas {
            app.replicas = n;
        }
        if let Some(size) = body.size {
            app.size = size;
        }
        // The account's capacity: replicas × size over all its apps, read and changed under
        // the account's lock. Scaling down is always allowed, even over the capacity.
        with_account_lock(&state, &owner, || async {
            let others: f64 = state
                .store
                .apps_of(&owner)
                .await?
                .iter()
                .filter(|a| a.name != app.name)
                .map(|a| f64::from(a.replicas) * a.size)
                .sum();
            let wanted = others + f64::from(app.replicas) * app.size;
            if wanted > ACCOUNT_CAPACITY_GB + 1e-9 && wanted > others + before + 1e-9 {
                return Err(ApiError::invalid(
                    "replicas",
                    format!(
                        "this would run {wanted:.1} GB (replicas × size across your apps); an account may run {ACCOUNT_CAPACITY_GB} GB: scale another app down first"
                    ),
                ));
            }
            state.store.update_app(&app).await?;
            Ok(())
        })
        .await?;
        Ok(app)
    })
    .await?;
    let event = Event::AppScaled {
        app: app.name.clone(),
    };
    state
        .bus
        .publish(&event.topic(), &Envelope::event(&event, None))
        .await?;
    tracing::info!(app = %app.name, replicas = app.replicas, size = app.size, "app scaled");
    crate::access::record(
        &state,
        &app.name,
        access.user.email.as_str(),
        "scale",
        format!("{} replica(s) of size {}", app.replicas, app.size),
    )
    .await;
    Ok(Json(Data {
        data: ScaleView {
            unique_name: app.name.to_string(),
            replicas: app.replicas,
            size: app.size,
        },
    }))
}

/// `PUT /api/apps/NAME/restart`: announces `restart-requested` (a rolling restart of the
/// live release). 422 when no release is live.
pub async fn restart(
    State(state): State<ApiState>,
    access: AppAccess,
) -> Result<Json<Data<Value>>, ApiError> {
    let app = access.app;
    let live = state
        .store
        .releases(&app.name)
        .await?
        .iter()
        .any(|r| r.status == ReleaseStatus::Deployed);
    if !live {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "{} has no running release to restart: deploy it first with `git push gigalixir main`.",
                app.name
            ),
        ));
    }
    let event = Event::RestartRequested {
        app: app.name.clone(),
    };
    state
        .bus
        .publish(&event.topic(), &Envelope::event(&event, None))
        .await?;
    tracing::info!(app = %app.name, "restart requested");
    crate::access::record(
        &state,
        &app.name,
        access.user.email.as_str(),
        "restart",
        String::new(),
    )
    .await;
    Ok(Json(Data { data: json!({}) }))
}

/// The query of `GET /api/apps/NAME/logs`, as text: GIGALIXIR's CLI sends Python's
/// `True`/`False`.
#[derive(Debug, Default, Deserialize)]
pub struct LogsQuery {
    num_lines: Option<String>,
    follow: Option<String>,
}

fn parse_lines(raw: Option<&str>) -> Result<usize, ApiError> {
    let bad = || {
        ApiError::invalid(
            "num_lines",
            format!("num_lines must be a whole number from 0 to {MAX_LOG_LINES}"),
        )
    };
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(DEFAULT_LOG_LINES),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n <= MAX_LOG_LINES => Ok(n),
            _ => Err(bad()),
        },
    }
}

fn parse_follow(raw: Option<&str>) -> Result<bool, ApiError> {
    match raw.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(_) => Err(ApiError::invalid("follow", "follow must be true or false")),
    }
}

/// `GET /api/apps/NAME/logs?num_lines=N&follow=true|false`: the last N lines (default 30)
/// as `text/plain`, one per line; with `follow`, then new lines as they come until the
/// client goes away.
pub async fn logs(
    State(state): State<ApiState>,
    access: AppAccess,
    Query(query): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let app = access.app;
    let lines = parse_lines(query.num_lines.as_deref())?;
    let follow = parse_follow(query.follow.as_deref())?;
    let runtime = runtime(&state)?;
    let stream = runtime.logs(&app.name, lines, follow).await?;
    let body = Body::from_stream(stream.map(|mut line| {
        if !line.ends_with('\n') {
            line.push('\n');
        }
        Ok::<_, Infallible>(line)
    }));
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response())
}

/// How long a one-off job may run unless the request says otherwise (`run`).
pub const JOB_DEFAULT_SECS: u64 = 300;
/// The longest a one-off job may run.
pub const JOB_MAX_SECS: u64 = 3600;
/// One-off jobs an app may run at once (each takes a replica's memory).
pub const MAX_JOBS_PER_APP: usize = 3;
/// What ends the output of a followed job, then its exit code (a NUL byte first: no line
/// of output is taken for it).
pub const JOB_EXIT_MARKER: &str = "\0gigalixir-exit:";

/// `POST /api/apps/NAME/run` `{"command": [..] | "…", "timeout": SECONDS, "follow": bool}`.
#[derive(Debug, Deserialize)]
pub struct RunRequest {
    command: CommandLine,
    timeout: Option<u64>,
    #[serde(default)]
    follow: bool,
}

/// A command as GIGALIXIR's CLI sends it (its words) or as one shell command line.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CommandLine {
    /// Words, each quoted for the shell (one word is taken as a command line).
    Words(Vec<String>),
    /// A shell command line.
    Line(String),
}

impl CommandLine {
    fn to_shell(&self) -> String {
        match self {
            CommandLine::Line(line) => line.clone(),
            CommandLine::Words(words) if words.len() == 1 => words[0].clone(),
            CommandLine::Words(words) => words
                .iter()
                .map(|w| format!("'{}'", w.replace('\'', "'\\''")))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// `run`: the command once, in a container of its own with the app's live release and
/// config (not a web replica), killed after `timeout` seconds (default 300, at most 3600).
/// It shows in `ps` while it runs. GIGALIXIR's CLI (no `follow`) gets 200 with the job's
/// name at once (its output is in `logs` while it runs); with `follow`, the answer is its
/// output as it comes, then [`JOB_EXIT_MARKER`] and its exit code (137: killed at the
/// limit).
pub async fn run(
    State(state): State<ApiState>,
    access: AppAccess,
    ApiJson(body): ApiJson<RunRequest>,
) -> Result<Response, ApiError> {
    let command = body.command.to_shell();
    if command.trim().is_empty() {
        return Err(ApiError::invalid(
            "command",
            "is empty: give the command to run",
        ));
    }
    if command.contains('\0') {
        return Err(ApiError::invalid("command", "has a NUL character"));
    }
    let secs = body.timeout.unwrap_or(JOB_DEFAULT_SECS);
    if !(1..=JOB_MAX_SECS).contains(&secs) {
        return Err(ApiError::invalid(
            "timeout",
            format!("is 1 to {JOB_MAX_SECS} seconds"),
        ));
    }
    let runtime = runtime(&state)?;
    let app = access.app;
    if runtime.jobs(&app.name).await?.len() >= MAX_JOBS_PER_APP {
        return Err(ApiError::invalid(
            "command",
            format!(
                "{} runs {MAX_JOBS_PER_APP} jobs already, as many as an app may at once: wait for one to end (`gigalixir ps`)",
                app.name
            ),
        ));
    }
    let release = state
        .store
        .releases(&app.name)
        .await?
        .into_iter()
        .filter(|r| r.status == ReleaseStatus::Deployed)
        .max_by_key(|r| r.version)
        .ok_or_else(|| {
            ApiError::invalid(
                "command",
                "the app has no running release to run it with: `git push gigalixir main` first",
            )
        })?;
    let spec = shared::ports::runtime::ReleaseSpec::of(
        &app,
        &release,
        &state.app_domain,
        1,
        std::time::Duration::from_secs(secs),
    );
    let job = match runtime
        .run_job(&spec, &command, std::time::Duration::from_secs(secs))
        .await
    {
        Ok(job) => job,
        Err(PortError::Invalid(why)) => {
            return Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, why))
        }
        Err(err) => return Err(err.into()),
    };
    // The command may hold secrets: the log and the activity name the job only.
    tracing::info!(app = %app.name, job = %job.name, timeout = secs, "job started");
    crate::access::record(
        &state,
        &app.name,
        access.user.email.as_str(),
        "run",
        format!("{} ({}, at most {secs} s)", job.name, release.version),
    )
    .await;
    if !body.follow {
        return Ok(Json(Data {
            data: json!({"name": job.name, "version": release.version.0, "timeout": secs}),
        })
        .into_response());
    }
    let stream = job.events.map(|event| {
        Ok::<_, Infallible>(match event {
            JobEvent::Line(mut line) => {
                line.push('\n');
                line
            }
            JobEvent::Exited(code) => format!("{JOB_EXIT_MARKER}{code}\n"),
        })
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The login name the replicas' SSH servers admit (they run as this unprivileged user).
pub const SSH_USER: &str = "app";

/// Where to SSH into the app: its running replicas that have an SSH server, by slot (of
/// two in one slot during a deploy, the newer release first). 404 when there is none.
pub fn ssh_access(app: &AppName, replicas: &[Replica]) -> Result<SshAccess, ApiError> {
    let mut running: Vec<(&Replica, std::net::SocketAddr)> = replicas
        .iter()
        .filter(|r| r.state == ReplicaState::Running)
        .filter_map(|r| r.ssh.map(|addr| (r, addr)))
        .collect();
    running.sort_by_key(|(r, _)| (r.index, std::cmp::Reverse(r.version)));
    let Some((_, first)) = running.first() else {
        let message = if replicas.iter().any(|r| r.state == ReplicaState::Running) {
            format!("App {app} has no replica with an SSH server: redeploy it (`gigalixir restart`) to get one.")
        } else if replicas.iter().any(|r| r.state == ReplicaState::Starting) {
            format!("App {app} has no running replica yet: its replicas are starting; try again in a moment.")
        } else {
            format!(
                "App {app} has no running replica: deploy it first with `git push gigalixir main`."
            )
        };
        return Err(ApiError::not_found(message));
    };
    Ok(SshAccess {
        ssh_ip: first.ip().to_string(),
        ssh_port: first.port(),
        ssh_user: SSH_USER.to_owned(),
        replicas: running
            .iter()
            .map(|(r, addr)| SshReplica {
                index: r.index,
                host: addr.ip().to_string(),
                port: addr.port(),
                version: r.version.0,
            })
            .collect(),
    })
}

/// `DELETE /api/apps/NAME/pods/POD` (`ps:kill`): kills one replica as a crash would; the
/// runtime brings it back as it brings back crashed ones. 202; 404 for a replica the app
/// does not have.
pub async fn kill(
    State(state): State<ApiState>,
    access: AppAccess,
    axum::extract::Path((_, pod)): axum::extract::Path<(String, String)>,
) -> Result<(StatusCode, Json<Data<serde_json::Value>>), ApiError> {
    let runtime = runtime(&state)?;
    let app = access.app;
    match runtime.kill(&app.name, &pod).await {
        Ok(()) => {}
        Err(PortError::NotFound) => {
            return Err(ApiError::not_found(format!(
                "`{}` has no running replica `{pod}`: `gigalixir ps` lists them.",
                app.name
            )))
        }
        Err(PortError::Invalid(why)) => {
            return Err(ApiError::new(StatusCode::NOT_IMPLEMENTED, why));
        }
        Err(err) => return Err(err.into()),
    }
    crate::access::record(
        &state,
        &app.name,
        access.user.email.as_str(),
        "ps:kill",
        pod.clone(),
    )
    .await;
    tracing::info!(app = %app.name, replica = %pod, "replica killed");
    Ok((
        StatusCode::ACCEPTED,
        Json(Data {
            data: serde_json::json!({"name": pod, "status": "killed"}),
        }),
    ))
}

/// `GET /api/apps/NAME/ssh_ip`: where the app's replicas answer SSH (login `app`). 503
/// without the runtime; 404 when no replica runs.
pub async fn ssh_ip(
    State(state): State<ApiState>,
    access: AppAccess,
) -> Result<Json<Data<SshAccess>>, ApiError> {
    let app = access.app;
    let runtime = runtime(&state)?;
    let replicas = runtime.replicas(&app.name).await?;
    Ok(Json(Data {
        data: ssh_access(&app.name, &replicas)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::domain::ReleaseVersion;

    fn replica(index: u32, version: u32, state: ReplicaState, port: Option<u16>) -> Replica {
        Replica {
            name: format!("gx-local-my-app-v{version}-{index}"),
            index,
            version: ReleaseVersion(version),
            state,
            since: Utc::now(),
            ssh: port.map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p))),
        }
    }

    #[test]
    fn ssh_goes_to_the_lowest_running_slot_of_the_newest_release() {
        let app = AppName::parse("my-app").expect("name");
        let access = ssh_access(
            &app,
            &[
                replica(1, 4, ReplicaState::Running, Some(40001)),
                replica(0, 3, ReplicaState::Running, Some(30000)),
                replica(0, 4, ReplicaState::Running, Some(40000)),
                replica(2, 4, ReplicaState::Starting, Some(40002)),
                replica(3, 4, ReplicaState::Running, None),
            ],
        )
        .expect("access");
        assert_eq!(
            (
                access.ssh_ip.as_str(),
                access.ssh_port,
                access.ssh_user.as_str()
            ),
            ("127.0.0.1", 40000, "app")
        );
        let slots: Vec<(u32, u16, u32)> = access
            .replicas
            .iter()
            .map(|r| (r.index, r.port, r.version))
            .collect();
        assert_eq!(slots, [(0, 40000, 4), (0, 30000, 3), (1, 40001, 4)]);
    }

    #[test]
    fn ssh_without_a_running_replica_says_why() {
        let app = AppName::parse("my-app").expect("name");
        let message = |replicas: &[Replica]| {
            let e = ssh_access(&app, replicas).expect_err("no access");
            assert_eq!(e.status(), StatusCode::NOT_FOUND);
            e.message()
        };
        assert_eq!(
            message(&[replica(0, 1, ReplicaState::Stopped, Some(1))]),
            "App my-app has no running replica: deploy it first with `git push gigalixir main`."
        );
        assert!(message(&[replica(0, 1, ReplicaState::Starting, Some(1))]).contains("starting"));
        assert!(message(&[replica(0, 1, ReplicaState::Running, None)])
            .contains("no replica with an SSH server"));
    }

    #[test]
    fn num_lines_defaults_and_bounds() {
        assert_eq!(parse_lines(None).ok(), Some(DEFAULT_LOG_LINES));
        assert_eq!(parse_lines(Some("")).ok(), Some(DEFAULT_LOG_LINES));
        assert_eq!(parse_lines(Some("20")).ok(), Some(20));
        assert_eq!(parse_lines(Some("0")).ok(), Some(0));
        for bad in ["-1", "abc", "1.5", "10001"] {
            assert!(parse_lines(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn follow_reads_pythons_booleans_too() {
        for (raw, want) in [
            (None, false),
            (Some("true"), true),
            (Some("True"), true),
            (Some("false"), false),
            (Some("False"), false),
            (Some("1"), true),
            (Some("0"), false),
        ] {
            assert_eq!(parse_follow(raw).ok(), Some(want), "{raw:?}");
        }
        assert!(parse_follow(Some("maybe")).is_err());
    }
}
