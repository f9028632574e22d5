//! The store suite.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as Days, Utc};

use super::unique;
use crate::domain::{ApiKey, AppName, BuildId, Email, ReleaseVersion, Secret, UserId};
use crate::error::PortError;
use crate::model::{
    Activity, ApiKeyRecord, App, Build, BuildFlags, BuildState, DeployedBy, Member, NewRelease,
    ReleaseStatus, Role, SlugRef, SshKey, TokenPurpose, User, UserToken,
};
use crate::ports::Store;

fn user() -> User {
    User {
        confirmed: true,
        ..User::new(
            Email::parse(&format!("{}@example.com", unique("u"))).expect("email"),
            Secret::new("$argon2id$fake"),
        )
    }
}

fn app(owner: &UserId) -> App {
    App {
        name: AppName::parse(&unique("app")).expect("name"),
        owner: owner.clone(),
        created_at: Utc::now(),
        health: Default::default(),
        webhook_secret: None,
        maintenance: false,
        canary: None,
        databases: Vec::new(),
        drains: Vec::new(),
        erlang_cookie: Secret::new("cookie"),
        secret_key_base: Secret::new("skb"),
        replicas: 1,
        size: 0.5,
        stack: None,
        config: BTreeMap::new(),
    }
}

fn key(user: &UserId, valid_for: Days) -> (ApiKey, ApiKeyRecord) {
    let key = ApiKey::new(unique("key"));
    let now = Utc::now();
    let record = ApiKeyRecord {
        hash: key.hash(),
        user: user.clone(),
        created_at: now,
        expires_at: now + valid_for,
    };
    (key, record)
}

fn build(app: &AppName) -> Build {
    Build {
        id: BuildId::random(),
        app: app.clone(),
        commit: "a".repeat(40),
        branch: "master".into(),
        flags: BuildFlags::default(),
        state: BuildState::Requested,
        failure: None,
        slug: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
        stack: None,
        history: Vec::new(),
        pusher: None,
    }
}

fn new_release(key: &str, summary: &str) -> NewRelease {
    NewRelease {
        rollback_to: None,
        idempotency_key: key.into(),
        slug: SlugRef {
            process_types: None,
            stack: None,
            key: format!("slugs/{key}"),
            sha256: "0".repeat(64),
            size: 1,
        },
        config: [("FOO".to_owned(), Secret::new("bar"))].into(),
        commit: None,
        build: None,
        summary: summary.into(),
    }
}

/// Emails are unique; a duplicate changes nothing.
pub async fn users_are_unique_by_email(store: Arc<dyn Store>) {
    let ada = user();
    store.create_user(&ada).await.expect("create");
    let mut twin = user();
    twin.email = ada.email.clone();
    assert!(matches!(
        store.create_user(&twin).await,
        Err(PortError::AlreadyExists)
    ));
    assert_eq!(
        store.user_by_email(&ada.email).await.expect("by email").id,
        ada.id
    );
    assert_eq!(store.user(&ada.id).await.expect("by id").email, ada.email);
    assert!(matches!(
        store.user(&twin.id).await,
        Err(PortError::NotFound)
    ));
    let nobody = Email::parse("nobody-at-all@example.com").expect("email");
    assert!(matches!(
        store.user_by_email(&nobody).await,
        Err(PortError::NotFound)
    ));
}

