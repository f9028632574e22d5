//! `git push` deploys, end to end: the real `gigalixir` CLI, the real `git`, a real
//! `gigalixir-platform`, the real Docker engine (scripts/images must have run).

use std::path::Path;
use std::time::{Duration, Instant};

use gigalixir_tests::upstream::{publish_git, StaticServer};
use gigalixir_tests::{docker, require_images, texts, Platform};
use serde_json::Value;
use shared::domain::AppName;
use shared::embedded::{SqliteBus, SqliteStore};
use shared::messages::{Envelope, Event};
use shared::model::BuildState;
use shared::ports::{Bus, Store};

fn push(p: &Platform, dir: &Path, args: &[&str]) -> (bool, String) {
    let out = p.git(dir, args);
    let (stdout, stderr) = texts(&out);
    (out.status.success(), format!("{stdout}{stderr}"))
}

/// A push without the build cache (`GIGALIXIR-CLEAN: true`).
fn push_clean(p: &Platform, dir: &Path) -> (bool, String) {
    let clean = "http.extraheader=GIGALIXIR-CLEAN: true";
    push(p, dir, &["-c", clean, "push", "gigalixir", "master"])
}

fn set_marker(dir: &Path, from: &str, to: &str) {
    let page = dir.join("lib/hello/page.ex");
    let text = std::fs::read_to_string(&page).expect("page");
    assert!(text.contains(from), "the fixture's marker changed: {text}");
    std::fs::write(&page, text.replace(from, to)).expect("write page");
}

fn releases(p: &Platform, dir: &Path) -> Vec<serde_json::Value> {
    let out = p.cli_ok(dir, &["releases", "--json"]);
    serde_json::from_str::<Vec<serde_json::Value>>(&out).expect("releases json")
}

