//! Hot upgrades as GIGALIXIR documents them: bump the version in `mix.exs`, push with
//! `GIGALIXIR-HOT: true`, and the running node is upgraded in place by OTP's release handler
//! (an appup per changed application and a relup, made by the build from the running
//! release), the state of its processes converted by their `code_change/3`. Through the real
//! platform, builder and runner images, on `tests/fixtures/hot_counter`.

use std::time::Duration;

use gigalixir_tests::hot_counter::{store_v3, write_v0_2_0, write_v0_2_0_with, write_version, HOT};
use gigalixir_tests::{docker, require_images, texts, wait_for, Platform, Probe};

/// What `release_handler:which_releases/0` says in the app's one replica: `VSN STATUS`
/// lines.
fn which_releases(p: &Platform, app: &str) -> String {
    let id = p.container_ids(app).pop().expect("a replica");
    docker(&[
        "exec",
        "-u",
        "app",
        &id,
        "bash",
        "-c",
        ". /app/.gigalixir/env && /app/bin/counter rpc 'for {_, v, _, s} <- :release_handler.which_releases(), do: IO.puts(\"#{v} #{s}\")'",
    ])
}

/// Asserts that the push output `out` says each of `said`.
fn says(out: &str, said: &[&str]) {
    for said in said {
        assert!(out.contains(said), "no `{said}` in:\n{out}");
    }
}

