//! The platform's HTTP API, as the CLI uses it: one method per route, replies decoded
//! into the wire types of `shared`, failures turned into [`ApiError`]s that say what went
//! wrong in the user's terms.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::time::Duration;

use base64::Engine;
use gigalixir_core::domain::AppName;
use gigalixir_core::stack::Stack;
use gigalixir_core::wire::{
    AppStatus, AppView, ConfigCopy, ConfigSet, ConfigUnset, Data, DomainView, Errors, KeyView,
    NewApp, NewSshKey, NewUser, ReleaseView, ScaleRequest, ScaleView, SshAccess, SshKeyRemove,
    SshKeyView, StackChange, UserView,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ureq::http::{Method, StatusCode};
use url::Url;

/// Where the API lives when `GIGALIXIR_API_URL` is not set.
pub const DEFAULT_API_URL: &str = "http://localhost:5080";

/// The platform's base URL (`GIGALIXIR_API_URL`), which is also the git host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiUrl {
    url: Url,
    host: String,
}

impl ApiUrl {
    /// Checks a base URL given by the user.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("GIGALIXIR_API_URL `{raw}` {why}");
        let url = Url::parse(raw.trim()).map_err(|e| bad(&format!("is not a valid URL ({e})")))?;
        match url.scheme() {
            "http" | "https" => {}
            _ => return Err(bad("must start with http:// or https://")),
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a query or fragment"));
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err(bad("has no host")),
        };
        Ok(Self { url, host })
    }

    /// The host name alone (no port): the netrc `machine` for both the API and git.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The base URL as text, without a trailing slash.
    pub fn base(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }

    /// The URL of an API path such as `/api/apps`.
    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The git remote of an app: `<API_URL>/NAME.git`.
    pub fn git_remote(&self, app: &AppName) -> String {
        format!("{}/{app}.git", self.base())
    }
}

impl fmt::Display for ApiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base())
    }
}

/// What an authenticated request sends: the email and the API key from netrc.
#[derive(Clone)]
pub struct Auth {
    /// Account email (the netrc `login`).
    pub email: String,
    /// API key (the netrc `password`).
    pub key: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("email", &self.email)
            .field("key", &"…")
            .finish()
    }
}

/// A request that did not succeed, in the user's terms.
#[derive(Debug)]
pub enum ApiError {
    /// Nothing answers at the URL.
    Unreachable(String),
    /// The platform did not answer in time.
    Timeout(String),
    /// 401: the credentials were refused.
    Unauthorized,
    /// 303 from login: the account has multi-factor authentication and no code was sent.
    MfaRequired,
    /// 403: refused to this caller (an unconfirmed email, a role too small); the
    /// platform's message.
    Forbidden(String),
    /// 429: too many attempts; the platform's message (it says how long to wait).
    TooMany(String),
    /// 404, with the platform's message.
    NotFound(String),
    /// 422: the request was refused; messages by field.
    Invalid(Errors),
    /// 409: another change is in progress; the platform's message.
    Conflict(String),
    /// 413.
    TooLarge,
    /// 5xx: the platform failed or cannot serve this here; its message, when it gave one.
    Unavailable(Option<String>),
    /// Anything this CLI does not expect.
    Unexpected(String),
}

