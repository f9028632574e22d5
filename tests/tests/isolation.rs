//! Tenants are walled off from each other: two accounts, real pushes, real containers.
//! (The isolation suite of issue 12; each part adds its checks here.)

use std::io::Read;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use gigalixir_tests::upstream::{publish_git, StaticServer};
use gigalixir_tests::{docker, require_images, Account, Platform};

/// Runs `script` in the running replica of `app`, as the app's user; its stdout.
fn in_replica(p: &Platform, app: &str, script: &str) -> String {
    let ids = p.container_ids(app);
    let id = ids.first().unwrap_or_else(|| panic!("no replica of {app}"));
    docker(&["exec", "-u", "app", id, "sh", "-c", script])
}

#[test]
fn a_replica_sees_only_its_own_apps_slug() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let bob = Account::sign_up(&p, "bob@example.com");
    let work = tempfile::tempdir().expect("work");
    let (repo_a, _) = p.new_app("env_probe", "alice", work.path());
    let (ok, out) = p.push(&repo_a, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    let repo_b = bob.new_app(
        "hello",
        &format!("bob-{}", &p.instance[1..7]),
        &work.path().join("bob"),
    );
    let (ok, out) = bob.git(&repo_b, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    let app_b = format!("bob-{}", &p.instance[1..7]);

    // Every slug the platform keeps: A's is one of them, B's another.
    let slugs: Vec<String> = p
        .blobs_under("slugs")
        .iter()
        .filter(|f| f.ends_with(".tgz"))
        .map(|f| {
            Path::new(f)
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("name")
                .trim_end_matches(".tgz")
                .to_owned()
        })
        .collect();
    assert_eq!(slugs.len(), 2, "{slugs:?}");

    // From B's replica: no directory of slugs, nothing of A's app, and no readable file
    // whose sha256 is that of a slug other than B's own.
    let root = in_replica(&p, &app_b, "ls /");
    assert!(!root.lines().any(|l| l == "slugs"), "{root}");
    let found = in_replica(
        &p,
        &app_b,
        "find / -xdev \\( -name '*env_probe*' -o -name '*.tgz' \\) 2>/dev/null; true",
    );
    assert!(
        !found.contains("env_probe"),
        "A's app is visible from B's replica:\n{found}"
    );
    let sums = in_replica(
        &p,
        &app_b,
        "find / \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -type f -size +4k -readable -print0 2>/dev/null | xargs -0 -r sha256sum 2>/dev/null | cut -d' ' -f1; true",
    );
    let own = in_replica(
        &p,
        &app_b,
        "sha256sum /run/gigalixir/slug.tgz | cut -d' ' -f1",
    );
    for sha in &slugs {
        if *sha == own.trim() {
            continue;
        }
        assert!(
            !sums.contains(sha.as_str()),
            "another app's slug {sha} is readable from B's replica"
        );
    }
    assert!(
        slugs.contains(&own.trim().to_owned()),
        "B's replica has its own slug"
    );

    // At rest: the data directory is the platform user's alone, and so are its files
    // (slugs stay readable for the containers that mount them, inside that directory).
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let data = p.data_dir();
    assert_eq!(mode(&data), 0o700, "the data directory");
    assert_eq!(mode(&data.join("blobs")), 0o700, "the blob store");
    for file in ["store.db", "bus.db"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let repo_blob = data.join(format!("blobs/repos/{app_b}.tar"));
    assert_eq!(mode(&repo_blob), 0o600, "a repository");
    for source in p.blobs_under(&format!("sources/{app_b}")) {
        assert_eq!(mode(Path::new(&source)), 0o600, "{source}");
    }
}

/// Accepts connections and never answers.
fn silent_server() -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).expect("nonblocking");
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            if let Ok((mut stream, _)) = listener.accept() {
                let _ = stream.set_read_timeout(Some(Duration::from_millis(10)));
                let mut buf = [0u8; 512];
                let _ = stream.read(&mut buf);
                held.push(stream);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    (port, handle)
}

#[test]
fn git_urls_of_a_push_follow_the_egress_rules() {
    require_images();
    let p = Platform::start_with(&["--git-timeout", "3"]);
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let repo = p.fixture_repo("with_path_dep", work.path());
    // greeter as a submodule, served on loopback, which this platform does not allow
    let sub = work.path().join("greeter-src");
    std::fs::rename(repo.join("deps_src/greeter"), &sub).expect("move greeter");
    p.git_ok(&sub, &["init", "-q", "--initial-branch=master"]);
    p.commit_all(&sub, "greeter");
    let served = work.path().join("served");
    std::fs::create_dir_all(&served).expect("mkdir");
    publish_git(&sub, &served, "greeter");
    let server = StaticServer::start(&served);
    p.git_ok(&repo, &["add", "-A"]);
    let url = format!("{}/greeter.git", server.url());
    p.git_ok(
        &repo,
        &[
            "-c",
            "protocol.http.allow=always",
            "submodule",
            "add",
            "-q",
            &url,
            "deps_src/greeter",
        ],
    );
    p.commit_all(&repo, "greeter as a submodule");
    let app = format!("egress-{}", &p.instance[1..7]);
    p.cli_ok(&repo, &["create", "app", &app]);
    let before = server.log().lines().count(); // `git submodule add` cloned it
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("resolves to 127.0.0.1, a loopback address"),
        "{out}"
    );
    assert_eq!(
        server.log().lines().count(),
        before,
        "the platform sent the test server a request:\n{}",
        server.log()
    );

    // A server that never answers: the push fails within the fetch's time limit. (This
    // platform allows loopback only for this part, on another instance.)
    let q = Platform::start_with(&["--git-timeout", "3", "--git-allow-loopback"]);
    q.sign_up_and_log_in();
    let (port, _hold) = silent_server();
    p.git_ok(
        &repo,
        &[
            "config",
            "-f",
            ".gitmodules",
            "submodule.deps_src/greeter.url",
            &format!("http://127.0.0.1:{port}/r.git"),
        ],
    );
    p.commit_all(&repo, "a server that never answers");
    let app = format!("silent-{}", &q.instance[1..7]);
    q.cli_ok(&repo, &["create", "app", &app]);
    let (ok, out) = q.push(&repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "{out}");
    assert!(out.contains("did not finish within 3 s"), "{out}");
}

