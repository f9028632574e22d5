//! Apps with Hex packages deploy through the platform's package cache, end to end: a real,
//! signed Hex repository built from the tests' own packages stands in for hex.pm (nothing
//! of hex.pm is reachable), the platform pulls from it, and real pushes build on trixie
//! with Hex, rebar3 and esbuild.

use std::path::Path;
use std::time::Duration;

use gigalixir_tests::upstream::{copy_tree, HexUpstream};
use gigalixir_tests::{require_images, Platform};

const TARBALLS: [&str; 3] = ["gx_base-1.0.0", "gx_greet-1.0.0", "gx_erl-1.0.0"];

fn hex_app(p: &Platform, upstream: &HexUpstream, parent: &Path, prefix: &str) -> (std::path::PathBuf, String) {
    std::fs::create_dir_all(parent).expect("mkdir");
    let repo = p.fixture_repo_with("hex_app", parent, |dir| upstream.resolve_lock(dir));
    let app = format!("{prefix}-{}", &p.instance[1..7]);
    p.cli_ok(&repo, &["create", "app", &app]);
    (repo, app)
}

fn tarballs_kept(p: &Platform) -> usize {
    p.blobs_under("hex/tarballs").len()
}

#[test]
fn a_hex_app_builds_through_the_package_cache_held_to_its_lock() {
    require_images();
    let mut upstream = HexUpstream::start();
    let p = Platform::start_with(&upstream.platform_flags());
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = hex_app(&p, &upstream, &work.path().join("one"), "hexa");
    let before: Vec<usize> = TARBALLS.iter().map(|t| upstream.tarball_requests(t)).collect();

    // The push builds on trixie, fetches each locked tarball from the upstream once,
    // compiles the Elixir and rebar3 packages, runs the assets step.
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "the push failed:\n{out}");
    assert!(out.contains("Stack trixie"), "{out}");
    assert!(out.contains("3 packages verified against mix.lock"), "{out}");
    assert!(out.contains("===> Compiling gx_erl"), "rebar3 built gx_erl:\n{out}");
    assert!(out.contains("Building assets (mix assets.deploy)"), "{out}");
    assert!(out.contains("Deployed v1"), "{out}");
    for (t, n) in TARBALLS.iter().zip(&before) {
        assert_eq!(upstream.tarball_requests(t), n + 1, "{t} fetched once:\n{}", upstream.server.log());
    }
    let (status, page) = p.get_app(&app, "/");
    assert_eq!(status, 200, "{page}");
    for value in [
        "hello from gx_greet 1.0.0 (gx_base 1.0.0)",
        "gx_base 1.0.0",
        "gx_erl 1.0.0",
        "elixir 1.18",
        "otp 27",
    ] {
        assert!(page.contains(value), "`{value}` missing from:\n{page}");
    }
    let asset = page
        .lines()
        .find_map(|l| l.strip_prefix("asset "))
        .expect("the digested asset's URL");
    assert!(asset.starts_with("/assets/app-") && asset.ends_with(".js"), "{asset}");
    let (status, js) = p.get_app(&app, asset);
    assert_eq!(status, 200, "{asset}: {js}");
    assert!(js.contains("hex_app assets say hello"), "the bundle holds both modules: {js}");
    let kept = tarballs_kept(&p);
    assert_eq!(kept, 3);

    // A second app with the same lock: nothing is fetched from the upstream.
    let (repo2, app2) = hex_app(&p, &upstream, &work.path().join("two"), "hexb");
    let counts: Vec<usize> = TARBALLS.iter().map(|t| upstream.tarball_requests(t)).collect();
    let started = std::time::Instant::now();
    let (ok, out) = p.push(&repo2, &["push", "gigalixir", "master"]);
    assert!(ok, "the second app's push failed:\n{out}");
    eprintln!("second app, warm package cache: push to live in {:?}", started.elapsed());
    let after: Vec<usize> = TARBALLS.iter().map(|t| upstream.tarball_requests(t)).collect();
    assert_eq!(counts, after, "no tarball fetched for the second app");
    assert!(p.get_app(&app2, "/").1.contains("gx_erl 1.0.0"));

    // The upstream stops: a clean rebuild still succeeds from the cache, and says the
    // registry it used is a kept copy.
    upstream.server.stop();
    std::thread::sleep(Duration::from_millis(1100)); // past the registry TTL
    p.git_ok(&repo, &["commit", "-q", "--allow-empty", "-m", "again"]);
    let (ok, out) = p.push(
        &repo,
        &["-c", "http.extraheader=GIGALIXIR-CLEAN: true", "push", "gigalixir", "master"],
    );
    assert!(ok, "a clean rebuild without the upstream failed:\n{out}");
    assert!(out.contains("Warning: the Hex repository"), "{out}");
    assert!(out.contains("did not answer"), "{out}");
    assert!(out.contains("Deployed v2"), "{out}");
    upstream.server.resume();

    // A lock naming a version the upstream lacks: refused, naming the package.
    let lock = std::fs::read_to_string(repo.join("mix.lock")).expect("lock");
    std::fs::write(
        repo.join("mix.lock"),
        lock.replace("{:hex, :gx_base, \"1.0.0\"", "{:hex, :gx_base, \"9.9.9\""),
    )
    .expect("write lock");
    p.commit_all(&repo, "a version nobody published");
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "{out}");
    assert!(out.contains("version 9.9.9 of gx_base is not in the Hex repository"), "{out}");
    assert_eq!(tarballs_kept(&p), kept);
    p.git_ok(&repo, &["reset", "-q", "--hard", "HEAD~1"]);

    // gx_base 1.1.0, locked as published, then altered upstream: once with the registry
    // unchanged (the tarball does not match it), once with the registry re-signed to match
    // the altered tarball (the registry does not match the lock).
    let newer = work.path().join("three");
    let (repo3, _) = {
        std::fs::create_dir_all(&newer).expect("mkdir");
        let repo = p.fixture_repo_with("hex_app", &newer, |dir| {
            let mix = std::fs::read_to_string(dir.join("mix.exs")).expect("mix.exs");
            std::fs::write(
                dir.join("mix.exs"),
                mix.replace("{:gx_base, \"~> 1.0.0\"}", "{:gx_base, \"~> 1.1.0\"}"),
            )
            .expect("mix.exs");
            upstream.resolve_lock(dir);
        });
        let app = format!("hexc-{}", &p.instance[1..7]);
        p.cli_ok(&repo, &["create", "app", &app]);
        (repo, app)
    };
    let tar = upstream.dir.path().join("public/tarballs/gx_base-1.1.0.tar");
    let original = std::fs::read(&tar).expect("tarball");
    let mut altered = original.clone();
    let at = altered.len() / 2;
    altered[at] ^= 0xff;
    std::fs::write(&tar, &altered).expect("alter tarball");
    let (ok, out) = p.push(&repo3, &["push", "gigalixir", "master"]);
    assert!(!ok, "{out}");
    assert!(out.contains("the tarball of gx_base 1.1.0"), "{out}");
    assert!(out.contains("does not match the registry"), "{out}");
    assert_eq!(tarballs_kept(&p), kept, "nothing kept of an altered tarball");

    let sources = tempfile::tempdir().expect("sources");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hex_packages"),
        sources.path(),
    );
    let lib = sources.path().join("gx_base-1.1.0/lib/gx_base.ex");
    let code = std::fs::read_to_string(&lib).expect("gx_base.ex");
    std::fs::write(&lib, format!("{code}\n# altered after it was locked\n")).expect("alter");
    upstream.rebuild_from(sources.path());
    std::thread::sleep(Duration::from_millis(1100)); // past the registry TTL
    let (ok, out) = p.push(&repo3, &["push", "gigalixir", "master"]);
    assert!(!ok, "{out}");
    assert!(out.contains("gx_base 1.1.0: the checksum in mix.lock"), "{out}");
    assert!(out.contains("differs from the Hex repository's"), "{out}");
    assert_eq!(tarballs_kept(&p), kept, "nothing kept for a lock the registry contradicts");
}
