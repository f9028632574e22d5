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

/// `stream`, failing once more than `cap` bytes went through (what reads it stores nothing
/// of a failed stream): for sizes that come from outside, capped while they stream.
pub fn capped(stream: ByteStream, cap: u64) -> ByteStream {
    let mut seen = 0u64;
    stream
        .map(move |chunk| {
            let chunk = chunk?;
            seen += chunk.len() as u64;
            if seen > cap {
                return Err(crate::error::PortError::Invalid(format!(
                    "larger than {}",
                    size_text(cap)
                )));
            }
            Ok(chunk)
        })
        .boxed()
}

/// The whole of `stream` in memory, refused as soon as it passes `cap` bytes.
pub async fn collect_capped(stream: ByteStream, cap: u64) -> PortResult<Bytes> {
    let mut out = BytesMut::new();
    let mut stream = capped(stream, cap);
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out.freeze())
}

/// `1 GB`, `64 MB`, `64 kB`: a cap as people read it.
pub fn size_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GB", b >> 30),
        b if b >= 1 << 20 => format!("{} MB", b >> 20),
        b => format!("{} kB", b >> 10),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;
    use crate::error::PortError;

    fn chunks(n: usize, size: usize) -> ByteStream {
        stream::iter((0..n).map(move |_| Ok(Bytes::from(vec![0u8; size])))).boxed()
    }

    #[tokio::test]
    async fn a_capped_stream_fails_past_its_cap_and_not_before() {
        let all = collect_capped(chunks(5, 1000), 5000)
            .await
            .expect("at the cap");
        assert_eq!(all.len(), 5000);
        let err = collect_capped(chunks(6, 1 << 20), 5 << 20)
            .await
            .expect_err("past the cap");
        assert_eq!(err.to_string(), "invalid request: larger than 5 MB");
    }

    /// A backend with only the required methods, to exercise the defaults.
    #[derive(Default)]
    struct Memory(Mutex<BTreeMap<String, Bytes>>);

    impl Memory {
        fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
            self.0.lock().expect("lock")
        }
    }

    #[async_trait]
    impl Blobs for Memory {
        async fn put(&self, key: &str, data: Bytes) -> PortResult<()> {
            check_key(key)?;
            self.map().insert(key.to_owned(), data);
            Ok(())
        }
        async fn get(&self, key: &str) -> PortResult<Bytes> {
            check_key(key)?;
            self.map().get(key).cloned().ok_or(PortError::NotFound)
        }
        async fn list(&self, prefix: &str) -> PortResult<Vec<String>> {
            Ok(self
                .map()
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect())
        }
        async fn delete(&self, key: &str) -> PortResult<()> {
            self.map().remove(key);
            Ok(())
        }
    }

    fn parts(items: Vec<PortResult<&'static [u8]>>) -> ByteStream {
        stream::iter(items.into_iter().map(|r| r.map(Bytes::from_static))).boxed()
    }

    #[tokio::test]
    async fn the_defaults_stream_through_put_and_get_and_have_no_urls() {
        let blobs = Memory::default();
        blobs
            .put_stream("slugs/a", parts(vec![Ok(b"ab"), Ok(b""), Ok(b"c")]))
            .await
            .expect("put_stream");
        assert_eq!(blobs.get("slugs/a").await.expect("get"), "abc");
        let chunks: Vec<Bytes> = blobs
            .get_stream("slugs/a")
            .await
            .expect("get_stream")
            .try_collect()
            .await
            .expect("read");
        assert_eq!(chunks.concat(), b"abc");
        assert!(matches!(
            blobs.get_stream("slugs/none").await.err(),
            Some(PortError::NotFound)
        ));

        let failing = parts(vec![Ok(b"new"), Err(PortError::Invalid("broke".into()))]);
        assert!(matches!(
            blobs.put_stream("slugs/a", failing).await,
            Err(PortError::Invalid(m)) if m == "broke"
        ));
        assert_eq!(blobs.get("slugs/a").await.expect("old object kept"), "abc");

        let url = blobs.signed_url("slugs/a", Duration::from_secs(60)).await;
        assert!(matches!(url, Ok(None)));
        assert!(matches!(
            blobs.signed_url("a/../b", Duration::from_secs(60)).await,
            Err(PortError::Invalid(_))
        ));
    }
}
