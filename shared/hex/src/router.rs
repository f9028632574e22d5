//! The repository's HTTP face: `GET /packages/NAME`, `/tarballs/NAME-VERSION.tar`,
//! `/names`, `/versions` and `/installs/hex-1.x.csv`, nothing else. Registry resources are
//! the upstream's bytes, served without `Content-Encoding` (Hex gunzips them itself) and
//! with an ETag (a matching `If-None-Match` gets 304).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::cache::{Freshness, HexCache, HexError, Resource};

/// The header that marks a registry resource served from the kept copy while the upstream
/// does not answer: its age in seconds.
pub const STALE_HEADER: &str = "x-gigalixir-stale-seconds";

/// The repository's routes.
pub fn router(cache: HexCache) -> Router {
    Router::new()
        .route("/packages/{name}", get(package))
        .route("/tarballs/{file}", get(tarball))
        .route("/names", get(|s, h| listing(s, h, "names")))
        .route("/versions", get(|s, h| listing(s, h, "versions")))
        // Hex's update check: an empty list means "no newer Hex", and no message.
        .route("/installs/hex-1.x.csv", get(|| async { "" }))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not a resource of this Hex repository\n",
            )
        })
        .with_state(cache)
}

fn error(err: HexError) -> Response {
    let status = match &err {
        HexError::Invalid(_) => StatusCode::BAD_REQUEST,
        HexError::NotFound(_) => StatusCode::NOT_FOUND,
        HexError::Rejected(_) => StatusCode::BAD_GATEWAY,
        HexError::Unavailable(_) | HexError::Blobs(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    if let HexError::Blobs(source) = &err {
        tracing::error!(error = %source, "package cache storage failed");
    }
    (status, format!("{err}\n")).into_response()
}

fn octets(body: bytes::Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        body,
    )
        .into_response()
}

fn registry_response(resource: Resource, headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", resource.sha256);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        octets(resource.body)
    };
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, v);
    }
    if let Freshness::Stale { age } = resource.freshness {
        response
            .headers_mut()
            .insert(STALE_HEADER, HeaderValue::from(age.as_secs()));
    }
    response
}

async fn package(
    State(cache): State<HexCache>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    match cache.package(&name).await {
        Ok((resource, _)) => registry_response(resource, &headers),
        Err(err) => error(err),
    }
}

async fn listing(State(cache): State<HexCache>, headers: HeaderMap, which: &str) -> Response {
    match cache.listing(which).await {
        Ok(resource) => registry_response(resource, &headers),
        Err(err) => error(err),
    }
}

async fn tarball(State(cache): State<HexCache>, Path(file): Path<String>) -> Response {
    let Some((name, version)) = file
        .strip_suffix(".tar")
        .and_then(|stem| stem.split_once('-'))
    else {
        return error(HexError::Invalid(format!(
            "`{}` is not a tarball name (NAME-VERSION.tar)",
            file.escape_debug()
        )));
    };
    match cache.tarball(name, version).await {
        Ok((tar, _)) => octets(tar),
        Err(err) => error(err),
    }
}

/// The socket's file name in the directory [`serve_socket`] serves in.
pub const SOCKET: &str = "hex.sock";

/// Serves the repository on `DIR/hex.sock`, for builds: the directory (made if missing,
/// mode 0755) is mounted read-only into each build, so the socket is the only thing in it,
/// and it is open to every user (builds run as another user than the platform).
pub async fn serve_socket(
    dir: &std::path::Path,
    cache: HexCache,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let socket = dir.join(SOCKET);
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = tokio::net::UnixListener::bind(&socket)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))?;
    let app = router(cache).layer(crate::web::trace_layer());
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "the package cache stopped");
        }
    }))
}