/// Several keys live side by side; replacing revokes all; expired keys fail.
pub async fn api_keys_live_revoke_and_expire(store: Arc<dyn Store>) {
    let ada = user();
    store.create_user(&ada).await.expect("create");
    let (k1, r1) = key(&ada.id, Days::days(365));
    let (k2, r2) = key(&ada.id, Days::days(365));
    store.add_api_key(&r1).await.expect("k1");
    store.add_api_key(&r2).await.expect("k2");
    let now = Utc::now();
    for k in [&k1, &k2] {
        assert_eq!(
            store
                .user_by_api_key(&k.hash(), now)
                .await
                .expect("valid")
                .id,
            ada.id
        );
    }
    // Past its expiry a key is unknown.
    let later = now + Days::days(366);
    assert!(matches!(
        store.user_by_api_key(&k1.hash(), later).await,
        Err(PortError::NotFound)
    ));
    let (k3, r3) = key(&ada.id, Days::days(365));
    store.replace_api_keys(&r3).await.expect("replace");
    for k in [&k1, &k2] {
        assert!(matches!(
            store.user_by_api_key(&k.hash(), now).await,
            Err(PortError::NotFound)
        ));
    }
    assert_eq!(
        store.user_by_api_key(&k3.hash(), now).await.expect("k3").id,
        ada.id
    );
    let unknown = ApiKey::new("never-issued");
    assert!(matches!(
        store.user_by_api_key(&unknown.hash(), now).await,
        Err(PortError::NotFound)
    ));
}

/// App names are unique across owners; listing is per owner; delete cascades.
pub async fn apps_are_unique_and_owned(store: Arc<dyn Store>) {
    let (ada, bob) = (user(), user());
    store.create_user(&ada).await.expect("ada");
    store.create_user(&bob).await.expect("bob");
    let mine = app(&ada.id);
    store.create_app(&mine).await.expect("create");
    let mut stolen = app(&bob.id);
    stolen.name = mine.name.clone();
    assert!(matches!(
        store.create_app(&stolen).await,
        Err(PortError::AlreadyExists)
    ));
    assert_eq!(store.app(&mine.name).await.expect("get").owner, ada.id);

    let mut second = app(&ada.id);
    second.name = AppName::parse(&format!("a{}", mine.name.as_str())).expect("name");
    store.create_app(&second).await.expect("second");
    let names: Vec<String> = store
        .apps_of(&ada.id)
        .await
        .expect("list")
        .into_iter()
        .map(|a| a.name.to_string())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), 2);
    assert!(store.apps_of(&bob.id).await.expect("bob's").is_empty());
    // Every owner's apps, by name (the platform's own rounds).
    let mut theirs = app(&bob.id);
    theirs.name = AppName::parse(&format!("b{}", mine.name.as_str())).expect("name");
    store.create_app(&theirs).await.expect("bob's app");
    let every: Vec<AppName> = store
        .all_apps()
        .await
        .expect("all apps")
        .into_iter()
        .map(|a| a.name)
        .collect();
    for name in [&mine.name, &second.name, &theirs.name] {
        assert!(every.contains(name), "{name} missing from {every:?}");
    }
    let mut sorted = every.clone();
    sorted.sort();
    assert_eq!(every, sorted);
    store
        .delete_app(&theirs.name)
        .await
        .expect("delete bob's app");

    let mut changed = mine.clone();
    changed.replicas = 3;
    store.update_app(&changed).await.expect("update");
    assert_eq!(store.app(&mine.name).await.expect("get").replicas, 3);

    store.create_build(&build(&mine.name)).await.expect("build");
    store
        .create_next_release(&mine.name, &new_release("k", "Deploy"))
        .await
        .expect("release");
    store.delete_app(&mine.name).await.expect("delete");
    assert!(matches!(
        store.app(&mine.name).await,
        Err(PortError::NotFound)
    ));
    assert!(store
        .builds_of(&mine.name)
        .await
        .expect("builds")
        .is_empty());
    assert!(store
        .releases(&mine.name)
        .await
        .expect("releases")
        .is_empty());
    assert!(matches!(
        store.delete_app(&mine.name).await,
        Err(PortError::NotFound)
    ));
    assert!(matches!(
        store.update_app(&changed).await,
        Err(PortError::NotFound)
    ));
    // The other app is untouched.
    assert!(store.app(&second.name).await.is_ok());
}

