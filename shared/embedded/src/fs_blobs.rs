//! [`Blobs`] in a local directory, through `object_store`'s local file system store, which
//! writes each object to a temporary file and renames it into place (atomic puts, streamed
//! puts included).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};

use crate::error::{PortError, PortResult};
use crate::ports::blobs::{check_key, Blobs, ByteStream};

/// Parts of a streamed put written at once; beyond that the stream waits.
const STREAM_PARTS_IN_FLIGHT: usize = 2;
/// The size of the chunks a streamed get reads.
const READ_CHUNK: usize = 1 << 20;

/// The embedded blob store: a directory.
#[derive(Clone)]
pub struct FsBlobs {
    root: std::path::PathBuf,
    store: Arc<LocalFileSystem>,
}

impl FsBlobs {
    /// Opens (creating) the directory `root`, readable by this user alone.
    pub fn open(root: &Path) -> PortResult<Self> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(root).map_err(PortError::unavailable)?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .map_err(PortError::unavailable)?;
        let store = LocalFileSystem::new_with_prefix(root).map_err(PortError::unavailable)?;
        Ok(Self {
            root: root.to_path_buf(),
            store: Arc::new(store),
        })
    }

    /// Objects are this user's alone (0600), except slugs (`slugs/*.tgz`), which the
    /// Docker runtime mounts into their app's containers, where another user reads them
    /// (the directory above them stays private).
    fn protect(&self, key: &str) -> PortResult<()> {
        use std::os::unix::fs::PermissionsExt;
        let mode = if crate::blob_keys::slug_file(key).is_some() {
            0o644
        } else {
            0o600
        };
        std::fs::set_permissions(self.root.join(key), std::fs::Permissions::from_mode(mode))
            .map_err(PortError::unavailable)
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
        other if crate::error::is_disk_full(&other) => PortError::NoSpace,
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
        self.protect(key)
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

    async fn put_stream(&self, key: &str, mut data: ByteStream) -> PortResult<()> {
        let upload = self
            .store
            .put_multipart(&path(key)?)
            .await
            .map_err(map_err)?;
        // The parts go to a staging file that is renamed into place by `finish`: until then
        // readers see the old object, and an abort leaves it untouched.
        let mut writer = WriteMultipart::new(upload);
        while let Some(chunk) = data.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(err) => {
                    let _ = writer.abort().await;
                    return Err(err);
                }
            };
            if let Err(err) = writer.wait_for_capacity(STREAM_PARTS_IN_FLIGHT).await {
                let _ = writer.abort().await;
                return Err(map_err(err));
            }
            writer.put(chunk);
        }
        writer.finish().await.map_err(map_err)?;
        self.protect(key)
    }

    async fn get_stream(&self, key: &str) -> PortResult<ByteStream> {
        // Read in large chunks (the local store reads 8 KiB at a time, each in a blocking
        // task: a slug of 20 MB took thousands). Objects are renamed into place whole, so
        // an open file is one version of the object.
        path(key)?;
        let file = match tokio::fs::File::open(self.root.join(key)).await {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(PortError::NotFound)
            }
            Err(err) => return Err(PortError::unavailable(err)),
        };
        Ok(
            tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK)
                .map_err(PortError::unavailable)
                .boxed(),
        )
    }
}
