//! Stacks, judged by what the running app reports (`System.version()`, the OTP release),
//! not by the build log: the versions an app asks for choose its stack, a stack it cannot
//! have is refused before anything builds, `stack:set` pins one, rollbacks run a release
//! on its own stack's runner, and a hot upgrade does not cross stacks.

use std::path::Path;

use gigalixir_tests::{docker, require_images, Platform};

fn versions(p: &Platform, app: &str) -> String {
    let (status, body) = p.get_app(app, "/");
    assert_eq!(status, 200, "{body}");
    body
}

fn set_file(dir: &Path, name: &str, text: Option<&str>) {
    let path = dir.join(name);
    match text {
        Some(t) => std::fs::write(path, t).expect("write"),
        None => {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The image of the running replica of release `version`.
fn runner_image(p: &Platform, app: &str, version: u32) -> String {
    docker(&[
        "ps",
        "--filter",
        &format!("label=gigalixir.app={app}"),
        "--filter",
        &format!("label=gigalixir.release={version}"),
        "--filter",
        &format!("label=gigalixir.instance={}", p.instance),
        "--format",
        "{{.Image}}",
    ])
}

#[test]
fn the_versions_an_app_asks_for_choose_its_stack() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("versions", "stacks", work.path());
    let info = p.cli_ok(&repo, &["apps:info"]);
    assert!(
        info.contains("stack:       auto"),
        "new apps have no stack: {info}"
    );

    // Nothing asked for (mix.exs: ~> 1.14): trixie.
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    assert!(
        versions(&p, &app).contains("elixir 1.18"),
        "{}",
        versions(&p, &app)
    );
    assert!(versions(&p, &app).contains("otp 27"));

    // .tool-versions asks for Elixir 1.14: bookworm, on bookworm's runner.
    set_file(
        &repo,
        ".tool-versions",
        Some("elixir 1.14.0-otp-25\nerlang 25.2\n"),
    );
    p.commit_all(&repo, "elixir 1.14");
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    assert!(out.contains("Stack bookworm"), "{out}");
    let page = versions(&p, &app);
    assert!(
        page.contains("elixir 1.14") && page.contains("otp 25"),
        "{page}"
    );
    assert_eq!(runner_image(&p, &app, 2), "gigalixir-runner:bookworm");

    // elixir_buildpack.config wins over .tool-versions.
    set_file(
        &repo,
        "elixir_buildpack.config",
        Some("elixir_version=1.18.3\nerlang_version=27\n"),
    );
    p.commit_all(&repo, "the buildpack config asks for 1.18");
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    assert!(versions(&p, &app).contains("elixir 1.18"), "{out}");
    set_file(&repo, "elixir_buildpack.config", None);
    p.commit_all(&repo, "no buildpack config");

    // Versions no stack has are refused before anything builds, the stacks listed.
    for wanted in ["1.16.2", "1.99.0"] {
        set_file(&repo, ".tool-versions", Some(&format!("elixir {wanted}\n")));
        p.commit_all(&repo, &format!("elixir {wanted}"));
        let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
        assert!(!ok, "{out}");
        assert!(
            out.contains(&format!("no stack has Elixir {wanted} (in .tool-versions)")),
            "{out}"
        );
        assert!(out.contains("bookworm (Erlang/OTP 25"), "{out}");
        assert!(out.contains("trixie (Erlang/OTP 27"), "{out}");
        assert!(out.contains("forky (Erlang/OTP 29"), "{out}");
        assert!(!out.contains("app detected"), "nothing was built:\n{out}");
        p.git_ok(&repo, &["reset", "-q", "--hard", "HEAD~1"]);
    }
    assert!(versions(&p, &app).contains("elixir 1.18"));

    // A rollback to the bookworm release runs it on bookworm's runner again.
    p.cli_ok(&repo, &["releases:rollback", "-r", "2"]);
    let page = versions(&p, &app);
    assert!(page.contains("elixir 1.14"), "{page}");
    assert_eq!(runner_image(&p, &app, 4), "gigalixir-runner:bookworm");

    // stack:set pins a stack whatever the app asks for; the build cache starts empty.
    set_file(&repo, ".tool-versions", None);
    p.commit_all(&repo, "asks for nothing");
    let said = p.cli_ok(&repo, &["stack:set", "-s", "bookworm"]);
    assert!(said.contains("now builds on stack bookworm"), "{said}");
    assert!(p
        .cli_ok(&repo, &["apps:info"])
        .contains("stack:       bookworm"));
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    assert!(out.contains("the app's stack (stack:set)"), "{out}");
    assert!(
        out.contains("Stack changed from trixie to bookworm: starting from an empty build cache"),
        "{out}"
    );
    assert!(versions(&p, &app).contains("elixir 1.14"));

    // Back to choosing per build: trixie again, and a hot upgrade across stacks deploys
    // normally, saying why.
    p.cli_ok(&repo, &["stack:set", "-s", "auto"]);
    p.git_ok(&repo, &["commit", "-q", "--allow-empty", "-m", "hot"]);
    let (ok, out) = p.push(
        &repo,
        &[
            "-c",
            "http.extraheader=GIGALIXIR-HOT: true",
            "push",
            "gigalixir",
            "master",
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("Hot upgrade not possible"), "{out}");
    assert!(
        out.contains("runs on stack bookworm and this release is built on trixie"),
        "{out}"
    );
    assert!(versions(&p, &app).contains("elixir 1.18"));

    // Unknown stacks are refused by the CLI and the API.
    let bad = p.cli(&repo, &["stack:set", "-s", "gigalixir-22"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bookworm, trixie, forky"));
}

#[test]
fn hex_packages_on_bookworm_are_told_to_move_to_trixie() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let repo = p.fixture_repo_with("hex_app", work.path(), |dir| {
        set_file(dir, ".tool-versions", Some("elixir 1.14.0\n"));
        // the lock is read before anything is fetched: one entry is enough
        set_file(dir, "mix.lock", Some("%{\n  \"gx_base\": {:hex, :gx_base, \"1.0.0\", \"00\", [:mix], [], \"hexpm\", \"11\"},\n}\n"));
    });
    let app = format!("bookhex-{}", &p.instance[1..7]);
    p.cli_ok(&repo, &["create", "app", &app]);
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "{out}");
    assert!(out.contains("stack bookworm has no Hex client"), "{out}");
    assert!(out.contains("move the app to trixie"), "{out}");
    assert!(!out.contains("app detected"), "nothing was built:\n{out}");
}