/// Builds change state only from the expected state.
pub async fn builds_move_forward_only(store: Arc<dyn Store>) {
    let ada = user();
    store.create_user(&ada).await.expect("ada");
    let a = app(&ada.id);
    store.create_app(&a).await.expect("app");
    let first = build(&a.name);
    store.create_build(&first).await.expect("create");
    assert!(matches!(
        store.create_build(&first).await,
        Err(PortError::AlreadyExists)
    ));
    let moved = store
        .transition_build(
            &first.id,
            BuildState::Requested,
            BuildState::Building,
            &|_| {},
        )
        .await
        .expect("move");
    assert_eq!(moved.state, BuildState::Building);
    assert_eq!(moved.history.len(), 1);
    assert_eq!(moved.history[0].0, BuildState::Building);
    let again = store
        .transition_build(
            &first.id,
            BuildState::Requested,
            BuildState::Building,
            &|b| b.failure = Some("should not stick".into()),
        )
        .await;
    assert!(matches!(again, Err(PortError::Precondition)));
    let stored = store.build(&first.id).await.expect("get");
    assert_eq!(stored.state, BuildState::Building);
    assert_eq!(stored.failure, None);
    let failed = store
        .transition_build(&first.id, BuildState::Building, BuildState::Failed, &|b| {
            b.failure = Some("compile error".into())
        })
        .await
        .expect("fail");
    assert_eq!(failed.failure.as_deref(), Some("compile error"));

    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = build(&a.name);
    store.create_build(&second).await.expect("second");
    let ids: Vec<BuildId> = store
        .builds_of(&a.name)
        .await
        .expect("list")
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(ids, vec![second.id, first.id]);
    assert!(matches!(
        store.build(&BuildId::random()).await,
        Err(PortError::NotFound)
    ));
}

/// Versions count up per app, remember what they replaced, and a repeated key is a no-op.
pub async fn releases_number_themselves_idempotently(store: Arc<dyn Store>) {
    let ada = user();
    store.create_user(&ada).await.expect("ada");
    let a = app(&ada.id);
    store.create_app(&a).await.expect("app");
    let v1 = store
        .create_next_release(&a.name, &new_release("build-1", "Deploy 1"))
        .await
        .expect("v1");
    assert_eq!(v1.version, ReleaseVersion(1));
    assert_eq!(v1.rollback_id, None);
    assert_eq!(v1.status, ReleaseStatus::Pending);
    assert_eq!(v1.spec.config["FOO"].expose(), "bar");
    let v2 = store
        .create_next_release(&a.name, &new_release("build-2", "Deploy 2"))
        .await
        .expect("v2");
    assert_eq!(v2.version, ReleaseVersion(2));
    assert_eq!(v2.rollback_id, Some(ReleaseVersion(1)));
    let again = store
        .create_next_release(&a.name, &new_release("build-2", "Deploy 2 again"))
        .await
        .expect("same key");
    assert_eq!(again.version, ReleaseVersion(2));
    assert_eq!(again.spec.summary, "Deploy 2");
    let versions: Vec<u32> = store
        .releases(&a.name)
        .await
        .expect("list")
        .iter()
        .map(|r| r.version.0)
        .collect();
    assert_eq!(versions, vec![2, 1]);
    store
        .set_release_status(&a.name, ReleaseVersion(1), ReleaseStatus::Superseded)
        .await
        .expect("status");
    assert_eq!(
        store
            .release(&a.name, ReleaseVersion(1))
            .await
            .expect("v1")
            .status,
        ReleaseStatus::Superseded
    );
    // Deployed, and how, in one write; a status change keeps how it ran.
    assert_eq!(v2.deployed_by, None);
    store
        .set_release_deployed(&a.name, ReleaseVersion(2), DeployedBy::HotUpgrade)
        .await
        .expect("deployed");
    let read = store.release(&a.name, ReleaseVersion(2)).await.expect("v2");
    assert_eq!(
        (read.status, read.deployed_by),
        (ReleaseStatus::Deployed, Some(DeployedBy::HotUpgrade))
    );
    store
        .set_release_status(&a.name, ReleaseVersion(2), ReleaseStatus::Superseded)
        .await
        .expect("status");
    let read = store.release(&a.name, ReleaseVersion(2)).await.expect("v2");
    assert_eq!(read.deployed_by, Some(DeployedBy::HotUpgrade));
    assert!(matches!(
        store
            .set_release_deployed(&a.name, ReleaseVersion(9), DeployedBy::NewReplicas)
            .await,
        Err(PortError::NotFound)
    ));
    let ghost = AppName::parse(&unique("ghost")).expect("name");
    assert!(matches!(
        store
            .create_next_release(&ghost, &new_release("x", "x"))
            .await,
        Err(PortError::NotFound)
    ));
    assert!(matches!(
        store.release(&a.name, ReleaseVersion(9)).await,
        Err(PortError::NotFound)
    ));
}