#[test]
fn pushes_build_release_and_serve_the_app() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "hello", work.path());

    // v1: the first push builds, releases and serves.
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "first push failed:\n{out}");
    assert!(out.contains("remote: -----> Building"), "{out}");
    assert!(out.contains("Compiling"), "{out}");
    assert!(
        out.contains(&format!(
            "Deployed v1 to http://{app}.localhost:{}/",
            p.port
        )),
        "{out}"
    );
    assert_eq!(
        p.get_app(&app, "/"),
        (200, "Hello from hello v1\n".to_owned())
    );

    // v2: one changed line.
    set_marker(&repo, "Hello from hello v1", "Hello from hello v2");
    p.git_ok(&repo, &["commit", "-qam", "v2"]);
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "second push failed:\n{out}");
    assert!(out.contains("Deployed v2"), "{out}");
    assert_eq!(
        p.get_app(&app, "/"),
        (200, "Hello from hello v2\n".to_owned())
    );
    let list = releases(&p, &repo);
    let versions: Vec<i64> = list
        .iter()
        .map(|r| r["version"].as_i64().expect("version"))
        .collect();
    assert_eq!(versions, [2, 1]);
    assert_eq!(list[0]["status"], "deployed");
    let table = p.cli_ok(&repo, &["releases"]);
    assert!(table.contains("v2") && table.contains("v1"), "{table}");

    // A commit that does not compile: the push fails with the compiler's words, no release.
    let broken = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/broken/lib/broken.ex");
    std::fs::copy(&broken, repo.join("lib/broken.ex")).expect("copy broken");
    p.git_ok(&repo, &["add", "-A"]);
    p.git_ok(&repo, &["commit", "-qm", "broken"]);
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "a push that does not compile must fail:\n{out}");
    assert!(out.contains("CompileError"), "{out}");
    assert!(
        out.contains("undefined function this_function_does_not_exist"),
        "{out}"
    );
    assert!(out.contains("pre-receive hook declined"), "{out}");
    assert_eq!(releases(&p, &repo).len(), 2);
    assert_eq!(
        p.get_app(&app, "/"),
        (200, "Hello from hello v2\n".to_owned())
    );
    let remote_head = p.git_ok(&repo, &["ls-remote", "gigalixir", "refs/heads/master"]);
    let v2_sha = p.git_ok(&repo, &["rev-parse", "HEAD~1"]);
    assert!(
        remote_head.starts_with(v2_sha.trim()),
        "refs must not move: {remote_head}"
    );
    p.git_ok(&repo, &["reset", "-q", "--hard", "HEAD~1"]);

    // Another branch is stored, not built.
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master:feature"]);
    assert!(ok, "{out}");
    assert!(out.contains("Branch feature stored, not built"), "{out}");
    assert!(!out.contains("Building"), "{out}");
    assert_eq!(releases(&p, &repo).len(), 2);

    // Every step's message delivered twice more: still two releases, v2 still serving.
    redeliver_everything(&p, &app);
    let list = releases(&p, &repo);
    assert_eq!(list.len(), 2, "redeliveries made a release: {list:?}");
    assert_eq!(
        p.get_app(&app, "/"),
        (200, "Hello from hello v2\n".to_owned())
    );

    // Only the live release runs; the owner can clone the app's repository.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut count = p.running_containers(&app);
    while count != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        count = p.running_containers(&app);
    }
    assert_eq!(count, 1, "the previous release must be stopped");
    let clone_dir = work.path().join("clone");
    p.git_ok(
        work.path(),
        &["clone", "-q", &format!("{}/{app}.git", p.url()), "clone"],
    );
    assert!(clone_dir.join("lib/hello/page.ex").exists());

    // A corrupt pack is refused and the repository stays as it was.
    let key = gigalixir_tests::api_key(p.home.path());
    let head_before = p.git_ok(&repo, &["ls-remote", "gigalixir", "refs/heads/master"]);
    let old = head_before
        .split_whitespace()
        .next()
        .expect("sha")
        .to_owned();
    let command = format!(
        "{old} {} refs/heads/master\0report-status\n",
        "1".repeat(40)
    );
    let body = format!(
        "{:04x}{command}0000PACK-this-is-not-a-pack",
        command.len() + 4
    );
    let resp = reqwest::blocking::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/{app}.git/git-receive-pack",
            p.port
        ))
        .basic_auth("ada@example.com", Some(key))
        .header("content-type", "application/x-git-receive-pack-request")
        .body(body)
        .send()
        .expect("post");
    let text = resp.text().unwrap_or_default();
    assert!(
        !text.contains("ok refs/heads/master"),
        "a corrupt pack was accepted: {text}"
    );
    assert_eq!(
        p.git_ok(&repo, &["ls-remote", "gigalixir", "refs/heads/master"]),
        head_before
    );
    assert_eq!(
        p.get_app(&app, "/"),
        (200, "Hello from hello v2\n".to_owned())
    );

    // A force push that rewrites history is built.
    set_marker(&repo, "Hello from hello v2", "Hello from hello v3");
    p.git_ok(&repo, &["commit", "-q", "--amend", "-am", "v2 rewritten"]);
    let (ok, out) = push(
        &p,
        &repo,
        &[
            "-c",
            "http.extraheader=GIGALIXIR-HOT: true",
            "push",
            "--force",
            "gigalixir",
            "master",
        ],
    );
    assert!(ok, "force push failed:\n{out}");
    assert!(out.contains("hot upgrade requested"), "{out}");
    assert!(out.contains("Deployed v3"), "{out}");
    assert_eq!(
        p.get_app(&app, "/"),
        (200, "Hello from hello v3\n".to_owned())
    );
    // Destroying the app stops what runs it.
    p.cli_ok(&repo, &["apps:destroy", "-y"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.running_containers(&app) > 0 {
        assert!(
            Instant::now() < deadline,
            "the app's containers outlived it"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(p.get_app(&app, "/").0, 404);
}

/// Publishes each pipeline event of the app's builds twice more on the platform's own bus
/// (the SQLite file; a second process may write it), then waits until every step has
/// handled them.
fn redeliver_everything(p: &Platform, app: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = SqliteStore::open(&p.data_dir().join("store.db")).expect("store");
        let bus = SqliteBus::open(&p.data_dir().join("bus.db")).expect("bus");
        let app = AppName::parse(app).expect("name");
        let builds = store.builds_of(&app).await.expect("builds");
        let mut sent = 0;
        for build in builds.iter().filter(|b| b.state == BuildState::Deployed) {
            let release = store
                .releases(&app)
                .await
                .expect("releases")
                .into_iter()
                .find(|r| r.spec.build.as_ref() == Some(&build.id))
                .expect("release of the build");
            let events = [
                Event::BuildRequested {
                    app: app.clone(),
                    build: build.id.clone(),
                },
                Event::SlugBuilt {
                    app: app.clone(),
                    build: build.id.clone(),
                },
                Event::SlugUploaded {
                    app: app.clone(),
                    build: build.id.clone(),
                    slug: build.slug.clone().expect("slug"),
                },
                Event::ReleaseCreated {
                    app: app.clone(),
                    build: Some(build.id.clone()),
                    version: release.version,
                },
            ];
            for _ in 0..2 {
                for event in &events {
                    bus.publish(&event.topic(), &Envelope::event(event, None))
                        .await
                        .expect("publish");
                    sent += 1;
                }
            }
        }
        assert!(sent >= 8, "no deployed build to redeliver");
        let deadline = Instant::now() + Duration::from_secs(60);
        for sub in [
            "build.build-requested",
            "upload.slug-built",
            "release.slug-uploaded",
            "deploy.release-created",
        ] {
            while bus.pending(sub).await.expect("pending") > 0 {
                assert!(Instant::now() < deadline, "{sub} never drained");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
}

#[test]
fn unchanged_dependencies_are_not_recompiled() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("with_path_dep", "deps", work.path());
    let (ok, first) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{first}");
    assert!(
        first.contains("==> greeter"),
        "the first build compiles the dependency:\n{first}"
    );
    let (status, body) = p.get_app(&app, "/");
    assert_eq!(status, 200, "{body}");

    let file = repo.join("lib/with_path_dep/page.ex");
    let mut text = std::fs::read_to_string(&file).expect("read");
    text.push_str("\n# a change in the app's own code\n");
    std::fs::write(&file, text).expect("write");
    p.git_ok(&repo, &["commit", "-qam", "app change"]);
    let (ok, second) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{second}");
    assert!(
        !second.contains("==> greeter"),
        "the dependency was recompiled:\n{second}"
    );
    assert!(second.contains("Using the build cache (entry"), "{second}");
    assert!(
        second.contains("Dependencies reused from the cache, none recompiled: greeter"),
        "{second}"
    );
    assert!(second.contains("Deployed v2"), "{second}");

    // The builder keeps the cache in a volume; without it (another engine, a lost volume)
    // the copy kept in the blob store seeds the build.
    let volumes = docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("label=gigalixir.instance={}", p.instance),
        "--filter",
        &format!("label=gigalixir.app={app}"),
    ]);
    // (besides the warm builder's own /build)
    let volume = volumes
        .lines()
        .find(|v| v.starts_with(&format!("gx-cache-{}-{app}-", p.instance)))
        .unwrap_or_else(|| panic!("no cache volume: {volumes}"))
        .to_owned();
    // (the app's warm builder holds it)
    for builder in docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=gigalixir.app={app}"),
        "--filter",
        "label=gigalixir.warm-build",
    ])
    .split_whitespace()
    {
        docker(&["rm", "-f", "-v", builder]);
    }
    docker(&["volume", "rm", &volume]);
    // (a push of the same files would reuse the running slug)
    std::fs::write(repo.join("lib/with_path_dep/notes.txt"), "fresh builder\n").expect("write");
    p.commit_all(&repo, "on a fresh builder");
    let (ok, seeded) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{seeded}");
    assert!(seeded.contains("Using the build cache (entry"), "{seeded}");
    assert!(!seeded.contains("==> greeter"), "{seeded}");
    assert!(seeded.contains("Deployed v3"), "{seeded}");

    // A clean build ignores the cache.
    p.git_ok(&repo, &["commit", "-q", "--allow-empty", "-m", "rebuild"]);
    let (ok, clean) = push_clean(&p, &repo);
    assert!(ok, "{clean}");
    assert!(clean.contains("clean, without the cache"), "{clean}");
    assert!(
        clean.contains("==> greeter"),
        "a clean build compiles everything:\n{clean}"
    );
    assert!(clean.contains("Deployed v4"), "{clean}");

    // Destroying the app removes its build cache too.
    p.cli_ok(&repo, &["apps:destroy", "-a", &app, "-y"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = docker(&["volume", "ls", "-q", "--filter", &format!("name={volume}")]);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache volume outlived the app"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_second_push_waits_for_the_first_and_builds_on_it() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "queue", work.path());
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");

    set_marker(&repo, "Hello from hello v1", "Hello from hello v2");
    p.git_ok(&repo, &["commit", "-qam", "v2"]);
    let first = p.spawn_git(&repo, &["push", "gigalixir", "master"]);
    // Wait until the first push's build is recorded.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = SqliteStore::open(&p.data_dir().join("store.db")).expect("store");
    let name = AppName::parse(&app).expect("name");
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt.block_on(store.builds_of(&name)).expect("builds").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the first push never started building"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    set_marker(&repo, "Hello from hello v2", "Hello from hello v3");
    p.git_ok(&repo, &["commit", "-qam", "v3"]);
    let (ok, second) = push(&p, &repo, &["push", "gigalixir", "master"]);
    let first = first.wait_with_output().expect("first push ends");
    let (o, e) = texts(&first);
    assert!(first.status.success(), "first push:\n{o}{e}");
    assert!(e.contains("Deployed v2"), "{e}");
    assert!(ok, "second push:\n{second}");
    assert!(
        second.contains("is in progress; waiting for it to finish"),
        "{second}"
    );
    assert!(
        second.contains("while this push waited; this push builds on it"),
        "{second}"
    );
    assert!(second.contains("Deployed v3"), "{second}");
    assert_eq!(
        p.get_app(&app, "/"),
        (200, "Hello from hello v3\n".to_owned())
    );
    assert_eq!(releases(&p, &repo).len(), 3);
}

#[test]
fn pushes_without_credentials_or_to_others_apps_are_refused() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "mine", work.path());

    // No netrc: git is asked for credentials (401) and cannot prompt.
    let anonymous = std::process::Command::new("git")
        .args(["push", &format!("{}/{app}.git", p.url()), "master"])
        .current_dir(&repo)
        .env("HOME", work.path())
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git");
    assert!(!anonymous.status.success());
    let (_, err) = texts(&anonymous);
    assert!(
        err.contains("could not read Username") || err.contains("Authentication failed"),
        "{err}"
    );

    // An app that does not exist (or is someone else's) is not found.
    let (ok, out) = push(
        &p,
        &repo,
        &[
            "push",
            &format!("{}/nobody-has-this.git", p.url()),
            "master",
        ],
    );
    assert!(!ok);
    assert!(out.contains("not found"), "{out}");

    // A repository without mix.exs or .buildpacks is refused with what was looked for.
    std::fs::remove_file(repo.join("mix.exs")).expect("rm mix.exs");
    p.git_ok(&repo, &["commit", "-qam", "no mix.exs"]);
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("mix.exs"),
        "the refusal names what was looked for:\n{out}"
    );
    assert!(out.contains(".buildpacks"), "{out}");
    assert!(releases(&p, &repo).is_empty());
}

