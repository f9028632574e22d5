//! What an app keeps in the blob store, and its removal when the app is destroyed.
//!
//! Per app: `repos/APP.tar`, `sources/APP/…`, `caches/APP.tar`, and the slugs of its
//! releases. Slugs are stored once by content (`slugs/<sha256>.tgz`), so each upload also
//! records who uses which: `slugs/apps/APP/<sha256>` and `slugs/users/<sha256>/APP`
//! (empty objects). A destroyed app's slug goes only when no other app uses it.

use bytes::Bytes;

use crate::blob_keys;
use crate::domain::AppName;
use crate::error::{PortError, PortResult};
use crate::ports::Blobs;

/// The store lock an app's destruction holds until everything of the app is gone: taken
/// by `DELETE /api/apps/APP`, freed by the cleanup's last pass. A new app of the same name
/// is refused meanwhile, so it never inherits what the old one left.
pub fn destroying_lock(app: &AppName) -> String {
    format!("destroying:{app}")
}
/// The holder of [`destroying_lock`].
pub const DESTROYING_HOLDER: &str = "destroy";
/// How long the lock lasts if the cleanup never ends (its messages are retried meanwhile).
pub const DESTROYING_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Records that `app` runs the slug with this sha256.
pub async fn record_slug_user(blobs: &dyn Blobs, app: &AppName, sha256: &str) -> PortResult<()> {
    blobs
        .put(&blob_keys::slug_user(sha256, app), Bytes::new())
        .await?;
    blobs
        .put(&blob_keys::app_slug(app, sha256), Bytes::new())
        .await
}

async fn exists(blobs: &dyn Blobs, key: &str) -> PortResult<bool> {
    match blobs.get_stream(key).await {
        Ok(_) => Ok(true),
        Err(PortError::NotFound) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Removes what `app` kept in the blob store; returns how many objects it found. Safe to
/// run again (and again): a second run finds nothing unless something was written since.
pub async fn remove_app_blobs(blobs: &dyn Blobs, app: &AppName) -> PortResult<usize> {
    let mut removed = 0;
    for key in [blob_keys::repo(app), blob_keys::cache(app)] {
        if exists(blobs, &key).await? {
            blobs.delete(&key).await?;
            removed += 1;
        }
    }
    for key in blobs.list(&blob_keys::sources_of(app)).await? {
        blobs.delete(&key).await?;
        removed += 1;
    }
    for marker in blobs.list(&blob_keys::app_slugs(app)).await? {
        let Some(sha) = marker.rsplit('/').next().map(str::to_owned) else {
            continue;
        };
        blobs.delete(&blob_keys::slug_user(&sha, app)).await?;
        if blobs.list(&blob_keys::slug_users(&sha)).await?.is_empty() {
            let slug = blob_keys::slug(&sha);
            if exists(blobs, &slug).await? {
                blobs.delete(&slug).await?;
                removed += 1;
            }
        }
        blobs.delete(&marker).await?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_apps_data_goes_but_a_slug_another_app_uses_stays() {
        let dir = tempfile::tempdir().expect("dir");
        let blobs = crate::embedded::FsBlobs::open(dir.path()).expect("blobs");
        let (x, y) = (
            AppName::parse("app-x").expect("x"),
            AppName::parse("app-y").expect("y"),
        );
        for key in [
            "repos/app-x.tar",
            "caches/app-x.tar",
            "sources/app-x/b1.tar",
            "sources/app-x/b2.tar",
            "repos/app-y.tar",
            "slugs/aa.tgz",
            "slugs/bb.tgz",
        ] {
            blobs
                .put(key, Bytes::from_static(b"data"))
                .await
                .expect("put");
        }
        record_slug_user(&blobs, &x, "aa").await.expect("record");
        record_slug_user(&blobs, &x, "bb").await.expect("record");
        record_slug_user(&blobs, &y, "bb").await.expect("record");
        assert!(remove_app_blobs(&blobs, &x).await.expect("remove") > 0);
        let left = blobs.list("").await.expect("list");
        assert_eq!(
            left,
            [
                "repos/app-y.tar",
                "slugs/apps/app-y/bb",
                "slugs/bb.tgz",
                "slugs/users/bb/app-y"
            ],
        );
        assert_eq!(
            remove_app_blobs(&blobs, &x).await.expect("again"),
            0,
            "nothing is left to find"
        );
    }
}
