//! What the platform decides and fetches before a build starts, from a few files of the
//! pushed tree: the stack (the app's own, else the one with the versions it asks for), the
//! Hex packages its mix.lock pins (each checked against the package cache, which fetches
//! what it lacks), its git dependencies and asset tools (fetched by the platform under its
//! egress rules). A push that cannot build fails here, before any container starts, with
//! the reason for the pusher.

use std::collections::BTreeMap;

use bytes::Bytes;
use sha2::Digest;
use shared::domain::BuildId;
use shared::mixlock::{self, MixLock};
use shared::model::App;
use shared::stack::{self, Request, Stack};

use crate::StepState;

/// Files of the pushed tree the platform reads.
const FILES: &[&str] = &[
    "mix.exs",
    "mix.lock",
    ".tool-versions",
    "elixir_buildpack.config",
    ".buildpacks",
    "config/config.exs",
    "assets/package.json",
];
/// Larger ones are not read.
const MAX_FILE: u64 = 1 << 20;

/// The build's stack and the files handed to it beside its source.
#[derive(Debug)]
pub struct Prepared {
    /// The stack it builds on.
    pub stack: Stack,
    /// A tar rooted at `/build`: `hex/`, `gitdeps/`, `tools/`.
    pub extra: Bytes,
}

/// Why a build does not start.
#[derive(Debug)]
pub enum NotReady {
    /// The push cannot build as it is; for the pusher.
    Refused(String),
    /// Try again later (a backend failed).
    Transient(String),
}

/// The files the platform reads, by path (absent: not in the tree, or too large).
pub struct Tree(BTreeMap<String, String>);

impl Tree {
    /// Reads them from the source archive.
    pub fn read(source: impl std::io::Read) -> Result<Tree, NotReady> {
        let files = shared::archive::small_files(source, FILES, MAX_FILE)
            .map_err(|e| NotReady::Refused(format!("the source archive is unreadable: {e}")))?;
        // what the platform holds the build to cannot be skipped by making it large
        for held in ["mix.lock", "mix.exs"] {
            if files.get(held).is_some_and(Option::is_none) {
                return Err(NotReady::Refused(format!(
                    "{held} must be a regular file of at most {} MB",
                    MAX_FILE >> 20
                )));
            }
        }
        Ok(Tree(
            files
                .into_iter()
                .filter_map(|(k, v)| Some((k, String::from_utf8_lossy(&v?).into_owned())))
                .collect(),
        ))
    }

    /// One file's text.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.0.get(path).map(String::as_str)
    }
}

/// Appends lines to the build's log (what the pusher sees).
pub async fn say(state: &StepState, id: &BuildId, lines: Vec<String>) {
    if let Err(err) = state.store.append_build_log(id, &lines).await {
        tracing::warn!(error = %err, "build output lines lost");
    }
}

/// The pushed tree, and the stack its build takes (the app's own, else the one with the
/// versions it asks for).
pub async fn stack_choice(
    state: &StepState,
    app: &App,
    source: &std::path::Path,
) -> Result<(Tree, stack::Choice), NotReady> {
    let path = source.to_owned();
    let tree = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)
            .map_err(|e| NotReady::Transient(format!("reading the source archive: {e}")))?;
        Tree::read(std::io::BufReader::new(file))
    })
    .await
    .map_err(|e| NotReady::Transient(e.to_string()))??;
    // --- the stack ---
    let request = Request::from_files(
        tree.get("elixir_buildpack.config"),
        tree.get(".tool-versions"),
        tree.get("mix.exs"),
    );
    let built = state
        .builder
        .stacks()
        .await
        .map_err(|e| NotReady::Transient(format!("listing the stacks: {e}")))?;
    let choice = stack::choose(app.stack, &request, &built).map_err(NotReady::Refused)?;
    Ok((tree, choice))
}

