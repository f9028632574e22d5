//! The edge, as an app's visitors meet it through the router: WebSockets bridged both ways,
//! streamed responses passed as they come, forwarded headers the app can trust, limits with
//! clear answers, an access log without secrets, and no lost request when a replica dies.
//! (Issue 14.) The app is `tests/fixtures/edge_app`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use gigalixir_tests::{docker, require_images, wait_for, Platform};

/// A raw HTTP/1.1 request to the router for `app`; the connection, its reading timeout set.
fn send(p: &Platform, app: &str, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let host = format!("{app}.localhost:{}", p.port);
    s.write_all(head.replace("HOST", &host).as_bytes())
        .expect("write");
    s
}

/// Reads from `s` until `until` is in what was read (or the peer closes); all read so far.
fn read_until(s: &mut TcpStream, seen: &mut Vec<u8>, until: &[u8]) {
    let mut buf = [0u8; 4096];
    while !seen.windows(until.len()).any(|w| w == until) {
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
}

/// A masked client frame (RFC 6455) with `opcode` and `data` (under 126 bytes).
fn frame(opcode: u8, data: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![
        0x80 | opcode,
        0x80 | u8::try_from(data.len()).expect("short"),
    ];
    out.extend_from_slice(&mask);
    out.extend(data.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads one unmasked server frame: (opcode, payload).
fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).expect("frame head");
    assert_eq!(head[1] & 0x80, 0, "a server frame is not masked");
    let len = usize::from(head[1] & 0x7f);
    assert!(len < 126, "short frames only");
    let mut data = vec![0u8; len];
    s.read_exact(&mut data).expect("frame data");
    (head[0] & 0x0f, data)
}

fn edge_app(p: &Platform, work: &std::path::Path) -> String {
    p.sign_up_and_log_in();
    let (repo, app) = p.new_app("edge_app", "edge", work);
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "the push failed:\n{out}");
    app
}

