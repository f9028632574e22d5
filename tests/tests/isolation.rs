//! Tenants are walled off from each other: two accounts, real pushes, real containers.
//! (The isolation suite of issue 12; each part adds its checks here.)

use std::io::Read;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use gigalixir_tests::upstream::{publish_git, HexUpstream, StaticServer};
use gigalixir_tests::{docker, require_images, ssh_keygen, wait_for, Account, Platform};

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
    let (repo_a, app_a) = p.new_app("env_probe", "alice", work.path());
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

    // Each app keeps a warm builder of its own, on its own cache volume; B's holds nothing
    // of A's. A read-me change of B's reuses B's own running slug. (A build's container
    // becomes idle once its cache is copied out, which may end after the deploy.)
    wait_for("both apps' idle builders", Duration::from_secs(60), || {
        !p.warm_builders(&app_a).is_empty() && !p.warm_builders(&app_b).is_empty()
    });
    let (builder_a, builder_b) = (p.warm_builders(&app_a), p.warm_builders(&app_b));
    assert!(
        !builder_a.is_empty() && !builder_b.is_empty() && builder_a != builder_b,
        "warm builders: A {builder_a:?}, B {builder_b:?}"
    );
    let volumes_b = docker(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Name}} {{end}}",
        &builder_b,
    ]);
    assert!(
        volumes_b.contains(&format!("gx-cache-{}-{app_b}-", p.instance))
            && !volumes_b.contains(&app_a),
        "{volumes_b}"
    );
    let seen = docker(&[
        "exec",
        &builder_b,
        "sh",
        "-c",
        "find / -xdev -name '*env_probe*' 2>/dev/null; find /build /tmp /home/build -name '*env_probe*' 2>/dev/null; true",
    ]);
    assert!(
        seen.is_empty(),
        "A's app is visible from B's builder:\n{seen}"
    );
    // B's builder keeps a Mix of its own, for B's next build: it runs from B's memory, with
    // B's environment, and names nothing of A's.
    let kept_b = docker(&[
        "exec",
        &builder_b,
        "sh",
        "-c",
        "ls -A /dev/shm; tr '\\0' '\\n' < /proc/$(cat /dev/shm/gigalixir-mix/pid)/environ",
    ]);
    assert!(
        kept_b.contains("gigalixir-mix")
            && kept_b.contains("MIX_ENV=prod")
            && !kept_b.contains(&app_a)
            && !kept_b.contains("env_probe"),
        "B's kept Mix:\n{kept_b}"
    );
    std::fs::write(repo_b.join("README.md"), "B's read-me\n").expect("readme");
    p.commit_all(&repo_b, "B's read-me");
    let (ok, out) = bob.git(&repo_b, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("only README.md changed since") && out.contains("reusing the slug v1 runs"),
        "{out}"
    );

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

    replicas_reach_neither_the_host_nor_each_other(&p, &app_b);

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

/// Whether a TCP connection from `app`'s replica to `host:port` opens within 3 s.
fn replica_connects(p: &Platform, app: &str, host: &str, port: u16) -> bool {
    let out = in_replica(
        p,
        app,
        &format!(
            "if timeout 3 bash -c 'exec 3<>/dev/tcp/{host}/{port}' 2>/dev/null; then echo open; else echo closed; fi"
        ),
    );
    match out.trim() {
        "open" => true,
        "closed" => false,
        other => panic!("probe from {app}: {other}"),
    }
}

