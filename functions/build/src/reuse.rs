//! A push that changes nothing a build reads reuses the slug that runs: no builder, no
//! compile, and the deploy keeps the running replicas (they already run that slug with
//! that config).
//!
//! "Nothing a build reads": the push's files are those of the build that made the live
//! slug (a new commit of the same tree, e.g. an empty commit or another branch), except
//! documentation no build step looks at — top-level `README*`, `CHANGELOG*`, `LICENSE*`,
//! `*.md` and the like, and `.github/` — provided no other file of the push names it (an
//! `@external_resource "README.md"`, a build hook copying it, a `docs: [extras: ...]` all
//! name it, and then the push builds). The config, the stack and the build's flags must
//! also be what that build had.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// What a source archive holds: path → its kind, mode and content (sha256, or a link's
/// target). Directories are left out (git keeps none of their own).
pub type Manifest = BTreeMap<String, String>;

/// The manifest of the tar archive at `path`.
pub fn manifest(path: &Path) -> std::io::Result<Manifest> {
    let mut archive = tar::Archive::new(std::io::BufReader::new(std::fs::File::open(path)?));
    let mut out = Manifest::new();
    let mut buf = vec![0u8; 1 << 16];
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry_name(&entry)?;
        let header = entry.header();
        let mode = header.mode().unwrap_or(0) & 0o111 != 0;
        let kind = header.entry_type();
        let value = if kind.is_dir() {
            continue;
        } else if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name()?
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("link {target}")
        } else {
            let mut hash = Sha256::new();
            loop {
                let n = entry.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hash.update(&buf[..n]);
            }
            format!("file {mode} {}", hex::encode(hash.finalize()))
        };
        out.insert(name, value);
    }
    Ok(out)
}

fn entry_name<R: Read>(entry: &tar::Entry<R>) -> std::io::Result<String> {
    Ok(entry
        .path()?
        .to_string_lossy()
        .trim_start_matches("./")
        .trim_end_matches('/')
        .to_owned())
}

/// The paths that differ between two manifests (added, removed or changed), sorted.
pub fn changed(before: &Manifest, after: &Manifest) -> Vec<String> {
    let mut out: Vec<String> = after
        .iter()
        .filter(|(path, value)| before.get(*path) != Some(value))
        .map(|(path, _)| path.clone())
        .chain(before.keys().filter(|p| !after.contains_key(*p)).cloned())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Documentation no build step reads by itself: top-level read-me, change log, licence
/// and the like, any top-level `*.md`, and `.github/`.
pub fn is_documentation(path: &str) -> bool {
    if path == ".github" || path.starts_with(".github/") {
        return true;
    }
    if path.contains('/') {
        return false;
    }
    let upper = path.to_ascii_uppercase();
    const NAMES: [&str; 11] = [
        "README",
        "CHANGELOG",
        "CHANGES",
        "HISTORY",
        "LICENSE",
        "LICENCE",
        "CONTRIBUTING",
        "CODE_OF_CONDUCT",
        "AUTHORS",
        "NOTICE",
        "SECURITY",
    ];
    NAMES.iter().any(|n| upper.starts_with(n)) || upper.ends_with(".MD")
}

/// What a file of the push would name `path` by: its own name, or `.github`.
fn named_as(path: &str) -> &str {
    if path.starts_with(".github") {
        ".github"
    } else {
        path
    }
}

/// Why a push whose files are `changed` against the live slug's build must build: `None`
/// when it need not (no change, or documentation that no other file of the archive at
/// `source` names).
pub fn must_build(changed: &[String], source: &Path) -> std::io::Result<Option<String>> {
    if let Some(code) = changed.iter().find(|p| !is_documentation(p)) {
        return Ok(Some(format!("{code} changed")));
    }
    if changed.is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = changed.iter().map(|p| named_as(p)).collect();
    let finders: Vec<memchr::memmem::Finder> = names
        .iter()
        .map(|n| memchr::memmem::Finder::new(n.as_bytes()))
        .collect();
    let mut archive = tar::Archive::new(std::io::BufReader::new(std::fs::File::open(source)?));
    let mut contents = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry_name(&entry)?;
        contents.clear();
        entry.read_to_end(&mut contents)?;
        for (n, finder) in finders.iter().enumerate() {
            // a file naming itself (a read-me's own title) does not count
            if name != changed[n] && finder.find(&contents).is_some() {
                return Ok(Some(format!("{name} names {}", names[n])));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(files: &[(&str, &str)]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp");
        let mut tar = tar::Builder::new(file.reopen().expect("reopen"));
        for (path, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            tar.append_data(&mut h, path, body.as_bytes())
                .expect("append");
        }
        tar.finish().expect("finish");
        file
    }

    fn verdict(before: &[(&str, &str)], after: &[(&str, &str)]) -> Option<String> {
        let (a, b) = (archive(before), archive(after));
        let changed = changed(
            &manifest(a.path()).expect("before"),
            &manifest(b.path()).expect("after"),
        );
        must_build(&changed, b.path()).expect("read")
    }

    const APP: [(&str, &str); 3] = [
        ("mix.exs", "defmodule App.MixProject do end"),
        ("lib/app.ex", "defmodule App do end"),
        ("README.md", "# App\n"),
    ];

    #[test]
    fn the_same_files_need_no_build() {
        assert_eq!(verdict(&APP, &APP), None);
    }

    #[test]
    fn a_read_me_line_needs_no_build_unless_another_file_names_it() {
        let mut after = APP.to_vec();
        after[2] = ("README.md", "# App\n\nNow with docs.\n");
        assert_eq!(verdict(&APP, &after), None);
        after.push((".github/workflows/ci.yml", "on: push"));
        assert_eq!(verdict(&APP, &after), None);
        after[1] = (
            "lib/app.ex",
            "defmodule App do @external_resource \"README.md\" end",
        );
        assert_eq!(verdict(&APP, &after).as_deref(), Some("lib/app.ex changed"));
        let mut named = APP.to_vec();
        named[1] = (
            "lib/app.ex",
            "defmodule App do @doc File.read!(\"README.md\") end",
        );
        let mut edited = named.clone();
        edited[2] = ("README.md", "# App v2\n");
        assert_eq!(
            verdict(&named, &edited).as_deref(),
            Some("lib/app.ex names README.md")
        );
    }

    #[test]
    fn code_config_and_nested_markdown_need_a_build() {
        let mut after = APP.to_vec();
        after.push(("priv/static/notes.md", "served"));
        assert_eq!(
            verdict(&APP, &after).as_deref(),
            Some("priv/static/notes.md changed")
        );
        let removed = &APP[..2];
        assert_eq!(verdict(&APP, removed), None, "a removed read-me");
        let mut config = APP.to_vec();
        config.push(("config/config.exs", "import Config"));
        assert!(verdict(&APP, &config).is_some());
    }

    #[test]
    fn documentation_is_top_level_only() {
        for doc in [
            "README.md",
            "readme",
            "CHANGELOG.md",
            "LICENSE",
            "NOTES.md",
            ".github/x.yml",
        ] {
            assert!(is_documentation(doc), "{doc}");
        }
        for code in [
            "lib/README.md",
            "mix.exs",
            ".tool-versions",
            "Procfile",
            "docs/a.md",
        ] {
            assert!(!is_documentation(code), "{code}");
        }
    }
}
