//! The records the platform keeps: users, API keys, apps, builds, releases.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{AppName, BuildId, Email, KeyHash, ReleaseVersion, Secret, UserId};
use crate::stack::Stack;

/// An app's stack as stored: records from before stacks could be chosen hold a name or an
/// empty string; an unknown or empty one means none.
fn stack_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Stack>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    Ok(raw.and_then(|s| Stack::parse(&s).ok()))
}

/// Most replicas an app may have (`ps:scale`); deploys and restarts are given time for
/// this many, one after the other.
pub const MAX_REPLICAS: u32 = 16;

/// How long an API key lives after it is issued.
pub const API_KEY_LIFETIME_DAYS: i64 = 365;

/// An account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    /// Stable id.
    pub id: UserId,
    /// Login email, normalised.
    pub email: Email,
    /// Argon2 hash in PHC string form.
    pub password_hash: Secret,
    /// When the account was made.
    pub created_at: DateTime<Utc>,
    /// Whether its email is confirmed. Accounts from before confirmation existed were all
    /// active, so a record without the field is confirmed.
    #[serde(default = "confirmed_by_default")]
    pub confirmed: bool,
    /// Its outstanding one-time tokens (confirmation, password reset, email change), by
    /// hash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<UserToken>,
    /// Its second factor, once started (`mfa/start`); active once verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<Mfa>,
}

fn confirmed_by_default() -> bool {
    true
}

impl User {
    /// A new, unconfirmed account with no tokens and no second factor.
    pub fn new(email: Email, password_hash: Secret) -> Self {
        Self {
            id: UserId::random(),
            email,
            password_hash,
            created_at: Utc::now(),
            confirmed: false,
            tokens: Vec::new(),
            mfa: None,
        }
    }
}

/// What a one-time token of an account is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenPurpose {
    /// Confirms the account's email (sign-up).
    Confirm,
    /// Sets a new password (password reset).
    Reset,
    /// Moves the account to a new email, once that address confirms.
    Email {
        /// The address it moves to.
        next: Email,
    },
    /// A sign-up whose password is set and whose first API key is not yet issued (a
    /// marker of the sign-up's state, not something mailed).
    Signup,
}

/// A one-time token, known by its SHA-256 only; spent when used, void after `expires_at`
/// or after too many wrong guesses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserToken {
    /// What it is for.
    pub purpose: TokenPurpose,
    /// Hex SHA-256 of the token.
    pub hash: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Wrong guesses against it so far.
    #[serde(default)]
    pub failures: u32,
}

/// An account's TOTP second factor (RFC 6238).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mfa {
    /// The shared secret, base32.
    pub secret: Secret,
    /// Whether a code was verified against it: only then does login ask for one.
    pub active: bool,
    /// Hex SHA-256 of each unused recovery code.
    #[serde(default)]
    pub recovery_codes: Vec<String>,
    /// The last time step a code was accepted for, so that a code works once.
    #[serde(default)]
    pub last_step: u64,
}

/// What a person other than the owner may do with an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    /// Everything but destroying the app and managing who has access.
    Collaborator,
    /// Reading: the app, its releases, status and logs; not its config values.
    Viewer,
}

impl Role {
    /// The role named `raw` (any case).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_uppercase().as_str() {
            "COLLABORATOR" => Some(Self::Collaborator),
            "VIEWER" => Some(Self::Viewer),
            _ => None,
        }
    }

    /// Its name as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Collaborator => "COLLABORATOR",
            Self::Viewer => "VIEWER",
        }
    }
}

/// Someone given access to an app by its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The app.
    pub app: AppName,
    /// The account.
    pub user: UserId,
    /// What they may do.
    pub role: Role,
    /// Since when.
    pub added_at: DateTime<Utc>,
}

/// How long an app's activity is kept.
pub const ACTIVITY_RETENTION_DAYS: i64 = 365;

/// One thing someone did to an app (`apps:activity`). Never holds a config value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// The app.
    pub app: AppName,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: an account's email, or `platform` for what the platform did by itself.
    pub actor: String,
    /// What, in a word: `push`, `release`, `rollback`, `config:set`, `config:unset`,
    /// `scale`, `restart`, `access:add`, `access:remove`, `domain:add`, `domain:remove`,
    /// `transfer`.
    pub action: String,
    /// The details, in words (a commit, a version, config keys, a replica count).
    pub detail: String,
}

/// An issued API key, known only by its hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// SHA-256 of the key.
    pub hash: KeyHash,
    /// Whose key it is.
    pub user: UserId,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// After this instant the key no longer authenticates.
    pub expires_at: DateTime<Utc>,
}

/// App config: environment variables given to every replica. Values are secrets.
pub type ConfigVars = BTreeMap<String, Secret>;