#[test]
fn submodules_are_part_of_the_build() {
    require_images();
    // The submodule is served on loopback, which only this flag lets the platform fetch.
    let p = Platform::start_with(&["--git-allow-loopback"]);
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let repo = p.fixture_repo("with_path_dep", work.path());
    // The path dependency moves into a repository of its own, used as a submodule.
    let sub = work.path().join("greeter-src");
    std::fs::rename(repo.join("deps_src/greeter"), &sub).expect("move greeter");
    p.git_ok(&sub, &["init", "-q", "--initial-branch=master"]);
    p.git_ok(&sub, &["add", "-A"]);
    p.git_ok(&sub, &["commit", "-qm", "greeter"]);
    let served = work.path().join("served");
    std::fs::create_dir_all(&served).expect("mkdir");
    publish_git(&sub, &served, "greeter");
    let server = StaticServer::start(&served);
    p.git_ok(&repo, &["add", "-A"]);
    let url = format!("{}/greeter.git", server.url());
    p.git_ok(&repo, &["submodule", "add", "-q", &url, "deps_src/greeter"]);
    p.git_ok(&repo, &["commit", "-qm", "greeter as a submodule"]);
    let app = format!("subs-{}", &p.instance[1..7]);
    p.cli_ok(&repo, &["create", "app", &app]);
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "a push with a submodule failed:\n{out}");
    assert!(
        out.contains("==> greeter"),
        "the submodule's code was built:\n{out}"
    );
    let (status, _) = p.get_app(&app, "/");
    assert_eq!(status, 200);

    // A submodule URL outside the rules is refused with the rule (the loopback rule, with
    // no request reaching the server, is tested in the isolation suite).
    for (bad, rule) in [
        ("file:///etc", "the scheme `file:` is not allowed"),
        ("/tmp/x", "local paths are not fetched"),
        ("ssh://h/r", "the scheme `ssh:` is not allowed"),
        ("git@h:r", "SSH addresses"),
        ("--upload-pack=touch /tmp/pwned", "command-line option"),
        ("http://169.254.169.254/", "link-local"),
    ] {
        p.git_ok(
            &repo,
            &[
                "config",
                "-f",
                ".gitmodules",
                "submodule.deps_src/greeter.url",
                bad,
            ],
        );
        p.git_ok(&repo, &["commit", "-qam", "another submodule URL"]);
        let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
        assert!(!ok, "{bad}: {out}");
        assert!(out.contains(rule), "{bad}: expected `{rule}` in:\n{out}");
        assert!(!Path::new("/tmp/pwned").exists());
    }
}