/// A lock excludes other holders until it is freed or expires; its fencing token grows
/// each time it passes to another holder; a dead process's locks can be freed by prefix.
pub async fn locks_exclude_other_holders(store: Arc<dyn Store>) {
    let name = unique("lock");
    let long = Duration::from_secs(60);
    assert_eq!(store.lock_state(&name).await.expect("state"), None);
    let first = store.try_lock(&name, "a", long).await.expect("a takes it");
    assert_eq!(
        store.lock_state(&name).await.expect("state"),
        Some(crate::ports::LockState {
            holder: "a".into(),
            fence: first
        })
    );
    assert!(matches!(
        store.try_lock(&name, "b", long).await,
        Err(PortError::Precondition)
    ));
    assert_eq!(
        store
            .try_lock(&name, "a", long)
            .await
            .expect("a extends it"),
        first,
        "extending keeps the token"
    );
    store
        .unlock(&name, "b")
        .await
        .expect("b's unlock is a no-op");
    assert!(matches!(
        store.try_lock(&name, "b", long).await,
        Err(PortError::Precondition)
    ));
    store.unlock(&name, "a").await.expect("a frees it");
    assert_eq!(store.lock_state(&name).await.expect("state"), None);
    let second = store
        .try_lock(&name, "b", Duration::from_millis(50))
        .await
        .expect("b takes it");
    assert!(second > first, "{second} after {first}");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(store.lock_state(&name).await.expect("state"), None);
    // a, paused while b held it, comes back: it gets the lock again only with a new token
    let third = store
        .try_lock(&name, "a", long)
        .await
        .expect("expired lock is free");
    assert!(third > second, "{third} after {second}");

    // A process's locks, freed at once by its holders' common prefix; others stay.
    let (mine, theirs) = (unique("lock"), unique("lock"));
    let dead = unique("proc");
    store
        .try_lock(&mine, &format!("{dead}/push-1"), long)
        .await
        .expect("take");
    store
        .try_lock(&theirs, "other/push-2", long)
        .await
        .expect("take");
    assert_eq!(
        store
            .free_locks_of(&format!("{dead}/"))
            .await
            .expect("free"),
        1
    );
    assert_eq!(store.lock_state(&mine).await.expect("state"), None);
    assert!(store.lock_state(&theirs).await.expect("state").is_some());
    store.try_lock(&mine, "c", long).await.expect("free again");
}