/// An app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct App {
    /// Unique name; also its host name.
    pub name: AppName,
    /// The owning account.
    pub owner: UserId,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Erlang distribution cookie, generated once at creation.
    pub erlang_cookie: Secret,
    /// Phoenix `SECRET_KEY_BASE`, generated once at creation.
    pub secret_key_base: Secret,
    /// Desired number of replicas.
    pub replicas: u32,
    /// Replica size in GB of memory, as GIGALIXIR counts it.
    pub size: f64,
    /// The stack its builds use when its owner set one (`stack:set`); `None`: chosen per
    /// build from the versions the app asks for.
    #[serde(default, deserialize_with = "stack_or_none")]
    pub stack: Option<Stack>,
    /// Current config vars; each release snapshots them.
    #[serde(default)]
    pub config: ConfigVars,
    /// How a new release proves it is ready, and how an old one leaves.
    #[serde(default)]
    pub health: HealthCheck,
    /// The key of the app's push webhook (`POST /hooks/github/APP` on `receive`):
    /// deliveries must carry its HMAC-SHA256 of the body. `None` until the owner asks for
    /// one (`POST /api/apps/APP/webhook`); asking again replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<Secret>,
    /// In maintenance (`maintenance:on`): the app keeps running, but the router answers
    /// its requests with 503 and a maintenance page.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub maintenance: bool,
    /// Another app of the same owner that gets a share of this one's requests
    /// (`canary:set`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// Its managed PostgreSQL databases (`pg:create`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<Database>,
    /// Where its logs are shipped (`drains:add`), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drains: Vec<Drain>,
}

/// A log drain of an app: a receiver its lines are shipped to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drain {
    /// Its id, as users name it (`drains:remove ID`): a UUID.
    pub id: String,
    /// `https://…` (logplex) or `syslog+tls://HOST:PORT`; may hold a token.
    pub url: Secret,
    /// When it was added: lines from then on are shipped.
    pub created_at: DateTime<Utc>,
}

/// A managed PostgreSQL database of an app: a database and a role of the same name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Database {
    /// Its id, as users name it (`pg:destroy -d ID`): a UUID.
    pub id: String,
    /// The database's and its role's name on the server (random: nothing of the app).
    pub name: String,
    /// The role's password.
    pub password: Secret,
    /// Where apps reach it.
    pub host: String,
    /// Where apps reach it.
    pub port: u16,
    /// Size as GIGALIXIR counts it (GB of memory), which sets the connection limit.
    pub size: f64,
    /// Free (a few connections) or standard.
    pub tier: DatabaseTier,
    /// PostgreSQL major version.
    pub version: u32,
    /// Whether it takes connections.
    pub state: DatabaseState,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// Its backups, oldest first.
    #[serde(default)]
    pub backups: Vec<Backup>,
}

impl Database {
    /// The URL apps get as `DATABASE_URL`.
    pub fn url(&self) -> Secret {
        Secret::new(format!(
            "postgresql://{}:{}@{}:{}/{}",
            self.name,
            self.password.expose(),
            self.host,
            self.port,
            self.name
        ))
    }
}

/// What a database is sold as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DatabaseTier {
    /// `pg:create --free`: a handful of connections, for trying things.
    Free,
    /// Sized by `-s SIZE`.
    Standard,
}

/// Whether a database takes connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DatabaseState {
    /// Takes connections.
    Available,
    /// Stopped by its owner (`pg:stop`): its role cannot log in.
    Stopped,
}

/// One backup of a database: a `pg_dump -Fc` in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    /// Its id (sortable by time).
    pub id: String,
    /// When it was taken.
    pub created_at: DateTime<Utc>,
    /// Bytes.
    pub size: u64,
    /// Taken by the daily schedule (kept: the newest 7), else on request.
    pub automatic: bool,
}

/// Where a share of an app's requests goes (`canary:set`): sticky per browser by a cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    /// The app that gets them.
    pub app: AppName,
    /// Percent of new visitors sent there, 0–100 (0 and 100 make a blue-green switch).
    pub weight: u8,
}

/// When a replica counts as healthy, and how replicas leave. Set with `health:set`; applies
/// from the next deploy, scale or restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `None`: healthy once the port accepts connections; else healthy once
    /// `GET <path>` answers `status`.
    pub path: Option<String>,
    /// The status `path` must answer.
    pub status: u16,
    /// Seconds a replica may take to become healthy; `None`: the platform's default.
    pub boot_timeout_secs: Option<u32>,
    /// Seconds a replica leaving the rotation gets to finish its requests.
    pub drain_secs: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            path: None,
            status: 200,
            boot_timeout_secs: None,
            drain_secs: 30,
        }
    }
}

/// Where a build stands. Moves forward only, or to `Failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildState {
    /// Source archived, waiting for a builder.
    Requested,
    /// A builder is running the buildpacks.
    Building,
    /// The slug lies in the build container.
    Built,
    /// The slug is in the slug store.
    Uploaded,
    /// A release was made from it.
    Released,
    /// The release runs and is healthy.
    Deployed,
    /// Stopped for good; see `Build::failure`.
    Failed,
}

