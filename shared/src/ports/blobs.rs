//! Object storage: repositories, source archives, slugs, build caches, logs.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::PortResult;

/// A flat key space of immutable-at-a-time objects.
///
/// Contract (checked by `contract::blobs`):
/// - Keys are `/`-separated relative paths of printable characters, no `..` or empty parts.
/// - `put` is atomic: a reader sees the whole old object or the whole new one, never a part.
/// - `get` of a missing key is [`PortError::NotFound`](crate::error::PortError::NotFound).
/// - `list(prefix)` returns every key under the prefix (as a path: `a/` lists `a/b`, not
///   `ab`), sorted.
/// - `delete` of a missing key succeeds: deleting is idempotent.
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