#[test]
fn rollbacks_bring_back_the_old_slug_and_config() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "back", work.path());
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    p.cli_ok(&repo, &["config:set", "FOO=bar"]);
    set_marker(&repo, "Hello from hello v1", "Hello from hello v2");
    p.git_ok(&repo, &["commit", "-qam", "v2"]);
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok && out.contains("Deployed v3"), "{out}");
    assert_eq!(p.get_app(&app, "/").1, "Hello from hello v2\n");

    let out = p.cli_ok(&repo, &["releases:rollback", "-r", "1"]);
    assert!(out.contains("v4 is live"), "{out}");
    assert_eq!(p.get_app(&app, "/").1, "Hello from hello v1\n");
    let config: Value =
        serde_json::from_str(&p.cli_ok(&repo, &["config", "--json"])).expect("json");
    assert!(
        config.get("FOO").is_none(),
        "v1's config comes back: {config}"
    );
    let list = releases(&p, &repo);
    assert_eq!(list[0]["summary"], "Rollback to v1");
    assert_eq!(list[0]["status"], "deployed");
    assert_eq!(list[1]["status"], "rolled_back");

    // Without -r: back to the release before the running one (v3, code v2 with FOO=bar).
    let out = p.cli_ok(&repo, &["releases:rollback"]);
    assert!(out.contains("to v3") && out.contains("v5 is live"), "{out}");
    assert_eq!(p.get_app(&app, "/").1, "Hello from hello v2\n");
    let config: Value =
        serde_json::from_str(&p.cli_ok(&repo, &["config", "--json"])).expect("json");
    assert_eq!(config["FOO"], "bar");

    // Bad targets are refused with the reason.
    let out = p.cli(&repo, &["releases:rollback", "-r", "5"]);
    assert!(!out.status.success());
    assert!(
        texts(&out).1.contains("running release already"),
        "{:?}",
        texts(&out)
    );
    let out = p.cli(&repo, &["releases:rollback", "-r", "42"]);
    assert!(!out.status.success());
    assert!(
        texts(&out).1.contains("no release v42"),
        "{:?}",
        texts(&out)
    );
}

