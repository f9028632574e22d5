//! The API under AWS Lambda: a real Function URL (API Gateway v2) event, as Lambda hands
//! it to the function, through `lambda_http`'s adapter — the one `lambda_http::run` wraps
//! the router in — and back to the response Lambda returns to the caller.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use gigalixir_api::router;
use lambda_http::request::LambdaRequest;
use lambda_http::tower::ServiceExt;
use lambda_http::{Adapter, Context, LambdaEvent};
use serde_json::Value;

use common::{Api, ADA, BOB};

const LIST_APPS: &str = include_str!("data/function-url-list-apps.json");

/// The Function URL event of `GET /api/apps`, with `authorization` if given.
fn list_apps(authorization: Option<String>) -> LambdaRequest {
    let mut event: Value = serde_json::from_str(LIST_APPS).expect("fixture is JSON");
    if let Some(auth) = authorization {
        event["headers"]["authorization"] = Value::String(auth);
    }
    serde_json::from_value(event).expect("an API Gateway v2 event")
}

/// What Lambda returns to the caller: status, headers and the body as text.
async fn invoke(api: &Api, request: LambdaRequest) -> (u16, Value, String) {
    let handler = Adapter::from(router(api.state.clone()));
    let response = handler
        .oneshot(LambdaEvent::new(request, Context::default()))
        .await
        .expect("the router never fails");
    let response = serde_json::to_value(response).expect("the response serialises");
    let status = response["statusCode"].as_u64().expect("statusCode") as u16;
    let body = response["body"].as_str().unwrap_or_default();
    let body = if response["isBase64Encoded"] == Value::Bool(true) {
        String::from_utf8(STANDARD.decode(body).expect("base64")).expect("utf-8")
    } else {
        body.to_owned()
    };
    (status, response["headers"].clone(), body)
}

fn basic(email: &str, key: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{email}:{key}")))
}

#[tokio::test]
async fn listing_apps_through_a_function_url_needs_credentials() {
    let api = Api::new();
    let key = api.user(ADA).await;
    api.app(ADA, &key, "my-app").await;
    let bob = api.user(BOB).await;
    api.app(BOB, &bob, "bobs-app").await;

    let (status, headers, body) = invoke(&api, list_apps(None)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        headers["www-authenticate"]
            .as_str()
            .is_some_and(|v| v.starts_with("Basic")),
        "{headers}"
    );

    let (status, _, body) = invoke(&api, list_apps(Some(basic(ADA, "wrong-key")))).await;
    assert_eq!(status, 401, "{body}");

    let (status, headers, body) = invoke(&api, list_apps(Some(basic(ADA, &key)))).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        headers["content-type"]
            .as_str()
            .is_some_and(|v| v.starts_with("application/json")),
        "{headers}"
    );
    let apps: Value = serde_json::from_str(&body).expect("JSON");
    let names: Vec<&str> = apps["data"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|a| a["unique_name"].as_str())
        .collect();
    assert_eq!(names, ["my-app"]);
}
