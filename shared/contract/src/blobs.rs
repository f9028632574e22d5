//! The blobs suite. Keys live under a unique prefix so suites can share a bucket, inside
//! the platform's blob spaces (`slugs/…`, `repos/…`: [`BLOB_SPACES`]), the only keys a
//! backend with one bucket per space takes.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::unique;
use crate::deployment::BLOB_SPACES;
use crate::error::PortError;
use crate::ports::blobs::ByteStream;
use crate::ports::Blobs;

/// A fresh key prefix inside `space`.
fn fresh(space: &str) -> String {
    format!("{space}/{}", unique("p"))
}

/// Objects can be written, read, replaced and deleted; deleting twice is fine.
pub async fn put_get_replace_delete(blobs: Arc<dyn Blobs>) {
    let key = format!("{}/slug.tgz", fresh("slugs"));
    assert!(matches!(blobs.get(&key).await, Err(PortError::NotFound)));
    blobs
        .put(&key, Bytes::from_static(b"one"))
        .await
        .expect("put");
    assert_eq!(
        blobs.get(&key).await.expect("get"),
        Bytes::from_static(b"one")
    );
    blobs
        .put(&key, Bytes::from_static(b"two!"))
        .await
        .expect("replace");
    assert_eq!(
        blobs.get(&key).await.expect("get"),
        Bytes::from_static(b"two!")
    );
    let empty = format!("{}/empty", fresh("caches"));
    blobs.put(&empty, Bytes::new()).await.expect("empty object");
    assert_eq!(blobs.get(&empty).await.expect("get empty").len(), 0);
    blobs.delete(&key).await.expect("delete");
    assert!(matches!(blobs.get(&key).await, Err(PortError::NotFound)));
    blobs.delete(&key).await.expect("delete again");
}

/// Listing takes a path prefix and returns sorted keys.
pub async fn list_is_by_path_prefix_and_sorted(blobs: Arc<dyn Blobs>) {
    let p = fresh("repos");
    for k in ["b/2", "a", "b/1", "b/deep/3"] {
        blobs
            .put(&format!("{p}/{k}"), Bytes::from_static(b"x"))
            .await
            .expect("put");
    }
    blobs
        .put(&format!("{p}x/other"), Bytes::from_static(b"x"))
        .await
        .expect("put");
    let listed = blobs.list(&format!("{p}/b")).await.expect("list");
    assert_eq!(
        listed,
        vec![
            format!("{p}/b/1"),
            format!("{p}/b/2"),
            format!("{p}/b/deep/3")
        ]
    );
    let all = blobs.list(&format!("{p}/")).await.expect("list");
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(blobs
        .list(&format!("sources/{}", unique("nothing")))
        .await
        .expect("empty list")
        .is_empty());
}

/// Listing the empty prefix covers every space.
pub async fn list_of_nothing_covers_every_space(blobs: Arc<dyn Blobs>) {
    let keys: Vec<String> = BLOB_SPACES
        .iter()
        .map(|space| format!("{}/k", fresh(space)))
        .collect();
    for key in &keys {
        blobs.put(key, Bytes::from_static(b"x")).await.expect("put");
    }
    let all = blobs.list("").await.expect("list everything");
    for key in &keys {
        assert!(all.contains(key), "{key} missing from {all:?}");
    }
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "list(\"\") is sorted");
    for key in &keys {
        blobs.delete(key).await.expect("delete");
    }
    let all = blobs.list("").await.expect("list everything");
    assert!(keys.iter().all(|k| !all.contains(k)), "{all:?}");
}

/// Keys that could escape the namespace are refused.
pub async fn bad_keys_are_refused(blobs: Arc<dyn Blobs>) {
    for key in ["", "/abs", "a/../b", "a//b", "a/./b", "a/"] {
        assert!(
            matches!(
                blobs.put(key, Bytes::from_static(b"x")).await,
                Err(PortError::Invalid(_))
            ),
            "{key:?} should be refused"
        );
        assert!(
            matches!(blobs.get_stream(key).await, Err(PortError::Invalid(_))),
            "{key:?} should be refused by get_stream"
        );
        assert!(
            matches!(
                blobs.put_stream(key, chunks(&[b"x"])).await,
                Err(PortError::Invalid(_))
            ),
            "{key:?} should be refused by put_stream"
        );
        assert!(
            matches!(
                blobs.signed_url(key, Duration::from_secs(60)).await,
                Err(PortError::Invalid(_))
            ),
            "{key:?} should be refused by signed_url"
        );
    }
}

