//! [`Store`] on Cloud Firestore (native mode), through the `firestore` crate's gRPC client.
//!
//! Like its SQLite twin, every record is kept as its JSON in a `json` field, next to the few
//! fields that keys and queries need: the records hold tuples (a build's history) that
//! Firestore's arrays cannot, and one encoding keeps both backends reading the same bytes.
//!
//! # Layout
//!
//! Document ids are the record's key, escaped (`%` and `/` percent-encoded, ids Firestore
//! reserves prefixed) so that any key is a valid id.
//!
//! | documents | fields | what for |
//! |---|---|---|
//! | `users/{id}` | `email`, `json` | the account |
//! | `user_emails/{email}` | `user` | one account per email: created with the user, in one commit |
//! | `users/{id}/ssh_keys/{fingerprint}` | `id`, `json` | one key per fingerprint and account |
//! | `api_keys/{hash}` | `user`, `expires_at` (ms), `json` | login by key; `replace` finds them by `user` |
//! | `apps/{name}` | `owner`, `json`, `latest_release` | the app and its last release number |
//! | `apps/{name}/releases/{version, 10 digits}` | `version`, `json` | releases, newest by `version` |
//! | `apps/{name}/release_keys/{idempotency key}` | `version` | makes `create_next_release` idempotent |
//! | `builds/{id}` | `app`, `json` | builds; listed by `app` |
//! | `build_logs/{build}` | `last` | the number of the build's last log line |
//! | `build_logs/{build}/chunks/{first line, 20 digits}` | `first`, `last`, `lines` | one append's lines |
//! | `locks/{name}` | `holder`, `expires_at` (ms), `fence` | per-app locks |
//! | `domains/{fqdn}` | `app`, `json` | custom domains: one app each; listed by `app` |
//! | `members/{app}/{user}` (one escaped id) | `app`, `user`, `json` | who may use an app; listed by `app` and by `user` |
//! | `apps/{name}/activity/{at, µs, 20 digits}-{random}` | `at` (µs), `json` | what was done to the app, newest by `at` |
//!
//! # Transactions
//!
//! Every write goes through one read-write transaction (retried when Firestore aborts it for
//! contention), so what SQLite does in one transaction happens here in one: user + email (on
//! creation and on a change of email), an account's deletion with its email, keys and
//! memberships, key replacement, an app's deletion with its builds, logs, releases, domains,
//! members and activity, an activity entry with the purge of the expired ones, release numbering,
//! build transitions (read, check the state, write), log appends (read the counter, write it
//! with the chunks), lock takeover. Creations carry an `exists = false` precondition, updates
//! of records that must be there `exists = true`, so a duplicate is `AlreadyExists` and a
//! vanished record `NotFound` even without a read. Commits are never retried blindly: a create
//! whose answer was lost must not come back as `AlreadyExists`.
//!
//! # Indexes
//!
//! No composite index is needed. Every query is one equality filter (`apps.owner`,
//! `builds.app`, `api_keys.user`, `ssh_keys.id`, `members.app`, `members.user`) or a range and
//! order on one field (`chunks.last`, `releases.version`, `activity.at`), which Firestore's
//! automatic single-field indexes serve; lists without an index order (`apps_of`,
//! `builds_of`, `ssh_keys`, `members_of`, `memberships_of`) are sorted here,
//! since they are read whole anyway. Recommended single-field index exemptions, since these
//! fields are never queried and only cost write throughput: `json` in every collection, and
//! `lines` in `chunks`.
//!
//! # Limits
//!
//! A document holds at most 1 MiB: a record's JSON must fit (an app's config included), and
//! a log append is split into chunks of at most [`CHUNK_LINES`] lines and [`CHUNK_BYTES`]
//! bytes. Deleting an app deletes its builds, their logs and its releases in one commit,
//! which Firestore bounds at 10 MiB of writes: some tens of thousands of documents. Expired
//! activity goes at most [`ACTIVITY_PURGE_BATCH`] entries per new entry (older ones are
//! never shown, and go with later entries).

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use firestore::errors::FirestoreError;
use firestore::{
    FirestoreConsistencySelector, FirestoreDb, FirestoreDbOptions, FirestoreTransaction,
    FirestoreTransactionData, FirestoreTransactionMode, FirestoreTransactionOptions,
    FirestoreWritePrecondition,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::domain::{AppName, BuildId, Email, Fqdn, KeyHash, ReleaseVersion, UserId};
use crate::error::{PortError, PortResult};
use crate::model::{
    Activity, ApiKeyRecord, App, Build, BuildState, CustomDomain, DeployedBy, Member, NewRelease,
    Release, ReleaseStatus, SshKey, User, ACTIVITY_RETENTION_DAYS,
};
use crate::ports::Store;

/// The environment variable that points the client at an emulator (`HOST:PORT`).
pub const EMULATOR_HOST_ENV: &str = "FIRESTORE_EMULATOR_HOST";

/// The database of a project when the URL names none.
pub const DEFAULT_DATABASE: &str = "(default)";

/// At most this many lines go in one log chunk document.
pub const CHUNK_LINES: usize = 500;
/// At most about this many bytes of lines go in one log chunk document (a single longer line
/// gets a chunk of its own).
pub const CHUNK_BYTES: usize = 512 * 1024;
/// At most this many expired activity entries of an app are deleted with each new entry.
pub const ACTIVITY_PURGE_BATCH: u32 = 500;

/// How long one request to Firestore may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a transaction runs before contention is reported as `Unavailable`.
const TRANSACTION_ATTEMPTS: u32 = 10;

const USERS: &str = "users";
const EMAILS: &str = "user_emails";
const SSH_KEYS: &str = "ssh_keys";
const API_KEYS: &str = "api_keys";
const APPS: &str = "apps";
const RELEASES: &str = "releases";
const RELEASE_KEYS: &str = "release_keys";
const BUILDS: &str = "builds";
const LOGS: &str = "build_logs";
const CHUNKS: &str = "chunks";
const LOCKS: &str = "locks";
const DOMAINS: &str = "domains";
const MEMBERS: &str = "members";
const ACTIVITY: &str = "activity";

/// The production store: a Firestore database, `firestore://PROJECT[/DATABASE]`.
///
/// The client connects on first use, so opening never fails for a database that is down;
/// with `FIRESTORE_EMULATOR_HOST` set it talks to that emulator without credentials, else to
/// Firestore with the Application Default Credentials.
pub struct FirestoreStore {
    project: String,
    database: String,
    db: OnceCell<FirestoreDb>,
}

impl FirestoreStore {
    /// A store on `database` (default: `(default)`) of the Google Cloud project `project`.
    pub fn new(project: &str, database: Option<&str>) -> PortResult<Self> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '(' | ')'))
        };
        let database = database.unwrap_or(DEFAULT_DATABASE);
        if !valid(project) || !valid(database) {
            return Err(PortError::Invalid(format!(
                "`{project}/{database}` is not a Firestore project and database \
                 (firestore://PROJECT or firestore://PROJECT/DATABASE)"
            )));
        }
        Ok(Self {
            project: project.to_owned(),
            database: database.to_owned(),
            db: OnceCell::new(),
        })
    }

    /// Opens `firestore://` + `rest`, where `rest` is `PROJECT` or `PROJECT/DATABASE`.
    pub fn from_url_rest(rest: &str) -> PortResult<Self> {
        match rest.trim_end_matches('/').split_once('/') {
            Some((project, database)) => Self::new(project, Some(database)),
            None => Self::new(rest.trim_end_matches('/'), None),
        }
    }

    /// The client, connected on first use.
    async fn db(&self) -> PortResult<&FirestoreDb> {
        self.db
            .get_or_try_init(|| async {
                let emulator = std::env::var(EMULATOR_HOST_ENV).is_ok_and(|h| !h.is_empty());
                if !emulator {
                    // Other features compile a second rustls provider into the same binary;
                    // with two and none chosen, rustls refuses to build the TLS channel. An
                    // error here means one is installed already, which is as good.
                    let _ =
                        firestore_rustls::crypto::aws_lc_rs::default_provider().install_default();
                }
                let options = FirestoreDbOptions::new(self.project.clone())
                    .with_database_id(self.database.clone())
                    .with_request_timeout(REQUEST_TIMEOUT);
                tokio::time::timeout(REQUEST_TIMEOUT, FirestoreDb::with_options(options))
                    .await
                    .map_err(PortError::unavailable)?
                    .map_err(PortError::unavailable)
            })
            .await
    }

    /// Runs `body` in a read-write transaction and commits what it queued, again from the
    /// start when Firestore aborts it for contention. `body` reads through the `FirestoreDb`
    /// it is given (bound to the transaction) and queues writes on the transaction data,
    /// which it hands back with its result.
    async fn transaction<T, F, Fut>(&self, mut body: F) -> PortResult<T>
    where
        F: FnMut(FirestoreDb, FirestoreTransactionData) -> Fut,
        Fut: Future<Output = Result<(T, FirestoreTransactionData), Fail>>,
    {
        let db = self.db().await?;
        let mut options = FirestoreTransactionOptions::new();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tx = db
                .begin_transaction_with_options(options.clone())
                .await
                .map_err(port_err)?;
            let id = tx.transaction_id().clone();
            let reader = db.clone_with_consistency_selector(
                FirestoreConsistencySelector::Transaction(id.clone()),
            );
            let outcome = match body(reader, tx.into_data()).await {
                Ok((value, data)) => FirestoreTransaction::from_data(db, data)
                    .commit()
                    .await
                    .map(|_| value)
                    .map_err(Fail::Firestore),
                Err(fail) => {
                    // Reads hold locks until the transaction ends: end it now.
                    let data = FirestoreTransactionData::new(
                        id.clone(),
                        db.get_documents_path().clone(),
                        tracing::Span::none(),
                        Vec::new(),
                    );
                    if let Err(err) = FirestoreTransaction::from_data(db, data).rollback().await {
                        tracing::debug!(%err, "rolling back a failed transaction");
                    }
                    Err(fail)
                }
            };
            match outcome {
                Ok(value) => return Ok(value),
                Err(Fail::Port(err)) => return Err(err),
                Err(Fail::Firestore(err)) if is_contention(&err) => {
                    if attempt >= TRANSACTION_ATTEMPTS {
                        return Err(PortError::unavailable(err));
                    }
                    tracing::debug!(%err, attempt, "transaction aborted by contention; again");
                    options = FirestoreTransactionOptions::new()
                        .with_mode(FirestoreTransactionMode::ReadWriteRetry(id));
                    // Jittered, so that the transactions that collided do not collide again.
                    let base = 10u64 << attempt.min(6);
                    let pause = base / 2 + rand::random::<u64>() % base;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(Fail::Firestore(err)) => return Err(port_err(err)),
            }
        }
    }

    /// Frees the lock document `id` if `holder` holds it, keeping its fencing token.
    async fn unlock_doc(&self, id: &str, holder: &str) -> PortResult<()> {
        self.transaction(|db, mut tx| async move {
            if let Some(lock) = get::<LockDoc>(&db, None, LOCKS, id).await? {
                if lock.holder == holder && lock.expires_at > 0 {
                    let freed = LockDoc {
                        expires_at: 0,
                        ..lock
                    };
                    put(&db, &mut tx, None, LOCKS, id, &freed, None)?;
                }
            }
            Ok(((), tx))
        })
        .await
    }

    /// Changes a release's record in a transaction.
    async fn update_release(
        &self,
        app: &AppName,
        version: ReleaseVersion,
        change: impl Fn(&mut Release) + Send + Sync,
    ) -> PortResult<()> {
        let id = doc_id(app.as_str());
        let vid = version_id(version.0);
        self.transaction(|db, mut tx| {
            let (id, vid, change) = (&id, &vid, &change);
            async move {
                let parent = parent_of(&db, APPS, id)?;
                let doc: ReleaseDoc = get(&db, Some(&parent), RELEASES, vid)
                    .await?
                    .ok_or(PortError::NotFound)?;
                let mut release: Release = from_json(&doc.json)?;
                change(&mut release);
                let doc = ReleaseDoc {
                    version: doc.version,
                    json: to_json(&release)?,
                };
                put(&db, &mut tx, Some(&parent), RELEASES, vid, &doc, Some(true))?;
                Ok(((), tx))
            }
        })
        .await
    }
}