impl ApiError {
    /// Whether field `field` was refused with a message containing `needle`.
    pub fn is_invalid(&self, field: &str, needle: &str) -> bool {
        match self {
            Self::Invalid(errors) => errors
                .errors
                .get(field)
                .is_some_and(|msgs| msgs.iter().any(|m| m.contains(needle))),
            _ => false,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(url) => write!(
                f,
                "cannot reach the platform at {url}: is it running? (scripts/up starts it; GIGALIXIR_API_URL chooses another)"
            ),
            Self::Timeout(url) => write!(
                f,
                "the platform at {url} did not answer in time: try again shortly"
            ),
            Self::Unauthorized => write!(
                f,
                "your API key was not accepted (expired or reset): run `gigalixir login`"
            ),
            Self::MfaRequired => write!(
                f,
                "this account has multi-factor authentication: pass -t TOKEN (a code from your authenticator app, or a recovery code)"
            ),
            Self::NotFound(message) | Self::Forbidden(message) => f.write_str(message),
            Self::TooMany(message) => f.write_str(message),
            Self::Invalid(errors) => f.write_str(&humane(errors)),
            Self::Conflict(message) => f.write_str(message),
            Self::TooLarge => write!(f, "the request was too large for the platform"),
            Self::Unavailable(Some(message)) => f.write_str(message),
            Self::Unavailable(None) => write!(
                f,
                "the platform could not complete the request: try again shortly (its log says why)"
            ),
            Self::Unexpected(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for ApiError {}

/// The platform's 422 messages as one sentence, with API field names in words.
fn humane(errors: &Errors) -> String {
    let renamed = Errors {
        errors: errors
            .errors
            .iter()
            .map(|(field, msgs)| {
                let field = match field.as_str() {
                    "unique_name" => "app name",
                    "current_password" => "password",
                    "new_password" => "new password",
                    "next_email" => "new email",
                    "mfa_token" => "multi-factor token",
                    "ssh_key" => "SSH key",
                    other => other,
                };
                (field.to_owned(), msgs.iter().map(|m| tidy(m)).collect())
            })
            .collect(),
    };
    let sentence = renamed.sentence();
    if sentence.is_empty() {
        "the platform refused the request".to_owned()
    } else {
        sentence
    }
}

/// A server message in the CLI's voice: lowercase start, no final period.
fn tidy(message: &str) -> String {
    let message = message.trim().trim_end_matches('.');
    let mut chars = message.chars();
    match chars.next() {
        Some(first) if chars.clone().next().is_some_and(|c| c.is_lowercase()) => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => message.to_owned(),
    }
}

/// A reply of the platform, its body still to be read.
type Response = ureq::http::Response<ureq::Body>;

/// One request, built up the way the calls below read (`.basic_auth(…).json(…)`).
struct RequestBuilder {
    agent: ureq::Agent,
    method: Method,
    url: String,
    authorization: Option<String>,
    json: Option<Vec<u8>>,
    /// Whether a redirect is answered to the caller rather than followed (login's 303).
    no_redirects: bool,
}

impl RequestBuilder {
    fn basic_auth(mut self, user: &str, password: Option<&str>) -> Self {
        let pair = format!("{user}:{}", password.unwrap_or_default());
        let token = base64::engine::general_purpose::STANDARD.encode(pair);
        self.authorization = Some(format!("Basic {token}"));
        self
    }

    fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        // the wire types are plain structs and maps: they always serialize
        self.json = serde_json::to_vec(body).ok();
        self
    }

    fn query(mut self, pairs: &[(&str, String)]) -> Self {
        let encoded: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        self.url = format!("{}?{encoded}", self.url);
        self
    }

    /// Answers a redirect rather than following it.
    fn no_redirects(mut self) -> Self {
        self.no_redirects = true;
        self
    }

    fn send(self) -> Result<Response, ureq::Error> {
        let mut request = ureq::http::Request::builder()
            .method(self.method)
            .uri(&self.url);
        if let Some(value) = self.authorization {
            request = request.header("Authorization", value);
        }
        match self.json {
            Some(body) => run(
                &self.agent,
                request
                    .header("Content-Type", "application/json")
                    .body(body)?,
                self.no_redirects,
            ),
            None => run(&self.agent, request.body(())?, self.no_redirects),
        }
    }
}

/// Runs `request` on `agent`; with `no_redirects`, a redirect is the answer.
fn run(
    agent: &ureq::Agent,
    request: ureq::http::Request<impl ureq::AsSendBody>,
    no_redirects: bool,
) -> Result<Response, ureq::Error> {
    if no_redirects {
        let request = agent.configure_request(request).max_redirects(0).build();
        return agent.run(request);
    }
    agent.run(request)
}

/// The API client.
pub struct Client {
    api: ApiUrl,
    http: ureq::Agent,
    /// Without an overall timeout, for responses that stream as long as they are read
    /// (`logs`).
    streaming: ureq::Agent,
}

impl Client {
    /// A client for the platform at `api`.
    pub fn new(api: ApiUrl) -> anyhow::Result<Self> {
        let agent = |timeout: Option<Duration>| -> ureq::Agent {
            ureq::Agent::config_builder()
                .user_agent(concat!("gigalixir-cli/", env!("CARGO_PKG_VERSION")))
                .timeout_connect(Some(Duration::from_secs(10)))
                .timeout_global(timeout)
                // 4xx and 5xx are answers to read, not transport errors
                .http_status_as_error(false)
                .build()
                .into()
        };
        Ok(Self {
            api,
            http: agent(Some(Duration::from_secs(60))),
            streaming: agent(None),
        })
    }

    /// The platform's base URL.
    pub fn api(&self) -> &ApiUrl {
        &self.api
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_on(&self.http, method, path)
    }

    fn request_on(&self, agent: &ureq::Agent, method: Method, path: &str) -> RequestBuilder {
        RequestBuilder {
            agent: agent.clone(),
            method,
            url: self.api.endpoint(path),
            authorization: None,
            json: None,
            no_redirects: false,
        }
    }

    fn authed(&self, method: Method, path: &str, auth: &Auth) -> RequestBuilder {
        self.request(method, path)
            .basic_auth(&auth.email, Some(&auth.key))
    }

    /// Sends `req` and decodes a `{"data": T}` reply.
    fn call<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ApiError> {
        let resp = self.send(req)?;
        let status = resp.status();
        read_json::<Data<T>>(resp)
            .map(|d| d.data)
            .ok_or_else(|| self.unexpected(status))
    }

    /// Sends `req`; a reply that is not a success becomes the matching [`ApiError`].
    fn send(&self, req: RequestBuilder) -> Result<Response, ApiError> {
        let resp = req.send().map_err(|e| self.transport(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let message = |resp: Response| {
            let errors = read_json::<Errors>(resp).unwrap_or_default();
            Some(tidy(&errors.sentence())).filter(|m| !m.is_empty())
        };
        Err(match status {
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
            StatusCode::SEE_OTHER => ApiError::MfaRequired,
            StatusCode::FORBIDDEN => ApiError::Forbidden(
                message(resp).unwrap_or_else(|| "the platform refused this to you".to_owned()),
            ),
            StatusCode::TOO_MANY_REQUESTS => ApiError::TooMany(
                message(resp)
                    .unwrap_or_else(|| "too many attempts: wait a minute and try again".to_owned()),
            ),
            StatusCode::NOT_FOUND => ApiError::NotFound(message(resp).unwrap_or_default()),
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => {
                ApiError::Invalid(read_json::<Errors>(resp).unwrap_or_default())
            }
            StatusCode::CONFLICT => ApiError::Conflict(
                message(resp).unwrap_or_else(|| "another change is in progress".to_owned()),
            ),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge,
            s if s.is_server_error() => ApiError::Unavailable(message(resp)),
            s => self.unexpected(s),
        })
    }

    fn transport(&self, e: &ureq::Error) -> ApiError {
        use std::io::ErrorKind;
        match e {
            ureq::Error::Timeout(_) => ApiError::Timeout(self.api.to_string()),
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => {
                ApiError::Unreachable(self.api.to_string())
            }
            ureq::Error::Io(io)
                if matches!(
                    io.kind(),
                    ErrorKind::ConnectionRefused
                        | ErrorKind::ConnectionReset
                        | ErrorKind::HostUnreachable
                        | ErrorKind::NetworkUnreachable
                        | ErrorKind::AddrNotAvailable
                ) =>
            {
                ApiError::Unreachable(self.api.to_string())
            }
            ureq::Error::Io(io) if io.kind() == ErrorKind::TimedOut => {
                ApiError::Timeout(self.api.to_string())
            }
            // The message names the URL, never the credentials (they travel in a header).
            other => ApiError::Unexpected(format!(
                "the request to the platform at {} failed ({other}): is it running, and is GIGALIXIR_API_URL right?",
                self.api
            )),
        }
    }

    fn unexpected(&self, status: StatusCode) -> ApiError {
        ApiError::Unexpected(format!(
            "the platform at {} gave a reply this CLI does not understand (HTTP {status}): is GIGALIXIR_API_URL pointing at a gigalixir platform?",
            self.api
        ))
    }

    /// `POST /api/users`: creates an account.
    pub fn sign_up(&self, email: &str, password: &str) -> Result<UserView, ApiError> {
        let body = NewUser {
            email: email.to_owned(),
            password: password.to_owned(),
        };
        self.call(self.request(Method::POST, "/api/users").json(&body))
    }

    /// `GET /api/login[?mfa_token=…]` with Basic `email:password`: a new API key.
    /// [`ApiError::MfaRequired`] when the account has multi-factor authentication and no
    /// `mfa_token` was given; [`ApiError::Forbidden`] while the email is unconfirmed.
    pub fn log_in(
        &self,
        email: &str,
        password: &str,
        mfa_token: Option<&str>,
    ) -> Result<KeyView, ApiError> {
        let mut req = self
            .request(Method::GET, "/api/login")
            .basic_auth(email, Some(password))
            .no_redirects();
        if let Some(token) = mfa_token {
            req = req.query(&[("mfa_token", token.to_owned())]);
        }
        self.call(req)
    }

    /// `GET /api/users`: the caller's account.
    pub fn account(&self, auth: &Auth) -> Result<UserView, ApiError> {
        self.call(self.authed(Method::GET, "/api/users", auth))
    }

    /// `POST /api/api_keys/regenerate`: revokes every key and issues one. A 401 means the
    /// key or the password was refused.
    pub fn regenerate_key(&self, auth: &Auth, password: &str) -> Result<KeyView, ApiError> {
        #[derive(Serialize)]
        struct Body<'a> {
            current_password: &'a str,
        }
        self.call(
            self.authed(Method::POST, "/api/api_keys/regenerate", auth)
                .json(&Body {
                    current_password: password,
                }),
        )
    }

    /// `GET /api/apps`.
    pub fn apps(&self, auth: &Auth) -> Result<Vec<AppView>, ApiError> {
        self.call(self.authed(Method::GET, "/api/apps", auth))
    }

    /// `POST /api/apps`; without a name the platform makes one up.
    pub fn create_app(
        &self,
        auth: &Auth,
        name: Option<&AppName>,
        stack: Option<Stack>,
    ) -> Result<AppView, ApiError> {
        let body = NewApp {
            unique_name: name.map(|n| n.to_string()),
            stack: stack.map(|s| s.as_str().to_owned()),
            ..NewApp::default()
        };
        self.call(self.authed(Method::POST, "/api/apps", auth).json(&body))
    }

    /// `PUT /api/apps/NAME/stack`; `None`: chosen per build.
    pub fn set_stack(
        &self,
        auth: &Auth,
        name: &AppName,
        stack: Option<Stack>,
    ) -> Result<AppView, ApiError> {
        let body = StackChange {
            stack: stack.map(|s| s.as_str().to_owned()),
        };
        self.call(
            self.authed(Method::PUT, &format!("/api/apps/{name}/stack"), auth)
                .json(&body),
        )
    }

    /// `GET /api/apps/NAME`.
    pub fn app(&self, auth: &Auth, name: &AppName) -> Result<AppView, ApiError> {
        self.call(self.authed(Method::GET, &format!("/api/apps/{name}"), auth))
    }

    /// `DELETE /api/apps/NAME`.
    pub fn destroy_app(&self, auth: &Auth, name: &AppName) -> Result<(), ApiError> {
        self.call::<serde_json::Value>(self.authed(
            Method::DELETE,
            &format!("/api/apps/{name}"),
            auth,
        ))
        .map(drop)
    }

    /// `GET /api/apps/NAME/releases`: newest first.
    pub fn releases(&self, auth: &Auth, name: &AppName) -> Result<Vec<ReleaseView>, ApiError> {
        self.call(self.authed(Method::GET, &format!("/api/apps/{name}/releases"), auth))
    }

    /// `GET /api/apps/NAME/domains`.
    pub fn domains(&self, auth: &Auth, name: &AppName) -> Result<Vec<DomainView>, ApiError> {
        self.call(self.authed(Method::GET, &format!("/api/apps/{name}/domains"), auth))
    }

    /// `POST /api/apps/NAME/domains` `{"fqdn": ...}`: the domain, with its CNAME target.
    pub fn add_domain(
        &self,
        auth: &Auth,
        name: &AppName,
        fqdn: &str,
    ) -> Result<DomainView, ApiError> {
        self.call(
            self.authed(Method::POST, &format!("/api/apps/{name}/domains"), auth)
                .json(&serde_json::json!({ "fqdn": fqdn })),
        )
    }

    /// `DELETE /api/apps/NAME/domains` `{"fqdn": ...}`.
    pub fn remove_domain(&self, auth: &Auth, name: &AppName, fqdn: &str) -> Result<(), ApiError> {
        self.call::<serde_json::Value>(
            self.authed(Method::DELETE, &format!("/api/apps/{name}/domains"), auth)
                .json(&serde_json::json!({ "fqdn": fqdn })),
        )
        .map(|_| ())
    }

    /// `POST /api/apps/NAME/releases/VERSION/rollback`.
    pub fn rollback(
        &self,
        auth: &Auth,
        name: &AppName,
        version: u32,
    ) -> Result<ReleaseView, ApiError> {
        self.call(self.authed(
            Method::POST,
            &format!("/api/apps/{name}/releases/{version}/rollback"),
            auth,
        ))
    }
}

impl Client {
    /// `GET /api/apps/NAME/configs`.
    pub fn configs(
        &self,
        auth: &Auth,
        name: &AppName,
    ) -> Result<BTreeMap<String, String>, ApiError> {
        self.call(self.authed(Method::GET, &format!("/api/apps/{name}/configs"), auth))
    }

    /// `POST /api/apps/NAME/configs`: sets every pair in one release; the whole config.
    pub fn set_configs(
        &self,
        auth: &Auth,
        name: &AppName,
        configs: BTreeMap<String, String>,
        avoid_restart: bool,
    ) -> Result<BTreeMap<String, String>, ApiError> {
        let body = ConfigSet {
            configs,
            avoid_restart,
        };
        self.call(
            self.authed(Method::POST, &format!("/api/apps/{name}/configs"), auth)
                .json(&body),
        )
    }

    /// `DELETE /api/apps/NAME/configs`: removes the keys in one release (one key is sent
    /// as GIGALIXIR's CLI sends it); the whole config.
    pub fn unset_configs(
        &self,
        auth: &Auth,
        name: &AppName,
        keys: &[String],
    ) -> Result<BTreeMap<String, String>, ApiError> {
        let body = match keys {
            [one] => ConfigUnset {
                key: Some(one.clone()),
                ..ConfigUnset::default()
            },
            many => ConfigUnset {
                keys: many.to_vec(),
                ..ConfigUnset::default()
            },
        };
        self.call(
            self.authed(Method::DELETE, &format!("/api/apps/{name}/configs"), auth)
                .json(&body),
        )
    }

    /// `POST /api/apps/DST/configs/copy`: DST's whole config after the copy.
    pub fn copy_configs(
        &self,
        auth: &Auth,
        src: &AppName,
        dst: &AppName,
    ) -> Result<BTreeMap<String, String>, ApiError> {
        let body = ConfigCopy {
            from: src.to_string(),
        };
        self.call(
            self.authed(Method::POST, &format!("/api/apps/{dst}/configs/copy"), auth)
                .json(&body),
        )
    }

    /// `GET /api/apps/NAME/status`.
    pub fn status(&self, auth: &Auth, name: &AppName) -> Result<AppStatus, ApiError> {
        self.call(self.authed(Method::GET, &format!("/api/apps/{name}/status"), auth))
    }

    /// `PUT /api/apps/NAME/scale`.
    /// `GET /api/apps/NAME/health`.
    pub fn health(
        &self,
        auth: &Auth,
        name: &AppName,
    ) -> Result<gigalixir_core::model::HealthCheck, ApiError> {
        self.call(self.authed(Method::GET, &format!("/api/apps/{name}/health"), auth))
    }

    /// `PUT /api/apps/NAME/health`.
    pub fn set_health(
        &self,
        auth: &Auth,
        name: &AppName,
        update: &serde_json::Value,
    ) -> Result<gigalixir_core::model::HealthCheck, ApiError> {
        self.call(
            self.authed(Method::PUT, &format!("/api/apps/{name}/health"), auth)
                .json(update),
        )
    }

    /// `PUT /api/apps/NAME/scale`.
    pub fn scale(
        &self,
        auth: &Auth,
        name: &AppName,
        replicas: Option<i64>,
        size: Option<f64>,
    ) -> Result<ScaleView, ApiError> {
        self.call(
            self.authed(Method::PUT, &format!("/api/apps/{name}/scale"), auth)
                .json(&ScaleRequest { replicas, size }),
        )
    }

    /// `PUT /api/apps/NAME/maintenance` `{"enable"}`.
    pub fn set_maintenance(
        &self,
        auth: &Auth,
        name: &AppName,
        enable: bool,
    ) -> Result<AppView, ApiError> {
        self.call(
            self.authed(Method::PUT, &format!("/api/apps/{name}/maintenance"), auth)
                .json(&serde_json::json!({ "enable": enable })),
        )
    }

    /// A route of the app, `METHOD /api/apps/NAME/REST` (databases, drains), with an
    /// optional JSON body. Backups and restores may take long: `long` waits without a time
    /// limit.
    pub fn app_call(
        &self,
        auth: &Auth,
        name: &AppName,
        method: Method,
        rest: &str,
        body: Option<serde_json::Value>,
        long: bool,
    ) -> Result<serde_json::Value, ApiError> {
        let path = format!("/api/apps/{name}/{rest}");
        let mut req = if long {
            self.request_on(&self.streaming, method, &path)
                .basic_auth(&auth.email, Some(&auth.key))
        } else {
            self.authed(method, &path, auth)
        };
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.call(req)
    }

    /// `GET /api/apps/NAME/canaries`.
    pub fn canary(&self, auth: &Auth, name: &AppName) -> Result<serde_json::Value, ApiError> {
        self.call(self.authed(Method::GET, &format!("/api/apps/{name}/canaries"), auth))
    }

    /// `PUT /api/apps/NAME/canaries` `{"canary", "weight"}`.
    pub fn set_canary(
        &self,
        auth: &Auth,
        name: &AppName,
        canary: Option<&str>,
        weight: Option<i64>,
    ) -> Result<serde_json::Value, ApiError> {
        self.call(
            self.authed(Method::PUT, &format!("/api/apps/{name}/canaries"), auth)
                .json(&serde_json::json!({ "canary": canary, "weight": weight })),
        )
    }

    /// `DELETE /api/apps/NAME/canaries/CANARY`.
    pub fn unset_canary(
        &self,
        auth: &Auth,
        name: &AppName,
        canary: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let canary: String = url::form_urlencoded::byte_serialize(canary.as_bytes()).collect();
        self.call(self.authed(
            Method::DELETE,
            &format!("/api/apps/{name}/canaries/{canary}"),
            auth,
        ))
    }

    /// `POST /api/apps/NAME/run` with `follow`: hands the job's output to `out` line by
    /// line as it comes; its exit code.
    pub fn run_job(
        &self,
        auth: &Auth,
        name: &AppName,
        command: &[String],
        timeout: u64,
        mut out: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> anyhow::Result<i64> {
        const EXIT: &[u8] = b"\0gigalixir-exit:";
        let req = self
            .request_on(
                &self.streaming,
                Method::POST,
                &format!("/api/apps/{name}/run"),
            )
            .basic_auth(&auth.email, Some(&auth.key))
            .json(&serde_json::json!({"command": command, "timeout": timeout, "follow": true}));
        let mut resp = self.send(req)?.into_body().into_reader();
        let (mut buf, mut pending) = (vec![0u8; 16 * 1024], Vec::new());
        loop {
            let n = match resp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(anyhow::anyhow!(
                    "the job's output from {} broke off ({e}); it goes on: `gigalixir ps` shows it",
                    self.api
                ))
                }
            };
            pending.extend_from_slice(&buf[..n]);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                if let Some(code) = line.strip_prefix(EXIT) {
                    let code = String::from_utf8_lossy(code);
                    return code
                        .trim()
                        .parse()
                        .map_err(|_| anyhow::anyhow!("the platform sent a bad exit code: {code}"));
                }
                out(&line)?;
            }
        }
        out(&pending)?;
        Err(anyhow::anyhow!(
            "the job's output ended without its exit code; `gigalixir ps` shows whether it still runs"
        ))
    }

    /// `DELETE /api/apps/NAME/pods/POD` (`ps:kill`).
    pub fn kill(&self, auth: &Auth, name: &AppName, pod: &str) -> Result<(), ApiError> {
        let pod: String = url::form_urlencoded::byte_serialize(pod.as_bytes()).collect();
        self.call::<serde_json::Value>(self.authed(
            Method::DELETE,
            &format!("/api/apps/{name}/pods/{pod}"),
            auth,
        ))
        .map(drop)
    }

    /// `PUT /api/apps/NAME/restart`.
    pub fn restart(&self, auth: &Auth, name: &AppName) -> Result<(), ApiError> {
        self.call::<serde_json::Value>(self.authed(
            Method::PUT,
            &format!("/api/apps/{name}/restart"),
            auth,
        ))
        .map(drop)
    }

    /// `GET /api/apps/NAME/logs`: hands the log to `out` as it arrives, chunk by chunk,
    /// until the platform ends it (or, with `follow`, until the process is stopped).
    pub fn logs(
        &self,
        auth: &Auth,
        name: &AppName,
        num_lines: Option<usize>,
        follow: bool,
        mut out: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        let mut query = vec![("follow", follow.to_string())];
        if let Some(n) = num_lines {
            query.push(("num_lines", n.to_string()));
        }
        let req = self
            .request_on(
                &self.streaming,
                Method::GET,
                &format!("/api/apps/{name}/logs"),
            )
            .basic_auth(&auth.email, Some(&auth.key))
            .query(&query);
        let mut resp = self.send(req)?.into_body().into_reader();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match resp.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(anyhow::anyhow!(
                        "the log stream from {} broke off ({e}): run the command again",
                        self.api
                    ))
                }
            };
            out(&buf[..n])?;
        }
    }
}

