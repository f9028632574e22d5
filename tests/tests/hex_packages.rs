//! Apps with Hex packages deploy through the platform's package cache, end to end: a real,
//! signed Hex repository built from the tests' own packages stands in for hex.pm (nothing
//! of hex.pm is reachable), the platform pulls from it, and real pushes build on trixie
//! with Hex, rebar3 and esbuild.

use std::path::Path;
use std::time::Duration;

use gigalixir_tests::upstream::HexUpstream;
use gigalixir_tests::{copy_dir, require_images, Platform};

const TARBALLS: [&str; 3] = ["gx_base-1.0.0", "gx_greet-1.0.0", "gx_erl-1.0.0"];

fn hex_app(
    p: &Platform,
    upstream: &HexUpstream,
    parent: &Path,
    prefix: &str,
) -> (std::path::PathBuf, String) {
    std::fs::create_dir_all(parent).expect("mkdir");
    let repo = p.fixture_repo_with("hex_app", parent, |dir| upstream.resolve_lock(dir));
    let app = format!("{prefix}-{}", &p.instance[1..7]);
    p.cli_ok(&repo, &["create", "app", &app]);
    (repo, app)
}

fn tarballs_kept(p: &Platform) -> usize {
    p.blobs_under("packages/hex/tarballs").len()
}