/// Part 5: from B's replica, neither this host (at its address on B's network, where a
/// listener of this test waits) nor A's replica can be reached; the rules that keep the
/// link-local range (cloud metadata) out are in place for B's bridge, checked as rules
/// since no traffic may go there.
fn replicas_reach_neither_the_host_nor_each_other(p: &Platform, app_b: &str) {
    let inspect = |id: &str, format: &str| docker(&["inspect", "-f", format, id]);
    let ids_a = p.container_ids(&format!("alice-{}", &p.instance[1..7]));
    let id_a = ids_a.first().expect("A's replica");
    let id_b = p
        .container_ids(app_b)
        .first()
        .cloned()
        .expect("B's replica");
    let ip_of = |id: &str| {
        inspect(
            id,
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        )
        .trim()
        .to_owned()
    };
    let (ip_a, ip_b) = (ip_of(id_a), ip_of(&id_b));
    let network_b = inspect(&id_b, "{{.HostConfig.NetworkMode}}");
    let gateway = docker(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        &network_b,
    ]);
    let bridge = docker(&[
        "network",
        "inspect",
        "-f",
        "{{index .Options \"com.docker.network.bridge.name\"}}",
        &network_b,
    ]);

    // The host, on its address on B's bridge: reachable from the host itself, not from B.
    let listener = TcpListener::bind((gateway.as_str(), 0)).expect("listen on the gateway");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    assert!(
        std::net::TcpStream::connect((gateway.as_str(), port)).is_ok(),
        "the host's own connection to {gateway}:{port}"
    );
    while listener.accept().is_ok() {}
    assert!(
        !replica_connects(p, app_b, &gateway, port),
        "B's replica reached this host at {gateway}:{port}"
    );
    assert!(
        listener.accept().is_err(),
        "a connection from B's replica reached the host's listener"
    );

    // A's replica answers the host, not B's replica; B's own replica answers itself.
    assert!(
        std::net::TcpStream::connect((ip_a.as_str(), 4000)).is_ok(),
        "the host reaches A's replica at {ip_a}:4000"
    );
    assert!(
        !replica_connects(p, app_b, &ip_a, 4000),
        "B's replica reached A's replica at {ip_a}"
    );
    assert!(
        replica_connects(p, app_b, &ip_b, 4000),
        "B's replica reaches its own address"
    );

    // The link-local range (169.254.169.254 answers with cloud credentials) is dropped for
    // every app bridge, B's among them.
    assert!(bridge.starts_with("gxe"), "B's bridge is {bridge:?}");
    let rule = |args: &[&str]| {
        std::process::Command::new("iptables")
            .arg("-w")
            .args(args)
            .status()
            .expect("iptables")
            .success()
    };
    assert!(rule(&[
        "-C",
        "DOCKER-USER",
        "-i",
        "gx+",
        "-j",
        "GIGALIXIR-APPS"
    ]));
    assert!(rule(&[
        "-C",
        "GIGALIXIR-APPS",
        "-d",
        "169.254.0.0/16",
        "-j",
        "DROP"
    ]));
    assert!(rule(&["-C", "INPUT", "-i", "gx+", "-j", "GIGALIXIR-HOST"]));
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
        &["account:ssh_keys:add", &ssh_keygen(&keys, "ada").1],
    );
    bob.cli_ok(
        work.path(),
        &["account:ssh_keys:add", &ssh_keygen(&keys, "bob").1],
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
    let n = match slow.read(&mut buf) {
        Ok(n) => n,
        // reset by the server: closed too
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        Err(e) => panic!("the half-sent request was still open after 30 s: {e}"),
    };
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

    // Two floods of 200 bad logins for many accounts from 50 addresses, 50 at a time;
    // then, from another address, the right password works at once.
    let before = rss_kb(&p, "VmRSS:");
    let mut after = Vec::new();
    for flood in 0..2 {
        std::thread::scope(|s| {
            for t in 0..50 {
                let p = &p;
                s.spawn(move || {
                    for i in 0..4 {
                        let email = format!("nobody{flood}-{t}-{i}@example.com");
                        let from = format!("127.0.1.{}", t + 1);
                        let (status, _) = login_status(p, &from, &email, "x");
                        assert!(matches!(status, 401 | 429 | 503), "{status}");
                    }
                });
            }
        });
        after.push(rss_kb(&p, "VmRSS:"));
    }
    eprintln!(
        "figure: platform RSS {before} kB before two floods of 200 bad logins (50 at a time from 50 addresses), {after:?} kB after each, peak {} kB",
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
    let key = gigalixir_tests::api_key(bob.home.path());
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
    let repo = p.buildpack_repo(
        work.path(),
        "head -c 200000 /dev/zero | tr '\\0' 'x'; echo\n\
         for i in $(seq 1 40000); do echo \"line $i of a chatty build, padded to be long enough to count\"; done\n\
         exit 1\n",
    );
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

/// B's pre-compile hook: tries to alter the package cache every tenant shares, reports what
/// happened, and, while the file `hold` is in the app, waits for the test's go.
const HOSTILE: &str = r#"set +e
if touch /run/gigalixir/packages/planted 2>/dev/null; then
  echo "hostile: wrote into the package cache's directory"
else
  echo "hostile: the package cache's directory is read-only"
fi
if touch /usr/local/bin/planted 2>/dev/null; then
  echo "hostile: wrote into the builder image"
else
  echo "hostile: the builder image is read-only"
fi
req() {
  exec 3<>/dev/tcp/127.0.0.1/4001
  printf '%s %s HTTP/1.0\r\nHost: x\r\nContent-Length: 4\r\n\r\nevil' "$1" "$2" >&3
  head -1 <&3 | tr -d '\r'
  exec 3>&-
}
echo "hostile: PUT -> $(req PUT /tarballs/gx_base-1.0.0.tar)"
echo "hostile: DELETE -> $(req DELETE /tarballs/gx_base-1.0.0.tar)"
echo "hostile: POST -> $(req POST /packages/gx_base)"
if [ -f hold ]; then
  touch /tmp/hostile-waiting
  for i in $(seq 1 1200); do [ -e /tmp/hostile-go ] && break; sleep 0.1; done
fi
"#;

/// Whether `test -e PATH` holds inside container `id`.
fn exists_in(id: &str, path: &str) -> bool {
    std::process::Command::new("docker")
        .args(["exec", id, "test", "-e", path])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_platform_killed_mid_build_stops_it_after_a_restart_and_tenants_stay_apart() {
    require_images();
    let upstream = HexUpstream::start();
    let p = Platform::start_with(&upstream.platform_flags());
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let tag = p.instance[1..7].to_owned();

    // A: a Hex app, live.
    let a_dir = work.path().join("a");
    std::fs::create_dir_all(&a_dir).expect("mkdir");
    let a_repo = p.fixture_repo_with("hex_app", &a_dir, |d| upstream.resolve_lock(d));
    let a_app = format!("hexa-{tag}");
    p.cli_ok(&a_repo, &["create", "app", &a_app]);
    let (ok, out) = p.push(&a_repo, &["push", "gigalixir", "master"]);
    assert!(ok, "A's push failed:\n{out}");
    let kept = p.blobs_under("packages/hex/tarballs");
    assert_eq!(kept.len(), 3, "{kept:?}");

    // B: another account, the same packages, a build that attacks the cache and then holds.
    let b = Account::sign_up(&p, &format!("b-{tag}@example.com"));
    let b_app = format!("hexb-{tag}");
    let b_repo = b.new_app("hex_app", &b_app, &work.path().join("b"));
    upstream.resolve_lock(&b_repo);
    std::fs::write(b_repo.join("hostile.sh"), HOSTILE).expect("hook");
    std::fs::write(b_repo.join("hold"), "").expect("hold");
    std::fs::write(
        b_repo.join("elixir_buildpack.config"),
        "hook_pre_compile=\"bash hostile.sh\"\n",
    )
    .expect("config");
    p.commit_all(&b_repo, "a hostile build that holds");
    let log = std::fs::File::create(work.path().join("b-push.log")).expect("log");
    let mut push = p
        .git_command_as(b.home.path(), &b_repo, &["push", "gigalixir", "master"])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("push");
    let mut build = String::new();
    wait_for(
        "B's build to hold in its hook",
        Duration::from_secs(180),
        || {
            build = docker(&[
                "ps",
                "-q",
                "--filter",
                &format!("label=gigalixir.app={b_app}"),
                "--filter",
                &format!("label=gigalixir.instance={}", p.instance),
                "--filter",
                "name=gx-build-",
            ]);
            !build.is_empty() && exists_in(&build, "/tmp/hostile-waiting")
        },
    );

    // The platform dies mid-build; the build's container outlives it.
    // A build cannot change its image: read-only root, /build a volume of its own.
    assert_eq!(
        docker(&["inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", &build]),
        "true"
    );
    p.kill();
    let _ = push.wait();
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &build]),
        "true"
    );
    // What the killed push held on disk (its spool, the repository's checkout) is in the
    // platform's temporary directory, and goes when it starts again.
    let tmp = p.data_dir().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .expect("the platform's tmp")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(
        !left.is_empty(),
        "the killed push left nothing in {}",
        tmp.display()
    );
    p.start_again();
    for name in &left {
        assert!(
            !tmp.join(name).exists(),
            "{name:?} is still in {}",
            tmp.display()
        );
    }
    // B's push died with the platform: its build is stopped, never goes live, and its
    // container goes; A's app answers as before.
    let took = wait_for(
        "B's interrupted build container to go",
        Duration::from_secs(90),
        || docker(&["ps", "-aq", "--filter", &format!("id={build}")]).is_empty(),
    );
    eprintln!("after the restart, B's interrupted build was stopped in {took:?}");
    let (status, page) = p.get_app(&a_app, "/");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("gx_base 1.0.0"), "{page}");
    let releases = b.cli_ok(&b_repo, &["releases"]);
    assert!(
        !releases.contains("v1"),
        "the interrupted push made no release:\n{releases}"
    );

    // What B's build could do to the cache every tenant shares: nothing.
    std::fs::remove_file(b_repo.join("hold")).expect("rm hold");
    p.commit_all(&b_repo, "no hold");
    let (ok, out) = b.git(&b_repo, &["push", "gigalixir", "master"]);
    assert!(ok, "B's second push failed:\n{out}");
    assert!(
        out.contains("was interrupted by a platform restart: nothing of it was deployed"),
        "{out}"
    );
    assert!(
        out.contains("hostile: the package cache's directory is read-only")
            && out.contains("hostile: the builder image is read-only"),
        "{out}"
    );
    for method in ["PUT", "DELETE", "POST"] {
        let line = out
            .lines()
            .find_map(|l| l.split_once(&format!("hostile: {method} -> ")))
            .map(|(_, status)| status.trim().to_owned())
            .unwrap_or_else(|| panic!("no {method} line:\n{out}"));
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{method}: `{line}`\n{out}"));
        assert!((400..500).contains(&code), "{method} answered `{line}`");
    }
    assert_eq!(p.blobs_under("packages/hex/tarballs"), kept);

    // A rebuilds from scratch through the same cache, verified against its lock.
    p.git_ok(&a_repo, &["commit", "-q", "--allow-empty", "-m", "rebuild"]);
    let (ok, out) = p.push(
        &a_repo,
        &[
            "-c",
            "http.extraheader=GIGALIXIR-CLEAN: true",
            "push",
            "gigalixir",
            "master",
        ],
    );
    assert!(ok, "A's clean rebuild failed:\n{out}");
    assert!(
        out.contains("3 packages verified against mix.lock"),
        "{out}"
    );
    let (status, page) = p.get_app(&a_app, "/");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("gx_base 1.0.0"), "{page}");
}

