//! `bench-hex`: push-to-live of an app with Hex packages (`tests/fixtures/hex_app`: three
//! locked packages, one built with rebar3, an esbuild asset step) through the package cache,
//! against the tests' own signed Hex repository on loopback. Printed as JSON. Run by
//! `scripts/bench-hex`.
//!
//! - cold: a new app, empty package cache, no build cache: fetch, dependency compile, app
//!   compile, assets, release, boot, each from the build's own output;
//! - warm: one changed line of the app, pushed again;
//! - second_app: another app with the same lock (package cache warm, its own build cache
//!   cold), and how many tarballs the upstream served for it (0 expected);
//! - platform_peak_rss_kb: the platform's high-water mark of resident memory (VmHWM) after
//!   the cold push, which fetched every package;
//! - images_mb: the size of each stack's builder and runner image.

use std::path::Path;
use std::time::{Duration, Instant};

use gigalixir_tests::upstream::HexUpstream;
use gigalixir_tests::{docker, require_images, Platform};
use serde_json::{json, Value};

fn seconds(out: &str, marker: &str) -> Option<f64> {
    out.lines().find_map(|l| {
        let rest = &l[l.find(marker)? + marker.len()..];
        let number: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        number.parse().ok()
    })
}

fn live_after(p: &Platform, app: &str, started: Instant, needle: &str) -> u128 {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if p.get_app(app, "/").1.contains(needle) {
            return started.elapsed().as_millis();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{app} never answered with {needle}");
}

fn push(p: &Platform, repo: &Path, app: &str, needle: &str) -> Value {
    let started = Instant::now();
    let (ok, out) = p.push(repo, &["push", "gigalixir", "master"]);
    assert!(ok, "push failed:\n{out}");
    let live = live_after(p, app, started, needle);
    json!({
        "push_to_live_ms": live,
        "packages_checked_s": seconds(&out, "verified against mix.lock in"),
        "compile_s": seconds(&out, "Compiled in"),
        "assets_s": seconds(&out, "Assets built in"),
        "release_s": seconds(&out, "Release assembled in"),
        "build_s": seconds(&out, "Build succeeded in"),
        "boot_ms": seconds(&out, "is up ("),
        "dependencies_compiled": out.lines().find_map(|l| l.split("Dependencies compiled: ").nth(1)).map(str::trim),
    })
}

fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn main() {
    require_images();
    let upstream = HexUpstream::start();
    let p = Platform::start_with(&upstream.platform_flags());
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let make = |dir: &str, prefix: &str| {
        let parent = work.path().join(dir);
        std::fs::create_dir_all(&parent).expect("mkdir");
        let repo = p.fixture_repo_with("hex_app", &parent, |d| upstream.resolve_lock(d));
        let app = format!("{prefix}-{}", &p.instance[1..7]);
        p.cli_ok(&repo, &["create", "app", &app]);
        (repo, app)
    };
    let tarballs = || {
        ["gx_base-1.0.0", "gx_greet-1.0.0", "gx_erl-1.0.0"]
            .iter()
            .map(|t| upstream.tarball_requests(t))
            .sum::<usize>()
    };

    let (repo, app) = make("one", "bench");
    let before = tarballs();
    let cold = push(&p, &repo, &app, "gx_erl 1.0.0");
    let fetched = tarballs() - before;
    let rss = p.pid().and_then(peak_rss_kb);

    let page = repo.join("lib/hex_app/page.ex");
    let code = std::fs::read_to_string(&page).expect("page.ex");
    std::fs::write(&page, code.replace("\"elixir #{", "\"running on elixir #{")).expect("edit");
    p.commit_all(&repo, "one line");
    let warm = push(&p, &repo, &app, "running on elixir");

    let (repo2, app2) = make("two", "benchb");
    let before = tarballs();
    let second = push(&p, &repo2, &app2, "gx_erl 1.0.0");
    let second_fetched = tarballs() - before;

    let mut images = serde_json::Map::new();
    for stack in ["bookworm", "trixie"] {
        for kind in ["builder", "runner"] {
            let image = format!("gigalixir-{kind}:{stack}");
            let size: u64 = docker(&["image", "inspect", &image, "--format", "{{.Size}}"])
                .parse()
                .unwrap_or(0);
            images.insert(image, json!(size / 1_000_000));
        }
    }
    let report = json!({
        "fixture": "tests/fixtures/hex_app (3 Hex packages, one rebar3; esbuild assets)",
        "cold": cold,
        "cold_tarballs_fetched_upstream": fetched,
        "warm": warm,
        "second_app": second,
        "second_app_tarballs_fetched_upstream": second_fetched,
        "platform_peak_rss_kb": rss,
        "images_mb": images,
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}
