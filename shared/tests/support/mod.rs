//! An in-process fake Kubernetes API server for the tests: each request decoded and handed
//! to the test's `answer`, either through a `tower_test` mock under a real `kube::Client`
//! ([`fake_api`]) or served over HTTP on a loopback port ([`served_fake_api`]), which also
//! answers `exec` (a WebSocket upgrade needs a real connection).

// Each test file uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocketUpgrade};
use http::{Request, Response};
use serde_json::{json, Value};
use shared::kube_runtime::kube::client::Body;
use shared::kube_runtime::kube::{Client, Config};

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub body: Value,
}

/// One `exec` into a pod's container, as the fake server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Exec {
    /// `/api/v1/namespaces/NS/pods/POD/exec`.
    pub path: String,
    pub container: String,
    pub command: Vec<String>,
}

fn decode(parts: &http::request::Parts, bytes: &[u8]) -> Call {
    Call {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: url::form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        body: serde_json::from_slice(bytes).unwrap_or(Value::Null),
    }
}

/// The body of an answer: a string is sent as text (e.g. a pod's log), the rest as JSON.
fn encode(reply: Value) -> Vec<u8> {
    match reply {
        Value::String(text) => text.into_bytes(),
        other => serde_json::to_vec(&other).expect("json"),
    }
}

/// A client whose requests go to `answer`: a status and a JSON body (a string is sent as
/// text, e.g. a pod's log).
pub fn fake_api(mut answer: impl FnMut(Call) -> (u16, Value) + Send + 'static) -> Client {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        let mut handle = Box::pin(handle);
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.expect("request body");
            let (status, reply) = answer(decode(&parts, &bytes));
            send.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(encode(reply)))
                    .expect("response"),
            );
        }
    });
    Client::new(service, "default")
}

type Answer = Arc<Mutex<dyn FnMut(Call) -> (u16, Value) + Send>>;
type ExecAnswer = Arc<Mutex<dyn FnMut(Exec) -> (i32, String) + Send>>;

/// A client of a fake API server served on a loopback port: requests go to `answer` (as
/// with [`fake_api`]), and each `exec` to `exec`, which gives the command's exit code and
/// its output; the server streams them back as the API server does (channel 1, then the
/// exit status on channel 3, protocol `v4.channel.k8s.io`).
pub async fn served_fake_api(
    answer: impl FnMut(Call) -> (u16, Value) + Send + 'static,
    exec: impl FnMut(Exec) -> (i32, String) + Send + 'static,
) -> Client {
    let answer: Answer = Arc::new(Mutex::new(answer));
    let exec: ExecAnswer = Arc::new(Mutex::new(exec));
    let on_exec = move |ws: WebSocketUpgrade, request: axum::extract::Request| {
        let exec = exec.clone();
        async move {
            let uri = request.uri();
            let pairs: Vec<(String, String)> =
                url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                    .into_owned()
                    .collect();
            let call = Exec {
                path: uri.path().to_owned(),
                container: pairs
                    .iter()
                    .find(|(k, _)| k == "container")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
                command: pairs
                    .iter()
                    .filter(|(k, _)| k == "command")
                    .map(|(_, v)| v.clone())
                    .collect(),
            };
            let (code, output) = (exec.lock().expect("exec"))(call);
            ws.protocols(["v4.channel.k8s.io"])
                .on_upgrade(move |mut socket| async move {
                    let mut stdout = vec![1u8];
                    stdout.extend(output.into_bytes());
                    let status = if code == 0 {
                        json!({"metadata": {}, "status": "Success"})
                    } else {
                        json!({"metadata": {}, "status": "Failure",
                               "message": format!("command terminated with non-zero exit code: {code}"),
                               "reason": "NonZeroExitCode",
                               "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
                    };
                    let mut error = vec![3u8];
                    error.extend(serde_json::to_vec(&status).expect("json"));
                    for frame in [stdout, error] {
                        if socket.send(Message::Binary(frame.into())).await.is_err() {
                            return;
                        }
                    }
                    let _ = socket.send(Message::Close(None)).await;
                })
        }
    };
    let rest = move |request: axum::extract::Request| {
        let answer = answer.clone();
        async move {
            let (parts, body) = request.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .expect("request body");
            let (status, reply) = (answer.lock().expect("answer"))(decode(&parts, &bytes));
            Response::builder()
                .status(status)
                .body(axum::body::Body::from(encode(reply)))
                .expect("response")
        }
    };
    let app = axum::Router::new()
        .route(
            "/api/v1/namespaces/{ns}/pods/{pod}/exec",
            axum::routing::any(on_exec),
        )
        .fallback(rest);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    // A real client's connector, which wants a TLS provider even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::new(format!("http://{address}").parse().expect("url"));
    Client::try_from(config).expect("client")
}
