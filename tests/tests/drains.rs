//! Log drains on a real platform, to real receivers: an HTTPS server taking logplex POSTs
//! and a syslog-over-TLS server (Python, with a certificate of a CA made here that the
//! platform is told to trust). An app prints numbered lines; both receivers go down for 10
//! seconds; every line arrives once, in order, after they come back. Build, deploy and
//! router lines arrive too; URLs to private places are refused; another account reaches
//! none of it. The receivers are `scripts/drain-receiver.py` (also the benchmark's).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gigalixir_tests::{free_port, require_images, texts, wait_for, Account, Platform};

struct Receiver {
    mode: &'static str,
    port: u16,
    out: std::path::PathBuf,
    child: Option<Child>,
}

impl Receiver {
    fn start(dir: &Path, mode: &'static str, port: u16) -> Self {
        let mut r = Self {
            mode,
            port,
            out: dir.join(format!("{mode}.log")),
            child: None,
        };
        r.up(dir);
        r
    }

    fn up(&mut self, dir: &Path) {
        let mut child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/drain-receiver.py"))
            .args([self.mode, &self.port.to_string()])
            .arg(dir.join("cert.pem"))
            .arg(dir.join("key.pem"))
            .arg(&self.out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("ready");
        assert_eq!(line.trim(), "ready");
        self.child = Some(child);
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The messages received, without the receiver's time before each.
    fn messages(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(_, m)| m.to_owned()))
            .collect()
    }

