//! What a failure costs: a platform killed (-9) at any stage of a push recovers in seconds
//! with the push in one clear state and nothing left behind; a platform whose disk fills
//! refuses clearly and at once, loses nothing, and works again once there is room; what a
//! killed platform left running goes. (Issue 13.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gigalixir_tests::{require_images, texts, wait_for, Platform};

/// A tmpfs mounted over a directory for the length of a test (mounting needs root: CI and
/// `scripts/test` run as root).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs on {} failed (this test needs root, as `scripts/test` runs in CI): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self(dir.to_owned())
    }

    /// Bytes still free on it.
    fn free(&self) -> u64 {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.0)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df's figure")
    }

    /// Takes all but `leave` bytes of it with the file `name`.
    fn fill(&self, name: &str, leave: u64) -> PathBuf {
        let path = self.0.join(name);
        let size = self.free().saturating_sub(leave);
        let out = Command::new("fallocate")
            .args(["-l", &size.to_string()])
            .arg(&path)
            .output()
            .expect("fallocate");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // lazy: the platform may still hold files there when a test fails
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Runs a push, failing the test if it has not ended after `limit`.
fn push_within(p: &Platform, repo: &Path, limit: Duration) -> (bool, String) {
    let mut child = p.spawn_git(repo, &["push", "gigalixir", "master"]);
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            let (stdout, stderr) = texts(&out);
            panic!("the push was still running after {limit:?}:\n{stdout}{stderr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("output");
    let (stdout, stderr) = texts(&out);
    (out.status.success(), format!("{stdout}{stderr}"))
}

#[test]
fn a_full_disk_refuses_clearly_at_once_and_loses_nothing() {
    require_images();
    let mut p = Platform::start_with(&["--min-free-mb", "64"]);
    p.stop();
    let disk = Tmpfs::mount(&p.data_dir(), "320m");
    p.start_again();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "full", work.path());
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    p.cli_ok(&repo, &["config:set", "KEPT=yes"]);

    // Less free than a push needs: refused before anything is received, and git ends.
    let filler = disk.fill("filler", 40 << 20);
    p.git_ok(
        &repo,
        &["commit", "-q", "--allow-empty", "-m", "while full"],
    );
    let (ok, out) = push_within(&p, &repo, Duration::from_secs(60));
    assert!(!ok, "{out}");
    assert!(
        out.contains("remote error: the platform's disk is full; nothing was changed"),
        "{out}"
    );
    assert!(out.contains("a push needs 64 MB"), "{out}");

    // No room at all: a change is refused with the reason, reads still answer.
    let rest = disk.fill("filler-2", 0);
    let out = p.cli(&repo, &["config:set", "LOST=1"]);
    let (stdout, stderr) = texts(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}").contains("disk is full; nothing was changed"),
        "{stdout}{stderr}"
    );
    let config = p.cli_ok(&repo, &["config"]);
    assert!(config.contains("KEPT"), "{config}");
    let (status, _) = p.get_app(&app, "/");
    assert_eq!(status, 200, "the app still answers");

    // Room again: nothing was lost, and the next push deploys.
    std::fs::remove_file(&filler).expect("rm");
    std::fs::remove_file(&rest).expect("rm");
    let config = p.cli_ok(&repo, &["config"]);
    assert!(
        config.contains("KEPT") && !config.contains("LOST"),
        "{config}"
    );
    let (ok, out) = push_within(&p, &repo, Duration::from_secs(300));
    assert!(ok, "{out}");
    let releases = p.cli_ok(&repo, &["releases"]);
    assert!(releases.contains("v3"), "{releases}");
    let (status, _) = p.get_app(&app, "/");
    assert_eq!(status, 200);
    assert!(
        p.log().contains("a push was refused: the disk is full"),
        "the platform says so in its log"
    );
    p.stop();
    drop(disk);
}

/// A container as a killed platform could leave it: labelled with this platform's
/// instance, `labels` more.
fn leftover(instance: &str, labels: &[(&str, &str)]) -> String {
    leftover_named(instance, None, labels)
}