#[test]
fn the_release_phase_runs_before_traffic_moves_and_can_stop_a_deploy() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "phase", work.path());
    let procfile = |release: &str| {
        std::fs::write(
            repo.join("Procfile"),
            format!("web: bin/hello start\nrelease: {release}\n"),
        )
        .expect("Procfile");
    };
    procfile("echo release phase ran for $APP_NAME");
    p.git_ok(&repo, &["add", "-A"]);
    p.git_ok(&repo, &["commit", "-qm", "release phase"]);
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok && out.contains("Deployed v1"), "{out}");
    assert_eq!(p.get_app(&app, "/").1, "Hello from hello v1\n");
    // Its output reaches the pusher, before the release takes traffic.
    let ran = out
        .find(&format!("release phase ran for {app}"))
        .unwrap_or_else(|| panic!("the release phase's output is not shown:\n{out}"));
    assert!(out.contains("Running the release phase"), "{out}");
    assert!(ran < out.find("v1 is up").expect("up"), "{out}");

    // A failing release phase stops the deploy; v1 keeps serving.
    procfile("sh -c 'echo migrations failed; exit 3'");
    set_marker(&repo, "Hello from hello v1", "Hello from hello v2");
    p.git_ok(&repo, &["commit", "-qam", "failing release phase"]);
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "{out}");
    assert!(out.contains("release phase"), "{out}");
    assert!(out.contains("exited with code 3"), "{out}");
    assert!(
        out.contains("migrations failed"),
        "the phase's own output is shown:\n{out}"
    );
    assert_eq!(p.get_app(&app, "/").1, "Hello from hello v1\n");
    let list = releases(&p, &repo);
    assert_eq!(list[0]["status"], "failed");
}