/// Options the pusher asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildFlags {
    /// Build without the cache (`GIGALIXIR-CLEAN: true`).
    pub clean: bool,
    /// Upgrade running nodes in place (`GIGALIXIR-HOT: true`).
    pub hot: bool,
}

/// A content-addressed slug in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlugRef {
    /// Blob key.
    pub key: String,
    /// SHA-256 of the slug, hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// The Procfile's process types (`web`, `release`, …); `None` when unknown, which
    /// makes the deploy look for a release phase itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_types: Option<Vec<String>>,
    /// The stack it was built on: its replicas, release phase and one-off commands run on
    /// that stack's runner. `None`: built before stacks existed, on bookworm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<Stack>,
}

impl SlugRef {
    /// Whether a release of this slug has a release phase to run before its replicas
    /// start: its Procfile names `release`, or its process types are unknown (the runner
    /// then looks at the Procfile itself, and does nothing without one).
    pub fn has_release_phase(&self) -> bool {
        self.process_types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == "release"))
    }
}

impl SlugRef {
    /// The stack it runs on.
    pub fn stack(&self) -> Stack {
        self.stack.unwrap_or(Stack::Bookworm)
    }
}

/// One push being turned into a release.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Build {
    /// Id; keys every pipeline step.
    pub id: BuildId,
    /// The app built.
    pub app: AppName,
    /// The pushed commit, 40 hex digits.
    pub commit: String,
    /// The branch pushed (`master` or `main`).
    pub branch: String,
    /// Options from the push.
    pub flags: BuildFlags,
    /// Where it stands.
    pub state: BuildState,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    /// The slug, once uploaded.
    pub slug: Option<SlugRef>,
    /// The stack the platform chose for it, once it starts building.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<Stack>,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// Last state change.
    pub updated_at: DateTime<Utc>,
    /// When it entered each state after `requested`, in order (for timings).
    #[serde(default)]
    pub history: Vec<(BuildState, DateTime<Utc>)>,
    /// For a `git push`: the holder of the app's push lock whose client waits for this
    /// build. When it no longer holds the lock (its platform died), the push is over and
    /// the build stops (`locks::pusher_gone`). `None` for webhook builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pusher: Option<String>,
}

/// What happened to a release after it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Made, not yet running.
    Pending,
    /// Running and healthy.
    Deployed,
    /// Never became healthy.
    Failed,
    /// Replaced because of a rollback.
    RolledBack,
    /// Replaced by a newer release.
    Superseded,
}

/// How a deployed release came to run in place of the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployedBy {
    /// New replicas, started beside the old ones, which then stopped (the app restarted).
    NewReplicas,
    /// The running replicas loaded it without a restart (a hot upgrade).
    HotUpgrade,
    /// The running replicas went back to it without a restart (a rollback whose appups
    /// gave downgrade instructions).
    HotDowngrade,
    /// The running replicas carried on as they were: they already ran its slug with its
    /// config (a push that changed nothing a build reads, a rollback to the same code).
    Kept,
}

/// What a new release is made of; the store assigns the version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewRelease {
    /// Makes creation idempotent: a second call with the same key returns the first release.
    pub idempotency_key: String,
    /// The slug it runs.
    pub slug: SlugRef,
    /// The config it runs with.
    pub config: ConfigVars,
    /// The commit, when it comes from a push.
    pub commit: Option<String>,
    /// The build, when it comes from a push.
    pub build: Option<BuildId>,
    /// One line for people: "Deploy 1a2b3c4", "Set FOO", "Rollback to v3".
    pub summary: String,
    /// For a rollback: the release whose slug and config it brings back.
    #[serde(default)]
    pub rollback_to: Option<ReleaseVersion>,
}

/// A numbered, immutable pairing of slug and config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Release {
    /// The app.
    pub app: AppName,
    /// `vN`, one more than the previous release.
    pub version: ReleaseVersion,
    /// The release this one replaced when it was made, if any.
    pub rollback_id: Option<ReleaseVersion>,
    /// What it is made of.
    #[serde(flatten)]
    pub spec: NewRelease,
    /// What happened to it.
    pub status: ReleaseStatus,
    /// How it came to run, once deployed (records from before this was kept have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_by: Option<DeployedBy>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// A domain of the user's own that an app answers on (besides `APP.<platform domain>`):
/// it belongs to one app in the whole platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomDomain {
    /// The name.
    pub fqdn: crate::domain::Fqdn,
    /// The app it routes to.
    pub app: AppName,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// An SSH public key of an account; it admits the account to its apps' replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKey {
    /// Stable id, for removal.
    pub id: String,
    /// The owner.
    pub user: UserId,
    /// The key line as given: `ssh-ed25519 AAAA… comment`.
    pub key: String,
    /// SHA-256 fingerprint, `SHA256:…`, as ssh-keygen prints it.
    pub fingerprint: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}
