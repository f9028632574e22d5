//! Tests of the whole platform through its real binaries, and the tools the benchmark
//! scripts in `scripts/` use (`loadgen`, `bench-deploy`).
//!
//! [`Platform`] starts a real `gigalixir-platform` on a free port with its own data
//! directory, Docker instance label and HOME, runs the real `gigalixir` CLI and the real
//! `git` against it, and removes every container and network it made when dropped.

pub mod hot_counter;
pub mod pebble;
pub mod upstream;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The cargo target profile directory holding the binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") {
        dir.parent().expect("profile dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A binary of this workspace, which must have been built.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` (scripts/test does)",
        path.display()
    );
    path
}

/// Fails unless the builder and runner images of the stacks `scripts/images` builds exist.
pub fn require_images() {
    for image in [
        "gigalixir-builder:bookworm",
        "gigalixir-runner:bookworm",
        "gigalixir-builder:trixie",
        "gigalixir-runner:trixie",
    ] {
        let ok = Command::new("docker")
            .args(["image", "inspect", image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "the image {image} is missing: run scripts/images (scripts/test does)"
        );
    }
}

/// The environment that points a function binary at the embedded backends in `data`
/// (a platform's data directory): its store, bus and blobs.
pub fn embedded_backends(data: &Path) -> [(&'static str, String); 3] {
    [
        (
            "GIGALIXIR_STORE",
            format!("sqlite://{}", data.join("store.db").display()),
        ),
        (
            "GIGALIXIR_BUS",
            format!("sqlite://{}", data.join("bus.db").display()),
        ),
        (
            "GIGALIXIR_BLOBS",
            format!("file://{}", data.join("blobs").display()),
        ),
    ]
}

/// Runs `docker ARGS`, insists it succeeds, and returns its standard output, trimmed.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker");
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "docker {}: {stderr}", args.join(" "));
    stdout.trim().to_owned()
}

