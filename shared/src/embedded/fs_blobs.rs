//! [`Blobs`] in a local directory, through `object_store`'s local file system store, which
//! writes each object to a temporary file and renames it into place (atomic puts).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

use crate::error::{PortError, PortResult};
use crate::ports::blobs::{check_key, Blobs};

/// The embedded blob store: a directory.
#[derive(Clone)]
pub struct FsBlobs {
    store: Arc<LocalFileSystem>,
}

impl FsBlobs {
    /// Opens (creating) the directory `root`.
    pub fn open(root: &Path) -> PortResult<Self> {
        std::fs::create_dir_all(root).map_err(PortError::unavailable)?;
        let store = LocalFileSystem::new_with_prefix(root).map_err(PortError::unavailable)?;
        Ok(Self {
            store: Arc::new(store),
        })
    }
}

fn path(key: &str) -> PortResult<ObjectPath> {
    check_key(key)?;
    ObjectPath::parse(key).map_err(|e| PortError::Invalid(e.to_string()))
}

fn map_err(err: object_store::Error) -> PortError {
    match err {
        object_store::Error::NotFound { .. } => PortError::NotFound,
        object_store::Error::AlreadyExists { .. } => PortError::AlreadyExists,
        object_store::Error::Precondition { .. } => PortError::Precondition,
        other => PortError::unavailable(other),
    }
}

#[async_trait]
impl Blobs for FsBlobs {
    async fn put(&self, key: &str, data: Bytes) -> PortResult<()> {
        self.store
            .put(&path(key)?, PutPayload::from_bytes(data))
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> PortResult<Bytes> {
        let got = self.store.get(&path(key)?).await.map_err(map_err)?;
        got.bytes().await.map_err(map_err)
    }

    async fn list(&self, prefix: &str) -> PortResult<Vec<String>> {
        let prefix = prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() {
            None
        } else {
            Some(path(prefix)?)
        };
        let mut keys: Vec<String> = self
            .store
            .list(prefix.as_ref())
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(map_err)?;
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> PortResult<()> {
        match self.store.delete(&path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(map_err(err)),
        }
    }
}
