//! `bench-deploy`: cold and warm push-to-live of the `hello` fixture on a real platform,
//! each split into the pipeline's steps, printed as JSON. Run by `scripts/bench-deploy`.
//!
//! - cold: a new app, no build cache; warm: one changed line, cache present.
//! - push_to_live_ms: from `git push` starting to the router serving the new body.
//! - steps from the build's state history: receive (push start → build recorded, includes
//!   sending the pack and archiving), queue (→ a builder starts), build (container run,
//!   including the buildpack's own compile and `mix release`), upload, release, deploy
//!   (start the release, wait for its port, switch traffic; includes the app's boot).
//! - overhead_ms: push_to_live minus the buildpack's compile and release assembly and the
//!   app's boot: what the platform itself costs.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gigalixir_tests::{require_images, texts, Platform};
use serde_json::{json, Value};
use shared::domain::AppName;
use shared::embedded::SqliteStore;
use shared::model::BuildState;
use shared::ports::Store;

fn ms(a: DateTime<Utc>, b: DateTime<Utc>) -> i64 {
    (b - a).num_milliseconds()
}

fn seconds_after(lines: &[String], marker: &str) -> Option<f64> {
    lines.iter().find_map(|l| {
        let rest = &l[l.find(marker)? + marker.len()..];
        rest.trim()
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .ok()
    })
}

async fn measure(p: &Platform, repo: &Path, app: &str, body: &str) -> anyhow::Result<Value> {
    let started_at = Utc::now();
    let t0 = Instant::now();
    let out = p.git(repo, &["push", "gigalixir", "master"]);
    let push_ms = t0.elapsed().as_millis();
    anyhow::ensure!(out.status.success(), "push failed: {:?}", texts(&out));
    let deadline = Instant::now() + Duration::from_secs(120);
    while p.get_app(app, "/").1 != body {
        anyhow::ensure!(Instant::now() < deadline, "the new release never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let live_ms = t0.elapsed().as_millis() as i64;
    let store = SqliteStore::open(&p.data_dir().join("store.db"))?;
    let build = store
        .builds_of(&AppName::parse(app)?)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no build"))?;
    let at = |s: BuildState| {
        build
            .history
            .iter()
            .find(|(st, _)| *st == s)
            .map(|(_, t)| *t)
    };
    let (Some(building), Some(built), Some(uploaded), Some(released), Some(deployed)) = (
        at(BuildState::Building),
        at(BuildState::Built),
        at(BuildState::Uploaded),
        at(BuildState::Released),
        at(BuildState::Deployed),
    ) else {
        anyhow::bail!("incomplete build history: {:?}", build.history);
    };
    let lines: Vec<String> = store
        .build_log(&build.id, 0, 100_000)
        .await?
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    let compile_s = seconds_after(&lines, "Compiled in").unwrap_or(0.0);
    let assemble_s = seconds_after(&lines, "Release assembled in").unwrap_or(0.0);
    let boot_ms = lines
        .iter()
        .find_map(|l| {
            let rest = &l[l.find("is up (")? + 7..];
            rest.split_whitespace().next()?.parse::<i64>().ok()
        })
        .unwrap_or(0);
    let buildpack_ms = ((compile_s + assemble_s) * 1000.0) as i64;
    Ok(json!({
        "push_to_live_ms": live_ms,
        "git_push_exit_ms": push_ms,
        "steps_ms": {
            "receive": ms(started_at, build.created_at),
            "queue": ms(build.created_at, building),
            "build": ms(building, built),
            "upload": ms(built, uploaded),
            "release": ms(uploaded, released),
            "deploy": ms(released, deployed),
        },
        "buildpack_compile_ms": (compile_s * 1000.0) as i64,
        "buildpack_release_ms": (assemble_s * 1000.0) as i64,
        "deploy_boot_and_switch_ms": boot_ms,
        "overhead_ms": live_ms - buildpack_ms - boot_ms,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir()?;
    let repo = p.fixture_repo("hello", work.path());
    let app = format!("bench-{}", &p.instance[1..7]);
    p.cli_ok(&repo, &["create", "app", &app]);
    let cold = measure(&p, &repo, &app, "Hello from hello v1\n").await?;
    let page = repo.join("lib/hello/page.ex");
    let text = std::fs::read_to_string(&page)?;
    std::fs::write(
        &page,
        text.replace("Hello from hello v1", "Hello from hello v2"),
    )?;
    p.git_ok(&repo, &["commit", "-qam", "one changed line"]);
    let warm = measure(&p, &repo, &app, "Hello from hello v2\n").await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "benchmark": "deploy",
            "fixture": "hello",
            "cold": cold,
            "warm": warm,
        }))?
    );
    Ok(())
}