/// Waits until `ok` holds, failing after `limit` with `what`; how long it took.
pub fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Output as text: (stdout, stderr).
pub fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running platform; stopped, and its containers removed, when dropped.
pub struct Platform {
    /// The platform process while it runs (behind a lock so that a test holding accounts
    /// of this platform can still kill and start it).
    child: std::sync::Mutex<Option<Child>>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its HTTPS port on 127.0.0.1.
    pub https_port: u16,
    /// Its Docker label value.
    pub instance: String,
    /// Its data directory.
    pub data: tempfile::TempDir,
    /// HOME of the user driving it (netrc lives here).
    pub home: tempfile::TempDir,
    log: PathBuf,
    extra: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Platform {
    /// Starts a platform and waits until it answers.
    pub fn start() -> Self {
        Self::start_with::<&str>(&[])
    }

    /// Starts a platform with extra command-line flags and waits until it answers.
    pub fn start_with<S: AsRef<str>>(flags: &[S]) -> Self {
        Self::start_with_env(flags, &[])
    }

    /// Starts a platform with extra flags and environment variables, and waits until it
    /// answers.
    pub fn start_with_env<S: AsRef<str>>(flags: &[S], envs: &[(&str, &str)]) -> Self {
        let data = tempfile::tempdir().expect("data dir");
        // PostgreSQL's `postgres` user passes through on its way to the platform's cluster
        // (DATA_DIR/postgres, when a test makes databases); it reads nothing here.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o711))
                .expect("chmod data dir");
        }
        let home = tempfile::tempdir().expect("home dir");
        let port = free_port();
        let https_port = free_port();
        let instance = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let log = data.path().join("platform.log");
        let platform = Self {
            child: std::sync::Mutex::new(None),
            port,
            https_port,
            instance,
            data,
            home,
            log,
            extra: flags.iter().map(|f| f.as_ref().to_owned()).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        platform.spawn();
        platform
    }

    fn spawn(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(binary("gigalixir-platform"))
            .args([
                "--port",
                &self.port.to_string(),
                "--instance",
                &self.instance,
                "--https-port",
                &self.https_port.to_string(),
            ])
            .arg("--data-dir")
            .arg(self.data.path().join("data"))
            .args(&self.extra)
            // Accounts are active at once unless a test asks for confirmation
            // (`GIGALIXIR_NO_EMAIL_CONFIRMATION=false` in its envs).
            .env("GIGALIXIR_NO_EMAIL_CONFIRMATION", "true")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start gigalixir-platform");
        *self.child.lock().expect("child") = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = reqwest::blocking::get(format!("http://127.0.0.1:{}/healthz", self.port))
                .is_ok_and(|r| r.status().is_success());
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the platform did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The platform process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().expect("child").as_ref().map(Child::id)
    }

    /// What the platform logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The API / git base URL.
    pub fn url(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    /// Where the platform keeps its data.
    pub fn data_dir(&self) -> PathBuf {
        self.data.path().join("data")
    }

    /// Stops the platform with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        let child = self.child.lock().expect("child").take();
        if let Some(mut child) = child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the platform with SIGKILL, as a crash or the OOM killer would: nothing of it
    /// runs after this, its containers stay.
    pub fn kill(&self) {
        let child = self.child.lock().expect("child").take();
        if let Some(mut child) = child {
            child.kill().expect("SIGKILL the platform");
            child.wait().expect("reap the platform");
        }
    }

    /// Starts the platform again on the same data, after [`kill`](Self::kill).
    pub fn start_again(&self) {
        assert!(
            self.child.lock().expect("child").is_none(),
            "the platform still runs"
        );
        self.spawn();
    }

    /// Stops and starts the platform on the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The real `gigalixir` CLI, set up to run in `dir` as this platform's user; add
    /// variables or input before running it.
    pub fn cli_command(&self, dir: &Path, args: &[&str]) -> Command {
        self.cli_command_as(self.home.path(), dir, args)
    }

    /// [`cli_command`](Self::cli_command) as the user whose HOME is `home`.
    pub fn cli_command_as(&self, home: &Path, dir: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary("gigalixir"));
        cmd.args(args)
            .current_dir(dir)
            .env("HOME", home)
            .env("GIGALIXIR_API_URL", self.url())
            .env_remove("GIGALIXIR_APP")
            .env_remove("NETRC")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the real `gigalixir` CLI in `dir`.
    pub fn cli(&self, dir: &Path, args: &[&str]) -> Output {
        self.cli_command(dir, args).output().expect("run gigalixir")
    }

    /// Runs the CLI and insists it succeeds; returns stdout.
    pub fn cli_ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.cli(dir, args);
        let (stdout, stderr) = texts(&out);
        assert!(
            out.status.success(),
            "gigalixir {args:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    }

    /// Runs the real `git` in `dir` as the platform's user (their HOME and netrc).
    pub fn git(&self, dir: &Path, args: &[&str]) -> Output {
        self.git_command(dir, args).output().expect("run git")
    }

    /// Starts git in the background (a push that runs while the test does something
    /// else); its output is piped.
    pub fn spawn_git(&self, dir: &Path, args: &[&str]) -> Child {
        self.git_command(dir, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start git")
    }

    fn git_command(&self, dir: &Path, args: &[&str]) -> Command {
        self.git_command_as(self.home.path(), dir, args)
    }

    /// git as the user whose HOME is `home` (their netrc).
    pub fn git_command_as(&self, home: &Path, dir: &Path, args: &[&str]) -> Command {
        let mut git = Command::new("git");
        git.args(args)
            .current_dir(dir)
            .env("HOME", home)
            .env("GIT_AUTHOR_NAME", "Ada")
            .env("GIT_AUTHOR_EMAIL", "ada@example.com")
            .env("GIT_COMMITTER_NAME", "Ada")
            .env("GIT_COMMITTER_EMAIL", "ada@example.com")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_DIR")
            .stdin(Stdio::null());
        git
    }

    /// Runs git and insists it succeeds; returns stdout and stderr together.
    pub fn git_ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.git(dir, args);
        let (stdout, stderr) = texts(&out);
        assert!(
            out.status.success(),
            "git {args:?} failed:\n{stdout}\n{stderr}"
        );
        format!("{stdout}{stderr}")
    }

    /// Runs git (a push) and returns whether it succeeded with everything it printed.
    pub fn push(&self, dir: &Path, args: &[&str]) -> (bool, String) {
        let out = self.git(dir, args);
        let (stdout, stderr) = texts(&out);
        (out.status.success(), format!("{stdout}{stderr}"))
    }

    /// Commits everything in `dir` with `message`.
    pub fn commit_all(&self, dir: &Path, message: &str) {
        self.git_ok(dir, &["add", "-A"]);
        self.git_ok(dir, &["commit", "-qm", message]);
    }

    /// The blobs the platform keeps under `prefix` (its blob store is a directory).
    pub fn blobs_under(&self, prefix: &str) -> Vec<String> {
        let root = self.data_dir().join("blobs").join(prefix);
        let mut found = Vec::new();
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                } else {
                    found.push(entry.path().display().to_string());
                }
            }
        }
        found.sort();
        found
    }

    /// GET `path` of an app through the router, as `curl http://APP.localhost:PORT/` does.
    pub fn get_app(&self, app: &str, path: &str) -> (u16, String) {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        match client
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .header("host", format!("{app}.localhost:{}", self.port))
            .send()
        {
            Ok(resp) => (resp.status().as_u16(), resp.text().unwrap_or_default()),
            Err(err) => (0, err.to_string()),
        }
    }

