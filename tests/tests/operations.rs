//! Operating a running app on a real platform:
//! - maintenance: the app keeps running, the router answers every request with 503,
//!   `Retry-After` and a page (the app's own `/maintenance.html` when it serves HTML there,
//!   else a plain one), SSH still reaches the replicas; off, the app answers again;
//! - `ps:kill`: a replica dies as in a crash and comes back;
//! - `run`: one-off jobs in containers of their own, with the release's environment,
//!   their exit codes and their time limit;
//! - canaries: a share of an app's new visitors, sticky per browser.

use std::time::Duration;

use gigalixir_tests::{docker, require_images, ssh_keygen, texts, wait_for, Account, Platform};

/// GET `/` of `app` through the router: status, `Retry-After`, content type, body.
fn get(p: &Platform, app: &str) -> (u16, Option<String>, String, String) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let port = p.url().rsplit(':').next().expect("port").to_owned();
    let resp = client
        .get(format!("http://127.0.0.1:{port}/"))
        .header("host", format!("{app}.localhost:{port}"))
        .send()
        .expect("the router answers");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let retry = header("retry-after");
    let kind = header("content-type").unwrap_or_default();
    (
        resp.status().as_u16(),
        retry,
        kind,
        resp.text().unwrap_or_default(),
    )
}