/// A custom domain belongs to one app in the whole store, is found by name, and goes with
/// its app.
pub async fn domains_belong_to_one_app(store: Arc<dyn Store>) {
    use crate::domain::Fqdn;
    use crate::model::CustomDomain;
    let ada = user();
    store.create_user(&ada).await.expect("ada");
    let (a, b) = (app(&ada.id), app(&ada.id));
    store.create_app(&a).await.expect("a");
    store.create_app(&b).await.expect("b");
    let name = |n: &str| Fqdn::parse(&format!("{n}.{}.example.com", unique("d"))).expect("fqdn");
    let (www, shop) = (name("www"), name("shop"));
    let of = |app: &App, fqdn: &Fqdn| CustomDomain {
        fqdn: fqdn.clone(),
        app: app.name.clone(),
        created_at: Utc::now(),
    };
    store.add_domain(&of(&a, &www)).await.expect("a takes www");
    store
        .add_domain(&of(&a, &shop))
        .await
        .expect("a takes shop");
    assert!(matches!(
        store.add_domain(&of(&b, &www)).await,
        Err(PortError::AlreadyExists)
    ));
    let gone = app(&ada.id);
    assert!(matches!(
        store.add_domain(&of(&gone, &name("x"))).await,
        Err(PortError::NotFound)
    ));
    let mut names: Vec<Fqdn> = vec![www.clone(), shop.clone()];
    names.sort();
    assert_eq!(
        store
            .domains_of(&a.name)
            .await
            .expect("list")
            .into_iter()
            .map(|d| d.fqdn)
            .collect::<Vec<_>>(),
        names
    );
    assert!(store.domains_of(&b.name).await.expect("list").is_empty());
    assert_eq!(store.domain(&www).await.expect("found").app, a.name);
    assert!(matches!(
        store.remove_domain(&b.name, &www).await,
        Err(PortError::NotFound)
    ));
    store.remove_domain(&a.name, &www).await.expect("removed");
    assert!(matches!(store.domain(&www).await, Err(PortError::NotFound)));
    store
        .add_domain(&of(&b, &www))
        .await
        .expect("b takes it now");
    store.delete_app(&a.name).await.expect("delete a");
    assert!(matches!(
        store.domain(&shop).await,
        Err(PortError::NotFound)
    ));
    assert_eq!(store.domain(&www).await.expect("b's").app, b.name);
}

/// Build output lines are numbered in order and read back from any point.
pub async fn build_logs_append_in_order(store: Arc<dyn Store>) {
    let ada = user();
    store.create_user(&ada).await.expect("ada");
    let a = app(&ada.id);
    store.create_app(&a).await.expect("app");
    // A store that tells of changes to builds tells of each (a follower waits on it).
    let mut changes = store.build_changes();
    let mut moved = |what: &str| {
        if let Some(rx) = changes.as_mut() {
            assert!(rx.has_changed().expect("the store is there"), "{what}");
            rx.borrow_and_update();
        }
    };
    let b = build(&a.name);
    store.create_build(&b).await.expect("build");
    moved("a new build");
    assert!(store
        .build_log(&b.id, 0, 100)
        .await
        .expect("empty")
        .is_empty());
    let lines = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        store
            .append_build_log(&b.id, &lines(&["one", "two"]))
            .await
            .expect("append"),
        2
    );
    assert_eq!(
        store
            .append_build_log(&b.id, &lines(&["three"]))
            .await
            .expect("append"),
        3
    );
    moved("lines appended");
    store
        .transition_build(&b.id, BuildState::Requested, BuildState::Building, &|_| {})
        .await
        .expect("building");
    moved("a build's new state");
    let all = store.build_log(&b.id, 0, 100).await.expect("read");
    assert_eq!(
        all,
        vec![(1, "one".into()), (2, "two".into()), (3, "three".into())]
    );
    assert_eq!(
        store.build_log(&b.id, 2, 100).await.expect("tail"),
        vec![(3, "three".into())]
    );
    assert_eq!(store.build_log(&b.id, 0, 1).await.expect("limit").len(), 1);
    store.delete_app(&a.name).await.expect("delete");
    assert!(store
        .build_log(&b.id, 0, 100)
        .await
        .expect("gone")
        .is_empty());
}

/// SSH keys belong to one account, are unique per account, and can be removed.
pub async fn ssh_keys_are_per_account(store: Arc<dyn Store>) {
    let (ada, bob) = (user(), user());
    store.create_user(&ada).await.expect("ada");
    store.create_user(&bob).await.expect("bob");
    let key = |owner: &User, fp: &str| crate::model::SshKey {
        id: unique("key"),
        user: owner.id.clone(),
        key: format!("ssh-ed25519 AAAA{fp} laptop"),
        fingerprint: format!("SHA256:{fp}"),
        created_at: Utc::now(),
    };
    let first = key(&ada, "one");
    store.add_ssh_key(&first).await.expect("add");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = key(&ada, "two");
    store.add_ssh_key(&second).await.expect("add second");
    assert!(matches!(
        store.add_ssh_key(&key(&ada, "one")).await,
        Err(PortError::AlreadyExists)
    ));
    store
        .add_ssh_key(&key(&bob, "one"))
        .await
        .expect("bob may hold the same key");
    let ids: Vec<String> = store
        .ssh_keys(&ada.id)
        .await
        .expect("list")
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, vec![first.id.clone(), second.id.clone()]);
    assert!(matches!(
        store.remove_ssh_key(&bob.id, &first.id).await,
        Err(PortError::NotFound)
    ));
    store
        .remove_ssh_key(&ada.id, &first.id)
        .await
        .expect("remove");
    assert_eq!(store.ssh_keys(&ada.id).await.expect("list").len(), 1);
    assert_eq!(store.ssh_keys(&bob.id).await.expect("bob's").len(), 1);
}

