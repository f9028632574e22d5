//! The HTTP router of the single-machine runtime: a request for `APP.localhost` (or
//! `APP.<domain>`) goes to the app's live release; anything else to the platform's own
//! routes (API, git).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use shared::domain::AppName;
use shared::ports::{Runtime, Store};
use shared::PortError;

/// What the router needs.
#[derive(Clone)]
pub struct Proxy {
    /// `localhost`, or the platform's domain: apps are its subdomains.
    pub domain: String,
    /// To tell unknown apps from apps not running.
    pub store: Arc<dyn Store>,
    /// Where the apps run.
    pub runtime: Arc<dyn Runtime>,
    client: Client<HttpConnector, Body>,
    next: Arc<AtomicUsize>,
}

impl Proxy {
    /// A router for apps under `domain`.
    pub fn new(domain: String, store: Arc<dyn Store>, runtime: Arc<dyn Runtime>) -> Self {
        Self {
            domain,
            store,
            runtime,
            client: Client::builder(TokioExecutor::new()).build_http(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// The app a `Host` header names: `APP.<domain>`, with or without a port.
pub fn app_of(domain: &str, host: &str) -> Option<AppName> {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let label = host.strip_suffix(domain)?.strip_suffix('.')?;
    AppName::parse(label).ok()
}

fn page(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text + "\n",
    )
        .into_response()
}

/// Middleware: proxies app hosts, passes the rest on.
pub async fn route_by_host(State(proxy): State<Proxy>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().host().map(str::to_owned));
    let Some(app) = host.as_deref().and_then(|h| app_of(&proxy.domain, h)) else {
        return next.run(req).await;
    };
    match proxy.store.app(&app).await {
        Ok(_) => {}
        Err(PortError::NotFound) => {
            return page(
                StatusCode::NOT_FOUND,
                format!("There is no app called {app} here."),
            )
        }
        Err(err) => {
            tracing::error!(error = %err, "router could not read the store");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The platform is busy; try again.".into(),
            );
        }
    }
    let endpoints = match proxy.runtime.endpoints(&app).await {
        Ok(e) => e,
        Err(err) => {
            tracing::error!(error = %err, "router could not ask the runtime");
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The platform is busy; try again.".into(),
            );
        }
    };
    if endpoints.is_empty() {
        return page(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{app} has no running release yet: deploy it with `git push gigalixir main`."),
        );
    }
    let target = endpoints[proxy.next.fetch_add(1, Ordering::Relaxed) % endpoints.len()];
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let Ok(uri) = format!("http://{target}{path}").parse::<Uri>() else {
        return page(StatusCode::BAD_REQUEST, "Bad request path.".into());
    };
    parts.uri = uri;
    if let Some(h) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
        parts.headers.insert("x-forwarded-host", h);
    }
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static("http"));
    match proxy.client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => resp.map(Body::new),
        Err(err) => {
            tracing::warn!(app = %app, error = %err, "the app did not answer");
            page(StatusCode::BAD_GATEWAY, format!("{app} did not answer."))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_hosts_are_recognised() {
        let p = |host: &str| app_of("localhost", host).map(|a| a.to_string());
        assert_eq!(p("my-app.localhost:5080").as_deref(), Some("my-app"));
        assert_eq!(p("my-app.localhost").as_deref(), Some("my-app"));
        assert_eq!(p("localhost:5080"), None);
        assert_eq!(p("a.b.localhost"), None);
        assert_eq!(p("www.localhost"), None);
        assert_eq!(
            app_of("apps.example.com", "shop.apps.example.com")
                .map(|a| a.to_string())
                .as_deref(),
            Some("shop")
        );
    }
}