#[test]
fn a_deploy_to_several_replicas_rolls_without_dropping_requests() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "roll", work.path());
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    p.cli_ok(&repo, &["ps:scale", "-r", "3"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.running_containers(&app) < 3 {
        assert!(Instant::now() < deadline, "never reached three replicas");
        std::thread::sleep(Duration::from_millis(200));
    }

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let (port, app, stop) = (p.port, app.clone(), stop.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            let (mut bodies, mut failed) = (std::collections::BTreeSet::new(), 0);
            let end = Instant::now() + Duration::from_secs(90);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                match client
                    .get(format!("http://127.0.0.1:{port}/"))
                    .header("host", format!("{app}.localhost:{port}"))
                    .send()
                {
                    Ok(r) if r.status().is_success() => {
                        bodies.insert(r.text().unwrap_or_default());
                    }
                    _ => failed += 1,
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (bodies, failed)
        })
    };
    set_marker(&repo, "Hello from hello v1", "Hello from hello v2");
    p.git_ok(&repo, &["commit", "-qam", "v2"]);
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (bodies, failed) = probe.join().expect("probe");
    assert!(ok, "{out}");
    assert_eq!(failed, 0, "requests failed during the rolling deploy");
    assert!(bodies.contains("Hello from hello v2\n"), "{bodies:?}");
    for _ in 0..6 {
        assert_eq!(p.get_app(&app, "/").1, "Hello from hello v2\n");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.running_containers(&app) != 3 {
        assert!(
            Instant::now() < deadline,
            "the old replicas were not stopped"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_http_health_check_decides_when_a_release_takes_traffic() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "health", work.path());
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");

    // A check the app never passes: the deploy fails after the boot timeout, v1 serves.
    p.cli_ok(
        &repo,
        &[
            "health:set",
            "--path",
            "/",
            "--status",
            "204",
            "--boot-timeout",
            "5",
            "--drain",
            "1",
        ],
    );
    let shown = p.cli_ok(&repo, &["health"]);
    assert!(
        shown.contains("GET / must answer 204") && shown.contains("5 s"),
        "{shown}"
    );
    set_marker(&repo, "Hello from hello v1", "Hello from hello v2");
    p.git_ok(&repo, &["commit", "-qam", "v2"]);
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("did not answer 204 on GET / within 5 s"),
        "{out}"
    );
    assert!(out.contains("it answered 200"), "{out}");
    assert_eq!(p.get_app(&app, "/").1, "Hello from hello v1\n");

    // The check it passes: the same commit deploys.
    p.cli_ok(&repo, &["health:set", "--status", "200"]);
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok && out.contains("Deployed v3"), "{out}");
    assert_eq!(p.get_app(&app, "/").1, "Hello from hello v2\n");

    // Bad settings are refused.
    let bad = p.cli(&repo, &["health:set", "--path", "no-slash"]);
    assert!(!bad.status.success());
    assert!(texts(&bad).1.contains("is not a path"), "{:?}", texts(&bad));
}

#[test]
fn an_app_that_crashes_at_boot_is_rolled_back_with_the_reason() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "crash", work.path());
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");

    // v2 prints something and exits at once.
    std::fs::write(
        repo.join("Procfile"),
        "web: sh -c 'echo the database is unreachable >&2; exit 7'\n",
    )
    .expect("Procfile");
    p.git_ok(&repo, &["add", "-A"]);
    p.git_ok(&repo, &["commit", "-qm", "crashes at boot"]);
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "{out}");
    assert!(out.contains("v2 failed to start"), "{out}");
    assert!(out.contains("exited with code 7"), "{out}");
    assert!(
        out.contains("the database is unreachable"),
        "its last output is shown:\n{out}"
    );
    assert!(out.contains("previous release keeps serving"), "{out}");
    assert_eq!(p.get_app(&app, "/").1, "Hello from hello v1\n");
    let list = releases(&p, &repo);
    assert_eq!(
        (list[0]["status"].as_str(), list[1]["status"].as_str()),
        (Some("failed"), Some("deployed"))
    );
}

#[test]
fn builds_beyond_the_concurrency_limit_wait_in_order_and_say_so() {
    require_images();
    let p = Platform::start_with(&["--build-concurrency", "1"]);
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let apps: Vec<String> = ["one", "two", "three"]
        .iter()
        .map(|n| format!("{n}-{}", &p.instance[1..7]))
        .collect();
    let repos: Vec<_> = apps
        .iter()
        .map(|app| {
            let parent = work.path().join(app);
            std::fs::create_dir(&parent).expect("dir");
            let repo = p.fixture_repo("hello", &parent);
            p.cli_ok(&repo, &["create", "app", app]);
            repo
        })
        .collect();
    // Three pushes to three apps, a moment apart; one builder.
    let mut pushes = Vec::new();
    for repo in &repos {
        pushes.push(p.spawn_git(repo, &["push", "gigalixir", "master"]));
        std::thread::sleep(Duration::from_millis(400));
    }
    let outputs: Vec<String> = pushes
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().expect("push");
            let text = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "{text}");
            text
        })
        .collect();
    for (app, out) in apps.iter().zip(&outputs) {
        assert!(out.contains("Deployed v1"), "{out}");
        assert_eq!(p.get_app(app, "/").0, 200);
    }
    let queued = "Queued: other builds are running; this one starts when a builder is free";
    assert!(!outputs[0].contains(queued), "{}", outputs[0]);
    assert!(outputs[1].contains(queued), "{}", outputs[1]);
    assert!(outputs[2].contains(queued), "{}", outputs[2]);
    // One at a time, first come first served.
    let log = p.log();
    let finished: Vec<usize> = apps
        .iter()
        .map(|app| {
            let span = format!("run_build{{app={app} ");
            log.lines()
                .position(|l| l.contains(&span) && l.contains("build succeeded"))
                .unwrap_or_else(|| panic!("no finished build of {app} in the log"))
        })
        .collect();
    assert!(
        finished[0] < finished[1] && finished[1] < finished[2],
        "builds finished out of order: {finished:?}"
    );
}

