//! In-memory [`Builder`] and [`Runtime`] that keep their ports' contracts, for the steps'
//! handler tests: what a test sets up is what they answer, and they record what they were
//! asked. The real adapters (Docker, Kubernetes) are exercised by their own tests. And the
//! records those tests start from ([`seed_app`], [`seed_build`]).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use futures::channel::mpsc::UnboundedSender;
use futures::stream::{self, BoxStream, StreamExt};

use crate::domain::{AppName, BuildId, Fqdn, ReleaseVersion};
use crate::error::{PortError, PortResult};
use crate::ports::blobs::ByteStream;
use crate::ports::builder::{BuildExit, BuildOutput, BuildSpec};
use crate::ports::runtime::{
    DeployOutcome, HotOutcome, PhaseOutcome, ReleaseSpec, Replica, Traffic,
};
use crate::ports::{Builder, Runtime};

/// An account (`ada@example.com`) and its app `name` (one replica of 0.5 GB, FOO=bar), in
/// `store`.
pub async fn seed_app(store: &dyn crate::ports::Store, name: &str) -> crate::model::App {
    use crate::domain::{Email, Secret};
    let owner = crate::model::User {
        confirmed: true,
        ..crate::model::User::new(
            Email::parse("ada@example.com").expect("email"),
            Secret::new("x"),
        )
    };
    store.create_user(&owner).await.expect("user");
    let app = crate::model::App {
        name: AppName::parse(name).expect("name"),
        owner: owner.id,
        created_at: chrono::Utc::now(),
        health: Default::default(),
        webhook_secret: None,
        maintenance: false,
        canary: None,
        databases: Vec::new(),
        drains: Vec::new(),
        erlang_cookie: Secret::new("c"),
        secret_key_base: Secret::new("s"),
        replicas: 1,
        size: 0.5,
        stack: None,
        config: [("FOO".to_owned(), Secret::new("bar"))].into(),
    };
    store.create_app(&app).await.expect("app");
    app
}

/// A build of `app` in `state` (commit `1a2b3c4…`, branch master), in `store`.
pub async fn seed_build(
    store: &dyn crate::ports::Store,
    app: &AppName,
    state: crate::model::BuildState,
) -> BuildId {
    let id = BuildId::random();
    store
        .create_build(&crate::model::Build {
            id: id.clone(),
            app: app.clone(),
            commit: "1a2b3c4d5e6f7081920a1b2c3d4e5f6071829304".into(),
            branch: "master".into(),
            flags: Default::default(),
            state,
            failure: None,
            slug: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            stack: None,
            history: Vec::new(),
            pusher: None,
        })
        .await
        .expect("build");
    id
}

/// A tar holding one file `name` with `data` (what a builder's outputs look like).
pub fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    out.append_data(&mut header, name, data)
        .expect("a tar in memory");
    out.into_inner().expect("a tar in memory")
}

/// A builder whose finished builds hold what the test put there.
#[derive(Default)]
pub struct FakeBuilder {
    outputs: Mutex<HashMap<BuildId, BTreeMap<BuildOutput, Vec<u8>>>>,
    /// The next [`output`](Builder::output) calls fail with this (transient) error.
    failing: Mutex<Option<String>>,
    discarded: Mutex<Vec<BuildId>>,
    runs: Mutex<Vec<BuildId>>,
    /// The next runs fail with this reason (the buildpacks failed).
    failing_runs: Mutex<Option<String>>,
}

impl FakeBuilder {
    /// Makes `build` a finished build that left `tar` as `what`.
    pub fn finished(&self, build: &BuildId, what: BuildOutput, tar: Vec<u8>) {
        self.outputs
            .lock()
            .expect("lock")
            .entry(build.clone())
            .or_default()
            .insert(what, tar);
    }

    /// Makes the builder unreachable (`Some(why)`) or reachable again (`None`).
    pub fn unreachable(&self, why: Option<&str>) {
        *self.failing.lock().expect("lock") = why.map(str::to_owned);
    }

    /// Makes the next runs fail as buildpacks do (`Some(reason)`), or succeed (`None`).
    pub fn runs_fail(&self, reason: Option<&str>) {
        *self.failing_runs.lock().expect("lock") = reason.map(str::to_owned);
    }

