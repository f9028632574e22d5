//! The function binaries as production runs them, beside a one-process platform on the
//! same data: each opens its ports from the same URLs (`shared::backends`).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use gigalixir_tests::{binary, free_port, require_images, wait_for, Platform};

/// `gigalixir-api` on its own port, over the platform's store, bus, blobs and Docker
/// runtime (its instance); stopped when dropped.
struct ApiBinary {
    child: Child,
    url: String,
}

impl ApiBinary {
    fn start(p: &Platform) -> Self {
        let port = free_port();
        let data = p.data_dir();
        let child = Command::new(binary("gigalixir-api"))
            .env("PORT", port.to_string())
            .envs(gigalixir_tests::embedded_backends(&data))
            .env(
                "GIGALIXIR_RUNTIME",
                format!("docker://?instance={}", p.instance),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gigalixir-api");
        let url = format!("http://localhost:{port}");
        wait_for("gigalixir-api to listen", Duration::from_secs(30), || {
            reqwest::blocking::get(format!("http://127.0.0.1:{port}/healthz"))
                .is_ok_and(|r| r.status().is_success())
        });
        Self { child, url }
    }
}

impl Drop for ApiBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_api_binary_sees_the_apps_where_they_run() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("env_probe", "prod", work.path());
    let out = p.git_ok(&repo, &["push", "gigalixir", "master"]);
    assert!(out.contains("Deployed v1"), "{out}");
    let (status, _) = p.get_app(&app, "/");
    assert_eq!(status, 200);

    let api = ApiBinary::start(&p);
    let cli = |args: &[&str]| {
        let out = p
            .cli_command(&repo, args)
            .env("GIGALIXIR_API_URL", &api.url)
            .output()
            .expect("run gigalixir");
        let (stdout, stderr) = gigalixir_tests::texts(&out);
        assert!(out.status.success(), "gigalixir {args:?}: {stdout}{stderr}");
        stdout
    };
    // `ps`: the replica the platform runs, as the platform's own API tells it.
    let ps = cli(&["ps"]);
    assert!(ps.contains("running"), "{ps}");
    let ours = p.cli_ok(&repo, &["ps"]);
    let names = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("running"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect()
    };
    assert_eq!(names(&ps), names(&ours), "{ps}\n{ours}");
    // `logs`: the app's own output.
    let logs = cli(&["logs", "-n", "20", "--no_tail"]);
    assert!(logs.contains("env_probe: GET"), "{logs}");
}
