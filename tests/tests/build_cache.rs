//! The builder image's build cache, driven directly (no platform): one entry per key, used in
//! place, least recently used entries evicted beyond the size cap.

use std::path::{Path, PathBuf};
use std::process::Command;

use gigalixir_tests::{require_images, texts};

/// A cache volume of its own, removed at the end.
struct Volume(String);

impl Volume {
    fn new() -> Self {
        let name = format!("gx-test-cache-{}", uuid::Uuid::new_v4().simple());
        let out = Command::new("docker")
            .args([
                "volume",
                "create",
                "--label",
                "gigalixir.test=build-cache",
                &name,
            ])
            .output()
            .expect("docker");
        assert!(out.status.success(), "{:?}", texts(&out));
        Self(name)
    }

    /// Runs `sh -c script` in a builder container with the volume at /c, as the build user.
    fn sh(&self, script: &str) -> String {
        let out = Command::new("docker")
            .args(["run", "--rm", "--network", "none", "-v"])
            .arg(format!("{}:/c", self.0))
            .args(["gigalixir-builder:trixie", "sh", "-c", script])
            .output()
            .expect("docker");
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{script}: {stdout}{stderr}");
        stdout
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.0])
            .output();
    }
}

/// Builds `src` with the cache volume and a cache size cap; the build's output.
fn build(src: &Path, cache: &Volume, limit: u64) -> String {
    let out = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--user", "build", "-v"])
        .arg(format!("{}:/build/src:ro", src.display()))
        .arg("-v")
        .arg(format!("{}:/build/cache", cache.0))
        .arg("-e")
        .arg(format!("GIGALIXIR_CACHE_LIMIT_BYTES={limit}"))
        .args(["gigalixir-builder:trixie", "/usr/local/bin/gigalixir-build"])
        .output()
        .expect("docker");
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "the build failed:\n{stdout}{stderr}");
    stdout
}

fn fixture(parent: &Path) -> PathBuf {
    let src = parent.join("src");
    let status = Command::new("cp")
        .arg("-R")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/with_path_dep"))
        .arg(&src)
        .status()
        .expect("cp");
    assert!(status.success());
    // Readable by the build user of the image.
    let status = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(parent)
        .status()
        .expect("chmod");
    assert!(status.success());
    src
}

/// The entry ids a build reports (`entry 0123456789abcdef`).
fn entry_of(output: &str) -> String {
    let at = output
        .find("entry ")
        .unwrap_or_else(|| panic!("no cache entry named:\n{output}"));
    output[at + 6..at + 22].to_owned()
}

#[test]
fn entries_are_kept_per_key_and_the_least_recently_used_is_evicted_beyond_the_cap() {
    require_images();
    let work = tempfile::tempdir().expect("tempdir");
    let src = fixture(work.path());
    let cache = Volume::new();
    let big = 1 << 30;

    let first = build(&src, &cache, big);
    assert!(
        first.contains("No build cache: compiling everything"),
        "{first}"
    );
    assert!(first.contains("==> greeter"), "{first}");
    let entries = cache.sh("ls /c/elixir");
    assert_eq!(entries.lines().count(), 1, "{entries}");
    let a = entries.trim().to_owned();
    let size_a: u64 = cache
        .sh(&format!("du -sb /c/elixir/{a} | cut -f1"))
        .trim()
        .parse()
        .expect("size");

    // mix.exs is the key without a mix.lock: a change makes a second entry.
    let mix = src.join("mix.exs");
    let original = std::fs::read_to_string(&mix).expect("mix.exs");
    std::fs::write(&mix, format!("{original}\n# another dependency set\n")).expect("write");
    // Room for one entry and a half: the older one goes.
    let second = build(&src, &cache, size_a * 3 / 2);
    let b = entry_of(&second);
    assert!(
        second.contains(&format!(
            "New cache entry {b}: mix.exs changed since the last build"
        )),
        "{second}"
    );
    assert!(second.contains(&format!("Cache: evicted {a}")), "{second}");
    assert_eq!(cache.sh("ls /c/elixir").trim(), b);

    // Back to the first mix.exs: its entry is gone, so everything compiles again ...
    std::fs::write(&mix, &original).expect("write");
    let third = build(&src, &cache, big);
    assert!(third.contains(&format!("New cache entry {a}")), "{third}");
    assert!(third.contains("==> greeter"), "{third}");
    // ... while the second one, kept, is used in place.
    std::fs::write(&mix, format!("{original}\n# another dependency set\n")).expect("write");
    let fourth = build(&src, &cache, big);
    assert!(
        fourth.contains(&format!("Using the build cache (entry {b}")),
        "{fourth}"
    );
    assert!(!fourth.contains("==> greeter"), "{fourth}");
    assert!(
        fourth.contains("Dependencies reused from the cache, none recompiled: greeter"),
        "{fourth}"
    );
}

#[test]
fn a_cache_entry_that_does_not_match_its_seal_is_discarded() {
    require_images();
    let work = tempfile::tempdir().expect("tempdir");
    let src = fixture(work.path());
    let cache = Volume::new();
    let first = build(&src, &cache, 1 << 30);
    let entry = entry_of(&cache.sh("echo entry $(ls /c/elixir)"));
    assert!(first.contains("==> greeter"), "{first}");

    // A compiled module changed behind the cache's back.
    cache.sh(&format!(
        "echo garbage >> /c/elixir/{entry}/_build/prod/lib/greeter/ebin/Elixir.Greeter.beam"
    ));
    let second = build(&src, &cache, 1 << 30);
    assert!(
        second.contains(&format!(
            "Cache entry {entry} discarded: 1 file(s) changed since it was sealed"
        )),
        "{second}"
    );
    assert!(second.contains("==> greeter"), "{second}");

    // An entry whose build never finished (no seal) is not used either.
    cache.sh(&format!("rm /c/elixir/{entry}/.seal"));
    let third = build(&src, &cache, 1 << 30);
    assert!(
        third.contains(&format!(
            "Cache entry {entry} discarded: it was not completed"
        )),
        "{third}"
    );
    assert!(third.contains("==> greeter"), "{third}");

    // Sealed again: the next build uses it.
    let fourth = build(&src, &cache, 1 << 30);
    assert!(fourth.contains("Using the build cache"), "{fourth}");
    assert!(!fourth.contains("==> greeter"), "{fourth}");
    // the same sources as the build before (copied afresh, new mtimes): none changed
    let files = fourth
        .lines()
        .find_map(|l| l.trim().strip_prefix("Sources: "))
        .unwrap_or_else(|| panic!("no Sources line:\n{fourth}"));
    assert!(
        files.ends_with(" unchanged, 0 new or changed since the last build")
            && !files.starts_with("0 "),
        "{fourth}"
    );
}
