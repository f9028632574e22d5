//! The platform's records, behind a narrow, domain-shaped interface.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{AppName, BuildId, Email, Fqdn, KeyHash, ReleaseVersion, UserId};
use crate::error::PortResult;
use crate::model::{
    Activity, ApiKeyRecord, App, Build, BuildState, CustomDomain, DeployedBy, Member, NewRelease,
    Release, ReleaseStatus, SshKey, User,
};

/// Users, API keys, apps, builds, releases and per-app locks.
///
/// Contract (checked by `contract::store`):
/// - Creations are conditional: a second create with the same key is
///   [`PortError::AlreadyExists`](crate::error::PortError::AlreadyExists) and changes
///   nothing. Emails and app names are unique.
/// - Lookups of missing records are `NotFound`.
/// - Writes that change several records (replace keys, delete an app with its builds,
///   releases and domains, next release) are all-or-nothing.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records a new account. `AlreadyExists` if the email is taken.
    async fn create_user(&self, user: &User) -> PortResult<()>;
    /// The account with this email.
    async fn user_by_email(&self, email: &Email) -> PortResult<User>;
    /// The account with this id.
    async fn user(&self, id: &UserId) -> PortResult<User>;

    /// Replaces an account's record (tokens, second factor, password, email, confirmation).
    /// A new email must be free: else `AlreadyExists` and nothing changes. `NotFound` for
    /// an account that is gone.
    async fn update_user(&self, user: &User) -> PortResult<()>;
    /// Removes an account with its API keys, SSH keys and its access to others' apps, in
    /// one step. Its own apps must be gone first (the caller destroys them). `NotFound` for
    /// an account that is gone.
    async fn delete_user(&self, id: &UserId) -> PortResult<()>;

    /// Adds a key to an account, leaving its other keys valid.
    async fn add_api_key(&self, key: &ApiKeyRecord) -> PortResult<()>;
    /// Revokes every key of `key.user` and adds `key`, in one step.
    async fn replace_api_keys(&self, key: &ApiKeyRecord) -> PortResult<()>;
    /// The owner of an unexpired key. `NotFound` for unknown, revoked or expired keys.
    async fn user_by_api_key(&self, hash: &KeyHash, now: DateTime<Utc>) -> PortResult<User>;

    /// Records a new app. `AlreadyExists` if the name is taken, by anyone.
    async fn create_app(&self, app: &App) -> PortResult<()>;
    /// The app with this name, whoever owns it (callers check ownership).
    async fn app(&self, name: &AppName) -> PortResult<App>;
    /// Replaces an app's record (replicas, config, …). `NotFound` if it is gone.
    async fn update_app(&self, app: &App) -> PortResult<()>;
    /// Apps owned by `owner`, by name.
    async fn apps_of(&self, owner: &UserId) -> PortResult<Vec<App>>;
    /// Every app of every owner, by name (the platform's own rounds over all apps: daily
    /// database backups, log drains).
    async fn all_apps(&self) -> PortResult<Vec<App>>;
    /// Deletes the app with its builds, releases, domains, members and activity. `NotFound`
    /// if it is gone.
    async fn delete_app(&self, name: &AppName) -> PortResult<()>;

    /// Gives `member.user` access to `member.app`, or changes their role. `NotFound` if
    /// the app is gone.
    async fn put_member(&self, member: &Member) -> PortResult<()>;
    /// Takes someone's access to an app away. `NotFound` if they had none.
    async fn remove_member(&self, app: &AppName, user: &UserId) -> PortResult<()>;
    /// Who has access to an app besides its owner, oldest first.
    async fn members_of(&self, app: &AppName) -> PortResult<Vec<Member>>;
    /// The apps someone has access to as a member (not as owner), by name.
    async fn memberships_of(&self, user: &UserId) -> PortResult<Vec<Member>>;
    /// The apps someone owns or has access to, by name.
    async fn apps_with_access(&self, user: &UserId) -> PortResult<Vec<App>> {
        let mut apps = self.apps_of(user).await?;
        for member in self.memberships_of(user).await? {
            match self.app(&member.app).await {
                Ok(app) => apps.push(app),
                // Destroyed meanwhile.
                Err(crate::error::PortError::NotFound) => {}
                Err(err) => return Err(err),
            }
        }
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(apps)
    }

    /// Records something done to an app, and forgets what is older than
    /// [`ACTIVITY_RETENTION_DAYS`](crate::model::ACTIVITY_RETENTION_DAYS).
    async fn add_activity(&self, activity: &Activity) -> PortResult<()>;
    /// What was done to an app, newest first, at most `limit` entries, none older than
    /// the retention.
    async fn activity_of(&self, app: &AppName, limit: usize) -> PortResult<Vec<Activity>>;

    /// Records a new build. `AlreadyExists` for a known id.
    async fn create_build(&self, build: &Build) -> PortResult<()>;
    /// The build with this id.
    async fn build(&self, id: &BuildId) -> PortResult<Build>;
    /// Moves a build from `from` to `to` and applies `update` to it, only if it is in
    /// `from`; else `Precondition` and nothing changes. Returns the stored build.
    async fn transition_build(
        &self,
        id: &BuildId,
        from: BuildState,
        to: BuildState,
        update: &(dyn for<'b> Fn(&'b mut Build) + Send + Sync),
    ) -> PortResult<Build>;
    /// The app's builds, newest first.
    async fn builds_of(&self, app: &AppName) -> PortResult<Vec<Build>>;
    /// Appends lines to a build's output log, in order. Returns the number of the last
    /// line (lines are numbered from 1 per build).
    async fn append_build_log(&self, build: &BuildId, lines: &[String]) -> PortResult<u64>;
    /// A counter that moves whenever this store records a build, a build's state or log
    /// lines (of any build), so that whoever follows a build waits on it instead of
    /// polling at an interval. `None` when the store cannot tell (its writers are other
    /// processes): then followers poll.
    fn build_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// Up to `limit` lines of a build's log numbered after `after`, with their numbers.
    async fn build_log(
        &self,
        build: &BuildId,
        after: u64,
        limit: usize,
    ) -> PortResult<Vec<(u64, String)>>;

    /// Records the app's next release in one transaction: version = latest + 1,
    /// `rollback_id` = the latest release's version. Idempotent: if a release with the
    /// same `idempotency_key` exists, returns it unchanged. `NotFound` if the app is gone.
    async fn create_next_release(&self, app: &AppName, release: &NewRelease)
        -> PortResult<Release>;
    /// One release.
    async fn release(&self, app: &AppName, version: ReleaseVersion) -> PortResult<Release>;
    /// The app's releases, newest first.
    async fn releases(&self, app: &AppName) -> PortResult<Vec<Release>>;
    /// Marks a release deployed, and how (one write: whoever sees it deployed sees how).
    async fn set_release_deployed(
        &self,
        app: &AppName,
        version: ReleaseVersion,
        by: DeployedBy,
    ) -> PortResult<()>;
    /// Sets a release's status.
    async fn set_release_status(
        &self,
        app: &AppName,
        version: ReleaseVersion,
        status: ReleaseStatus,
    ) -> PortResult<()>;

    /// Adds an SSH key to its owner's account. `AlreadyExists` if the account has the same
    /// key (same fingerprint) already.
    async fn add_ssh_key(&self, key: &SshKey) -> PortResult<()>;
    /// The account's SSH keys, oldest first.
    async fn ssh_keys(&self, user: &UserId) -> PortResult<Vec<SshKey>>;
    /// Removes one of the account's keys. `NotFound` if it has no such key.
    async fn remove_ssh_key(&self, user: &UserId, id: &str) -> PortResult<()>;

    /// Gives `domain.fqdn` to its app: `AlreadyExists` when any app has it, `NotFound` when
    /// the app is gone.
    async fn add_domain(&self, domain: &CustomDomain) -> PortResult<()>;
    /// The app's custom domains, by name.
    async fn domains_of(&self, app: &AppName) -> PortResult<Vec<CustomDomain>>;
    /// The custom domain `fqdn`, whichever app has it; `NotFound` when none has.
    async fn domain(&self, fqdn: &Fqdn) -> PortResult<CustomDomain>;
    /// Takes `fqdn` from `app`; `NotFound` when the app does not have it.
    async fn remove_domain(&self, app: &AppName, fqdn: &Fqdn) -> PortResult<()>;

    /// Takes the named lock for `holder` for `ttl`, if it is free, expired, or already
    /// held by `holder` (then it is extended). Else `Precondition`. Returns the lock's
    /// fencing token: it grows each time the lock passes to another holder and stays the
    /// same while one holder extends it, so a holder that finds another token has lost the
    /// lock in between.
    async fn try_lock(&self, name: &str, holder: &str, ttl: Duration) -> PortResult<u64>;
    /// Frees the lock if `holder` holds it; otherwise does nothing. Its fencing token is
    /// kept: the next holder's is higher.
    async fn unlock(&self, name: &str, holder: &str) -> PortResult<()>;
    /// Who holds the named lock now (not expired, not freed), with its fencing token.
    async fn lock_state(&self, name: &str) -> PortResult<Option<LockState>>;
    /// Frees every lock held by a holder whose name starts with `prefix` (the work of a
    /// process that died); returns how many it freed.
    async fn free_locks_of(&self, prefix: &str) -> PortResult<u64>;
}

/// A held lock: who holds it and its fencing token (see [`Store::try_lock`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockState {
    /// The holder's name.
    pub holder: String,
    /// The fencing token it holds the lock with.
    pub fence: u64,
}
