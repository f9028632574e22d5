//! What happens while git holds the push in its pre-receive hook: pick the ref to deploy,
//! archive the commit with its submodules, record the build, request it, and stream the
//! build and deploy back until they end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use shared::archive::CappedReader;
use shared::domain::{AppName, BuildId, GitSha};
use shared::gitfetch::{GitPolicy, Remote};
use shared::messages::{Envelope, Event};
use shared::model::{Build, BuildFlags, BuildState};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::error::{ReceiveError, Result};
use crate::hook::{HookRequest, RefUpdate, EXIT_PREFIX};
use crate::ReceiveState;

/// How long a push may wait for its build and deploy.
const PUSH_TIMEOUT: Duration = Duration::from_secs(40 * 60);
/// The id git gives a ref that does not exist (before its creation, after its deletion).
const ZERO: &str = "0000000000000000000000000000000000000000";

fn is_zero(sha: &GitSha) -> bool {
    sha.as_str() == ZERO
}

/// The push being received.
pub struct Push {
    /// The app.
    pub app: AppName,
    /// From the request headers.
    pub flags: BuildFlags,
    /// The bare repository.
    pub git_dir: PathBuf,
    /// Trace id for the pipeline's messages.
    pub trace: String,
    /// The holder of the app's push lock: recorded on the build, whose steps stop when it
    /// no longer holds the lock (the receiver died).
    pub pusher: String,
    /// Who pushed: their email, for the app's activity.
    pub actor: String,
    /// Refs that moved while the push waited, with the old id the pusher had seen.
    pub rebased: BTreeMap<String, String>,
}

/// Talks to the hook over `stream` until the push is decided.
pub async fn serve_hook(state: ReceiveState, push: Push, stream: UnixStream) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let request: HookRequest = serde_json::from_str(&line)
        .map_err(|e| ReceiveError::Git(format!("the pre-receive hook sent no request: {e}")))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let work = tokio::spawn(async move { decide(&state, &push, &request, &tx).await });
    while let Some(text) = rx.recv().await {
        write.write_all(text.as_bytes()).await?;
        write.write_all(b"\n").await?;
    }
    let code = work.await.unwrap_or(1);
    write
        .write_all(format!("{EXIT_PREFIX}{code}\n").as_bytes())
        .await?;
    Ok(())
}

type Say = tokio::sync::mpsc::UnboundedSender<String>;

fn say(out: &Say, text: impl Into<String>) {
    let _ = out.send(text.into());
}

async fn decide(state: &ReceiveState, push: &Push, request: &HookRequest, out: &Say) -> u8 {
    let mut deploy: Option<&RefUpdate> = None;
    for update in &request.updates {
        let branch = update.name.strip_prefix("refs/heads/");
        if is_zero(&update.new) {
            say(out, format!("-----> {}: deleted", update.name));
            continue;
        }
        match branch {
            Some("master" | "main") if deploy.is_none() => deploy = Some(update),
            Some("master" | "main") => say(
                out,
                format!(
                    "-----> {}: stored; one deploy per push, the first branch wins",
                    update.name
                ),
            ),
            Some(other) => say(
                out,
                format!("-----> Branch {other} stored, not built: only master and main deploy."),
            ),
            None => say(out, format!("-----> {} stored.", update.name)),
        }
    }
    for update in &request.updates {
        if let Some(seen) = push.rebased.get(&update.name) {
            if is_zero(&update.new) {
                continue;
            }
            let ancestor = is_zero(&update.old)
                || tokio::process::Command::new("git")
                    .args([
                        "merge-base",
                        "--is-ancestor",
                        update.old.as_str(),
                        update.new.as_str(),
                    ])
                    .env("GIT_DIR", &push.git_dir)
                    .envs(&request.env)
                    .status()
                    .await
                    .is_ok_and(|s| s.success());
            let (was, now) = (seen.get(..7).unwrap_or(seen), update.old.short());
            if !ancestor {
                say(out, format!(
                    "error: {} moved from {was} to {now} while this push waited, and this push does not build on it: fetch, merge or rebase, and push again",
                    update.name
                ));
                return 1;
            }
            say(out, format!("-----> {} moved from {was} to {now} while this push waited; this push builds on it", update.name));
        }
    }
    let Some(update) = deploy else {
        return 0;
    };
    match build_and_follow(state, push, update, &request.env, out).await {
        Ok(code) => code,
        Err(err) => {
            tracing::error!(app = %push.app, error = %format!("{err:#}"), "push failed");
            say(
                out,
                format!("error: the platform could not process this push: {err}"),
            );
            1
        }
    }
}