/// Why a transaction body stopped: an answer for the caller, or a Firestore failure that
/// may be contention (then the transaction runs again).
enum Fail {
    Port(PortError),
    Firestore(FirestoreError),
}

impl From<PortError> for Fail {
    fn from(err: PortError) -> Self {
        Self::Port(err)
    }
}

impl From<FirestoreError> for Fail {
    fn from(err: FirestoreError) -> Self {
        Self::Firestore(err)
    }
}

/// Whether Firestore gave up on the transaction because another one held what it touched.
fn is_contention(err: &FirestoreError) -> bool {
    matches!(err, FirestoreError::DatabaseError(e) if e.public.code == "Aborted")
}

/// The port's meaning of a Firestore failure outside a precondition of ours.
fn port_err(err: FirestoreError) -> PortError {
    match err {
        FirestoreError::DataNotFoundError(_) => PortError::NotFound,
        FirestoreError::DataConflictError(_) => PortError::AlreadyExists,
        FirestoreError::InvalidParametersError(e) => PortError::Invalid(e.public.to_string()),
        other => PortError::unavailable(other),
    }
}

/// A record's key as a document id: `%` and `/` percent-encoded, and ids Firestore reserves
/// (`.`, `..`, `__…__`, empty) prefixed with `%`, which no escaped key starts with otherwise.
fn doc_id(key: &str) -> String {
    let escaped = key.replace('%', "%25").replace('/', "%2F");
    if escaped.is_empty() || escaped == "." || escaped == ".." || escaped.starts_with("__") {
        format!("%{escaped}")
    } else {
        escaped
    }
}

