//! [`Blobs`] on Cloud Storage: [`GcsBlobs`], one bucket per blob space.
//!
//! Layout (the Terraform in `infra/` creates the same buckets): the first part of a key is
//! its space, one of [`BLOB_SPACES`], and selects the bucket `PREFIX-SPACE`; the object name
//! inside is the whole key. `slugs/my-app/ab12.tgz` with prefix `acme` is the object
//! `slugs/my-app/ab12.tgz` of the bucket `acme-slugs`. Keys outside the spaces are refused.
//!
//! Reads and writes go through `google-cloud-storage` (checksummed; resumable uploads from
//! [`RESUMABLE_THRESHOLD`] on and for streams, see [`Uploads`]). That client has no JSON
//! transport for the metadata calls (list, delete, create a bucket), only gRPC, which the
//! emulator does not speak: those are plain JSON API requests, with the same credentials.
//!
//! Slugs can be handed out as V4 signed URLs (a `GET` without credentials for a while),
//! signed with a service-account key or, on Google Cloud, through the IAM `signBlob` API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt};
use gcs_reqwest as reqwest;
use google_cloud_auth::credentials::{
    anonymous, service_account, Builder as AdcBuilder, CacheableResource, Credentials,
};
use google_cloud_auth::signer::Signer;
use google_cloud_gax::retry_policy::RetryPolicyExt;
use google_cloud_storage::builder::storage::SignedUrlBuilder;
use google_cloud_storage::client::Storage;
use google_cloud_storage::retry_policy::RetryableErrors;
use google_cloud_storage::streaming_source::{SizeHint, StreamingSource};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use tokio::sync::OnceCell;
use url::Url;

use crate::deployment::BLOB_SPACES;
use crate::error::{PortError, PortResult};
use crate::ports::blobs::{check_key, Blobs, ByteStream};

/// Where Cloud Storage answers when no emulator is named.
pub const PRODUCTION_ENDPOINT: &str = "https://storage.googleapis.com";

/// The variable naming an emulator (`host:port` or a URL), as every Cloud Storage client
/// library reads it; the official Rust one does not, so [`GcsConfig::from_url`] does.
pub const EMULATOR_HOST_VAR: &str = "STORAGE_EMULATOR_HOST";

/// Payloads from this size on are uploaded in resumable chunks, smaller ones in one request.
pub const RESUMABLE_THRESHOLD: usize = 16 << 20;

/// The longest life of a signed URL (Cloud Storage's limit for V4 signatures).
pub const MAX_SIGNED_URL_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Longest wait for a metadata call (list, delete, create a bucket).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a connection, so that a missing endpoint fails in seconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts of a read or write that failed in a way worth retrying.
const ATTEMPTS: u32 = 3;
/// Objects per page of a listing (the API's maximum).
const PAGE_SIZE: &str = "1000";

/// Characters escaped in an object name inside a JSON API path: all but the unreserved
/// ones, `/` included (the name is one path segment).
const OBJECT_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Who the requests are made as.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum GcsCredentials {
    /// Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's, or the
    /// metadata server of the machine.
    ApplicationDefault,
    /// No credentials at all, as an emulator takes.
    Anonymous,
}

/// How signed URLs are signed.
#[derive(Clone)]
#[non_exhaustive]
pub enum GcsSigner {
    /// No signed URLs: [`Blobs::signed_url`] answers `None`.
    None,
    /// With the Application Default Credentials: a service-account key file signs locally,
    /// the metadata server's account signs through the IAM `signBlob` API.
    ApplicationDefault,
    /// With this service-account key (the JSON file's contents).
    ServiceAccountKey(serde_json::Value),
}

impl std::fmt::Debug for GcsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key's JSON holds the private key: never print it.
        f.write_str(match self {
            Self::None => "None",
            Self::ApplicationDefault => "ApplicationDefault",
            Self::ServiceAccountKey(_) => "ServiceAccountKey(..)",
        })
    }
}

/// How objects are uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Uploads {
    /// Objects from [`RESUMABLE_THRESHOLD`] on, and streams, go up in resumable chunks
    /// (Cloud Storage; memory stays bounded whatever the size).
    Resumable,
    /// Every object goes up in one request; a stream is gathered in memory first. For the
    /// emulator: it builds a resumable session's URL from the `Host` header, which the
    /// client sends without the port, so the session's chunks would go to port 80.
    SingleRequest,
}