#[test]
fn websockets_streams_and_forwarded_headers_pass_the_router() {
    require_images();
    let p = Platform::start_with(&[
        "--request-timeout",
        "2",
        "--max-app-body-mb",
        "1",
        "--max-websockets-per-app",
        "2",
    ]);
    let work = tempfile::tempdir().expect("work");
    let app = edge_app(&p, work.path());

    // A WebSocket: the handshake's 101, then frames both ways, then a clean close.
    let open_ws = || {
        let mut ws = send(
            &p,
            &app,
            "GET /ws HTTP/1.1\r\nHost: HOST\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        let mut head = Vec::new();
        read_until(&mut ws, &mut head, b"\r\n\r\n");
        (ws, String::from_utf8_lossy(&head).to_lowercase())
    };
    let (mut ws, head) = open_ws();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    for (opcode, data) in [
        (1u8, &b"hello through the router"[..]),
        (2, &[0u8, 1, 2, 255][..]),
    ] {
        ws.write_all(&frame(opcode, data)).expect("send frame");
        assert_eq!(read_frame(&mut ws), (opcode, data.to_vec()));
    }
    // At most 2 open per app (--max-websockets-per-app): a third is refused until one closes.
    let (mut second, head) = open_ws();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let (_, head) = open_ws();
    assert!(head.starts_with("http/1.1 503"), "{head}");
    second.write_all(&frame(8, &[0x03, 0xe8])).expect("close");
    assert_eq!(read_frame(&mut second).0, 8);
    drop(second);
    wait_for(
        "a WebSocket again once one closed",
        Duration::from_secs(10),
        || open_ws().1.starts_with("http/1.1 101"),
    );
    // the app stays silent for a while: the bridge holds
    std::thread::sleep(Duration::from_secs(3));
    ws.write_all(&frame(1, b"still there")).expect("send");
    assert_eq!(read_frame(&mut ws), (1, b"still there".to_vec()));
    ws.write_all(&frame(8, &[0x03, 0xe8])).expect("close");
    assert_eq!(read_frame(&mut ws).0, 8);

    // A stream: the first event arrives while the response is still open.
    let mut sse = send(
        &p,
        &app,
        "GET /sse HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n",
    );
    let mut seen = Vec::new();
    read_until(&mut sse, &mut seen, b"data: one");
    let early = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        !early.contains("data: two"),
        "the stream was held back until it ended:\n{early}"
    );
    read_until(&mut sse, &mut seen, b"data: two");
    assert!(String::from_utf8_lossy(&seen).contains("data: two"));

    // Forwarded headers: the client's own X-Forwarded-For gets the real peer appended, the
    // request id is kept, hop-by-hop headers (and those Connection names) go.
    let mut h = send(
        &p,
        &app,
        "GET /headers?token=do-not-log-me HTTP/1.1\r\nHost: HOST\r\nX-Forwarded-For: 6.6.6.6\r\n\
         X-Forwarded-Proto: https\r\nX-Request-Id: abc-123\r\nConnection: close, X-Hop\r\n\
         X-Hop: secret\r\nCookie: session=do-not-log-me\r\n\r\n",
    );
    let mut seen = Vec::new();
    read_until(&mut h, &mut seen, b"\0never");
    let answer = String::from_utf8_lossy(&seen).to_lowercase();
    let (resp_head, body) = answer.split_once("\r\n\r\n").expect("a response");
    assert!(resp_head.starts_with("http/1.1 200"), "{answer}");
    assert!(resp_head.contains("x-request-id: abc-123"), "{resp_head}");
    let line = |name: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::to_owned)
    };
    assert_eq!(
        line("x-forwarded-for").as_deref(),
        Some("6.6.6.6, 127.0.0.1"),
        "{body}"
    );
    assert_eq!(line("x-forwarded-proto").as_deref(), Some("http"), "{body}");
    assert_eq!(
        line("x-forwarded-host"),
        Some(format!("{app}.localhost:{}", p.port)),
        "{body}"
    );
    assert_eq!(line("x-forwarded-port"), Some(p.port.to_string()), "{body}");
    assert_eq!(line("x-request-id").as_deref(), Some("abc-123"), "{body}");
    assert_eq!(line("x-hop"), None, "{body}");
    // a request without an id gets one
    let (status, body) = p.get_app(&app, "/headers");
    assert_eq!(status, 200);
    let id = body
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("an id");
    assert_eq!(id.len(), 32, "{id}");

    // Limits: an app slower than the request timeout, a body over the cap.
    let (status, body) = p.get_app(&app, "/slow?s=5");
    assert_eq!(status, 504, "{body}");
    assert!(body.contains("did not answer within 2 s"), "{body}");
    // (its head only: the answer comes before a byte of the body is read)
    let mut big = send(
        &p,
        &app,
        "POST / HTTP/1.1\r\nHost: HOST\r\nContent-Length: 2097152\r\n\r\n",
    );
    let mut seen = Vec::new();
    read_until(&mut big, &mut seen, b"MB an app may receive");
    let answer = String::from_utf8_lossy(&seen);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("larger than the 1 MB"), "{answer}");

    // One access-log line per request, without the query, cookies or forwarded chain.
    let log = p.log();
    let routed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("routed") && l.contains("abc-123"))
        .collect();
    assert_eq!(routed.len(), 1, "{log}");
    for field in ["GET", "path=/headers", "status=200", "bytes="] {
        assert!(routed[0].contains(field), "{}", routed[0]);
    }
    assert!(!log.contains("do-not-log-me"), "a secret reached the log");
}

#[test]
fn a_replica_that_dies_under_load_loses_no_request() {
    require_images();
    let p = Platform::start();
    let work = tempfile::tempdir().expect("work");
    let app = edge_app(&p, work.path());
    let repo = work.path().join("edge_app");
    p.cli_ok(&repo, &["ps:scale", "-r", "2"]);
    wait_for("two healthy replicas", Duration::from_secs(120), || {
        p.log()
            .lines()
            .any(|l| l.contains("change=Scale") && l.contains("replicas=2") && l.contains("done"))
    });
    assert_eq!(p.container_ids(&app).len(), 2);
    let victim = p.container_ids(&app)[0].clone();
    // four clients without pause: some requests are on the victim when it dies
    let done = std::sync::atomic::AtomicUsize::new(0);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let loads: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let client = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(20))
                        .build()
                        .expect("client");
                    (0..1500)
                        .map(|_| {
                            let status = client
                                .get(format!("http://127.0.0.1:{}/", p.port))
                                .header("host", format!("{app}.localhost:{}", p.port))
                                .send()
                                .map_or(0, |r| r.status().as_u16());
                            done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            status
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        while done.load(std::sync::atomic::Ordering::Relaxed) < 300 {
            std::thread::sleep(Duration::from_millis(1));
        }
        docker(&["kill", &victim]);
        let at_kill = done.load(std::sync::atomic::Ordering::Relaxed);
        assert!(at_kill < 6000, "the load was over before the replica died");
        loads
            .into_iter()
            .flat_map(|l| l.join().expect("load"))
            .collect()
    });
    eprintln!(
        "figure: {} requests while a replica died, {} sent again to the other replica",
        statuses.len(),
        p.log().matches("trying another").count()
    );
    let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed while a replica died: {failed:?}",
        failed.len(),
        statuses.len()
    );
}