/// [`leftover`], named `name`.
fn leftover_named(instance: &str, name: Option<&str>, labels: &[(&str, &str)]) -> String {
    let mut args = vec![
        "create".to_owned(),
        "--label".to_owned(),
        format!("gigalixir.instance={instance}"),
    ];
    if let Some(name) = name {
        args.extend(["--name".to_owned(), name.to_owned()]);
    }
    for (k, v) in labels {
        args.push("--label".into());
        args.push(format!("{k}={v}"));
    }
    args.extend([
        "gigalixir-runner:trixie".to_owned(),
        "sleep".into(),
        "600".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    gigalixir_tests::docker(&args)
}

#[test]
fn what_a_killed_platform_left_running_is_removed_at_start() {
    require_images();
    let mut p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "kept", work.path());
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    // The build's container becomes the app's idle builder once its cache is copied out,
    // which may end after the deploy.
    wait_for("the app's idle builder", Duration::from_secs(60), || {
        !p.warm_builders(&app).is_empty()
    });
    let live = p.container_ids(&app);
    p.stop();
    // A build whose record is gone, a replica and a release phase of apps that are gone, a
    // replica of a release that never was: orphans. Another platform's build: not ours.
    let build = leftover(
        &p.instance,
        &[
            ("gigalixir.app", "gone-app"),
            ("gigalixir.build", "5f0e2a1c-0000-4000-8000-000000000001"),
        ],
    );
    let replica = leftover(
        &p.instance,
        &[
            ("gigalixir.app", "gone-app"),
            ("gigalixir.release", "3"),
            ("gigalixir.index", "0"),
        ],
    );
    let phase = leftover(
        &p.instance,
        &[
            ("gigalixir.app", "gone-app"),
            ("gigalixir.release-phase", "3"),
        ],
    );
    let stale = leftover(
        &p.instance,
        &[
            ("gigalixir.app", &app),
            ("gigalixir.release", "7"),
            ("gigalixir.index", "0"),
        ],
    );
    // Warm builders: one that holds a build nobody knows, one whose idle life ended (not
    // running); the app's idle one, running, stays.
    let warm = ("gigalixir.warm-build", "0123456789abcdef");
    let warm_build = leftover_named(
        &p.instance,
        Some("gx-build-5f0e2a1c-0000-4000-8000-000000000003"),
        &[("gigalixir.app", &app), warm],
    );
    let warm_ended = leftover_named(
        &p.instance,
        Some(&format!("gx-build-{}-{app}-idle-0000dead", p.instance)),
        &[("gigalixir.app", &app), warm],
    );
    let idle_builder = p.warm_builders(&app);
    assert!(
        !idle_builder.is_empty(),
        "the app's build left no warm builder"
    );
    let other_instance = format!("{}-other", p.instance);
    let foreign = leftover(
        &other_instance,
        &[
            ("gigalixir.app", "gone-app"),
            ("gigalixir.build", "5f0e2a1c-0000-4000-8000-000000000002"),
        ],
    );
    p.start_again();
    let exists = |id: &str| {
        Command::new("docker")
            .args(["inspect", id])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    gigalixir_tests::wait_for("the orphans to go", Duration::from_secs(60), || {
        [&build, &replica, &phase, &stale, &warm_build, &warm_ended]
            .iter()
            .all(|id| !exists(id))
    });
    assert!(exists(&foreign), "another platform's container was removed");
    assert!(
        exists(&idle_builder),
        "the app's idle warm builder was removed"
    );
    let _ = Command::new("docker").args(["rm", "-f", &foreign]).output();
    assert_eq!(p.container_ids(&app), live, "the live replica stays");
    let (status, _) = p.get_app(&app, "/");
    assert_eq!(status, 200);
    assert!(
        p.log().contains("removing an orphan container"),
        "the platform says so"
    );
}

/// Where in a push the platform is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// git receive-pack is taking the pack in (the push lock is held).
    Receiving,
    /// The buildpacks run in the build container.
    Building,
    /// The build succeeded; its slug is being stored.
    Uploaded,
    /// The slug is stored; the release is made and its deploy starts.
    Released,
    /// The new release's replica runs; traffic has not moved yet.
    Deploying,
}

/// Hooks of the Elixir buildpack that let a test hold a build (`hold` in the repository:
/// wait in the build until `/tmp/go` exists) or make its slug large (`big`: 60 MB that do
/// not compress, so that storing and unpacking it take a while).
const HOOKS_CONFIG: &str = "hook_pre_compile=\"bash hooks.sh\"\n";
const HOOKS_SH: &str = r#"if [ -f big ]; then mkdir -p priv && head -c 60000000 /dev/urandom > priv/big.bin; fi
if [ -f hold ]; then touch /tmp/held; while [ ! -f /tmp/go ]; do sleep 0.2; done; fi
"#;

/// The containers of `app` of this platform, running or not.
/// The app's containers but its idle warm builder (kept for its next build).
fn all_containers(p: &Platform, app: &str) -> Vec<String> {
    gigalixir_tests::docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=gigalixir.app={app}"),
        "--filter",
        &format!("label=gigalixir.instance={}", p.instance),
        "--format",
        "{{.ID}} {{.Names}}",
    ])
    .lines()
    .filter(|l| !l.contains("-idle-"))
    .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
    .collect()
}

