//! An in-process fake Kubernetes API server for the tests: a `tower_test` mock under a real
//! `kube::Client`, each request decoded and handed to the test's `answer`.

// Each test file uses part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;

use http::{Request, Response};
use serde_json::Value;
use shared::kube_runtime::kube::client::Body;
use shared::kube_runtime::kube::Client;

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub body: Value,
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
            let call = Call {
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
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (status, reply) = answer(call);
            let bytes = match reply {
                Value::String(text) => text.into_bytes(),
                other => serde_json::to_vec(&other).expect("json"),
            };
            send.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(bytes))
                    .expect("response"),
            );
        }
    });
    Client::new(service, "default")
}