async fn build_and_follow(
    state: &ReceiveState,
    push: &Push,
    update: &RefUpdate,
    env: &BTreeMap<String, String>,
    out: &Say,
) -> Result<u8> {
    let short = update.new.short();
    say(out, format!("-----> Received {short} for {}", push.app));
    if let Some(commit) = interrupted_before(state, &push.app).await {
        let was = commit.get(..7).unwrap_or(&commit);
        say(out, format!("-----> The previous push ({was}) was interrupted by a platform restart: nothing of it was deployed"));
    }
    let archive = match archive_commit(&push.git_dir, &update.new, env, &state.git).await {
        Ok(a) => a,
        Err(why) => {
            say(out, format!("error: {why}"));
            return Ok(1);
        }
    };
    let id = BuildId::random();
    let source = NewBuild {
        app: &push.app,
        id: &id,
        commit: &update.new,
        branch: update.name.trim_start_matches("refs/heads/"),
        flags: push.flags,
        pusher: Some(&push.pusher),
    };
    source.record(state, &archive).await?;
    source.announce(state, &push.trace).await?;
    let activity = shared::model::Activity {
        app: push.app.clone(),
        at: Utc::now(),
        actor: push.actor.clone(),
        action: "push".into(),
        detail: format!("{short} to {}", source.branch),
    };
    if let Err(err) = state.store.add_activity(&activity).await {
        tracing::warn!(error = %err, "push not recorded in the app's activity");
    }
    let mut flags = Vec::new();
    if push.flags.clean {
        flags.push("clean, without the cache");
    }
    if push.flags.hot {
        flags.push("hot upgrade requested");
    }
    let extra = if flags.is_empty() {
        String::new()
    } else {
        format!(" ({})", flags.join(", "))
    };
    say(out, format!("-----> Building {short}{extra}"));
    follow(state, push, &id, out).await
}

/// The commit of the app's last build if a platform restart cut it off (it ended, or will
/// end when its step comes again, as [`shared::push::PUSH_INTERRUPTED`]).
async fn interrupted_before(state: &ReceiveState, app: &AppName) -> Option<String> {
    let last = state
        .store
        .builds_of(app)
        .await
        .ok()?
        .into_iter()
        .max_by_key(|b| b.created_at)?;
    let cut = match last.state {
        BuildState::Failed => last.failure.as_deref() == Some(shared::push::PUSH_INTERRUPTED),
        BuildState::Deployed => false,
        _ => shared::locks::pusher_gone(&*state.store, &last)
            .await
            .unwrap_or(false),
    };
    cut.then_some(last.commit)
}

/// A build to record: the pushed commit of an app.
pub struct NewBuild<'a> {
    /// The app.
    pub app: &'a AppName,
    /// The build's id (random for a push, derived from the delivery for a webhook).
    pub id: &'a BuildId,
    /// The commit.
    pub commit: &'a GitSha,
    /// The branch, without `refs/heads/`.
    pub branch: &'a str,
    /// `GIGALIXIR-CLEAN`, `GIGALIXIR-HOT`.
    pub flags: BuildFlags,
    /// The push lock's holder whose client waits for the build (`None`: a webhook's).
    pub pusher: Option<&'a str>,
}

impl NewBuild<'_> {
    /// Stores the source archive and records the build as requested. A build with this id
    /// already recorded is [`PortError::AlreadyExists`](shared::PortError::AlreadyExists).
    pub async fn record(
        &self,
        state: &ReceiveState,
        archive: &SourceArchive,
    ) -> shared::PortResult<()> {
        state
            .blobs
            .put_stream(
                &shared::blob_keys::source(self.app, self.id),
                archive.stream().await?,
            )
            .await?;
        let now = Utc::now();
        state
            .store
            .create_build(&Build {
                id: self.id.clone(),
                app: self.app.clone(),
                commit: self.commit.to_string(),
                branch: self.branch.to_owned(),
                flags: self.flags,
                state: BuildState::Requested,
                failure: None,
                slug: None,
                created_at: now,
                updated_at: now,
                stack: None,
                history: Vec::new(),
                pusher: self.pusher.map(str::to_owned),
            })
            .await
    }

    /// Publishes `build-requested` for it.
    pub async fn announce(&self, state: &ReceiveState, trace: &str) -> shared::PortResult<()> {
        let event = Event::BuildRequested {
            app: self.app.clone(),
            build: self.id.clone(),
        };
        state
            .bus
            .publish(&event.topic(), &Envelope::event(&event, Some(trace)))
            .await?;
        Ok(())
    }
}