/// A container's label; empty when the container is gone (the platform removes
/// build containers and retired replicas while the test looks).
fn label(id: &str, name: &str) -> String {
    let out = Command::new("docker")
        .args([
            "inspect",
            "-f",
            &format!("{{{{index .Config.Labels \"{name}\"}}}}"),
            id,
        ])
        .output()
        .expect("run docker");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Kills the platform at `stage` of a second push of the `hello` app, starts it again,
/// and checks that: the next push starts building at once (no lock of the dead run in its
/// way), the app settles on exactly one live release with no container left over, the
/// interrupted push went nowhere (its build failed as interrupted, its release, if any,
/// failed) and the repository's branch is the deployed commit. Prints the figures.
fn kill_during(stage: Stage) {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let repo = p.fixture_repo_with("hello", work.path(), |dir| {
        std::fs::write(dir.join("elixir_buildpack.config"), HOOKS_CONFIG).expect("config");
        std::fs::write(dir.join("hooks.sh"), HOOKS_SH).expect("hooks");
    });
    let app = format!("kill-{}", &p.instance[1..7]);
    p.cli_ok(&repo, &["create", "app", &app]);
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "the first push failed:\n{out}");
    let v1 = p.git_ok(&repo, &["rev-parse", "HEAD"]).trim().to_owned();

    // The push that is cut short.
    match stage {
        Stage::Receiving => {
            // 150 MB that do not compress: git takes a while to receive them.
            let out = Command::new("head")
                .args(["-c", "150000000", "/dev/urandom"])
                .output()
                .expect("random");
            std::fs::write(repo.join("noise.bin"), out.stdout).expect("noise");
        }
        Stage::Building => std::fs::write(repo.join("hold"), "").expect("hold"),
        Stage::Uploaded | Stage::Released | Stage::Deploying => {
            std::fs::write(repo.join("big"), "").expect("big")
        }
    }
    p.commit_all(&repo, "the push that is cut short");
    let log_path = work.path().join("cut-push.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut cut = p
        .git_command_as(p.home.path(), &repo, &["push", "gigalixir", "master"])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("push");
    let said = |text: &str| {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains(text)
    };
    let tmp = p.data_dir().join("tmp");
    let limit = Duration::from_secs(240);
    match stage {
        // The push's body is spooled (gx-push-…), then, under the push lock, its
        // repository checked out (gx-receive-…, written after the spool began); the ref
        // advertisement before the push checks one out too, written before it.
        Stage::Receiving => gigalixir_tests::wait_for("git to receive", limit, || {
            let dirs: Vec<(String, std::time::SystemTime)> = std::fs::read_dir(&tmp)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter_map(|e| {
                            let at = e.metadata().and_then(|m| m.modified()).ok()?;
                            Some((e.file_name().to_string_lossy().into_owned(), at))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let spooled = dirs
                .iter()
                .filter(|(n, _)| n.starts_with("gx-push-"))
                .map(|(_, at)| *at)
                .max();
            spooled.is_some_and(|spooled| {
                dirs.iter()
                    .any(|(n, at)| n.starts_with("gx-receive-") && *at >= spooled)
            })
        }),
        Stage::Building => gigalixir_tests::wait_for("the build to hold", limit, || {
            all_containers(&p, &app).iter().any(|id| {
                // a build's own container, or a warm builder holding it
                (!label(id, "gigalixir.build").is_empty()
                    || !label(id, "gigalixir.warm-build").is_empty())
                    && Command::new("docker")
                        .args(["exec", id, "test", "-e", "/tmp/held"])
                        .output()
                        .is_ok_and(|o| o.status.success())
            })
        }),
        Stage::Uploaded => {
            gigalixir_tests::wait_for("the build to succeed", limit, || said("Build succeeded"))
        }
        Stage::Released => {
            gigalixir_tests::wait_for("the slug to be stored", limit, || said("Slug stored"))
        }
        Stage::Deploying => gigalixir_tests::wait_for("v2's replica to start", limit, || {
            all_containers(&p, &app)
                .iter()
                .any(|id| label(id, "gigalixir.release") == "2")
        }),
    };
    p.kill();
    let status = cut.wait().expect("the cut push ends");
    let cut_out = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        !status.success() && !cut_out.contains("Deployed v2"),
        "the push was finished before the kill at {stage:?}:\n{cut_out}"
    );

    // Restart; the next push (from v1, without the cut push's commit) follows at once.
    p.start_again();
    let restarted = Instant::now();
    p.git_ok(&repo, &["reset", "-q", "--hard", &v1]);
    // (a file the build reads: a read-me change alone would reuse v1's slug)
    std::fs::write(repo.join("lib/after_restart.txt"), "after the restart\n").expect("write");
    p.commit_all(&repo, "after the restart");
    let v3 = p.git_ok(&repo, &["rev-parse", "HEAD"]).trim().to_owned();
    let next_log = work.path().join("next-push.log");
    let log = std::fs::File::create(&next_log).expect("log");
    let mut next = p
        .git_command_as(p.home.path(), &repo, &["push", "gigalixir", "master"])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("push");
    let next_said = |text: &str| {
        std::fs::read_to_string(&next_log)
            .unwrap_or_default()
            .contains(text)
    };
    gigalixir_tests::wait_for(
        "the next push to start building",
        Duration::from_secs(60),
        || next_said("-----> Building"),
    );
    let building = restarted.elapsed();
    let ok = next.wait().expect("the next push ends").success();
    let out = std::fs::read_to_string(&next_log).unwrap_or_default();
    assert!(ok, "the push after the restart failed:\n{out}");
    assert!(
        !out.contains("Another push of"),
        "the dead run's push lock was in the way:\n{out}"
    );
    if stage != Stage::Receiving {
        assert!(
            out.contains("was interrupted by a platform restart: nothing of it was deployed"),
            "{out}"
        );
    }
    assert!(
        p.log()
            .contains("freed the locks of an earlier run of this platform"),
        "the restarted platform freed the dead run's locks"
    );

    // The cut push went nowhere: its release, if it had one, failed; the new push's runs.
    let releases = p.cli_ok(&repo, &["releases", "--json"]);
    let releases: Vec<serde_json::Value> = serde_json::from_str(&releases).expect("json");
    let deployed: Vec<_> = releases
        .iter()
        .filter(|r| r["status"] == "deployed")
        .collect();
    assert_eq!(deployed.len(), 1, "{releases:?}");
    assert_eq!(deployed[0]["sha"], v3.as_str(), "{releases:?}");
    let live = deployed[0]["version"].to_string();
    for r in &releases {
        if r["sha"] != v1.as_str() && r["sha"] != v3.as_str() {
            assert_eq!(
                r["status"], "failed",
                "the cut push's release: {releases:?}"
            );
        }
    }

    // Settled: one replica of that release, nothing else of the app left.
    gigalixir_tests::wait_for(
        "the app to settle on one release",
        Duration::from_secs(120).saturating_sub(restarted.elapsed()),
        || {
            let all = all_containers(&p, &app);
            all.len() == 1 && label(&all[0], "gigalixir.release") == live
        },
    );
    let settled = restarted.elapsed();
    // what the reconciler had to remove (the steps themselves clean up what they stop)
    let orphans = p.log().matches("removing an orphan container").count();
    let (code, page) = p.get_app(&app, "/");
    assert_eq!(code, 200, "{page}");
    let remote = p.git_ok(&repo, &["ls-remote", "gigalixir", "refs/heads/master"]);
    assert!(remote.starts_with(&v3), "{remote} is not {v3}");
    eprintln!(
        "figure: killed while {stage:?}: the next push was building {:.1} s after the restart, the app settled {:.1} s after it, {orphans} orphans removed by the reconciler, 0 left",
        building.as_secs_f64(),
        settled.as_secs_f64()
    );
}

#[test]
fn a_platform_killed_while_git_receives_recovers_at_once() {
    kill_during(Stage::Receiving);
}

#[test]
fn a_platform_killed_while_building_recovers_at_once() {
    kill_during(Stage::Building);
}

#[test]
fn a_platform_killed_while_storing_the_slug_recovers_at_once() {
    kill_during(Stage::Uploaded);
}

#[test]
fn a_platform_killed_once_the_slug_is_stored_recovers_at_once() {
    kill_during(Stage::Released);
}

#[test]
fn a_platform_killed_while_deploying_recovers_at_once() {
    kill_during(Stage::Deploying);
}