impl Client {
    /// `GET /api/ssh_keys`: the account's SSH keys, oldest first.
    pub fn ssh_keys(&self, auth: &Auth) -> Result<Vec<SshKeyView>, ApiError> {
        self.call(self.authed(Method::GET, "/api/ssh_keys", auth))
    }

    /// `POST /api/ssh_keys`: adds a public key (one line).
    pub fn add_ssh_key(&self, auth: &Auth, key: &str) -> Result<SshKeyView, ApiError> {
        let body = NewSshKey {
            ssh_key: key.to_owned(),
        };
        self.call(self.authed(Method::POST, "/api/ssh_keys", auth).json(&body))
    }

    /// `DELETE /api/ssh_keys`: removes one of the account's keys.
    pub fn remove_ssh_key(&self, auth: &Auth, id: &str) -> Result<(), ApiError> {
        let body = SshKeyRemove { id: id.to_owned() };
        self.call::<serde_json::Value>(
            self.authed(Method::DELETE, "/api/ssh_keys", auth)
                .json(&body),
        )
        .map(drop)
    }

    /// `GET /api/apps/NAME/ssh_ip`: where the app's replicas answer SSH.
    pub fn ssh_access(&self, auth: &Auth, name: &AppName) -> Result<SshAccess, ApiError> {
        self.call(self.authed(Method::GET, &format!("/api/apps/{name}/ssh_ip"), auth))
    }
}