/// Everything of `app` the platform could have kept: containers, volumes, networks of
/// its instance labelled with the app, and blobs under its keys.
fn leftovers(p: &Platform, app: &str) -> Vec<String> {
    let mut found = Vec::new();
    let labels = [
        "--filter".to_owned(),
        format!("label=gigalixir.app={app}"),
        "--filter".to_owned(),
        format!("label=gigalixir.instance={}", p.instance),
    ];
    for (kind, list) in [
        ("container", &["ps", "-aq"][..]),
        ("volume", &["volume", "ls", "-q"][..]),
        ("network", &["network", "ls", "-q"][..]),
    ] {
        let mut args: Vec<&str> = list.to_vec();
        args.extend(labels.iter().map(String::as_str));
        for id in docker(&args).lines().filter(|l| !l.is_empty()) {
            found.push(format!("{kind} {id}"));
        }
    }
    for prefix in [format!("sources/{app}"), format!("slugs/apps/{app}")] {
        found.extend(p.blobs_under(&prefix));
    }
    for file in [format!("repos/{app}.tar"), format!("caches/{app}.tar")] {
        if p.data_dir().join("blobs").join(&file).exists() {
            found.push(file);
        }
    }
    if p.data_dir().join("ssh").join(app).exists() {
        found.push(format!("ssh keys of {app}"));
    }
    found
}

