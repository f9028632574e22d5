//! What a failure costs: a platform whose disk fills refuses clearly and at once, loses
//! nothing, and works again once there is room. (Issue 13; the kill -9 tests are in the
//! isolation suite.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gigalixir_tests::{require_images, texts, Platform};

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
    let mut args = vec![
        "create".to_owned(),
        "--label".to_owned(),
        format!("gigalixir.instance={instance}"),
    ];
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
        [&build, &replica, &phase, &stale]
            .iter()
            .all(|id| !exists(id))
    });
    assert!(exists(&foreign), "another platform's container was removed");
    let _ = Command::new("docker").args(["rm", "-f", &foreign]).output();
    assert_eq!(p.container_ids(&app), live, "the live replica stays");
    let (status, _) = p.get_app(&app, "/");
    assert_eq!(status, 200);
    assert!(
        p.log().contains("removing an orphan container"),
        "the platform says so"
    );
}