/// A reply that is a message for people (`{"data": {"message": …}}`).
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// What the platform says.
    #[serde(default)]
    pub message: String,
}

/// `POST /api/mfa/start`: a secret not yet active.
#[derive(Debug, Clone, Deserialize)]
pub struct MfaStart {
    /// What to do with it.
    #[serde(default)]
    pub message: String,
    /// Its `otpauth://` URL, for an authenticator app.
    pub url: String,
    /// The secret itself, for typing into an authenticator app.
    pub secret: String,
}

/// Recovery codes, shown once (`POST /api/mfa/verify`, `POST /api/mfa/recovery_codes`).
#[derive(Debug, Clone, Deserialize)]
pub struct RecoveryCodes {
    /// What the platform says (verification only).
    #[serde(default)]
    pub message: Option<String>,
    /// Each logs in once instead of a code.
    pub recovery_codes: Vec<String>,
}

/// Someone with access to an app (`access`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessView {
    /// Their email.
    pub email: String,
    /// `OWNER`, `COLLABORATOR` or `VIEWER`.
    pub role: String,
}

/// Something someone did to an app (`apps:activity`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityView {
    /// When (RFC 3339).
    pub at: String,
    /// Who (an email).
    pub actor: String,
    /// What (`deploy`, `access:add`, …).
    pub action: String,
    /// About what.
    #[serde(default)]
    pub detail: String,
}

