//! The HTTP API's JSON bodies, shared by the `api` function and the CLI. The shape follows
//! GIGALIXIR's API: replies are `{"data": …}`, errors `{"errors": {"field": ["message"]}}`
//! with `""` as the field of errors that concern no single field.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A successful reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Data<T> {
    /// The payload.
    pub data: T,
}

/// An error reply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Errors {
    /// Messages by field; `""` for the request as a whole.
    pub errors: BTreeMap<String, Vec<String>>,
}

impl Errors {
    /// One message about the request as a whole.
    pub fn general(message: impl Into<String>) -> Self {
        Self::field("", message)
    }

    /// One message about one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut errors = BTreeMap::new();
        errors.insert(field.to_owned(), vec![message.into()]);
        Self { errors }
    }

    /// Every message as one line for people: "email has already been taken".
    pub fn sentence(&self) -> String {
        let parts: Vec<String> = self
            .errors
            .iter()
            .flat_map(|(field, msgs)| {
                msgs.iter().map(move |m| {
                    if field.is_empty() || m.starts_with(field.as_str()) {
                        m.clone()
                    } else {
                        format!("{field} {m}")
                    }
                })
            })
            .collect();
        parts.join("; ")
    }
}

/// `POST /api/users`: a new account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewUser {
    /// Login email.
    pub email: String,
    /// At least 8 characters.
    pub password: String,
}

/// An account as shown to its owner (`GET /api/users`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    /// Login email.
    pub email: String,
    /// Plan; every account on this platform is `FREE`.
    pub tier: String,
    /// Prepaid credit, as GIGALIXIR reports it.
    pub credit_cents: i64,
    /// When the account was made.
    pub created_at: DateTime<Utc>,
    /// Whether its email is confirmed.
    #[serde(default = "yes")]
    pub email_confirmed: bool,
    /// Whether login asks for a second factor.
    #[serde(default)]
    pub mfa_active: bool,
}

fn yes() -> bool {
    true
}

/// A freshly issued API key (`GET /api/login`, `POST /api/api_keys/regenerate`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyView {
    /// The key; shown once, stored by the platform only as a hash.
    pub key: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// `POST /api/apps`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewApp {
    /// The app's name; GIGALIXIR's CLI sends it lowercased.
    pub unique_name: Option<String>,
    /// Accepted for compatibility; one cloud here.
    pub cloud: Option<String>,
    /// Accepted for compatibility; one region here.
    pub region: Option<String>,
    /// The app's stack (`bookworm`, `trixie`, `forky`); absent: chosen per build from the
    /// versions the app asks for.
    pub stack: Option<String>,
}

/// `PUT /api/apps/NAME/stack` (GIGALIXIR's `stack:set`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StackChange {
    /// The stack; `null` or empty: chosen per build again.
    pub stack: Option<String>,
}

/// An app as listed (`GET /api/apps`, `GET /api/apps/NAME`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppView {
    /// The app's name.
    pub unique_name: String,
    /// Replica size, GB of memory.
    pub size: f64,
    /// Desired replicas.
    pub replicas: u32,
    /// Where it runs.
    pub cloud: String,
    /// Where it runs.
    pub region: String,
    /// The stack its owner set; `null`: chosen per build from the versions the app asks for.
    pub stack: Option<String>,
    /// Whether it is in maintenance: its requests answered 503 by the router.
    #[serde(default)]
    pub maintenance: bool,
}

/// A custom domain of an app (`GET|POST /api/apps/NAME/domains`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainView {
    /// The name.
    pub fqdn: String,
    /// Where its CNAME (or ALIAS) record must point: the app's own host.
    pub cname: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// Where its HTTPS certificate stands, where the platform issues them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

/// A release as listed (`GET /api/apps/NAME/releases`, newest first). The first four fields
/// are GIGALIXIR's (its CLI prints the list and reads `version` to roll back); the rest
/// are ours. Config values are secrets and never part of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseView {
    /// The release number: `2` for v2.
    pub version: u32,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// One line for people: "Deploy 1a2b3c4", "Set FOO", "Rollback to v3".
    pub summary: String,
    /// The git commit it was built from, when it comes from a push.
    pub sha: Option<String>,
    /// What happened to it.
    pub status: crate::model::ReleaseStatus,
    /// The version it replaced when it was made, if any.
    pub rollback_id: Option<u32>,
    /// The slug's size in bytes.
    pub slug_size: u64,
    /// How it came to run, once deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_by: Option<crate::model::DeployedBy>,
}

