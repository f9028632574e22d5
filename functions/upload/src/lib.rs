//! The `upload` function. Trigger: `slug-built`. Step: take the slug out of the finished
//! build (the [`Builder`] port), store it in the blob store under its sha256, read it back
//! to verify it, keep the build cache for the app's next build, remove the build's
//! container. Emits: `slug-uploaded`.
//!
//! A failed upload is retried as an upload: this step never starts a build. Idempotent on
//! the build's state: `built` uploads, `uploaded` only re-publishes, later states are done.

use std::sync::Arc;

use axum::body::Bytes;
use axum::Router;
use sha2::{Digest, Sha256};
use shared::domain::{AppName, BuildId};
use shared::messages::Event;
use shared::model::{BuildState, SlugRef};
use shared::ports::{Blobs, Builder, Bus, Store};
use shared::push::{emit, fail_build, required, step_router, unexpected, StepError};
use shared::PortError;

/// Largest slug accepted.
pub const MAX_SLUG_BYTES: u64 = 1 << 30;

/// The ports the step uses.
#[derive(Clone)]
pub struct StepState {
    /// Builds and logs.
    pub store: Arc<dyn Store>,
    /// Where `slug-uploaded` goes.
    pub bus: Arc<dyn Bus>,
    /// The slug store and the caches.
    pub blobs: Arc<dyn Blobs>,
    /// Holds the finished builds.
    pub builder: Arc<dyn Builder>,
}

/// The function's router: the push endpoint and a health check.
pub fn router(state: StepState) -> Router {
    step_router(state, |state, event, trace| async move {
        match event {
            Event::SlugBuilt {
                app, build, path, ..
            } => upload(&state, &app, &build, &path, trace.as_deref()).await,
            other => Err(unexpected("upload", &other)),
        }
    })
}

async fn publish(
    state: &StepState,
    app: &AppName,
    build: &BuildId,
    slug: SlugRef,
    trace: Option<&str>,
) -> Result<(), StepError> {
    let event = Event::SlugUploaded {
        app: app.clone(),
        build: build.clone(),
        slug,
    };
    emit(&*state.bus, &event, trace).await?;
    Ok(())
}

/// Moves one slug from its build into the slug store.
#[tracing::instrument(skip_all, fields(app = %app, build = %id))]
pub async fn upload(
    state: &StepState,
    app: &AppName,
    id: &BuildId,
    path: &str,
    trace: Option<&str>,
) -> Result<(), StepError> {
    let build = required(state.store.build(id).await, "the build")?;
    let stack = build.stack;
    match (build.state, build.slug) {
        (BuildState::Built, _) => {}
        (BuildState::Uploaded, Some(slug)) => return publish(state, app, id, slug, trace).await,
        _ => return Ok(()),
    }
    let started = std::time::Instant::now();
    let tar = match state.builder.fetch(id, path).await {
        Ok(t) => t,
        Err(PortError::NotFound) => {
            return fail(
                state,
                id,
                "the finished build vanished before its slug was stored",
            )
            .await
        }
        Err(err) => return Err(err.into()),
    };
    let name = path.rsplit('/').next().unwrap_or(path).to_owned();
    let slug = tokio::task::spawn_blocking(move || shared::archive::file_in_tar(&tar, &name))
        .await
        .map_err(|e| StepError::Transient(e.to_string()))?
        .map_err(|e| StepError::Transient(format!("unreadable slug archive: {e}")))?;
    let Some(slug) = slug else {
        return fail(state, id, "the build produced no slug").await;
    };
    if slug.len() as u64 > MAX_SLUG_BYTES {
        return fail(state, id, "the slug is larger than 1 GB").await;
    }
    let sha = hex::encode(Sha256::digest(&slug));
    let key = format!("slugs/{sha}.tgz");
    let size = slug.len() as u64;
    state.blobs.put(&key, Bytes::from(slug)).await?;
    let stored = state.blobs.get(&key).await?;
    if hex::encode(Sha256::digest(&stored)) != sha {
        return Err(StepError::Transient(
            "the stored slug does not match its sha256".into(),
        ));
    }
    let meta = slug_meta(state, id).await;
    // The builder keeps the cache; its copy here (which seeds builders without one) is
    // refreshed only when the build started a new cache entry, e.g. after mix.lock changed.
    // The cache is a convenience: a build without it is only slower.
    let cache_changed = meta
        .as_ref()
        .and_then(|m| m.pointer("/cache/new_entries")?.as_u64())
        .is_none_or(|n| n > 0);
    if cache_changed {
        match state.builder.fetch(id, "/build/cache").await {
            Ok(cache) => {
                if let Err(err) = state.blobs.put(&format!("caches/{app}.tar"), cache).await {
                    tracing::warn!(error = %err, "build cache not kept");
                }
            }
            Err(err) => tracing::warn!(error = %err, "build cache not kept"),
        }
    }
    let slug_ref = SlugRef {
        key,
        sha256: sha,
        size,
        process_types: process_types(meta.as_ref()),
        // the platform's choice, not what the build container says
        stack,
    };
    // Who uses which slug: what a destroyed app's slugs are found by.
    shared::cleanup::record_slug_user(&*state.blobs, app, &slug_ref.sha256).await?;
    let stored_ref = slug_ref.clone();
    match state
        .store
        .transition_build(id, BuildState::Built, BuildState::Uploaded, &|b| {
            b.slug = Some(stored_ref.clone())
        })
        .await
    {
        Ok(_) | Err(PortError::Precondition) => {}
        Err(PortError::NotFound) => {
            // The app was destroyed while its slug was being stored: what this step wrote
            // goes with it.
            let _ = state.builder.discard(id).await;
            shared::cleanup::remove_app_blobs(&*state.blobs, app).await?;
            return Err(StepError::Permanent("the app was destroyed".into()));
        }
        Err(err) => return Err(err.into()),
    }
    state.builder.discard(id).await?;
    let mb = size as f64 / 1_048_576.0;
    state
        .store
        .append_build_log(
            id,
            &[format!(
                "-----> Slug stored: {mb:.1} MB, sha256 {} ({} ms)",
                &slug_ref.sha256[..12],
                started.elapsed().as_millis()
            )],
        )
        .await?;
    publish(state, app, id, slug_ref, trace).await
}

async fn fail(state: &StepState, id: &BuildId, reason: &str) -> Result<(), StepError> {
    let err = fail_build(&*state.store, id, BuildState::Built, reason).await;
    let _ = state.builder.discard(id).await;
    Err(err)
}

/// The build's `slug.json` (`None` if unreadable).
async fn slug_meta(state: &StepState, id: &BuildId) -> Option<serde_json::Value> {
    let tar = state.builder.fetch(id, "/build/out/slug.json").await.ok()?;
    let json = shared::archive::file_in_tar(&tar, "slug.json").ok()??;
    serde_json::from_slice(&json).ok()
}

/// The Procfile's process types, from the build's `slug.json` (`None` if unreadable).
fn process_types(meta: Option<&serde_json::Value>) -> Option<Vec<String>> {
    let types = meta?.get("process_types")?.as_object()?;
    Some(types.keys().cloned().collect())
}