    /// The builds discarded so far, in order.
    pub fn discarded(&self) -> Vec<BuildId> {
        self.discarded.lock().expect("lock").clone()
    }

    /// The builds run so far, in order.
    pub fn runs(&self) -> Vec<BuildId> {
        self.runs.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Builder for FakeBuilder {
    async fn run(
        &self,
        spec: &BuildSpec,
        output: UnboundedSender<String>,
    ) -> PortResult<BuildExit> {
        self.runs.lock().expect("lock").push(spec.build.clone());
        let _ = output.unbounded_send("-----> Building (fake)".into());
        if let Some(reason) = self.failing_runs.lock().expect("lock").clone() {
            return Ok(BuildExit::Failed { code: 1, reason });
        }
        // a finished build holds a slug until it is discarded
        self.finished(
            &spec.build,
            BuildOutput::Slug,
            tar_of("slug.tgz", spec.build.to_string().as_bytes()),
        );
        Ok(BuildExit::Succeeded)
    }

    async fn output(&self, build: &BuildId, what: BuildOutput) -> PortResult<ByteStream> {
        if let Some(why) = self.failing.lock().expect("lock").clone() {
            return Err(PortError::unavailable(why));
        }
        let outputs = self.outputs.lock().expect("lock");
        let built = outputs.get(build).ok_or(PortError::NotFound)?;
        // as the engine answers for a path the build did not leave
        let tar = built.get(&what).ok_or(PortError::NotFound)?;
        // in small chunks, as an engine streams it
        let chunks: Vec<PortResult<Bytes>> = tar
            .chunks(4096)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Ok(stream::iter(chunks).boxed())
    }

    async fn stacks(&self) -> PortResult<Vec<crate::stack::StackVersions>> {
        // every stack, with the versions of the newest
        Ok(crate::stack::Stack::ALL
            .into_iter()
            .map(|stack| crate::stack::StackVersions {
                stack,
                otp: "27.3.4".into(),
                elixir: "1.18.3".into(),
                hex: Some("2.1.1".into()),
            })
            .collect())
    }

    async fn discard(&self, build: &BuildId) -> PortResult<()> {
        self.outputs.lock().expect("lock").remove(build);
        self.discarded.lock().expect("lock").push(build.clone());
        Ok(())
    }
}

/// A runtime that runs nothing: each deploy ends as the test said, and is recorded.
pub struct FakeRuntime {
    deploys: Mutex<Vec<ReleaseSpec>>,
    adopted: Mutex<Vec<ReleaseSpec>>,
    outcome: Mutex<PortResult<DeployOutcome>>,
    phases: Mutex<Vec<ReleaseSpec>>,
    phase_outcome: Mutex<PhaseOutcome>,
    live: Mutex<HashMap<AppName, ReleaseVersion>>,
    domains: Mutex<HashMap<AppName, Vec<Fqdn>>>,
    traffic: Mutex<HashMap<AppName, Traffic>>,
    removed: Mutex<Vec<AppName>>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self {
            deploys: Mutex::default(),
            adopted: Mutex::default(),
            outcome: Mutex::new(Ok(DeployOutcome::Healthy)),
            phases: Mutex::default(),
            phase_outcome: Mutex::new(PhaseOutcome::Done {
                output: vec!["release phase (fake)".into()],
            }),
            live: Mutex::default(),
            domains: Mutex::default(),
            traffic: Mutex::default(),
            removed: Mutex::default(),
        }
    }
}

impl FakeRuntime {
    /// The next deploys end with `outcome` (an `Err` as a runtime that cannot be reached).
    pub fn next_deploys(&self, outcome: PortResult<DeployOutcome>) {
        *self.outcome.lock().expect("lock") = outcome;
    }

    /// The next release phases end with `outcome`.
    pub fn next_release_phases(&self, outcome: PhaseOutcome) {
        *self.phase_outcome.lock().expect("lock") = outcome;
    }

    /// Every release phase run, in order.
    pub fn release_phases(&self) -> Vec<ReleaseSpec> {
        self.phases.lock().expect("lock").clone()
    }