/// `POST /api/apps/NAME/configs`: config vars to set, all in one change (one release).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigSet {
    /// Keys and values; values may hold anything (`=`, spaces, newlines, unicode).
    pub configs: BTreeMap<String, String>,
    /// Store the config without making a release (no restart); the next release takes it.
    #[serde(default)]
    pub avoid_restart: bool,
}

/// `DELETE /api/apps/NAME/configs`: config vars to remove, all in one change. GIGALIXIR's
/// CLI sends one `key`; ours sends `keys` to remove several at once.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigUnset {
    /// One key to remove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Several keys to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Store the config without making a release (no restart).
    #[serde(default)]
    pub avoid_restart: bool,
}

/// `POST /api/apps/NAME/configs/copy`: merge another app's config into this one (the
/// source's values win).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConfigCopy {
    /// The app the config comes from.
    pub from: String,
}

/// `PUT /api/apps/NAME/scale`: either field may be absent. Signed so that a negative count
/// is refused with a message rather than a parse error.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScaleRequest {
    /// Replicas wanted, 0–16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    /// GB of memory per replica, 0.2–8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<f64>,
}

/// The reply of `PUT /api/apps/NAME/scale`: what the app is now scaled to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleView {
    /// The app's name.
    pub unique_name: String,
    /// Replicas wanted.
    pub replicas: u32,
    /// GB of memory per replica.
    pub size: f64,
}

/// One replica as `GET /api/apps/NAME/status` lists it (GIGALIXIR's `pods`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodView {
    /// The runtime's name for it (container or pod).
    pub name: String,
    /// `running`, `starting` or `stopped`.
    pub status: crate::ports::runtime::ReplicaState,
    /// The release it runs: `3` for v3.
    pub version: u32,
    /// The commit of that release, when it comes from a push.
    pub sha: Option<String>,
    /// Since when it is in its status.
    pub since: DateTime<Utc>,
    /// Seconds since `since`, when the reply was made.
    pub age: u64,
    /// Its slot, 0..replicas (`HOST_INDEX`), stable across releases.
    pub host_index: u32,
}

/// `GET /api/apps/NAME/status`: the app and its replicas, as `gigalixir ps` shows them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppStatus {
    /// The app's name.
    pub unique_name: String,
    /// GB of memory per replica.
    pub size: f64,
    /// Replicas wanted.
    pub replicas_desired: u32,
    /// Replicas accepting connections.
    pub replicas_running: u32,
    /// Where it runs.
    pub cloud: String,
    /// Where it runs.
    pub region: String,
    /// The stack it runs on (its live release's, else the one its owner set).
    pub stack: Option<String>,
    /// Every replica the runtime has for the app, by slot.
    pub pods: Vec<PodView>,
    /// The one-off jobs (`run`) that run now, oldest first.
    #[serde(default)]
    pub jobs: Vec<crate::ports::runtime::JobInfo>,
}

/// `POST /api/ssh_keys`: an SSH public key to add to the caller's account, as GIGALIXIR's
/// CLI sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewSshKey {
    /// The key line: `ssh-ed25519 AAAA… comment`.
    pub ssh_key: String,
}

/// `DELETE /api/ssh_keys`: the key to remove.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SshKeyRemove {
    /// The key's id, as `GET /api/ssh_keys` lists it.
    pub id: String,
}

/// An SSH key as listed (`GET /api/ssh_keys`) and as added (`POST /api/ssh_keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKeyView {
    /// Its id, for removal.
    pub id: String,
    /// The key line as stored: `TYPE BASE64 [comment]`.
    pub key: String,
    /// SHA-256 fingerprint as `ssh-keygen -l` prints it: `SHA256:…`.
    pub fingerprint: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
}

/// One replica's SSH server, as `GET /api/apps/NAME/ssh_ip` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshReplica {
    /// Its slot (`HOST_INDEX`).
    pub index: u32,
    /// The address its SSH server answers on.
    pub host: String,
    /// The port its SSH server answers on.
    pub port: u16,
    /// The release it runs: `3` for v3.
    pub version: u32,
}

/// `GET /api/apps/NAME/ssh_ip`: where to SSH into the app. The first three fields name the
/// first running replica (lowest slot); `replicas` lists every running one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshAccess {
    /// The address of the first replica's SSH server (GIGALIXIR's field).
    pub ssh_ip: String,
    /// Its port.
    pub ssh_port: u16,
    /// The login name the SSH servers admit.
    pub ssh_user: String,
    /// Every running replica with an SSH server, by slot.
    pub replicas: Vec<SshReplica>,
}
