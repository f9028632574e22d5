//! The `upload` function. Trigger: `slug-built`. Step: take the slug out of the finished
//! build (the [`Builder`] port), store it in the blob store under its sha256, read it back
//! to verify it, keep the build cache for the app's next build, remove the build's
//! container. Emits: `slug-uploaded`.
//!
//! A failed upload is retried as an upload: this step never starts a build. Idempotent on
//! the build's state: `built` uploads, `uploaded` only re-publishes, later states are done.

use std::sync::Arc;

use axum::Router;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use shared::domain::{AppName, BuildId};
use shared::messages::Event;
use shared::model::{BuildState, SlugRef};
use shared::ports::blobs::{capped, collect_capped};
use shared::ports::builder::BuildOutput;
use shared::ports::{Blobs, Builder, Bus, Store};
use shared::push::{
    emit, fail_build, required, step_router, stop_if_push_gone, unexpected, StepError,
};
use shared::PortError;

/// Largest slug accepted.
pub const MAX_SLUG_BYTES: u64 = 1 << 30;
/// Largest copy of a build cache kept (the builder's own is capped by its settings).
pub const MAX_CACHE_COPY_BYTES: u64 = 2 << 30;

/// What the slug's tar held.
enum Spool {
    /// The slug, on local disk.
    Slug(Spooled),
    /// No file of that name.
    Missing,
    /// Larger than [`MAX_SLUG_BYTES`] (said by its tar header, or found while reading).
    TooLarge,
}

/// A slug read out of its build into a local file, hashed on the way.
struct Spooled {
    file: tempfile::NamedTempFile,
    sha256: String,
    size: u64,
}

/// Reads the file `name` out of the tar `stream` into a local file: refused by its
/// declared size before a byte of it is read, and by its real size while it is read, so a
/// slug of any size costs at most [`MAX_SLUG_BYTES`] of disk and a buffer of memory.
async fn spool(stream: shared::ports::blobs::ByteStream, name: String) -> std::io::Result<Spool> {
    use std::io::{Read, Write};
    let reader =
        tokio_util::io::StreamReader::new(stream.map_err(|e| std::io::Error::other(e.to_string())));
    tokio::task::spawn_blocking(move || -> std::io::Result<Spool> {
        let mut archive = tar::Archive::new(tokio_util::io::SyncIoBridge::new(reader));
        for entry in archive.entries()? {
            let mut entry = entry?;
            if entry.path()?.to_string_lossy().trim_start_matches("./") != name {
                continue;
            }
            if entry.header().entry_type() != tar::EntryType::Regular {
                // a link the build made in place of its slug: there is no slug
                return Ok(Spool::Missing);
            }
            if entry.header().size()? > MAX_SLUG_BYTES {
                return Ok(Spool::TooLarge);
            }
            let mut file = tempfile::NamedTempFile::new()?;
            let mut hash = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut size = 0u64;
            loop {
                let n = entry.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                if size > MAX_SLUG_BYTES {
                    return Ok(Spool::TooLarge);
                }
                hash.update(&buf[..n]);
                file.write_all(&buf[..n])?;
            }
            file.flush()?;
            return Ok(Spool::Slug(Spooled {
                file,
                sha256: hex::encode(hash.finalize()),
                size,
            }));
        }
        Ok(Spool::Missing)
    })
    .await
    .map_err(std::io::Error::other)?
}

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
            Event::SlugBuilt { app, build } => upload(&state, &app, &build, trace.as_deref()).await,
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
    trace: Option<&str>,
) -> Result<(), StepError> {
    let build = required(state.store.build(id).await, "the build")?;
    if build.state == BuildState::Built {
        if let Err(stop) = stop_if_push_gone(&*state.store, &build, BuildState::Built).await {
            state.builder.discard(id).await?;
            return Err(stop);
        }
    }
    let stack = build.stack;
    match (build.state, build.slug) {
        (BuildState::Built, _) => {}
        (BuildState::Uploaded, Some(slug)) => return publish(state, app, id, slug, trace).await,
        _ => return Ok(()),
    }
    let started = std::time::Instant::now();
    // slug.json is read while the slug is stored (one request to the builder each)
    let (stored, meta) = tokio::join!(store_slug(state, id), slug_meta(state, id));
    let (key, sha, size) = match stored? {
        Ok(stored) => stored,
        Err(reason) => return fail(state, id, reason).await,
    };
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
    publish(state, app, id, slug_ref, trace).await?;
    // Off the push's path, once the release is on its way: the cache copy and the build's
    // container (a process that dies here leaves the container to the orphan sweep).
    // The builder keeps the cache; its copy here (which seeds builders without one) is
    // refreshed only when the build started a new cache entry, e.g. after mix.lock changed.
    // The cache is a convenience: a build without it is only slower.
    let cache_changed = meta
        .as_ref()
        .and_then(|m| m.pointer("/cache/new_entries")?.as_u64())
        .is_none_or(|n| n > 0);
    if cache_changed {
        match state.builder.output(id, BuildOutput::Cache).await {
            Ok(cache) => {
                if let Err(err) = state
                    .blobs
                    .put_stream(
                        &shared::blob_keys::cache(app),
                        capped(cache, MAX_CACHE_COPY_BYTES),
                    )
                    .await
                {
                    tracing::warn!(error = %err, "build cache not kept");
                }
            }
            Err(err) => tracing::warn!(error = %err, "build cache not kept"),
        }
    }
    state.builder.discard(id).await?;
    Ok(())
}

