//! Let's Encrypt's test ACME server, Pebble, with its mock DNS server (both from Debian's
//! `pebble` package; `.ci/run` installs it): every name resolves to 127.0.0.1, so Pebble
//! validates HTTP-01 challenges against the platform's HTTP port on loopback. Its listener's
//! certificate is made here with openssl. Stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// Pebble and its challenge DNS server.
pub struct Pebble {
    dir: tempfile::TempDir,
    running: Vec<Child>,
    /// Pebble's ACME port on 127.0.0.1.
    pub port: u16,
    management: u16,
    dns_management: u16,
}

impl Pebble {
    /// Makes Pebble's listener certificate and picks its ports; [`run`](Self::run) starts it
    /// once the platform's HTTP port is known.
    pub fn prepare() -> Self {
        for tool in ["pebble", "pebble-challtestsrv", "openssl"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .output()
                    .is_ok_and(|o| o.status.success()),
                "{tool} is not installed: `apt-get install pebble openssl` (.ci/run does)"
            );
        }
        let dir = tempfile::tempdir().expect("pebble dir");
        let d = dir.path();
        crate::local_certificate(d, "pebble test CA");
        Self {
            dir,
            running: Vec::new(),
            port: free_port(),
            management: free_port(),
            dns_management: free_port(),
        }
    }

    /// The ACME directory URL (the platform's `--acme-directory`).
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// Starts Pebble, validating challenges on `http_port`, issuing certificates valid for
    /// `validity` seconds.
    pub fn run(&mut self, http_port: u16, validity: u64) {
        let d = self.dir.path().to_owned();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{}", self.port),
                "managementListenAddress": format!("127.0.0.1:{}", self.management),
                "certificate": d.join("cert.pem"),
                "privateKey": d.join("key.pem"),
                "httpPort": http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": validity,
            }
        });
        std::fs::write(d.join("pebble.json"), config.to_string()).expect("config");
        let (dns_port, dns_management) = (free_port(), self.dns_management);
        let log = |name: &str| std::fs::File::create(d.join(name)).expect("log");
        let dns = Command::new("pebble-challtestsrv")
            .args([
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{dns_management}"),
            ])
            .stdin(Stdio::null())
            .stdout(log("dns.log"))
            .stderr(log("dns.err"))
            .spawn()
            .expect("start pebble-challtestsrv");
        self.running.push(dns);
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(d.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdin(Stdio::null())
            .stdout(log("pebble.log"))
            .stderr(log("pebble.err"))
            .spawn()
            .expect("start pebble");
        self.running.push(pebble);
        let started = Instant::now();
        while self.get(&self.directory()).is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "pebble did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What Pebble logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// GET `url` trusting Pebble's listener certificate; the body, if it answered 200.
    fn get(&self, url: &str) -> Option<String> {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5", "--cacert"])
            .arg(self.listener_ca())
            .arg(url)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Makes the challenge DNS server answer SERVFAIL for `host` (`failing`), or answer it
    /// again: Pebble's validation of that name then fails with a DNS problem.
    pub fn dns_fails(&self, host: &str, failing: bool) {
        let action = if failing {
            "set-servfail"
        } else {
            "clear-servfail"
        };
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5", "-d"])
            .arg(serde_json::json!({ "host": host }).to_string())
            .arg(format!("http://127.0.0.1:{}/{action}", self.dns_management))
            .output()
            .expect("run curl");
        assert!(
            out.status.success(),
            "challtestsrv {action} {host}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The CA that signed Pebble's own listener certificate (the platform's
    /// `--acme-ca-file`).
    pub fn listener_ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The root of the certificates Pebble issues (from its management API), in a file.
    pub fn issuing_root(&self) -> PathBuf {
        let pem = self
            .get(&format!("https://127.0.0.1:{}/roots/0", self.management))
            .expect("pebble's root");
        let path = self.dir.path().join("issuing-root.pem");
        std::fs::write(&path, pem).expect("root");
        path
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