/// How long a build may wait for its builder before the pusher is told it is queued.
const QUEUED_AFTER: Duration = Duration::from_secs(1);

/// Streams the build's log until the build is deployed or failed.
async fn follow(state: &ReceiveState, push: &Push, id: &BuildId, out: &Say) -> Result<u8> {
    let started = tokio::time::Instant::now();
    let deadline = started + PUSH_TIMEOUT;
    let mut seen = 0;
    let mut said_queued = false;
    // Woken by the store when a build changes (the embedded one tells; any build's change,
    // so at most every 20 ms: other apps' busy builds cost this one few reads), else every
    // 100 ms.
    let mut changes = state.store.build_changes();
    loop {
        if let Some(changes) = changes.as_mut() {
            changes.borrow_and_update();
        }
        let polled = tokio::time::Instant::now();
        let lines = state
            .store
            .build_log(id, seen, 500)
            .await
            .unwrap_or_default();
        let full = lines.len() == 500;
        for (n, line) in lines {
            seen = n;
            say(out, line);
        }
        if full {
            continue;
        }
        let build = state.store.build(id).await?;
        match build.state {
            BuildState::Deployed | BuildState::Failed => {
                for (_, line) in state
                    .store
                    .build_log(id, seen, 10_000)
                    .await
                    .unwrap_or_default()
                {
                    say(out, line);
                }
                if build.state == BuildState::Failed {
                    let why = build.failure.unwrap_or_else(|| "the build failed".into());
                    say(out, format!("error: push rejected: {why}"));
                    return Ok(1);
                }
                let version = state
                    .store
                    .releases(&push.app)
                    .await?
                    .into_iter()
                    .find(|r| r.spec.build.as_ref() == Some(id))
                    .map(|r| r.version.to_string())
                    .unwrap_or_default();
                let url = state.app_url(&push.app);
                say(out, format!("-----> Deployed {version} to {url}"));
                return Ok(0);
            }
            // Builds run a few at a time across apps; the rest wait in order.
            BuildState::Requested if !said_queued && started.elapsed() > QUEUED_AFTER => {
                say(out, "-----> Queued: other builds are running; this one starts when a builder is free");
                said_queued = true;
            }
            _ => {}
        }
        if tokio::time::Instant::now() > deadline {
            // Once this push lets its lock go, the build's next step ends it.
            say(out, "error: the build and deploy took longer than 40 minutes: the push is abandoned and nothing of it is deployed");
            return Ok(1);
        }
        let poll = Duration::from_millis(100);
        match changes.as_mut() {
            Some(rx) => {
                if let Ok(Err(_)) = tokio::time::timeout(poll, rx.changed()).await {
                    changes = None; // the store went: poll
                }
                tokio::time::sleep_until(polled + Duration::from_millis(20)).await;
            }
            None => tokio::time::sleep(poll).await,
        }
    }
}

/// Largest source archive a push makes: the commit's files and every submodule's.
pub const MAX_SOURCE_BYTES: u64 = 1 << 30;
/// Largest listing (`ls-tree`, `.gitmodules`) read from a pushed repository.
const MAX_LISTING_BYTES: u64 = 64 << 20;

/// The tar a source archive is written as.
type SourceTar = tar::Builder<std::io::BufWriter<std::fs::File>>;

