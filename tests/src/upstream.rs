//! Servers the platform fetches from in tests, on loopback: a real, signed Hex repository
//! built from the tests' own packages (`tests/fixtures/hex_packages`, by
//! `tests/support/build-hex-repo`), and plain directories (git's dumb HTTP, tool binaries).
//! Each is Python's `http.server`, whose request log tells what the platform fetched.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, texts};

/// A directory served over HTTP on 127.0.0.1, with a log of the requests.
pub struct StaticServer {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    root: PathBuf,
    log: PathBuf,
    _logs: tempfile::TempDir,
}

impl StaticServer {
    /// Serves `root` on a free port.
    pub fn start(root: &Path) -> Self {
        let logs = tempfile::tempdir().expect("log dir");
        let mut server = Self {
            child: None,
            port: free_port(),
            root: root.to_path_buf(),
            log: logs.path().join("requests.log"),
            _logs: logs,
        };
        server.resume();
        server
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops answering (connections are refused).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Answers again, on the same port.
    pub fn resume(&mut self) {
        assert!(
            Command::new("python3").arg("--version").output().is_ok(),
            "python3 is missing (scripts/test installs it)"
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(self.port.to_string())
            .arg("--directory")
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start python3 -m http.server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the test server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many requests for exactly `path` it has answered.
    pub fn requests(&self, path: &str) -> usize {
        let needle = format!("\"GET {path} HTTP");
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }

    /// Every request line it has logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn support(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("support")
        .join(script)
}

/// The tests' own Hex repository, served as the platform's upstream.
pub struct HexUpstream {
    /// Where it is built: `public/` is served, `private_key.pem` signs it.
    pub dir: tempfile::TempDir,
    /// The server.
    pub server: StaticServer,
}

impl HexUpstream {
    /// Builds the repository from `tests/fixtures/hex_packages` and serves it.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("repo dir");
        build(dir.path(), None);
        let server = StaticServer::start(&dir.path().join("public"));
        Self { dir, server }
    }

    /// The PEM public key the repository is signed with.
    pub fn public_key(&self) -> PathBuf {
        self.dir.path().join("public/public_key")
    }

    /// Rebuilds the repository from `sources` (same key): e.g. with a package altered.
    pub fn rebuild_from(&self, sources: &Path) {
        build(self.dir.path(), Some(sources));
    }

    /// The platform's flags for it as the upstream (registry records expire after 1 s).
    pub fn platform_flags(&self) -> Vec<String> {
        vec![
            "--hex-upstream".into(),
            self.server.url(),
            "--hex-upstream-key".into(),
            self.public_key().display().to_string(),
            "--hex-registry-ttl".into(),
            "1".into(),
        ]
    }

    /// Writes `app/mix.lock` by resolving the app's dependencies against the repository.
    pub fn resolve_lock(&self, app: &Path) {
        let out = Command::new(support("resolve-hex-lock"))
            .arg(app)
            .arg(self.server.url())
            .arg(self.public_key())
            .stdin(Stdio::null())
            .output()
            .expect("run tests/support/resolve-hex-lock");
        let (o, e) = texts(&out);
        assert!(out.status.success(), "resolve-hex-lock failed:\n{o}\n{e}");
    }

    /// How many times the upstream served the tarball of `name`-`version`.
    pub fn tarball_requests(&self, release: &str) -> usize {
        self.server.requests(&format!("/tarballs/{release}.tar"))
    }
}

fn build(dir: &Path, sources: Option<&Path>) {
    let mut cmd = Command::new(support("build-hex-repo"));
    cmd.arg(dir).stdin(Stdio::null());
    if let Some(sources) = sources {
        cmd.env("HEX_SOURCES", sources);
    }
    let out = cmd.output().expect("run tests/support/build-hex-repo");
    let (o, e) = texts(&out);
    assert!(out.status.success(), "build-hex-repo failed:\n{o}\n{e}");
}

/// Publishes the repository at `work` as `root/NAME.git` for git's dumb HTTP protocol (a
/// bare copy with its `info/refs`), to be served by a [`StaticServer`] on `root`.
pub fn publish_git(work: &Path, root: &Path, name: &str) {
    let bare = root.join(format!("{name}.git"));
    let _ = std::fs::remove_dir_all(&bare);
    for args in [
        vec![
            "clone".to_owned(),
            "-q".into(),
            "--bare".into(),
            work.display().to_string(),
            bare.display().to_string(),
        ],
        vec![
            "-C".into(),
            bare.display().to_string(),
            "update-server-info".into(),
        ],
    ] {
        let out = Command::new("git")
            .args(&args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdin(Stdio::null())
            .output()
            .expect("run git");
        let (o, e) = texts(&out);
        assert!(out.status.success(), "git {args:?}: {o}{e}");
    }
}