fn wait_until_gone(p: &Platform, app: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left = leftovers(p, app);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{app} left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `create app NAME` as soon as the name is free again (a destroyed app's cleanup holds it
/// for a few seconds, and says so).
fn create_when_free(home: &Path, p: &Platform, repo: &Path, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = p
            .cli_command_as(home, repo, &["create", "app", name])
            .output()
            .expect("gigalixir");
        if out.status.success() {
            return;
        }
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains("is being destroyed"), "{err}");
        assert!(Instant::now() < deadline, "the name never came free: {err}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn ssh_key(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen (scripts/test installs openssh-client)");
    assert!(out.status.success());
    format!("{}.pub", path.display())
}

#[test]
fn a_destroyed_apps_data_goes_and_a_new_owner_of_its_name_starts_empty() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let bob = Account::sign_up(&p, "bob@example.com");
    let work = tempfile::tempdir().expect("work");
    let keys = work.path().join("keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    p.cli_ok(
        work.path(),
        &["account:ssh_keys:add", &ssh_key(&keys, "ada")],
    );
    bob.cli_ok(
        work.path(),
        &["account:ssh_keys:add", &ssh_key(&keys, "bob")],
    );
    let bob_key = std::fs::read_to_string(keys.join("bob.pub")).expect("key");
    let name = format!("gone-{}", &p.instance[1..7]);

    // A pushes X (a dependency fills its build cache), then destroys it while idle.
    let repo = p.fixture_repo("with_path_dep", &work.path().join("a1"));
    p.cli_ok(&repo, &["create", "app", &name]);
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    assert!(
        !leftovers(&p, &name).is_empty(),
        "a deployed app keeps things"
    );
    p.cli_ok(&repo, &["apps:destroy", "-y"]);
    wait_until_gone(&p, &name);

    // Again, destroyed in the middle of a build.
    create_when_free(p.home.path(), &p, &repo, &name);
    std::fs::write(
        repo.join("elixir_buildpack.config"),
        "hook_pre_compile=\"sleep 60\"\n",
    )
    .expect("config");
    p.commit_all(&repo, "a slow build");
    let push = p.spawn_git(&repo, &["push", "gigalixir", "master"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !docker(&[
        "ps",
        "-q",
        "--filter",
        "name=gx-build-",
        "--filter",
        &format!("label=gigalixir.app={name}"),
    ])
    .lines()
    .any(|l| !l.is_empty())
    {
        assert!(Instant::now() < deadline, "the build never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    p.cli_ok(&repo, &["apps:destroy", "-y"]);
    let out = push.wait_with_output().expect("push");
    assert!(!out.status.success(), "the push of a destroyed app failed");
    wait_until_gone(&p, &name);

    // B creates X: an empty repository, a build from nothing, B's keys only.
    let repo_b = p.fixture_repo("with_path_dep", &work.path().join("b"));
    create_when_free(bob.home.path(), &p, &repo_b, &name);
    let (ok, clone) = bob.git(
        work.path(),
        &["clone", &format!("{}/{name}.git", p.url()), "clone-b"],
    );
    assert!(ok, "{clone}");
    assert!(clone.contains("empty repository"), "{clone}");
    let (ok, out) = bob.git(&repo_b, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("No build cache: compiling everything"),
        "{out}"
    );
    assert!(
        out.contains("==> greeter"),
        "the dependency compiles again:\n{out}"
    );
    let admitted = in_replica(&p, &name, "cat /etc/gigalixir/ssh/authorized_keys");
    assert_eq!(
        admitted.trim(),
        bob_key
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        "B's replica admits B's keys alone"
    );
}

fn login_status(p: &Platform, from: &str, email: &str, password: &str) -> (u16, Option<String>) {
    let client = reqwest::blocking::Client::builder()
        .local_address(from.parse::<std::net::IpAddr>().ok())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let resp = client
        .get(format!("http://127.0.0.1:{}/api/login", p.port))
        .basic_auth(email, Some(password))
        .send()
        .expect("login");
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (resp.status().as_u16(), retry)
}

fn rss_kb(p: &Platform, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid().expect("running")))
        .expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("a figure")
}

#[test]
fn the_front_door_holds_against_slow_clients_floods_and_guessing() {
    use std::io::Write;
    let p = Platform::start_with(&["--header-timeout", "2", "--max-connections", "8"]);
    p.sign_up_and_log_in();

    // A half-sent request header: the connection is closed after the header timeout.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
    slow.write_all(b"GET /api/apps HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1")
        .expect("write");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buf = [0u8; 256];
    let n = slow.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(
        n == 0 || text.contains("408"),
        "the half-sent request was answered: {text}"
    );

    // Beyond the connection cap, a new connection gets a clean 503.
    let idle: Vec<_> = (0..8)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", p.port)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = std::net::TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = String::new();
    let _ = extra.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    drop(idle);
    std::thread::sleep(Duration::from_secs(3)); // the idle ones time out and free their slots

    // Guessing one account's password: 429 with Retry-After, without a hash each time.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(login_status(
            &p,
            "127.0.0.1",
            "ada@example.com",
            "wrong-password",
        ));
    }
    assert_eq!(statuses[0].0, 401);
    let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert!(limited.len() >= 10, "{statuses:?}");
    assert!(
        limited
            .iter()
            .all(|(_, r)| r.as_deref().is_some_and(|s| s.parse::<u64>().is_ok())),
        "{statuses:?}"
    );

    // A flood of bad logins for many accounts from one address; then, from another
    // address, the right password works at once.
    let before = rss_kb(&p, "VmRSS:");
    for i in 0..500 {
        let (status, _) = login_status(&p, "127.0.0.1", &format!("nobody{i}@example.com"), "x");
        assert!(status == 401 || status == 429, "{status}");
    }
    eprintln!(
        "figure: platform RSS {before} kB before a flood of 500 bad logins, {} kB after, peak {} kB",
        rss_kb(&p, "VmRSS:"),
        rss_kb(&p, "VmHWM:")
    );
    let (status, _) = login_status(&p, "127.0.0.2", "ada@example.com", "password123");
    assert_eq!(status, 200, "a good login from another address");
}