/// Runs git on the local repository `git_dir` (none of the platform's environment or
/// config; `env`: the push's quarantine), handing its standard output to `read`; blocking.
/// When `read` fails, git is stopped and that error is the answer.
fn git_reading<T>(
    git_dir: &Path,
    env: &BTreeMap<String, String>,
    args: &[&str],
    read: impl FnOnce(&mut std::process::ChildStdout) -> std::io::Result<T>,
) -> Result<T, String> {
    use std::io::{Read, Seek};
    let mut errors = tempfile::tempfile().map_err(|e| format!("could not run git: {e}"))?;
    let mut child = shared::gitfetch::local_git_command(git_dir)
        .envs(env)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(
            errors
                .try_clone()
                .map_err(|e| format!("could not run git: {e}"))?,
        )
        .spawn()
        .map_err(|e| format!("could not run git: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("git gave no output")?;
    let read = read(&mut stdout);
    if read.is_ok() {
        // A tar reader stops at the end marker, and git pads its tar past it: read the rest
        // (a few kB), so that git does not die writing into a closed pipe.
        let _ = std::io::copy(&mut (&mut stdout).take(1 << 20), &mut std::io::sink());
    } else {
        let _ = child.kill();
    }
    drop(stdout);
    let status = child.wait().map_err(|e| format!("git: {e}"))?;
    let value = read.map_err(|e| e.to_string())?;
    if status.success() {
        return Ok(value);
    }
    let mut text = String::new();
    let _ = errors.rewind();
    let _ = errors.take(4096).read_to_string(&mut text);
    Err(format!(
        "git {} failed: {}",
        args.first().copied().unwrap_or_default(),
        text.trim()
    ))
}

/// A small output of git on the local repository (a listing), refused past
/// [`MAX_LISTING_BYTES`].
async fn git_output(
    args: &[&str],
    git_dir: &Path,
    env: &BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let (git_dir, env) = (git_dir.to_owned(), env.clone());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        git_reading(&git_dir, &env, &args, |out| {
            let mut listing = Vec::new();
            std::io::Read::read_to_end(
                &mut CappedReader::new(
                    out,
                    MAX_LISTING_BYTES,
                    format!("the output of git {}", args[0]),
                ),
                &mut listing,
            )?;
            Ok(listing)
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Appends the tree of `commit` under `prefix` to `out`, reading at most `budget` bytes of
/// git's tar of it; the tar and how much of the budget it used.
async fn append_tree(
    mut out: SourceTar,
    git_dir: &Path,
    commit: &str,
    env: &BTreeMap<String, String>,
    prefix: &str,
    budget: u64,
) -> Result<(SourceTar, u64), String> {
    let (git_dir, commit, env, prefix) = (
        git_dir.to_owned(),
        commit.to_owned(),
        env.clone(),
        prefix.to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        let mut used = 0;
        git_reading(
            &git_dir,
            &env,
            &["archive", "--format=tar", &commit],
            |tree| {
                let mut capped = CappedReader::new(tree, budget, "the pushed files");
                let copied = shared::archive::copy_tar(&mut capped, &prefix, None, &mut out);
                used = capped.read_so_far();
                match copied {
                    Err(_) if used > budget => Err(std::io::Error::other(format!(
                        "the pushed files (submodules included) are larger than {}",
                        shared::ports::blobs::size_text(MAX_SOURCE_BYTES)
                    ))),
                    Err(e) => Err(std::io::Error::other(format!(
                        "could not write the archive: {e}"
                    ))),
                    Ok(()) => Ok(()),
                }
            },
        )?;
        Ok((out, used))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A push's source archive, in a local file until it is stored; removed when dropped.
pub struct SourceArchive {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SourceArchive {
    /// The archive as a stream of its bytes, for the blob store.
    pub async fn stream(&self) -> shared::PortResult<shared::ports::blobs::ByteStream> {
        use futures::TryStreamExt;
        let file = tokio::fs::File::open(&self.path)
            .await
            .map_err(shared::PortError::unavailable)?;
        Ok(Box::pin(
            tokio_util::io::ReaderStream::new(file).map_err(shared::PortError::unavailable),
        ))
    }
}

/// A tar of the commit's tree with every submodule's tree in place, recursively, written
/// to a local file and refused past [`MAX_SOURCE_BYTES`] while git writes it; each
/// submodule is fetched under the platform's rules for git URLs ([`GitPolicy`]).
pub async fn archive_commit(
    git_dir: &Path,
    commit: &GitSha,
    env: &BTreeMap<String, String>,
    policy: &GitPolicy,
) -> Result<SourceArchive, String> {
    let failed = |e: std::io::Error| format!("could not write the archive: {e}");
    let dir = tempfile::Builder::new()
        .prefix("gx-archive-")
        .tempdir()
        .map_err(failed)?;
    let path = dir.path().join("source.tar");
    let file = std::fs::File::create(&path).map_err(failed)?;
    let mut archive = Writing {
        out: Some(tar::Builder::new(std::io::BufWriter::new(file))),
        budget: MAX_SOURCE_BYTES,
    };
    let tree = Tree {
        git_dir,
        commit: commit.as_str(),
        env,
        prefix: "",
        depth: 0,
    };
    add_tree(tree, policy, &mut archive).await?;
    let out = archive.out.ok_or("the archive was lost")?;
    tokio::task::spawn_blocking(move || {
        let mut file = out.into_inner()?;
        std::io::Write::flush(&mut file)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(failed)?;
    Ok(SourceArchive { _dir: dir, path })
}

/// A tree to put into the archive: `commit` of the repository at `git_dir` (read with
/// `env`), under `prefix`, `depth` submodules down.
struct Tree<'a> {
    git_dir: &'a Path,
    commit: &'a str,
    env: &'a BTreeMap<String, String>,
    prefix: &'a str,
    depth: u32,
}

/// The archive being written, and how much more of the pushed files it may take.
struct Writing {
    out: Option<SourceTar>,
    budget: u64,
}

/// Appends `tree` and, recursively, its submodules (fetched under `policy`) to `archive`.
fn add_tree<'a>(
    tree: Tree<'a>,
    policy: &'a GitPolicy,
    archive: &'a mut Writing,
) -> futures::future::BoxFuture<'a, Result<(), String>> {
    let Tree {
        git_dir,
        commit,
        env,
        prefix,
        depth,
    } = tree;
    Box::pin(async move {
        if depth > 8 {
            return Err("submodules nest deeper than 8 levels".into());
        }
        let tar = archive.out.take().ok_or("the archive was lost")?;
        let (tar, used) = append_tree(tar, git_dir, commit, env, prefix, archive.budget).await?;
        archive.out = Some(tar);
        archive.budget = archive.budget.saturating_sub(used);
        let listing = git_output(&["ls-tree", "-r", commit], git_dir, env).await?;
        let gitlinks: Vec<(String, String)> = String::from_utf8_lossy(&listing)
            .lines()
            .filter_map(|l| {
                let (meta, path) = l.split_once('\t')?;
                let mut m = meta.split_whitespace();
                (m.next()? == "160000").then_some(())?;
                m.next()?;
                Some((m.next()?.to_owned(), path.to_owned()))
            })
            .collect();
        if gitlinks.is_empty() {
            return Ok(());
        }
        let modules = git_output(
            &[
                "config",
                "--blob",
                &format!("{commit}:.gitmodules"),
                "--get-regexp",
                r"^submodule\..*\.(path|url)$",
            ],
            git_dir,
            env,
        )
        .await
        .map_err(|_| "the commit has submodules but no readable .gitmodules".to_owned())?;
        let mut paths = BTreeMap::new();
        let mut urls = BTreeMap::new();
        for line in String::from_utf8_lossy(&modules).lines() {
            let Some((key, value)) = line.split_once(' ') else {
                continue;
            };
            let key = key.trim_start_matches("submodule.");
            if let Some(name) = key.strip_suffix(".path") {
                paths.insert(value.to_owned(), name.to_owned());
            } else if let Some(name) = key.strip_suffix(".url") {
                urls.insert(name.to_owned(), value.to_owned());
            }
        }
        for (sub_commit, path) in gitlinks {
            let url = paths
                .get(&path)
                .and_then(|name| urls.get(name))
                .ok_or_else(|| format!("submodule {prefix}{path} has no url in .gitmodules"))?;
            if url.starts_with("./") || url.starts_with("../") {
                return Err(format!("submodule {prefix}{path}: relative URLs ({url}) are not supported; use an absolute URL"));
            }
            let dir = tempfile::Builder::new()
                .prefix("gx-submodule-")
                .tempdir()
                .map_err(|e| e.to_string())?;
            let remote = Remote::check(url, policy)
                .await
                .map_err(|why| format!("submodule {prefix}{path}: {why}"))?;
            remote
                .fetch_commit(
                    policy,
                    &dir.path().join("repo.git"),
                    &sub_commit,
                    None,
                    dir.path(),
                )
                .await
                .map_err(|why| format!("could not fetch submodule {prefix}{path}: {why}"))?;
            let sub_dir = dir.path().join("repo.git");
            let nested = format!("{prefix}{path}/");
            let no_env = BTreeMap::new();
            let sub = Tree {
                git_dir: &sub_dir,
                commit: &sub_commit,
                env: &no_env,
                prefix: &nested,
                depth: depth + 1,
            };
            add_tree(sub, policy, archive)
                .await
                .map_err(|e| format!("submodule {prefix}{path}: {e}"))?;
            // The submodule's repository goes as soon as its tree is in the archive.
            drop(dir);
        }
        Ok(())
    })
}