/// Runs the upgrade to the newest slug again in the app's replica, as a deploy redelivered
/// after its upgrade went through does: what it prints.
fn upgrade_again(p: &Platform, app: &str) -> String {
    let newest = p
        .blobs_under("slugs")
        .into_iter()
        .filter(|f| f.ends_with(".tgz"))
        .max_by_key(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .expect("a slug");
    let id = p.container_ids(app).pop().expect("a replica");
    // the root file system is read-only: the slug goes through the replica's /tmp
    let copied = std::process::Command::new("docker")
        .args([
            "exec",
            "-i",
            "-u",
            "app",
            &id,
            "sh",
            "-c",
            "cat > /tmp/again.tgz",
        ])
        .stdin(std::fs::File::open(&newest).expect("the slug"))
        .status()
        .expect("docker exec");
    assert!(copied.success(), "the slug was not copied into {id}");
    docker(&[
        "exec",
        "-u",
        "app",
        &id,
        "gigalixir-hot-upgrade",
        "/tmp/again.tgz",
    ])
}

#[test]
fn a_version_bump_is_installed_in_place_with_its_state_converted() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hot_counter", "relup", work.path());

    // 0.1.0: nothing runs yet, so the first hot push deploys normally.
    let (ok, out) = p.push(&repo, &HOT);
    assert!(ok, "{out}");
    assert!(out.contains("Deployed v1"), "{out}");
    for n in 1..=3 {
        assert_eq!(p.get_app(&app, "/bump").1, format!("bumped to {n}\n"));
    }
    let pid = p.get_app(&app, "/pid").1;
    let containers = p.container_ids(&app);
    assert_eq!(containers.len(), 1);

    // 0.2.0: a map for state, a changed page, an added module.
    write_v0_2_0(&repo);
    p.commit_all(&repo, "0.2.0");
    let probe = Probe::start(p.port, &app);
    let (ok, out) = p.push(&repo, &HOT);
    let (sent, failed) = probe.finish();
    assert!(ok, "{out}");
    says(
        &out,
        &[
            "OTP release upgrade",
            "counter 0.1.0 -> 0.2.0: updated Counter.Store; loaded Counter.Page; added Counter.Extra",
            "a rollback to 0.1.0 restarts the app (no downgrade instructions in the appups)",
            "Hot upgrade to v2",
            "0.1.0 -> 0.2.0 installed in place",
            "1 process state(s) converted by code_change/3",
            "Deployed v2",
        ],
    );
    eprintln!("probe during the upgrade: {sent} requests, {failed} failed");
    assert!(sent > 0);
    assert_eq!(failed, 0, "requests failed during the hot upgrade");
    // The same node, its state kept in the new shape, the new code answering.
    assert_eq!(
        p.get_app(&app, "/").1,
        "counter 0.2.0: 3 (a map, upgraded from \"0.1.0\")\n"
    );
    assert_eq!(p.get_app(&app, "/pid").1, pid, "the BEAM was not restarted");
    assert_eq!(
        p.get_app(&app, "/config").1,
        format!("app_name={app}\n"),
        "the runtime config (config/runtime.exs) was kept"
    );
    assert_eq!(
        p.container_ids(&app),
        containers,
        "no container was replaced"
    );
    let releases = which_releases(&p, &app);
    assert!(
        releases.lines().any(|l| l == "0.2.0 permanent"),
        "{releases}"
    );
    assert_eq!(p.get_app(&app, "/bump").1, "bumped to 4\n");
    // Upgrading again to what already runs (a redelivered deploy) changes nothing: lib/
    // now holds 0.1.0's directories too, which the running release no longer lists.
    assert_eq!(upgrade_again(&p, &app), "hot upgrade: no module changed");
    assert_eq!(p.get_app(&app, "/pid").1, pid);
    assert_eq!(
        p.get_app(&app, "/").1,
        "counter 0.2.0: 4 (a map, upgraded from \"0.1.0\")\n"
    );

    // 0.3.0: its code_change raises; nothing changes, the push says why.
    write_version(&repo, "0.3.0", &[("lib/counter/store.ex", &store_v3())]);
    p.commit_all(&repo, "0.3.0");
    let (ok, out) = p.push(&repo, &HOT);
    assert!(!ok, "a raising code_change was installed:\n{out}");
    says(
        &out,
        &[
            "v3 was not installed: the hot upgrade failed on web.1",
            "Counter.Store.code_change raised on the running state",
            "0.3.0 cannot convert",
            "nothing was changed: 0.2.0 keeps running with its state",
        ],
    );
    assert_eq!(
        p.get_app(&app, "/").1,
        "counter 0.2.0: 4 (a map, upgraded from \"0.1.0\")\n"
    );
    assert_eq!(p.get_app(&app, "/pid").1, pid);

    // A crash: the replica's container starts again, its memory (`/app`) lost, and boots
    // 0.2.0, the release the hot upgrade installed, not the 0.1.0 it was created with.
    let crashed = p.container_ids(&app);
    let started = |id: &str| docker(&["inspect", "-f", "{{.State.StartedAt}}", id]);
    let first_start = started(&crashed[0]);
    docker(&[
        "exec",
        "-u",
        "app",
        &crashed[0],
        "pkill",
        "-9",
        "-f",
        "beam.smp",
    ]);
    wait_for(
        "the crashed replica to boot 0.2.0",
        Duration::from_secs(90),
        || p.get_app(&app, "/").1 == "counter 0.2.0: 0 (a map, upgraded from nil)\n",
    );
    assert_eq!(
        p.container_ids(&app),
        crashed,
        "the replica was started again"
    );
    assert_ne!(
        started(&crashed[0]),
        first_start,
        "the container started again"
    );

    // A restart boots 0.2.0, the release that runs.
    let restarted = p.cli(&repo, &["restart"]);
    let (o, e) = texts(&restarted);
    assert!(restarted.status.success(), "{o}{e}");
    wait_for("the restarted replica", Duration::from_secs(90), || {
        p.get_app(&app, "/").1 == "counter 0.2.0: 0 (a map, upgraded from nil)\n"
    });

    // A rollback after a hot upgrade is a normal deploy of the older release: 0.1.0 boots.
    let rolled = p.cli(&repo, &["releases:rollback", "--version", "1"]);
    let (o, e) = texts(&rolled);
    assert!(rolled.status.success(), "{o}{e}");
    assert!(
        o.contains("v4 is live: new replicas (the app restarted)."),
        "{o}{e}"
    );
    wait_for("0.1.0 after the rollback", Duration::from_secs(90), || {
        p.get_app(&app, "/").1 == "counter 0.1.0: 0\n"
    });

    // An application added: no release upgrade can do that; the push says so and restarts.
    write_version(&repo, "0.4.0", &[]);
    let mix = repo.join("mix.exs");
    let text = std::fs::read_to_string(&mix).expect("mix.exs");
    std::fs::write(&mix, text.replace("[:logger]", "[:logger, :crypto]")).expect("mix.exs");
    p.commit_all(&repo, "0.4.0 with crypto");
    let (ok, out) = p.push(&repo, &HOT);
    assert!(ok, "{out}");
    says(
        &out,
        &[
            "Hot upgrade not possible: applications were added (crypto); the deploy restarts the app",
            "Deployed v5",
        ],
    );
    assert_eq!(
        p.get_app(&app, "/").1,
        "counter 0.4.0: 0 (a map, upgraded from nil)\n"
    );
    assert_ne!(
        p.container_ids(&app),
        containers,
        "a normal deploy replaces the replica"
    );

    // The app's own appup is used as it is: here, only the page is loaded.
    assert_eq!(p.get_app(&app, "/bump").1, "bumped to 1\n");
    wait_for(
        "the replaced replica to go",
        Duration::from_secs(60),
        || p.container_ids(&app).len() == 1,
    );
    let containers = p.container_ids(&app);
    write_version(
        &repo,
        "0.5.0",
        &[(
            "rel/appups/counter/counter.appup",
            "{\"0.5.0\", [{\"0.4.0\", [{load_module, 'Elixir.Counter.Page'}]}], [{\"0.4.0\", [{load_module, 'Elixir.Counter.Page'}]}]}.\n",
        )],
    );
    p.commit_all(&repo, "0.5.0 with its own appup");
    let (ok, out) = p.push(&repo, &HOT);
    assert!(ok, "{out}");
    says(
        &out,
        &[
            "counter 0.4.0 -> 0.5.0: its own appup (rel/appups/counter/counter.appup)",
            "a rollback to 0.4.0 is a hot downgrade (the appups' downgrade instructions)",
            "0.4.0 -> 0.5.0 installed in place",
            "0 process state(s) converted",
        ],
    );
    assert_eq!(
        p.get_app(&app, "/").1,
        "counter 0.5.0: 1 (a map, upgraded from nil)\n"
    );
    assert_eq!(p.container_ids(&app), containers);
    let pid = p.get_app(&app, "/pid").1;

    // Its appup says how to go back: the rollback to 0.4.0 is a hot downgrade.
    let rolled = p.cli(&repo, &["releases:rollback", "--version", "5"]);
    let (o, e) = texts(&rolled);
    assert!(rolled.status.success(), "{o}{e}");
    assert!(
        o.contains("v7 is live: back in place (a hot downgrade), no restart."),
        "{o}{e}"
    );
    assert_eq!(
        p.get_app(&app, "/").1,
        "counter 0.4.0: 1 (a map, upgraded from nil)\n"
    );
    assert_eq!(p.get_app(&app, "/pid").1, pid, "the BEAM was not restarted");
    assert_eq!(p.container_ids(&app), containers);
    let releases = which_releases(&p, &app);
    assert!(
        releases.lines().any(|l| l == "0.4.0 permanent"),
        "{releases}"
    );
}