fn to_json<T: Serialize>(value: &T) -> PortResult<String> {
    serde_json::to_string(value).map_err(PortError::unavailable)
}

fn from_json<T: DeserializeOwned>(text: &str) -> PortResult<T> {
    serde_json::from_str(text).map_err(PortError::unavailable)
}

/// Zero-padded so that ids sort like the numbers.
fn version_id(version: u32) -> String {
    format!("{version:010}")
}

fn chunk_id(first: u64) -> String {
    format!("{first:020}")
}

/// The document of `user`'s access to `app`: app names hold no `/`, so the pair is one to one.
fn member_id(app: &AppName, user: &UserId) -> String {
    doc_id(&format!("{}/{}", app.as_str(), user.0))
}

/// A new activity entry's document: its time, then a random part, so that entries of the
/// same instant stay apart.
fn activity_id(at_us: i64) -> String {
    format!("{at_us:020}-{}", uuid::Uuid::new_v4().simple())
}

/// The oldest activity kept, in µs since the epoch.
fn activity_horizon() -> i64 {
    (Utc::now() - chrono::Duration::days(ACTIVITY_RETENTION_DAYS)).timestamp_micros()
}

#[derive(Debug, Serialize, Deserialize)]
struct UserDoc {
    email: String,
    json: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct EmailDoc {
    user: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyDoc {
    user: String,
    expires_at: i64,
    json: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct AppDoc {
    owner: String,
    json: String,
    #[serde(default)]
    latest_release: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct DomainDoc {
    app: String,
    json: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct BuildDoc {
    app: String,
    json: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ReleaseDoc {
    version: u32,
    json: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ReleaseKeyDoc {
    version: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct LogDoc {
    last: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChunkDoc {
    first: u64,
    last: u64,
    lines: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SshKeyDoc {
    id: String,
    json: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct MemberDoc {
    app: String,
    user: String,
    json: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ActivityDoc {
    /// µs since the epoch.
    at: i64,
    json: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct LockDoc {
    holder: String,
    expires_at: i64,
    /// The fencing token (documents written before tokens read as 0).
    #[serde(default)]
    fence: u64,
}

/// Reads one document of `collection` (under `parent`, a document path, if any).
async fn get<T>(
    db: &FirestoreDb,
    parent: Option<&str>,
    collection: &str,
    id: &str,
) -> Result<Option<T>, FirestoreError>
where
    T: DeserializeOwned + Send,
{
    let select = db.fluent().select().by_id_in(collection);
    let select = match parent {
        Some(parent) => select.parent(parent),
        None => select,
    };
    select.obj::<T>().one(id).await
}

/// Every document of `collection` under `parent` whose `field` equals `value`.
async fn find<T>(
    db: &FirestoreDb,
    parent: Option<&str>,
    collection: &str,
    field: &str,
    value: &str,
) -> Result<Vec<(String, T)>, FirestoreError>
where
    T: DeserializeOwned + Send,
{
    let select = db.fluent().select().from(collection);
    let select = match parent {
        Some(parent) => select.parent(parent),
        None => select,
    };
    let docs = select.filter(|q| q.field(field).eq(value)).query().await?;
    with_ids(docs)
}

/// Every document of `collection` under `parent`.
async fn all<T>(
    db: &FirestoreDb,
    parent: &str,
    collection: &str,
) -> Result<Vec<(String, T)>, FirestoreError>
where
    T: DeserializeOwned + Send,
{
    let docs = db
        .fluent()
        .select()
        .from(collection)
        .parent(parent)
        .query()
        .await?;
    with_ids(docs)
}

/// The apps of app documents, by name.
fn apps_by_name(docs: &[(String, AppDoc)]) -> PortResult<Vec<App>> {
    let mut apps = docs
        .iter()
        .map(|(_, doc)| from_json::<App>(&doc.json))
        .collect::<PortResult<Vec<_>>>()?;
    apps.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(apps)
}

/// Documents with their ids (the last segment of their names), decoded.
fn with_ids<T: DeserializeOwned>(
    docs: Vec<firestore::FirestoreDocument>,
) -> Result<Vec<(String, T)>, FirestoreError> {
    docs.iter()
        .map(|doc| {
            let id = doc.name.rsplit('/').next().unwrap_or_default().to_owned();
            Ok((id, FirestoreDb::deserialize_doc_to::<T>(doc)?))
        })
        .collect()
}

/// Queues a write of `doc` as `collection/id` (under `parent`) with a precondition:
/// `Some(false)` creates, `Some(true)` replaces an existing document, `None` sets.
fn put<T: Serialize + DeserializeOwned + Sync + Send>(
    db: &FirestoreDb,
    tx: &mut FirestoreTransactionData,
    parent: Option<&str>,
    collection: &str,
    id: &str,
    doc: &T,
    exists: Option<bool>,
) -> Result<(), FirestoreError> {
    let update = db.fluent().update().in_col(collection);
    let update = match exists {
        Some(exists) => update.precondition(FirestoreWritePrecondition::Exists(exists)),
        None => update,
    };
    let update = update.document_id(id);
    let update = match parent {
        Some(parent) => update.parent(parent),
        None => update,
    };
    update.object(doc).add_to_transaction(tx)?;
    Ok(())
}

/// Queues a deletion of `collection/id` (under `parent`); with `must_exist`, the commit fails
/// with `NotFound` if it is gone.
fn remove(
    db: &FirestoreDb,
    tx: &mut FirestoreTransactionData,
    parent: Option<&str>,
    collection: &str,
    id: &str,
    must_exist: bool,
) -> Result<(), FirestoreError> {
    let delete = db.fluent().delete().from(collection);
    let delete = if must_exist {
        delete.precondition(FirestoreWritePrecondition::Exists(true))
    } else {
        delete
    };
    let delete = match parent {
        Some(parent) => delete.parent(parent),
        None => delete,
    };
    delete.document_id(id).add_to_transaction(tx)?;
    Ok(())
}

/// The path of `collection/id`, as a parent of subcollections.
fn parent_of(db: &FirestoreDb, collection: &str, id: &str) -> Result<String, FirestoreError> {
    Ok(db.parent_path(collection, id)?.into())
}

/// Splits lines into chunks of at most [`CHUNK_LINES`] lines and about [`CHUNK_BYTES`] bytes.
fn chunks(lines: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        if i > start && (i - start >= CHUNK_LINES || bytes + line.len() > CHUNK_BYTES) {
            out.push(&lines[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += line.len();
    }
    if start < lines.len() {
        out.push(&lines[start..]);
    }
    out
}

#[async_trait]
impl Store for FirestoreStore {
    async fn create_user(&self, user: &User) -> PortResult<()> {
        let (id, email) = (doc_id(&user.id.0), doc_id(user.email.as_str()));
        let doc = UserDoc {
            email: user.email.to_string(),
            json: to_json(user)?,
        };
        let link = EmailDoc {
            user: user.id.0.clone(),
        };
        self.transaction(|db, mut tx| {
            let (id, email, doc, link) = (&id, &email, &doc, &link);
            async move {
                put(&db, &mut tx, None, USERS, id, doc, Some(false))?;
                put(&db, &mut tx, None, EMAILS, email, link, Some(false))?;
                Ok(((), tx))
            }
        })
        .await
    }

    async fn user_by_email(&self, email: &Email) -> PortResult<User> {
        let db = self.db().await?;
        let link: EmailDoc = get(db, None, EMAILS, &doc_id(email.as_str()))
            .await
            .map_err(port_err)?
            .ok_or(PortError::NotFound)?;
        self.user(&UserId(link.user)).await
    }

    async fn user(&self, id: &UserId) -> PortResult<User> {
        let db = self.db().await?;
        let doc: UserDoc = get(db, None, USERS, &doc_id(&id.0))
            .await
            .map_err(port_err)?
            .ok_or(PortError::NotFound)?;
        from_json(&doc.json)
    }

    async fn update_user(&self, user: &User) -> PortResult<()> {
        let (id, email) = (doc_id(&user.id.0), user.email.to_string());
        let doc = UserDoc {
            email: email.clone(),
            json: to_json(user)?,
        };
        let link = EmailDoc {
            user: user.id.0.clone(),
        };
        self.transaction(|db, mut tx| {
            let (id, email, doc, link) = (&id, &email, &doc, &link);
            async move {
                let current: UserDoc = get(&db, None, USERS, id)
                    .await?
                    .ok_or(PortError::NotFound)?;
                if &current.email != email {
                    let new_id = doc_id(email);
                    match get::<EmailDoc>(&db, None, EMAILS, &new_id).await? {
                        Some(taken) if taken.user != link.user => {
                            return Err(PortError::AlreadyExists.into());
                        }
                        _ => put(&db, &mut tx, None, EMAILS, &new_id, link, None)?,
                    }
                    let old_id = doc_id(&current.email);
                    let old = get::<EmailDoc>(&db, None, EMAILS, &old_id).await?;
                    if old.is_some_and(|old| old.user == link.user) {
                        remove(&db, &mut tx, None, EMAILS, &old_id, false)?;
                    }
                }
                put(&db, &mut tx, None, USERS, id, doc, Some(true))?;
                Ok(((), tx))
            }
        })
        .await
    }

    async fn delete_user(&self, id: &UserId) -> PortResult<()> {
        let (doc, user) = (doc_id(&id.0), id.0.clone());
        self.transaction(|db, mut tx| {
            let (doc, user) = (&doc, &user);
            async move {
                let current: UserDoc = get(&db, None, USERS, doc)
                    .await?
                    .ok_or(PortError::NotFound)?;
                let parent = parent_of(&db, USERS, doc)?;
                let email = doc_id(&current.email);
                let link = get::<EmailDoc>(&db, None, EMAILS, &email).await?;
                let keys: Vec<(String, KeyDoc)> = find(&db, None, API_KEYS, "user", user).await?;
                let ssh: Vec<(String, SshKeyDoc)> = all(&db, &parent, SSH_KEYS).await?;
                let members: Vec<(String, MemberDoc)> =
                    find(&db, None, MEMBERS, "user", user).await?;
                if link.is_some_and(|link| &link.user == user) {
                    remove(&db, &mut tx, None, EMAILS, &email, false)?;
                }
                for (key, _) in &keys {
                    remove(&db, &mut tx, None, API_KEYS, key, false)?;
                }
                for (key, _) in &ssh {
                    remove(&db, &mut tx, Some(&parent), SSH_KEYS, key, false)?;
                }
                for (member, _) in &members {
                    remove(&db, &mut tx, None, MEMBERS, member, false)?;
                }
                remove(&db, &mut tx, None, USERS, doc, true)?;
                Ok(((), tx))
            }
        })
        .await
    }

    async fn add_api_key(&self, key: &ApiKeyRecord) -> PortResult<()> {
        let id = doc_id(&key.hash.0);
        let doc = KeyDoc {
            user: key.user.0.clone(),
            expires_at: key.expires_at.timestamp_millis(),
            json: to_json(key)?,
        };
        self.transaction(|db, mut tx| {
            let (id, doc) = (&id, &doc);
            async move {
                put(&db, &mut tx, None, API_KEYS, id, doc, Some(false))?;
                Ok(((), tx))
            }
        })
        .await
    }

    async fn replace_api_keys(&self, key: &ApiKeyRecord) -> PortResult<()> {
        let id = doc_id(&key.hash.0);
        let doc = KeyDoc {
            user: key.user.0.clone(),
            expires_at: key.expires_at.timestamp_millis(),
            json: to_json(key)?,
        };
        self.transaction(|db, mut tx| {
            let (id, doc) = (&id, &doc);
            async move {
                let old: Vec<(String, KeyDoc)> =
                    find(&db, None, API_KEYS, "user", &doc.user).await?;
                for (old_id, _) in &old {
                    if old_id != id {
                        remove(&db, &mut tx, None, API_KEYS, old_id, false)?;
                    }
                }
                // Re-issuing a key the account holds already only refreshes it.
                let fresh = !old.iter().any(|(old_id, _)| old_id == id);
                put(
                    &db,
                    &mut tx,
                    None,
                    API_KEYS,
                    id,
                    doc,
                    fresh.then_some(false),
                )?;
                Ok(((), tx))
            }
        })
        .await
    }

    async fn user_by_api_key(&self, hash: &KeyHash, now: DateTime<Utc>) -> PortResult<User> {
        let db = self.db().await?;
        let key: KeyDoc = get(db, None, API_KEYS, &doc_id(&hash.0))
            .await
            .map_err(port_err)?
            .ok_or(PortError::NotFound)?;
        if key.expires_at <= now.timestamp_millis() {
            return Err(PortError::NotFound);
        }
        self.user(&UserId(key.user)).await
    }

    async fn create_app(&self, app: &App) -> PortResult<()> {
        let id = doc_id(app.name.as_str());
        let doc = AppDoc {
            owner: app.owner.0.clone(),
            json: to_json(app)?,
            latest_release: 0,
        };
        self.transaction(|db, mut tx| {
            let (id, doc) = (&id, &doc);
            async move {
                put(&db, &mut tx, None, APPS, id, doc, Some(false))?;
                Ok(((), tx))
            }
        })
        .await
    }

    async fn app(&self, name: &AppName) -> PortResult<App> {
        let db = self.db().await?;
        let doc: AppDoc = get(db, None, APPS, &doc_id(name.as_str()))
            .await
            .map_err(port_err)?
            .ok_or(PortError::NotFound)?;
        from_json(&doc.json)
    }

    async fn update_app(&self, app: &App) -> PortResult<()> {
        let id = doc_id(app.name.as_str());
        let (owner, json) = (app.owner.0.clone(), to_json(app)?);
        self.transaction(|db, mut tx| {
            let (id, owner, json) = (&id, &owner, &json);
            async move {
                // Read for the release counter, which the app's record does not carry.
                let current: AppDoc = get(&db, None, APPS, id).await?.ok_or(PortError::NotFound)?;
                let doc = AppDoc {
                    owner: owner.clone(),
                    json: json.clone(),
                    latest_release: current.latest_release,
                };
                put(&db, &mut tx, None, APPS, id, &doc, Some(true))?;
                Ok(((), tx))
            }
        })
        .await
    }

    async fn apps_of(&self, owner: &UserId) -> PortResult<Vec<App>> {
        let db = self.db().await?;
        let docs: Vec<(String, AppDoc)> = find(db, None, APPS, "owner", &owner.0)
            .await
            .map_err(port_err)?;
        apps_by_name(&docs)
    }

    async fn all_apps(&self) -> PortResult<Vec<App>> {
        let db = self.db().await?;
        let docs: Vec<(String, AppDoc)> = all(db, db.get_documents_path(), APPS)
            .await
            .map_err(port_err)?;
        apps_by_name(&docs)
    }

    async fn delete_app(&self, name: &AppName) -> PortResult<()> {
        let id = doc_id(name.as_str());
        let app = name.to_string();
        self.transaction(|db, mut tx| {
            let (id, app) = (&id, &app);
            async move {
                if get::<AppDoc>(&db, None, APPS, id).await?.is_none() {
                    return Err(PortError::NotFound.into());
                }
                let parent = parent_of(&db, APPS, id)?;
                let releases: Vec<(String, ReleaseDoc)> = all(&db, &parent, RELEASES).await?;
                let keys: Vec<(String, ReleaseKeyDoc)> = all(&db, &parent, RELEASE_KEYS).await?;
                let builds: Vec<(String, BuildDoc)> = find(&db, None, BUILDS, "app", app).await?;
                let mut logs = Vec::new();
                for (build, _) in &builds {
                    let log = parent_of(&db, LOGS, build)?;
                    let chunks: Vec<(String, ChunkDoc)> = all(&db, &log, CHUNKS).await?;
                    logs.push((build, log, chunks));
                }
                for (build, log, chunks) in &logs {
                    for (chunk, _) in chunks {
                        remove(&db, &mut tx, Some(log), CHUNKS, chunk, false)?;
                    }
                    remove(&db, &mut tx, None, LOGS, build, false)?;
                    remove(&db, &mut tx, None, BUILDS, build, false)?;
                }
                for (release, _) in &releases {
                    remove(&db, &mut tx, Some(&parent), RELEASES, release, false)?;
                }
                for (key, _) in &keys {
                    remove(&db, &mut tx, Some(&parent), RELEASE_KEYS, key, false)?;
                }
                let domains: Vec<(String, DomainDoc)> =
                    find(&db, None, DOMAINS, "app", app).await?;
                for (domain, _) in &domains {
                    remove(&db, &mut tx, None, DOMAINS, domain, false)?;
                }
                let members: Vec<(String, MemberDoc)> =
                    find(&db, None, MEMBERS, "app", app).await?;
                for (member, _) in &members {
                    remove(&db, &mut tx, None, MEMBERS, member, false)?;
                }
                let activity: Vec<(String, ActivityDoc)> = all(&db, &parent, ACTIVITY).await?;
                for (entry, _) in &activity {
                    remove(&db, &mut tx, Some(&parent), ACTIVITY, entry, false)?;
                }
                remove(&db, &mut tx, None, APPS, id, true)?;
                Ok(((), tx))
            }
        })
        .await
    }

    async fn put_member(&self, member: &Member) -> PortResult<()> {
        let (app, id) = (
            doc_id(member.app.as_str()),
            member_id(&member.app, &member.user),
        );
        let doc = MemberDoc {
            app: member.app.to_string(),
            user: member.user.0.clone(),
            json: to_json(member)?,
        };
        self.transaction(|db, mut tx| {
            let (app, id, doc) = (&app, &id, &doc);
            async move {
                if get::<AppDoc>(&db, None, APPS, app).await?.is_none() {
                    return Err(PortError::NotFound.into());
                }
                put(&db, &mut tx, None, MEMBERS, id, doc, None)?;
                Ok(((), tx))
            }
        })
        .await
    }

    async fn remove_member(&self, app: &AppName, user: &UserId) -> PortResult<()> {
        let id = member_id(app, user);
        self.transaction(|db, mut tx| {
            let id = &id;
            async move {
                remove(&db, &mut tx, None, MEMBERS, id, true)?;
                Ok(((), tx))
            }
        })
        .await
    }

    async fn members_of(&self, app: &AppName) -> PortResult<Vec<Member>> {
        let db = self.db().await?;
        let mut members = find::<MemberDoc>(db, None, MEMBERS, "app", app.as_str())
            .await
            .map_err(port_err)?
            .into_iter()
            .map(|(_, doc)| from_json::<Member>(&doc.json))
            .collect::<PortResult<Vec<_>>>()?;
        members.sort_by(|a, b| (a.added_at, &a.user).cmp(&(b.added_at, &b.user)));
        Ok(members)
    }

    async fn memberships_of(&self, user: &UserId) -> PortResult<Vec<Member>> {
        let db = self.db().await?;
        let mut members = find::<MemberDoc>(db, None, MEMBERS, "user", &user.0)
            .await
            .map_err(port_err)?
            .into_iter()
            .map(|(_, doc)| from_json::<Member>(&doc.json))
            .collect::<PortResult<Vec<_>>>()?;
        members.sort_by(|a, b| a.app.cmp(&b.app));
        Ok(members)
    }

    async fn add_activity(&self, activity: &Activity) -> PortResult<()> {
        let app = doc_id(activity.app.as_str());
        let at = activity.at.timestamp_micros();
        let horizon = activity_horizon();
        let doc = ActivityDoc {
            at,
            json: to_json(activity)?,
        };
        // One id for every attempt of the transaction.
        let id = activity_id(at);
        self.transaction(|db, mut tx| {
            let (app, doc, id) = (&app, &doc, &id);
            async move {
                let parent = parent_of(&db, APPS, app)?;
                let expired = db
                    .fluent()
                    .select()
                    .from(ACTIVITY)
                    .parent(&parent)
                    .filter(|q| q.field("at").less_than(horizon))
                    .limit(ACTIVITY_PURGE_BATCH)
                    .query()
                    .await?;
                for (entry, _) in with_ids::<ActivityDoc>(expired)? {
                    remove(&db, &mut tx, Some(&parent), ACTIVITY, &entry, false)?;
                }
                // An entry older than the retention is forgotten at once.
                if doc.at >= horizon {
                    put(&db, &mut tx, Some(&parent), ACTIVITY, id, doc, Some(false))?;
                }
                Ok(((), tx))
            }
        })
        .await
    }

    async fn activity_of(&self, app: &AppName, limit: usize) -> PortResult<Vec<Activity>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let db = self.db().await?;
        let parent = parent_of(db, APPS, &doc_id(app.as_str())).map_err(port_err)?;
        let horizon = activity_horizon();
        let docs = db
            .fluent()
            .select()
            .from(ACTIVITY)
            .parent(&parent)
            .filter(|q| q.field("at").greater_than_or_equal(horizon))
            .order(|o| o.fields([o.field("at").descending()]))
            // The client sends the limit as an `i32`.
            .limit(u32::try_from(limit.min(i32::MAX as usize)).unwrap_or(u32::MAX))
            .query()
            .await
            .map_err(port_err)?;
        with_ids::<ActivityDoc>(docs)
            .map_err(port_err)?
            .iter()
            .map(|(_, doc)| from_json(&doc.json))
            .collect()
    }

    async fn create_build(&self, build: &Build) -> PortResult<()> {
        let id = doc_id(&build.id.0);
        let doc = BuildDoc {
            app: build.app.to_string(),
            json: to_json(build)?,
        };
        self.transaction(|db, mut tx| {
            let (id, doc) = (&id, &doc);
            async move {
                put(&db, &mut tx, None, BUILDS, id, doc, Some(false))?;
                Ok(((), tx))
            }
        })
        .await
    }

    async fn build(&self, id: &BuildId) -> PortResult<Build> {
        let db = self.db().await?;
        let doc: BuildDoc = get(db, None, BUILDS, &doc_id(&id.0))
            .await
            .map_err(port_err)?
            .ok_or(PortError::NotFound)?;
        from_json(&doc.json)
    }

    async fn transition_build(
        &self,
        id: &BuildId,
        from: BuildState,
        to: BuildState,
        update: &(dyn for<'b> Fn(&'b mut Build) + Send + Sync),
    ) -> PortResult<Build> {
        let id = doc_id(&id.0);
        self.transaction(|db, mut tx| {
            let id = &id;
            async move {
                let doc: BuildDoc = get(&db, None, BUILDS, id)
                    .await?
                    .ok_or(PortError::NotFound)?;
                let mut build: Build = from_json(&doc.json)?;
                if build.state != from {
                    return Err(PortError::Precondition.into());
                }
                update(&mut build);
                build.state = to;
                build.updated_at = Utc::now();
                build.history.push((to, build.updated_at));
                let doc = BuildDoc {
                    app: doc.app,
                    json: to_json(&build)?,
                };
                put(&db, &mut tx, None, BUILDS, id, &doc, Some(true))?;
                Ok((build, tx))
            }
        })
        .await
    }

    async fn builds_of(&self, app: &AppName) -> PortResult<Vec<Build>> {
        let db = self.db().await?;
        let docs: Vec<(String, BuildDoc)> = find(db, None, BUILDS, "app", app.as_str())
            .await
            .map_err(port_err)?;
        let mut builds = docs
            .iter()
            .map(|(_, doc)| from_json::<Build>(&doc.json))
            .collect::<PortResult<Vec<_>>>()?;
        builds.sort_by(|a, b| (b.created_at, &b.id.0).cmp(&(a.created_at, &a.id.0)));
        Ok(builds)
    }

    async fn append_build_log(&self, build: &BuildId, lines: &[String]) -> PortResult<u64> {
        let id = doc_id(&build.0);
        self.transaction(|db, mut tx| {
            let id = &id;
            async move {
                let last = get::<LogDoc>(&db, None, LOGS, id)
                    .await?
                    .map_or(0, |log| log.last);
                if lines.is_empty() {
                    return Ok((last, tx));
                }
                let parent = parent_of(&db, LOGS, id)?;
                let mut next = last + 1;
                for chunk in chunks(lines) {
                    let doc = ChunkDoc {
                        first: next,
                        last: next + chunk.len() as u64 - 1,
                        lines: chunk.to_vec(),
                    };
                    put(
                        &db,
                        &mut tx,
                        Some(&parent),
                        CHUNKS,
                        &chunk_id(next),
                        &doc,
                        Some(false),
                    )?;
                    next = doc.last + 1;
                }
                let last = next - 1;
                put(&db, &mut tx, None, LOGS, id, &LogDoc { last }, None)?;
                Ok((last, tx))
            }
        })
        .await
    }

    async fn build_log(
        &self,
        build: &BuildId,
        after: u64,
        limit: usize,
    ) -> PortResult<Vec<(u64, String)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let db = self.db().await?;
        let parent = parent_of(db, LOGS, &doc_id(&build.0)).map_err(port_err)?;
        // Every chunk holds one line or more: `limit` chunks hold enough.
        let chunk_limit = u32::try_from(limit).unwrap_or(u32::MAX).min(10_000);
        let docs = db
            .fluent()
            .select()
            .from(CHUNKS)
            .parent(&parent)
            .filter(|q| q.field("last").greater_than(after))
            .order(|o| o.fields([o.field("last").ascending()]))
            .limit(chunk_limit)
            .query()
            .await
            .map_err(port_err)?;
        let mut out = Vec::new();
        for (_, chunk) in with_ids::<ChunkDoc>(docs).map_err(port_err)? {
            let numbered = (chunk.first..).zip(chunk.lines);
            out.extend(numbered.filter(|(n, _)| *n > after));
            if out.len() >= limit {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn create_next_release(
        &self,
        app: &AppName,
        release: &NewRelease,
    ) -> PortResult<Release> {
        let id = doc_id(app.as_str());
        let key = doc_id(&release.idempotency_key);
        self.transaction(|db, mut tx| {
            let (id, key) = (&id, &key);
            async move {
                let mut doc: AppDoc = get(&db, None, APPS, id).await?.ok_or(PortError::NotFound)?;
                let parent = parent_of(&db, APPS, id)?;
                if let Some(same) =
                    get::<ReleaseKeyDoc>(&db, Some(&parent), RELEASE_KEYS, key).await?
                {
                    let stored: ReleaseDoc =
                        get(&db, Some(&parent), RELEASES, &version_id(same.version))
                            .await?
                            .ok_or(PortError::NotFound)?;
                    return Ok((from_json(&stored.json)?, tx));
                }
                let latest = (doc.latest_release > 0).then_some(ReleaseVersion(doc.latest_release));
                let made = Release {
                    app: app.clone(),
                    version: ReleaseVersion(doc.latest_release + 1),
                    rollback_id: latest,
                    spec: release.clone(),
                    status: ReleaseStatus::Pending,
                    deployed_by: None,
                    created_at: Utc::now(),
                };
                let version = made.version.0;
                let stored = ReleaseDoc {
                    version,
                    json: to_json(&made)?,
                };
                let vid = version_id(version);
                put(
                    &db,
                    &mut tx,
                    Some(&parent),
                    RELEASES,
                    &vid,
                    &stored,
                    Some(false),
                )?;
                put(
                    &db,
                    &mut tx,
                    Some(&parent),
                    RELEASE_KEYS,
                    key,
                    &ReleaseKeyDoc { version },
                    Some(false),
                )?;
                doc.latest_release = version;
                put(&db, &mut tx, None, APPS, id, &doc, Some(true))?;
                Ok((made, tx))
            }
        })
        .await
    }

    async fn release(&self, app: &AppName, version: ReleaseVersion) -> PortResult<Release> {
        let db = self.db().await?;
        let parent = parent_of(db, APPS, &doc_id(app.as_str())).map_err(port_err)?;
        let doc: ReleaseDoc = get(db, Some(&parent), RELEASES, &version_id(version.0))
            .await
            .map_err(port_err)?
            .ok_or(PortError::NotFound)?;
        from_json(&doc.json)
    }

    async fn releases(&self, app: &AppName) -> PortResult<Vec<Release>> {
        let db = self.db().await?;
        let parent = parent_of(db, APPS, &doc_id(app.as_str())).map_err(port_err)?;
        let docs = db
            .fluent()
            .select()
            .from(RELEASES)
            .parent(&parent)
            .order(|o| o.fields([o.field("version").descending()]))
            .query()
            .await
            .map_err(port_err)?;
        with_ids::<ReleaseDoc>(docs)
            .map_err(port_err)?
            .iter()
            .map(|(_, doc)| from_json(&doc.json))
            .collect()
    }

    async fn set_release_deployed(
        &self,
        app: &AppName,
        version: ReleaseVersion,
        by: DeployedBy,
    ) -> PortResult<()> {
        self.update_release(app, version, move |r| {
            r.status = ReleaseStatus::Deployed;
            r.deployed_by = Some(by);
        })
        .await
    }

    async fn set_release_status(
        &self,
        app: &AppName,
        version: ReleaseVersion,
        status: ReleaseStatus,
    ) -> PortResult<()> {
        self.update_release(app, version, move |r| r.status = status)
            .await
    }

    async fn add_ssh_key(&self, key: &SshKey) -> PortResult<()> {
        let user = doc_id(&key.user.0);
        let id = doc_id(&key.fingerprint);
        let doc = SshKeyDoc {
            id: key.id.clone(),
            json: to_json(key)?,
        };
        self.transaction(|db, mut tx| {
            let (user, id, doc) = (&user, &id, &doc);
            async move {
                let parent = parent_of(&db, USERS, user)?;
                put(&db, &mut tx, Some(&parent), SSH_KEYS, id, doc, Some(false))?;
                Ok(((), tx))
            }
        })
        .await
    }

    async fn ssh_keys(&self, user: &UserId) -> PortResult<Vec<SshKey>> {
        let db = self.db().await?;
        let parent = parent_of(db, USERS, &doc_id(&user.0)).map_err(port_err)?;
        let docs: Vec<(String, SshKeyDoc)> = all(db, &parent, SSH_KEYS).await.map_err(port_err)?;
        let mut keys = docs
            .iter()
            .map(|(_, doc)| from_json::<SshKey>(&doc.json))
            .collect::<PortResult<Vec<_>>>()?;
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(keys)
    }

    async fn remove_ssh_key(&self, user: &UserId, id: &str) -> PortResult<()> {
        let user = doc_id(&user.0);
        self.transaction(|db, mut tx| {
            let user = &user;
            async move {
                let parent = parent_of(&db, USERS, user)?;
                let found: Vec<(String, SshKeyDoc)> =
                    find(&db, Some(&parent), SSH_KEYS, "id", id).await?;
                let Some((doc, _)) = found.first() else {
                    return Err(PortError::NotFound.into());
                };
                remove(&db, &mut tx, Some(&parent), SSH_KEYS, doc, true)?;
                Ok(((), tx))
            }
        })
        .await
    }

    async fn add_domain(&self, domain: &CustomDomain) -> PortResult<()> {
        let (id, app) = (doc_id(domain.fqdn.as_str()), doc_id(domain.app.as_str()));
        let doc = DomainDoc {
            app: domain.app.to_string(),
            json: to_json(domain)?,
        };
        self.transaction(|db, mut tx| {
            let (id, app, doc) = (&id, &app, &doc);
            async move {
                if get::<AppDoc>(&db, None, APPS, app).await?.is_none() {
                    return Err(PortError::NotFound.into());
                }
                put(&db, &mut tx, None, DOMAINS, id, doc, Some(false))?;
                Ok(((), tx))
            }
        })
        .await
    }

    async fn domains_of(&self, app: &AppName) -> PortResult<Vec<CustomDomain>> {
        let db = self.db().await?;
        let mut domains = find::<DomainDoc>(db, None, DOMAINS, "app", app.as_str())
            .await
            .map_err(port_err)?
            .into_iter()
            .map(|(_, doc)| from_json::<CustomDomain>(&doc.json))
            .collect::<PortResult<Vec<_>>>()?;
        domains.sort_by(|a, b| a.fqdn.cmp(&b.fqdn));
        Ok(domains)
    }

    async fn domain(&self, fqdn: &Fqdn) -> PortResult<CustomDomain> {
        let db = self.db().await?;
        match get::<DomainDoc>(db, None, DOMAINS, &doc_id(fqdn.as_str()))
            .await
            .map_err(port_err)?
        {
            Some(doc) => from_json(&doc.json),
            None => Err(PortError::NotFound),
        }
    }

    async fn remove_domain(&self, app: &AppName, fqdn: &Fqdn) -> PortResult<()> {
        let id = doc_id(fqdn.as_str());
        let app = app.to_string();
        self.transaction(|db, mut tx| {
            let (id, app) = (&id, &app);
            async move {
                match get::<DomainDoc>(&db, None, DOMAINS, id).await? {
                    Some(doc) if &doc.app == app => {
                        remove(&db, &mut tx, None, DOMAINS, id, true)?;
                        Ok(((), tx))
                    }
                    _ => Err(PortError::NotFound.into()),
                }
            }
        })
        .await
    }

    async fn try_lock(&self, name: &str, holder: &str, ttl: Duration) -> PortResult<u64> {
        let id = doc_id(name);
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.transaction(|db, mut tx| {
            let id = &id;
            async move {
                let now = Utc::now().timestamp_millis();
                let fence = match get::<LockDoc>(&db, None, LOCKS, id).await? {
                    Some(lock) if lock.holder != holder && lock.expires_at > now => {
                        return Err(PortError::Precondition.into());
                    }
                    Some(lock) if lock.holder == holder => lock.fence,
                    Some(lock) => lock.fence + 1,
                    None => 1,
                };
                let lock = LockDoc {
                    holder: holder.to_owned(),
                    expires_at: now.saturating_add(ttl_ms),
                    fence,
                };
                put(&db, &mut tx, None, LOCKS, id, &lock, None)?;
                Ok((fence, tx))
            }
        })
        .await
    }

    async fn unlock(&self, name: &str, holder: &str) -> PortResult<()> {
        self.unlock_doc(&doc_id(name), holder).await
    }

    async fn lock_state(&self, name: &str) -> PortResult<Option<crate::ports::LockState>> {
        let db = self.db().await?;
        let now = Utc::now().timestamp_millis();
        Ok(get::<LockDoc>(db, None, LOCKS, &doc_id(name))
            .await
            .map_err(port_err)?
            .filter(|lock| lock.expires_at > now)
            .map(|lock| crate::ports::LockState {
                holder: lock.holder,
                fence: lock.fence,
            }))
    }

    async fn free_locks_of(&self, prefix: &str) -> PortResult<u64> {
        let db = self.db().await?;
        let now = Utc::now().timestamp_millis();
        let held = all::<LockDoc>(db, db.get_documents_path(), LOCKS)
            .await
            .map_err(port_err)?;
        let mut freed = 0;
        for (id, lock) in held {
            if lock.expires_at > now && lock.holder.starts_with(prefix) {
                // by its holder's name: a lock taken over meanwhile stays
                self.unlock_doc(&id, &lock.holder).await?;
                freed += 1;
            }
        }
        Ok(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_valid_document_ids() {
        assert_eq!(doc_id("my-app"), "my-app");
        assert_eq!(doc_id("SHA256:ab/c+d"), "SHA256:ab%2Fc+d");
        assert_eq!(doc_id("100%/x"), "100%25%2Fx");
        assert_eq!(doc_id(""), "%");
        assert_eq!(doc_id(".."), "%..");
        assert_eq!(doc_id("__name__"), "%__name__");
        // Escaping is one to one: different keys never share a document.
        assert_ne!(doc_id("%2F"), doc_id("/"));
        assert_ne!(doc_id("%.."), doc_id(".."));
    }

    #[test]
    fn urls_name_a_project_and_maybe_a_database() {
        let store = FirestoreStore::from_url_rest("my-project").expect("project");
        assert_eq!(
            (store.project.as_str(), store.database.as_str()),
            ("my-project", "(default)")
        );
        let store = FirestoreStore::from_url_rest("my-project/platform").expect("database");
        assert_eq!(store.database, "platform");
        assert!(FirestoreStore::from_url_rest("a/b/c").is_err());
        assert!(FirestoreStore::from_url_rest("/db").is_err());
    }

    #[test]
    fn log_chunks_bound_lines_and_bytes() {
        let many: Vec<String> = (0..1201).map(|i| i.to_string()).collect();
        let sizes: Vec<usize> = chunks(&many).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![500, 500, 201]);
        let big = "x".repeat(CHUNK_BYTES / 2 + 1);
        let wide = vec![big.clone(), big.clone(), big, "tail".into()];
        let sizes: Vec<usize> = chunks(&wide).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![1, 1, 2]);
        assert!(chunks(&[]).is_empty());
    }
}