/// `PUT /api/apps/NAME/owner`: the app's new owner.
#[derive(Debug, Clone, Deserialize)]
pub struct OwnerView {
    /// Their email.
    pub owner: String,
}

/// Accounts beyond login: confirmation, passwords, email, destruction, MFA.
impl Client {
    /// `POST /api/users/confirm` `{"token"}`: confirms an email (or a new one).
    pub fn confirm_email(&self, token: &str) -> Result<Message, ApiError> {
        self.call(
            self.request(Method::POST, "/api/users/confirm")
                .json(&serde_json::json!({ "token": token })),
        )
    }

    /// `PUT /api/users/reconfirm_email` `{"email"}`: a new confirmation mail (no login).
    pub fn resend_confirmation(&self, email: &str) -> Result<Message, ApiError> {
        self.call(
            self.request(Method::PUT, "/api/users/reconfirm_email")
                .json(&serde_json::json!({ "email": email })),
        )
    }

    /// `PUT /api/users/reset_password` `{"email"}`: mails a reset token (no login).
    pub fn request_password_reset(&self, email: &str) -> Result<Message, ApiError> {
        self.call(
            self.request(Method::PUT, "/api/users/reset_password")
                .json(&serde_json::json!({ "email": email })),
        )
    }

    /// `POST /api/users/reset_password` `{"token", "password"}`: a new password with a
    /// reset token; every API key of the account is revoked.
    pub fn reset_password(&self, token: &str, password: &str) -> Result<Message, ApiError> {
        self.call(
            self.request(Method::POST, "/api/users/reset_password")
                .json(&serde_json::json!({ "token": token, "password": password })),
        )
    }

