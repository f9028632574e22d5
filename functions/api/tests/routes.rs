//! Handler tests: every route through `router(state).oneshot(request)`, on a real SQLite
//! store in a temp dir, including each kind of bad input.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{Duration, Utc};
use gigalixir_api::{router, ApiState};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use shared::domain::{ApiKey, AppName, Email};
use shared::embedded::{SqliteBus, SqliteStore};
use shared::messages::Topic;
use shared::model::ApiKeyRecord;
use shared::ports::{Bus, Store, SubscriptionSpec};
use tower::ServiceExt;

struct Api {
    state: ApiState,
    bus: Arc<SqliteBus>,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    body: Value,
    headers: HeaderMap,
}

impl Reply {
    fn error(&self) -> String {
        self.body["errors"].to_string()
    }
}

impl Api {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("store.db")).expect("store");
        let bus = Arc::new(SqliteBus::open(&dir.path().join("bus.db")).expect("bus"));
        Self {
            state: ApiState {
                store: Arc::new(store),
                bus: bus.clone(),
                runtime: None,
                app_domain: "localhost".into(),
                certificates: None,
                reserved_domains: Vec::new().into(),
                accounts: gigalixir_api::Accounts::unconfirmed_in(dir.path().join("outbox")),
                databases: None,
                blobs: None,
                drains_allow_loopback: false,
            },
            bus,
            _dir: dir,
        }
    }

    fn store(&self) -> &dyn Store {
        &*self.state.store
    }

    async fn raw(&self, request: Request<Body>) -> Reply {
        let resp = router(self.state.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("non-JSON body: {}", String::from_utf8_lossy(&bytes)))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<(&str, &str)>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some((user, secret)) = auth {
            let token = STANDARD.encode(format!("{user}:{secret}"));
            req = req.header(header::AUTHORIZATION, format!("Basic {token}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        };
        self.raw(req.expect("request")).await
    }

    async fn signup(&self, email: &str, password: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/users",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await
    }

    async fn login(&self, email: &str, password: &str) -> Reply {
        self.call(Method::GET, "/api/login", Some((email, password)), None)
            .await
    }

    /// Signs up and logs in; returns the API key.
    async fn user(&self, email: &str) -> String {
        assert_eq!(
            self.signup(email, "password123").await.status,
            StatusCode::CREATED
        );
        let r = self.login(email, "password123").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["data"]["key"].as_str().expect("key").to_owned()
    }

    async fn create_app(&self, email: &str, key: &str, name: &str) -> Reply {
        self.call(
            Method::POST,
            "/api/apps",
            Some((email, key)),
            Some(json!({"unique_name": name})),
        )
        .await
    }
}

const ADA: &str = "ada@example.com";
const BOB: &str = "bob@example.com";

#[tokio::test]
async fn sign_up_creates_an_account() {
    let api = Api::new();
    let r = api.signup("Ada@Example.com", "password123").await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["data"]["email"], ADA);
    assert_eq!(r.body["data"]["tier"], "FREE");
    assert!(r.body["data"].get("password").is_none());
    let stored = api
        .store()
        .user_by_email(&Email::parse(ADA).expect("email"))
        .await
        .expect("stored");
    assert!(stored.password_hash.expose().starts_with("$argon2id$"));
    // The legacy path GIGALIXIR's older CLIs used works the same.
    let r = api
        .call(
            Method::POST,
            "/api/free_users",
            None,
            Some(json!({"email": BOB, "password": "password123"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn sign_up_refuses_bad_input_and_stores_nothing() {
    let api = Api::new();
    let r = api.signup(ADA, "short").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.error().contains("at least 8 characters"), "{}", r.error());
    let r = api.signup("not-an-email", "password123").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.error().contains("not a valid email"), "{}", r.error());
    assert!(api
        .store()
        .user_by_email(&Email::parse(ADA).expect("e"))
        .await
        .is_err());

    assert_eq!(
        api.signup(ADA, "password123").await.status,
        StatusCode::CREATED
    );
    let r = api.signup("ADA@example.com", "another-password").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["errors"]["email"][0], "has already been taken");
    // The first account's password still holds.
    assert_eq!(api.login(ADA, "password123").await.status, StatusCode::OK);
    assert_eq!(
        api.login(ADA, "another-password").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn malformed_wrong_type_and_oversized_bodies_get_clear_errors() {
    let api = Api::new();
    let req = |ct: &str, body: String| {
        Request::post("/api/users")
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .expect("request")
    };
    let r = api
        .raw(req("application/json", "{\"email\": ".into()))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().contains("not valid JSON"), "{}", r.error());
    let r = api
        .raw(req("application/json", "{\"email\": \"a@b.co\"}".into()))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.error().contains("password"), "{}", r.error());
    let r = api.raw(req("text/plain", "{}".into())).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(r.error().contains("must be JSON"), "{}", r.error());
    let huge = json!({"email": ADA, "password": "x".repeat(100 * 1024)}).to_string();
    let r = api.raw(req("application/json", huge)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.error().contains("larger than"), "{}", r.error());
    assert!(api
        .store()
        .user_by_email(&Email::parse(ADA).expect("e"))
        .await
        .is_err());
}

#[tokio::test]
async fn login_issues_a_new_key_each_time_and_keeps_the_others() {
    let api = Api::new();
    assert_eq!(
        api.signup(ADA, "password123").await.status,
        StatusCode::CREATED
    );
    let first = api.login(ADA, "password123").await;
    assert_eq!(first.status, StatusCode::OK);
    let k1 = first.body["data"]["key"].as_str().expect("key").to_owned();
    assert_eq!(k1.len(), 64);
    assert!(k1.chars().all(|c| c.is_ascii_hexdigit()));
    let expires: chrono::DateTime<Utc> =
        serde_json::from_value(first.body["data"]["expires_at"].clone()).expect("date");
    let days = (expires - Utc::now()).num_days();
    assert!((364..=365).contains(&days), "expires in {days} days");
    // GIGALIXIR's CLI percent-encodes the email and password it sends.
    let second = api.login("ada%40example.com", "password123").await;
    assert_eq!(second.status, StatusCode::OK);
    let k2 = second.body["data"]["key"].as_str().expect("key").to_owned();
    assert_ne!(k1, k2);
    for k in [&k1, &k2] {
        let r = api
            .call(Method::GET, "/api/users", Some((ADA, k)), None)
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn login_refuses_wrong_credentials() {
    let api = Api::new();
    assert_eq!(
        api.signup(ADA, "password123").await.status,
        StatusCode::CREATED
    );
    for (user, pw) in [
        (ADA, "wrong-password"),
        ("nobody@example.com", "password123"),
        ("ada", "password123"),
    ] {
        let r = api.login(user, pw).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{user}");
        assert_eq!(
            r.headers[header::WWW_AUTHENTICATE],
            "Basic realm=\"gigalixir\""
        );
        assert!(r.error().contains("could not authenticate"));
    }
    let r = api.call(Method::GET, "/api/login", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let garbage = Request::get("/api/login")
        .header(header::AUTHORIZATION, "Basic !!!notbase64")
        .body(Body::empty())
        .expect("request");
    assert_eq!(api.raw(garbage).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn account_needs_a_valid_unexpired_key_of_that_email() {
    let api = Api::new();
    let key = api.user(ADA).await;
    let bob_key = api.user(BOB).await;
    let r = api
        .call(Method::GET, "/api/users", Some((ADA, &key)), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"]["email"], ADA);
    // The password is not an API key.
    let r = api
        .call(Method::GET, "/api/users", Some((ADA, "password123")), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Someone else's key with this email.
    let r = api
        .call(Method::GET, "/api/users", Some((ADA, &bob_key)), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = api
        .call(
            Method::GET,
            "/api/users",
            Some((ADA, "f".repeat(64).as_str())),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = api.call(Method::GET, "/api/users", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // An expired key no longer works.
    let user = api
        .store()
        .user_by_email(&Email::parse(ADA).expect("e"))
        .await
        .expect("ada");
    let old = ApiKey::new("0".repeat(64));
    let issued = Utc::now() - Duration::days(400);
    api.store()
        .add_api_key(&ApiKeyRecord {
            hash: old.hash(),
            user: user.id,
            created_at: issued,
            expires_at: issued + Duration::days(365),
        })
        .await
        .expect("old key");
    let r = api
        .call(Method::GET, "/api/users", Some((ADA, old.expose())), None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn reset_revokes_every_key_and_needs_the_password() {
    let api = Api::new();
    let k1 = api.user(ADA).await;
    let k2 = api.login(ADA, "password123").await.body["data"]["key"]
        .as_str()
        .expect("k")
        .to_owned();
    let path = "/api/api_keys/regenerate";

    let r = api.call(Method::POST, path, Some((ADA, &k1)), None).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = api
        .call(
            Method::POST,
            &format!("{path}?current_password=wrong-one"),
            Some((ADA, &k1)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = api
        .call(
            Method::POST,
            &format!("{path}?current_password=password123"),
            Some((ADA, "bad-key")),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for k in [&k1, &k2] {
        let r = api
            .call(Method::GET, "/api/users", Some((ADA, k)), None)
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "a refused reset must keep the keys"
        );
    }

    // Our CLI sends the password in a JSON body; GIGALIXIR's in the query.
    let r = api
        .call(
            Method::POST,
            path,
            Some((ADA, &k1)),
            Some(json!({"current_password": "password123"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let k3 = r.body["data"]["key"].as_str().expect("k3").to_owned();
    for k in [&k1, &k2] {
        let r = api
            .call(Method::GET, "/api/users", Some((ADA, k)), None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = api
        .call(
            Method::POST,
            &format!("{path}?current_password=password123"),
            Some((ADA, &k3)),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let k4 = r.body["data"]["key"].as_str().expect("k4");
    assert_eq!(
        api.call(Method::GET, "/api/users", Some((ADA, &k3)), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.call(Method::GET, "/api/users", Some((ADA, k4)), None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn apps_are_created_listed_shown_and_destroyed() {
    let api = Api::new();
    let key = api.user(ADA).await;
    let auth = Some((ADA, key.as_str()));
    let r = api.create_app(ADA, &key, "zeta-app").await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.body["data"],
        json!({"unique_name": "zeta-app", "size": 0.5, "replicas": 1, "cloud": "local", "region": "local", "stack": null, "maintenance": false})
    );
    assert_eq!(
        api.create_app(ADA, &key, "alpha-app").await.status,
        StatusCode::CREATED
    );

    let r = api.call(Method::GET, "/api/apps", auth, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let names: Vec<&str> = r.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["unique_name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["alpha-app", "zeta-app"]);

    let r = api
        .call(Method::GET, "/api/apps/zeta-app", auth, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"]["unique_name"], "zeta-app");

    // The stack: set (GIGALIXIR's stack:set), refused when unknown, unset with null.
    let path = "/api/apps/zeta-app/stack";
    let r = api
        .call(Method::PUT, path, auth, Some(json!({"stack": "trixie"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["stack"], "trixie");
    let r = api
        .call(
            Method::PUT,
            path,
            auth,
            Some(json!({"stack": "gigalixir-22"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body["errors"]["stack"][0]
        .as_str()
        .expect("why")
        .contains("bookworm, trixie, forky"));
    let stored = api
        .state
        .store
        .app(&AppName::parse("zeta-app").expect("name"))
        .await
        .expect("app");
    assert_eq!(stored.stack, Some(shared::stack::Stack::Trixie));
    let r = api
        .call(Method::PUT, path, auth, Some(json!({"stack": null})))
        .await;
    assert_eq!(r.body["data"]["stack"], serde_json::Value::Null);
    let r = api
        .call(
            Method::POST,
            "/api/apps",
            auth,
            Some(json!({"unique_name": "with-stack", "stack": "forky"})),
        )
        .await;
    assert_eq!(r.body["data"]["stack"], "forky");
    let r = api
        .call(
            Method::POST,
            "/api/apps",
            auth,
            Some(json!({"unique_name": "bad-stack", "stack": "sid"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    api.call(Method::DELETE, "/api/apps/with-stack", auth, None)
        .await;

    api.bus
        .ensure_subscription(&SubscriptionSpec::new("watch", Topic::APP_DESTROYED))
        .await
        .expect("watch");
    let r = api
        .call(Method::DELETE, "/api/apps/zeta-app", auth, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        api.bus.pending("watch").await.expect("pending"),
        1,
        "app-destroyed is announced"
    );
    let r = api
        .call(Method::GET, "/api/apps/zeta-app", auth, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api
        .call(Method::DELETE, "/api/apps/zeta-app", auth, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The name is held until the cleanup (deploy, on app-destroyed) has removed everything
    // of the app, then free again.
    let r = api.create_app(ADA, &key, "zeta-app").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body["errors"]["unique_name"][0]
            .as_str()
            .expect("why")
            .contains("is being destroyed"),
        "{}",
        r.body
    );
    let zeta = AppName::parse("zeta-app").expect("name");
    api.state
        .store
        .unlock(
            &shared::cleanup::destroying_lock(&zeta),
            shared::cleanup::DESTROYING_HOLDER,
        )
        .await
        .expect("the cleanup's last pass");
    assert_eq!(
        api.create_app(ADA, &key, "zeta-app").await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn every_app_gets_its_own_cookie_and_secret_key_base_kept_out_of_replies() {
    let api = Api::new();
    let key = api.user(ADA).await;
    let one = api.create_app(ADA, &key, "app-one").await;
    api.create_app(ADA, &key, "app-two").await;
    let a = api
        .store()
        .app(&AppName::parse("app-one").expect("n"))
        .await
        .expect("one");
    let b = api
        .store()
        .app(&AppName::parse("app-two").expect("n"))
        .await
        .expect("two");
    assert!(a.erlang_cookie.expose().len() >= 32);
    assert!(
        a.secret_key_base.expose().len() >= 64,
        "Phoenix needs 64+ bytes"
    );
    assert_ne!(a.erlang_cookie, b.erlang_cookie);
    assert_ne!(a.secret_key_base, b.secret_key_base);
    let text = one.body.to_string();
    assert!(!text.contains(a.erlang_cookie.expose()));
    assert!(!text.contains(a.secret_key_base.expose()));
}

#[tokio::test]
async fn an_app_without_a_name_gets_a_generated_one() {
    let api = Api::new();
    let key = api.user(ADA).await;
    let r = api
        .call(
            Method::POST,
            "/api/apps",
            Some((ADA, &key)),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let name = r.body["data"]["unique_name"].as_str().expect("name");
    assert!(AppName::parse(name).is_ok(), "{name}");
}

#[tokio::test]
async fn bad_app_names_are_refused_and_nothing_is_stored() {
    let api = Api::new();
    let key = api.user(ADA).await;
    for (name, why) in [
        ("My_App", "must start with a lowercase letter"),
        ("ab", "3 to 63"),
        ("www", "reserved"),
        ("api", "reserved"),
        ("bad_name", "not `_`"),
    ] {
        let r = api.create_app(ADA, &key, name).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{name}");
        assert!(
            r.body["errors"]["unique_name"][0]
                .as_str()
                .expect("msg")
                .contains(why),
            "{name}: {}",
            r.error()
        );
    }
    let r = api
        .call(Method::GET, "/api/apps", Some((ADA, &key)), None)
        .await;
    assert_eq!(r.body["data"], json!([]));
}

#[tokio::test]
async fn a_taken_name_is_refused_whoever_holds_it() {
    let api = Api::new();
    let ada = api.user(ADA).await;
    let bob = api.user(BOB).await;
    assert_eq!(
        api.create_app(ADA, &ada, "shared-name").await.status,
        StatusCode::CREATED
    );
    for (email, key) in [(ADA, &ada), (BOB, &bob)] {
        let r = api.create_app(email, key, "shared-name").await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.body["errors"]["unique_name"][0], "has already been taken");
    }
    let app = api
        .store()
        .app(&AppName::parse("shared-name").expect("n"))
        .await
        .expect("kept");
    let ada_user = api
        .store()
        .user_by_email(&Email::parse(ADA).expect("e"))
        .await
        .expect("ada");
    assert_eq!(app.owner, ada_user.id);
}

#[tokio::test]
async fn another_users_app_answers_404_as_if_missing() {
    let api = Api::new();
    let ada = api.user(ADA).await;
    let bob = api.user(BOB).await;
    api.create_app(ADA, &ada, "adas-app").await;
    let bob_auth = Some((BOB, bob.as_str()));
    let theirs = api
        .call(Method::GET, "/api/apps/adas-app", bob_auth, None)
        .await;
    let missing = api
        .call(Method::GET, "/api/apps/no-such-app", bob_auth, None)
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        theirs.error().replace("adas-app", "X"),
        missing.error().replace("no-such-app", "X")
    );
    let r = api
        .call(Method::DELETE, "/api/apps/adas-app", bob_auth, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = api.call(Method::GET, "/api/apps", bob_auth, None).await;
    assert_eq!(r.body["data"], json!([]));
    // Still there for its owner.
    let r = api
        .call(Method::GET, "/api/apps/adas-app", Some((ADA, &ada)), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // A name that cannot exist is also just 404.
    let r = api
        .call(Method::GET, "/api/apps/Not_Valid", Some((ADA, &ada)), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn app_routes_need_credentials() {
    let api = Api::new();
    for (method, path) in [
        (Method::GET, "/api/apps"),
        (Method::POST, "/api/apps"),
        (Method::GET, "/api/apps/x-app"),
        (Method::DELETE, "/api/apps/x-app"),
    ] {
        let r = api
            .call(
                method.clone(),
                path,
                None,
                Some(json!({"unique_name": "x-app"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
}

#[tokio::test]
async fn unknown_routes_answer_json_404() {
    let api = Api::new();
    let r = api.call(Method::GET, "/api/nothing-here", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["errors"][""][0], "No such route.");
    let r = api.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["data"]["status"], "ok");
}