/// An account's record changes as a whole; a taken email is refused; deleting it takes its
/// keys and memberships along and leaves others alone.
pub async fn users_change_and_leave_with_their_keys(store: Arc<dyn Store>) {
    let ada = user();
    let bob = user();
    store.create_user(&ada).await.expect("ada");
    store.create_user(&bob).await.expect("bob");
    let mut changed = ada.clone();
    changed.confirmed = false;
    changed.tokens.push(UserToken {
        purpose: TokenPurpose::Reset,
        hash: "ab".repeat(32),
        expires_at: Utc::now(),
        failures: 2,
    });
    changed.email = Email::parse(&format!("{}@example.com", unique("moved"))).expect("email");
    store.update_user(&changed).await.expect("update");
    let read = store.user(&ada.id).await.expect("read");
    assert!(!read.confirmed);
    assert_eq!(read.tokens.len(), 1);
    assert_eq!(read.tokens[0].failures, 2);
    assert_eq!(
        store
            .user_by_email(&changed.email)
            .await
            .expect("new email")
            .id,
        ada.id
    );
    assert!(matches!(
        store.user_by_email(&ada.email).await,
        Err(PortError::NotFound)
    ));
    // Bob's email is taken: nothing changes.
    let mut clash = read.clone();
    clash.email = bob.email.clone();
    clash.confirmed = true;
    assert!(matches!(
        store.update_user(&clash).await,
        Err(PortError::AlreadyExists)
    ));
    assert!(!store.user(&ada.id).await.expect("read").confirmed);
    assert_eq!(
        store.user_by_email(&bob.email).await.expect("bob").id,
        bob.id
    );

    let (ada_key, ada_record) = key(&ada.id, Days::days(1));
    let (bob_key, bob_record) = key(&bob.id, Days::days(1));
    store.add_api_key(&ada_record).await.expect("key");
    store.add_api_key(&bob_record).await.expect("key");
    store
        .add_ssh_key(&SshKey {
            id: unique("ssh"),
            user: ada.id.clone(),
            fingerprint: unique("fp"),
            key: "ssh-ed25519 AAAA ada".into(),
            created_at: Utc::now(),
        })
        .await
        .expect("ssh key");
    let app = app(&bob.id);
    store.create_app(&app).await.expect("app");
    store
        .put_member(&Member {
            app: app.name.clone(),
            user: ada.id.clone(),
            role: Role::Collaborator,
            added_at: Utc::now(),
        })
        .await
        .expect("member");
    store.delete_user(&ada.id).await.expect("delete");
    assert!(matches!(
        store.user(&ada.id).await,
        Err(PortError::NotFound)
    ));
    assert!(matches!(
        store.user_by_email(&changed.email).await,
        Err(PortError::NotFound)
    ));
    assert!(matches!(
        store.user_by_api_key(&ada_key.hash(), Utc::now()).await,
        Err(PortError::NotFound)
    ));
    assert!(store.ssh_keys(&ada.id).await.expect("keys").is_empty());
    assert!(store
        .members_of(&app.name)
        .await
        .expect("members")
        .is_empty());
    assert_eq!(
        store
            .user_by_api_key(&bob_key.hash(), Utc::now())
            .await
            .expect("bob's key")
            .id,
        bob.id
    );
    assert!(matches!(
        store.delete_user(&ada.id).await,
        Err(PortError::NotFound)
    ));
    assert!(matches!(
        store.update_user(&changed).await,
        Err(PortError::NotFound)
    ));
    // The email is free again.
    let mut again = user();
    again.email = changed.email.clone();
    store.create_user(&again).await.expect("email free again");
}