    /// Every deploy asked for, in order.
    pub fn deploys(&self) -> Vec<ReleaseSpec> {
        self.deploys.lock().expect("lock").clone()
    }

    /// Every release adopted by the replicas of the one before it, in order.
    pub fn adopted(&self) -> Vec<ReleaseSpec> {
        self.adopted.lock().expect("lock").clone()
    }

    /// The traffic (maintenance, canary) last routed for `app`.
    pub fn traffic(&self, app: &AppName) -> Traffic {
        self.traffic
            .lock()
            .expect("lock")
            .get(app)
            .cloned()
            .unwrap_or_default()
    }

    /// The custom domains last set for `app`.
    pub fn domains(&self, app: &AppName) -> Vec<Fqdn> {
        self.domains
            .lock()
            .expect("lock")
            .get(app)
            .cloned()
            .unwrap_or_default()
    }

    /// The apps removed, in order.
    pub fn removed(&self) -> Vec<AppName> {
        self.removed.lock().expect("lock").clone()
    }

    fn outcome(&self) -> PortResult<DeployOutcome> {
        match &*self.outcome.lock().expect("lock") {
            Ok(o) => Ok(o.clone()),
            Err(err) => Err(PortError::unavailable(err.to_string())),
        }
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn deploy(&self, release: &ReleaseSpec) -> PortResult<DeployOutcome> {
        let outcome = self.outcome();
        if outcome.is_ok() {
            self.deploys.lock().expect("lock").push(release.clone());
        }
        if let Ok(DeployOutcome::Healthy) = outcome {
            self.live
                .lock()
                .expect("lock")
                .insert(release.app.clone(), release.version);
        }
        outcome
    }

    async fn release_phase(&self, release: &ReleaseSpec) -> PortResult<PhaseOutcome> {
        self.outcome()?;
        self.phases.lock().expect("lock").push(release.clone());
        Ok(self.phase_outcome.lock().expect("lock").clone())
    }

    async fn runs(&self, app: &AppName, version: ReleaseVersion) -> PortResult<bool> {
        self.outcome()?;
        Ok(self.live.lock().expect("lock").get(app) == Some(&version))
    }

    async fn endpoints(&self, _app: &AppName) -> PortResult<Vec<SocketAddr>> {
        Ok(Vec::new())
    }

    async fn remove_app(&self, app: &AppName) -> PortResult<()> {
        self.removed.lock().expect("lock").push(app.clone());
        Ok(())
    }

    async fn replicas(&self, _app: &AppName) -> PortResult<Vec<Replica>> {
        Ok(Vec::new())
    }

    async fn logs(
        &self,
        _app: &AppName,
        _tail: usize,
        _follow: bool,
    ) -> PortResult<BoxStream<'static, String>> {
        Ok(stream::empty().boxed())
    }

    async fn scale(&self, release: &ReleaseSpec) -> PortResult<DeployOutcome> {
        self.deploy(release).await
    }

    async fn adopt(&self, release: &ReleaseSpec, from: ReleaseVersion) -> PortResult<bool> {
        self.outcome()?;
        let mut live = self.live.lock().expect("lock");
        if live.get(&release.app) != Some(&from) {
            return Ok(false);
        }
        live.insert(release.app.clone(), release.version);
        self.adopted.lock().expect("lock").push(release.clone());
        Ok(true)
    }

    async fn hot_upgrade(&self, _release: &ReleaseSpec) -> PortResult<HotOutcome> {
        Ok(HotOutcome::NotPossible {
            reason: "the fake runtime does no hot upgrades".into(),
        })
    }

    async fn set_ssh_keys(&self, _app: &AppName, _keys: &[String]) -> PortResult<()> {
        Ok(())
    }

    async fn set_routes(
        &self,
        app: &AppName,
        domains: &[Fqdn],
        traffic: &Traffic,
    ) -> PortResult<()> {
        self.domains
            .lock()
            .expect("lock")
            .insert(app.clone(), domains.to_vec());
        self.traffic
            .lock()
            .expect("lock")
            .insert(app.clone(), traffic.clone());
        Ok(())
    }

    async fn restart(&self, release: &ReleaseSpec) -> PortResult<DeployOutcome> {
        self.deploy(release).await
    }
}
