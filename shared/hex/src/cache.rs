//! The pull-through cache of an upstream Hex repository, over the blob store.
//!
//! - Registry resources (`packages/NAME`, `names`, `versions`) are kept as the upstream's
//!   exact bytes under `packages/hex/registry/…`, checked (signature with the upstream's key, origin)
//!   before they are kept, and fetched again once older than the TTL; while the upstream
//!   does not answer, the kept copy is served and marked stale.
//! - Tarballs are stored once, content-addressed (`packages/hex/tarballs/<sha256>.tar`), shared by
//!   every build of every app, and only after their sha256 equals the outer checksum the
//!   (checked) registry lists for that version. Their size is capped while they stream in.
//!
//! Every step is idempotent and keeps nothing in memory between calls: two functions (the
//! package server and the build step) use the same blobs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use rsa::RsaPublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use super::registry::{self, Package, RecordError};
use crate::error::PortError;
use crate::mixlock::HexLock;
use crate::ports::Blobs;

/// The repository name the cache serves (and the only one builds may use for now).
pub const REPOSITORY: &str = "hexpm";
/// hex.pm's public repository.
pub const HEXPM_URL: &str = "https://repo.hex.pm";

/// Where the cache pulls from, and how.
#[derive(Debug, Clone)]
pub struct HexSettings {
    /// The upstream repository's base URL.
    pub upstream: Url,
    /// The PEM public key the upstream signs its registry with.
    pub public_key: String,
    /// Whether `public_key` is not hex.pm's (then builds are told it; Hex has hex.pm's).
    pub custom_key: bool,
    /// How long a registry resource is served without asking the upstream again.
    pub registry_ttl: Duration,
    /// Largest tarball accepted.
    pub max_tarball_bytes: u64,
    /// Longest one upstream request may take.
    pub timeout: Duration,
}

impl Default for HexSettings {
    fn default() -> Self {
        Self {
            upstream: Url::parse(HEXPM_URL).expect("a valid URL"),
            public_key: registry::HEXPM_PUBLIC_KEY.to_owned(),
            custom_key: false,
            registry_ttl: Duration::from_secs(300),
            max_tarball_bytes: 64 << 20,
            timeout: Duration::from_secs(60),
        }
    }
}

impl HexSettings {
    /// The settings from `--hex-upstream URL` and `--hex-upstream-key FILE` (either may be
    /// absent: hex.pm and its key).
    pub fn new(
        upstream: Option<&str>,
        key_file: Option<&std::path::Path>,
        registry_ttl: Duration,
    ) -> Result<Self, String> {
        let mut settings = Self {
            registry_ttl,
            ..Self::default()
        };
        if let Some(raw) = upstream.filter(|u| !u.is_empty()) {
            let url = Url::parse(raw.trim_end_matches('/'))
                .map_err(|e| format!("the Hex upstream `{raw}` is not a URL ({e})"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "the Hex upstream `{raw}` must be an http or https URL"
                ));
            }
            settings.upstream = url;
        }
        if let Some(path) = key_file {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the Hex upstream key {}: {e}", path.display()))?;
            registry::public_key(&pem)
                .map_err(|e| format!("the Hex upstream key {}: {e}", path.display()))?;
            settings.custom_key = pem.trim() != registry::HEXPM_PUBLIC_KEY.trim();
            settings.public_key = pem;
        }
        Ok(settings)
    }
}

/// Why the cache cannot serve something.
#[derive(Debug, thiserror::Error)]
pub enum HexError {
    /// Not a name, version or path of the repository layout.
    #[error("{0}")]
    Invalid(String),
    /// The upstream has no such package, version or resource.
    #[error("{0}")]
    NotFound(String),
    /// The upstream did not answer and nothing is kept.
    #[error("{0}")]
    Unavailable(String),
    /// The upstream sent something that does not check out; nothing was kept.
    #[error("{0}")]
    Rejected(String),
    /// The blob store failed.
    #[error("the package cache's storage failed")]
    Blobs(#[source] PortError),
}

impl From<PortError> for HexError {
    fn from(err: PortError) -> Self {
        HexError::Blobs(err)
    }
}

/// How current a registry resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Fetched or confirmed within the TTL.
    Fresh,
    /// The upstream did not answer; this copy is as old as `age`.
    Stale {
        /// Since it was last fetched or confirmed.
        age: Duration,
    },
}

