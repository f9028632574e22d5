//! The blobs suite against Cloud Storage, on the emulator that `scripts/emulator-gcs start`
//! runs (at `STORAGE_EMULATOR_HOST`, default 127.0.0.1:8683), plus what only this backend
//! does: the bucket layout, large resumable uploads, signed URLs.
//!
//! Each test gets its own bucket prefix, so tests and runs never see each other's objects.
//!
//! The suite runs twice: as the emulator takes it (uploads in one request) and as Cloud
//! Storage takes it (resumable uploads). The emulator builds a resumable session's URL
//! from the `Host` header, which the client sends without the port; for the second run a
//! loopback proxy forwards the requests with the right `Host`, so the session URL points
//! back at the emulator.

use std::net::{TcpStream, ToSocketAddrs};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt};
use shared::contract::{unique, Guard};
use shared::error::PortError;
use shared::gcp::gcs::{GcsBlobs, GcsConfig, Uploads, EMULATOR_HOST_VAR, RESUMABLE_THRESHOLD};
use shared::ports::blobs::ByteStream;
use shared::ports::Blobs;

const DEFAULT_EMULATOR: &str = "127.0.0.1:8683";

/// The emulator's `host:port`; fails the test, naming the script, when nothing answers.
fn emulator() -> String {
    let host = std::env::var(EMULATOR_HOST_VAR)
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_EMULATOR.to_owned());
    let host = host
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let answers = host
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    assert!(
        answers,
        "no Cloud Storage emulator answers at {host} ({EMULATOR_HOST_VAR}): \
         start it with `scripts/emulator-gcs start`"
    );
    host
}

/// A bucket prefix of its own.
fn fresh_prefix() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

/// An emulator-backed store whose buckets are created on first use.
fn config() -> GcsConfig {
    GcsConfig::emulator(&fresh_prefix(), &emulator()).creating_buckets("gigalixir-test")
}

fn blobs() -> (Arc<dyn Blobs>, Guard) {
    let blobs = GcsBlobs::new(config()).expect("GcsBlobs::new");
    (Arc::new(blobs), Box::new(()))
}

mod blobs_suite {
    use super::*;
    shared::blobs_contract!(blobs);
}

/// Forwards every request to the emulator with `Host: host:port` (see the file's docs).
async fn forward(
    axum::extract::State(upstream): axum::extract::State<Arc<String>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .expect("request body");
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = parts.headers;
    headers.remove(http::header::HOST);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let answer = client
        .request(parts.method, format!("http://{upstream}{path}"))
        .headers(headers)
        .body(body)
        .send()
        .await
        .expect("the emulator answers the proxy");
    let mut response = axum::response::Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != http::header::TRANSFER_ENCODING && name != http::header::CONTENT_LENGTH {
            response = response.header(name, value);
        }
    }
    let body = answer.bytes().await.expect("the emulator's body");
    response
        .body(axum::body::Body::from(body))
        .expect("response")
}

/// A proxy in front of the emulator, for as long as the test's runtime lives.
fn proxy() -> String {
    let upstream = emulator();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("addr");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(Arc::new(upstream));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr.to_string()
}

/// A store that uploads as on Cloud Storage: resumable from the threshold on, and streams.
fn resumable_blobs() -> (Arc<dyn Blobs>, Guard) {
    let mut config =
        GcsConfig::emulator(&fresh_prefix(), &proxy()).creating_buckets("gigalixir-test");
    config.uploads = Uploads::Resumable;
    let blobs = GcsBlobs::new(config).expect("GcsBlobs::new");
    (Arc::new(blobs), Box::new(()))
}

mod resumable_suite {
    use super::*;
    shared::blobs_contract!(resumable_blobs);
}

