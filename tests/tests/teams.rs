//! Teams on a real platform (real `git`, real builds and containers): the owner gives a
//! collaborator and a viewer access; the collaborator pushes and the app goes live; the
//! viewer may look but not push nor read the config; the activity says who did what; once
//! access is taken away, the app is as unknown to them as any other.

use std::path::Path;
use std::time::Duration;

use gigalixir_tests::{require_images, ssh_keygen, texts, wait_for, Account, Platform};

#[test]
fn a_collaborator_pushes_and_a_viewer_only_looks() {
    require_images();
    let p = Platform::start();
    let ada = Account::sign_up(&p, "ada@example.com");
    let bob = Account::sign_up(&p, "bob@example.com");
    let carol = Account::sign_up(&p, "carol@example.com");
    let work = tempfile::tempdir().expect("work");
    let app = format!("team-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let repo = ada.new_app("hello", &app, work.path());
    ada.cli_ok(
        &repo,
        &["config:set", "-a", &app, "TEAM_SECRET=only-for-the-team"],
    );
    ada.cli_ok(&repo, &["access:add", "-a", &app, "bob@example.com"]);
    ada.cli_ok(
        &repo,
        &[
            "access:add",
            "-a",
            &app,
            "carol@example.com",
            "--role",
            "VIEWER",
        ],
    );
    let people = carol.cli_ok(&repo, &["access", "-a", &app]);
    for (email, role) in [
        ("ada@example.com", "OWNER"),
        ("bob@example.com", "COLLABORATOR"),
        ("carol@example.com", "VIEWER"),
    ] {
        assert!(
            people
                .lines()
                .any(|l| l.contains(email) && l.contains(role)),
            "{people}"
        );
    }

    // Bob pushes the owner's app with his own credentials; it goes live.
    let (ok, out) = bob.git(&repo, &["push", "gigalixir", "master"]);
    assert!(ok, "bob's push failed:\n{out}");
    let (status, body) = p.get_app(&app, "/");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Hello from hello"), "{body}");
    assert!(bob
        .cli_ok(&repo, &["config", "-a", &app])
        .contains("only-for-the-team"));

    // Bob's SSH key reaches the replicas of Ada's app; Carol's does not.
    let keys = work.path().join("keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    let (bob_key, bob_pub) = ssh_keygen(&keys, "bob");
    let (carol_key, carol_pub) = ssh_keygen(&keys, "carol");
    let (ada_key, ada_pub) = ssh_keygen(&keys, "ada");
    ada.cli_ok(&repo, &["account:ssh_keys:add", &ada_pub]);
    bob.cli_ok(&repo, &["account:ssh_keys:add", &bob_pub]);
    carol.cli_ok(&repo, &["account:ssh_keys:add", &carol_pub]);
    let ssh = |who: &Account, key: &Path| {
        p.cli_command_as(
            who.home.path(),
            &repo,
            &["ps:ssh", "-a", &app, "echo", "in"],
        )
        .env("GIGALIXIR_IDENTITY_FILE", key)
        .output()
        .expect("ps:ssh")
    };
    wait_for(
        "bob's key to reach the replica",
        Duration::from_secs(60),
        || String::from_utf8_lossy(&ssh(&bob, &bob_key).stdout).trim() == "in",
    );
    let out = ssh(&carol, &carol_key);
    assert!(!out.status.success(), "{:?}", texts(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("viewer"),
        "{:?}",
        texts(&out)
    );

    // Carol sees the app, not its config, and cannot push.
    assert!(carol.cli_ok(&repo, &["apps"]).contains(&app));
    assert!(carol
        .cli_ok(&repo, &["releases", "-a", &app])
        .contains("v1"));
    let out = p
        .cli_command_as(carol.home.path(), &repo, &["config", "-a", &app])
        .output()
        .expect("run gigalixir");
    let (stdout, stderr) = texts(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(!stdout.contains("only-for-the-team") && !stderr.contains("only-for-the-team"));
    assert!(stderr.contains("viewer"), "{stderr}");
    std::fs::write(repo.join("NOTES.md"), "carol was here\n").expect("write");
    carol.git(&repo, &["add", "-A"]);
    carol.git(&repo, &["commit", "-qm", "carol's change"]);
    let (ok, out) = carol.git(&repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "a viewer pushed:\n{out}");
    assert!(out.contains("viewer"), "{out}");

    // Who did what.
    let activity = ada.cli_ok(&repo, &["apps:activity", "-a", &app]);
    let line_of = |action: &str| {
        activity
            .lines()
            .find(|l| l.contains(action))
            .unwrap_or_else(|| panic!("no {action} in:\n{activity}"))
            .to_owned()
    };
    assert!(line_of("push").contains("bob@example.com"), "{activity}");
    assert!(line_of("config:set").contains("TEAM_SECRET"), "{activity}");
    assert!(!activity.contains("only-for-the-team"), "{activity}");
    assert!(
        line_of("access:add").contains("ada@example.com"),
        "{activity}"
    );

    // Access taken away: the app is unknown to Bob again.
    ada.cli_ok(&repo, &["access:remove", "-a", &app, "bob@example.com"]);
    let (ok, out) = bob.git(&repo, &["push", "gigalixir", "master"]);
    assert!(!ok, "{out}");
    assert!(out.contains("not found"), "{out}");
    assert!(!bob.cli_ok(&repo, &["apps"]).contains(&app));
    // And the replicas stop admitting his key (tried through Ada's access to the app).
    wait_for(
        "bob's key to leave the replica",
        Duration::from_secs(60),
        || !ssh(&ada, &bob_key).status.success(),
    );
    assert_eq!(
        String::from_utf8_lossy(&ssh(&ada, &ada_key).stdout).trim(),
        "in"
    );
}