#[test]
fn one_tenant_cannot_take_the_machine_or_the_builders() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let bob = Account::sign_up(&p, "bob@example.com");
    let work = tempfile::tempdir().expect("work");

    // A fork bomb in A's replica stops at its process limit: B still answers and builds.
    let (repo_a, app_a) = p.new_app("hello", "bomb", work.path());
    let (ok, out) = p.push(&repo_a, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    let app_b = format!("calm-{}", &p.instance[1..7]);
    let repo_b = bob.new_app("hello", &app_b, &work.path().join("b"));
    let (ok, out) = bob.git(&repo_b, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    let bomb = p.container_ids(&app_a)[0].clone();
    assert_eq!(
        docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.PidsLimit}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}}",
            &bomb
        ]),
        "512 true [ALL]"
    );
    docker(&[
        "exec",
        "-d",
        "-u",
        "app",
        &bomb,
        "sh",
        "-c",
        "f() { f | f & }; f",
    ]);
    std::thread::sleep(Duration::from_secs(3));
    let (status, body) = p.get_app(&app_b, "/");
    assert_eq!(status, 200, "{body}");
    std::fs::write(
        repo_b.join("lib/hello/page.ex"),
        std::fs::read_to_string(repo_b.join("lib/hello/page.ex"))
            .expect("page")
            .replace("v1", "v2"),
    )
    .expect("edit");
    p.commit_all(&repo_b, "v2 while A's replica forks");
    let (ok, out) = bob.git(&repo_b, &["push", "gigalixir", "master"]);
    assert!(ok, "B builds while A forks:\n{out}");
    assert!(p.get_app(&app_b, "/").1.contains("v2"));
    let _ = std::process::Command::new("docker")
        .args(["rm", "-f", &bomb])
        .output();

    // An account has at most 100 apps.
    let key = std::fs::read_to_string(bob.home.path().join(".netrc")).expect("netrc");
    let key = key
        .split_whitespace()
        .skip_while(|w| *w != "password")
        .nth(1)
        .expect("key")
        .to_owned();
    let client = reqwest::blocking::Client::new();
    let existing = 1;
    for n in existing..100 {
        let resp = client
            .post(format!("http://127.0.0.1:{}/api/apps", p.port))
            .basic_auth("bob@example.com", Some(&key))
            .json(&serde_json::json!({"unique_name": format!("many-{n}-{}", &p.instance[1..7])}))
            .send()
            .expect("create");
        assert_eq!(resp.status().as_u16(), 201, "app {n}");
    }
    let out = p
        .cli_command_as(
            bob.home.path(),
            work.path(),
            &[
                "create",
                "app",
                &format!("one-too-many-{}", &p.instance[1..5]),
            ],
        )
        .output()
        .expect("gigalixir");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at most 100 apps"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Three slow builds of A's wait their turn one by one; B's push builds at once.
    let mut slow = Vec::new();
    for n in 0..3 {
        let parent = work.path().join(format!("slow{n}"));
        let repo = p.fixture_repo_with("hello", &parent, |dir| {
            std::fs::write(
                dir.join("elixir_buildpack.config"),
                "hook_pre_compile=\"sleep 25\"\n",
            )
            .expect("config");
        });
        p.cli_ok(
            &repo,
            &["create", "app", &format!("slow{n}-{}", &p.instance[1..7])],
        );
        slow.push(p.spawn_git(&repo, &["push", "gigalixir", "master"]));
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_secs(2));
    let page = repo_b.join("lib/hello/page.ex");
    let text = std::fs::read_to_string(&page).expect("page");
    std::fs::write(&page, text.replace("v2", "v3")).expect("edit");
    p.commit_all(&repo_b, "v3");
    let (ok, out) = bob.git(&repo_b, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    assert!(
        !out.contains("Queued"),
        "B waited behind A's builds:\n{out}"
    );
    let still: Vec<bool> = slow
        .iter_mut()
        .map(|c| c.try_wait().expect("wait").is_none())
        .collect();
    assert!(
        still.iter().all(|s| *s),
        "A's slow builds were still going: {still:?}"
    );
    for mut child in slow {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn a_builds_output_is_capped_per_line_and_in_all() {
    require_images();
    let p = Platform::start_with(&["--build-log-mb", "1"]);
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let repo = p.fixture_repo_with("hello", work.path(), |dir| {
        let bin = dir.join("bp/bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::write(dir.join(".buildpacks"), "./bp\n").expect("buildpacks");
        let compile = bin.join("compile");
        std::fs::write(
            &compile,
            "#!/bin/bash\n\
             head -c 200000 /dev/zero | tr '\\0' 'x'; echo\n\
             for i in $(seq 1 40000); do echo \"line $i of a chatty build, padded to be long enough to count\"; done\n\
             exit 1\n",
        )
        .expect("compile");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&compile, std::fs::Permissions::from_mode(0o755)).expect("mode");
    });
    let app = format!("chatty-{}", &p.instance[1..7]);
    p.cli_ok(&repo, &["create", "app", &app]);
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "the buildpack fails");
    assert!(
        out.contains("[line cut at 64 kB]"),
        "{}",
        &out[..out.len().min(2000)]
    );
    assert!(
        !out.contains(&"x".repeat(70_000)),
        "a line over 64 kB reached the pusher"
    );
    assert!(out.contains("The build's output passed 1 MB: the rest of it is not kept (truncated)."));
    assert!(
        !out.contains("line 40000 of a chatty build"),
        "output past the cap was kept"
    );
    assert!(
        out.contains("push rejected"),
        "the pusher is told how it ended"
    );
}