/// GET `/` with `host` as the Host header, straight to the router.
fn get_host(p: &Platform, host: &str) -> (u16, String) {
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{}/", p.port))
        .header("host", host)
        .send()
        .expect("get");
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

#[test]
fn a_custom_domain_routes_to_its_one_app_until_removed() {
    require_images();
    let p = Platform::start();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "shop", work.path());
    let (ok, out) = p.push(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "{out}");
    let fqdn = format!("www.{}.example", &p.instance[1..7]);

    let out = p.cli_ok(&repo, &["domains:add", &fqdn]);
    assert!(
        out.contains(&format!("pointing {fqdn} to {app}.localhost")),
        "{out}"
    );
    let listed = p.cli_ok(&repo, &["domains"]);
    assert!(
        listed.contains(&fqdn) && listed.contains(&format!("{app}.localhost")),
        "{listed}"
    );
    // As a browser would once DNS points the name here (curl --resolve).
    assert_eq!(
        get_host(&p, &format!("{fqdn}:{}", p.port)),
        (200, "Hello from hello v1\n".to_owned())
    );
    assert_eq!(
        get_host(&p, &fqdn.to_uppercase()).0,
        200,
        "names are case-blind"
    );

    // Another account cannot take it, nor names under the platform's own domain, nor
    // what is not a domain.
    let b = gigalixir_tests::Account::sign_up(&p, &format!("b-{app}@example.com"));
    let b_app = format!("other-{app}");
    let b_repo = b.new_app("hello", &b_app, &work.path().join("b"));
    let refused = |args: &[&str]| {
        let out = p
            .cli_command_as(b.home.path(), &b_repo, args)
            .output()
            .expect("run");
        assert!(!out.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let why = refused(&["domains:add", &fqdn]);
    assert!(why.contains("is used by another app"), "{why}");
    assert!(!why.contains(&app), "the other app's name leaked: {why}");
    let why = refused(&["domains:add", &format!("x.{b_app}.localhost")]);
    assert!(why.contains("platform's own domain"), "{why}");
    let why = refused(&["domains:add", "not a domain"]);
    assert!(why.contains("is not a domain name"), "{why}");
    let why = refused(&["domains:remove", &fqdn]);
    assert!(why.contains("has no domain"), "{why}");

    // Removed: the name no longer reaches the app; then it is free for B.
    p.cli_ok(&repo, &["domains:remove", &fqdn]);
    wait_for("the name to stop routing", Duration::from_secs(5), || {
        get_host(&p, &fqdn).1 != "Hello from hello v1\n"
    });
    assert!(p.cli_ok(&repo, &["domains"]).contains("no custom domains"));
    b.cli_ok(&b_repo, &["domains:add", &fqdn]);

    // Destroying an app frees its domains.
    b.cli_ok(&b_repo, &["apps:destroy", "-a", &b_app, "-y"]);
    p.cli_ok(&repo, &["domains:add", &fqdn]);
}

/// `curl` as a user runs it, trusting only `ca`: status and body.
fn curl(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn apps_and_their_domains_answer_https_with_the_platforms_certificates() {
    require_images();
    let p = Platform::start();
    let work = tempfile::tempdir().expect("work");
    let app = edge_app(&p, work.path());
    let repo = work.path().join("edge_app");
    let ca = p.data_dir().join("ca/ca.pem");
    assert!(ca.exists(), "no CA at {}", ca.display());
    let ca = ca.display().to_string();
    let url = format!("https://{app}.localhost:{}/headers", p.https_port);

    // Trusted through the platform's CA alone; the app learns it was HTTPS.
    let (ok, body, err) = curl(&["--cacert", &ca, &url]);
    assert!(ok, "{err}");
    assert!(body.contains("x-forwarded-proto: https"), "{body}");
    assert!(
        body.contains(&format!("x-forwarded-port: {}", p.https_port)),
        "{body}"
    );
    // Without the CA, curl refuses the certificate.
    let (ok, _, err) = curl(&[&url]);
    assert!(!ok, "an unknown CA was trusted");
    assert!(err.contains("certificate"), "{err}");

    // A custom domain gets its own certificate; a name no app has gets none.
    let fqdn = format!("secure.{}.example", &p.instance[1..7]);
    p.cli_ok(&repo, &["domains:add", &fqdn]);
    let resolve = format!("{fqdn}:{}:127.0.0.1", p.https_port);
    let (ok, body, err) = curl(&[
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        &format!("https://{fqdn}:{}/", p.https_port),
    ]);
    assert!(ok, "{err}");
    assert_eq!(body, "edge app\n");
    let stranger = format!("nobody.{}.example", &p.instance[1..7]);
    let (ok, _, _) = curl(&[
        "--cacert",
        &ca,
        "--resolve",
        &format!("{stranger}:{}:127.0.0.1", p.https_port),
        &format!("https://{stranger}:{}/", p.https_port),
    ]);
    assert!(!ok, "a name no app has got a certificate");

    // A WebSocket over TLS (curl only checks the handshake here).
    let (ok, out, err) = curl(&[
        "--cacert",
        &ca,
        "-i",
        "--max-time",
        "3",
        "-H",
        "Upgrade: websocket",
        "-H",
        "Connection: Upgrade",
        "-H",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "-H",
        "Sec-WebSocket-Version: 13",
        &format!("https://{app}.localhost:{}/ws", p.https_port),
    ]);
    let _ = (ok, &err);
    assert!(out.starts_with("HTTP/1.1 101"), "{out}{err}");
}

/// Pebble issuing certificates valid for `validity` seconds, a platform taking its
/// certificates from it, and the edge app deployed there (its repository in the work dir's
/// `edge_app`).
fn acme_platform(validity: u64) -> (gigalixir_tests::pebble::Pebble, Platform, tempfile::TempDir) {
    require_images();
    let mut pebble = gigalixir_tests::pebble::Pebble::prepare();
    let ca = pebble.listener_ca().display().to_string();
    let p = Platform::start_with(&[
        "--acme-directory",
        &pebble.directory(),
        "--acme-ca-file",
        &ca,
    ]);
    pebble.run(p.port, validity);
    let work = tempfile::tempdir().expect("work");
    edge_app(&p, work.path());
    (pebble, p, work)
}

/// The serial number of the certificate `name` gets on `port`.
fn serial(port: u16, name: &str) -> String {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            &format!(
                "openssl s_client -connect 127.0.0.1:{port} -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -serial"
            ),
        ])
        .output()
        .expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_custom_domain_gets_an_acme_certificate_renewed_without_a_dropped_request() {
    // certificates valid for 60 s: renewed once 20 s are left
    let (pebble, p, work) = acme_platform(60);
    let repo = work.path().join("edge_app");
    let fqdn = format!("tls.{}.example", &p.instance[1..7]);
    let added = std::time::Instant::now();
    p.cli_ok(&repo, &["domains:add", &fqdn]);
    let root = pebble.issuing_root().display().to_string();
    let resolve = format!("{fqdn}:{}:127.0.0.1", p.https_port);
    let url = format!("https://{fqdn}:{}/", p.https_port);
    let get = || curl(&["--cacert", &root, "--resolve", &resolve, &url]);
    wait_for(
        "an HTTPS answer with Pebble's certificate",
        Duration::from_secs(90),
        || get().0,
    );
    eprintln!(
        "figure: domains:add to the first HTTPS answer with a certificate from Pebble: {:.1} s",
        added.elapsed().as_secs_f64()
    );
    let listed = p.cli_ok(&repo, &["domains"]);
    assert!(
        listed.contains("issued, valid until"),
        "{listed}\n{}",
        pebble.log()
    );

    // Renewal: a request every 200 ms until the certificate changes; none fails.
    let first = serial(p.https_port, &fqdn);
    assert!(first.starts_with("serial="), "{first}");
    let started = std::time::Instant::now();
    let mut requests = 0;
    loop {
        let (ok, body, err) = get();
        assert!(
            ok && body == "edge app\n",
            "request {requests} failed: {err}"
        );
        requests += 1;
        if serial(p.https_port, &fqdn) != first {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the certificate was not renewed:\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "figure: renewed after {:.0} s, {requests} requests meanwhile, none failed",
        started.elapsed().as_secs_f64()
    );
    // the renewed one is trusted too
    assert!(get().0);
}

#[test]
fn a_failing_acme_challenge_is_shown_and_retried_until_it_succeeds() {
    let (pebble, p, work) = acme_platform(3600);
    let repo = work.path().join("edge_app");
    let fqdn = format!("broken.{}.example", &p.instance[1..7]);
    // the name's DNS fails, as a domain whose CNAME is not set up yet
    pebble.dns_fails(&fqdn, true);
    p.cli_ok(&repo, &["domains:add", &fqdn]);
    let mut listed = String::new();
    wait_for(
        "the failed order in `domains`",
        Duration::from_secs(60),
        || {
            listed = p.cli_ok(&repo, &["domains"]);
            listed.contains("failed:")
        },
    );
    assert!(
        listed.contains(&fqdn)
            && listed.contains("retried in")
            && listed.contains(&format!("does {fqdn} point at the platform"))
            && listed.contains("could not resolve"),
        "the reason and the retry are shown: {listed}"
    );
    let root = pebble.issuing_root().display().to_string();
    let resolve = format!("{fqdn}:{}:127.0.0.1", p.https_port);
    let url = format!("https://{fqdn}:{}/", p.https_port);
    assert!(!curl(&["--cacert", &root, "--resolve", &resolve, &url]).0);

    // The DNS is fixed: a retry gets the certificate without anyone asking again.
    pebble.dns_fails(&fqdn, false);
    wait_for(
        "an HTTPS answer once the DNS answers",
        Duration::from_secs(90),
        || curl(&["--cacert", &root, "--resolve", &resolve, &url]).0,
    );
    let listed = p.cli_ok(&repo, &["domains"]);
    assert!(listed.contains("issued, valid until"), "{listed}");
    assert!(
        p.log().contains("certificate order failed"),
        "the failure is logged"
    );
}

/// As a second account sees it: one app's visitors holding as many WebSockets as an app
/// may have, and pushing more, take nothing from another account's app; a custom domain
/// of the first account is not the second's to take.
#[test]
fn one_tenants_websockets_and_domains_leave_another_tenant_alone() {
    require_images();
    let p = Platform::start_with(&["--max-websockets-per-app", "2"]);
    let work = tempfile::tempdir().expect("work");
    let first = edge_app(&p, work.path());
    let other = gigalixir_tests::Account::sign_up(&p, "mallory@example.com");
    let second = format!("edge-b-{}", &p.instance[1..7]);
    let repo = other.new_app("edge_app", &second, &work.path().join("b"));
    let (ok, out) = other.git(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "the second account's push failed:\n{out}");

    let open = |app: &str| {
        let mut ws = send(
            &p,
            app,
            "GET /ws HTTP/1.1\r\nHost: HOST\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        let mut head = Vec::new();
        read_until(&mut ws, &mut head, b"\r\n\r\n");
        (ws, String::from_utf8_lossy(&head).to_lowercase())
    };
    // the first app's visitors take all it may have, and ask for more
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let (ws, head) = open(&first);
            assert!(head.starts_with("http/1.1 101"), "{head}");
            ws
        })
        .collect();
    for _ in 0..5 {
        assert!(open(&first).1.starts_with("http/1.1 503"));
    }
    // the other account's app answers its visitors as before
    let (mut ws, head) = open(&second);
    assert!(head.starts_with("http/1.1 101"), "{head}");
    ws.write_all(&frame(1, b"mine")).expect("send");
    assert_eq!(read_frame(&mut ws), (1, b"mine".to_vec()));
    drop(held);

    // a domain the first account holds is refused to the second, without naming whose
    let fqdn = format!("shop.{}.example", &p.instance[1..7]);
    p.cli_ok(&work.path().join("edge_app"), &["domains:add", &fqdn]);
    let out = p
        .cli_command_as(other.home.path(), &repo, &["domains:add", &fqdn])
        .output()
        .expect("run gigalixir");
    let (stdout, stderr) = gigalixir_tests::texts(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("used by another app") && !stderr.contains(&first),
        "{stderr}"
    );
}
