//! The `build` function. Trigger: `build-requested` (Pub/Sub push to `POST /`, or a pull
//! loop on build workers, which need a Docker engine). Step: decide and fetch what the
//! build needs ([`prepare`]: the stack, the Hex packages of mix.lock through the package
//! cache, git dependencies, asset tools; a push that cannot build fails there), then run
//! the buildpacks on the build's source archive in an isolated container of the stack's
//! builder (the [`Builder`] port), with the app's cache and config, appending every output
//! line to the build's log as it appears.
//! Emits: `slug-built` (the slug waits in the build container for `upload`), or
//! `slug-uploaded` for a push that changes nothing a build reads ([`reuse`]: the running
//! slug is reused, no builder runs).
//!
//! Idempotent, level-triggered on the build's state: `requested` starts the build,
//! `building` rejoins it (the builder finds the container by build id), `built` only
//! re-publishes, anything later is acked as done.

pub mod prepare;
pub mod reuse;
pub mod tools;
pub mod turns;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use futures::StreamExt;
use shared::domain::{AppName, BuildId};
use shared::hex::HexCache;
use shared::messages::Event;
use shared::model::{App, Build, BuildState, Release, ReleaseStatus};
use shared::ports::builder::{BuildExit, BuildLimits, BuildSpec};
use shared::ports::{Blobs, Builder, Bus, Store};
use shared::push::{
    emit, fail_build, fail_pending_releases, required, step_router, stop_if_push_gone, unexpected,
    StepError,
};
use shared::stack::Stack;
use shared::PortError;

use prepare::NotReady;

/// The largest source archive a build reads (what receive stores is at most 1 GB).
pub const MAX_SOURCE_BYTES: u64 = 1 << 30;
/// The largest kept build cache a build is seeded from (what upload keeps is at most 2 GB).
pub const MAX_CACHE_SEED_BYTES: u64 = 2 << 30;
/// Largest running slug handed to a hot push's build.
pub const MAX_PREVIOUS_SLUG_BYTES: u64 = 1 << 30;

