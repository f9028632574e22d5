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
    /// A platform that confirms new accounts' emails (its mail goes to DATA_DIR/outbox).
    fn start(data_dir: &Path, port: u16, log: &Path) -> Self {
        Self::start_with(data_dir, port, log, &[])
    }

    fn start_with(data_dir: &Path, port: u16, log: &Path, extra: &[&str]) -> Self {
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
            .args(extra)
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

/// The platform's mail, as `.eml` files in DATA_DIR/outbox; remembers what it has read.
struct Outbox {
    dir: PathBuf,
    seen: std::collections::HashSet<PathBuf>,
}

impl Outbox {
    fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("outbox"),
            seen: std::collections::HashSet::new(),
        }
    }

    /// The one mail written since the last call, decoded; it must be to `to`.
    fn next_to(&mut self, to: &str) -> String {
        let mut new: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        new.retain(|p| !self.seen.contains(p));
        assert_eq!(new.len(), 1, "one new mail in {}", self.dir.display());
        let path = new.remove(0);
        self.seen.insert(path.clone());
        let raw = fs::read_to_string(&path).expect("read the mail");
        let text = quoted_printable(&raw);
        assert!(
            text.lines()
                .any(|l| l.eq_ignore_ascii_case(&format!("To: {to}"))),
            "the mail should be to {to}:\n{text}"
        );
        text
    }
}

/// Quoted-printable decoded (soft line breaks and `=XX`), which is how the mail comes.
fn quoted_printable(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).replace("\r\n", "\n")
}

