//! The push webhook: `POST /hooks/github/APP` takes a GitHub `push` event and builds the
//! pushed commit as a `git push` would.
//!
//! - The body must carry `X-Hub-Signature-256: sha256=HEX`, the HMAC-SHA256 of the raw
//!   body under the app's webhook key (made with `POST /api/apps/APP/webhook`), checked in
//!   constant time. Missing or wrong: 401, nothing is built.
//! - Only `refs/heads/master` and `refs/heads/main` build; other refs, deletions and other
//!   events answer 202 `ignored`; GitHub's `ping` answers 200.
//! - The commit (`after`) is fetched from `repository.clone_url` (http or https only) with
//!   the real git into a scratch repository, archived with its submodules, recorded as a
//!   Build and announced with `build-requested` — the pipeline of a `git push`. The app's
//!   own repository on the platform is left as it is.
//! - A push event is built once: its build id derives from the app and the signed body
//!   (not from `X-GitHub-Delivery`, which the signature does not cover), so a redelivery —
//!   or a captured body replayed under a new delivery id to bring an older commit back —
//!   finds its build and answers 200 with it (re-announcing it if it has not started yet).

use std::collections::BTreeMap;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use shared::domain::{AppName, BuildId, GitSha};
use shared::model::{App, Build, BuildFlags, BuildState};
use shared::PortError;

use crate::error::ReceiveError;
use crate::pipeline::{archive_commit, NewBuild};
use crate::ReceiveState;
use shared::gitfetch::Remote;

/// The signature header: `sha256=` and the hex HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
/// The delivery's unique id; a redelivery carries the same one.
pub const DELIVERY_HEADER: &str = "x-github-delivery";
/// The event name (`push`, `ping`, …).
pub const EVENT_HEADER: &str = "x-github-event";

/// Largest delivery accepted (GitHub caps its payloads at 25 MB).
pub const MAX_BODY_BYTES: usize = 25 << 20;

const ZERO: &str = "0000000000000000000000000000000000000000";

/// What the webhook reads of a `push` event.
#[derive(Debug, Deserialize)]
struct PushEvent {
    #[serde(rename = "ref")]
    git_ref: String,
    after: String,
    repository: Repository,
}

#[derive(Debug, Deserialize)]
struct Repository {
    clone_url: String,
}