/// What to do about buckets that do not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingBuckets {
    /// They are an error (production: the buckets come from Terraform).
    Fail,
    /// Create them in this project before the first call (development and tests).
    Create {
        /// The project the buckets are created in.
        project: String,
    },
}

/// Everything [`GcsBlobs`] needs.
#[derive(Debug, Clone)]
pub struct GcsConfig {
    /// The bucket names' prefix: space `slugs` lives in the bucket `PREFIX-slugs`.
    pub prefix: String,
    /// The API's base URL: [`PRODUCTION_ENDPOINT`] or an emulator's.
    pub endpoint: String,
    /// Who the requests are made as.
    pub credentials: GcsCredentials,
    /// How signed URLs are signed.
    pub signer: GcsSigner,
    /// What to do about buckets that do not exist.
    pub missing_buckets: MissingBuckets,
    /// How objects are uploaded.
    pub uploads: Uploads,
}

impl GcsConfig {
    /// Production: Cloud Storage itself, Application Default Credentials for requests and
    /// signatures, buckets that must exist.
    pub fn production(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            endpoint: PRODUCTION_ENDPOINT.to_owned(),
            credentials: GcsCredentials::ApplicationDefault,
            signer: GcsSigner::ApplicationDefault,
            missing_buckets: MissingBuckets::Fail,
            uploads: Uploads::Resumable,
        }
    }

    /// An emulator at `endpoint` (`http://127.0.0.1:8683`, or `host:port`): no credentials,
    /// no signed URLs (see [`GcsConfig::with_signing_key`]), buckets that must exist (see
    /// [`GcsConfig::creating_buckets`]), uploads in one request ([`Uploads::SingleRequest`]).
    pub fn emulator(prefix: &str, endpoint: &str) -> Self {
        let endpoint = if endpoint.contains("://") {
            endpoint.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", endpoint.trim_end_matches('/'))
        };
        Self {
            prefix: prefix.to_owned(),
            endpoint,
            credentials: GcsCredentials::Anonymous,
            signer: GcsSigner::None,
            missing_buckets: MissingBuckets::Fail,
            uploads: Uploads::SingleRequest,
        }
    }

    /// Creates missing buckets in `project` before the first call.
    pub fn creating_buckets(mut self, project: &str) -> Self {
        self.missing_buckets = MissingBuckets::Create {
            project: project.to_owned(),
        };
        self
    }

    /// Signs URLs with this service-account key (the JSON key file's contents).
    pub fn with_signing_key(mut self, key: serde_json::Value) -> Self {
        self.signer = GcsSigner::ServiceAccountKey(key);
        self
    }

    /// The configuration of `gs://PREFIX[?create_buckets=PROJECT]` (what follows `gs://`),
    /// with the environment `var` reads from:
    /// - [`EMULATOR_HOST_VAR`] set: that emulator, no credentials, URLs signed with the key
    ///   file in `GOOGLE_APPLICATION_CREDENTIALS` if it is set, else none;
    /// - otherwise Cloud Storage with Application Default Credentials.
    ///
    /// `create_buckets=PROJECT` creates missing buckets in PROJECT; without it they must
    /// exist.
    pub fn from_url(rest: &str, var: impl Fn(&str) -> Option<String>) -> PortResult<Self> {
        let (prefix, query) = match rest.split_once('?') {
            Some((prefix, query)) => (prefix, Some(query)),
            None => (rest, None),
        };
        let mut config = match var(EMULATOR_HOST_VAR).filter(|h| !h.is_empty()) {
            Some(host) => {
                let config = Self::emulator(prefix, &host);
                match var("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty()) {
                    Some(path) => config.with_signing_key(read_key_file(&path)?),
                    None => config,
                }
            }
            None => Self::production(prefix),
        };
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            match pair.split_once('=') {
                Some(("create_buckets", project)) if !project.is_empty() => {
                    config = config.creating_buckets(project);
                }
                _ => {
                    return Err(PortError::Invalid(format!(
                        "`gs://{rest}`: unknown option `{pair}` (known: create_buckets=PROJECT)"
                    )))
                }
            }
        }
        check_prefix(&config.prefix)?;
        Ok(config)
    }
}

fn read_key_file(path: &str) -> PortResult<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        PortError::Invalid(format!("cannot read the service-account key `{path}`: {e}"))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| PortError::Invalid(format!("`{path}` is not a service-account key file: {e}")))
}

