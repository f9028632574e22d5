//! `bench-hot`: OTP release upgrades of `tests/fixtures/hot_counter` (0.1.0 → 0.2.0 with
//! `GIGALIXIR-HOT: true`) on a real platform, with one and with three replicas, printed as
//! JSON. Run by `scripts/bench-hot`.
//!
//! - push_to_new_code_ms: from `git push` starting to the router serving 0.2.0's page;
//! - relup_build_s: what the buildpack reports for preparing the upgrade (appups, relup);
//! - build_ms: the build step, relup included;
//! - upgrade_ms: the deploy step (every replica upgraded in place, one at a time);
//! - during: requests (one every 20 ms through the router) and how many failed.

use std::time::{Duration, Instant};

use gigalixir_tests::hot_counter::{write_v0_2_0, HOT};
use gigalixir_tests::{require_images, Platform, Probe};
use serde_json::{json, Value};
use shared::domain::AppName;
use shared::embedded::SqliteStore;
use shared::model::BuildState;
use shared::ports::Store;

async fn upgrade(p: &Platform, replicas: u32) -> anyhow::Result<Value> {
    let work = tempfile::tempdir()?;
    let (repo, app) = p.new_app("hot_counter", &format!("hot{replicas}"), work.path());
    let (ok, out) = p.push(&repo, &HOT);
    anyhow::ensure!(ok, "the first push failed: {out}");
    if replicas > 1 {
        p.cli_ok(&repo, &["ps:scale", "--replicas", &replicas.to_string()]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while p.running_containers(&app) < replicas as usize {
            anyhow::ensure!(Instant::now() < deadline, "never scaled to {replicas}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for _ in 0..3 {
        p.get_app(&app, "/bump");
    }
    write_v0_2_0(&repo);
    p.commit_all(&repo, "0.2.0");
    let probe = Probe::start(p.port, &app);
    let started = Instant::now();
    let (ok, out) = p.push(&repo, &HOT);
    anyhow::ensure!(ok, "the hot push failed: {out}");
    anyhow::ensure!(
        out.contains("installed in place"),
        "the push was not a release upgrade: {out}"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while !p.get_app(&app, "/").1.starts_with("counter 0.2.0: 3") {
        anyhow::ensure!(Instant::now() < deadline, "0.2.0 never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let push_ms = started.elapsed().as_millis() as i64;
    let (requests, failed) = probe.finish();
    let relup_s: Option<f64> = out.lines().find_map(|l| {
        let rest = l.split("Hot upgrade prepared in ").nth(1)?;
        rest.split('s').next()?.parse().ok()
    });
    let store = SqliteStore::open(&p.data_dir().join("store.db"))?;
    let build = store
        .builds_of(&AppName::parse(&app)?)
        .await?
        .into_iter()
        .max_by_key(|b| b.created_at)
        .ok_or_else(|| anyhow::anyhow!("no build"))?;
    let at = |state: BuildState| {
        build
            .history
            .iter()
            .find(|(s, _)| *s == state)
            .map(|(_, t)| *t)
    };
    let span = |a: BuildState, b: BuildState| Some((at(b)? - at(a)?).num_milliseconds());
    p.cli_ok(&repo, &["ps:scale", "--replicas", "0"]);
    Ok(json!({
        "replicas": replicas,
        "push_to_new_code_ms": push_ms,
        "relup_build_s": relup_s,
        "build_ms": span(BuildState::Building, BuildState::Built),
        "upgrade_ms": span(BuildState::Released, BuildState::Deployed),
        "during": {"requests": requests, "failed": failed},
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let one = upgrade(&p, 1).await?;
    let three = upgrade(&p, 3).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "benchmark": "hot upgrade (OTP relup)",
            "fixture": "hot_counter 0.1.0 -> 0.2.0",
            "runs": [one, three],
        }))?
    );
    Ok(())
}
