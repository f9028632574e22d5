//! API errors: a status and a GIGALIXIR-shaped `{"errors": {...}}` body. Internal causes are
//! logged, never sent.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use shared::wire::Errors;
use shared::PortError;

/// An error reply.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    errors: Errors,
    retry_after: Option<u64>,
}

impl ApiError {
    /// Any status with one general message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            errors: Errors::general(message),
            retry_after: None,
        }
    }

    /// 429 with `Retry-After: seconds`: too many failed attempts.
    pub fn too_many(seconds: u64) -> Self {
        Self {
            retry_after: Some(seconds),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many failed attempts; try again in {seconds} seconds."),
            )
        }
    }

    /// 503 with `Retry-After`: every password hashing slot is taken and the queue is full.
    pub fn busy() -> Self {
        Self {
            retry_after: Some(2),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The platform is checking too many passwords right now; try again in a few seconds.",
            )
        }
    }

    /// 401, with the challenge that makes git and curl send their netrc credentials.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "Sorry, we could not authenticate you.",
        )
    }

    /// 404 for something that does not exist (or is not the caller's).
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, what)
    }

    /// 422 about one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            errors: Errors::field(field, message),
            retry_after: None,
        }
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its messages as one line.
    pub fn message(&self) -> String {
        self.errors.sentence()
    }

    /// 500/503 for a failure of ours; the cause goes to the log only.
    pub fn internal(err: &dyn std::error::Error) -> Self {
        let mut cause = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            cause.push_str(": ");
            cause.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %cause, "request failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The platform could not complete the request; try again shortly.",
        )
    }
}

impl From<PortError> for ApiError {
    fn from(err: PortError) -> Self {
        match err {
            PortError::NotFound => Self::not_found("Not found."),
            PortError::NoSpace => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                format!(
                    "{}: try again once the operator has freed space.",
                    shared::error::DISK_FULL
                ),
            ),
            other => Self::internal(&other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.errors)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"gigalixir\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        resp
    }
}

/// `Json<T>` whose rejections (malformed JSON, wrong content type, body too large) are
/// answered in the API's error shape.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(reject(rejection)),
        }
    }
}

fn reject(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let message = match &rejection {
        JsonRejection::JsonDataError(e) => {
            format!("The request body has the wrong fields: {}", e.body_text())
        }
        JsonRejection::JsonSyntaxError(_) => "The request body is not valid JSON.".to_owned(),
        JsonRejection::MissingJsonContentType(_) => {
            "The request body must be JSON (Content-Type: application/json).".to_owned()
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
            format!(
                "The request body is larger than {} bytes.",
                crate::MAX_BODY_BYTES
            )
        }
        other => other.body_text(),
    };
    ApiError::new(status, message)
}
