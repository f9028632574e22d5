//! Picks each port's implementation from a URL, one setting per port: `sqlite://PATH`
//! (store, bus), `file://PATH` (blobs), and with the Google Cloud features
//! `firestore://PROJECT[/DATABASE]`, `pubsub://PROJECT`, `gs://PREFIX[?create_buckets=PROJECT]`
//! (on the emulators when `FIRESTORE_EMULATOR_HOST`, `PUBSUB_EMULATOR_HOST`,
//! `STORAGE_EMULATOR_HOST` are set). A scheme whose feature is off is refused with a message.

use std::path::PathBuf;
use std::sync::Arc;

use crate::embedded::{FsBlobs, SqliteBus, SqliteStore};
use crate::error::{PortError, PortResult};
use crate::ports::{Blobs, Bus, Store};

fn split(url: &str) -> PortResult<(&str, &str)> {
    url.split_once("://")
        .filter(|(_, rest)| !rest.is_empty())
        .ok_or_else(|| PortError::Invalid(format!("`{url}` is not a backend URL (scheme://…)")))
}

fn unsupported(port: &str, url: &str, known: &str) -> PortError {
    PortError::Invalid(format!(
        "the {port} backend `{url}` is not available in this build; use {known}"
    ))
}

/// Opens the store named by `url`.
pub fn open_store(url: &str) -> PortResult<Arc<dyn Store>> {
    match split(url)? {
        ("sqlite", path) => Ok(Arc::new(SqliteStore::open(&PathBuf::from(path))?)),
        #[cfg(feature = "firestore")]
        ("firestore", rest) => Ok(Arc::new(
            crate::gcp::firestore::FirestoreStore::from_url_rest(rest)?,
        )),
        _ => Err(unsupported("store", url, "sqlite://PATH")),
    }
}

/// Opens the bus named by `url`.
pub fn open_bus(url: &str) -> PortResult<Arc<dyn Bus>> {
    match split(url)? {
        ("sqlite", path) => Ok(Arc::new(SqliteBus::open(&PathBuf::from(path))?)),
        // Pub/Sub, or its emulator when PUBSUB_EMULATOR_HOST is set; dialled on first use.
        #[cfg(feature = "pubsub")]
        ("pubsub", project) => Ok(Arc::new(crate::gcp::pubsub::PubSubBus::from_env(project)?)),
        _ => Err(unsupported("bus", url, "sqlite://PATH")),
    }
}

/// Opens the blob store named by `url`.
pub fn open_blobs(url: &str) -> PortResult<Arc<dyn Blobs>> {
    match split(url)? {
        ("file", path) => Ok(Arc::new(FsBlobs::open(&PathBuf::from(path))?)),
        // Cloud Storage, or its emulator when STORAGE_EMULATOR_HOST is set; buckets are
        // created only with `?create_buckets=PROJECT`. Dialled on first use.
        #[cfg(feature = "gcs")]
        ("gs", rest) => {
            let config =
                crate::gcp::gcs::GcsConfig::from_url(rest, |name| std::env::var(name).ok())?;
            Ok(Arc::new(crate::gcp::gcs::GcsBlobs::new(config)?))
        }
        _ => Err(unsupported("blobs", url, "file://PATH")),
    }
}

/// Opens the Kubernetes runtime named by `url`, `kube://?image=…` (the settings of
/// [`KubeSettings::from_url`](crate::kube_runtime::KubeSettings::from_url); `domain`, when
/// given, is the apps' domain, e.g. `GIGALIXIR_DOMAIN`), on the cluster this process runs
/// in, else the current `KUBECONFIG` context. Replicas download slugs from the URLs `slugs`
/// makes of their blob keys.
#[cfg(feature = "kube")]
pub async fn open_kube_runtime(
    url: &str,
    domain: Option<&str>,
    slugs: Arc<dyn crate::kube_runtime::SlugUrls>,
) -> PortResult<Arc<dyn crate::ports::Runtime>> {
    let mut settings = crate::kube_runtime::KubeSettings::from_url(url)?;
    if let Some(domain) = domain {
        settings.domain = domain.to_owned();
    }
    let runtime = crate::kube_runtime::KubeRuntime::connect(settings, slugs).await?;
    Ok(Arc::new(runtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_backends_or_say_why_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("s.db");
        assert!(open_store(&format!("sqlite://{}", db.display())).is_ok());
        assert!(open_blobs(&format!("file://{}", dir.path().join("b").display())).is_ok());
        #[cfg(not(feature = "firestore"))]
        {
            let err = open_store("firestore://proj").err().expect("refused");
            assert!(err.to_string().contains("not available"), "{err}");
        }
        // The client connects on first use: opening needs no emulator.
        #[cfg(feature = "firestore")]
        {
            assert!(open_store("firestore://proj").is_ok());
            assert!(open_store("firestore://proj/platform").is_ok());
            let err = open_store("firestore://proj/a/b").err().expect("refused");
            assert!(err.to_string().contains("firestore://PROJECT"), "{err}");
        }
        #[cfg(not(feature = "pubsub"))]
        {
            let err = open_bus("pubsub://proj").err().expect("refused");
            assert!(err.to_string().contains("not available"), "{err}");
        }
        #[cfg(feature = "pubsub")]
        {
            assert!(open_bus("pubsub://proj").is_ok());
            let err = open_bus("pubsub://a/b").err().expect("refused");
            assert!(err.to_string().contains("project id"), "{err}");
        }
        #[cfg(not(feature = "gcs"))]
        {
            let err = open_blobs("gs://acme").err().expect("refused");
            assert!(err.to_string().contains("not available"), "{err}");
        }
        // Credentials are loaded, nothing is sent: opening needs no emulator.
        #[cfg(feature = "gcs")]
        {
            assert!(open_blobs("gs://acme").is_ok());
            assert!(open_blobs("gs://acme?create_buckets=dev").is_ok());
            let err = open_blobs("gs://Acme").err().expect("refused");
            assert!(err.to_string().contains("bucket names"), "{err}");
        }
        let err = open_bus("nonsense").err().expect("refused");
        assert!(err.to_string().contains("not a backend URL"), "{err}");
    }
}