#[test]
fn a_hex_app_builds_through_the_package_cache_held_to_its_lock() {
    require_images();
    let mut upstream = HexUpstream::start();
    let p = Platform::start_with(&upstream.platform_flags());
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = hex_app(&p, &upstream, &work.path().join("one"), "hexa");
    let before: Vec<usize> = TARBALLS
        .iter()
        .map(|t| upstream.tarball_requests(t))
        .collect();

    // The push builds on trixie, fetches each locked tarball from the upstream once,
    // compiles the Elixir and rebar3 packages, runs the assets step.
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "the push failed:\n{out}");
    assert!(out.contains("Stack trixie"), "{out}");
    assert!(
        out.contains("3 packages verified against mix.lock"),
        "{out}"
    );
    assert!(
        out.contains("===> Compiling gx_erl"),
        "rebar3 built gx_erl:\n{out}"
    );
    assert!(out.contains("Building assets (mix assets.deploy)"), "{out}");
    assert!(out.contains("Deployed v1"), "{out}");
    for (t, n) in TARBALLS.iter().zip(&before) {
        assert_eq!(
            upstream.tarball_requests(t),
            n + 1,
            "{t} fetched once:\n{}",
            upstream.server.log()
        );
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
    assert!(
        asset.starts_with("/assets/app-") && asset.ends_with(".js"),
        "{asset}"
    );
    let (status, js) = p.get_app(&app, asset);
    assert_eq!(status, 200, "{asset}: {js}");
    assert!(
        js.contains("hex_app assets say hello"),
        "the bundle holds both modules: {js}"
    );
    let kept = tarballs_kept(&p);
    assert_eq!(kept, 3);

    // A second app with the same lock: nothing is fetched from the upstream.
    let (repo2, app2) = hex_app(&p, &upstream, &work.path().join("two"), "hexb");
    let counts: Vec<usize> = TARBALLS
        .iter()
        .map(|t| upstream.tarball_requests(t))
        .collect();
    let started = std::time::Instant::now();
    let (ok, out) = p.push(&repo2, &["push", "gigalixir", "master"]);
    assert!(ok, "the second app's push failed:\n{out}");
    eprintln!(
        "second app, warm package cache: push to live in {:?}",
        started.elapsed()
    );
    let after: Vec<usize> = TARBALLS
        .iter()
        .map(|t| upstream.tarball_requests(t))
        .collect();
    assert_eq!(counts, after, "no tarball fetched for the second app");
    assert!(p.get_app(&app2, "/").1.contains("gx_erl 1.0.0"));

    // The upstream stops: a clean rebuild still succeeds from the cache, and says the
    // registry it used is a kept copy.
    upstream.server.stop();
    std::thread::sleep(Duration::from_millis(1100)); // past the registry TTL
    p.git_ok(&repo, &["commit", "-q", "--allow-empty", "-m", "again"]);
    let (ok, out) = p.push(
        &repo,
        &[
            "-c",
            "http.extraheader=GIGALIXIR-CLEAN: true",
            "push",
            "gigalixir",
            "master",
        ],
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
    assert!(
        out.contains("version 9.9.9 of gx_base is not in the Hex repository"),
        "{out}"
    );
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
    let tar = upstream
        .dir
        .path()
        .join("public/tarballs/gx_base-1.1.0.tar");
    let original = std::fs::read(&tar).expect("tarball");
    let mut altered = original.clone();
    let at = altered.len() / 2;
    altered[at] ^= 0xff;
    std::fs::write(&tar, &altered).expect("alter tarball");
    let (ok, out) = p.push(&repo3, &["push", "gigalixir", "master"]);
    assert!(!ok, "{out}");
    assert!(out.contains("the tarball of gx_base 1.1.0"), "{out}");
    assert!(out.contains("does not match the registry"), "{out}");
    assert_eq!(
        tarballs_kept(&p),
        kept,
        "nothing kept of an altered tarball"
    );

    let sources = tempfile::tempdir().expect("sources");
    copy_dir(
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
    assert!(
        out.contains("gx_base 1.1.0: the checksum in mix.lock"),
        "{out}"
    );
    assert!(out.contains("differs from the Hex repository's"), "{out}");
    assert_eq!(
        tarballs_kept(&p),
        kept,
        "nothing kept for a lock the registry contradicts"
    );
}

/// A stand-in of the tailwind binary: writes a stylesheet saying who built it.
const TAILWIND: &str = r#"#!/bin/sh
out=""
for arg in "$@"; do
  case "$arg" in
    --output=*) out=${arg#--output=} ;;
    --help) echo "tailwindcss v3.4.3"; exit 0 ;;
  esac
done
mkdir -p "$(dirname "$out")"
echo "/* built by the tailwind stand-in v3.4.3 */" >"$out"
"#;

/// What a build sees of the network, printed by a pre-compile hook.
fn probe(platform_port: u16, gateway: &str, other: &str) -> String {
    format!(
        r#"set +e
echo "probe: interfaces $(ls /sys/class/net | tr '\n' ' ')"
echo "probe: ipv4 routes $(tail -n +2 /proc/net/route | wc -l)"
echo "probe: ipv6 routes $(grep -vc ' lo$' /proc/net/ipv6_route 2>/dev/null)"
try() {{
  if timeout 3 bash -c "exec 3<>/dev/tcp/$2/$3" 2>/dev/null; then echo "probe: $1 open"; else echo "probe: $1 closed"; fi
}}
try cache 127.0.0.1 4001
try platform-loopback 127.0.0.1 {platform_port}
try platform-gateway {gateway} {platform_port}
try gateway-ssh {gateway} 22
try gateway-dns {gateway} 53
try other-container {other} 4000
status() {{
  exec 3<>/dev/tcp/127.0.0.1/4001
  printf 'GET %s HTTP/1.0\r\nHost: x\r\n\r\n' "$1" >&3
  head -1 <&3 | tr -d '\r'
  exec 3>&-
}}
for path in '/packages/..%2F..%2Fetc%2Fpasswd' '/packages/gx_base%00x' '/packages/a%2Fb' \
  '/tarballs/..%2Fgx_base-1.0.0.tar' '/tarballs/../../etc/passwd' '/etc/passwd' \
  '/packages/gx_base/../../x' '/packages/gx_base'; do
  echo "probe: GET $path -> $(status "$path")"
done
"#
    )
}

#[test]
fn git_dependencies_asset_tools_and_the_builds_one_way_out() {
    require_images();
    let upstream = HexUpstream::start();
    let work = tempfile::tempdir().expect("work");

    // A git server on loopback: gx_icons, whose `main` is ahead of its default branch, and
    // a stand-in of tailwind's release downloads.
    let served = work.path().join("served");
    let icons = work.path().join("icons");
    for dir in ["optimized", "other"] {
        std::fs::create_dir_all(icons.join(dir)).expect("mkdir");
    }
    let git = |dir: &Path, args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    std::fs::write(icons.join("optimized/star.svg"), "<svg>star v1</svg>\n").expect("write");
    std::fs::write(icons.join("other/outside.txt"), "outside the sparse path\n").expect("write");
    git(&icons, &["init", "-q", "--initial-branch=master"]);
    git(&icons, &["add", "-A"]);
    git(&icons, &["commit", "-qm", "v1"]);
    git(&icons, &["checkout", "-qb", "main"]);
    std::fs::write(icons.join("optimized/star.svg"), "<svg>star v2</svg>\n").expect("write");
    git(&icons, &["commit", "-qam", "v2"]);
    let locked = git(&icons, &["rev-parse", "HEAD"]);
    git(&icons, &["checkout", "-q", "master"]);
    std::fs::create_dir_all(&served).expect("mkdir");
    gigalixir_tests::upstream::publish_git(&icons, &served, "gx_icons");
    let tool = served.join("tw/v3.4.3/tailwindcss-linux-x64");
    std::fs::create_dir_all(tool.parent().expect("dir")).expect("mkdir");
    std::fs::write(&tool, TAILWIND).expect("tool");
    let server = gigalixir_tests::upstream::StaticServer::start(&served);

    let mut flags = upstream.platform_flags();
    flags.extend([
        "--git-allow-loopback".to_owned(),
        "--tool-source".to_owned(),
        format!(
            "tailwind={}/tw/v{{version}}/tailwindcss-{{target}}",
            server.url()
        ),
        "--tool-allow".to_owned(),
        format!("{}/tw/", server.url()),
    ]);
    let p = Platform::start_with(&flags);
    p.sign_up_and_log_in();
    let git_url = format!("{}/gx_icons.git", server.url());
    let repo = p.fixture_repo_with("assets_app", work.path(), |dir| {
        let mix = std::fs::read_to_string(dir.join("mix.exs")).expect("mix.exs");
        std::fs::write(dir.join("mix.exs"), mix.replace("@GIT_URL@", &git_url)).expect("mix.exs");
        upstream.resolve_lock(dir);
    });
    let lock = std::fs::read_to_string(repo.join("mix.lock")).expect("lock");
    assert!(
        lock.contains(&format!(
            "{{:git, \"{git_url}\", \"{locked}\", [branch: \"main\", sparse: \"optimized\"]}}"
        )),
        "{lock}"
    );
    let app = format!("assets-{}", &p.instance[1..7]);
    p.cli_ok(&repo, &["create", "app", &app]);

    // The git dependency at its locked commit on `main`, only its sparse path checked
    // out; tailwind fetched from the allowed stand-in and run by `mix assets.deploy`.
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "the push failed:\n{out}");
    assert!(
        out.contains(&format!("gx_icons {} (fetched)", &locked[..7])),
        "{out}"
    );
    assert!(out.contains("Asset tool tailwind 3.4.3 (fetched"), "{out}");
    let (status, page) = p.get_app(&app, "/");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("icon <svg>star v2</svg>"), "{page}");
    assert!(page.contains("outside sparse absent"), "{page}");
    assert!(
        page.contains("css /* built by the tailwind stand-in v3.4.3 */"),
        "{page}"
    );
    let fetched = server.requests("/tw/v3.4.3/tailwindcss-linux-x64");
    assert_eq!(fetched, 1);

    // From inside a real build, on the network that fetched its packages: the package
    // cache answers and refuses what is not its layout; nothing else is reachable, and
    // there is no route off the container (so no metadata server, no internet).
    let gateway = gigalixir_tests::docker(&[
        "network",
        "inspect",
        "bridge",
        "--format",
        "{{(index .IPAM.Config 0).Gateway}}",
    ]);
    let other = p.container_ids(&app);
    let other = other.first().expect("a replica").to_owned();
    let other_ip = gigalixir_tests::docker(&[
        "inspect",
        &other,
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    ]);
    std::fs::write(repo.join("probe.sh"), probe(p.port, &gateway, &other_ip)).expect("probe");
    std::fs::write(
        repo.join("elixir_buildpack.config"),
        "hook_pre_compile=\"bash probe.sh\"\n",
    )
    .expect("config");
    p.commit_all(&repo, "probe the build's network");
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("gx_icons {} (kept)", &locked[..7])),
        "the git dependency is kept:\n{out}"
    );
    assert_eq!(
        server.requests("/tw/v3.4.3/tailwindcss-linux-x64"),
        fetched,
        "the tool is kept"
    );
    for expected in [
        "probe: interfaces lo",
        "probe: ipv4 routes 0",
        "probe: cache open",
        "probe: platform-loopback closed",
        "probe: platform-gateway closed",
        "probe: gateway-ssh closed",
        "probe: gateway-dns closed",
        "probe: other-container closed",
        "probe: GET /packages/..%2F..%2Fetc%2Fpasswd -> HTTP/1.0 400",
        "probe: GET /packages/gx_base%00x -> HTTP/1.0 400",
        "probe: GET /packages/a%2Fb -> HTTP/1.0 400",
        "probe: GET /tarballs/..%2Fgx_base-1.0.0.tar -> HTTP/1.0 400",
        "probe: GET /tarballs/../../etc/passwd -> HTTP/1.0 404",
        "probe: GET /etc/passwd -> HTTP/1.0 404",
        "probe: GET /packages/gx_base/../../x -> HTTP/1.0 404",
        "probe: GET /packages/gx_base -> HTTP/1.0 200",
    ] {
        assert!(out.contains(expected), "`{expected}` missing:\n{out}");
    }
    std::fs::remove_file(repo.join("probe.sh")).expect("rm");
    std::fs::remove_file(repo.join("elixir_buildpack.config")).expect("rm");
    p.commit_all(&repo, "no probe");

    // A tool the platform cannot get fails the push, naming it and how to provide it.
    let config = std::fs::read_to_string(repo.join("config/config.exs")).expect("config");
    std::fs::write(
        repo.join("config/config.exs"),
        config.replace("3.4.3", "9.9.9"),
    )
    .expect("config");
    p.commit_all(&repo, "a tailwind nobody has");
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "{out}");
    assert!(out.contains("tailwind 9.9.9 could not be fetched"), "{out}");
    assert!(out.contains("provide tailwind 9.9.9"), "{out}");
    p.git_ok(&repo, &["reset", "-q", "--hard", "HEAD~1"]);

    // npm packages: refused unless the operator allows npm.
    std::fs::write(
        repo.join("assets/package.json"),
        r#"{"dependencies": {"alpinejs": "3.13.0"}}"#,
    )
    .expect("json");
    p.commit_all(&repo, "npm");
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("assets/package.json lists npm packages (alpinejs)"),
        "{out}"
    );
    assert!(out.contains("--npm-access"), "{out}");
    p.git_ok(&repo, &["reset", "-q", "--hard", "HEAD~1"]);

    // Git dependencies outside the rules are refused with the rule.
    for (url, rule) in [
        ("file:///etc/gx_icons", "the scheme `file:` is not allowed"),
        ("ext::sh", "the scheme `ext:` is not allowed"),
        ("http://169.254.169.254/gx_icons.git", "link-local"),
    ] {
        std::fs::write(repo.join("mix.lock"), lock.replace(&git_url, url)).expect("lock");
        p.commit_all(&repo, "another git URL");
        let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
        assert!(!ok, "{url}: {out}");
        assert!(out.contains("git dependency gx_icons"), "{url}: {out}");
        assert!(out.contains(rule), "{url}: expected `{rule}` in:\n{out}");
        p.git_ok(&repo, &["reset", "-q", "--hard", "HEAD~1"]);
    }
}