    /// `PATCH /api/users/change_password` `{"current_password", "new_password"}`; 401 for
    /// a refused key or a wrong current password.
    pub fn change_password(
        &self,
        auth: &Auth,
        current: &str,
        new: &str,
    ) -> Result<Message, ApiError> {
        self.call(
            self.authed(Method::PATCH, "/api/users/change_password", auth)
                .json(&serde_json::json!({
                    "current_password": current,
                    "new_password": new,
                })),
        )
    }

    /// `POST /api/users/email` `{"next_email", "current_password"}`: mails a confirmation
    /// to the new email.
    pub fn set_email(
        &self,
        auth: &Auth,
        next_email: &str,
        current_password: &str,
    ) -> Result<Message, ApiError> {
        self.call(
            self.authed(Method::POST, "/api/users/email", auth)
                .json(&serde_json::json!({
                    "next_email": next_email,
                    "current_password": current_password,
                })),
        )
    }

    /// `DELETE /api/users/destroy` `{"email", "current_password", "destroy_apps"}`.
    pub fn destroy_account(
        &self,
        auth: &Auth,
        email: &str,
        current_password: &str,
        destroy_apps: bool,
    ) -> Result<Message, ApiError> {
        self.call(
            self.authed(Method::DELETE, "/api/users/destroy", auth)
                .json(&serde_json::json!({
                    "email": email,
                    "current_password": current_password,
                    "destroy_apps": destroy_apps,
                })),
        )
    }

