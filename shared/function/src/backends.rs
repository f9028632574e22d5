//! Picks each port's implementation from a URL, one setting per port: `sqlite://PATH`
//! (store, bus), `file://PATH` (blobs), `docker://[?…]` (runtime, builder), and with the
//! Google Cloud features `firestore://PROJECT[/DATABASE]`, `pubsub://PROJECT`,
//! `gs://PREFIX[?create_buckets=PROJECT]` (on the emulators when `FIRESTORE_EMULATOR_HOST`,
//! `PUBSUB_EMULATOR_HOST`, `STORAGE_EMULATOR_HOST` are set), with the `kube` feature
//! `kube://?…` (runtime). A scheme whose feature is off is refused with a message.

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

/// What opening a runtime needs besides its URL.
pub struct RuntimeContext {
    /// The blob store's URL: a `docker://` runtime reads slugs from a `file://` store's
    /// directory (else copies them from [`blobs`](Self::blobs) into its `slug_cache`), and
    /// keeps the replicas' SSH keys beside it.
    pub blobs_url: String,
    /// The blob store itself.
    pub blobs: Arc<dyn Blobs>,
    /// The apps' domain (`GIGALIXIR_DOMAIN`).
    pub domain: String,
    /// What the process does with the runtime.
    pub role: RuntimeRole,
}

/// What a process does with the runtime it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeRole {
    /// Deploys and keeps apps running (deploy, the one-process platform): on Docker it
    /// walls the apps off (unless `firewall=false`) and restarts crashed replicas.
    Runs,
    /// Only looks and reaches in (the api: `ps`, `logs`, `ps:ssh`): changes nothing on
    /// the host.
    Reads,
}

/// A runtime opened from its URL.
pub struct OpenedRuntime {
    /// The runtime.
    pub runtime: Arc<dyn crate::ports::Runtime>,
    /// `docker://`: bumped whenever an app's live replicas change (the router's table).
    pub route_changes: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// The `key=value` pairs of a URL's query (`docker://?a=1&b=2`), each key one of `known`.
#[cfg(feature = "docker")]
fn query_of<'a>(url: &'a str, rest: &'a str, known: &[&str]) -> PortResult<Vec<(String, String)>> {
    let query = rest.trim_start_matches('/').trim_start_matches('?');
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some((key, _)) = pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        return Err(PortError::Invalid(format!(
            "`{url}`: `{key}` is not a setting here; known: {}",
            known.join(", ")
        )));
    }
    Ok(pairs)
}

#[cfg(feature = "docker")]
fn flag(url: &str, key: &str, value: &str) -> PortResult<bool> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(PortError::Invalid(format!(
            "`{url}`: `{key}` is true or false, not {value:?}"
        ))),
    }
}

/// Opens the runtime named by `url`:
///
/// - `docker://[?instance=NAME&ssh_dir=PATH&slug_cache=PATH&egress=BOOL&firewall=BOOL]`:
///   the local Docker engine (`DOCKER_HOST`), as the one-process platform runs apps. Its
///   containers carry `gigalixir.instance=NAME` (default `default`); slugs are read from a
///   `file://` blob store's `slugs/`, else copied from the blob store into `slug_cache`;
///   the replicas' SSH keys live in `ssh_dir` (default `ssh` beside the blob directory, or
///   beside `slug_cache`); `egress` and `firewall` (default `true`) are the platform's
///   `--app-egress` and `--app-firewall`.
/// - `kube://?image=…` (the `kube` feature): see [`open_kube_runtime`].
pub async fn open_runtime(url: &str, context: RuntimeContext) -> PortResult<OpenedRuntime> {
    let (scheme, rest) = split(url)
        .or_else(|_| url.strip_suffix("://").map(|s| (s, "")).ok_or(()))
        .map_err(|_| {
            PortError::Invalid(format!(
                "`{url}` is not a runtime URL (docker:// or kube://)"
            ))
        })?;
    #[cfg(not(feature = "docker"))]
    let _ = (rest, &context);
    match scheme {
        #[cfg(feature = "docker")]
        "docker" => open_docker_runtime(url, rest, context).await,
        #[cfg(feature = "kube")]
        "kube" => {
            let slugs = Arc::new(crate::kube_runtime::SignedSlugs::new(
                context.blobs,
                std::time::Duration::from_secs(7 * 24 * 3600),
            ));
            Ok(OpenedRuntime {
                runtime: open_kube_runtime(url, Some(&context.domain), slugs).await?,
                route_changes: None,
            })
        }
        _ => Err(unsupported("runtime", url, "docker://")),
    }
}