/// B's pre-compile hook: what a hot push's build can see of running releases — the one it
/// is handed, by the marker file inside it, and any other slug on the builder's disk.
const LOOK: &str = r#"set +e
if [ -n "${GIGALIXIR_PREVIOUS_SLUG:-}" ]; then
  echo "look: previous $(tar -xOf "$GIGALIXIR_PREVIOUS_SLUG" 2>/dev/null | grep -ao 'tenant-[ab]-marker' | sort -u | paste -sd, -)"
fi
echo "look: other slugs $(find / -xdev -name '*.tgz' 2>/dev/null | grep -vc '^/build/previous/')"
"#;

#[test]
fn a_hot_push_sees_only_its_own_release_and_leaves_another_tenant_alone() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let mark = |repo: &std::path::Path, who: &str| {
        std::fs::create_dir_all(repo.join("priv")).expect("priv");
        std::fs::write(
            repo.join("priv/tenant.txt"),
            format!("tenant-{who}-marker\n"),
        )
        .expect("marker");
    };

    // A: an app live, with state.
    let (a_repo, a_app) = p.new_app("hot_counter", "tena", work.path());
    mark(&a_repo, "a");
    p.commit_all(&a_repo, "a's marker");
    let (ok, out) = p.push(&a_repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    for n in 1..=2 {
        assert_eq!(p.get_app(&a_app, "/bump").1, format!("bumped to {n}\n"));
    }
    let a_containers = p.container_ids(&a_app);

    // B, another account: its app, a build hook that looks around, then a hot upgrade.
    let b = gigalixir_tests::Account::sign_up(&p, "bob@example.com");
    let b_app = format!("tenb-{}", &p.instance[1..7]);
    let b_repo = b.new_app("hot_counter", &b_app, &work.path().join("b"));
    mark(&b_repo, "b");
    std::fs::write(b_repo.join("look.sh"), LOOK).expect("hook");
    std::fs::write(
        b_repo.join("elixir_buildpack.config"),
        "hook_pre_compile=\"bash look.sh\"\n",
    )
    .expect("config");
    p.commit_all(&b_repo, "b's marker and hook");
    let (ok, out) = b.git(&b_repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    assert!(out.contains("look: other slugs 0"), "{out}");
    write_v0_2_0(&b_repo);
    p.commit_all(&b_repo, "0.2.0");
    let (ok, out) = b.git(&b_repo, &HOT);
    assert!(ok, "{out}");
    says(
        &out,
        &[
            "look: previous tenant-b-marker",
            "look: other slugs 0",
            "0.1.0 -> 0.2.0 installed in place",
        ],
    );
    assert!(
        !out.contains("tenant-a-marker"),
        "B's build saw A's release:\n{out}"
    );
    assert!(p
        .get_app(&b_app, "/")
        .1
        .starts_with("counter 0.2.0: 0 (a map"));

    // A's replica was not touched: same container, same code, same state.
    assert_eq!(p.container_ids(&a_app), a_containers);
    assert_eq!(p.get_app(&a_app, "/").1, "counter 0.1.0: 2\n");

    // What B's replica keeps for a crash is its own release, and B's app cannot change it
    // (read-only); A's replica, never upgraded, holds nothing there.
    let in_replica = |id: &str, script: &str| {
        let out = std::process::Command::new("docker")
            .args(["exec", "-u", "app", id, "sh", "-c", script])
            .output()
            .expect("docker exec");
        (out.status.success(), texts(&out).0.trim().to_owned())
    };
    let b_id = p.container_ids(&b_app).pop().expect("B's replica");
    assert_eq!(
        in_replica(&b_id, "ls /etc/gigalixir/hot"),
        (true, "release\nslug.tgz".to_owned())
    );
    assert_eq!(
        in_replica(
            &b_id,
            "tar -xOf /etc/gigalixir/hot/slug.tgz | grep -ao 'tenant-[ab]-marker' | sort -u"
        ),
        (true, "tenant-b-marker".to_owned())
    );
    let (wrote, _) = in_replica(
        &b_id,
        "echo hostile > /etc/gigalixir/hot/slug.tgz || rm -f /etc/gigalixir/hot/slug.tgz",
    );
    assert!(
        !wrote,
        "B's app changed the slug its replica boots after a crash"
    );
    assert_eq!(
        in_replica(&a_containers[0], "ls -A /etc/gigalixir/hot"),
        (true, String::new())
    );
}

/// The row of release `version` (`v2`) in what `gigalixir releases` printed.
fn row<'a>(releases: &'a str, version: &str) -> &'a str {
    releases
        .lines()
        .find(|l| l.split_whitespace().next() == Some(version))
        .unwrap_or_default()
}