/// Members are per app, one role each; activity comes newest first and goes with the app.
pub async fn members_and_activity_belong_to_an_app(store: Arc<dyn Store>) {
    let owner = user();
    let ada = user();
    store.create_user(&owner).await.expect("owner");
    store.create_user(&ada).await.expect("ada");
    let first = app(&owner.id);
    let second = app(&owner.id);
    store.create_app(&first).await.expect("app");
    store.create_app(&second).await.expect("app");
    let member = |app: &App, role| Member {
        app: app.name.clone(),
        user: ada.id.clone(),
        role,
        added_at: Utc::now(),
    };
    store
        .put_member(&member(&first, Role::Viewer))
        .await
        .expect("viewer");
    store
        .put_member(&member(&first, Role::Collaborator))
        .await
        .expect("now collaborator");
    store
        .put_member(&member(&second, Role::Viewer))
        .await
        .expect("viewer");
    let members = store.members_of(&first.name).await.expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].role, Role::Collaborator);
    let mut names: Vec<_> = store
        .memberships_of(&ada.id)
        .await
        .expect("memberships")
        .into_iter()
        .map(|m| m.app)
        .collect();
    names.sort();
    let mut expected = vec![first.name.clone(), second.name.clone()];
    expected.sort();
    assert_eq!(names, expected);
    assert!(store
        .memberships_of(&owner.id)
        .await
        .expect("none")
        .is_empty());
    // An app given to another owner is theirs in every listing.
    let mut given = app(&owner.id);
    store.create_app(&given).await.expect("app");
    given.owner = ada.id.clone();
    store.update_app(&given).await.expect("transfer");
    let owned: Vec<AppName> = store
        .apps_of(&ada.id)
        .await
        .expect("apps")
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(owned, [given.name.clone()]);
    assert!(!store
        .apps_of(&owner.id)
        .await
        .expect("apps")
        .iter()
        .any(|a| a.name == given.name));
    let gone = app(&owner.id);
    assert!(matches!(
        store.put_member(&member(&gone, Role::Viewer)).await,
        Err(PortError::NotFound)
    ));
    store
        .remove_member(&second.name, &ada.id)
        .await
        .expect("remove");
    assert!(matches!(
        store.remove_member(&second.name, &ada.id).await,
        Err(PortError::NotFound)
    ));
    assert!(store
        .members_of(&second.name)
        .await
        .expect("none")
        .is_empty());

    let entry = |app: &App, action: &str, days_ago: i64| Activity {
        app: app.name.clone(),
        at: Utc::now() - Days::days(days_ago),
        actor: owner.email.to_string(),
        action: action.into(),
        detail: String::new(),
    };
    store
        .add_activity(&entry(&first, "ancient", 400))
        .await
        .expect("old");
    for (action, days) in [("push", 3), ("release", 2), ("scale", 1)] {
        store
            .add_activity(&entry(&first, action, days))
            .await
            .expect("activity");
    }
    store
        .add_activity(&entry(&second, "other", 0))
        .await
        .expect("activity");
    let actions: Vec<String> = store
        .activity_of(&first.name, 10)
        .await
        .expect("activity")
        .into_iter()
        .map(|a| a.action)
        .collect();
    assert_eq!(actions, ["scale", "release", "push"]);
    assert_eq!(
        store.activity_of(&first.name, 2).await.expect("two").len(),
        2
    );
    store.delete_app(&first.name).await.expect("delete");
    assert!(store
        .activity_of(&first.name, 10)
        .await
        .expect("gone")
        .is_empty());
    assert!(store
        .memberships_of(&ada.id)
        .await
        .expect("gone")
        .is_empty());
    assert_eq!(
        store
            .activity_of(&second.name, 10)
            .await
            .expect("kept")
            .len(),
        1
    );
}