#[cfg(feature = "docker")]
async fn open_docker_runtime(
    url: &str,
    rest: &str,
    context: RuntimeContext,
) -> PortResult<OpenedRuntime> {
    let mut instance = "default".to_owned();
    let (mut ssh_dir, mut slug_cache) = (None, None);
    let (mut egress, mut firewall) = (true, true);
    for (key, value) in query_of(
        url,
        rest,
        &["instance", "ssh_dir", "slug_cache", "egress", "firewall"],
    )? {
        match key.as_str() {
            "instance" => instance = value,
            "ssh_dir" => ssh_dir = Some(PathBuf::from(value)),
            "slug_cache" => slug_cache = Some(PathBuf::from(value)),
            "egress" => egress = flag(url, "egress", &value)?,
            _ => firewall = flag(url, "firewall", &value)?,
        }
    }
    let docker = crate::docker::connect()?;
    let runtime = match context.blobs_url.strip_prefix("file://") {
        Some(dir) => {
            let blobs_dir = PathBuf::from(dir);
            let slug_dir = blobs_dir.join("slugs");
            if context.role == RuntimeRole::Runs {
                std::fs::create_dir_all(&slug_dir).map_err(PortError::from_io)?;
            }
            let ssh_dir =
                ssh_dir.unwrap_or_else(|| blobs_dir.parent().unwrap_or(&blobs_dir).join("ssh"));
            crate::docker::DockerRuntime::new(docker, instance, slug_dir, ssh_dir)
        }
        None => {
            let slug_dir = slug_cache.ok_or_else(|| {
                PortError::Invalid(format!(
                    "`{url}`: with the blob store {} the runtime copies slugs into a local directory: add `slug_cache=PATH`",
                    context.blobs_url
                ))
            })?;
            if context.role == RuntimeRole::Runs {
                std::fs::create_dir_all(&slug_dir).map_err(PortError::from_io)?;
            }
            let ssh_dir =
                ssh_dir.unwrap_or_else(|| slug_dir.parent().unwrap_or(&slug_dir).join("ssh"));
            crate::docker::DockerRuntime::new(docker, instance, slug_dir, ssh_dir)
                .with_slug_source(context.blobs.clone())
        }
    };
    let runtime = runtime.with_egress(egress);
    if context.role == RuntimeRole::Runs {
        if firewall {
            runtime.guard().await.map_err(|e| {
                let why =
                    std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
                PortError::unavailable(format!(
                    "walling off app containers: {why} (`firewall=false` runs apps without it)"
                ))
            })?;
        } else {
            tracing::warn!(
                "firewall=false: app containers can reach this host and the cloud metadata address"
            );
        }
        // Replicas that crash after going live are started again, for as long as the
        // process runs.
        drop(runtime.supervise());
    }
    Ok(OpenedRuntime {
        route_changes: Some(runtime.route_changes()),
        runtime: Arc::new(runtime),
    })
}

/// Opens the builder named by `url`: `docker://[?instance=NAME]`, build containers on the
/// local Docker engine (`DOCKER_HOST`) labelled `gigalixir.instance=NAME` (default
/// `default`; the build and upload steps must name the same). `packages_dir`: the package
/// cache's socket directory, mounted into builds.
#[cfg(feature = "docker")]
pub fn open_builder(
    url: &str,
    packages_dir: Option<PathBuf>,
) -> PortResult<Arc<dyn crate::ports::Builder>> {
    let (scheme, rest) = split(url)
        .or_else(|_| url.strip_suffix("://").map(|s| (s, "")).ok_or(()))
        .map_err(|_| PortError::Invalid(format!("`{url}` is not a builder URL (docker://)")))?;
    if scheme != "docker" {
        return Err(unsupported("builder", url, "docker://"));
    }
    let mut instance = "default".to_owned();
    for (_, value) in query_of(url, rest, &["instance"])? {
        instance = value;
    }
    let builder = crate::docker::DockerBuilder::new(crate::docker::connect()?, instance);
    Ok(Arc::new(match packages_dir {
        Some(dir) => builder.with_packages_dir(dir),
        None => builder,
    }))
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

#[cfg(all(test, feature = "kube"))]
mod kube_tests {
    use super::open_kube_runtime;

    #[tokio::test]
    async fn the_backend_url_is_checked_before_any_cluster_is_dialled() {
        let slugs = std::sync::Arc::new(crate::kube_runtime::BaseUrlSlugs::new(
            "https://slugs.example.invalid/",
        ));
        let err = open_kube_runtime("kube://?ssh=carrier-pigeon", None, slugs)
            .await
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("use loadbalancer or nodeport"),
            "{err}"
        );
    }
}