/// Bucket names are 3 to 63 lowercase letters, digits, `-` and `_`, starting and ending
/// with a letter or digit; the longest space (`packages`) and its dash must still fit.
fn check_prefix(prefix: &str) -> PortResult<()> {
    let longest = BLOB_SPACES.iter().map(|s| s.len()).max().unwrap_or(0);
    let ok = !prefix.is_empty()
        && prefix.len() + 1 + longest <= 63
        && prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && prefix.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(PortError::Invalid(format!(
            "`{prefix}` cannot prefix bucket names: use 1 to {} lowercase letters, digits, \
             `-` or `_`, starting with a letter or digit",
            63 - 1 - longest
        )))
    }
}

/// A failure of Cloud Storage or of the way to it; the port reports it as
/// [`PortError::Unavailable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GcsError {
    /// A bucket the layout needs does not exist.
    #[error(
        "the bucket `{0}` does not exist (create it, or open the backend with create_buckets)"
    )]
    MissingBucket(String),
    /// The API answered with an error status.
    #[error("cloud storage answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The API's error message.
        message: String,
    },
    /// The request did not get an answer.
    #[error("cloud storage request failed")]
    Request(#[source] reqwest::Error),
    /// The storage client failed.
    #[error("cloud storage client failed")]
    Client(#[source] google_cloud_storage::Error),
    /// Credentials could not be obtained or used.
    #[error("cloud storage credentials failed: {0}")]
    Credentials(String),
}

/// The clients and credentials, made on first use: the storage client is built
/// asynchronously, and Application Default Credentials need a running Tokio runtime.
struct Clients {
    storage: Storage,
    rest: reqwest::Client,
    credentials: Credentials,
    signer: Option<Signer>,
}

/// The Cloud Storage blob store.
pub struct GcsBlobs {
    config: GcsConfig,
    clients: OnceCell<Clients>,
}

impl std::fmt::Debug for GcsBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsBlobs")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl GcsBlobs {
    /// Checks the configuration (and a signing key's form); nothing is loaded or sent
    /// before the first call, which gets the credentials, builds the clients and creates
    /// missing buckets when configured to.
    pub fn new(config: GcsConfig) -> PortResult<Self> {
        check_prefix(&config.prefix)?;
        Url::parse(&config.endpoint).map_err(|e| {
            PortError::Invalid(format!("`{}` is not an endpoint URL: {e}", config.endpoint))
        })?;
        if let GcsSigner::ServiceAccountKey(key) = &config.signer {
            signing_key(key)?;
        }
        Ok(Self {
            config,
            clients: OnceCell::new(),
        })
    }

    /// The bucket of a space.
    pub fn bucket(&self, space: &str) -> String {
        format!("{}-{space}", self.config.prefix)
    }

    async fn clients(&self) -> PortResult<&Clients> {
        self.clients.get_or_try_init(|| self.connect()).await
    }

    async fn connect(&self) -> PortResult<Clients> {
        let credentials = match self.config.credentials {
            GcsCredentials::Anonymous => anonymous::Builder::new().build(),
            GcsCredentials::ApplicationDefault => AdcBuilder::default()
                .build()
                .map_err(|e| PortError::unavailable(GcsError::Credentials(e.to_string())))?,
        };
        let signer = match &self.config.signer {
            GcsSigner::None => None,
            GcsSigner::ApplicationDefault => Some(
                AdcBuilder::default()
                    .build_signer()
                    .map_err(|e| PortError::unavailable(GcsError::Credentials(e.to_string())))?,
            ),
            GcsSigner::ServiceAccountKey(key) => Some(signing_key(key)?),
        };
        let threshold = match self.config.uploads {
            Uploads::Resumable => RESUMABLE_THRESHOLD,
            Uploads::SingleRequest => usize::MAX,
        };
        let storage = Storage::builder()
            .with_endpoint(self.config.endpoint.clone())
            .with_credentials(credentials.clone())
            .with_retry_policy(RetryableErrors.with_attempt_limit(ATTEMPTS))
            .with_resumable_upload_threshold(threshold)
            .build()
            .await
            .map_err(|e| PortError::unavailable(GcsError::Credentials(e.to_string())))?;
        let rest = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| PortError::unavailable(GcsError::Request(e)))?;
        let clients = Clients {
            storage,
            rest,
            credentials,
            signer,
        };
        if let MissingBuckets::Create { project } = &self.config.missing_buckets {
            for space in BLOB_SPACES {
                self.create_bucket(&clients, project, &self.bucket(space))
                    .await?;
            }
        }
        Ok(clients)
    }

    async fn create_bucket(
        &self,
        clients: &Clients,
        project: &str,
        bucket: &str,
    ) -> PortResult<()> {
        let url = self.api_url(&["storage", "v1", "b"])?;
        let request = clients
            .rest
            .post(url)
            .query(&[("project", project)])
            .json(&serde_json::json!({ "name": bucket }));
        match send(&clients.credentials, request).await {
            Ok(_) => {
                tracing::info!(bucket, "created the bucket");
                Ok(())
            }
            Err(PortError::AlreadyExists) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The JSON API URL made of these path segments (each escaped).
    fn api_url(&self, segments: &[&str]) -> PortResult<Url> {
        let mut url = Url::parse(&self.config.endpoint)
            .map_err(|e| PortError::Invalid(format!("bad endpoint: {e}")))?;
        let mut path = url.path().trim_end_matches('/').to_owned();
        for segment in segments {
            path.push('/');
            path.extend(utf8_percent_encode(segment, OBJECT_SEGMENT));
        }
        url.set_path(&path);
        Ok(url)
    }

    /// Splits a key into its bucket and object name, refusing keys outside the spaces.
    fn locate<'k>(&self, key: &'k str) -> PortResult<(String, &'k str)> {
        check_key(key)?;
        let space = space_of(key)?;
        if key == space {
            return Err(PortError::Invalid(format!(
                "`{key}` names a blob space, not an object in it"
            )));
        }
        Ok((format!("projects/_/buckets/{}", self.bucket(space)), key))
    }

    /// Every key of the bucket of `space` that starts with `prefix` (which ends with `/`).
    async fn list_space(&self, space: &str, prefix: &str) -> PortResult<Vec<String>> {
        let clients = self.clients().await?;
        let bucket = self.bucket(space);
        let url = self.api_url(&["storage", "v1", "b", &bucket, "o"])?;
        let mut keys = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut query = vec![
                ("prefix", prefix.to_owned()),
                ("maxResults", PAGE_SIZE.to_owned()),
                ("fields", "items(name),nextPageToken".to_owned()),
            ];
            if let Some(token) = page_token.take() {
                query.push(("pageToken", token));
            }
            let request = clients.rest.get(url.clone()).query(&query);
            let response = match send(&clients.credentials, request).await {
                Err(PortError::NotFound) => {
                    return Err(PortError::unavailable(GcsError::MissingBucket(bucket)))
                }
                other => other?,
            };
            let page: ObjectPage = response
                .json()
                .await
                .map_err(|e| PortError::unavailable(GcsError::Request(e)))?;
            keys.extend(
                page.items
                    .into_iter()
                    .map(|o| o.name)
                    .filter(|name| name.starts_with(prefix)),
            );
            match page.next_page_token {
                Some(token) if !token.is_empty() => page_token = Some(token),
                _ => break,
            }
        }
        Ok(keys)
    }
}

