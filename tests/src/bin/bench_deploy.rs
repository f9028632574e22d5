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
//! - hot: push with `GIGALIXIR-HOT` to the new code answering; restart; `during` counts the
//!   failed requests out of a steady stream while they happen.
//! - with_dependency: the `with_path_dep` fixture with 300 generated modules added to its
//!   path dependency, warm push (app code changed, compiled dependency reused from the
//!   cache) against a `GIGALIXIR-CLEAN` one.
//! - no_code_change: a push that changes only the read-me (the running slug is reused):
//!   until `git push` ends, which is when the release is live.
//! - physical_limit: what the work itself needs, measured in the same run on the same
//!   files: `git push` of one commit to a bare repository and `git archive` on the host;
//!   in a container of the builder image (no network, in memory, as a build) `mix compile`
//!   after the same one-line change on a warm `_build`, `mix release`, and the release's
//!   boot to its first HTTP answer; a container's start (`docker run` of the runner image).
//!   `compile_release_boot_ms` takes compile and release as one `mix do compile, release`
//!   (one Mix start, as the buildpack runs them) after the same change, then the boot;
//!   `warm_over_limit` is push-to-live over it.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use gigalixir_tests::{require_images, texts, Platform, Probe};
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

/// A probe's count, as the JSON reports it.
fn during(probe: Probe) -> Value {
    let (requests, failed) = probe.finish();
    json!({"requests": requests, "failed": failed})
}

fn set_marker(repo: &Path, from: &str, to: &str) -> anyhow::Result<()> {
    replace_in(&repo.join("lib/hello/page.ex"), from, to)
}

fn replace_in(page: &Path, from: &str, to: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(page)?;
    std::fs::write(page, text.replace(from, to))?;
    Ok(())
}

async fn measure(p: &Platform, repo: &Path, app: &str, body: &str) -> anyhow::Result<Value> {
    measure_with(p, repo, app, body, &[]).await
}

async fn measure_with(
    p: &Platform,
    repo: &Path,
    app: &str,
    body: &str,
    git_options: &[&str],
) -> anyhow::Result<Value> {
    measure_until(p, repo, app, |text: &str| text == body, git_options).await
}

/// Pushes, waits until the app's page satisfies `live`, and splits the time by step.
async fn measure_until(
    p: &Platform,
    repo: &Path,
    app: &str,
    live: impl Fn(&str) -> bool,
    git_options: &[&str],
) -> anyhow::Result<Value> {
    let started_at = Utc::now();
    let t0 = Instant::now();
    let mut args: Vec<&str> = git_options.to_vec();
    args.extend(["push", "gigalixir", "master"]);
    let out = p.git(repo, &args);
    let push_ms = t0.elapsed().as_millis();
    anyhow::ensure!(out.status.success(), "push failed: {:?}", texts(&out));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !live(&p.get_app(app, "/").1) {
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
    let driver_s = seconds_after(&lines, "Build succeeded in").unwrap_or(0.0);
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
        "build_driver_ms": (driver_s * 1000.0) as i64,
        "deploy_boot_and_switch_ms": boot_ms,
        "overhead_ms": live_ms - buildpack_ms - boot_ms,
    }))
}

/// Milliseconds `cmd` takes (it must succeed).
fn timed(cmd: &mut std::process::Command) -> anyhow::Result<i64> {
    let t0 = Instant::now();
    let out = cmd.output()?;
    anyhow::ensure!(out.status.success(), "{cmd:?} failed: {:?}", texts(&out));
    Ok(t0.elapsed().as_millis() as i64)
}

