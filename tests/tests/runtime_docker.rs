//! The runtime suite (`shared::contract::runtime`) against the Docker runtime, for real:
//! the real engine, the runner image, and slugs of the `hello` fixture built once by the
//! builder image, with three Procfiles (a release phase that passes, one that fails, a web
//! process that crashes). Each test has its own instance label, app and blob store; what
//! a failed test leaves is removed by its guard.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use gigalixir_tests::{docker, require_images};
use shared::contract::runtime::{Slugs, Subject};
use shared::contract::{unique, Guard};
use shared::docker::{DockerRuntime, LABEL_INSTANCE};
use shared::domain::AppName;
use shared::embedded::FsBlobs;
use shared::model::SlugRef;
use shared::ports::Blobs;

/// The three slugs' files, built once per run of this file.
struct Built {
    _dir: tempfile::TempDir,
    serving: PathBuf,
    failing_phase: PathBuf,
    crashing: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        require_images();
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, out) = (dir.path().join("src"), dir.path().join("out"));
        gigalixir_tests::copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hello"),
            &src,
        );
        std::fs::write(
            src.join("Procfile"),
            "web: bin/hello start\nrelease: echo \"migrated $GREETING\"\n",
        )
        .expect("Procfile");
        std::fs::create_dir_all(&out).expect("out");
        // the builder runs as its own user: it may write here
        let status = Command::new("chmod")
            .args(["-R", "a+rwX"])
            .arg(dir.path())
            .status()
            .expect("chmod");
        assert!(status.success());
        let (src_mount, out_mount) = (
            format!("{}:/build/src", src.display()),
            format!("{}:/build/out", out.display()),
        );
        let name = unique("gx-suite-build");
        docker(&[
            "run",
            "--rm",
            "--name",
            &name,
            "--network",
            "none",
            "-v",
            &src_mount,
            "-v",
            &out_mount,
            "gigalixir-builder:bookworm",
        ]);
        let serving = out.join("slug.tgz");
        let variant = |name: &str, procfile: &str| {
            let tree = dir.path().join(name);
            std::fs::create_dir_all(&tree).expect("mkdir");
            run("tar", &["-xf", path(&serving), "-C", path(&tree)]);
            std::fs::write(tree.join("Procfile"), procfile).expect("Procfile");
            let file = dir.path().join(format!("{name}.tgz"));
            run("tar", &["-czf", path(&file), "-C", path(&tree), "."]);
            file
        };
        let failing_phase = variant(
            "failing-phase",
            "web: bin/hello start\nrelease: sh -c 'echo cannot migrate; exit 3'\n",
        );
        let crashing = variant("crashing", "web: sh -c 'echo boom; exit 1'\n");
        Built {
            _dir: dir,
            serving,
            failing_phase,
            crashing,
        }
    })
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().expect(program);
    assert!(status.success(), "{program} {args:?}");
}

/// Removes every container and network of the instance, whatever the test got to.
struct Instance {
    name: String,
    _dir: tempfile::TempDir,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let label = format!("label={LABEL_INSTANCE}={}", self.name);
        let ids = |args: &[&str]| -> Vec<String> {
            Command::new("docker")
                .args(args)
                .args(["--filter", &label])
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        for (list, remove) in [
            (&["ps", "-aq"][..], &["rm", "-f", "-v"][..]),
            (&["network", "ls", "-q"][..], &["network", "rm"][..]),
        ] {
            let found = ids(list);
            if !found.is_empty() {
                let _ = Command::new("docker").args(remove).args(&found).output();
            }
        }
    }
}

async fn make() -> (Subject, Guard) {
    let built = built();
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = Arc::new(FsBlobs::open(&dir.path().join("blobs")).expect("blobs"));
    let mut refs = Vec::new();
    for (file, types) in [
        (&built.serving, vec!["web", "release"]),
        (&built.failing_phase, vec!["web", "release"]),
        (&built.crashing, vec!["web"]),
    ] {
        let bytes = std::fs::read(file).expect("slug");
        let sha256 = sha256_of(file);
        let key = shared::blob_keys::slug(&sha256);
        blobs.put(&key, bytes.clone().into()).await.expect("put");
        refs.push(SlugRef {
            key,
            sha256,
            size: bytes.len() as u64,
            process_types: Some(types.into_iter().map(str::to_owned).collect()),
            stack: None,
        });
    }
    let name = unique("rc")[..11].to_owned();
    let runtime = DockerRuntime::new(
        shared::docker::connect().expect("the Docker engine"),
        name.clone(),
        dir.path().join("slugs"),
        dir.path().join("ssh"),
    )
    .with_slug_source(blobs);
    let crashing = refs.pop().expect("crashing");
    let failing_phase = refs.pop().expect("failing");
    let serving = refs.pop().expect("serving");
    let subject = Subject {
        runtime: Arc::new(runtime),
        app: AppName::parse(&unique("suite")[..14]).expect("app name"),
        slugs: Slugs {
            serving,
            failing_phase,
            crashing,
        },
    };
    (subject, Box::new(Instance { name, _dir: dir }))
}

fn sha256_of(file: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(file)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a sum")
        .to_owned()
}

shared::runtime_contract!(make);