/// A signer from a service-account key.
fn signing_key(key: &serde_json::Value) -> PortResult<Signer> {
    service_account::Builder::new(key.clone())
        .build_signer()
        .map_err(|e| PortError::Invalid(format!("the service-account key cannot sign: {e}")))
}

/// Sends a JSON API request with the credentials' headers; an error status becomes the
/// port's error.
async fn send(
    credentials: &Credentials,
    request: reqwest::RequestBuilder,
) -> PortResult<reqwest::Response> {
    let headers = match credentials.headers(http::Extensions::new()).await {
        Ok(CacheableResource::New { data, .. }) => data,
        Ok(CacheableResource::NotModified) => {
            return Err(PortError::unavailable(GcsError::Credentials(
                "no headers from the credentials".into(),
            )))
        }
        Err(e) => return Err(PortError::unavailable(GcsError::Credentials(e.to_string()))),
    };
    let response = request
        .headers(headers)
        .send()
        .await
        .map_err(|e| PortError::unavailable(GcsError::Request(e)))?;
    let status = response.status().as_u16();
    if response.status().is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<ApiError>(&body)
        .map(|e| e.error.message)
        .unwrap_or(body);
    Err(status_error(status, message))
}

/// The space a key or prefix belongs to: its first part, one of [`BLOB_SPACES`].
fn space_of(key: &str) -> PortResult<&'static str> {
    let first = key.split('/').next().unwrap_or_default();
    BLOB_SPACES
        .iter()
        .copied()
        .find(|space| *space == first)
        .ok_or_else(|| {
            PortError::Invalid(format!(
                "`{key}` is outside the blob spaces: keys start with one of {}",
                BLOB_SPACES.join(", ")
            ))
        })
}