#[test]
fn a_replica_that_crashes_after_going_live_is_started_again() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "crash", work.path());
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok && out.contains("Deployed v1"), "{out}");
    let ids = p.container_ids(&app);
    assert_eq!(ids.len(), 1, "one replica: {ids:?}");
    let id = ids[0].clone();
    let started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &id]);

    // The BEAM is killed from outside, as the OOM killer would.
    docker(&["kill", "--signal", "KILL", &id]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = p.get_app(&app, "/");
        if status == 200 {
            assert_eq!(body, "Hello from hello v1\n");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the app did not come back: {status} {body}\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The same container, started again.
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &id]),
        "true"
    );
    assert_ne!(
        docker(&["inspect", "-f", "{{.State.StartedAt}}", &id]),
        started
    );
    assert!(
        p.log()
            .contains("a replica stopped on its own; starting it again"),
        "{}",
        p.log()
    );
}

#[test]
fn a_push_that_changes_nothing_a_build_reads_reuses_the_running_slug() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "docs", work.path());
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    let v1 = p
        .git_ok(&repo, &["rev-parse", "--short=7", "HEAD"])
        .trim()
        .to_owned();
    let replica = p.replica_id(&app, 1);

    // A read-me line: nothing built, the running replica carries on as v2.
    let readme = repo.join("README.md");
    let mut text = std::fs::read_to_string(&readme).expect("readme");
    text.push_str("\nDeployed with git push.\n");
    std::fs::write(&readme, &text).expect("readme");
    p.commit_all(&repo, "docs");
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    for said in [
        format!("-----> Nothing to build: only README.md changed since {v1}, which no build reads; reusing the slug v1 runs"),
        "-----> The replicas of v1 carry on as v2 (the same slug and config): no restart".into(),
        format!("Deployed v2 to http://{app}.localhost:{}/", p.port),
    ] {
        assert!(out.contains(&said), "`{said}` missing:\n{out}");
    }
    assert!(!out.contains("Compiling"), "{out}");
    assert_eq!(p.replica_id(&app, 1), replica, "the replica was replaced");
    assert_eq!(
        p.get_app(&app, "/"),
        (200, "Hello from hello v1\n".to_owned())
    );
    let list = releases(&p, &repo);
    let head = p.git_ok(&repo, &["rev-parse", "HEAD"]).trim().to_owned();
    assert_eq!(list[0]["version"], 2, "{list:?}");
    assert_eq!(list[0]["status"], "deployed", "{list:?}");
    assert_eq!(list[0]["sha"], head.as_str(), "{list:?}");
    assert_eq!(list[0]["deployed_by"], "kept", "{list:?}");
    assert_eq!(list[0]["slug_size"], list[1]["slug_size"], "{list:?}");
    let ps = p.cli_ok(&repo, &["ps"]);
    assert!(
        ps.contains("v2"),
        "ps shows the release the replica runs:\n{ps}"
    );

    // The same files again (an empty commit): the same.
    p.git_ok(&repo, &["commit", "-q", "--allow-empty", "-m", "again"]);
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("-----> Nothing to build: the files are those of "),
        "{out}"
    );
    assert_eq!(p.replica_id(&app, 1), replica, "the replica was replaced");

    // A rollback to v2 (the same slug and config): the replica carries on.
    let out = p.cli_ok(&repo, &["releases:rollback", "-r", "2"]);
    assert!(
        out.contains(
            "the running replicas carry on (they already run its slug and config), no restart"
        ),
        "{out}"
    );
    assert_eq!(p.replica_id(&app, 1), replica, "the replica was replaced");

    // Code that names the read-me: then a read-me change builds.
    std::fs::write(
        repo.join("lib/hello/docs.ex"),
        "defmodule Hello.Docs do\n  @external_resource \"README.md\"\n  @readme File.read!(\"README.md\")\n  def readme, do: @readme\nend\n",
    )
    .expect("docs.ex");
    p.commit_all(&repo, "code that reads the read-me");
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok && out.contains("Compiling"), "{out}");
    std::fs::write(&readme, format!("{text}\nMore.\n")).expect("readme");
    p.commit_all(&repo, "docs again");
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    assert!(!out.contains("Nothing to build"), "{out}");
    assert!(out.contains("Compiling"), "{out}");

    // The config the slug was built with changed: the next push builds with the new one.
    p.cli_ok(&repo, &["config:set", "BUILT_WITH=new"]);
    std::fs::write(repo.join("CHANGELOG.md"), "# Changes\n").expect("changelog");
    p.commit_all(&repo, "a change log");
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    assert!(!out.contains("Nothing to build"), "{out}");
    assert!(out.contains("Compiling"), "{out}");

    // A clean push of the same files builds.
    p.git_ok(&repo, &["commit", "-q", "--allow-empty", "-m", "clean"]);
    let (ok, out) = push_clean(&p, &repo);
    assert!(ok, "{out}");
    assert!(out.contains("Compiling"), "{out}");
}

