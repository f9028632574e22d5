//! The `deploy` function. Trigger: `release-created`. Step: run the release on the runtime
//! (Docker on one machine, Kubernetes in production) with the app's environment; the
//! runtime moves traffic to it once it accepts connections and stops the previous one.
//! On failure the previous release keeps serving. Either way the outcome goes to the
//! build's log (the pusher reads it) and to the release's status.
//! Emits: `deploy-succeeded` or `deploy-failed`.
//!
//! Idempotent: a release that is no longer pending has been deployed (or failed) already;
//! the runtime's deploy is itself idempotent per release. One deploy per app at a time.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use shared::domain::{AppName, BuildId, ReleaseVersion};
use shared::messages::Event;
use shared::model::{App, BuildState, DeployedBy, Release, ReleaseStatus};
use shared::ports::runtime::{DeployOutcome, HotOutcome, PhaseOutcome, ReleaseSpec, Traffic};
use shared::ports::{Blobs, Bus, Runtime, Store};
use shared::push::{emit, required, step_router, unexpected, StepError};
use shared::PortError;

/// The ports and settings the step uses.
#[derive(Clone)]
pub struct StepState {
    /// Apps, releases, builds, logs, locks.
    pub store: Arc<dyn Store>,
    /// Where the outcome goes.
    pub bus: Arc<dyn Bus>,
    /// Runs the releases.
    pub runtime: Arc<dyn Runtime>,
    /// What a destroyed app leaves in the blob store is removed from it.
    pub blobs: Arc<dyn Blobs>,
    /// How long a release may take to accept connections.
    pub boot_timeout: Duration,
    /// Apps answer on `APP.<app_domain>` (`localhost` on one machine): `PHX_HOST`.
    pub app_domain: String,
}

/// The function's router: the push endpoint and a health check.
pub fn router(state: StepState) -> Router {
    step_router(state, |state, event, trace| async move {
        match event {
            Event::ReleaseCreated { app, version, .. } => {
                deploy(&state, &app, version, trace.as_deref()).await
            }
            Event::AppScaled { app } => {
                on_live_release(&state, &app, trace.as_deref(), Change::Scale).await
            }
            Event::RestartRequested { app } => {
                on_live_release(&state, &app, trace.as_deref(), Change::Restart).await
            }
            Event::SshKeysChanged { user, app } => sync_ssh_keys(&state, &user, app).await,
            Event::DomainsChanged { app } => domains_changed(&state, &app).await,
            Event::AppDestroyed { app } => destroyed(&state, &app).await,
            other => Err(unexpected("deploy", &other)),
        }
    })
}