#[test]
fn an_app_in_maintenance_answers_503_and_keeps_running() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "maint", work.path());
    let out = p.git_ok(&repo, &["push", "gigalixir", "master"]);
    assert!(out.contains("Deployed v1"), "{out}");
    assert_eq!(get(&p, &app).0, 200);
    let (key, public) = ssh_keygen(work.path(), "key");
    p.cli_ok(&repo, &["account:ssh_keys:add", &public]);

    let said = p.cli_ok(&repo, &["maintenance:on", "-y"]);
    assert!(said.contains("maintenance"), "{said}");
    wait_for("the router to answer 503", Duration::from_secs(5), || {
        get(&p, &app).0 == 503
    });
    let (status, retry, kind, body) = get(&p, &app);
    assert_eq!(status, 503);
    assert_eq!(retry.as_deref(), Some("120"));
    assert!(kind.starts_with("text/plain"), "{kind}");
    assert!(body.contains("down for maintenance"), "{body}");
    assert!(p
        .cli_ok(&repo, &["apps:info", "--json"])
        .contains("\"maintenance\": true"));
    // The app runs on: SSH reaches it.
    let ran = wait_for("ps:run in the replica", Duration::from_secs(60), || {
        let out = p
            .cli_command(&repo, &["ps:run", "printenv", "APP_NAME"])
            .env("GIGALIXIR_IDENTITY_FILE", &key)
            .output()
            .expect("ps:run");
        String::from_utf8_lossy(&out.stdout).trim() == app
    });
    eprintln!("figure: ps:run in maintenance after {} ms", ran.as_millis());

    // An app that serves HTML at /maintenance.html: that page, with 503.
    let server = repo.join("lib/hello/server.ex");
    let code = std::fs::read_to_string(&server).expect("server.ex");
    std::fs::write(
        &server,
        code.replace("content-type: text/plain", "content-type: text/html"),
    )
    .expect("write");
    p.commit_all(&repo, "html");
    let out = p.git_ok(&repo, &["push", "gigalixir", "master"]);
    assert!(out.contains("Deployed v2"), "{out}");
    wait_for("the app's own page", Duration::from_secs(10), || {
        get(&p, &app).2.starts_with("text/html")
    });
    let (status, retry, _, body) = get(&p, &app);
    assert_eq!((status, retry.as_deref()), (503, Some("120")));
    assert!(body.contains("Hello from hello"), "{body}");

    p.cli_ok(&repo, &["maintenance:off", "-y"]);
    wait_for("the app to answer again", Duration::from_secs(5), || {
        get(&p, &app).0 == 200
    });

    // ps:kill: the replica dies as in a crash and comes back by itself.
    let status = p.cli_ok(&repo, &["ps", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("ps --json");
    // The running replica of v2 (v1's may still be draining).
    let pod = status["pods"]
        .as_array()
        .expect("pods")
        .iter()
        .find(|p| p["version"] == 2 && p["status"] == "running")
        .and_then(|p| p["name"].as_str())
        .unwrap_or_else(|| panic!("no running replica of v2: {status}"))
        .to_owned();
    let started = || docker(&["inspect", "-f", "{{.State.StartedAt}}", &pod]);
    let started_before = started();
    let out = p.cli(&repo, &["ps:kill", "-p", "gx-no-such-replica", "-y"]);
    let (_, stderr) = texts(&out);
    assert!(
        !out.status.success() && stderr.contains("no running replica"),
        "{stderr}"
    );
    let said = p.cli_ok(&repo, &["ps:kill", "-p", &pod, "-y"]);
    assert!(said.contains("Killed"), "{said}");
    let back = wait_for(
        "the killed replica to answer again",
        Duration::from_secs(30),
        || get(&p, &app).0 == 200 && started() != started_before,
    );
    eprintln!(
        "figure: ps:kill to answering again: {} ms",
        back.as_millis()
    );

    // run: a job of its own, with the app's environment, its output and exit code.
    let out = p.cli(&repo, &["run", "printenv", "APP_NAME"]);
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // (After the runner's own lines: the slug unpacked, the command it runs.)
    assert_eq!(stdout.trim().lines().last(), Some(app.as_str()), "{stdout}");
    let replicas = p.container_ids(&app);
    let out = p.cli(&repo, &["run", "hostname"]);
    let host = texts(&out)
        .0
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    assert!(
        !host.is_empty() && replicas.iter().all(|id| !id.starts_with(&host)),
        "the job ran in a web replica: {host} in {replicas:?}"
    );
    // A last line without a newline arrives too.
    let out = p.cli(&repo, &["run", "echo first; sleep 0.3; printf last"]);
    assert_eq!(
        texts(&out).0.trim_end().lines().last(),
        Some("last"),
        "{:?}",
        texts(&out)
    );
    let out = p.cli(&repo, &["run", "echo to stderr >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{:?}", texts(&out));
    assert!(texts(&out).0.contains("to stderr"), "{:?}", texts(&out));
    // While it runs, ps lists it; at its limit it is killed.
    let long = p
        .cli_command(&repo, &["run", "--timeout", "3", "echo started; sleep 60"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run");
    wait_for("ps to list the job", Duration::from_secs(20), || {
        p.cli_ok(&repo, &["ps"]).contains("JOB")
    });
    // Three at once at most: a fourth is refused while they run.
    let more: Vec<_> = (0..2)
        .map(|_| {
            p.cli_command(&repo, &["run", "--timeout", "3", "sleep 60"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("run")
        })
        .collect();
    wait_for("three jobs", Duration::from_secs(20), || {
        p.cli_ok(&repo, &["ps"]).matches("-run-").count() == 3
    });
    let out = p.cli(&repo, &["run", "true"]);
    assert!(
        !out.status.success() && texts(&out).1.contains("3 jobs"),
        "{:?}",
        texts(&out)
    );
    for mut job in more {
        let _ = job.wait();
    }
    let long = long.wait_with_output().expect("run");
    assert_eq!(long.status.code(), Some(137), "{:?}", texts(&long));
    assert!(texts(&long).1.contains("killed"), "{:?}", texts(&long));
    wait_for("the job's container to go", Duration::from_secs(20), || {
        !p.cli_ok(&repo, &["ps"]).contains("JOB")
    });
    let out = p.cli(&repo, &["run", "--timeout", "7200", "true"]);
    assert!(
        !out.status.success() && texts(&out).1.contains("3600"),
        "{:?}",
        texts(&out)
    );
    let out = p.cli(&repo, &["maintenance:on"]);
    let (_, stderr) = texts(&out);
    assert!(!out.status.success() && stderr.contains("-y"), "{stderr}");
    assert_eq!(
        get(&p, &app).0,
        200,
        "maintenance:on without -y and no terminal changed it"
    );
}

#[test]
fn a_canary_gets_its_weight_of_new_visitors_and_each_browser_stays_on_its_side() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (blue_repo, blue) = p.new_app("hello", "blue", work.path());
    let green_dir = work.path().join("green");
    std::fs::create_dir_all(&green_dir).expect("mkdir");
    let (green_repo, green) = p.new_app("hello", "green", &green_dir);
    // Green says so.
    let page = green_repo.join("lib/hello/page.ex");
    let code = std::fs::read_to_string(&page).expect("page.ex");
    std::fs::write(&page, code.replace("Hello from", "Green hello from")).expect("write");
    p.commit_all(&green_repo, "green");
    for repo in [&blue_repo, &green_repo] {
        let out = p.git_ok(repo, &["push", "gigalixir", "master"]);
        assert!(out.contains("Deployed v1"), "{out}");
    }
    let said = p.cli_ok(&blue_repo, &["canary:set", "-c", &green, "-w", "10"]);
    assert!(said.contains(&green) && said.contains("10%"), "{said}");
    assert!(p.cli_ok(&blue_repo, &["canary"]).contains(&green));

    let port = p.url().rsplit(':').next().expect("port").to_owned();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let visit = |cookie: Option<&str>| {
        let mut req = client
            .get(format!("http://127.0.0.1:{port}/"))
            .header("host", format!("{blue}.localhost:{port}"));
        if let Some(cookie) = cookie {
            req = req.header("cookie", cookie);
        }
        let resp = req.send().expect("the router answers");
        let set = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().to_owned());
        let body = resp.text().unwrap_or_default();
        (body.starts_with("Green"), set)
    };
    // Wait out the router's one-second table.
    wait_for(
        "the canary to get requests",
        Duration::from_secs(10),
        || (0..50).any(|_| visit(None).0),
    );
    let n = 1000;
    let (mut to_green, mut cookies) = (0, Vec::new());
    for _ in 0..n {
        let (green, cookie) = visit(None);
        to_green += usize::from(green);
        cookies.push((green, cookie.expect("a new visitor gets a cookie")));
    }
    eprintln!("figure: {to_green} of {n} new visitors on the canary at weight 10");
    assert!(
        (70..=130).contains(&to_green),
        "{to_green} of {n} on the canary"
    );
    // A browser keeps its side.
    for (green, cookie) in cookies
        .iter()
        .filter(|(g, _)| *g)
        .take(3)
        .chain(cookies.iter().filter(|(g, _)| !*g).take(3))
    {
        for _ in 0..5 {
            let (again, set) = visit(Some(cookie));
            assert_eq!(again, *green, "{cookie}");
            assert!(set.is_none());
        }
    }
    // 100: everyone, cookie or not, is on green (blue-green).
    p.cli_ok(&blue_repo, &["canary:set", "-w", "100"]);
    let blue_cookie = &cookies.iter().find(|(g, _)| !*g).expect("a blue visitor").1;
    wait_for("all on green", Duration::from_secs(10), || {
        visit(Some(blue_cookie)).0 && visit(None).0
    });
    p.cli_ok(&blue_repo, &["canary:unset", "-c", &green]);
    wait_for("all back on blue", Duration::from_secs(10), || {
        !visit(Some(blue_cookie)).0 && (0..20).all(|_| !visit(None).0)
    });
    // Only an app of the same owner may be a canary.
    let out = p.cli(&blue_repo, &["canary:set", "-c", "no-such-app", "-w", "5"]);
    assert!(!out.status.success(), "{:?}", texts(&out));
    // A canary given away to someone else gets none of the app's requests.
    p.cli_ok(&blue_repo, &["canary:set", "-c", &green, "-w", "100"]);
    wait_for("all on green again", Duration::from_secs(10), || {
        visit(None).0
    });
    let other = Account::sign_up(&p, "other@example.com");
    p.cli_ok(
        &blue_repo,
        &["apps:transfer", "-a", &green, "other@example.com", "-y"],
    );
    wait_for("blue to serve all", Duration::from_secs(10), || {
        (0..20).all(|_| !visit(None).0)
    });

    // The other account reaches nothing of blue: not its replicas through its own app
    // (ps:kill by blue's replica's name), not a job with blue's release.
    let status = p.cli_ok(&blue_repo, &["ps", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).expect("ps --json");
    let blue_pod = status["pods"][0]["name"]
        .as_str()
        .expect("a pod")
        .to_owned();
    let blue_started = docker(&["inspect", "-f", "{{.State.StartedAt}}", &blue_pod]);
    let out = p
        .cli_command_as(
            other.home.path(),
            &green_repo,
            &["ps:kill", "-a", &green, "-p", &blue_pod, "-y"],
        )
        .output()
        .expect("ps:kill");
    assert!(!out.status.success(), "{:?}", texts(&out));
    assert!(
        texts(&out).1.contains("no running replica"),
        "{:?}",
        texts(&out)
    );
    let out = p
        .cli_command_as(
            other.home.path(),
            &green_repo,
            &["run", "-a", &blue, "true"],
        )
        .output()
        .expect("run");
    assert!(!out.status.success(), "{:?}", texts(&out));
    assert!(texts(&out).1.contains("no app named"), "{:?}", texts(&out));
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.StartedAt}}", &blue_pod]),
        blue_started,
        "blue's replica was touched"
    );
    assert!(!visit(None).0);
}