/// For a hot push (`GIGALIXIR-HOT`): the slug of the release that runs, on the same stack,
/// in a local file, for the buildpacks to prepare an upgrade from. `None` when nothing runs
/// (the deploy then says why the push cannot be hot).
async fn running_slug(
    state: &StepState,
    app: &AppName,
    hot: bool,
    stack: Stack,
) -> Result<Option<tempfile::NamedTempFile>, StepError> {
    if !hot {
        return Ok(None);
    }
    let running = state
        .store
        .releases(app)
        .await?
        .into_iter()
        .find(|r| r.status == ReleaseStatus::Deployed);
    let Some(running) = running.filter(|r| r.spec.slug.stack() == stack) else {
        return Ok(None);
    };
    match spool_blob(
        &*state.blobs,
        &running.spec.slug.key,
        MAX_PREVIOUS_SLUG_BYTES,
    )
    .await
    {
        Ok(file) => Ok(Some(file)),
        Err(PortError::NotFound | PortError::Invalid(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Streams the blob `key` into a temporary file (removed when dropped), refused
/// ([`PortError::Invalid`]) past `cap` bytes.
async fn spool_blob(
    blobs: &dyn Blobs,
    key: &str,
    cap: u64,
) -> shared::PortResult<tempfile::NamedTempFile> {
    use tokio::io::AsyncWriteExt;
    let mut stream = shared::ports::blobs::capped(blobs.get_stream(key).await?, cap);
    let spool = tempfile::NamedTempFile::new().map_err(PortError::unavailable)?;
    let mut file = tokio::fs::File::from_std(spool.reopen().map_err(PortError::unavailable)?);
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk?)
            .await
            .map_err(PortError::unavailable)?;
    }
    file.flush().await.map_err(PortError::unavailable)?;
    Ok(spool)
}

/// The ports the step uses.
#[derive(Clone)]
pub struct StepState {
    /// Builds, apps, logs.
    pub store: Arc<dyn Store>,
    /// Where `slug-built` goes.
    pub bus: Arc<dyn Bus>,
    /// Source archives and caches.
    pub blobs: Arc<dyn Blobs>,
    /// Runs the buildpacks.
    pub builder: Arc<dyn Builder>,
    /// Limits of each build.
    pub limits: BuildLimits,
    /// The Hex package cache builds fetch from; `None`: apps with Hex packages cannot build.
    pub hex: Option<HexCache>,
    /// The rules for the git dependencies the platform fetches.
    pub git: shared::gitfetch::GitPolicy,
    /// Where asset tools may come from.
    pub tools: tools::ToolPolicy,
    /// Whether apps with npm packages may build as they are (else they are refused).
    pub npm: bool,
    /// Whose build runs when: a few at once, one per account.
    pub turns: Arc<turns::Turns>,
}

/// The function's router: the push endpoint and a health check.
pub fn router(state: StepState) -> Router {
    step_router(state, |state, event, trace| async move {
        match event {
            Event::BuildRequested { app, build } => {
                run_build(&state, &app, &build, trace.as_deref()).await
            }
            other => Err(unexpected("build", &other)),
        }
    })
}

async fn publish_built(
    state: &StepState,
    app: &AppName,
    build: &BuildId,
    trace: Option<&str>,
) -> Result<(), StepError> {
    let event = Event::SlugBuilt {
        app: app.clone(),
        build: build.clone(),
    };
    emit(&*state.bus, &event, trace).await?;
    Ok(())
}

/// Announces the slug of a build that is `uploaded` (again: what follows is idempotent).
async fn publish_uploaded(
    state: &StepState,
    build: &Build,
    trace: Option<&str>,
) -> Result<(), StepError> {
    let Some(slug) = build.slug.clone() else {
        return Ok(());
    };
    let event = Event::SlugUploaded {
        app: build.app.clone(),
        build: build.id.clone(),
        slug,
    };
    emit(&*state.bus, &event, trace).await?;
    Ok(())
}

/// Runs one build to its end.
#[tracing::instrument(skip_all, fields(app = %app, build = %id))]
pub async fn run_build(
    state: &StepState,
    app: &AppName,
    id: &BuildId,
    trace: Option<&str>,
) -> Result<(), StepError> {
    let build = required(state.store.build(id).await, "the build")?;
    stop_if_gone(state, &build).await?;
    match build.state {
        BuildState::Requested | BuildState::Building => {}
        BuildState::Built => return publish_built(state, app, id, trace).await,
        // a reused slug's build, should its announcement have been lost
        BuildState::Uploaded => return publish_uploaded(state, &build, trace).await,
        _ => return Ok(()),
    }
    let current = match state.store.app(app).await {
        Ok(a) => a,
        Err(PortError::NotFound) => {
            let _ = state
                .store
                .transition_build(id, BuildState::Requested, BuildState::Building, &|_| {})
                .await;
            return fail(state, id, "the app was destroyed").await;
        }
        Err(err) => return Err(err.into()),
    };
    // A few builds at once, one per account: the push says it is queued meanwhile.
    let _turn = state.turns.wait(&current.owner.0).await;
    let build = required(state.store.build(id).await, "the build")?;
    stop_if_gone(state, &build).await?;
    match build.state {
        BuildState::Requested => {
            match state
                .store
                .transition_build(id, BuildState::Requested, BuildState::Building, &|_| {})
                .await
            {
                Ok(_) | Err(PortError::Precondition) => {}
                Err(err) => return Err(err.into()),
            }
        }
        BuildState::Building => {}
        BuildState::Built => return publish_built(state, app, id, trace).await,
        // a reused slug's build, should its announcement have been lost
        BuildState::Uploaded => return publish_uploaded(state, &build, trace).await,
        _ => return Ok(()),
    }
    // The source and a cache seed are streamed to local files, never held whole.
    let source = match spool_blob(
        &*state.blobs,
        &shared::blob_keys::source(app, id),
        MAX_SOURCE_BYTES,
    )
    .await
    {
        Ok(s) => s,
        Err(PortError::NotFound) => return fail(state, id, "the source archive is missing").await,
        Err(PortError::Invalid(why)) => {
            return fail(state, id, &format!("the source archive is {why}")).await
        }
        Err(err) => return Err(err.into()),
    };
    if let Some(reused) = reusable_slug(state, &build, &current, source.path()).await? {
        return reuse_slug(state, id, reused, trace).await;
    }
    // A builder that keeps the app's cache builds in it; only one without gets the copy.
    let generation = current.created_at.timestamp_millis();
    let cache = if build.flags.clean || state.builder.has_cache(app, generation).await? {
        None
    } else {
        match spool_blob(
            &*state.blobs,
            &shared::blob_keys::cache(app),
            MAX_CACHE_SEED_BYTES,
        )
        .await
        {
            Ok(c) => Some(c),
            Err(PortError::NotFound) => None,
            Err(PortError::Invalid(why)) => {
                tracing::warn!(%why, "the kept build cache is not used");
                None
            }
            Err(err) => return Err(err.into()),
        }
    };
    let prepared = match prepare::prepare(state, &current, id, source.path()).await {
        Ok(p) => p,
        Err(NotReady::Refused(why)) => return fail(state, id, &why).await,
        Err(NotReady::Transient(why)) => return Err(StepError::Transient(why)),
    };
    let stack = prepared.stack;
    let previous = running_slug(state, app, build.flags.hot, stack).await?;
    let spec = BuildSpec {
        build: id.clone(),
        app: app.clone(),
        generation,
        stack,
        extra: prepared.extra,
        source: source.path().to_owned(),
        cache: cache.as_ref().map(|c| c.path().to_owned()),
        previous: previous.as_ref().map(|p| p.path().to_owned()),
        env: current.config.clone(),
        clean: build.flags.clean,
        limits: state.limits,
    };
    stop_interrupted(state, app, id).await?;
    let (tx, rx) = futures::channel::mpsc::unbounded::<String>();
    let writer = tokio::spawn(write_log(
        state.store.clone(),
        id.clone(),
        rx,
        state.limits.log_bytes,
    ));
    let exit = state.builder.run(&spec, tx).await;
    let _ = writer.await;
    let exit = match exit {
        Ok(exit) => exit,
        // The builder cannot run this build (e.g. its image is missing): tell the pusher.
        Err(err) if !err.is_transient() => return fail(state, id, &err.to_string()).await,
        Err(err) => return Err(err.into()),
    };
    match exit {
        BuildExit::Succeeded => {
            match state
                .store
                .transition_build(id, BuildState::Building, BuildState::Built, &|b| {
                    b.stack = Some(stack)
                })
                .await
            {
                Ok(_) | Err(PortError::Precondition) => {}
                Err(err) => return Err(err.into()),
            }
            tracing::info!("build succeeded");
            publish_built(state, app, id, trace).await
        }
        BuildExit::Failed { reason, .. } => {
            state.builder.discard(id).await?;
            fail(state, id, &reason).await
        }
    }
}

/// The live release, whose slug a push reuses, and what the push changed since its build.
struct Reused {
    live: Release,
    commit: String,
    changed: Vec<String>,
}

/// The live release when this push changes nothing its build read ([`reuse`]): same
/// files but documentation, same config and stack, not a clean build. `None`: build.
async fn reusable_slug(
    state: &StepState,
    build: &Build,
    current: &App,
    source: &std::path::Path,
) -> Result<Option<Reused>, StepError> {
    if build.flags.clean {
        return Ok(None);
    }
    let releases = state.store.releases(&current.name).await?;
    let Some(live) = releases
        .iter()
        .find(|r| r.status == ReleaseStatus::Deployed)
    else {
        return Ok(None);
    };
    let Some(from_id) = &live.spec.build else {
        return Ok(None);
    };
    // The stack this push would build on (the app's, else what it asks for).
    match prepare::stack_choice(state, current, source).await {
        Ok((_, choice)) if choice.stack.stack == live.spec.slug.stack() => {}
        _ => return Ok(None),
    }
    // The config its build had: that of the release it made (a later `config:set` keeps
    // the slug).
    let built_with = releases
        .iter()
        .filter(|r| r.spec.build.as_ref() == Some(from_id) && r.spec.rollback_to.is_none())
        .min_by_key(|r| r.version);
    if built_with.is_none_or(|r| r.spec.config != current.config) {
        return Ok(None);
    }
    let from = match state.store.build(from_id).await {
        Ok(b) => b,
        Err(PortError::NotFound) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    if from.slug.as_ref().map(|s| &s.sha256) != Some(&live.spec.slug.sha256) {
        return Ok(None);
    }
    let before = match spool_blob(
        &*state.blobs,
        &shared::blob_keys::source(&current.name, from_id),
        MAX_SOURCE_BYTES,
    )
    .await
    {
        Ok(f) => f,
        Err(PortError::NotFound | PortError::Invalid(_)) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    let after = source.to_owned();
    let verdict = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let changed = reuse::changed(&reuse::manifest(before.path())?, &reuse::manifest(&after)?);
        Ok((reuse::must_build(&changed, &after)?, changed))
    })
    .await
    .map_err(|e| StepError::Transient(e.to_string()))?;
    match verdict {
        Ok((None, changed)) => Ok(Some(Reused {
            live: live.clone(),
            commit: from.commit,
            changed,
        })),
        Ok((Some(why), _)) => {
            tracing::debug!(%why, "the push builds");
            Ok(None)
        }
        // An archive that cannot be read is the build's to report.
        Err(err) => {
            tracing::warn!(error = %err, "source archives not compared; the push builds");
            Ok(None)
        }
    }
}

/// Records the build as done with the live release's slug, without a builder.
async fn reuse_slug(
    state: &StepState,
    id: &BuildId,
    reused: Reused,
    trace: Option<&str>,
) -> Result<(), StepError> {
    let slug = reused.live.spec.slug.clone();
    let commit = &reused.commit[..reused.commit.len().min(7)];
    let what = match reused.changed.len() {
        0 => format!("the files are those of {commit}"),
        1 => format!(
            "only {} changed since {commit}, which no build reads",
            reused.changed[0]
        ),
        n => format!("only {n} documentation files changed since {commit}, which no build reads"),
    };
    state
        .store
        .append_build_log(
            id,
            &[format!(
                "-----> Nothing to build: {what}; reusing the slug {} runs ({:.1} MB, sha256 {})",
                reused.live.version,
                slug.size as f64 / 1_048_576.0,
                &slug.sha256[..slug.sha256.len().min(12)]
            )],
        )
        .await?;
    // One step from building to uploaded: there is no slug in a builder for `upload` to
    // take, so the build is never left `built`.
    let stored = slug.clone();
    match state
        .store
        .transition_build(id, BuildState::Building, BuildState::Uploaded, &move |b| {
            b.stack = stored.stack.or(b.stack);
            b.slug = Some(stored.clone());
        })
        .await
    {
        Ok(_) | Err(PortError::Precondition) => {}
        Err(err) => return Err(err.into()),
    }
    tracing::info!(live = %reused.live.version, "slug reused, nothing built");
    let build = required(state.store.build(id).await, "the build")?;
    publish_uploaded(state, &build, trace).await
}

/// Ends the app's earlier builds whose `git push` died with its platform, and their
/// containers, before this build uses the app's cache: a build killed with its platform
/// may still run, with that cache, until its message comes again.
async fn stop_interrupted(
    state: &StepState,
    app: &AppName,
    this: &BuildId,
) -> Result<(), StepError> {
    let ignore_stop = |result: Result<(), StepError>| match result {
        Err(StepError::Permanent(_)) => Ok(()),
        other => other,
    };
    for other in state.store.builds_of(app).await? {
        if &other.id == this {
            continue;
        }
        match other.state {
            BuildState::Requested | BuildState::Building | BuildState::Built => {
                ignore_stop(stop_if_gone(state, &other).await)?;
            }
            // Its slug is stored, maybe its release made: neither goes live.
            BuildState::Uploaded | BuildState::Released => {
                let stopped = stop_if_push_gone(&*state.store, &other, other.state).await;
                if stopped.is_err() {
                    fail_pending_releases(&*state.store, app, &other.id).await?;
                }
                ignore_stop(stopped)?;
            }
            BuildState::Deployed | BuildState::Failed => {}
        }
    }
    Ok(())
}

/// Ends a build whose `git push` is gone, with the container it may have left (a build
/// that ran while its platform died is rejoined, not finished).
async fn stop_if_gone(state: &StepState, build: &shared::model::Build) -> Result<(), StepError> {
    if !matches!(
        build.state,
        BuildState::Requested | BuildState::Building | BuildState::Built
    ) {
        return Ok(());
    }
    let stopped = stop_if_push_gone(&*state.store, build, build.state).await;
    if stopped.is_err() {
        state.builder.discard(&build.id).await?;
    }
    stopped
}

async fn fail(state: &StepState, id: &BuildId, reason: &str) -> Result<(), StepError> {
    Err(fail_build(&*state.store, id, BuildState::Building, reason).await)
}

/// Appends output lines to the build's log in small batches, as they come, up to
/// `max_bytes` of them; then one line says the rest was not kept (the output is still read,
/// so the build goes on).
async fn write_log(
    store: Arc<dyn Store>,
    id: BuildId,
    rx: futures::channel::mpsc::UnboundedReceiver<String>,
    max_bytes: u64,
) {
    let mut chunks = rx.ready_chunks(200);
    let mut kept = 0u64;
    let mut truncated = false;
    while let Some(mut lines) = chunks.next().await {
        if truncated {
            continue;
        }
        let mut cut = None;
        for (n, line) in lines.iter().enumerate() {
            kept += line.len() as u64 + 1;
            if kept > max_bytes {
                cut = Some(n);
                break;
            }
        }
        if let Some(n) = cut {
            lines.truncate(n);
            lines.push(format!(
                " !     The build's output passed {} MB: the rest of it is not kept (truncated).",
                max_bytes >> 20
            ));
            truncated = true;
        }
        let mut tries = 0;
        while let Err(err) = store.append_build_log(&id, &lines).await {
            tries += 1;
            if tries > 5 {
                tracing::warn!(error = %err, "build output lines lost");
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
