//! What a running app gets, end to end on real containers: the runner's environment,
//! config vars, scaling into an Erlang cluster, restarts, logs.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use gigalixir_tests::{require_images, ssh_keygen, texts, wait_for, Platform};
use serde_json::Value;

fn env_of(p: &Platform, app: &str) -> Value {
    let (status, body) = p.get_app(app, "/env");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/env is not JSON ({e}): {body}"))
}

fn release_count(p: &Platform, dir: &Path) -> usize {
    let out = p.cli_ok(dir, &["releases", "--json"]);
    serde_json::from_str::<Vec<Value>>(&out)
        .expect("json")
        .len()
}

fn fails_with(p: &Platform, dir: &Path, args: &[&str], needle: &str) {
    let out = p.cli(dir, args);
    let (o, e) = texts(&out);
    assert!(
        !out.status.success(),
        "gigalixir {args:?} should fail:\n{o}{e}"
    );
    assert!(
        e.contains(needle),
        "gigalixir {args:?}: expected `{needle}` in:\n{e}"
    );
}

#[test]
fn a_running_app_gets_its_environment_config_cluster_restart_and_logs() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("env_probe", "probe", work.path());
    let out = p.git_ok(&repo, &["push", "gigalixir", "master"]);
    assert!(out.contains("Deployed v1"), "{out}");
    let sha = p.git_ok(&repo, &["rev-parse", "HEAD"]).trim().to_owned();

    // The runner's environment.
    let env = env_of(&p, &app);
    let s = |k: &str| {
        env[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k} is not set: {env}"))
            .to_owned()
    };
    assert_eq!(s("PORT"), "4000");
    assert_eq!(s("APP_NAME"), app);
    assert_eq!(s("SOURCE_VERSION"), sha);
    assert_eq!(s("HOST_INDEX"), "0");
    assert_eq!(s("RELEASE_DISTRIBUTION"), "name");
    let ip = s("MY_POD_IP");
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "MY_POD_IP {ip}");
    assert_eq!(s("MY_NODE_NAME"), format!("{app}@{ip}"));
    assert_eq!(s("RELEASE_NODE"), format!("{app}@{ip}"));
    assert_eq!(s("LIBCLUSTER_KUBERNETES_NODE_BASENAME"), app);
    assert!(s("LIBCLUSTER_KUBERNETES_SELECTOR").contains(&app));
    let cookie = s("RELEASE_COOKIE");
    assert!(
        cookie.starts_with("sha256:"),
        "secrets are shown hashed by the probe: {cookie}"
    );
    assert_eq!(s("ERLANG_COOKIE"), cookie);
    let secret = s("SECRET_KEY_BASE");
    assert!(secret.starts_with("sha256:"));
    let (_, node) = p.get_app(&app, "/node");
    assert_eq!(node.trim(), format!("{app}@{ip}"));
    // What a generated Phoenix release reads.
    assert_eq!(s("PHX_SERVER"), "true");
    assert_eq!(s("PHX_HOST"), format!("{app}.localhost"));

    // config:set makes one release, and the app sees every pair.
    let before = release_count(&p, &repo);
    let started = Instant::now();
    p.cli_ok(
        &repo,
        &[
            "config:set",
            "A=1",
            "B=two words = fine",
            "UNICODE=héllo ✓",
            "PHX_HOST=shop.example.com",
        ],
    );
    assert_eq!(
        release_count(&p, &repo),
        before + 1,
        "one release per config:set"
    );
    let took = wait_for("the new config", Duration::from_secs(60), || {
        let env = env_of(&p, &app);
        env["A"] == "1" && env["B"] == "two words = fine" && env["UNICODE"] == "héllo ✓"
    });
    eprintln!(
        "figure: config:set to the app answering with it: {} ms",
        (started.elapsed()).as_millis().max(took.as_millis())
    );
    let env = env_of(&p, &app);
    assert_eq!(
        env["RELEASE_COOKIE"],
        cookie.as_str(),
        "the cookie stays across releases"
    );
    assert_eq!(
        env["SECRET_KEY_BASE"],
        secret.as_str(),
        "the secret stays across releases"
    );
    assert_eq!(
        env["PHX_HOST"], "shop.example.com",
        "the app's own PHX_HOST wins"
    );
    assert_eq!(env["PHX_SERVER"], "true");
    let shown = p.cli_ok(&repo, &["config"]);
    assert!(
        shown.contains("A") && shown.contains("two words = fine"),
        "{shown}"
    );

    p.cli_ok(&repo, &["config:unset", "A"]);
    wait_for("A to go", Duration::from_secs(60), || {
        env_of(&p, &app).get("A").is_none()
    });
    assert_eq!(env_of(&p, &app)["B"], "two words = fine");

    // Bad inputs are refused and change nothing.
    let count = release_count(&p, &repo);
    fails_with(&p, &repo, &["config:set", "1BAD=x"], "1BAD");
    fails_with(&p, &repo, &["config:set", "NOEQUALS"], "NOEQUALS");
    let big = format!("BIG={}", "x".repeat(40 * 1024));
    fails_with(&p, &repo, &["config:set", &big], "32 kB");
    fails_with(&p, &repo, &["ps:scale", "-r", "17"], "16");
    fails_with(&p, &repo, &["ps:scale", "-r", "-1"], "0 and 16");
    assert_eq!(release_count(&p, &repo), count);

    // Three replicas form one Erlang cluster on their own.
    let started = Instant::now();
    p.cli_ok(&repo, &["ps:scale", "-r", "3"]);
    let took = wait_for("three clustered replicas", Duration::from_secs(120), || {
        let mut seen = std::collections::BTreeMap::new();
        // The router spreads requests over the replicas; each answer names its node.
        for _ in 0..12 {
            let (_, body) = p.get_app(&app, "/cluster");
            if let Ok(c) = serde_json::from_str::<Value>(&body) {
                let me = c["node"].as_str().unwrap_or_default().to_owned();
                let others: BTreeSet<String> = c["nodes"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|n| n.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                seen.insert(me, others);
            }
        }
        seen.len() == 3
            && seen.iter().all(|(me, others)| {
                others.len() == 2
                    && !others.contains(me)
                    && others.iter().all(|o| seen.contains_key(o))
            })
    });
    eprintln!(
        "figure: ps:scale -r 3 until all three are clustered: {} ms",
        started.elapsed().as_millis().max(took.as_millis())
    );
    let ps = p.cli_ok(&repo, &["ps", "--json"]);
    assert_eq!(ps.matches("\"running\"").count(), 3, "{ps}");
    let indexes: BTreeSet<String> = (0..20)
        .map(|_| {
            env_of(&p, &app)["HOST_INDEX"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        indexes,
        ["0", "1", "2"].map(String::from).into(),
        "each replica has its slot"
    );

    p.cli_ok(&repo, &["ps:scale", "-r", "1"]);
    wait_for("one replica", Duration::from_secs(60), || {
        p.running_containers(&app) == 1
    });

    // A restart keeps the app answering.
    let probe = {
        let (port, app) = (p.port, app.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client");
            let (mut ok, mut failed) = (0, 0);
            let end = Instant::now() + Duration::from_secs(12);
            while Instant::now() < end {
                let r = client
                    .get(format!("http://127.0.0.1:{port}/"))
                    .header("host", format!("{app}.localhost:{port}"))
                    .send();
                match r {
                    Ok(resp) if resp.status().is_success() => ok += 1,
                    _ => failed += 1,
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let old_ip = env_of(&p, &app)["MY_POD_IP"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    p.cli_ok(&repo, &["restart"]);
    let (ok, failed) = probe.join().expect("probe");
    assert!(ok > 0);
    assert_eq!(
        failed, 0,
        "requests failed during the restart ({ok} answered)"
    );
    wait_for("a new replica", Duration::from_secs(60), || {
        env_of(&p, &app)["MY_POD_IP"].as_str() != Some(old_ip.as_str())
    });

    // Config values never reach the platform's log.
    assert!(
        !p.log().contains("two words = fine"),
        "a config value was logged"
    );
    assert!(!p.log().contains("héllo"), "a config value was logged");

    // The app's own output.
    let logs = p.cli_ok(&repo, &["logs", "-n", "20", "--no_tail"]);
    assert!(logs.contains("env_probe: GET"), "{logs}");
}

#[test]
fn ssh_into_replicas_with_the_accounts_keys() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("env_probe", "ssh", work.path());
    let out = p.git_ok(&repo, &["push", "gigalixir", "master"]);
    assert!(out.contains("Deployed v1"), "{out}");

    // Without a key, the CLI says how to add one.
    fails_with(&p, &repo, &["ps:ssh", "echo", "hi"], "ssh_keys:add");
    fails_with(
        &p,
        &repo,
        &["account:ssh_keys:add", "ssh-ed25519 not-base64!"],
        "not valid base64",
    );

    let (first, first_pub) = ssh_keygen(work.path(), "first");
    let (second, second_pub) = ssh_keygen(work.path(), "second");
    p.cli_ok(&repo, &["account:ssh_keys:add", &first_pub]);
    let listed = p.cli_ok(&repo, &["account:ssh_keys"]);
    assert!(listed.contains("SHA256:"), "{listed}");

    let ssh = |key: &Path, args: &[&str]| {
        let mut all = vec!["ps:ssh"];
        all.extend_from_slice(args);
        p.cli_command(&repo, &all)
            .env("GIGALIXIR_IDENTITY_FILE", key)
            .output()
            .expect("ps:ssh")
    };
    let took = wait_for(
        "the key to reach the replica",
        Duration::from_secs(60),
        || String::from_utf8_lossy(&ssh(&first, &["echo", "hi"]).stdout).trim() == "hi",
    );
    eprintln!(
        "figure: ssh key added to first login: {} ms",
        took.as_millis()
    );

    // One-off commands run with the app's environment; the console and migrations work.
    let run = p
        .cli_command(&repo, &["ps:run", "printenv", "APP_NAME"])
        .env("GIGALIXIR_IDENTITY_FILE", &first)
        .output()
        .expect("ps:run");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        app,
        "{:?}",
        texts(&run)
    );
    let mut console = p
        .cli_command(&repo, &["ps:remote_console"])
        .env("GIGALIXIR_IDENTITY_FILE", &first)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ps:remote_console");
    {
        use std::io::Write;
        let mut stdin = console.stdin.take().expect("stdin");
        stdin.write_all(b"IO.puts(1 + 1)\n").expect("write");
    }
    let console = console.wait_with_output().expect("console");
    let (o, e) = texts(&console);
    assert!(
        o.lines().any(|l| l.trim() == "2"),
        "the console evaluated 1+1:\n{o}\n{e}"
    );
    let migrate = p
        .cli_command(&repo, &["ps:migrate"])
        .env("GIGALIXIR_IDENTITY_FILE", &first)
        .output()
        .expect("ps:migrate");
    let (o, e) = texts(&migrate);
    assert!(o.contains("migrated: nothing to do"), "{o}\n{e}");

    // A removed key stops working; the other key keeps working.
    p.cli_ok(&repo, &["account:ssh_keys:add", &second_pub]);
    let keys = p.cli_ok(&repo, &["account:ssh_keys", "--json"]);
    let keys: Vec<Value> = serde_json::from_str(&keys).expect("keys json");
    let first_id = keys
        .iter()
        .find(|k| k["key"].as_str().is_some_and(|s| s.contains("first")))
        .and_then(|k| k["id"].as_str().or_else(|| k["id"].as_i64().map(|_| "")))
        .expect("first key id")
        .to_owned();
    p.cli_ok(&repo, &["account:ssh_keys:remove", &first_id]);
    wait_for(
        "the removed key to be refused",
        Duration::from_secs(60),
        || !ssh(&first, &["echo", "hi"]).status.success(),
    );
    let out = ssh(&second, &["echo", "hi"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "hi",
        "{:?}",
        texts(&out)
    );
}

#[test]
fn a_hot_push_upgrades_the_running_node_in_place() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("env_probe", "hot", work.path());
    let hot = [
        "-c",
        "http.extraheader=GIGALIXIR-HOT: true",
        "push",
        "gigalixir",
        "master",
    ];
    // The first deploy cannot be hot: it says so and deploys normally.
    let out = p.git(&repo, &hot);
    let (o, e) = texts(&out);
    assert!(out.status.success(), "{o}{e}");
    assert!(
        e.contains("Hot upgrade not possible") && e.contains("Deployed v1"),
        "{e}"
    );
    assert_eq!(p.get_app(&app, "/").1, "env_probe v1\n");
    for n in 1..=3 {
        assert_eq!(p.get_app(&app, "/count").1, format!("{n}\n"));
    }
    let before = p.cli_ok(&repo, &["ps", "--json"]);

    let page = repo.join("lib/env_probe/page.ex");
    let text = std::fs::read_to_string(&page).expect("page");
    std::fs::write(&page, text.replace("env_probe v1", "env_probe v2")).expect("write");
    p.git_ok(&repo, &["commit", "-qam", "v2, hot"]);
    let out = p.git(&repo, &hot);
    let (o, e) = texts(&out);
    assert!(out.status.success(), "{o}{e}");
    assert!(
        e.contains("Hot upgrade to v2") && e.contains("EnvProbe.Page"),
        "{e}"
    );
    assert!(e.contains("Deployed v2"), "{e}");
    // New code, same node, same memory.
    assert_eq!(p.get_app(&app, "/").1, "env_probe v2\n");
    assert_eq!(
        p.get_app(&app, "/count").1,
        "4\n",
        "the in-memory state survived"
    );
    let after = p.cli_ok(&repo, &["ps", "--json"]);
    let names = |ps: &str| {
        let v: Value = serde_json::from_str(ps).expect("ps json");
        v.to_string().matches("gx-").count()
    };
    assert_eq!(names(&before), names(&after));
    let first_name = |ps: &str| {
        let v: Value = serde_json::from_str(ps).expect("ps json");
        v["pods"][0]["name"].as_str().unwrap_or_default().to_owned()
    };
    assert!(first_name(&before).starts_with("gx-"), "{before}");
    assert_eq!(
        first_name(&before),
        first_name(&after),
        "no container was replaced"
    );

    // A rollback goes back the same way: v1's modules reloaded, the node and its memory
    // kept, and the CLI says so.
    let out = p.cli_ok(&repo, &["releases:rollback"]);
    assert!(
        out.contains("v3 is live: back in place (a hot downgrade), no restart."),
        "{out}"
    );
    assert_eq!(p.get_app(&app, "/").1, "env_probe v1\n");
    assert_eq!(
        p.get_app(&app, "/count").1,
        "5\n",
        "the in-memory state survived"
    );

    // A later restart comes up on the release that runs.
    p.cli_ok(&repo, &["restart"]);
    wait_for("the restarted replica", Duration::from_secs(60), || {
        p.get_app(&app, "/count").1 == "1\n"
    });
    assert_eq!(p.get_app(&app, "/").1, "env_probe v1\n");
}