/// What git, mix and the BEAM need for a one-line change of `file` (`from` → `to`) in the
/// app at `repo` (a git repository whose `app`'s release serves HTTP on `$PORT`).
fn physical_limit(
    repo: &Path,
    app: &str,
    file: &str,
    from: &str,
    to: &str,
) -> anyhow::Result<Value> {
    use std::process::Command;
    let work = tempfile::tempdir()?;
    // git: one commit pushed to a bare repository that has the one before; its archive
    let bare = work.path().join("bare.git");
    let git = |dir: &Path, args: &[&str]| {
        let mut c = Command::new("git");
        c.current_dir(dir).args(args);
        c
    };
    timed(&mut git(work.path(), &["init", "-q", "--bare", "bare.git"]))?;
    let clone = work.path().join("clone");
    timed(&mut git(
        work.path(),
        &["clone", "-q", &repo.display().to_string(), "clone"],
    ))?;
    let bare_s = bare.display().to_string();
    timed(&mut git(
        &clone,
        &["push", "-q", &bare_s, "HEAD:refs/heads/master"],
    ))?;
    replace_in(&clone.join(file), from, to)?;
    timed(&mut git(
        &clone,
        &[
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@b",
            "commit",
            "-qam",
            "one line",
        ],
    ))?;
    let git_push_ms = timed(&mut git(
        &clone,
        &["push", "-q", &bare_s, "HEAD:refs/heads/master"],
    ))?;
    let git_archive_ms = timed(&mut git(
        &bare,
        &["archive", "--format=tar", "-o", "/dev/null", "master"],
    ))?;
    replace_in(&clone.join(file), to, from)?;
    // mix and the BEAM, in the builder image as a build runs (no network, in memory)
    let script = format!(
        r#"set -e
export MIX_ENV=prod HOME=/w MIX_HOME=/w/.mix HEX_OFFLINE=1 PORT=4000
ms() {{ awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN {{ printf "%d", (b - a) * 1000 }}'; }}
cp -r /src /w/app && cd /w/app && rm -rf .git _build
mix do compile, release --overwrite --path /w/rel >/dev/null 2>&1
sed -i 's/{from}/{to}/' {file}
t=$EPOCHREALTIME; mix compile >/dev/null 2>&1; compile=$(ms $t)
t=$EPOCHREALTIME; mix release --overwrite --path /w/rel >/dev/null 2>&1; release=$(ms $t)
sed -i 's/{to}/{from}/' {file}
t=$EPOCHREALTIME; mix do compile, release --overwrite --path /w/rel >/dev/null 2>&1; both=$(ms $t)
t=$EPOCHREALTIME; /w/rel/bin/{app} daemon
until exec 3<>/dev/tcp/127.0.0.1/4000 2>/dev/null && printf 'GET / HTTP/1.0

' >&3 && head -c 12 <&3 | grep -q ' 200'; do sleep 0.01; done
boot=$(ms $t)
/w/rel/bin/{app} stop >/dev/null 2>&1 || true
echo "$compile $release $both $boot"
"#
    );
    let stack = shared::stack::Stack::Trixie;
    let out = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--user", "build"])
        .args([
            "--tmpfs",
            "/w:exec,uid=1000,gid=1000,size=1g",
            "--entrypoint",
            "bash",
        ])
        .arg("-v")
        .arg(format!("{}:/src:ro", clone.display()))
        .args([&stack.builder_image(), "-c", &script])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "the measurement in the builder failed: {:?}",
        texts(&out)
    );
    let figures: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let [compile, release, both, boot] = figures[..] else {
        anyhow::bail!("unexpected measurement: {:?}", texts(&out));
    };
    let container_start_ms = timed(Command::new("docker").args([
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "true",
        &stack.runner_image(),
    ]))?;
    Ok(json!({
        "git_push_ms": git_push_ms,
        "git_archive_ms": git_archive_ms,
        "mix_compile_ms": compile,
        "mix_release_ms": release,
        "mix_do_compile_release_ms": both,
        "boot_to_first_answer_ms": boot,
        "container_start_ms": container_start_ms,
        "compile_release_boot_ms": both + boot,
    }))
}

/// `figures["push_to_live_ms"]` over the limit's compile + release + boot.
fn over_limit(figures: &Value, limit: &Value) -> f64 {
    let live = figures["push_to_live_ms"].as_f64().unwrap_or(0.0);
    let floor = limit["compile_release_boot_ms"].as_f64().unwrap_or(1.0);
    (live / floor * 100.0).round() / 100.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir()?;
    let (repo, app) = p.new_app("hello", "bench", work.path());
    let cold = measure(&p, &repo, &app, "Hello from hello v1\n").await?;

    // Warm: one changed line, under steady requests.
    set_marker(&repo, "Hello from hello v1", "Hello from hello v2")?;
    p.git_ok(&repo, &["commit", "-qam", "one changed line"]);
    let probe = Probe::start(p.port, &app);
    let mut warm = measure(&p, &repo, &app, "Hello from hello v2\n").await?;
    warm["during"] = during(probe);

    // No code change: only the read-me; the push ends when the release is live.
    let readme = repo.join("README.md");
    let mut text = std::fs::read_to_string(&readme)?;
    text.push_str("\nOne more line.\n");
    std::fs::write(&readme, text)?;
    p.git_ok(&repo, &["commit", "-qam", "read-me only"]);
    let t0 = Instant::now();
    let out = p.git(&repo, &["push", "gigalixir", "master"]);
    let no_change_ms = t0.elapsed().as_millis() as i64;
    let said = texts(&out);
    anyhow::ensure!(
        out.status.success() && said.1.contains("Nothing to build"),
        "the read-me push built or failed: {said:?}"
    );
    let no_code_change = json!({"push_to_live_ms": no_change_ms});

    // Clean: the same kind of change, without the cache.
    set_marker(&repo, "Hello from hello v2", "Hello from hello v3")?;
    p.git_ok(&repo, &["commit", "-qam", "clean"]);
    let clean = measure_with(
        &p,
        &repo,
        &app,
        "Hello from hello v3\n",
        &["-c", "http.extraheader=GIGALIXIR-CLEAN: true"],
    )
    .await?;

    // Hot: new code loaded into the running node, under steady requests.
    set_marker(&repo, "Hello from hello v3", "Hello from hello v4")?;
    p.git_ok(&repo, &["commit", "-qam", "hot"]);
    let probe = Probe::start(p.port, &app);
    let started = Instant::now();
    let out = p.git(
        &repo,
        &[
            "-c",
            "http.extraheader=GIGALIXIR-HOT: true",
            "push",
            "gigalixir",
            "master",
        ],
    );
    anyhow::ensure!(out.status.success(), "hot push failed: {:?}", texts(&out));
    let deadline = Instant::now() + Duration::from_secs(120);
    while p.get_app(&app, "/").1 != "Hello from hello v4\n" {
        anyhow::ensure!(Instant::now() < deadline, "the hot upgrade never showed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hot_ms = started.elapsed().as_millis() as i64;
    let store = SqliteStore::open(&p.data_dir().join("store.db"))?;
    let build = store
        .builds_of(&AppName::parse(&app)?)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no build"))?;
    let built = build
        .history
        .iter()
        .find(|(s, _)| *s == BuildState::Built)
        .map(|(_, t)| *t);
    let hot_after_build = built.map(|b| (Utc::now() - b).num_milliseconds());
    let hot = json!({
        "push_to_new_code_ms": hot_ms,
        "after_build_ms": hot_after_build,
        "during": during(probe),
    });

    // Restart under steady requests.
    let probe = Probe::start(p.port, &app);
    p.cli_ok(&repo, &["restart"]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let restart = json!({"during": during(probe)});

    // With a dependency: warm (app code changed, deps reused from the cache) against clean.
    std::fs::create_dir_all(work.path().join("deps"))?;
    let deps_repo = p.fixture_repo("with_path_dep", &work.path().join("deps"));
    // A dependency with some weight: 300 generated modules in the path dependency.
    let generated = deps_repo.join("deps_src/greeter/lib/generated");
    std::fs::create_dir_all(&generated)?;
    for n in 0..300 {
        let clauses: String = (0..20)
            .map(|k| format!("  def f({k}, x), do: x * {k} + {n}\n"))
            .collect();
        std::fs::write(
            generated.join(format!("m{n}.ex")),
            format!("defmodule Greeter.Generated.M{n} do\n{clauses}end\n"),
        )?;
    }
    p.git_ok(&deps_repo, &["add", "-A"]);
    p.git_ok(&deps_repo, &["commit", "-qm", "a heavier dependency"]);
    let deps_app = format!("deps-{}", &p.instance[1..7]);
    p.cli_ok(&deps_repo, &["create", "app", &deps_app]);
    let page = deps_repo.join("lib/with_path_dep/page.ex");
    let body = |v: u32| {
        let marker = format!("with_path_dep v{v}");
        move |text: &str| text.contains(&marker)
    };
    let deps_cold = measure_until(&p, &deps_repo, &deps_app, body(1), &[]).await?;
    replace_in(&page, "with_path_dep v1", "with_path_dep v2")?;
    p.git_ok(&deps_repo, &["commit", "-qam", "app code only"]);
    let deps_warm = measure_until(&p, &deps_repo, &deps_app, body(2), &[]).await?;
    replace_in(&page, "with_path_dep v2", "with_path_dep v3")?;
    p.git_ok(&deps_repo, &["commit", "-qam", "clean"]);
    let deps_clean = measure_until(
        &p,
        &deps_repo,
        &deps_app,
        body(3),
        &["-c", "http.extraheader=GIGALIXIR-CLEAN: true"],
    )
    .await?;
    let deps_ratio = deps_warm["push_to_live_ms"].as_f64().unwrap_or(0.0)
        / deps_clean["push_to_live_ms"].as_f64().unwrap_or(1.0);
    let build_ratio = deps_warm["steps_ms"]["build"].as_f64().unwrap_or(0.0)
        / deps_clean["steps_ms"]["build"].as_f64().unwrap_or(1.0);

    // The same pushes with the platform on the Google Cloud emulators (scripts/emulators).
    let on_emulators = if std::env::var_os("BENCH_NO_EMULATORS").is_some() {
        Value::Null
    } else {
        emulated(work.path()).await?
    };

    let limit = physical_limit(
        &repo,
        "hello",
        "lib/hello/page.ex",
        "Hello from hello v4",
        "Hello from hello v5",
    )?;
    let deps_limit = physical_limit(
        &deps_repo,
        "with_path_dep",
        "lib/with_path_dep/page.ex",
        "with_path_dep v3",
        "with_path_dep v4",
    )?;
    warm["warm_over_limit"] = json!(over_limit(&warm, &limit));
    let mut deps_warm = deps_warm;
    deps_warm["warm_over_limit"] = json!(over_limit(&deps_warm, &deps_limit));
    let ratio = warm["push_to_live_ms"].as_f64().unwrap_or(0.0)
        / clean["push_to_live_ms"].as_f64().unwrap_or(1.0);
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "benchmark": "deploy",
            "fixture": "hello",
            "cold": cold,
            "warm": warm,
            "clean": clean,
            "warm_over_clean": (ratio * 100.0).round() / 100.0,
            "no_code_change": no_code_change,
            "physical_limit": limit,
            "hot": hot,
            "restart": restart,
            "on_emulators": on_emulators,
            "with_dependency": {
                "fixture": "with_path_dep",
                "cold": deps_cold,
                "warm_deps_unchanged": deps_warm,
                "clean": deps_clean,
                "warm_over_clean": (deps_ratio * 100.0).round() / 100.0,
                "physical_limit": deps_limit,
                "build_step_warm_over_clean": (build_ratio * 100.0).round() / 100.0,
            },
        }))?
    );
    Ok(())
}

