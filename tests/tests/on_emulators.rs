//! The same platform on the Google Cloud backends, run against their emulators: Firestore
//! for the store, Pub/Sub for the bus, Cloud Storage for the blobs. A push deploys and the
//! app answers, as on the embedded backends.

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use gigalixir_tests::{require_images, Platform};

/// The emulators' addresses (scripts/emulators).
const EMULATORS: [(&str, &str); 3] = [
    ("PUBSUB_EMULATOR_HOST", "127.0.0.1:8681"),
    ("FIRESTORE_EMULATOR_HOST", "127.0.0.1:8682"),
    ("STORAGE_EMULATOR_HOST", "127.0.0.1:8683"),
];

fn require_emulators() {
    for (var, addr) in EMULATORS {
        let up = addr
            .parse()
            .ok()
            .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).ok())
            .is_some();
        assert!(
            up,
            "no emulator answers on {addr} ({var}): start them with `scripts/emulators start`"
        );
    }
}

/// A platform on the three emulators, with a project and buckets of its own.
fn platform_on_emulators() -> Platform {
    require_emulators();
    let id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let project = format!("gx-{id}");
    let p = Platform::start_with_env(
        &[
            "--store",
            &format!("firestore://{project}"),
            "--bus",
            &format!("pubsub://{project}"),
            "--blobs",
            &format!("gs://gx-{id}?create_buckets={project}"),
        ],
        &EMULATORS,
    );
    let log = p.log();
    assert!(
        !log.contains("not available in this build"),
        "this gigalixir-platform was built without the Google Cloud backends: build it with \
         `cargo build -p gigalixir-platform --features gcp` (scripts/test builds every feature)\n{log}"
    );
    p
}

fn push(p: &Platform, repo: &Path) -> String {
    let out = p.git(repo, &["push", "gigalixir", "master"]);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{text}\n--- platform log ---\n{}",
        p.log()
    );
    text
}

#[test]
fn a_push_deploys_on_the_emulated_google_cloud_backends() {
    require_images();
    let p = platform_on_emulators();
    p.sign_up_and_log_in();
    let work = tempfile::tempdir().expect("work");
    let (repo, app) = p.new_app("hello", "gcp", work.path());
    let first = push(&p, &repo);
    assert!(first.contains("Deployed v1"), "{first}");
    assert_eq!(
        p.get_app(&app, "/"),
        (200, "Hello from hello v1\n".to_owned())
    );

    let page = repo.join("lib/hello/page.ex");
    let text = std::fs::read_to_string(&page).expect("page");
    std::fs::write(&page, text.replace("hello v1", "hello v2")).expect("write");
    p.git_ok(&repo, &["commit", "-qam", "v2"]);
    let second = push(&p, &repo);
    assert!(second.contains("Deployed v2"), "{second}");
    assert_eq!(
        p.get_app(&app, "/"),
        (200, "Hello from hello v2\n".to_owned())
    );

    // The records live in Firestore: the CLI reads them back through the API.
    let releases = p.cli_ok(&repo, &["releases"]);
    assert!(
        releases.contains("v2") && releases.contains("v1"),
        "{releases}"
    );
}