/// A fake service-account key with a freshly generated RSA key, as a key file holds it.
fn service_account_key() -> serde_json::Value {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("the signed-URL tests generate a key with `openssl`: install it (apt-get install openssl)");
    assert!(out.status.success(), "openssl genpkey failed: {out:?}");
    let pem = String::from_utf8(out.stdout).expect("PEM is text");
    assert!(pem.contains("BEGIN PRIVATE KEY"), "a PKCS#8 key: {pem}");
    serde_json::json!({
        "type": "service_account",
        "project_id": "gigalixir-test",
        "private_key_id": "test-key",
        "private_key": pem,
        "client_email": "blobs@gigalixir-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

async fn gather(stream: ByteStream) -> Bytes {
    let mut whole = BytesMut::new();
    let mut stream = stream;
    while let Some(chunk) = stream.next().await {
        whole.extend_from_slice(&chunk.expect("chunk"));
    }
    whole.freeze()
}

/// Keys go to the bucket of their space; keys outside the spaces are refused.
#[tokio::test]
async fn keys_live_in_the_bucket_of_their_space() {
    let config = config();
    let prefix = config.prefix.clone();
    let blobs = GcsBlobs::new(config).expect("new");
    blobs
        .put("slugs/app/one.tgz", Bytes::from_static(b"slug"))
        .await
        .expect("put");
    // The object sits in `PREFIX-slugs` under its full key, as the JSON API shows it.
    let url = format!(
        "http://{}/storage/v1/b/{prefix}-slugs/o/slugs%2Fapp%2Fone.tgz?alt=media",
        emulator()
    );
    let body = reqwest::get(&url)
        .await
        .expect("GET")
        .error_for_status()
        .expect("the object is in the slugs bucket")
        .bytes()
        .await
        .expect("body");
    assert_eq!(body, Bytes::from_static(b"slug"));

    for key in ["logs/app/1", "slugs", "slug/x"] {
        let err = blobs.put(key, Bytes::from_static(b"x")).await.err();
        assert!(
            matches!(&err, Some(PortError::Invalid(m)) if m.contains("slugs") || m.contains("space")),
            "{key:?}: {err:?}"
        );
    }
    assert!(matches!(
        blobs.list("logs").await,
        Err(PortError::Invalid(_))
    ));
    assert_eq!(
        blobs.list("slugs").await.expect("list a space"),
        vec!["slugs/app/one.tgz".to_owned()]
    );
}

/// Objects larger than the resumable-upload threshold round-trip, whole or streamed.
async fn large_objects_round_trip(blobs: Arc<dyn Blobs>) {
    let len = RESUMABLE_THRESHOLD + (4 << 20) + 7;

    let key = format!("slugs/{}/whole.tgz", unique("big"));
    let data = pattern(len, 0x5a);
    blobs.put(&key, data.clone()).await.expect("put 20 MiB");
    let got = blobs.get(&key).await.expect("get");
    assert_eq!(got.len(), len);
    assert!(got == data, "get returned other bytes");

    let key = format!("slugs/{}/streamed.tgz", unique("big"));
    let data = pattern(len, 0xa5);
    let parts: Vec<_> = data
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    blobs
        .put_stream(&key, stream::iter(parts).boxed())
        .await
        .expect("put_stream 20 MiB");
    let got = gather(blobs.get_stream(&key).await.expect("get_stream")).await;
    assert_eq!(got.len(), len);
    assert!(got == data, "get_stream returned other bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_round_trip_in_one_request() {
    large_objects_round_trip(blobs().0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_round_trip_resumably() {
    large_objects_round_trip(resumable_blobs().0).await;
}

/// A signed URL lets a plain HTTP client, without credentials, download the object.
///
/// The emulator does not check signatures (it serves the object whatever the signature),
/// so the URL's V4 form is checked here too; Cloud Storage itself checks the signature.
#[tokio::test]
async fn a_signed_url_serves_the_object_without_credentials() {
    let config = config().with_signing_key(service_account_key());
    let bucket = format!("{}-slugs", config.prefix);
    let blobs = GcsBlobs::new(config).expect("new");
    let key = format!("slugs/{}/my app.tgz", unique("app"));
    let data = pattern(300_000, 7);
    blobs.put(&key, data.clone()).await.expect("put");

    let url = blobs
        .signed_url(&key, Duration::from_secs(600))
        .await
        .expect("signed_url")
        .expect("a backend with a signing key gives URLs");

    let host = emulator();
    assert_eq!(url.scheme(), "http");
    assert_eq!(
        format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port().unwrap_or(0)
        ),
        host
    );
    let object_path = key.replace(' ', "%20");
    assert_eq!(url.path(), format!("/{bucket}/{object_path}"));
    let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["X-Goog-Algorithm"], "GOOG4-RSA-SHA256");
    let date = &query["X-Goog-Date"];
    assert!(
        chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ").is_ok(),
        "a V4 timestamp: {date}"
    );
    let credential = &query["X-Goog-Credential"];
    assert_eq!(
        credential,
        &format!(
            "blobs@gigalixir-test.iam.gserviceaccount.com/{}/auto/storage/goog4_request",
            &date[..8]
        )
    );
    assert_eq!(query["X-Goog-Expires"], "600");
    assert_eq!(query["X-Goog-SignedHeaders"], "host");
    let signature = &query["X-Goog-Signature"];
    assert_eq!(signature.len(), 512, "an RSA-2048 signature in hex");
    assert!(signature.chars().all(|c| c.is_ascii_hexdigit()));

    let response = reqwest::get(url.as_str())
        .await
        .expect("GET the signed URL");
    assert!(response.status().is_success(), "{}", response.status());
    let body = response.bytes().await.expect("body");
    assert!(body == data, "the signed URL served other bytes");

    assert!(matches!(
        blobs
            .signed_url(&key, Duration::from_secs(8 * 24 * 3600))
            .await,
        Err(PortError::Invalid(_))
    ));
}

/// Without a signing key there are no signed URLs: the caller streams the object itself.
#[tokio::test]
async fn without_a_key_there_are_no_signed_urls() {
    let (blobs, _guard) = blobs();
    let url = blobs
        .signed_url("slugs/app/x.tgz", Duration::from_secs(60))
        .await
        .expect("signed_url");
    assert_eq!(url, None);
}

/// Without `create_buckets`, a missing bucket is an error that names it.
#[tokio::test]
async fn missing_buckets_are_not_created_unless_asked() {
    let config = GcsConfig::emulator(&fresh_prefix(), &emulator());
    let bucket = format!("{}-repos", config.prefix);
    let blobs = GcsBlobs::new(config).expect("new");
    let err = blobs.list("repos/app").await.expect_err("no bucket");
    assert!(err.is_transient(), "{err:?}");
    let cause = std::error::Error::source(&err).map(|c| c.to_string());
    assert!(
        cause.as_deref().is_some_and(|c| c.contains(&bucket)),
        "the error names the bucket: {cause:?}"
    );
}

/// With nothing listening at the endpoint, calls fail as unavailable (retried a few times,
/// not for minutes).
#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let blobs = GcsBlobs::new(GcsConfig::emulator(
        &fresh_prefix(),
        &format!("127.0.0.1:{port}"),
    ))
    .expect("new");
    let err = blobs
        .get("slugs/app/x.tgz")
        .await
        .expect_err("nothing there");
    assert!(err.is_transient(), "{err:?}");
    let err = blobs
        .put("slugs/app/x.tgz", Bytes::from_static(b"x"))
        .await
        .expect_err("nothing there");
    assert!(err.is_transient(), "{err:?}");
}