/// Decides and fetches what the build needs.
pub async fn prepare(
    state: &StepState,
    app: &App,
    id: &BuildId,
    source: &std::path::Path,
) -> Result<Prepared, NotReady> {
    let (tree, choice) = stack_choice(state, app, source).await?;
    let mut lines = Vec::new();
    let mut first = true;
    for line in &choice.lines {
        lines.push(if first {
            format!("-----> {line}")
        } else {
            format!("       {line}")
        });
        first = false;
    }
    say(state, id, lines).await;
    let stack = choice.stack.stack;

    // --- what mix.lock pins ---
    let lock = match tree.get("mix.lock") {
        Some(text) => mixlock::parse(text).map_err(|e| {
            NotReady::Refused(format!(
                "{e}: mix.lock must be the map Mix writes (run `mix deps.get` and commit mix.lock)"
            ))
        })?,
        None => MixLock::default(),
    };
    let mut extra = tar::Builder::new(Vec::new());
    if !lock.hex.is_empty() {
        hex_packages(state, id, &lock, &choice.stack, &mut extra).await?;
    }
    if !lock.git.is_empty() {
        git_deps(state, id, &lock, &mut extra).await?;
    }
    assets(state, id, &tree, &lock, &mut extra).await?;
    let extra = if extra.get_ref().is_empty() {
        Vec::new()
    } else {
        extra
            .into_inner()
            .map_err(|e| NotReady::Transient(format!("writing the build's inputs: {e}")))?
    };
    Ok(Prepared {
        stack,
        extra: Bytes::from(extra),
    })
}