    /// The tick numbers printed by `proc`, in arrival order.
    fn ticks(&self, proc: &str) -> Vec<u64> {
        self.messages()
            .iter()
            .filter(|m| m.contains(&format!(" app {proc} - - tick ")))
            .filter_map(|m| m.rsplit("tick ").next()?.trim().parse().ok())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

/// Each number once, one after the other.
fn consecutive(ticks: &[u64]) -> bool {
    ticks.windows(2).all(|w| w[1] == w[0] + 1)
}

#[test]
fn drains_get_every_line_once_in_order_across_a_receiver_outage() {
    require_images();
    let work = tempfile::tempdir().expect("work");
    let dir = work.path();
    gigalixir_tests::local_certificate(dir, "drains test CA");
    let mut https = Receiver::start(dir, "https", free_port());
    let mut syslog = Receiver::start(dir, "syslog", free_port());
    let ca = dir.join("ca.pem");
    let p = Platform::start_with(&[
        "--drains-allow-loopback",
        "--drain-ca-file",
        ca.to_str().expect("path"),
    ]);
    p.sign_up_and_log_in();
    // The app prints a numbered line every 50 ms.
    let (repo, app) = p.new_app("hello", "drain", dir);
    let application = repo.join("lib/hello/application.ex");
    let code = std::fs::read_to_string(&application).expect("application.ex");
    let code = code.replacen(
        "def start(_type, _args) do",
        "def start(_type, _args) do\n    spawn(fn -> Enum.each(1..1_000_000, fn i -> IO.puts(\"tick #{i}\"); Process.sleep(50) end) end)",
        1,
    );
    assert!(
        code.contains("tick"),
        "application.ex changed shape:\n{code}"
    );
    std::fs::write(&application, code).expect("write");
    p.commit_all(&repo, "ticks");
    let out = p.git_ok(&repo, &["push", "gigalixir", "master"]);
    assert!(out.contains("Deployed v1"), "{out}");

    // Private places are refused, with a reason.
    for (url, says) in [
        ("http://127.0.0.1:9/", "https://"),
        ("https://169.254.169.254/latest", "link-local"),
        ("https://10.1.2.3/", "private"),
        ("syslog+tls://127.0.0.1", "needs a port"),
    ] {
        let out = p.cli(&repo, &["drains:add", url]);
        assert!(
            !out.status.success() && texts(&out).1.contains(says),
            "{url}: {:?}",
            texts(&out)
        );
    }
    p.cli_ok(
        &repo,
        &[
            "drains:add",
            &format!("https://127.0.0.1:{}/logs", https.port),
        ],
    );
    p.cli_ok(
        &repo,
        &[
            "drains:add",
            &format!("syslog+tls://localhost:{}", syslog.port),
        ],
    );
    let listed = p.cli_ok(&repo, &["drains"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");

    let started = wait_for("ticks at both receivers", Duration::from_secs(30), || {
        https.ticks("web.1").len() >= 10 && syslog.ticks("web.1").len() >= 10
    });
    eprintln!(
        "figure: drain added to first lines at both receivers: {} ms",
        started.as_millis()
    );
    // The router's line of a request.
    let (status, _) = p.get_app(&app, "/?from=drains-test");
    assert_eq!(status, 200);
    wait_for("the router's line", Duration::from_secs(15), || {
        https.messages().iter().any(|m| {
            m.contains(" gigalixir router - - at=info method=GET path=\"/\"")
                && m.contains("status=200")
        })
    });

    // Both receivers down for 10 s, then back on the same ports.
    let before = (https.ticks("web.1").len(), syslog.ticks("web.1").len());
    https.down();
    syslog.down();
    std::thread::sleep(Duration::from_secs(10));
    https.up(dir);
    syslog.up(dir);
    let last_before_outage = *https.ticks("web.1").last().expect("ticks");
    // At 20 a second, 10 s of ticks and more: caught up once well past the outage.
    let caught_up = wait_for("the receivers to catch up", Duration::from_secs(60), || {
        let target = last_before_outage + 300;
        https.ticks("web.1").last().is_some_and(|t| *t > target)
            && syslog.ticks("web.1").last().is_some_and(|t| *t > target)
    });
    eprintln!(
        "figure: caught up {} ms after the receivers came back (lines before the outage: {before:?})",
        caught_up.as_millis()
    );
    for r in [&https, &syslog] {
        let ticks = r.ticks("web.1");
        assert!(
            consecutive(&ticks),
            "{}: lines lost, repeated or out of order: {:?}",
            r.mode,
            ticks
                .windows(2)
                .filter(|w| w[1] != w[0] + 1)
                .collect::<Vec<_>>()
        );
        eprintln!(
            "figure: {} received ticks {}..={} ({} lines, none lost)",
            r.mode,
            ticks[0],
            ticks[ticks.len() - 1],
            ticks.len()
        );
    }

    // A push: its build and deploy lines go to the drains too.
    std::fs::write(repo.join("README.md"), "changed\n").expect("write");
    p.commit_all(&repo, "again");
    let out = p.git_ok(&repo, &["push", "gigalixir", "master"]);
    assert!(out.contains("Deployed v2"), "{out}");
    wait_for("the build's lines", Duration::from_secs(30), || {
        let all = syslog.messages();
        all.iter().any(|m| m.contains(" gigalixir build - - "))
            && all.iter().any(|m| m.contains("v2"))
    });

    // Another account sees none of it.
    let bob = Account::sign_up(&p, "bob@example.com");
    let out = p
        .cli_command_as(bob.home.path(), dir, &["drains", "-a", &app])
        .output()
        .expect("gigalixir");
    assert!(!out.status.success(), "{:?}", texts(&out));
    assert!(!texts(&out).0.contains("127.0.0.1"), "{:?}", texts(&out));

    // Removed: nothing more arrives there.
    let id = listed
        .lines()
        .find(|l| l.contains("syslog+tls"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the syslog drain's id")
        .to_owned();
    p.cli_ok(&repo, &["drains:remove", &id]);
    // (Drains are read again every 5 s.)
    std::thread::sleep(Duration::from_secs(7));
    let after = syslog.messages().len();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        syslog.messages().len(),
        after,
        "lines still arrive at a removed drain"
    );
    assert!(!p.cli_ok(&repo, &["drains"]).contains(&id));
}