/// A stream of the given chunks.
fn chunks(parts: &[&[u8]]) -> ByteStream {
    let parts: Vec<_> = parts
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    stream::iter(parts).boxed()
}

/// Reads a whole stream.
async fn gather(stream: ByteStream) -> Bytes {
    let whole = stream
        .try_fold(BytesMut::new(), |mut acc, chunk| async move {
            acc.extend_from_slice(&chunk);
            Ok(acc)
        })
        .await
        .expect("read the stream");
    whole.freeze()
}

/// What goes in as a stream of chunks comes out whole, and streams back out the same.
pub async fn streams_round_trip(blobs: Arc<dyn Blobs>) {
    let key = format!("{}/slug.tgz", fresh("slugs"));
    assert!(matches!(
        blobs.get_stream(&key).await.err(),
        Some(PortError::NotFound)
    ));
    // Odd sizes, an empty chunk, and more than one part of a multipart upload.
    let big = vec![b'b'; (5 << 20) + 3];
    let mid = vec![b'm'; 1000];
    blobs
        .put_stream(&key, chunks(&[b"head", b"", &big, &mid, b"t"]))
        .await
        .expect("put_stream");
    let mut expected = b"head".to_vec();
    expected.extend_from_slice(&big);
    expected.extend_from_slice(&mid);
    expected.push(b't');
    assert_eq!(
        blobs.get(&key).await.expect("get"),
        Bytes::from(expected.clone())
    );
    let streamed = gather(blobs.get_stream(&key).await.expect("get_stream")).await;
    assert_eq!(streamed.len(), expected.len());
    assert!(streamed == expected, "get_stream returned other bytes");

    let empty = format!("{}/empty", fresh("caches"));
    blobs
        .put_stream(&empty, chunks(&[]))
        .await
        .expect("empty stream");
    assert_eq!(blobs.get(&empty).await.expect("get empty").len(), 0);
    assert!(
        gather(blobs.get_stream(&empty).await.expect("stream empty"))
            .await
            .is_empty()
    );
}

/// A stream that fails stores nothing: the key keeps its old object, or stays missing.
pub async fn a_failed_stream_stores_nothing(blobs: Arc<dyn Blobs>) {
    let failing = || -> ByteStream {
        let parts = vec![
            Ok(Bytes::from(vec![b'n'; 1 << 20])),
            Err(PortError::Invalid("the source broke".into())),
        ];
        stream::iter(parts).boxed()
    };
    let key = format!("{}/slug.tgz", fresh("slugs"));
    blobs
        .put(&key, Bytes::from_static(b"old"))
        .await
        .expect("put");
    let err = blobs.put_stream(&key, failing()).await.err();
    assert!(
        matches!(&err, Some(PortError::Invalid(m)) if m == "the source broke"),
        "the stream's own error: {err:?}"
    );
    assert_eq!(
        blobs.get(&key).await.expect("get"),
        Bytes::from_static(b"old")
    );

    let new_key = format!("{}/slug.tgz", fresh("slugs"));
    assert!(blobs.put_stream(&new_key, failing()).await.is_err());
    assert!(matches!(
        blobs.get(&new_key).await,
        Err(PortError::NotFound)
    ));
    let prefix = new_key.trim_end_matches("/slug.tgz");
    assert!(blobs.list(prefix).await.expect("list").is_empty());
}

/// While an object is rewritten, readers see the old or the new object, never a part.
pub async fn concurrent_readers_never_see_partial_objects(blobs: Arc<dyn Blobs>) {
    let key = format!("{}/big", fresh("slugs"));
    let old = Bytes::from(vec![b'o'; 4 << 20]);
    let new = Bytes::from(vec![b'n'; 4 << 20]);
    blobs.put(&key, old.clone()).await.expect("put");
    let writer = {
        let (blobs, key, new) = (blobs.clone(), key.clone(), new.clone());
        tokio::spawn(async move {
            for _ in 0..5 {
                blobs.put(&key, new.clone()).await.expect("rewrite");
            }
        })
    };
    for _ in 0..10 {
        let got = blobs.get(&key).await.expect("get");
        assert!(got == old || got == new, "a reader saw a partial object");
    }
    writer.await.expect("writer");
}