    /// `POST /api/mfa/start`: a new secret, active once verified.
    pub fn mfa_start(&self, auth: &Auth) -> Result<MfaStart, ApiError> {
        self.call(self.authed(Method::POST, "/api/mfa/start", auth))
    }

    /// `POST /api/mfa/verify` `{"mfa_token"}`: activates the started secret.
    pub fn mfa_verify(&self, auth: &Auth, token: &str) -> Result<RecoveryCodes, ApiError> {
        self.call(
            self.authed(Method::POST, "/api/mfa/verify", auth)
                .json(&serde_json::json!({ "mfa_token": token })),
        )
    }

    /// `DELETE /api/mfa`.
    pub fn mfa_deactivate(&self, auth: &Auth) -> Result<Message, ApiError> {
        self.call(self.authed(Method::DELETE, "/api/mfa", auth))
    }

    /// `POST /api/mfa/recovery_codes`: new codes; the old ones stop working.
    pub fn mfa_recovery_codes(&self, auth: &Auth) -> Result<RecoveryCodes, ApiError> {
        self.call(self.authed(Method::POST, "/api/mfa/recovery_codes", auth))
    }
}

/// Who may do what to an app, and what they did.
impl Client {
    /// `GET /api/apps/NAME/permissions`: the owner first, then everyone given access.
    pub fn permissions(&self, auth: &Auth, name: &AppName) -> Result<Vec<AccessView>, ApiError> {
        self.call(self.authed(Method::GET, &format!("/api/apps/{name}/permissions"), auth))
    }