/// Removes everything a destroyed app leaves: its containers (replicas, release phases,
/// builds), network, build cache volume and SSH keys, then — once no push of it holds its
/// lock — its repository, source archives, cache copy and the slugs no other app uses.
/// A pass that found something asks for another (redelivery), so that what a build or
/// upload still running at that moment wrote goes too; the pass that finds nothing frees
/// the app's name.
async fn destroyed(state: &StepState, app: &AppName) -> Result<(), StepError> {
    // Under the deploy lock: a routes sync that read the app just before it went cannot
    // put its canary's share of its hosts back after this.
    let held = take_deploy_lock(state, app).await?;
    let removed = state.runtime.remove_app(app).await;
    held.release().await;
    removed?;
    let push_lock = shared::locks::push_lock(app);
    let holder = shared::locks::holder(&format!("destroy-{}", uuid::Uuid::new_v4()));
    let waited = tokio::time::Instant::now();
    loop {
        match state
            .store
            .try_lock(&push_lock, &holder, Duration::from_secs(300))
            .await
        {
            Ok(_) => break,
            Err(PortError::Precondition) if waited.elapsed() < Duration::from_secs(60) => {
                // a push of the app ends once its build (stopped above) fails
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(PortError::Precondition) => {
                return Err(StepError::Transient(
                    "a push of the destroyed app still runs".into(),
                ))
            }
            Err(err) => return Err(err.into()),
        }
    }
    let removed = shared::cleanup::remove_app_blobs(&*state.blobs, app).await;
    let _ = state.store.unlock(&push_lock, &holder).await;
    let removed = removed?;
    if removed > 0 {
        tracing::info!(app = %app, blobs = removed, "destroyed app's data removed; checking again");
        return Err(StepError::Transient(format!(
            "removed {removed} blobs of the destroyed app; another pass checks that nothing came back"
        )));
    }
    // Nothing came back since the last pass: the name is free again.
    state
        .store
        .unlock(
            &shared::cleanup::destroying_lock(app),
            shared::cleanup::DESTROYING_HOLDER,
        )
        .await?;
    tracing::info!(app = %app, "everything of the destroyed app is gone");
    Ok(())
}

async fn log(state: &StepState, build: Option<&BuildId>, lines: Vec<String>) {
    if let Some(id) = build {
        if let Err(err) = state.store.append_build_log(id, &lines).await {
            tracing::warn!(error = %err, "deploy output lines lost");
        }
    }
}

/// How long a deploy waits for another deploy of the same app.
const LOCK_WAIT: Duration = Duration::from_secs(120);

/// The app's deploy lock, waiting up to [`LOCK_WAIT`] for another deploy to end.
async fn take_deploy_lock(
    state: &StepState,
    app: &AppName,
) -> Result<shared::locks::Held, StepError> {
    let lock = shared::locks::deploy_lock(app);
    let holder = shared::locks::holder(&format!("deploy-{}", uuid::Uuid::new_v4()));
    match shared::locks::Held::take_waiting(&state.store, &lock, &holder, LOCK_WAIT).await {
        Ok(held) => Ok(held),
        Err(PortError::Precondition) => Err(StepError::Transient(
            "another deploy of the app is running".into(),
        )),
        Err(err) => Err(err.into()),
    }
}

/// Deploys one release.
#[tracing::instrument(skip_all, fields(app = %app, version = %version))]
pub async fn deploy(
    state: &StepState,
    app: &AppName,
    version: ReleaseVersion,
    trace: Option<&str>,
) -> Result<(), StepError> {
    let held = take_deploy_lock(state, app).await?;
    let result = deploy_locked(state, app, version, trace, &held).await;
    held.release().await;
    result
}

async fn deploy_locked(
    state: &StepState,
    app: &AppName,
    version: ReleaseVersion,
    trace: Option<&str>,
    held: &shared::locks::Held,
) -> Result<(), StepError> {
    let release = required(state.store.release(app, version).await, "the release")?;
    if release.status != ReleaseStatus::Pending {
        return Ok(());
    }
    if superseded(state, app, &release, trace).await? {
        return Ok(());
    }
    let current = match state.store.app(app).await {
        Ok(a) => a,
        Err(PortError::NotFound) => {
            return Err(StepError::Permanent("the app was destroyed".into()))
        }
        Err(err) => return Err(err.into()),
    };
    if let Some(stop) = stop_if_push_gone(state, &current, &release).await? {
        return Err(stop);
    }
    let build = release.spec.build.clone();
    log(
        state,
        build.as_ref(),
        vec![format!("-----> Deploying {version}")],
    )
    .await;
    // The replicas admit the SSH keys of the owner and collaborators from the first one on.
    let keys = app_ssh_keys(state, &current).await?;
    state.runtime.set_ssh_keys(app, &keys).await?;
    // The domains' ingress is not the release: a refusal there (a host another app's
    // ingress still holds) holds back no deploy; `domains-changed` tries again.
    if let Err(err) = sync_routes(state, app, true).await {
        tracing::warn!(error = %err, "routes not synced; the release deploys without them");
    }
    let spec = spec_of(state, &current, &release, current.replicas.max(1)).await?;
    let started = std::time::Instant::now();
    let (outcome, by) = match in_place(state, &release, &spec, build.as_ref()).await? {
        Some(done) => done,
        None => match release_phase(state, &spec, build.as_ref()).await? {
            Some(failed) => (failed, DeployedBy::NewReplicas),
            None => (state.runtime.deploy(&spec).await?, DeployedBy::NewReplicas),
        },
    };
    // Fenced: a deploy that lost its lock (its process was paused past the lock's life)
    // leaves the records to the deploy that holds it now.
    if held.check().await.is_err() {
        tracing::warn!("this deploy lost the app's deploy lock; its outcome is not recorded");
        return Err(StepError::Permanent(
            "the deploy lost the app's deploy lock to another deploy".into(),
        ));
    }
    // The push may have died while its release deployed (its receiver elsewhere).
    if matches!(outcome, DeployOutcome::Healthy) {
        if let Some(stop) = stop_if_push_gone(state, &current, &release).await? {
            return Err(stop);
        }
    }
    let event = match outcome {
        DeployOutcome::Healthy => {
            // A rollback's predecessor is "rolled back"; any other's is "superseded".
            let replaced = if release.spec.rollback_to.is_some() {
                ReleaseStatus::RolledBack
            } else {
                ReleaseStatus::Superseded
            };
            for older in state.store.releases(app).await? {
                if older.version != version && older.status == ReleaseStatus::Deployed {
                    state
                        .store
                        .set_release_status(app, older.version, replaced)
                        .await?;
                }
            }
            state.store.set_release_deployed(app, version, by).await?;
            if by != DeployedBy::Kept {
                log(
                    state,
                    build.as_ref(),
                    vec![format!(
                        "-----> {version} is up ({} ms to boot and switch traffic)",
                        started.elapsed().as_millis()
                    )],
                )
                .await;
            }
            if let Some(id) = &build {
                move_build(state, id, BuildState::Deployed, None).await?;
            }
            tracing::info!("deployed");
            Event::DeploySucceeded {
                app: app.clone(),
                build,
                version,
            }
        }
        DeployOutcome::Failed { reason, output } => {
            state
                .store
                .set_release_status(app, version, ReleaseStatus::Failed)
                .await?;
            // A hot upgrade that failed changed nothing: the replicas were never stopped.
            let what = if reason.starts_with("the hot upgrade") {
                format!("{version} was not installed: {reason}")
            } else {
                format!("{version} failed to start: {reason}")
            };
            let mut lines = vec![format!(" !     {what}")];
            if !output.is_empty() {
                lines.push(" !     Its last output:".into());
                lines.extend(output.iter().map(|l| format!(" !       {l}")));
            }
            lines.push(" !     The previous release keeps serving.".into());
            log(state, build.as_ref(), lines).await;
            if let Some(id) = &build {
                move_build(state, id, BuildState::Failed, Some(what)).await?;
            }
            tracing::warn!(reason = %reason, "deploy failed");
            Event::DeployFailed {
                app: app.clone(),
                build,
                version,
                reason,
            }
        }
    };
    emit(&*state.bus, &event, trace).await?;
    Ok(())
}

/// Whether a newer release went live before `release` (its announcement came late, or
/// again): deploying it would take the app back, so it is marked superseded instead. Its
/// build counts as deployed when the live release runs the same slug (a config change
/// numbered after the push carried it), else it fails with the reason.
async fn superseded(
    state: &StepState,
    app: &AppName,
    release: &Release,
    trace: Option<&str>,
) -> Result<bool, StepError> {
    let releases = state.store.releases(app).await?;
    let Some(live) = releases
        .iter()
        .filter(|r| r.version > release.version && r.status == ReleaseStatus::Deployed)
        .max_by_key(|r| r.version)
    else {
        return Ok(false);
    };
    let version = release.version;
    state
        .store
        .set_release_status(app, version, ReleaseStatus::Superseded)
        .await?;
    let build = release.spec.build.clone();
    let carried = live.spec.slug.sha256 == release.spec.slug.sha256;
    let event = if carried {
        log(
            state,
            build.as_ref(),
            vec![format!(
                "-----> {version} was superseded by {}, which runs the same slug and is live",
                live.version
            )],
        )
        .await;
        if let Some(id) = &build {
            move_build(state, id, BuildState::Deployed, None).await?;
        }
        Event::DeploySucceeded {
            app: app.clone(),
            build,
            version: live.version,
        }
    } else {
        let reason = format!(
            "{} went live before {version}, which would have taken the app back; push again to deploy this commit",
            live.version
        );
        log(state, build.as_ref(), vec![format!(" !     {reason}")]).await;
        if let Some(id) = &build {
            move_build(state, id, BuildState::Failed, Some(reason.clone())).await?;
        }
        Event::DeployFailed {
            app: app.clone(),
            build,
            version,
            reason,
        }
    };
    tracing::info!(live = %live.version, carried, "release superseded before it went live");
    emit(&*state.bus, &event, trace).await?;
    Ok(true)
}

async fn move_build(
    state: &StepState,
    id: &BuildId,
    to: BuildState,
    failure: Option<String>,
) -> Result<(), StepError> {
    match state
        .store
        .transition_build(id, BuildState::Released, to, &|b| {
            b.failure = failure.clone()
        })
        .await
    {
        Ok(_) | Err(PortError::Precondition) | Err(PortError::NotFound) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// What to do to the live release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Scale,
    Restart,
}

/// Scales or restarts the app's live (last deployed) release; nothing to do without one.
async fn on_live_release(
    state: &StepState,
    app: &AppName,
    _trace: Option<&str>,
    change: Change,
) -> Result<(), StepError> {
    let held = take_deploy_lock(state, app).await?;
    let result = async {
        let current = match state.store.app(app).await {
            Ok(a) => a,
            Err(PortError::NotFound) => return Ok(()),
            Err(err) => return Err(StepError::from(err)),
        };
        let Some(release) = live_release(state, app).await? else {
            return Ok(());
        };
        let spec = spec_of(state, &current, &release, current.replicas).await?;
        let outcome = match change {
            Change::Scale => state.runtime.scale(&spec).await?,
            Change::Restart => state.runtime.restart(&spec).await?,
        };
        match outcome {
            DeployOutcome::Healthy => {
                tracing::info!(app = %app, change = ?change, replicas = current.replicas, "done");
                Ok(())
            }
            DeployOutcome::Failed { reason, .. } => {
                tracing::warn!(app = %app, change = ?change, reason = %reason, "failed");
                Err(StepError::Permanent(reason))
            }
        }
    }
    .await;
    held.release().await;
    result
}

/// The SSH keys an app's replicas admit: its owner's and its collaborators' (not its
/// viewers').
async fn app_ssh_keys(
    state: &StepState,
    app: &shared::model::App,
) -> Result<Vec<String>, StepError> {
    let mut people = vec![app.owner.clone()];
    for member in state.store.members_of(&app.name).await? {
        if member.role == shared::model::Role::Collaborator {
            people.push(member.user);
        }
    }
    let mut keys = Vec::new();
    for person in &people {
        keys.extend(
            state
                .store
                .ssh_keys(person)
                .await?
                .into_iter()
                .map(|k| k.key),
        );
    }
    Ok(keys)
}

/// Gives the replicas of every app the account owns or collaborates on (or of the one
/// app named) their people's current SSH keys.
async fn sync_ssh_keys(
    state: &StepState,
    user: &shared::domain::UserId,
    only: Option<AppName>,
) -> Result<(), StepError> {
    let apps = match only {
        Some(name) => match state.store.app(&name).await {
            Ok(app) => vec![app],
            Err(shared::PortError::NotFound) => Vec::new(),
            Err(err) => return Err(err.into()),
        },
        None => state.store.apps_with_access(user).await?,
    };
    for app in &apps {
        let keys = app_ssh_keys(state, app).await?;
        state.runtime.set_ssh_keys(&app.name, &keys).await?;
    }
    tracing::info!(user = %user, apps = apps.len(), "ssh keys synced");
    Ok(())
}

/// `domains-changed`: under the app's deploy lock (so that two syncs, or a sync and a
/// deploy or a destroy, do not interleave and an older set never lands last), the runtime
/// gets the app's current routes (domains, maintenance, canary); nothing for an app that
/// is gone. A runtime that
/// refuses them (an ingress still holding a host another app gave up) is tried again.
async fn domains_changed(state: &StepState, app: &AppName) -> Result<(), StepError> {
    let held = take_deploy_lock(state, app).await?;
    let result = async {
        match state.store.app(app).await {
            Ok(_) => {}
            Err(PortError::NotFound) => return Ok(()),
            Err(err) => return Err(err.into()),
        }
        sync_routes(state, app, false)
            .await
            .map_err(|err| match err {
                StepError::Permanent(why) => StepError::Transient(why),
                transient => transient,
            })
    }
    .await;
    held.release().await;
    result
}

/// Where `app`'s requests go besides its replicas: its maintenance mode, its canary while
/// that is another app of the same owner (one that was destroyed or given away gets
/// nothing, as the router does it), and the owner's apps it is the canary of.
async fn traffic_of(state: &StepState, app: &App) -> Result<Traffic, StepError> {
    let canary = match &app.canary {
        Some(c) => match state.store.app(&c.app).await {
            Ok(canary) if canary.owner == app.owner && canary.name != app.name => Some(c.clone()),
            Ok(_) | Err(PortError::NotFound) => None,
            Err(err) => return Err(err.into()),
        },
        None => None,
    };
    let mut serves: Vec<AppName> = state
        .store
        .apps_of(&app.owner)
        .await?
        .into_iter()
        .filter(|other| {
            other.name != app.name && other.canary.as_ref().is_some_and(|c| c.app == app.name)
        })
        .map(|other| other.name)
        .collect();
    serves.sort();
    Ok(Traffic {
        maintenance: app.maintenance,
        canary,
        serves,
    })
}

/// Gives the runtime the app's current routes: its custom domains and its traffic (a
/// destroyed app has none). At a deploy (`dependents`), then announces the routes of the
/// owner's apps that have this one as their canary: a canary deployed for the first time
/// has only now the namespace their share of requests goes to. (Only at a deploy: two
/// apps each other's canary would otherwise announce each other without end.)
async fn sync_routes(state: &StepState, app: &AppName, dependents: bool) -> Result<(), StepError> {
    let mut domains: Vec<_> = state
        .store
        .domains_of(app)
        .await?
        .into_iter()
        .map(|d| d.fqdn)
        .collect();
    domains.sort();
    let record = match state.store.app(app).await {
        Ok(record) => Some(record),
        Err(PortError::NotFound) => None,
        Err(err) => return Err(err.into()),
    };
    let traffic = match &record {
        Some(record) => traffic_of(state, record).await?,
        None => Traffic::default(),
    };
    state.runtime.set_routes(app, &domains, &traffic).await?;
    tracing::info!(
        app = %app,
        domains = domains.len(),
        maintenance = traffic.maintenance,
        canary = traffic.canary.is_some(),
        "routes synced"
    );
    if dependents {
        for other in &traffic.serves {
            let event = Event::DomainsChanged { app: other.clone() };
            emit(&*state.bus, &event, None).await?;
        }
    }
    Ok(())
}

/// What the runtime needs to run `release` of the app `current` with `replicas`.
async fn spec_of(
    state: &StepState,
    current: &App,
    release: &Release,
    replicas: u32,
) -> Result<ReleaseSpec, StepError> {
    let mut spec = ReleaseSpec::of(
        current,
        release,
        &state.app_domain,
        replicas,
        boot_timeout(state, current),
    );
    spec.traffic = traffic_of(state, current).await?;
    Ok(spec)
}

/// A release whose `git push` died with its platform is not deployed: it is marked failed
/// (the build too, with [`PUSH_INTERRUPTED`](shared::push::PUSH_INTERRUPTED)), and traffic
/// goes back to the live release if the interrupted deploy had moved it (its replicas are
/// removed as orphans). `Some(error)` when that happened.
async fn stop_if_push_gone(
    state: &StepState,
    current: &App,
    release: &Release,
) -> Result<Option<StepError>, StepError> {
    let Some(id) = &release.spec.build else {
        return Ok(None);
    };
    let build = match state.store.build(id).await {
        Ok(b) => b,
        Err(PortError::NotFound) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    let Err(stop) =
        shared::push::stop_if_push_gone(&*state.store, &build, BuildState::Released).await
    else {
        return Ok(None);
    };
    state
        .store
        .set_release_status(&current.name, release.version, ReleaseStatus::Failed)
        .await?;
    if let Some(live) = live_release(state, &current.name).await? {
        // Its replicas still run (then this only points traffic at them again), unless
        // the interrupted deploy had already replaced them.
        let spec = spec_of(state, current, &live, current.replicas.max(1)).await?;
        if let DeployOutcome::Failed { reason, .. } = state.runtime.deploy(&spec).await? {
            tracing::warn!(app = %current.name, %reason, "the live release could not be brought back");
        }
    }
    Ok(Some(stop))
}

/// Runs the release phase (the Procfile's `release:` command) of a release whose slug has
/// one, once: not again for a redelivered deploy of a release already running. Its output
/// goes to the pusher; `Some` is the failed deploy it makes.
async fn release_phase(
    state: &StepState,
    spec: &ReleaseSpec,
    build: Option<&BuildId>,
) -> Result<Option<DeployOutcome>, StepError> {
    if !spec.slug.has_release_phase() || state.runtime.runs(&spec.app, spec.version).await? {
        return Ok(None);
    }
    log(
        state,
        build,
        vec!["-----> Running the release phase (the Procfile's release: command)".into()],
    )
    .await;
    let started = std::time::Instant::now();
    match state.runtime.release_phase(spec).await? {
        PhaseOutcome::Done { output } => {
            let mut lines: Vec<String> = output.iter().map(|l| format!("       {l}")).collect();
            lines.push(format!(
                "-----> Release phase done in {:.1}s",
                started.elapsed().as_secs_f64()
            ));
            log(state, build, lines).await;
            Ok(None)
        }
        PhaseOutcome::Failed { reason, output } => {
            Ok(Some(DeployOutcome::Failed { reason, output }))
        }
    }
}

/// The release of `app` that runs (deployed), if one does.
async fn live_release(state: &StepState, app: &AppName) -> Result<Option<Release>, StepError> {
    Ok(state
        .store
        .releases(app)
        .await?
        .into_iter()
        .find(|r| r.status == ReleaseStatus::Deployed))
}

/// The app's boot timeout, else the platform's.
fn boot_timeout(state: &StepState, app: &App) -> Duration {
    app.health
        .boot_timeout_secs
        .map_or(state.boot_timeout, |s| Duration::from_secs(s.into()))
}

/// A release that goes live in the running replicas, without new ones: a push marked
/// `GIGALIXIR-HOT: true` (a hot upgrade), or a rollback from a release a hot upgrade
/// installed whose appups say how to go back (a hot downgrade). `None` means deploy
/// normally (not asked for, or not possible — the push output says why).
async fn in_place(
    state: &StepState,
    release: &Release,
    spec: &ReleaseSpec,
    build: Option<&BuildId>,
) -> Result<Option<(DeployOutcome, DeployedBy)>, StepError> {
    if let Some(kept) = keep_running(state, release, spec, build).await? {
        return Ok(Some(kept));
    }
    if release.spec.rollback_to.is_some() {
        return hot_downgrade(state, release, spec).await;
    }
    Ok(hot_upgrade(state, release, spec, build)
        .await?
        .map(|outcome| (outcome, DeployedBy::HotUpgrade)))
}

/// A release whose slug and config are the live release's (a push that changed nothing a
/// build reads, a rollback to the same code and config): the running replicas carry on as
/// its replicas, with nothing restarted and no release phase (it ran for that slug).
async fn keep_running(
    state: &StepState,
    release: &Release,
    spec: &ReleaseSpec,
    build: Option<&BuildId>,
) -> Result<Option<(DeployOutcome, DeployedBy)>, StepError> {
    let Some(running) = live_release(state, &release.app).await? else {
        return Ok(None);
    };
    if running.version == release.version
        || running.spec.slug.sha256 != release.spec.slug.sha256
        || running.spec.config != release.spec.config
        || !state.runtime.adopt(spec, running.version).await?
    {
        return Ok(None);
    }
    log(
        state,
        build,
        vec![format!(
            "-----> The replicas of {} carry on as {} (the same slug and config): no restart",
            running.version, release.version
        )],
    )
    .await;
    Ok(Some((DeployOutcome::Healthy, DeployedBy::Kept)))
}

/// A rollback from a release that a hot upgrade installed: the replicas go back in place
/// when the running release's appups give downgrade instructions to the rollback's; else
/// (or if that fails) `None`, a normal deploy. The release records which happened.
async fn hot_downgrade(
    state: &StepState,
    release: &Release,
    spec: &ReleaseSpec,
) -> Result<Option<(DeployOutcome, DeployedBy)>, StepError> {
    let running = live_release(state, &release.app).await?;
    let Some(running) = running.filter(|r| r.deployed_by == Some(DeployedBy::HotUpgrade)) else {
        return Ok(None);
    };
    // A node keeps the environment it started with: another config needs new replicas.
    if running.spec.slug.stack() != release.spec.slug.stack()
        || running.spec.config != release.spec.config
    {
        return Ok(None);
    }
    match state.runtime.hot_upgrade(spec).await? {
        HotOutcome::Upgraded { .. } => {
            tracing::info!(from = %running.version, "hot downgrade");
            Ok(Some((DeployOutcome::Healthy, DeployedBy::HotDowngrade)))
        }
        HotOutcome::NotPossible { reason } => {
            tracing::info!(from = %running.version, %reason, "no hot downgrade; the rollback restarts the app");
            Ok(None)
        }
        HotOutcome::Failed { reason, .. } => {
            tracing::warn!(from = %running.version, %reason, "the hot downgrade failed; the rollback restarts the app");
            Ok(None)
        }
    }
}

/// For a push marked `GIGALIXIR-HOT: true` while a release runs: loads the new code into
/// the running replicas. `None` means deploy normally (not asked for, or not possible —
/// the push output says why).
async fn hot_upgrade(
    state: &StepState,
    release: &Release,
    spec: &ReleaseSpec,
    build: Option<&BuildId>,
) -> Result<Option<DeployOutcome>, StepError> {
    let Some(id) = build else { return Ok(None) };
    let hot = match state.store.build(id).await {
        Ok(b) => b.flags.hot,
        Err(PortError::NotFound) => false,
        Err(err) => return Err(err.into()),
    };
    if !hot {
        return Ok(None);
    }
    let Some(running) = live_release(state, &release.app).await? else {
        log(state, build, vec!["-----> Hot upgrade not possible: nothing runs yet (first deploy); deploying normally".into()]).await;
        return Ok(None);
    };
    // A release's code only loads into a node of the same Erlang/OTP and Elixir.
    let (from, to) = (running.spec.slug.stack(), release.spec.slug.stack());
    if from != to {
        log(state, build, vec![format!(
            "-----> Hot upgrade not possible: {} runs on stack {from} and this release is built on {to} (another Erlang/OTP and Elixir); deploying normally",
            running.version
        )]).await;
        return Ok(None);
    }
    // A node keeps the environment it started with.
    if running.spec.config != release.spec.config {
        log(state, build, vec![format!(
            "-----> Hot upgrade not possible: the config changed since {} (a running node keeps the environment it started with); deploying normally",
            running.version
        )]).await;
        return Ok(None);
    }
    log(
        state,
        build,
        vec![format!("-----> Hot upgrade to {}", release.version)],
    )
    .await;
    match state.runtime.hot_upgrade(spec).await? {
        HotOutcome::Upgraded { output } => {
            log(
                state,
                build,
                output.into_iter().map(|l| format!("       {l}")).collect(),
            )
            .await;
            Ok(Some(DeployOutcome::Healthy))
        }
        HotOutcome::Failed { reason, output } => {
            // Replicas the upgrade changed before it failed go back to the running
            // release (new replicas of it); the others are left as they are.
            let app = required(state.store.app(&release.app).await, "the app")?;
            let live = spec_of(state, &app, &running, spec.replicas).await?;
            if let DeployOutcome::Failed { reason, .. } = state.runtime.deploy(&live).await? {
                tracing::warn!(%reason, "the replicas a failed hot upgrade changed could not be replaced");
            }
            Ok(Some(DeployOutcome::Failed { reason, output }))
        }
        HotOutcome::NotPossible { reason } => {
            log(
                state,
                build,
                vec![format!("-----> {reason}; deploying normally")],
            )
            .await;
            Ok(None)
        }
    }
}