/// A warm builder named after its build, running, whose build has ended: the push's own
/// steps make it idle (a second at most after the slug is stored), so the reconciler
/// leaves it to them while the push runs or the build ended just now, and removes it
/// when its build ended long ago with no push left (a killed platform's).
#[test]
fn a_warm_builder_whose_build_just_ended_is_left_to_its_push() {
    use shared::model::{Build, BuildFlags, BuildState};
    use shared::ports::Store;
    require_images();
    let dir = tempfile::tempdir().expect("tempdir");
    let name = unique("ro")[..11].to_owned();
    let guard = Instance {
        name: name.clone(),
        _dir: tempfile::tempdir().expect("tempdir"),
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    rt.block_on(async {
        let store =
            shared::embedded::SqliteStore::open(&dir.path().join("store.db")).expect("store");
        let runtime = DockerRuntime::new(
            shared::docker::connect().expect("the Docker engine"),
            name.clone(),
            dir.path().join("slugs"),
            dir.path().join("ssh"),
        );
        let app = AppName::parse(&unique("wb")[..14]).expect("app name");
        let holder = format!("platform-{name}/push-1");
        store
            .try_lock(
                &shared::lock_keys::push_lock(&app),
                &holder,
                std::time::Duration::from_secs(60),
            )
            .await
            .expect("push lock");
        let long_ago = chrono::Utc::now() - chrono::Duration::minutes(10);
        // (ended when, pushed by whom, kept?)
        let cases = [
            (chrono::Utc::now(), None, true),
            (long_ago, Some(holder.clone()), true),
            (long_ago, None, false),
            (long_ago, Some(format!("platform-{name}/push-0")), false),
        ];
        let mut containers = Vec::new();
        for (ended, pusher, kept) in cases {
            let build = Build {
                id: shared::domain::BuildId::random(),
                app: app.clone(),
                commit: "a".repeat(40),
                branch: "master".into(),
                flags: BuildFlags::default(),
                state: BuildState::Uploaded,
                failure: None,
                slug: None,
                created_at: ended,
                updated_at: ended,
                stack: None,
                history: Vec::new(),
                pusher,
            };
            store.create_build(&build).await.expect("build");
            let container = format!("gx-build-{}", build.id.0);
            docker(&[
                "run",
                "-d",
                "--name",
                &container,
                "--label",
                &format!("{LABEL_INSTANCE}={name}"),
                "--label",
                &format!("gigalixir.app={app}"),
                "--label",
                "gigalixir.warm-build=0123456789abcdef",
                "--entrypoint",
                "sleep",
                "gigalixir-runner:trixie",
                "600",
            ]);
            containers.push((container, kept));
        }
        let removed = runtime.remove_orphans(&store).await.expect("sweep");
        for (container, kept) in &containers {
            assert_eq!(
                !removed.contains(container),
                *kept,
                "{container}: removed {removed:?}"
            );
        }
    });
    drop(guard);
}

/// A finished build's slug is read straight from its volume, and what a build planted
/// there is never followed out of it: a link in place of `out` or of the slug, or a FIFO,
/// yields what the engine says of the build's own file (no host file's bytes), at once.
#[test]
fn a_builds_outputs_are_read_without_following_what_it_planted() {
    use futures::StreamExt;
    use shared::ports::builder::{BuildOutput, Builder};
    require_images();
    let name = unique("ro")[..11].to_owned();
    let guard = Instance {
        name: name.clone(),
        _dir: tempfile::tempdir().expect("tempdir"),
    };
    // host files a hostile build would like to read
    let host = tempfile::tempdir().expect("tempdir");
    let secret = format!("host-secret-{}", unique("m"));
    std::fs::write(host.path().join("slug.tgz"), &secret).expect("secret");
    let host_dir = host.path().display().to_string();
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let builder = shared::docker::DockerBuilder::new(
        shared::docker::connect().expect("the Docker engine"),
        name.clone(),
    );
    // (what the build's /build/out holds, what the slug read must be)
    // (the image's /build holds an empty out/)
    let cases = [
        ("printf slug-bytes > out/slug.tgz", Some("slug-bytes")),
        (&*format!("rmdir out && ln -s {host_dir} out"), None),
        (&*format!("ln -s {host_dir}/slug.tgz out/slug.tgz"), None),
        ("mkfifo out/slug.tgz", None),
    ];
    for (planted, expected) in cases {
        let id = shared::domain::BuildId::random();
        docker(&[
            "run",
            "-d",
            "--name",
            &format!("gx-build-{}", id.0),
            "--label",
            &format!("{LABEL_INSTANCE}={name}"),
            "--mount",
            "type=volume,target=/build",
            "--user",
            "build",
            "--workdir",
            "/build",
            "--entrypoint",
            "bash",
            "gigalixir-builder:trixie",
            "-c",
            &format!("{planted} && sleep 600"),
        ]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let read = rt.block_on(async {
            let stream = tokio::time::timeout(
                std::time::Duration::from_secs(20),
                builder.output(&id, BuildOutput::Slug),
            )
            .await
            .expect("the read does not hang");
            let Ok(mut stream) = stream else {
                return Vec::new();
            };
            let mut all = Vec::new();
            while let Ok(Some(Ok(chunk))) =
                tokio::time::timeout(std::time::Duration::from_secs(20), stream.next()).await
            {
                all.extend_from_slice(&chunk);
            }
            all
        });
        let text = String::from_utf8_lossy(&read);
        assert!(!text.contains(&secret), "{planted}: a host file was read");
        if let Some(expected) = expected {
            let mut archive = tar::Archive::new(&read[..]);
            let mut entry = archive
                .entries()
                .expect("a tar")
                .next()
                .expect("an entry")
                .expect("readable");
            assert_eq!(entry.path().expect("path").to_string_lossy(), "slug.tgz");
            let mut body = String::new();
            std::io::Read::read_to_string(&mut entry, &mut body).expect("body");
            assert_eq!(body, expected);
        }
    }
    drop(guard);
}