    /// `POST /api/apps/NAME/permissions` `{"email", "role"}`.
    pub fn add_permission(
        &self,
        auth: &Auth,
        name: &AppName,
        email: &str,
        role: &str,
    ) -> Result<AccessView, ApiError> {
        self.call(
            self.authed(Method::POST, &format!("/api/apps/{name}/permissions"), auth)
                .json(&serde_json::json!({ "email": email, "role": role })),
        )
    }

    /// `DELETE /api/apps/NAME/permissions` `{"email"}`.
    pub fn remove_permission(
        &self,
        auth: &Auth,
        name: &AppName,
        email: &str,
    ) -> Result<(), ApiError> {
        self.call::<serde_json::Value>(
            self.authed(
                Method::DELETE,
                &format!("/api/apps/{name}/permissions"),
                auth,
            )
            .json(&serde_json::json!({ "email": email })),
        )
        .map(drop)
    }

    /// `GET /api/apps/NAME/activity`: newest first.
    pub fn activity(&self, auth: &Auth, name: &AppName) -> Result<Vec<ActivityView>, ApiError> {
        self.call(self.authed(Method::GET, &format!("/api/apps/{name}/activity"), auth))
    }

    /// `PUT /api/apps/NAME/owner` `{"email"}`: gives the app to another account.
    pub fn transfer_app(
        &self,
        auth: &Auth,
        name: &AppName,
        email: &str,
    ) -> Result<OwnerView, ApiError> {
        self.call(
            self.authed(Method::PUT, &format!("/api/apps/{name}/owner"), auth)
                .json(&serde_json::json!({ "email": email })),
        )
    }
}

fn read_json<T: DeserializeOwned>(resp: Response) -> Option<T> {
    let bytes = resp.into_body().read_to_vec().ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_url_gives_host_base_and_remote() {
        let api = ApiUrl::parse("http://localhost:5080/").expect("valid");
        assert_eq!(api.host(), "localhost");
        assert_eq!(api.base(), "http://localhost:5080");
        let app = AppName::parse("my-app").expect("valid");
        assert_eq!(api.git_remote(&app), "http://localhost:5080/my-app.git");
        let api = ApiUrl::parse("http://127.0.0.1:5999").expect("valid");
        assert_eq!(api.host(), "127.0.0.1");
        assert_eq!(api.endpoint("/api/apps"), "http://127.0.0.1:5999/api/apps");
    }

    #[test]
    fn api_url_refuses_what_it_cannot_use() {
        assert!(ApiUrl::parse("localhost:5080").is_err());
        assert!(ApiUrl::parse("ftp://localhost").is_err());
        assert_eq!(
            ApiUrl::parse("https://api.example.com")
                .expect("https is fine")
                .host(),
            "api.example.com"
        );
        assert!(ApiUrl::parse("not a url").is_err());
    }

    #[test]
    fn field_names_read_as_words() {
        let e = Errors::field("unique_name", "has already been taken");
        assert_eq!(humane(&e), "app name has already been taken");
        let e = Errors::field("unique_name", "app name `www` is reserved by the platform");
        assert_eq!(humane(&e), "app name `www` is reserved by the platform");
        let e = Errors::general("Sorry, we could not authenticate you.");
        assert_eq!(humane(&e), "sorry, we could not authenticate you");
        assert_eq!(tidy("App `x` not found."), "app `x` not found");
        assert_eq!(tidy("API down"), "API down");
        let e = Errors::field(
            "key",
            "key `1A` is not a valid config var name: use letters, digits and underscores, not starting with a digit",
        );
        assert_eq!(
            humane(&e),
            "key `1A` is not a valid config var name: use letters, digits and underscores, not starting with a digit"
        );
        let e = Errors::field(
            "ssh_key",
            "SSH key is empty: give the contents of your public key file",
        );
        assert_eq!(
            humane(&e),
            "SSH key is empty: give the contents of your public key file"
        );
        let e = Errors::field("replicas", "replicas must be between 0 and 16");
        assert_eq!(humane(&e), "replicas must be between 0 and 16");
        let e = Errors::general("config is larger than 32 kB (40000 bytes of keys and values, at most 32768); nothing was changed");
        assert!(humane(&e).starts_with("config is larger than 32 kB"));
    }

    #[test]
    fn platform_messages_show_for_503_and_409() {
        let e = ApiError::Unavailable(Some(
            "process status, logs and SSH access are not available from this API".into(),
        ));
        assert_eq!(
            e.to_string(),
            "process status, logs and SSH access are not available from this API"
        );
        assert!(ApiError::Unavailable(None)
            .to_string()
            .contains("try again shortly"));
        assert_eq!(ApiError::Conflict("busy".into()).to_string(), "busy");
    }

    #[test]
    fn auth_debug_hides_the_key() {
        let auth = Auth {
            email: "a@b.co".into(),
            key: "secret-key".into(),
        };
        assert!(!format!("{auth:?}").contains("secret-key"));
    }
}