/// Reads the slug out of the build and into the slug store under its sha256, and reads it
/// back: what the store holds must be what was built. `Ok(Err(reason))`: the build made
/// no slug that can be stored.
async fn store_slug(
    state: &StepState,
    id: &BuildId,
) -> Result<Result<(String, String, u64), &'static str>, StepError> {
    let stream = match state.builder.output(id, BuildOutput::Slug).await {
        Ok(s) => s,
        Err(PortError::NotFound) => return Ok(Err("the build produced no slug")),
        Err(err) => return Err(err.into()),
    };
    let spooled = match spool(stream, "slug.tgz".to_owned()).await {
        Ok(Spool::Slug(spooled)) => spooled,
        Ok(Spool::Missing) => return Ok(Err("the build produced no slug")),
        Ok(Spool::TooLarge) => return Ok(Err("the slug is larger than 1 GB (the limit)")),
        Err(err) => return Err(StepError::Transient(format!("reading the slug: {err}"))),
    };
    let (sha, size) = (spooled.sha256.clone(), spooled.size);
    let key = shared::blob_keys::slug(&sha);
    let file = tokio::fs::File::from_std(spooled.file.reopen().map_err(PortError::unavailable)?);
    let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
        .map_err(PortError::unavailable)
        .boxed();
    state.blobs.put_stream(&key, body).await?;
    let mut check = Sha256::new();
    let mut stored = state.blobs.get_stream(&key).await?;
    while let Some(chunk) = stored.next().await {
        check.update(&chunk?);
    }
    if hex::encode(check.finalize()) != sha {
        return Err(StepError::Transient(
            "the stored slug does not match its sha256".into(),
        ));
    }
    Ok(Ok((key, sha, size)))
}

async fn fail(state: &StepState, id: &BuildId, reason: &str) -> Result<(), StepError> {
    let err = fail_build(&*state.store, id, BuildState::Built, reason).await;
    let _ = state.builder.discard(id).await;
    Err(err)
}

/// The build's `slug.json` (`None` if unreadable or larger than 1 MB: the build wrote it).
async fn slug_meta(state: &StepState, id: &BuildId) -> Option<serde_json::Value> {
    const MAX: u64 = 1 << 20;
    let stream = state.builder.output(id, BuildOutput::SlugMeta).await.ok()?;
    // the tar around it: a header, padding, and the end blocks
    let tar = collect_capped(stream, MAX + 4096).await.ok()?;
    let json = shared::archive::small_files(&tar[..], &["slug.json"], MAX)
        .ok()?
        .remove("slug.json")??;
    serde_json::from_slice(&json).ok()
}

/// The Procfile's process types, from the build's `slug.json` (`None` if unreadable).
fn process_types(meta: Option<&serde_json::Value>) -> Option<Vec<String>> {
    let types = meta?.get("process_types")?.as_object()?;
    Some(types.keys().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(bytes: Vec<u8>) -> shared::ports::blobs::ByteStream {
        futures::stream::iter(
            bytes
                .chunks(4096)
                .map(|c| Ok(axum::body::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        )
        .boxed()
    }

    #[tokio::test]
    async fn a_slug_is_refused_by_its_declared_size_before_it_is_read() {
        // a tar whose header says 8 GiB (a sparse file): nothing of it need be read
        let mut header = tar::Header::new_gnu();
        header.set_path("slug.tgz").expect("path");
        header.set_size(8 << 30);
        header.set_mode(0o644);
        header.set_cksum();
        let tar = header.as_bytes().to_vec();
        assert!(matches!(
            spool(stream_of(tar), "slug.tgz".into())
                .await
                .expect("read"),
            Spool::TooLarge
        ));
    }

    #[tokio::test]
    async fn a_link_in_place_of_the_slug_is_no_slug() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        builder
            .append_link(&mut header, "slug.tgz", "/etc/shadow")
            .expect("append");
        let tar = builder.into_inner().expect("tar");
        assert!(matches!(
            spool(stream_of(tar), "slug.tgz".into())
                .await
                .expect("read"),
            Spool::Missing
        ));
    }

    #[tokio::test]
    async fn a_slug_is_spooled_and_hashed() {
        let mut builder = tar::Builder::new(Vec::new());
        let data = vec![7u8; 300_000];
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "slug.tgz", data.as_slice())
            .expect("append");
        let tar = builder.into_inner().expect("tar");
        let Spool::Slug(spooled) = spool(stream_of(tar.clone()), "slug.tgz".into())
            .await
            .expect("read")
        else {
            panic!("no slug");
        };
        assert_eq!(spooled.size, 300_000);
        assert_eq!(spooled.sha256, hex::encode(Sha256::digest(&data)));
        assert!(matches!(
            spool(stream_of(tar), "other.tgz".into())
                .await
                .expect("read"),
            Spool::Missing
        ));
    }
}