#[test]
fn nothing_a_build_starts_runs_on_in_its_warm_builder() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "linger", work.path());
    // A build hook leaves a process behind.
    std::fs::write(
        repo.join("elixir_buildpack.config"),
        "hook_pre_compile=\"(sleep 600 >/dev/null 2>&1 &)\"\n",
    )
    .expect("config");
    p.commit_all(&repo, "a lingering process");
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    let builder = p.warm_builders(&app);
    assert!(!builder.is_empty(), "no warm builder kept");
    let running = docker(&[
        "exec",
        &builder,
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done",
    ]);
    assert!(
        !running.contains("sleep 600"),
        "the build's process runs on in its builder:\n{running}"
    );
}

/// A warm builder keeps a Mix running after a build: a push that changes the app's own code
/// compiles and assembles its release in it. A change to what that Mix read once (config/,
/// the environment) or a failed build starts a fresh one, and each push serves its own code.
#[test]
fn a_warm_push_compiles_in_the_builders_running_mix() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "kept-mix", work.path());
    let kept = "Compiling (in the builder's running Mix)";
    let step = |from: &str, to: &str, expect_kept: bool| {
        set_marker(&repo, from, to);
        p.commit_all(&repo, to);
        let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
        assert!(ok, "{out}");
        assert_eq!(out.contains(kept), expect_kept, "{to}:\n{out}");
        assert_eq!(p.get_app(&app, "/"), (200, format!("{to}\n")), "{out}");
    };
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(ok && !out.contains(kept), "{out}");
    step("Hello from hello v1", "kept one", true);
    // Code run at compile time in the kept Mix leaves a process: it does not outlive the
    // build, and the kept Mix (a BEAM and its port helper) is all that runs on.
    std::fs::write(
        repo.join("lib/linger.ex"),
        "defmodule Linger do\n  System.cmd(\"sh\", [\"-c\", \"sleep 600 >/dev/null 2>&1 &\"])\nend\n",
    )
    .expect("linger");
    step("kept one", "kept two", true);
    let builder = p.warm_builders(&app);
    let running = docker(&[
        "exec",
        &builder,
        "sh",
        "-c",
        "for p in /proc/[0-9]*; do echo \"$(cat $p/comm 2>/dev/null) $(tr '\\0' ' ' < $p/cmdline 2>/dev/null)\"; done",
    ]);
    assert!(!running.contains("sleep 600"), "{running}");
    assert!(
        running.contains("mix_server.exs"),
        "no kept Mix:\n{running}"
    );
    std::fs::remove_file(repo.join("lib/linger.ex")).expect("rm linger");
    p.commit_all(&repo, "no linger");

    // config/ is read once by a Mix: a fresh one
    std::fs::create_dir_all(repo.join("config")).expect("config dir");
    std::fs::write(
        repo.join("config/config.exs"),
        "import Config\nconfig :hello, greeting: \"hi\"\n",
    )
    .expect("config");
    step("kept two", "with config", false);
    step("with config", "kept three", true);

    // a config var is part of the build's environment
    p.cli_ok(&repo, &["config:set", "BUILD_FLAVOUR=plain"]);
    step("kept three", "new environment", false);
    step("new environment", "kept four", true);

    // a failed build stops its Mix; the next starts a fresh one
    let page = repo.join("lib/hello/page.ex");
    let good = std::fs::read_to_string(&page).expect("page");
    std::fs::write(&page, good.replace("def body", "def body(")).expect("break");
    p.commit_all(&repo, "broken");
    let (ok, out) = push(&p, &repo, &["push", "gigalixir", "master"]);
    assert!(!ok && out.contains(kept), "{out}");
    // the compiler's own error, from the kept Mix's standard error
    assert!(out.contains("lib/hello/page.ex"), "{out}");
    std::fs::write(&page, &good).expect("mend");
    step("kept four", "mended", false);
    step("mended", "kept five", true);
}