    /// How many containers of `app` run for this platform.
    pub fn running_containers(&self, app: &str) -> usize {
        self.container_ids(app).len()
    }

    /// The running warm builders of `app` of this platform (the builds' containers it keeps
    /// between builds), one id a line.
    pub fn warm_builders(&self, app: &str) -> String {
        self.running_of(app, &["--filter", "label=gigalixir.warm-build"])
            .join("\n")
    }

    /// The ids of the running replicas of `app` of this platform (not its release phases
    /// or builds).
    pub fn container_ids(&self, app: &str) -> Vec<String> {
        self.running_of(app, &["--filter", "label=gigalixir.index"])
    }

    /// The running container of replica `web.N` of `app` (empty when none runs).
    pub fn replica_id(&self, app: &str, n: u32) -> String {
        let slot = format!("label=gigalixir.index={}", n - 1);
        self.running_of(app, &["--filter", &slot])
            .pop()
            .unwrap_or_default()
    }

    /// The ids of the running containers of `app` of this platform that `filters` (more
    /// `docker ps` arguments) select.
    fn running_of(&self, app: &str, filters: &[&str]) -> Vec<String> {
        let (app, instance) = (
            format!("label=gigalixir.app={app}"),
            format!("label=gigalixir.instance={}", self.instance),
        );
        let mut args = vec!["ps", "-q", "--filter", &app, "--filter", &instance];
        args.extend_from_slice(filters);
        docker(&args)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    /// Makes an account and logs in (netrc in HOME).
    pub fn sign_up_and_log_in(&self) {
        let dir = self.home.path();
        self.cli_ok(
            dir,
            &[
                "create",
                "user",
                "-e",
                "ada@example.com",
                "-p",
                "password123",
            ],
        );
        self.cli_ok(
            dir,
            &["login", "-e", "ada@example.com", "-p", "password123", "-y"],
        );
    }

    /// Copies a fixture app from `tests/fixtures/NAME` into a fresh git repository
    /// (one commit) under `parent`, and returns its path.
    pub fn fixture_repo(&self, name: &str, parent: &Path) -> PathBuf {
        self.fixture_repo_with(name, parent, |_| {})
    }

    /// [`fixture_repo`](Self::fixture_repo), with `edit` run on the copy before the commit.
    pub fn fixture_repo_with(
        &self,
        name: &str,
        parent: &Path,
        edit: impl FnOnce(&Path),
    ) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name);
        let dir = parent.join(name);
        copy_dir(&src, &dir);
        edit(&dir);
        self.git_ok(&dir, &["init", "-q", "--initial-branch=master"]);
        self.git_ok(&dir, &["add", "-A"]);
        self.git_ok(&dir, &["commit", "-qm", "first"]);
        dir
    }

    /// The `hello` fixture under `parent` built by one custom buildpack (`.buildpacks`
    /// naming `./bp`) whose `bin/compile` is the bash script `compile`.
    pub fn buildpack_repo(&self, parent: &Path, compile: &str) -> PathBuf {
        self.fixture_repo_with("hello", parent, |dir| {
            let bin = dir.join("bp/bin");
            std::fs::create_dir_all(&bin).expect("mkdir");
            std::fs::write(dir.join(".buildpacks"), "./bp\n").expect("buildpacks");
            let path = bin.join("compile");
            std::fs::write(&path, format!("#!/bin/bash\n{compile}")).expect("compile");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("mode");
        })
    }

    /// A repository of `fixture` under `parent` and an app for it, named
    /// `<prefix>-<part of this platform's instance>`, its `gigalixir` remote set.
    pub fn new_app(&self, fixture: &str, prefix: &str, parent: &Path) -> (PathBuf, String) {
        let repo = self.fixture_repo(fixture, parent);
        let app = format!("{prefix}-{}", &self.instance[1..7]);
        self.cli_ok(&repo, &["create", "app", &app]);
        (repo, app)
    }
}

/// The API key `gigalixir login` wrote to the netrc in `home`.
pub fn api_key(home: &Path) -> String {
    let netrc = std::fs::read_to_string(home.join(".netrc")).expect("netrc");
    netrc
        .split_whitespace()
        .skip_while(|w| *w != "password")
        .nth(1)
        .expect("a key in the netrc")
        .to_owned()
}

/// Another account on a platform, with a HOME (netrc) of its own.
pub struct Account<'a> {
    p: &'a Platform,
    /// Its HOME.
    pub home: tempfile::TempDir,
    /// Its email.
    pub email: String,
}

