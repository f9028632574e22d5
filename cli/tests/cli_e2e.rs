//! End to end: the real `gigalixir` binary against a real `gigalixir-platform` process on a
//! free port, with a temporary HOME (so a temporary `~/.netrc`) and stdin at /dev/null.
//!
//! The platform binary is not built by `cargo test -p gigalixir-cli`; build it first with
//! `cargo build --workspace --bins` (or run `scripts/test`).

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const EMAIL: &str = "dev@example.com";
const PASSWORD: &str = "correct-horse";

/// A netrc as people keep them: comments, a quoted password, a macro, odd spacing. Every
/// byte of it must survive login and logout.
const ORIGINAL_NETRC: &str = concat!(
    "# kept by hand; do not touch\n",
    "machine github.com\n",
    "\tlogin octo   password  \"s3 cret\"\n",
    "\n",
    "macdef init\n",
    "cd /tmp\n",
    "  ls   # part of the macro\n",
    "\n",
    "machine  example.org login bob password x  \n",
    "   # trailing comment without a newline",
);

fn platform_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows where it is");
    // …/target/debug/deps/cli_e2e-HASH → …/target/debug
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let bin = dir.join(format!(
        "gigalixir-platform{}",
        std::env::consts::EXE_SUFFIX
    ));
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` (or run `scripts/test`)",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A running platform; killed when dropped, so a failed assertion leaves no process
/// behind. On a failure its log is printed.
struct Platform {
    child: Child,
    log: PathBuf,
}

impl Platform {
    fn start(data_dir: &Path, port: u16, log: &Path) -> Self {
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the platform log");
        // its own instance and no HTTPS port: nothing shared with another platform here
        let instance = format!("cli{port}");
        let child = Command::new(platform_binary())
            .arg("--port")
            .arg(port.to_string())
            .args(["--https-port", "0", "--instance", &instance])
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("GIGALIXIR_STORE")
            .env_remove("GIGALIXIR_BUS")
            .env_remove("GIGALIXIR_BLOBS")
            .env_remove("GIGALIXIR_LISTEN")
            .env_remove("GIGALIXIR_PORT")
            .env_remove("GIGALIXIR_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .expect("start gigalixir-platform");
        let mut platform = Self {
            child,
            log: log.to_owned(),
        };
        platform.wait_healthy(port);
        platform
    }

    fn wait_healthy(&mut self, port: u16) {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("http client");
        let url = format!("http://127.0.0.1:{port}/healthz");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the platform") {
                panic!(
                    "gigalixir-platform exited ({status}) before answering; its log:\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if http.get(&url).send().is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gigalixir-platform did not answer {url} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it the way an operator does (Ctrl-C) and waits for a clean exit.
    fn interrupt(mut self) {
        let ok = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -INT failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the platform") {
                assert!(
                    status.success(),
                    "the platform exited with {status} on SIGINT"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the platform did not stop within 20 s of SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- gigalixir-platform log ---\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// How the CLI is run: a temporary HOME, the platform's URL, nothing inherited that could
/// point it (or git) elsewhere.
struct Cli {
    home: PathBuf,
    api: String,
}

impl Cli {
    fn run(&self, dir: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gigalixir"))
            .args(args)
            .current_dir(dir)
            .env("HOME", &self.home)
            .env("GIGALIXIR_API_URL", &self.api)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env_remove("NETRC")
            .env_remove("GIGALIXIR_APP")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .stdin(Stdio::null())
            .output()
            .expect("run gigalixir")
    }

    /// Runs and expects success; returns stdout.
    fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.run(dir, args);
        let (stdout, stderr) = texts(&out);
        assert!(
            out.status.success(),
            "`gigalixir {}` failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
            args.join(" "),
            out.status
        );
        stdout
    }

    /// Runs and expects exit code 1 with one `error: …` line containing `needle`.
    fn fails(&self, dir: &Path, args: &[&str], needle: &str) -> String {
        let out = self.run(dir, args);
        let (stdout, stderr) = texts(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "`gigalixir {}` should fail with 1:\nstdout: {stdout}\nstderr: {stderr}",
            args.join(" ")
        );
        assert!(
            stderr.starts_with("error: ") && stderr.contains(needle),
            "`gigalixir {}`: stderr should say `{needle}`, got: {stderr}",
            args.join(" ")
        );
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "one line of error, no trace: {stderr}"
        );
        assert!(!stderr.contains(PASSWORD), "the password leaked: {stderr}");
        stderr
    }

    fn netrc(&self) -> String {
        fs::read_to_string(self.home.join(".netrc")).expect("read ~/.netrc")
    }

    fn apps_json(&self, dir: &Path) -> Vec<String> {
        let out = self.ok(dir, &["apps", "--json"]);
        let apps: serde_json::Value = serde_json::from_str(&out).expect("`apps --json` is JSON");
        apps.as_array()
            .expect("a JSON array")
            .iter()
            .map(|a| a["unique_name"].as_str().expect("unique_name").to_owned())
            .collect()
    }
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn git(dir: &Path, home: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null())
        .output()
        .expect("git is installed");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The key of our entry, as `login` writes it.
fn key_of(netrc: &str) -> String {
    let prefix = format!("machine localhost\n\tlogin {EMAIL}\n\tpassword ");
    let start = netrc
        .find(&prefix)
        .unwrap_or_else(|| panic!("no `machine localhost` entry for {EMAIL} in:\n{netrc}"));
    let key: String = netrc[start + prefix.len()..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    assert!(
        key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()),
        "the key should be 64 hex digits: {key}"
    );
    key
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn accounts_and_apps_against_a_real_platform() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    let data = tmp.path().join("data");
    let outside = tmp.path().join("elsewhere");
    let repo = home.join("my-project");
    for dir in [&home, &data, &outside, &repo] {
        fs::create_dir_all(dir).expect("mkdir");
    }
    let log = tmp.path().join("platform.log");
    let port = free_port();
    let platform = Platform::start(&data, port, &log);
    let cli = Cli {
        home: home.clone(),
        api: format!("http://localhost:{port}"),
    };
    let netrc_path = home.join(".netrc");
    fs::write(&netrc_path, ORIGINAL_NETRC).expect("write the existing netrc");

    // Sign-up, with the bad inputs first.
    cli.fails(
        &home,
        &["create", "user", "-e", EMAIL, "-p", "short"],
        "at least 8 characters",
    );
    cli.fails(
        &home,
        &["signup", "-e", "not-an-email", "-p", PASSWORD],
        "not a valid email",
    );
    let out = cli.ok(&home, &["create", "user", "-e", EMAIL, "-p", PASSWORD]);
    assert!(
        out.contains(EMAIL) && out.contains("gigalixir login"),
        "{out}"
    );
    cli.fails(
        &home,
        &["signup", "-e", EMAIL, "-p", "another-password"],
        "already exists",
    );

    // Login: wrong password, no terminal without -y, then the real one.
    cli.fails(
        &home,
        &["login", "-e", EMAIL, "-p", "another-password", "-y"],
        "wrong email or password",
    );
    cli.fails(&home, &["login", "-e", EMAIL, "-p", PASSWORD], "-y");
    assert_eq!(cli.netrc(), ORIGINAL_NETRC, "failed logins change nothing");
    cli.fails(&home, &["apps"], "not logged in: run `gigalixir login`");

    let out = cli.ok(&home, &["login", "-e", EMAIL, "-p", PASSWORD, "-y"]);
    assert!(out.contains("Logged in"), "{out}");
    let netrc = cli.netrc();
    let key = key_of(&netrc);
    assert!(
        !out.contains(&key),
        "login -y must not print the key: {out}"
    );
    // The original ends without a newline: the entry starts a new line and keeps that style.
    assert_eq!(
        netrc,
        format!("{ORIGINAL_NETRC}\nmachine localhost\n\tlogin {EMAIL}\n\tpassword {key}"),
        "every other byte of the netrc is kept"
    );
    #[cfg(unix)]
    assert_eq!(mode(&netrc_path), 0o600);

    let out = cli.ok(&home, &["account"]);
    assert!(out.contains(EMAIL) && out.contains("FREE"), "{out}");

    // Apps in a git repository.
    git(&repo, &home, &["init", "-q"]);
    let out = cli.ok(&repo, &["apps"]);
    assert!(out.contains("no apps yet"), "{out}");
    let out = cli.ok(&repo, &["create", "app", "e2e-app"]);
    assert!(out.contains("Created app e2e-app"), "{out}");
    let remote_url = format!("http://localhost:{port}/e2e-app.git");
    assert_eq!(
        git(&repo, &home, &["remote", "get-url", "gigalixir"]),
        remote_url
    );

    // Bad app names: refused, nothing created, the remote untouched.
    cli.fails(&repo, &["create", "app", "My_App"], "My_App");
    cli.fails(&repo, &["apps:create", "-n", "www"], "reserved");
    cli.fails(&repo, &["create", "-n", "e2e-app"], "already taken");
    assert_eq!(cli.apps_json(&repo), vec!["e2e-app"]);
    assert_eq!(
        git(&repo, &home, &["remote", "get-url", "gigalixir"]),
        remote_url
    );

    // Listing and info, the app read from the git remote.
    let table = cli.ok(&repo, &["apps"]);
    assert!(
        table.starts_with("NAME") && table.contains("e2e-app"),
        "{table}"
    );
    let out = cli.ok(&repo, &["apps:info"]);
    assert!(
        out.contains("e2e-app") && out.contains(&remote_url),
        "{out}"
    );
    let out = cli.ok(&outside, &["apps:info", "-a", "e2e-app", "--json"]);
    let info: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(info["unique_name"], "e2e-app");
    cli.fails(&outside, &["apps:info"], "no app given");
    cli.fails(
        &outside,
        &["apps:info", "-a", "nope-app"],
        "no app named `nope-app`",
    );

    // Releases: none before the first push, for the app of the git remote or of -a.
    let out = cli.ok(&repo, &["releases"]);
    assert!(out.contains("No releases yet"), "{out}");
    let out = cli.ok(&outside, &["releases", "-a", "e2e-app", "--json"]);
    let releases: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(releases, serde_json::json!([]));
    cli.fails(
        &outside,
        &["releases", "-a", "nope-app"],
        "no app named `nope-app`",
    );

    // A malformed netrc is refused and left exactly as it was.
    let good = cli.netrc();
    let bad = format!("{good}\nmachine\n");
    fs::write(&netrc_path, &bad).expect("write a bad netrc");
    let err = cli.fails(
        &home,
        &["login", "-e", EMAIL, "-p", PASSWORD, "-y"],
        "malformed",
    );
    assert!(err.contains("nothing was changed"), "{err}");
    cli.fails(&home, &["logout"], "malformed");
    cli.fails(&home, &["apps"], "malformed");
    assert_eq!(fs::read_to_string(&netrc_path).expect("read"), bad);
    fs::write(&netrc_path, &good).expect("restore the netrc");

    // A restart keeps users, keys and apps.
    platform.interrupt();
    let platform = Platform::start(&data, port, &log);
    assert_eq!(cli.apps_json(&repo), vec!["e2e-app"]);
    assert_eq!(cli.netrc(), good, "the saved key still works");

    // Destroying needs a confirmation.
    cli.fails(&repo, &["apps:destroy"], "-y");
    assert_eq!(cli.apps_json(&repo), vec!["e2e-app"]);
    let out = cli.ok(&repo, &["apps:destroy", "-y"]);
    assert!(out.contains("Destroyed app e2e-app"), "{out}");
    assert!(cli.apps_json(&repo).is_empty());
    cli.fails(&repo, &["apps:destroy", "-y"], "no app named `e2e-app`");

    // Resetting the key revokes the old one everywhere.
    cli.fails(
        &home,
        &["account:api_key:reset", "-p", "another-password", "-y"],
        "wrong password",
    );
    cli.ok(&home, &["account"]);
    cli.ok(&home, &["account:api_key:reset", "-p", PASSWORD, "-y"]);
    let new_key = key_of(&cli.netrc());
    assert_ne!(new_key, key);
    cli.ok(&home, &["account"]);
    fs::write(&netrc_path, &good).expect("put the old key back");
    cli.fails(&home, &["account"], "your API key was not accepted");

    // Logout removes our entry and nothing else.
    cli.ok(&home, &["logout"]);
    assert_eq!(cli.netrc(), ORIGINAL_NETRC);
    #[cfg(unix)]
    assert_eq!(mode(&netrc_path), 0o600);
    cli.fails(&home, &["apps"], "not logged in");
    let out = cli.ok(&home, &["logout"]);
    assert!(out.contains("Not logged in"), "{out}");
    assert_eq!(cli.netrc(), ORIGINAL_NETRC);

    drop(platform);
}

#[test]
fn a_platform_that_is_not_running_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cli = Cli {
        home: tmp.path().to_owned(),
        api: format!("http://localhost:{}", free_port()),
    };
    fs::write(
        tmp.path().join(".netrc"),
        "machine localhost login a@b.co password k\n",
    )
    .expect("write netrc");
    let err = cli.fails(
        tmp.path(),
        &["apps"],
        "cannot reach the platform at http://localhost:",
    );
    assert!(err.contains("is it running?"), "{err}");
}
