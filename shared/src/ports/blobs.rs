//! Object storage: repositories, source archives, slugs, build caches, logs.

use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use url::Url;

use crate::error::PortResult;

/// An object's bytes, chunk by chunk. An `Err` item ends the stream: the transfer failed.
pub type ByteStream = BoxStream<'static, PortResult<Bytes>>;

/// A flat key space of immutable-at-a-time objects.
///
/// Contract (checked by `contract::blobs`):
/// - Keys are `/`-separated relative paths of printable characters, no `..` or empty parts.
/// - `put` is atomic: a reader sees the whole old object or the whole new one, never a part.
/// - `get` of a missing key is [`PortError::NotFound`](crate::error::PortError::NotFound).
/// - `list(prefix)` returns every key under the prefix (as a path: `a/` lists `a/b`, not
///   `ab`), sorted.
/// - `delete` of a missing key succeeds: deleting is idempotent.
/// - `put_stream` is as atomic as `put`: when its stream fails, the call returns the
///   stream's error and the key keeps its old object (or stays missing).
/// - `get_stream` of a missing key is `NotFound` from the call itself, not from the stream.
/// - `signed_url`, where a backend has them, lets anyone holding the URL `GET` the object
///   over plain HTTP, without credentials, until it expires.
///
/// The streaming methods and `signed_url` have default implementations in terms of `put`
/// and `get` (and no URLs), so a backend only overrides them when it can do better.
#[async_trait]
pub trait Blobs: Send + Sync + 'static {
    /// Stores `data` under `key`, replacing any object there.
    async fn put(&self, key: &str, data: Bytes) -> PortResult<()>;
    /// Reads the whole object.
    async fn get(&self, key: &str) -> PortResult<Bytes>;
    /// Keys under `prefix` (a path prefix; empty lists everything), sorted.
    async fn list(&self, prefix: &str) -> PortResult<Vec<String>>;
    /// Removes the object if it exists.
    async fn delete(&self, key: &str) -> PortResult<()>;

    /// Stores the bytes of `data` under `key`, replacing any object there, once the stream
    /// has ended without error. The default gathers the stream in memory and calls `put`.
    async fn put_stream(&self, key: &str, data: ByteStream) -> PortResult<()> {
        check_key(key)?;
        let whole = data
            .try_fold(BytesMut::new(), |mut acc, chunk| async move {
                acc.extend_from_slice(&chunk);
                Ok(acc)
            })
            .await?;
        self.put(key, whole.freeze()).await
    }

    /// Reads the object as a stream of chunks. The default reads it whole with `get`.
    async fn get_stream(&self, key: &str) -> PortResult<ByteStream> {
        let whole = self.get(key).await?;
        Ok(stream::once(async move { Ok(whole) }).boxed())
    }

    /// A URL that lets its holder `GET` the object without credentials for `ttl`, or `None`
    /// when the backend has no such URLs (the caller then streams the object itself). The
    /// object need not exist yet. The default has none.
    async fn signed_url(&self, key: &str, ttl: Duration) -> PortResult<Option<Url>> {
        check_key(key)?;
        let _ = ttl;
        Ok(None)
    }
}

/// Checks a blob key against the contract's rules.
pub fn check_key(key: &str) -> PortResult<()> {
    let bad = key.is_empty()
        || key.len() > 1024
        || key.starts_with('/')
        || key
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..")
        || key.chars().any(|c| c.is_control());
    if bad {
        Err(crate::error::PortError::Invalid(format!(
            "`{key}` is not a valid blob key"
        )))
    } else {
        Ok(())
    }
}