/// Cold and warm push-to-live of `hello` with the platform on Firestore, Pub/Sub and Cloud
/// Storage emulators.
async fn emulated(work: &Path) -> anyhow::Result<Value> {
    let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let project = format!("gx-{id}");
    let p = Platform::start_with_env(
        &[
            "--store",
            &format!("firestore://{project}"),
            "--bus",
            &format!("pubsub://{project}"),
            "--blobs",
            &format!("gs://gx-{id}?create_buckets={project}"),
        ],
        &[
            ("PUBSUB_EMULATOR_HOST", "127.0.0.1:8681"),
            ("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8682"),
            ("STORAGE_EMULATOR_HOST", "127.0.0.1:8683"),
        ],
    );
    p.sign_up_and_log_in();
    let parent = work.join("emulated");
    std::fs::create_dir_all(&parent)?;
    let (repo, app) = p.new_app("hello", "emu", &parent);
    let live = |p: &Platform, body: &'static str| {
        let t0 = Instant::now();
        let out = p.git(&repo, &["push", "gigalixir", "master"]);
        anyhow::ensure!(out.status.success(), "push failed: {:?}", texts(&out));
        let deadline = Instant::now() + Duration::from_secs(120);
        while p.get_app(&app, "/").1 != body {
            anyhow::ensure!(Instant::now() < deadline, "the new release never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(t0.elapsed().as_millis() as i64)
    };
    let cold = live(&p, "Hello from hello v1\n")?;
    set_marker(&repo, "Hello from hello v1", "Hello from hello v2")?;
    p.git_ok(&repo, &["commit", "-qam", "one changed line"]);
    let warm = live(&p, "Hello from hello v2\n")?;
    let readme = repo.join("README.md");
    let text = std::fs::read_to_string(&readme)? + "\nOne more line.\n";
    std::fs::write(&readme, text)?;
    p.git_ok(&repo, &["commit", "-qam", "read-me only"]);
    let t0 = Instant::now();
    let out = p.git(&repo, &["push", "gigalixir", "master"]);
    anyhow::ensure!(out.status.success(), "push failed: {:?}", texts(&out));
    let no_change = t0.elapsed().as_millis() as i64;
    Ok(json!({
        "cold_push_to_live_ms": cold,
        "warm_push_to_live_ms": warm,
        "no_code_change_push_to_live_ms": no_change,
    }))
}
