//! Pub/Sub pushes are believed only with Google's signature. A push subscription with an
//! OIDC token sends `Authorization: Bearer <JWT>`, signed by Google (RS256, keys published
//! as a JWK set), issued by `accounts.google.com`, for the audience the subscription names
//! (the service's URL) and the service account it pushes as. A function that serves pushes
//! on its own port checks all of that on every request but `GET /healthz`, so that a forged
//! `app-destroyed` from anyone who can reach the port is refused with 401.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Where Google publishes the keys it signs OIDC tokens with.
pub const GOOGLE_JWKS: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// The issuers of Google's OIDC tokens.
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
/// How long fetched keys are used before they are fetched again (Google rotates them over
/// days).
const KEYS_FRESH: Duration = Duration::from_secs(3600);
/// The least time between two fetches of the keys, however many unknown key ids arrive.
const KEYS_REFETCH: Duration = Duration::from_secs(30);
/// The largest JWK set read.
const JWKS_MAX: usize = 256 << 10;

/// What a push must carry to be believed.
pub struct PushAuth {
    audience: String,
    invoker: String,
    jwks_url: String,
    client: reqwest::Client,
    keys: tokio::sync::Mutex<Keys>,
}

#[derive(Default)]
struct Keys {
    fetched: Option<Instant>,
    by_id: HashMap<String, DecodingKey>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<bool>,
}

impl PushAuth {
    /// Pushes for `audience` (the service's URL, as the subscription's OIDC token names it)
    /// from the service account `invoker`, signed by the keys at `jwks_url`.
    pub fn new(
        audience: impl Into<String>,
        invoker: impl Into<String>,
        jwks_url: impl Into<String>,
    ) -> Self {
        Self {
            audience: audience.into(),
            invoker: invoker.into(),
            jwks_url: jwks_url.into(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            keys: tokio::sync::Mutex::new(Keys::default()),
        }
    }

    /// Checks an `Authorization` header; the reason when the push is not to be believed.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<(), String> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or("no bearer token")?;
        let head = jsonwebtoken::decode_header(token).map_err(|e| format!("token: {e}"))?;
        if head.alg != Algorithm::RS256 {
            return Err(format!("token signed with {:?}, not RS256", head.alg));
        }
        let kid = head.kid.ok_or("token names no key")?;
        let key = self.key(&kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&GOOGLE_ISSUERS);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| format!("token: {e}"))?;
        if data.claims.email.as_deref() != Some(self.invoker.as_str())
            || data.claims.email_verified != Some(true)
        {
            return Err("token of another service account".into());
        }
        Ok(())
    }

    /// The key `kid`, fetching the set when it is unknown or stale (at most once per
    /// [`KEYS_REFETCH`]).
    async fn key(&self, kid: &str) -> Result<DecodingKey, String> {
        let mut keys = self.keys.lock().await;
        let age = keys.fetched.map(|at| at.elapsed());
        let stale = age.is_none_or(|a| a > KEYS_FRESH);
        let unknown = !keys.by_id.contains_key(kid);
        if (stale || unknown) && age.is_none_or(|a| a > KEYS_REFETCH) {
            match self.fetch().await {
                Ok(by_id) => {
                    keys.by_id = by_id;
                    keys.fetched = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(url = %self.jwks_url, "fetching the push signing keys: {e}");
                    // Try again on the next request, not only after KEYS_REFETCH.
                    if keys.by_id.is_empty() {
                        keys.fetched = None;
                    }
                }
            }
        }
        keys.by_id
            .get(kid)
            .cloned()
            .ok_or_else(|| "token signed by an unknown key".to_owned())
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, String> {
        let response = self
            .client
            .get(&self.jwks_url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > JWKS_MAX as u64)
        {
            return Err("larger than 256 kB".into());
        }
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > JWKS_MAX {
                return Err("larger than 256 kB".into());
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
            })
            .collect())
    }
}

async fn check(State(auth): State<Arc<PushAuth>>, request: Request, next: Next) -> Response {
    if request.method() == Method::GET && request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match auth.verify(authorization).await {
        Ok(()) => next.run(request).await,
        Err(why) => {
            tracing::warn!(path = %request.uri().path(), "push refused: {why}");
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                format!("push refused: {why}\n"),
            )
                .into_response()
        }
    }
}

