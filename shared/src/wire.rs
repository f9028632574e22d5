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
    /// Accepted for compatibility.
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
    /// Base image family.
    pub stack: String,
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
}