/// The port's error for an HTTP error status of the API.
fn status_error(status: u16, message: String) -> PortError {
    match status {
        404 => PortError::NotFound,
        409 => PortError::AlreadyExists,
        412 => PortError::Precondition,
        400 => PortError::Invalid(message),
        _ => PortError::unavailable(GcsError::Status { status, message }),
    }
}

/// The port's error for a storage client failure.
fn client_error(err: google_cloud_storage::Error) -> PortError {
    match err.http_status_code() {
        Some(404) => PortError::NotFound,
        Some(409) => PortError::AlreadyExists,
        Some(412) => PortError::Precondition,
        _ => PortError::unavailable(GcsError::Client(err)),
    }
}

#[derive(Deserialize)]
struct ApiError {
    error: ApiErrorBody,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectPage {
    #[serde(default)]
    items: Vec<ObjectName>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct ObjectName {
    name: String,
}

/// A [`ByteStream`] as the storage client's upload source. The client wants a `Sync`
/// source; the mutex provides it without ever being locked (`next` has `&mut self`).
struct StreamSource {
    stream: Mutex<ByteStream>,
    /// The stream's own error, handed back to the caller instead of the client's wrapper.
    failure: Arc<Mutex<Option<PortError>>>,
}

/// What the client sees when the stream failed; the real error waits in `failure`.
#[derive(Debug, thiserror::Error)]
#[error("the upload's source stream failed")]
struct SourceFailed;

impl StreamingSource for StreamSource {
    type Error = SourceFailed;

    async fn next(&mut self) -> Option<Result<Bytes, SourceFailed>> {
        let stream = match self.stream.get_mut() {
            Ok(stream) => stream,
            Err(poisoned) => poisoned.into_inner(),
        };
        match stream.next().await? {
            Ok(chunk) => Some(Ok(chunk)),
            Err(err) => {
                let mut slot = match self.failure.lock() {
                    Ok(slot) => slot,
                    Err(poisoned) => poisoned.into_inner(),
                };
                slot.get_or_insert(err);
                Some(Err(SourceFailed))
            }
        }
    }

    async fn size_hint(&self) -> Result<SizeHint, SourceFailed> {
        Ok(SizeHint::new())
    }
}

#[async_trait]
impl Blobs for GcsBlobs {
    async fn put(&self, key: &str, data: Bytes) -> PortResult<()> {
        let (bucket, name) = self.locate(key)?;
        let storage = &self.clients().await?.storage;
        // Buffered: the checksum goes ahead of the data (the emulator does not take it
        // trailing). Writing the same whole object again gives the same result: safe to
        // retry.
        storage
            .write_object(bucket, name, data)
            .with_idempotency(true)
            .send_buffered()
            .await
            .map_err(client_error)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> PortResult<Bytes> {
        let mut chunks = self.get_stream(key).await?;
        let mut whole = BytesMut::new();
        while let Some(chunk) = chunks.next().await {
            whole.extend_from_slice(&chunk?);
        }
        Ok(whole.freeze())
    }

    async fn list(&self, prefix: &str) -> PortResult<Vec<String>> {
        let prefix = prefix.trim_end_matches('/');
        let mut keys = if prefix.is_empty() {
            let mut keys = Vec::new();
            for space in BLOB_SPACES {
                keys.extend(self.list_space(space, &format!("{space}/")).await?);
            }
            keys
        } else {
            check_key(prefix)?;
            let space = space_of(prefix)?;
            self.list_space(space, &format!("{prefix}/")).await?
        };
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> PortResult<()> {
        let (_, name) = self.locate(key)?;
        let clients = self.clients().await?;
        let bucket = self.bucket(space_of(key)?);
        let url = self.api_url(&["storage", "v1", "b", &bucket, "o", name])?;
        match send(&clients.credentials, clients.rest.delete(url)).await {
            Ok(_) | Err(PortError::NotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }

    async fn put_stream(&self, key: &str, data: ByteStream) -> PortResult<()> {
        let (bucket, name) = self.locate(key)?;
        if self.config.uploads == Uploads::SingleRequest {
            let mut data = data;
            let mut whole = BytesMut::new();
            while let Some(chunk) = data.next().await {
                whole.extend_from_slice(&chunk?);
            }
            return self.put(key, whole.freeze()).await;
        }
        let storage = &self.clients().await?.storage;
        let failure = Arc::new(Mutex::new(None));
        let source = StreamSource {
            stream: Mutex::new(data),
            failure: failure.clone(),
        };
        // A resumable upload becomes the object only when its last chunk is in: when the
        // stream fails first, the old object stays.
        let result = storage
            .write_object(bucket, name, source)
            .send_buffered()
            .await;
        let failed = match failure.lock() {
            Ok(mut slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        match (result, failed) {
            (_, Some(source_error)) => Err(source_error),
            (Ok(_), None) => Ok(()),
            (Err(err), None) => Err(client_error(err)),
        }
    }

    async fn get_stream(&self, key: &str) -> PortResult<ByteStream> {
        let (bucket, name) = self.locate(key)?;
        let storage = &self.clients().await?.storage;
        let response = storage
            .read_object(bucket, name)
            .send()
            .await
            .map_err(client_error)?;
        Ok(stream::unfold(response, |mut response| async move {
            let chunk = response.next().await?;
            Some((chunk.map_err(client_error), response))
        })
        .boxed())
    }

    async fn signed_url(&self, key: &str, ttl: Duration) -> PortResult<Option<Url>> {
        let (bucket, name) = self.locate(key)?;
        if ttl.is_zero() || ttl > MAX_SIGNED_URL_TTL {
            return Err(PortError::Invalid(format!(
                "a signed URL lives between 1 s and 7 days, not {ttl:?}"
            )));
        }
        let Some(signer) = &self.clients().await?.signer else {
            return Ok(None);
        };
        let signed = SignedUrlBuilder::for_object(bucket, name)
            .with_method(google_cloud_storage::http::Method::GET)
            .with_expiration(ttl)
            .with_endpoint(self.config.endpoint.clone())
            .sign_with(signer)
            .await
            .map_err(|e| PortError::unavailable(GcsError::Credentials(e.to_string())))?;
        let url = Url::parse(&signed).map_err(PortError::unavailable)?;
        Ok(Some(url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn urls_name_the_prefix_the_emulator_and_bucket_creation() {
        let config = GcsConfig::from_url(
            "acme-dev?create_buckets=local",
            env(&[(EMULATOR_HOST_VAR, "127.0.0.1:8683")]),
        )
        .expect("parsed");
        assert_eq!(config.prefix, "acme-dev");
        assert_eq!(config.endpoint, "http://127.0.0.1:8683");
        assert!(matches!(config.credentials, GcsCredentials::Anonymous));
        assert!(matches!(config.signer, GcsSigner::None));
        assert_eq!(
            config.missing_buckets,
            MissingBuckets::Create {
                project: "local".into()
            }
        );

        let config = GcsConfig::from_url("acme", env(&[])).expect("parsed");
        assert_eq!(config.endpoint, PRODUCTION_ENDPOINT);
        assert!(matches!(
            config.credentials,
            GcsCredentials::ApplicationDefault
        ));
        assert!(matches!(config.signer, GcsSigner::ApplicationDefault));
        assert_eq!(config.missing_buckets, MissingBuckets::Fail);
    }

    #[test]
    fn bad_prefixes_and_options_are_refused() {
        for rest in ["", "Acme", "-acme", "a/b", &"x".repeat(60), "acme?create=1"] {
            let err = GcsConfig::from_url(rest, env(&[])).err();
            assert!(
                matches!(err, Some(PortError::Invalid(_))),
                "{rest:?}: {err:?}"
            );
        }
    }

    #[test]
    fn keys_pick_the_bucket_of_their_space() {
        let blobs = GcsBlobs::new(GcsConfig::emulator("acme", "127.0.0.1:1")).expect("new");
        let (bucket, name) = blobs.locate("slugs/my-app/ab.tgz").expect("located");
        assert_eq!(bucket, "projects/_/buckets/acme-slugs");
        assert_eq!(name, "slugs/my-app/ab.tgz");
        for key in ["logs/x", "slugs", "slugsx/y", "/slugs/x"] {
            assert!(
                matches!(blobs.locate(key), Err(PortError::Invalid(_))),
                "{key:?} should be refused"
            );
        }
    }

    #[test]
    fn object_names_are_one_escaped_path_segment() {
        let blobs = GcsBlobs::new(GcsConfig::emulator("acme", "http://h:1/")).expect("new");
        let url = blobs
            .api_url(&["storage", "v1", "b", "acme-slugs", "o", "slugs/a b/c+d"])
            .expect("url");
        assert_eq!(
            url.as_str(),
            "http://h:1/storage/v1/b/acme-slugs/o/slugs%2Fa%20b%2Fc%2Bd"
        );
    }
}