/// `router` behind the check: every request but `GET /healthz` needs a valid token.
pub fn guard(router: Router, auth: Arc<PushAuth>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(auth, check))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::{get, post};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};
    use tower::ServiceExt;

    /// A fresh RSA key from openssl: its PKCS#1 DER and modulus.
    fn rsa_key() -> (Vec<u8>, Vec<u8>) {
        let run = |script: &str| {
            let out = std::process::Command::new("sh")
                .args(["-c", script])
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        let dir = tempfile::tempdir().expect("dir");
        let pem = dir.path().join("key.pem");
        run(&format!(
            "openssl genrsa -traditional -out {} 2048 2>/dev/null",
            pem.display()
        ));
        let der = run(&format!(
            "openssl rsa -traditional -in {} -outform DER",
            pem.display()
        ));
        let modulus = run(&format!(
            "openssl rsa -in {} -noout -modulus",
            pem.display()
        ));
        let hex_text = String::from_utf8(modulus).expect("text");
        let hex_text = hex_text.trim().trim_start_matches("Modulus=");
        (der, hex::decode(hex_text).expect("hex"))
    }

    fn jwks(kid: &str, modulus: &[u8]) -> String {
        serde_json::json!({"keys": [{
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(modulus), "e": "AQAB"
        }]})
        .to_string()
    }

    fn token(der: &[u8], kid: &str, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_der(der)).expect("sign")
    }

    fn claims(aud: &str, iss: &str, email: &str, exp_from_now: i64) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({
            "aud": aud, "iss": iss, "email": email, "email_verified": true,
            "iat": now, "exp": now + exp_from_now, "sub": "1234"
        })
    }

    #[tokio::test]
    async fn only_google_signed_tokens_for_this_service_and_invoker_pass() {
        let (der, modulus) = rsa_key();
        let (other_der, _) = rsa_key();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let set = jwks("k1", &modulus);
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = fetches.clone();
        let keys = Router::new().route(
            "/certs",
            get(move || {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let set = set.clone();
                async move { set }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, keys).await });

        let aud = "https://gigalixir-deploy.example.run.app";
        let invoker = "pusher@p.iam.gserviceaccount.com";
        let auth = Arc::new(PushAuth::new(
            aud,
            invoker,
            format!("http://127.0.0.1:{port}/certs"),
        ));
        let app = guard(
            Router::new()
                .route("/", post(|| async { "ran" }))
                .route("/healthz", get(|| async { "ok" })),
            auth,
        );
        let call = |bearer: Option<String>| {
            let app = app.clone();
            async move {
                let mut request = Request::builder().method("POST").uri("/");
                if let Some(t) = bearer {
                    request = request.header("authorization", format!("Bearer {t}"));
                }
                let response = app
                    .oneshot(request.body(Body::from("{}")).expect("request"))
                    .await
                    .expect("response");
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                    .await
                    .expect("body");
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        let iss = "https://accounts.google.com";

        let (status, body) = call(None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body, "push refused: no bearer token\n");
        let refused = [
            ("garbage", "not.a.token".to_owned()),
            (
                "another key",
                token(&other_der, "k1", claims(aud, iss, invoker, 300)),
            ),
            (
                "unknown kid",
                token(&der, "k9", claims(aud, iss, invoker, 300)),
            ),
            (
                "another audience",
                token(
                    &der,
                    "k1",
                    claims("https://evil.example", iss, invoker, 300),
                ),
            ),
            (
                "another issuer",
                token(
                    &der,
                    "k1",
                    claims(aud, "https://evil.example", invoker, 300),
                ),
            ),
            (
                "another account",
                token(&der, "k1", claims(aud, iss, "me@evil.example", 300)),
            ),
            (
                "expired",
                token(&der, "k1", claims(aud, iss, invoker, -3600)),
            ),
        ];
        for (what, bearer) in refused {
            let (status, body) = call(Some(bearer)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
            assert!(body.starts_with("push refused: "), "{what}: {body}");
        }
        let (status, body) = call(Some(token(&der, "k1", claims(aud, iss, invoker, 300)))).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ran"));

        // Unknown key ids do not make it fetch the keys again and again.
        assert!(fetches.load(std::sync::atomic::Ordering::SeqCst) <= 2);
        let health = app
            .oneshot(
                Request::get("/healthz")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(health.status(), StatusCode::OK);
    }
}