/// A fresh RSA key from openssl: its PKCS#1 DER and its modulus.
fn rsa_key(dir: &Path, name: &str) -> (Vec<u8>, Vec<u8>) {
    let pem = dir.join(format!("{name}.pem"));
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let path = pem.to_str().expect("path");
    run(&["genrsa", "-traditional", "-out", path, "2048"]);
    let der = run(&["rsa", "-traditional", "-in", path, "-outform", "DER"]);
    let modulus =
        String::from_utf8(run(&["rsa", "-in", path, "-noout", "-modulus"])).expect("text");
    let modulus = modulus.trim().trim_start_matches("Modulus=");
    let bytes = (0..modulus.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&modulus[i..i + 2], 16).expect("hex"))
        .collect();
    (der, bytes)
}

/// Part 8: a pipeline function serving pushes on its port (as on Cloud Run) believes only
/// Google-signed tokens for its own URL and push account; it does not start without them.
#[test]
fn a_forged_pipeline_push_is_refused() {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let work = tempfile::tempdir().expect("work");
    let (der, modulus) = rsa_key(work.path(), "google");
    let (other_der, _) = rsa_key(work.path(), "forger");
    let keys = work.path().join("keys");
    std::fs::create_dir_all(&keys).expect("keys");
    let jwks = serde_json::json!({"keys": [{
        "kty": "RSA", "alg": "RS256", "use": "sig", "kid": "k1",
        "n": URL_SAFE_NO_PAD.encode(&modulus), "e": "AQAB"
    }]});
    std::fs::write(keys.join("certs"), jwks.to_string()).expect("certs");
    let server = StaticServer::start(&keys);

    let port = gigalixir_tests::free_port();
    let audience = format!("http://127.0.0.1:{port}");
    let invoker = "pubsub-invoker@gx-test.iam.gserviceaccount.com";
    let data = work.path().join("data");
    std::fs::create_dir_all(data.join("blobs")).expect("data");
    let instance = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let deploy = |push_env: bool| {
        let mut command = std::process::Command::new(gigalixir_tests::binary("gigalixir-deploy"));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .envs(gigalixir_tests::embedded_backends(&data))
            .env(
                "GIGALIXIR_RUNTIME",
                format!("docker://?instance={instance}&firewall=false"),
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if push_env {
            command
                .env("GIGALIXIR_PUSH_AUDIENCE", &audience)
                .env("GIGALIXIR_PUSH_INVOKER", invoker)
                .env("GIGALIXIR_PUSH_JWKS", format!("{}/certs", server.url()));
        }
        command
    };

    // Without the audience and the push account it does not serve pushes at all.
    let out = deploy(false).output().expect("run gigalixir-deploy");
    let (_, stderr) = gigalixir_tests::texts(&out);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("GIGALIXIR_PUSH_AUDIENCE is not set"),
        "{stderr}"
    );
    assert!(
        stderr.contains("GIGALIXIR_PUSH_INVOKER is not set"),
        "{stderr}"
    );

    let mut child = deploy(true).spawn().expect("start gigalixir-deploy");
    wait_for(
        "gigalixir-deploy to listen",
        Duration::from_secs(30),
        || {
            reqwest::blocking::get(format!("{audience}/healthz"))
                .is_ok_and(|r| r.status().is_success())
        },
    );
    let event = shared::messages::Event::AppDestroyed {
        app: shared::domain::AppName::parse("victim").expect("name"),
    };
    let envelope = shared::messages::Envelope::event(&event, None);
    let body = serde_json::json!({
        "message": {
            "data": STANDARD.encode(&envelope.data),
            "attributes": envelope.attributes,
            "messageId": "4242",
        },
        "subscription": "projects/gx/subscriptions/deploy.app-destroyed",
    })
    .to_string();
    let sign = |key: &[u8], aud: &str, email: &str| {
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({
            "aud": aud, "iss": "https://accounts.google.com", "email": email,
            "email_verified": true, "iat": now, "exp": now + 600, "sub": "1"
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_der(key),
        )
        .expect("sign")
    };
    let client = reqwest::blocking::Client::new();
    let push = |token: Option<String>| {
        let mut request = client.post(format!("{audience}/")).body(body.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().expect("push");
        (
            response.status().as_u16(),
            response.text().unwrap_or_default(),
        )
    };
    let forged = [
        ("no token", None),
        (
            "signed by another key",
            Some(sign(&other_der, &audience, invoker)),
        ),
        (
            "for another service",
            Some(sign(&der, "https://elsewhere.example", invoker)),
        ),
        (
            "from another account",
            Some(sign(&der, &audience, "me@evil.example")),
        ),
    ];
    for (what, token) in forged {
        let (status, text) = push(token);
        assert_eq!(status, 401, "{what}: {text}");
        assert!(text.starts_with("push refused: "), "{what}: {text}");
    }
    // Pub/Sub's own push, signed by Google's key for this service and account: taken.
    let (status, text) = push(Some(sign(&der, &audience, invoker)));
    assert_eq!(status, 204, "a genuine push: {text}");
    let _ = child.kill();
    let output = child.wait_with_output().expect("log");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("push refused: no bearer token"), "{log}");
    assert!(
        !log.contains(&sign(&der, &audience, invoker)[..40]),
        "a token in the log"
    );
}

/// Part 4: one push cannot exhaust the platform. A commit whose one file inflates to 4 GiB
/// (a few MB over the wire) is refused while git writes its tree out; then 20 clones at
/// once of a repository of 200 MB all succeed. The platform's peak RSS is reported and
/// stays under 300 MB.
#[test]
fn one_push_cannot_exhaust_the_platform() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "bomb", work.path());

    // 4 GiB of zeros: sparse on disk, streamed into a pack by git add, a few MB pushed.
    let big = repo.join("zeros.bin");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(4 << 30))
        .expect("a sparse file");
    p.git_ok(&repo, &["-c", "core.compression=1", "add", "zeros.bin"]);
    p.git_ok(&repo, &["commit", "-q", "-m", "4 GiB of zeros"]);
    std::fs::remove_file(&big).expect("rm");
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "the bomb was accepted:\n{out}");
    assert!(out.contains("larger than 1 GB"), "{out}");
    let after_bomb = rss_kb(&p, "VmHWM:");

    // 200 MB that does not compress, on a branch (stored, not built).
    p.git_ok(&repo, &["checkout", "-q", "--orphan", "big"]);
    p.git_ok(&repo, &["rm", "-q", "-r", "--cached", "."]);
    let mut noise = vec![0u8; 200 << 20];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for chunk in noise.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(repo.join("noise.bin"), &noise).expect("noise");
    drop(noise);
    p.git_ok(&repo, &["add", "noise.bin"]);
    p.git_ok(&repo, &["commit", "-q", "-m", "200 MB"]);
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "big"]);
    assert!(ok, "{out}");
    assert!(out.contains("Branch big stored, not built"), "{out}");

    let url = format!("{}/{app}.git", p.url());
    let clones = work.path().join("clones");
    std::fs::create_dir_all(&clones).expect("clones");
    let started = Instant::now();
    let children: Vec<_> = (0..20)
        .map(|i| {
            let dest = format!("c{i}");
            p.spawn_git(&clones, &["clone", "-q", "--branch", "big", &url, &dest])
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("clone");
        let (_, stderr) = gigalixir_tests::texts(&out);
        assert!(out.status.success(), "clone {i}: {stderr}");
        let size = std::fs::metadata(clones.join(format!("c{i}/noise.bin")))
            .expect("cloned file")
            .len();
        assert_eq!(size, 200 << 20, "clone {i}");
    }
    let peak = rss_kb(&p, "VmHWM:");
    println!(
        "part 4: peak RSS {} MB after the 4 GiB bomb, {} MB after 20 parallel clones of 200 MB ({:.1} s)",
        after_bomb / 1024,
        peak / 1024,
        started.elapsed().as_secs_f64()
    );
    assert!(
        peak < 300 * 1024,
        "the platform peaked at {} MB",
        peak / 1024
    );
}