/// The value of [`SIGNATURE_HEADER`] for `body` under `secret`, as GitHub computes it.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length: this never fails.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is a valid signature of `body` under `secret`. The comparison takes
/// the same time wherever the first wrong byte is.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(given) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(given) = hex::decode(given) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The build a push event makes: the same app and signed body give the same build.
pub fn build_id(app: &AppName, body: &[u8]) -> BuildId {
    let body = hex::encode(Sha256::digest(body));
    let digest = Sha256::digest(format!("push-webhook\n{app}\n{body}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    BuildId(
        uuid::Builder::from_custom_bytes(bytes)
            .into_uuid()
            .to_string(),
    )
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn refuse(status: StatusCode, message: &str) -> Response {
    answer(status, json!({ "error": message }))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /hooks/github/APP`.
pub async fn github(
    State(state): State<ReceiveState>,
    UrlPath(app): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The same answer whether the app is missing or has no key: neither builds anything.
    let unsigned = || {
        refuse(
            StatusCode::UNAUTHORIZED,
            "the signature does not match: sign the body with the app's webhook key (POST /api/apps/APP/webhook)",
        )
    };
    let Ok(name) = AppName::parse(&app) else {
        return unsigned();
    };
    let app = match state.store.app(&name).await {
        Ok(app) => app,
        Err(PortError::NotFound) => return unsigned(),
        Err(err) => return unavailable(&err.into()),
    };
    let Some(secret) = app.webhook_secret.as_ref() else {
        return unsigned();
    };
    if !verify(
        secret.expose().as_bytes(),
        &body,
        header(&headers, SIGNATURE_HEADER),
    ) {
        tracing::warn!(app = %app.name, "webhook delivery with a bad or missing signature refused");
        return unsigned();
    }
    match header(&headers, EVENT_HEADER) {
        Some("ping") => return answer(StatusCode::OK, json!({ "status": "pong" })),
        Some("push") | None => {}
        Some(other) => {
            return answer(
                StatusCode::ACCEPTED,
                json!({ "status": "ignored", "reason": format!("`{other}` events are not built; send `push` events") }),
            )
        }
    }
    let push: PushEvent = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(err) => return refuse(StatusCode::BAD_REQUEST, &format!("not a push event: {err}")),
    };
    let branch = match push.git_ref.strip_prefix("refs/heads/") {
        Some(b @ ("master" | "main")) if push.after != ZERO => b.to_owned(),
        _ => {
            return answer(
                StatusCode::ACCEPTED,
                json!({
                    "status": "ignored",
                    "reason": format!("{} is not built: only pushes to master and main deploy", push.git_ref),
                }),
            )
        }
    };
    let Ok(commit) = GitSha::parse(&push.after) else {
        return refuse(StatusCode::BAD_REQUEST, "`after` is not a full commit id");
    };
    let source = match RepoUrl::parse(&push.repository.clone_url) {
        Ok(url) => url,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, &why),
    };
    if let Some(delivery) = header(&headers, DELIVERY_HEADER) {
        tracing::info!(app = %app.name, delivery = %delivery.chars().take(64).collect::<String>(), "webhook delivery");
    }
    let request = Request {
        id: build_id(&app.name, &body),
        app,
        branch,
        commit,
        source,
        trace: uuid::Uuid::new_v4().to_string(),
    };
    // Runs to its end even if GitHub hangs up first (it waits 10 s).
    match tokio::spawn(async move { request.run(&state).await }).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(err)) => unavailable(&err),
        Err(err) => unavailable(&err.into()),
    }
}

fn unavailable(err: &ReceiveError) -> Response {
    tracing::error!(error = %err, "webhook delivery failed");
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "the platform could not take this push now; redeliver it shortly",
    )
}

/// A repository URL the platform may fetch from: http or https, shown without any
/// credentials it carries.
struct RepoUrl {
    url: url::Url,
}

impl RepoUrl {
    fn parse(raw: &str) -> Result<Self, String> {
        let url =
            url::Url::parse(raw).map_err(|_| "`repository.clone_url` is not a URL".to_owned())?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err("`repository.clone_url` must be an http or https URL".into());
        }
        Ok(Self { url })
    }

    /// For logs and answers.
    fn shown(&self) -> String {
        let mut shown = self.url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.to_string()
    }
}

/// One delivery to build.
struct Request {
    id: BuildId,
    app: App,
    branch: String,
    commit: GitSha,
    source: RepoUrl,
    trace: String,
}

impl Request {
    fn accepted(&self, status: StatusCode, what: &str) -> Response {
        answer(
            status,
            json!({
                "status": what,
                "build": self.id.to_string(),
                "app": self.app.name.to_string(),
                "commit": self.commit.as_str(),
            }),
        )
    }

    fn build(&self) -> NewBuild<'_> {
        NewBuild {
            app: &self.app.name,
            id: &self.id,
            commit: &self.commit,
            branch: &self.branch,
            flags: BuildFlags::default(),
            pusher: None,
        }
    }

    async fn announce(&self, state: &ReceiveState) -> crate::error::Result<()> {
        self.build().announce(state, &self.trace).await?;
        Ok(())
    }

    /// What a redelivery finds: the build, announced again while nothing has picked it
    /// up (the first delivery may have died between recording and announcing it).
    async fn existing(
        &self,
        state: &ReceiveState,
        build: &Build,
    ) -> crate::error::Result<Response> {
        if build.state == BuildState::Requested {
            self.announce(state).await?;
        }
        tracing::info!(app = %self.app.name, build = %self.id, "webhook delivery seen before");
        Ok(self.accepted(StatusCode::OK, "already received"))
    }

    #[tracing::instrument(skip_all, fields(app = %self.app.name, build = %self.id))]
    async fn run(self, state: &ReceiveState) -> crate::error::Result<Response> {
        match state.store.build(&self.id).await {
            Ok(build) => return self.existing(state, &build).await,
            Err(PortError::NotFound) => {}
            Err(err) => return Err(err.into()),
        }
        let scratch = tempfile::Builder::new().prefix("gx-webhook-").tempdir()?;
        let git_dir = scratch.path().join("repo.git");
        let fetched = match Remote::check(self.source.url.as_str(), &state.git).await {
            Ok(remote) => {
                remote
                    .fetch_commit(
                        &state.git,
                        &git_dir,
                        self.commit.as_str(),
                        Some(&format!("refs/heads/{}", self.branch)),
                        scratch.path(),
                    )
                    .await
            }
            Err(why) => Err(why),
        };
        if let Err(why) = fetched {
            tracing::warn!(source = %self.source.shown(), error = %why, "webhook fetch failed");
            return Ok(refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!(
                    "could not fetch {} from {}: {why}",
                    self.commit.as_str(),
                    self.source.shown()
                ),
            ));
        }
        let archive =
            match archive_commit(&git_dir, &self.commit, &BTreeMap::new(), &state.git).await {
                Ok(a) => a,
                Err(why) => {
                    return Ok(refuse(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &format!("could not archive {}: {why}", self.commit.as_str()),
                    ))
                }
            };
        match self.build().record(state, &archive).await {
            Ok(()) => {}
            // The same delivery, at the same time: the first one recorded it.
            Err(PortError::AlreadyExists) => {
                let found = state.store.build(&self.id).await?;
                return self.existing(state, &found).await;
            }
            Err(err) => return Err(err.into()),
        }
        let short = self.commit.short();
        state
            .store
            .append_build_log(
                &self.id,
                &[format!(
                    "-----> Received {short} for {} from the push webhook ({})",
                    self.app.name, self.branch
                )],
            )
            .await?;
        self.announce(state).await?;
        tracing::info!(commit = %self.commit.as_str(), "webhook build requested");
        Ok(self.accepted(StatusCode::ACCEPTED, "building"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_github_s() {
        // The example of GitHub's "Validating webhook deliveries" page.
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            header
        );
        assert!(verify(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some(header)
        ));
        assert!(!verify(b"another key", b"Hello, World!", Some(header)));
        assert!(!verify(
            b"It's a Secret to Everybody",
            b"Hello, World?",
            Some(header)
        ));
        assert!(!verify(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            None
        ));
        assert!(!verify(
            b"It's a Secret to Everybody",
            b"Hello, World!",
            Some(header.trim_start_matches("sha256="))
        ));
        assert!(!verify(b"k", b"b", Some("sha256=zz")));
    }

    #[test]
    fn a_signed_body_keys_its_build() {
        let app = AppName::parse("my-app").expect("name");
        let other = AppName::parse("your-app").expect("name");
        assert_eq!(build_id(&app, b"d1"), build_id(&app, b"d1"));
        assert_ne!(build_id(&app, b"d1"), build_id(&app, b"d2"));
        assert_ne!(build_id(&app, b"d1"), build_id(&other, b"d1"));
        assert!(uuid::Uuid::parse_str(&build_id(&app, b"d1").0).is_ok());
    }

    #[test]
    fn only_http_sources_are_fetched_and_credentials_are_not_shown() {
        assert!(RepoUrl::parse("https://github.com/Codertocat/Hello-World.git").is_ok());
        for bad in [
            "file:///etc",
            "ext::sh -c id",
            "git@github.com:a/b.git",
            "ssh://h/r",
        ] {
            assert!(RepoUrl::parse(bad).is_err(), "{bad}");
        }
        let url = RepoUrl::parse("https://user:token@example.com/r.git").expect("url");
        assert_eq!(url.shown(), "https://example.com/r.git");
    }
}