/// Checks the locked Hex packages against the package cache (which fetches what it
/// lacks), so that the build's `mix deps.get` finds each one, verified, in the cache.
async fn hex_packages(
    state: &StepState,
    id: &BuildId,
    lock: &MixLock,
    stack: &stack::StackVersions,
    extra: &mut tar::Builder<Vec<u8>>,
) -> Result<(), NotReady> {
    let names = lock
        .hex
        .iter()
        .map(|h| h.dep.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if stack.hex.is_none() {
        return Err(NotReady::Refused(format!(
            "this app depends on Hex packages ({names}), and stack {} has no Hex client (Debian packages none for it): move the app to trixie (Elixir 1.18, OTP 27), e.g. `elixir 1.18` in .tool-versions or `gigalixir stack:set -s trixie`",
            stack.stack
        )));
    }
    let Some(cache) = &state.hex else {
        return Err(NotReady::Refused(format!(
            "this app depends on Hex packages ({names}), and this platform runs without a package cache"
        )));
    };
    say(
        state,
        id,
        vec![format!(
            "-----> Checking {} Hex package{} of mix.lock against the package cache",
            lock.hex.len(),
            if lock.hex.len() == 1 { "" } else { "s" }
        )],
    )
    .await;
    let started = std::time::Instant::now();
    let report = cache.check_lock(&lock.hex).await;
    if !report.failures.is_empty() {
        let mut lines: Vec<String> = report
            .failures
            .iter()
            .map(|f| format!(" !     {f}"))
            .collect();
        lines.push(" !     Nothing was built. Fix mix.lock (`mix deps.get` against hex.pm, then commit it) and push again.".into());
        say(state, id, lines).await;
        return Err(NotReady::Refused(if report.failures.len() == 1 {
            report.failures[0].clone()
        } else {
            format!(
                "{} Hex packages of mix.lock cannot be used: {}",
                report.failures.len(),
                report.failures.join("; ")
            )
        }));
    }
    let mut lines = vec![format!(
        "       {} package{} verified against mix.lock in {:.1}s",
        lock.hex.len(),
        if lock.hex.len() == 1 { "" } else { "s" },
        started.elapsed().as_secs_f64()
    )];
    if !report.stale.is_empty() {
        let oldest = report
            .stale
            .iter()
            .map(|(_, age)| *age)
            .max()
            .unwrap_or_default();
        lines.push(format!(
            " !     Warning: the Hex repository ({}) did not answer; the package cache's copy of the registry (up to {} min old) serves {}",
            cache.settings().upstream,
            oldest.as_secs().div_ceil(60),
            report.stale.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    say(state, id, lines).await;
    if cache.settings().custom_key {
        append(
            extra,
            "hex/public_key.pem",
            cache.settings().public_key.as_bytes(),
            0o644,
        )
        .map_err(|e| NotReady::Transient(format!("writing the build's inputs: {e}")))?;
    }
    Ok(())
}

/// Fetches each locked git dependency at its commit (kept in the blob store by URL,
/// commit and sparse path) and hands it to the build as `gitdeps/NAME/`, a checkout with
/// its `.git` as Mix leaves one: `remote.origin.url` the locked URL, `HEAD` the commit.
async fn git_deps(
    state: &StepState,
    id: &BuildId,
    lock: &MixLock,
    extra: &mut tar::Builder<Vec<u8>>,
) -> Result<(), NotReady> {
    say(
        state,
        id,
        vec![format!(
            "-----> Fetching {} git dependenc{} at their locked commits",
            lock.git.len(),
            if lock.git.len() == 1 { "y" } else { "ies" }
        )],
    )
    .await;
    for dep in &lock.git {
        if !valid_dep_name(&dep.dep) {
            return Err(NotReady::Refused(format!(
                "mix.lock names a dependency `{}`, which is not a dependency name",
                dep.dep.escape_debug()
            )));
        }
        if dep.opts.get("submodules").is_some_and(|v| v == "true") {
            return Err(NotReady::Refused(format!(
                "git dependency {}: `submodules: true` is not supported yet",
                dep.dep
            )));
        }
        let sparse = dep.opts.get("sparse").cloned().unwrap_or_default();
        let key = shared::blob_keys::git_dependency(
            &hex::encode(sha2::Sha256::digest(dep.url.as_bytes())),
            &dep.rev.to_ascii_lowercase(),
            &hex::encode(sha2::Sha256::digest(sparse.as_bytes()))[..12],
        );
        let (tar, how) = match state.blobs.get(&key).await {
            Ok(tar) => (tar, "kept"),
            Err(shared::PortError::NotFound) => {
                let tar = checkout(state, dep).await?;
                state.blobs.put(&key, tar.clone()).await.map_err(|e| {
                    NotReady::Transient(format!("keeping git dependency {}: {e}", dep.dep))
                })?;
                (tar, "fetched")
            }
            Err(err) => return Err(NotReady::Transient(err.to_string())),
        };
        shared::archive::copy_tar(&tar[..], &format!("gitdeps/{}/", dep.dep), None, extra)
            .map_err(|e| NotReady::Transient(format!("writing the build's inputs: {e}")))?;
        let mut what = vec![format!("{}", shared::gitfetch::shown(&dep.url))];
        for k in ["branch", "tag", "ref", "sparse"] {
            if let Some(v) = dep.opts.get(k) {
                what.push(format!("{k} {v}"));
            }
        }
        say(
            state,
            id,
            vec![format!(
                "       {} {} ({how}): {}",
                dep.dep,
                &dep.rev[..dep.rev.len().min(7)],
                what.join(", ")
            )],
        )
        .await;
    }
    Ok(())
}

/// Mix's dependency names: atoms as mix.exs writes them.
fn valid_dep_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One git dependency checked out at its commit, as a tar of the checkout with `.git`.
async fn checkout(state: &StepState, dep: &mixlock::GitLock) -> Result<Bytes, NotReady> {
    let refused = |why: String| NotReady::Refused(format!("git dependency {}: {why}", dep.dep));
    let remote = shared::gitfetch::Remote::check(&dep.url, &state.git)
        .await
        .map_err(refused)?;
    let scratch = tempfile::Builder::new()
        .prefix("gx-gitdep-")
        .tempdir()
        .map_err(|e| NotReady::Transient(e.to_string()))?;
    let dest = scratch.path().join("dep");
    let git_dir = dest.join(".git");
    let local = |args: Vec<String>| {
        let (dest, git_dir) = (dest.clone(), git_dir.clone());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            shared::gitfetch::local_git_in(&args, &git_dir, Some(&dest))
                .await
                .map(drop)
        }
    };
    std::fs::create_dir_all(&dest).map_err(|e| NotReady::Transient(e.to_string()))?;
    local(vec!["init".into(), "--quiet".into()])
        .await
        .map_err(NotReady::Transient)?;
    local(vec![
        "config".into(),
        "remote.origin.url".into(),
        dep.url.clone(),
    ])
    .await
    .map_err(NotReady::Transient)?;
    let hint = if let Some(b) = dep.opts.get("branch") {
        Some(format!("refs/heads/{b}"))
    } else if let Some(t) = dep.opts.get("tag") {
        Some(format!("refs/tags/{t}"))
    } else {
        dep.opts.get("ref").map(|r| {
            if r.starts_with("refs/") {
                r.clone()
            } else {
                format!("refs/heads/{r}")
            }
        })
    };
    remote
        .fetch_commit(
            &state.git,
            &git_dir,
            &dep.rev,
            hint.as_deref(),
            scratch.path(),
        )
        .await
        .map_err(refused)?;
    if let Some(sparse) = dep.opts.get("sparse") {
        let path = sparse.trim_matches('/');
        if path.is_empty() || path.split('/').any(|p| p == ".." || p == ".") {
            return Err(refused(format!(
                "`sparse: {sparse}` is not a path inside the repository"
            )));
        }
        local(vec![
            "config".into(),
            "core.sparseCheckout".into(),
            "true".into(),
        ])
        .await
        .map_err(NotReady::Transient)?;
        std::fs::create_dir_all(git_dir.join("info"))
            .map_err(|e| NotReady::Transient(e.to_string()))?;
        std::fs::write(git_dir.join("info/sparse-checkout"), format!("/{path}/\n"))
            .map_err(|e| NotReady::Transient(e.to_string()))?;
    }
    local(vec![
        "checkout".into(),
        "--quiet".into(),
        "--detach".into(),
        dep.rev.clone(),
    ])
    .await
    .map_err(|why| refused(format!("checking out {}: {why}", dep.rev)))?;
    let max = state.git.max_bytes;
    if shared::gitfetch::dir_size(&dest) > max {
        return Err(refused(format!(
            "the checkout is larger than {} MB",
            max >> 20
        )));
    }
    tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        let mut out = tar::Builder::new(Vec::new());
        // the repository's symlinks stay symlinks: never the platform's files they point at
        out.follow_symlinks(false);
        out.append_dir_all(".", &dest)?;
        out.into_inner()
    })
    .await
    .map_err(|e| NotReady::Transient(e.to_string()))?
    .map(Bytes::from)
    .map_err(|e| NotReady::Transient(format!("archiving git dependency {}: {e}", dep.dep)))
}

/// The asset tools the build needs (fetched by the platform) and npm's packages (refused
/// unless the operator allows npm).
async fn assets(
    state: &StepState,
    id: &BuildId,
    tree: &Tree,
    lock: &MixLock,
    extra: &mut tar::Builder<Vec<u8>>,
) -> Result<(), NotReady> {
    if let Some(json) = tree.get("assets/package.json") {
        let packages = crate::tools::npm_packages(json).map_err(NotReady::Refused)?;
        if !packages.is_empty() && !state.npm {
            return Err(NotReady::Refused(format!(
                "assets/package.json lists npm packages ({}), and this platform does not run `npm install` (its operator can allow it with --npm-access): vendor them under assets/vendor, or use the Hex packages Phoenix uses (esbuild, tailwind)",
                packages.join(", ")
            )));
        }
    }
    let needs =
        crate::tools::needs(lock, tree.get("config/config.exs")).map_err(NotReady::Refused)?;
    for need in needs {
        let (bin, how) = crate::tools::fetch(&*state.blobs, &state.tools, &need)
            .await
            .map_err(NotReady::Refused)?;
        append(extra, &format!("tools/{}", need.file), &bin, 0o755)
            .map_err(|e| NotReady::Transient(format!("writing the build's inputs: {e}")))?;
        say(state, id, vec![format!("-----> Asset tool {how}")]).await;
    }
    Ok(())
}

/// Adds one file, owned by whoever builds, to a tar of build inputs.
pub fn append(
    out: &mut tar::Builder<Vec<u8>>,
    path: &str,
    data: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_mtime(0);
    out.append_data(&mut h, path, data)
}