/// A registry resource: the upstream's bytes.
#[derive(Debug, Clone)]
pub struct Resource {
    /// gzip of `Signed`, exactly as the upstream served it.
    pub body: Bytes,
    /// sha256 of `body`, hex: its ETag.
    pub sha256: String,
    /// How current it is.
    pub freshness: Freshness,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    fetched_at: DateTime<Utc>,
    etag: Option<String>,
}

/// How old a kept record must be before a request for a version it lacks fetches it
/// again (at most the registry TTL): builds asking for versions that do not exist cannot
/// turn into a stream of requests to the upstream.
const REFETCH_AFTER: Duration = Duration::from_secs(30);
/// How long the upstream's "no such resource" is believed (at most the registry TTL).
const MISSING_FOR: Duration = Duration::from_secs(60);
/// Resources remembered as missing, at most; beyond, the memory is cleared.
const MISSING_MAX: usize = 10_000;

/// The pull-through cache.
#[derive(Clone)]
pub struct HexCache {
    blobs: Arc<dyn Blobs>,
    settings: Arc<HexSettings>,
    key: Arc<RsaPublicKey>,
    http: reqwest::Client,
    /// Resources the upstream said it does not have, and when.
    missing: Arc<std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>>,
}

impl HexCache {
    /// A cache over `blobs`.
    pub fn new(blobs: Arc<dyn Blobs>, settings: HexSettings) -> Result<Self, String> {
        let key = registry::public_key(&settings.public_key)?;
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("gigalixir-packages/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
        Ok(Self {
            blobs,
            settings: Arc::new(settings),
            key: Arc::new(key),
            http,
            missing: Default::default(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &HexSettings {
        &self.settings
    }

    /// Whether the upstream said less than `within` ago that it has no `path`.
    fn known_missing(&self, path: &str, within: Duration) -> bool {
        let Ok(missing) = self.missing.lock() else {
            return false;
        };
        missing.get(path).is_some_and(|at| at.elapsed() < within)
    }

    fn remember_missing(&self, path: &str) {
        if let Ok(mut missing) = self.missing.lock() {
            if missing.len() >= MISSING_MAX {
                missing.clear();
            }
            missing.insert(path.to_owned(), std::time::Instant::now());
        }
    }

    fn upstream(&self, path: &str) -> String {
        format!(
            "{}/{path}",
            self.settings.upstream.as_str().trim_end_matches('/')
        )
    }

    /// `packages/NAME`, checked.
    pub async fn package(&self, name: &str) -> Result<(Resource, Package), HexError> {
        self.package_record(name, false).await
    }

    /// `packages/NAME` with `version` in it: a kept record that lacks the version is
    /// fetched again (it may have been published since) once it is [`REFETCH_AFTER`] old
    /// (or the registry TTL, if shorter).
    pub async fn package_with(
        &self,
        name: &str,
        version: &str,
    ) -> Result<(Resource, Package), HexError> {
        let (resource, package) = self.package_record(name, false).await?;
        if package.releases.iter().any(|r| r.version == version) {
            return Ok((resource, package));
        }
        self.package_record(name, true).await
    }

    async fn package_record(
        &self,
        name: &str,
        force: bool,
    ) -> Result<(Resource, Package), HexError> {
        if !registry::valid_name(name) {
            return Err(HexError::Invalid(format!(
                "`{name}` is not a Hex package name"
            )));
        }
        let key = self.key.clone();
        let owned = name.to_owned();
        let resource = self
            .registry(
                &format!("packages/{name}"),
                &format!("package {name}"),
                force,
                move |body| registry::package(body, &key, &owned, REPOSITORY).map(drop),
            )
            .await?;
        // checked before it was kept
        let package = registry::package(&resource.body, &self.key, name, REPOSITORY)
            .map_err(|e| HexError::Rejected(format!("the kept record of {name}: {e}")))?;
        Ok((resource, package))
    }

    /// `names` or `versions`, checked.
    pub async fn listing(&self, which: &str) -> Result<Resource, HexError> {
        if !matches!(which, "names" | "versions") {
            return Err(HexError::Invalid(format!(
                "`{which}` is not a registry resource"
            )));
        }
        let key = self.key.clone();
        self.registry(which, which, false, move |body| {
            registry::listing(body, &key, REPOSITORY)
        })
        .await
    }

    async fn registry(
        &self,
        path: &str,
        what: &str,
        force: bool,
        check: impl Fn(&[u8]) -> Result<(), RecordError>,
    ) -> Result<Resource, HexError> {
        let body_key = crate::blob_keys::hex_registry(path);
        let meta_key = crate::blob_keys::hex_registry_meta(path);
        let kept = match self.blobs.get(&body_key).await {
            Ok(body) => Some(body),
            Err(PortError::NotFound) => None,
            Err(err) => return Err(err.into()),
        };
        let meta: Option<Meta> = match &kept {
            Some(_) => match self.blobs.get(&meta_key).await {
                Ok(raw) => serde_json::from_slice(&raw).ok(),
                Err(PortError::NotFound) => None,
                Err(err) => return Err(err.into()),
            },
            None => None,
        };
        let now = Utc::now();
        let age = |m: &Meta| (now - m.fetched_at).to_std().unwrap_or_default();
        let ttl = self.settings.registry_ttl;
        let fresh_for = if force { ttl.min(REFETCH_AFTER) } else { ttl };
        if let (Some(body), Some(m)) = (&kept, &meta) {
            if age(m) < fresh_for {
                return Ok(resource(body.clone(), Freshness::Fresh));
            }
        }
        if kept.is_none() && self.known_missing(path, ttl.min(MISSING_FOR)) {
            return Err(HexError::NotFound(format!(
                "the Hex repository has no {what}"
            )));
        }
        let mut request = self.http.get(self.upstream(path));
        if let (Some(_), Some(etag)) = (&kept, meta.as_ref().and_then(|m| m.etag.clone())) {
            request = request.header("if-none-match", etag);
        }
        let stale = |why: String| -> Result<Resource, HexError> {
            match (&kept, &meta) {
                (Some(body), m) => {
                    let age = m.as_ref().map(age).unwrap_or_default();
                    tracing::warn!(resource = path, error = %why, "Hex upstream unavailable: serving the kept copy");
                    Ok(resource(body.clone(), Freshness::Stale { age }))
                }
                (None, _) => Err(HexError::Unavailable(format!(
                    "the Hex repository ({}) did not answer for {what}, and the platform has no copy of it: {why}",
                    self.settings.upstream
                ))),
            }
        };
        let response = match request.send().await {
            Ok(r) => r,
            Err(err) => return stale(describe(&err)),
        };
        let status = response.status();
        if status == reqwest::StatusCode::NOT_MODIFIED && kept.is_some() {
            let etag = meta.and_then(|m| m.etag);
            self.put_meta(&meta_key, etag).await?;
            return Ok(resource(kept.unwrap_or_default(), Freshness::Fresh));
        }
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::FORBIDDEN {
            self.remember_missing(path);
            return Err(HexError::NotFound(format!(
                "the Hex repository has no {what}"
            )));
        }
        if !status.is_success() {
            return stale(format!("it answered {status}"));
        }
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = match read_capped(response, registry::MAX_RESOURCE_BYTES).await {
            Ok(body) => body,
            Err(why) => return stale(why),
        };
        if let Err(err) = check(&body) {
            // A record that does not check out is never kept; a kept one may still serve.
            tracing::error!(resource = path, error = %err, "Hex upstream record refused");
            return match kept {
                Some(_) => stale(format!("its new record was refused: {err}")),
                None => Err(HexError::Rejected(format!(
                    "the Hex repository's record of {what} was refused: {err}"
                ))),
            };
        }
        self.blobs.put(&body_key, body.clone()).await?;
        self.put_meta(&meta_key, etag).await?;
        Ok(resource(body, Freshness::Fresh))
    }

    async fn put_meta(&self, key: &str, etag: Option<String>) -> Result<(), HexError> {
        let meta = Meta {
            fetched_at: Utc::now(),
            etag,
        };
        let raw = serde_json::to_vec(&meta).map_err(|e| HexError::Rejected(e.to_string()))?;
        self.blobs.put(key, Bytes::from(raw)).await?;
        Ok(())
    }

    /// The tarball of `name` `version`: from the blob store, else fetched from the upstream
    /// and kept once its sha256 equals the registry's outer checksum.
    pub async fn tarball(&self, name: &str, version: &str) -> Result<(Bytes, Freshness), HexError> {
        if !registry::valid_version(version) {
            return Err(HexError::Invalid(format!("`{version}` is not a version")));
        }
        let (resource, package) = self.package_with(name, version).await?;
        let release = package
            .releases
            .iter()
            .find(|r| r.version == version)
            .ok_or_else(|| HexError::NotFound(not_published(name, version, &package)))?;
        let outer = release
            .outer_checksum
            .as_deref()
            .filter(|c| c.len() == 32)
            .map(hex::encode)
            .ok_or_else(|| {
                HexError::Rejected(format!(
                    "the registry lists no outer checksum for {name} {version}: it cannot be verified"
                ))
            })?;
        let key = tarball_key(&outer);
        match self.blobs.get(&key).await {
            Ok(tar) => return Ok((tar, resource.freshness)),
            Err(PortError::NotFound) => {}
            Err(err) => return Err(err.into()),
        }
        let url = self.upstream(&format!("tarballs/{name}-{version}.tar"));
        let unavailable = |why: String| {
            HexError::Unavailable(format!(
                "could not fetch {name} {version} from the Hex repository ({}): {why}",
                self.settings.upstream
            ))
        };
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| unavailable(describe(&e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(HexError::NotFound(format!(
                "the Hex repository has no tarball of {name} {version}"
            )));
        }
        if !status.is_success() {
            return Err(unavailable(format!("it answered {status}")));
        }
        let tar = read_capped(response, self.settings.max_tarball_bytes)
            .await
            .map_err(unavailable)?;
        let got = hex::encode(Sha256::digest(&tar));
        if got != outer {
            tracing::error!(package = name, version, registry = %outer, got = %got, "Hex tarball refused");
            return Err(HexError::Rejected(format!(
                "the tarball of {name} {version} from the Hex repository does not match the registry: registry checksum {outer}, tarball {got}; it was not kept"
            )));
        }
        self.blobs.put(&key, tar.clone()).await?;
        tracing::info!(
            package = name,
            version,
            bytes = tar.len(),
            "Hex tarball cached"
        );
        Ok((tar, resource.freshness))
    }

    /// Holds an app's locked Hex packages to what the cache serves: each one's registry
    /// record is current (or stale with a warning), its version exists, its outer checksum
    /// equals the lock's, and its tarball is in the cache.
    pub async fn check_lock(&self, locked: &[HexLock]) -> LockReport {
        use futures::StreamExt;
        let results: Vec<(String, Result<Freshness, String>)> =
            futures::stream::iter(locked.iter().cloned())
                .map(|lock| async move {
                    let result = self.check_one(&lock).await;
                    (lock.dep.clone(), result)
                })
                .buffer_unordered(8)
                .collect()
                .await;
        let mut report = LockReport::default();
        let mut results = results;
        results.sort_by(|a, b| a.0.cmp(&b.0));
        for (dep, result) in results {
            match result {
                Ok(Freshness::Fresh) => report.fresh += 1,
                Ok(Freshness::Stale { age }) => report.stale.push((dep, age)),
                Err(why) => report.failures.push(why),
            }
        }
        report
    }

    async fn check_one(&self, lock: &HexLock) -> Result<Freshness, String> {
        if lock.repo != REPOSITORY {
            return Err(format!(
                "{} comes from the Hex repository `{}`: private Hex organizations and other repositories are not supported yet; only packages of hexpm can be fetched",
                lock.dep, lock.repo
            ));
        }
        let (_, package) = self
            .package_with(&lock.package, &lock.version)
            .await
            .map_err(|e| match e {
                HexError::NotFound(_) => format!(
                    "mix.lock locks {} {}, but the Hex repository has no package {}",
                    lock.dep, lock.version, lock.package
                ),
                other => format!("{}: {other}", lock.dep),
            })?;
        let release = package
            .releases
            .iter()
            .find(|r| r.version == lock.version)
            .ok_or_else(|| {
                format!(
                    "mix.lock locks {}, which {}",
                    lock.dep,
                    not_published(&lock.package, &lock.version, &package)
                )
            })?;
        match (&lock.outer_checksum, &release.outer_checksum) {
            (Some(locked), Some(served)) if *locked != hex::encode(served) => {
                return Err(format!(
                "{} {}: the checksum in mix.lock ({locked}) differs from the Hex repository's ({})",
                lock.package,
                lock.version,
                hex::encode(served)
            ))
            }
            (None, _) if lock.inner_checksum != hex::encode(&release.inner_checksum) => {
                return Err(format!(
                    "{} {}: the checksum in mix.lock ({}) differs from the Hex repository's ({})",
                    lock.package,
                    lock.version,
                    lock.inner_checksum,
                    hex::encode(&release.inner_checksum)
                ))
            }
            _ => {}
        }
        let (_, freshness) =
            self.tarball(&lock.package, &lock.version)
                .await
                .map_err(|e| match e {
                    HexError::Rejected(why)
                    | HexError::Unavailable(why)
                    | HexError::NotFound(why) => why,
                    other => format!("{} {}: {other}", lock.package, lock.version),
                })?;
        Ok(freshness)
    }
}

fn not_published(name: &str, version: &str, package: &Package) -> String {
    let mut versions: Vec<&str> = package
        .releases
        .iter()
        .map(|r| r.version.as_str())
        .collect();
    let shown = versions.len().saturating_sub(8);
    versions.drain(..shown);
    format!(
        "version {version} of {name} is not in the Hex repository (it has {})",
        if versions.is_empty() {
            "no versions".to_owned()
        } else {
            versions.join(", ")
        }
    )
}

/// What checking a lock found.
#[derive(Debug, Default)]
pub struct LockReport {
    /// Packages whose registry record is current.
    pub fresh: usize,
    /// Packages served from a kept record while the upstream did not answer.
    pub stale: Vec<(String, Duration)>,
    /// Why the build cannot go on, one line per package.
    pub failures: Vec<String>,
}

/// Where a tarball with this outer checksum is kept.
pub fn tarball_key(sha256: &str) -> String {
    crate::blob_keys::hex_tarball(sha256)
}

fn resource(body: Bytes, freshness: Freshness) -> Resource {
    Resource {
        sha256: hex::encode(Sha256::digest(&body)),
        body,
        freshness,
    }
}

fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "it did not answer in time".into()
    } else if err.is_connect() {
        "it refused or did not accept the connection".into()
    } else {
        err.to_string()
    }
}

/// The body, refused as soon as it grows past `cap`.
async fn read_capped(mut response: reqwest::Response, cap: u64) -> Result<Bytes, String> {
    if response.content_length().is_some_and(|n| n > cap) {
        return Err(format!("it is larger than {} MB", cap >> 20));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(format!("it is larger than {} MB", cap >> 20));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(repo: &str, version: &str) -> HexLock {
        HexLock {
            dep: "acme_lib".into(),
            package: "acme_lib".into(),
            version: version.into(),
            inner_checksum: "00".into(),
            outer_checksum: Some("11".into()),
            repo: repo.into(),
            build_tools: vec!["mix".into()],
        }
    }

    fn cache(dir: &std::path::Path) -> HexCache {
        let blobs = Arc::new(crate::embedded::FsBlobs::open(dir).expect("blobs"));
        // a closed loopback port: nothing leaves this machine
        let settings = HexSettings::new(Some("http://127.0.0.1:9"), None, Duration::from_secs(300))
            .expect("settings");
        HexCache::new(blobs, settings).expect("cache")
    }

    #[tokio::test]
    async fn other_repositories_are_refused_before_anything_is_fetched() {
        let dir = tempfile::tempdir().expect("dir");
        let report = cache(dir.path())
            .check_lock(&[lock("hexpm:acme", "1.0.0")])
            .await;
        assert_eq!(report.failures.len(), 1);
        assert!(
            report.failures[0].contains("private Hex organizations"),
            "{:?}",
            report.failures
        );
    }

    #[tokio::test]
    async fn an_unreachable_upstream_with_nothing_kept_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        let report = cache(dir.path())
            .check_lock(&[lock("hexpm", "1.0.0")])
            .await;
        assert!(
            report.failures[0].contains("did not answer"),
            "{:?}",
            report.failures
        );
        assert!(
            report.failures[0].contains("no copy of it"),
            "{:?}",
            report.failures
        );
    }

    #[tokio::test]
    async fn what_the_upstream_lacks_is_asked_for_once_a_while() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let asked = Arc::new(AtomicUsize::new(0));
        let counted = asked.clone();
        let upstream = axum::Router::new().fallback(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { axum::http::StatusCode::NOT_FOUND }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move { axum::serve(listener, upstream).await });
        let dir = tempfile::tempdir().expect("dir");
        let blobs = Arc::new(crate::embedded::FsBlobs::open(dir.path()).expect("blobs"));
        let settings = HexSettings::new(
            Some(&format!("http://127.0.0.1:{port}")),
            None,
            Duration::from_secs(300),
        )
        .expect("settings");
        let c = HexCache::new(blobs, settings).expect("cache");
        for _ in 0..20 {
            assert!(matches!(
                c.tarball("no_such_package", "1.0.0").await,
                Err(HexError::NotFound(_))
            ));
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1, "one request upstream");
    }

    #[tokio::test]
    async fn names_and_versions_outside_the_layout_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let c = cache(dir.path());
        for name in ["../etc", "a/b", "a\0b", "Upper"] {
            assert!(
                matches!(c.package(name).await, Err(HexError::Invalid(_))),
                "{name:?}"
            );
        }
        assert!(matches!(
            c.tarball("jason", "../1").await,
            Err(HexError::Invalid(_))
        ));
        assert!(matches!(
            c.listing("../names").await,
            Err(HexError::Invalid(_))
        ));
    }
}
