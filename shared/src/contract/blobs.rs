//! The blobs suite. Keys live under a unique prefix so suites can share a bucket.

use std::sync::Arc;

use bytes::Bytes;

use super::unique;
use crate::error::PortError;
use crate::ports::Blobs;

/// Objects can be written, read, replaced and deleted; deleting twice is fine.
pub async fn put_get_replace_delete(blobs: Arc<dyn Blobs>) {
    let key = format!("{}/slug.tgz", unique("p"));
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
    let empty = format!("{}/empty", unique("p"));
    blobs.put(&empty, Bytes::new()).await.expect("empty object");
    assert_eq!(blobs.get(&empty).await.expect("get empty").len(), 0);
    blobs.delete(&key).await.expect("delete");
    assert!(matches!(blobs.get(&key).await, Err(PortError::NotFound)));
    blobs.delete(&key).await.expect("delete again");
}

/// Listing takes a path prefix and returns sorted keys.
pub async fn list_is_by_path_prefix_and_sorted(blobs: Arc<dyn Blobs>) {
    let p = unique("p");
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
        .list(&unique("nothing"))
        .await
        .expect("empty list")
        .is_empty());
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
    }
}

/// While an object is rewritten, readers see the old or the new object, never a part.
pub async fn concurrent_readers_never_see_partial_objects(blobs: Arc<dyn Blobs>) {
    let key = format!("{}/big", unique("p"));
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