impl<'a> Account<'a> {
    /// Signs up `email` on `p` and logs in (its own netrc).
    pub fn sign_up(p: &'a Platform, email: &str) -> Self {
        let account = Self {
            p,
            home: tempfile::tempdir().expect("home"),
            email: email.to_owned(),
        };
        let home = account.home.path().to_path_buf();
        account.cli_ok(&home, &["create", "user", "-e", email, "-p", "password123"]);
        account.cli_ok(&home, &["login", "-e", email, "-p", "password123", "-y"]);
        account
    }

    /// Runs the CLI as this account and insists it succeeds; returns stdout.
    pub fn cli_ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self
            .p
            .cli_command_as(self.home.path(), dir, args)
            .output()
            .expect("run gigalixir");
        let (stdout, stderr) = texts(&out);
        assert!(
            out.status.success(),
            "{}: gigalixir {args:?} failed:\n{stdout}\n{stderr}",
            self.email
        );
        stdout
    }

    /// Runs git as this account: whether it succeeded, and everything it printed.
    pub fn git(&self, dir: &Path, args: &[&str]) -> (bool, String) {
        let out = self
            .p
            .git_command_as(self.home.path(), dir, args)
            .output()
            .expect("run git");
        let (stdout, stderr) = texts(&out);
        (out.status.success(), format!("{stdout}{stderr}"))
    }

    /// A repository of `fixture` under `parent` and an app `name` of this account for it.
    pub fn new_app(&self, fixture: &str, name: &str, parent: &Path) -> PathBuf {
        std::fs::create_dir_all(parent).expect("mkdir");
        let repo = self.p.fixture_repo(fixture, parent);
        self.cli_ok(&repo, &["create", "app", name]);
        repo
    }
}

/// A CA (`ca.pem`, `ca.key`) and a certificate it signed for 127.0.0.1 and localhost
/// (`cert.pem`, `key.pem`), in `d`, made with openssl: for the tests' TLS servers (Pebble,
/// log drain receivers), which the platform is told to trust.
pub fn local_certificate(d: &Path, ca_name: &str) {
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca_name}"),
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
        ],
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n",
    )
    .expect("ext");
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "req.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ],
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new passwordless ed25519 key pair `dir/name`: its private key's path and its public
/// key line.
pub fn ssh_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("ssh-keygen (openssh-client; scripts/test installs it)");
    assert!(out.status.success(), "{:?}", texts(&out));
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key");
    (path, public.trim().to_owned())
}

/// Copies a directory tree (files and directories; for fixtures).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = dst.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.stop();
        // The platform's PostgreSQL cluster outlives it (as its containers do): a fast
        // shutdown (SIGINT to the postmaster).
        let pid_file = self.data_dir().join("postgres/data/postmaster.pid");
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_owned))
        {
            let _ = Command::new("kill").args(["-INT", pid.trim()]).status();
            wait_for_quiet(&pid_file);
        }
        // Containers, networks, build caches: whatever this platform left on the engine.
        let label = format!("label=gigalixir.instance={}", self.instance);
        let kinds: [(&[&str], &[&str]); 3] = [
            (&["ps", "-aq"], &["rm", "-f", "-v"]),
            (&["network", "ls", "-q"], &["network", "rm"]),
            (&["volume", "ls", "-q"], &["volume", "rm", "-f"]),
        ];
        for (list, remove) in kinds {
            let Ok(out) = Command::new("docker")
                .args(list)
                .args(["--filter", &label])
                .output()
            else {
                continue;
            };
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(remove).arg(id).output();
            }
        }
        if std::thread::panicking() {
            eprintln!("--- platform log ---\n{}", self.log());
        }
    }
}

fn wait_for_quiet(pid_file: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pid_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GETs `/` of an app through the router every 20 ms until stopped (for at most three
/// minutes: bounded and loopback-only) and counts the answers that were not a success;
/// each failure is printed.
pub struct Probe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: std::thread::JoinHandle<(u64, u64)>,
}

impl Probe {
    /// Starts probing `app` on the platform's `port`.
    pub fn start(port: u16, app: &str) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, app) = (stop.clone(), app.to_owned());
        let handle = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            let (mut total, mut failed) = (0, 0);
            let end = Instant::now() + Duration::from_secs(180);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                total += 1;
                let answer = client
                    .get(format!("http://127.0.0.1:{port}/"))
                    .header("host", format!("{app}.localhost:{port}"))
                    .send();
                let why = match answer {
                    Ok(r) if r.status().is_success() => None,
                    Ok(r) => Some(format!("{}: {}", r.status(), r.text().unwrap_or_default())),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(why) = why {
                    failed += 1;
                    eprintln!("probe: a request failed: {why}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (total, failed)
        });
        Self { stop, handle }
    }

    /// Stops it: (requests sent, requests failed).
    pub fn finish(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.join().unwrap_or((0, 0))
    }
}