/// A platform, an account, and its app (named from `prefix`) running hot_counter 0.1.0,
/// deployed normally: the platform, the work directory, the repository, the app.
fn counter_live(prefix: &str) -> (Platform, tempfile::TempDir, std::path::PathBuf, String) {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hot_counter", prefix, work.path());
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    (p, work, repo, app)
}

/// Whether `gigalixir-hot-upgrade` runs in container `id`.
fn upgrading(id: &str) -> bool {
    std::process::Command::new("docker")
        .args(["exec", id, "pgrep", "-f", "gigalixir-hot-upgrade"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_platform_killed_during_a_hot_upgrade_leaves_the_app_on_one_known_release() {
    let (p, _work, repo, app) = counter_live("hotkill");
    assert_eq!(p.get_app(&app, "/bump").1, "bumped to 1\n");
    let old = p.container_ids(&app);

    // 0.2.0 whose code_change takes its time: the platform dies while the replica's
    // upgrade runs (its dry run or the release handler's install).
    write_v0_2_0_with(&repo, "Process.sleep(4000) && nil");
    p.commit_all(&repo, "0.2.0, slowly");
    let mut push = p.spawn_git(&repo, &HOT);
    wait_for(
        "the replica's hot upgrade to start",
        Duration::from_secs(180),
        || upgrading(&old[0]),
    );
    p.kill();
    let _ = push.wait();

    // After a restart the interrupted release failed, and what runs is what the platform
    // says runs: 0.1.0, on a replica started from its slug (the one the upgrade touched
    // may run either version, so it is replaced).
    p.start_again();
    wait_for(
        "the app to answer 0.1.0 from a new replica",
        Duration::from_secs(120),
        || {
            let ids = p.container_ids(&app);
            ids.len() == 1 && ids != old && p.get_app(&app, "/").1 == "counter 0.1.0: 0\n"
        },
    );
    let releases = p.cli_ok(&repo, &["releases"]);
    assert!(row(&releases, "v1").contains("deployed"), "{releases}");
    assert!(row(&releases, "v2").contains("failed"), "{releases}");

    // Nothing is stuck: the same hot push goes through now.
    assert_eq!(p.get_app(&app, "/bump").1, "bumped to 1\n");
    let (ok, out) = p.push(&repo, &HOT);
    assert!(ok, "{out}");
    assert!(out.contains("0.1.0 -> 0.2.0 installed in place"), "{out}");
    assert_eq!(
        p.get_app(&app, "/").1,
        "counter 0.2.0: 1 (a map, upgraded from \"0.1.0\")\n"
    );
}

/// What `GET path` answers inside container `id` (one replica, not through the router).
fn replica_get(id: &str, path: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["exec", id, "curl", "-s", "-m", "5"])
        .arg(format!("http://127.0.0.1:4000{path}"))
        .output()
        .expect("docker exec");
    let (o, e) = texts(&out);
    if !out.status.success() {
        eprintln!("curl {path} in {id}: {e}");
    }
    o
}

#[test]
fn an_upgrade_that_fails_in_the_live_node_fails_the_push_and_leaves_the_other_replicas() {
    let (p, _work, repo, app) = counter_live("hotfail");
    p.cli_ok(&repo, &["ps:scale", "-r", "2"]);
    wait_for("two replicas", Duration::from_secs(90), || {
        !p.replica_id(&app, 1).is_empty() && !p.replica_id(&app, 2).is_empty()
    });
    let before = [p.replica_id(&app, 1), p.replica_id(&app, 2)];
    for id in &before {
        wait_for("the replica to answer", Duration::from_secs(60), || {
            replica_get(id, "/").starts_with("counter 0.1.0")
        });
        for n in 1..=3 {
            assert_eq!(replica_get(id, "/bump"), format!("bumped to {n}\n"));
        }
    }

    // 0.2.0 whose code_change converts a copy of the state (the dry run passes) but raises
    // in the live process: the release handler's install fails on the first replica.
    write_v0_2_0_with(
        &repo,
        "if Process.whereis(__MODULE__) == self(), do: raise(\"live only\")",
    );
    p.commit_all(&repo, "0.2.0 whose code_change fails in the live node");
    let (ok, out) = p.push(&repo, &HOT);
    assert!(!ok, "the failed upgrade was reported as deployed:\n{out}");
    let failed: u32 = out
        .split("the hot upgrade failed on web.")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no failed replica named in:\n{out}"));
    says(
        &out,
        &[
            "installing 0.2.0 failed: ** (RuntimeError) Counter.Store.code_change raised in the running process: live only",
            "(the release handler restarts the node on 0.1.0)",
        ],
    );
    let other = if failed == 1 { 2 } else { 1 };
    // The replica after it was not touched: same container, same node, same state.
    assert_eq!(p.replica_id(&app, other), before[other as usize - 1]);
    assert_eq!(
        replica_get(&before[other as usize - 1], "/"),
        "counter 0.1.0: 3\n"
    );
    // The failed one runs 0.1.0 again (its node restarted on the release it had).
    wait_for(
        "the failed replica to serve 0.1.0 again",
        Duration::from_secs(90),
        || {
            let id = p.replica_id(&app, failed);
            !id.is_empty() && replica_get(&id, "/").starts_with("counter 0.1.0: ")
        },
    );
    let releases = p.cli_ok(&repo, &["releases"]);
    assert!(row(&releases, "v1").contains("deployed"), "{releases}");
    assert!(row(&releases, "v2").contains("failed"), "{releases}");

    // A config stored for the next release: a running node keeps the environment it
    // started with, so the hot push deploys normally and says why.
    p.cli_ok(&repo, &["config:set", "--no_restart", "GREETING=hello"]);
    let (ok, out) = p.push(&repo, &HOT);
    assert!(ok, "{out}");
    says(
        &out,
        &[
            "Hot upgrade not possible: the config changed since v1",
            "Deployed v3",
        ],
    );
}