/// Part 6: a build's disk is capped. A buildpack that fills its cache with an 8 GiB file
/// (sparse: it costs this machine nothing, and counts whole) is stopped, and the push says
/// why.
#[test]
fn a_build_that_fills_its_disk_is_stopped() {
    require_images();
    let p = Platform::start_with(&["--build-disk-mb", "256"]);
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let repo = p.buildpack_repo(
        work.path(),
        "truncate -s 8G \"$2/huge\" && echo 'wrote 8 GiB into the cache'\n\
         sleep 60\n\
         echo 'still running'\n",
    );
    let app = format!("filler-{}", &p.instance[1..7]);
    p.cli_ok(&repo, &["create", "app", &app]);
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "{out}");
    assert!(out.contains("wrote 8 GiB into the cache"), "{out}");
    assert!(
        out.contains("the build wrote more than 256 MB to disk (its files and its cache together) and was stopped"),
        "{out}"
    );
    assert!(!out.contains("still running"), "the build ran on:\n{out}");

    // The cache it left does not stop the app's next build: that one starts empty.
    std::fs::remove_file(repo.join(".buildpacks")).expect("rm");
    p.commit_all(&repo, "the Elixir buildpack again");
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("The build cache is larger than the 256 MB a build may fill: starting from an empty cache"),
        "{out}"
    );
    let (status, _) = p.get_app(&app, "/");
    assert_eq!(status, 200);

    // Another account builds and deploys as usual.
    let bob = Account::sign_up(&p, "bob@example.com");
    let bob_app = format!("bob-{}", &p.instance[1..7]);
    let bob_repo = bob.new_app("hello", &bob_app, &work.path().join("bob"));
    let (ok, out) = bob.git(&bob_repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    let (status, _) = p.get_app(&bob_app, "/");
    assert_eq!(status, 200);
}