/// The token a mail gives for the CLI (`--token ID.TOKEN`).
fn token_in(mail: &str) -> String {
    let start = mail
        .find("--token ")
        .unwrap_or_else(|| panic!("no --token in the mail:\n{mail}"))
        + "--token ".len();
    mail[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect()
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
    let mut outbox = Outbox::new(&data);
    let out = cli.ok(&home, &["create", "user", "-e", EMAIL, "-p", PASSWORD]);
    assert!(
        out.contains(EMAIL)
            && out.contains("gigalixir account:confirm --token TOKEN")
            && out.contains("gigalixir login"),
        "{out}"
    );
    cli.fails(
        &home,
        &["signup", "-e", EMAIL, "-p", "another-password"],
        "already exists",
    );

    // The email is confirmed before the first login, with the token from the mail.
    cli.fails(
        &home,
        &["login", "-e", EMAIL, "-p", PASSWORD, "-y"],
        "confirm your email first",
    );
    let first = token_in(&outbox.next_to(EMAIL));
    let out = cli.ok(&home, &["account:confirmation:resend", "-e", EMAIL]);
    assert!(out.contains("account:confirm"), "{out}");
    let token = token_in(&outbox.next_to(EMAIL));
    assert_ne!(token, first, "a new mail, a new token");
    cli.fails(
        &home,
        &["account:confirm", "--token", &first],
        "invalid, already used or expired",
    );
    cli.fails(&home, &["account:confirm"], "--token");
    let out = cli.ok(&home, &["account:confirm", "--token", &token]);
    assert!(out.contains("is confirmed"), "{out}");
    cli.fails(
        &home,
        &["account:confirm", "--token", &token],
        "already used",
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

/// SHA-1 (FIPS 180-4), for the TOTP codes below: the test's own, so that it needs no
/// crate the CLI does not.
fn sha1(message: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut padded = message.to_vec();
    padded.push(0x80);
    while padded.len() % 64 != 56 {
        padded.push(0);
    }
    padded.extend_from_slice(&((message.len() as u64) * 8).to_be_bytes());
    for block in padded.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..20].copy_from_slice(&sha1(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = block
        .iter()
        .map(|b| b ^ 0x36)
        .chain(message.iter().copied())
        .collect();
    let outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).chain(sha1(&inner)).collect();
    sha1(&outer)
}

/// RFC 4648 base32 without padding, as authenticator apps take secrets.
fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut count, mut out) = (0u64, 0u32, Vec::new());
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c.to_ascii_uppercase())
            .expect("a base32 secret") as u64;
        bits = (bits << 5) | v;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

/// The RFC 6238 code (SHA-1, 6 digits, 30 s) of `secret` at the current time step.
fn totp_now(secret: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let mac = hmac_sha1(&base32_decode(secret), &(now / 30).to_be_bytes());
    let offset = usize::from(mac[19] & 0x0f);
    let value = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    format!("{:06}", value % 1_000_000)
}

#[test]
fn the_test_totp_matches_rfc_6238() {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    assert_eq!(
        hex(&sha1(b"abc")),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    assert_eq!(
        hex(&hmac_sha1(
            b"key",
            b"The quick brown fox jumps over the lazy dog"
        )),
        "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9"
    );
    assert_eq!(base32_decode("MZXW6YTBOI"), b"foobar");
    // RFC 6238's first SHA-1 vector: T = 59 s, 8 digits 94287082, so 6 digits 287082.
    let mac = hmac_sha1(b"12345678901234567890", &1u64.to_be_bytes());
    let offset = usize::from(mac[19] & 0x0f);
    let value = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    assert_eq!(value % 100_000_000, 94_287_082);
}

/// The value after `label` on a line of `text` (`Secret: ABC` → `ABC`).
fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{text}"))
}

/// The lines that look like recovery codes (`xxxx-xxxx-xxxx`).
fn recovery_codes(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            l.len() == 14
                && l.split('-').count() == 3
                && l.split('-')
                    .all(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn passwords_mfa_access_and_account_destruction_against_a_real_platform() {
    const BOB: &str = "bob@example.com";
    const BOB_PASSWORD: &str = "bobs-password";
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    let bob_home = tmp.path().join("bob");
    let data = tmp.path().join("data");
    for dir in [&home, &bob_home, &data] {
        fs::create_dir_all(dir).expect("mkdir");
    }
    let log = tmp.path().join("platform.log");
    let port = free_port();
    let platform = Platform::start_with(&data, port, &log, &["--no-email-confirmation"]);
    let api = format!("http://localhost:{port}");
    let cli = Cli {
        home: home.clone(),
        api: api.clone(),
    };
    let bob = Cli {
        home: bob_home.clone(),
        api,
    };
    let mut outbox = Outbox::new(&data);

    // Without email confirmation, sign-up says nothing of it and login works at once.
    let out = cli.ok(&home, &["signup", "-e", EMAIL, "-p", PASSWORD]);
    assert!(
        out.contains("Created account") && !out.contains("account:confirm"),
        "{out}"
    );
    cli.ok(&home, &["login", "-e", EMAIL, "-p", PASSWORD, "-y"]);
    bob.ok(&bob_home, &["signup", "-e", BOB, "-p", BOB_PASSWORD]);
    bob.ok(&bob_home, &["login", "-e", BOB, "-p", BOB_PASSWORD, "-y"]);

    // A forgotten password: a token by mail, then a new password with it (both forms).
    let out = cli.ok(&home, &["account:password:reset", "-e", EMAIL]);
    assert!(out.contains("account:password:set"), "{out}");
    let token = token_in(&outbox.next_to(EMAIL));
    cli.fails(
        &home,
        &["account:password:set", "-t", &token, "-p", "short"],
        "at least 8 characters",
    );
    cli.fails(
        &home,
        &["account:password:reset", "--token", &token],
        "-p PASSWORD",
    );
    let out = cli.ok(
        &home,
        &[
            "account:password:reset",
            "--token",
            &token,
            "--password",
            "second-password",
        ],
    );
    assert!(out.contains("Password set"), "{out}");
    cli.fails(
        &home,
        &["account:password:set", "-t", &token, "-p", "third-password"],
        "invalid, already used or expired",
    );
    cli.fails(&home, &["account"], "your API key was not accepted");
    cli.ok(
        &home,
        &["login", "-e", EMAIL, "-p", "second-password", "-y"],
    );

    // Changing it keeps this machine's key.
    cli.fails(
        &home,
        &[
            "account:password:change",
            "-p",
            "wrong-password",
            "-n",
            PASSWORD,
        ],
        "wrong current password",
    );
    let out = cli.ok(
        &home,
        &[
            "account:password:change",
            "--current_password",
            "second-password",
            "--new_password",
            PASSWORD,
        ],
    );
    assert!(out.contains("Password changed"), "{out}");
    cli.ok(&home, &["account"]);

    // A new email counts once it is confirmed; then the old login no longer works.
    cli.fails(
        &home,
        &["account:email:set", "-e", BOB, "-p", PASSWORD],
        "another account has the email",
    );
    cli.fails(
        &home,
        &[
            "account:email:set",
            "-e",
            "dev2@example.com",
            "-p",
            "wrong-password",
        ],
        "wrong password",
    );
    let out = cli.ok(
        &home,
        &[
            "account:email:set",
            "-e",
            "dev2@example.com",
            "-p",
            PASSWORD,
        ],
    );
    assert!(out.contains("gigalixir login -e dev2@example.com"), "{out}");
    let out = cli.ok(&home, &["account"]);
    assert!(
        out.contains(EMAIL),
        "the email stays until confirmed: {out}"
    );
    let token = token_in(&outbox.next_to("dev2@example.com"));
    let out = cli.ok(&home, &["account:confirm", "--token", &token]);
    assert!(out.contains("dev2@example.com"), "{out}");
    cli.fails(&home, &["account"], "your API key was not accepted");
    cli.ok(
        &home,
        &["login", "-e", "dev2@example.com", "-p", PASSWORD, "-y"],
    );
    let email = "dev2@example.com";

    // Multi-factor authentication, without a terminal: the secret first, then the code.
    cli.fails(
        &home,
        &["account:mfa:recovery_codes:regenerate", "-y"],
        "not active",
    );
    cli.fails(
        &home,
        &["account:mfa:activate", "-t", "123456"],
        "no secret waiting",
    );
    let out = cli.ok(&home, &["account:mfa:activate"]);
    assert!(out.contains("otpauth://totp/"), "{out}");
    assert!(out.contains("account:mfa:activate -t CODE"), "{out}");
    let secret = field(&out, "Secret:").to_owned();
    cli.fails(
        &home,
        &["account:mfa:activate", "-t", "00000x"],
        "not the code your authenticator app shows",
    );
    let out = cli.ok(&home, &["account:mfa:activate", "-t", &totp_now(&secret)]);
    let codes = recovery_codes(&out);
    assert_eq!(codes.len(), 10, "{out}");
    let out = cli.ok(&home, &["account"]);
    assert!(out.contains("mfa:      active"), "{out}");

    // Login now needs a second factor: -t, as there is no terminal to ask on.
    cli.fails(
        &home,
        &["login", "-e", email, "-p", PASSWORD, "-y"],
        "pass -t TOKEN",
    );
    cli.fails(
        &home,
        &["login", "-e", email, "-p", PASSWORD, "-t", "nonsense", "-y"],
        "wrong email, password or multi-factor authentication token",
    );
    cli.ok(
        &home,
        &[
            "login",
            "-e",
            email,
            "-p",
            PASSWORD,
            "--mfa_token",
            &codes[0],
            "-y",
        ],
    );
    cli.fails(
        &home,
        &["login", "-e", email, "-p", PASSWORD, "-t", &codes[0], "-y"],
        "multi-factor",
    );
    cli.fails(&home, &["account:mfa:recovery_codes:regenerate"], "pass -y");
    let out = cli.ok(&home, &["account:mfa:recovery_codes:regenerate", "-y"]);
    let new_codes = recovery_codes(&out);
    assert_eq!(new_codes.len(), 10, "{out}");
    cli.fails(
        &home,
        &["login", "-e", email, "-p", PASSWORD, "-t", &codes[1], "-y"],
        "multi-factor",
    );
    cli.ok(
        &home,
        &[
            "login",
            "-e",
            email,
            "-p",
            PASSWORD,
            "-t",
            &new_codes[0],
            "-y",
        ],
    );
    cli.fails(&home, &["account:mfa:deactivate"], "pass -y");
    let out = cli.ok(&home, &["account:mfa:deactivate", "-y"]);
    assert!(out.contains("deactivated"), "{out}");
    cli.ok(&home, &["login", "-e", email, "-p", PASSWORD, "-y"]);

    // Access: the owner gives and takes it; a viewer may look, not change.
    cli.ok(&home, &["create", "app", "team-app"]);
    let out = cli.ok(&home, &["access", "-a", "team-app"]);
    assert_eq!(out, format!("EMAIL             ROLE\n{email}  OWNER\n"));
    cli.fails(
        &home,
        &["access:add", "-a", "team-app", "nobody@example.com"],
        "has no account here",
    );
    cli.fails(
        &home,
        &["access:add", "-a", "team-app", email],
        "owns team-app",
    );
    let out = cli.ok(&home, &["access:add", "-a", "team-app", BOB]);
    assert!(out.contains("as a collaborator"), "{out}");
    let out = cli.ok(
        &home,
        &["access:add", "-a", "team-app", BOB, "--role", "viewer"],
    );
    assert!(out.contains("as a viewer"), "{out}");
    let out = bob.ok(&bob_home, &["access", "-a", "team-app", "--json"]);
    let people: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(
        people,
        serde_json::json!([
            {"email": email, "role": "OWNER"},
            {"email": BOB, "role": "VIEWER"},
        ])
    );
    bob.fails(
        &bob_home,
        &["access:add", "-a", "team-app", "x@example.com"],
        "only its owner may",
    );
    bob.fails(
        &bob_home,
        &["apps:transfer", "-a", "team-app", BOB, "-y"],
        "only its owner may",
    );
    cli.ok(&home, &["access:remove", "-a", "team-app", BOB]);
    cli.fails(
        &home,
        &["access:remove", "-a", "team-app", BOB],
        "has no access",
    );
    bob.fails(&bob_home, &["access", "-a", "team-app"], "no app named");

    // The app's activity, newest first.
    let out = cli.ok(&home, &["apps:activity", "-a", "team-app"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("WHEN") && lines[0].contains("DETAIL"),
        "{out}"
    );
    assert!(
        lines[1].contains("access:remove") && lines[1].contains(BOB),
        "{out}"
    );
    let out = cli.ok(&home, &["apps:activity", "-a", "team-app", "--json"]);
    let entries: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(entries[0]["action"], "access:remove");
    assert_eq!(entries[0]["actor"], email);

    // A transfer needs a confirmation; the old owner stays on as a collaborator.
    cli.fails(&home, &["apps:transfer", "-a", "team-app", BOB], "pass -y");
    cli.fails(
        &home,
        &["apps:transfer", "-a", "team-app", email, "-y"],
        "already owns team-app",
    );
    let out = cli.ok(&home, &["apps:transfer", "-a", "team-app", BOB, "-y"]);
    assert!(
        out.contains(&format!("team-app now belongs to {BOB}")),
        "{out}"
    );
    let out = bob.ok(&bob_home, &["access", "-a", "team-app"]);
    assert!(
        out.contains(&format!("{BOB}   OWNER")) && out.contains(&format!("{email}  COLLABORATOR")),
        "{out}"
    );
    // And back, so that every app has its first owner again.
    bob.ok(&bob_home, &["apps:transfer", "-a", "team-app", email, "-y"]);

    // Destroying an account: only with its email and password, only when confirmed; the
    // saved key goes from netrc.
    bob.fails(
        &bob_home,
        &["account:destroy", "-e", BOB, "-p", BOB_PASSWORD],
        "pass -y",
    );
    bob.fails(
        &bob_home,
        &["account:destroy", "-e", email, "-p", BOB_PASSWORD, "-y"],
        "not the email of the account you are logged in as",
    );
    bob.fails(
        &bob_home,
        &["account:destroy", "-e", BOB, "-p", "wrong-password", "-y"],
        "wrong password",
    );
    assert!(bob.netrc().contains(BOB));
    let out = bob.ok(
        &bob_home,
        &["account:destroy", "-e", BOB, "-p", BOB_PASSWORD, "-y"],
    );
    assert!(
        out.contains(&format!("Destroyed the account {BOB}")) && out.contains("Removed its entry"),
        "{out}"
    );
    assert!(!bob.netrc().contains("localhost"), "{}", bob.netrc());
    bob.fails(&bob_home, &["account"], "not logged in");
    bob.fails(
        &bob_home,
        &["login", "-e", BOB, "-p", BOB_PASSWORD, "-y"],
        "wrong email or password",
    );
    // Someone else's app is not theirs to lose.
    let out = cli.ok(&home, &["access", "-a", "team-app"]);
    assert!(out.contains(&format!("{email}  OWNER")), "{out}");

    let out = cli.ok(
        &home,
        &["account:destroy", "-e", email, "-p", PASSWORD, "-y"],
    );
    assert!(out.contains("every app it owned"), "{out}");
    cli.fails(&home, &["apps"], "not logged in");

    drop(platform);
}
