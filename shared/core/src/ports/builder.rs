//! Running a build: the buildpacks in an isolated container.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::channel::mpsc::UnboundedSender;

use crate::domain::{AppName, BuildId, Secret};
use crate::error::PortResult;
use crate::ports::blobs::ByteStream;
use crate::stack::{Stack, StackVersions};

/// Resource limits of one build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildLimits {
    /// Memory, bytes.
    pub memory_bytes: i64,
    /// CPUs, in billionths.
    pub nano_cpus: i64,
    /// Processes.
    pub pids: i64,
    /// Wall-clock limit; the build is killed after it.
    pub timeout: Duration,
    /// Size cap of the app's build cache: least recently used entries beyond it are evicted.
    pub cache_bytes: u64,
    /// Most output of one build kept (and shown to the pusher); beyond, one line says it was
    /// truncated.
    pub log_bytes: u64,
    /// Disk a build may fill: its own files (`/build`) and its app's cache together, as
    /// their sizes say (a sparse file counts whole); beyond, it is stopped.
    pub disk_bytes: u64,
}

impl Default for BuildLimits {
    /// 2 GiB, 2 CPUs, 1024 processes, 30 minutes, a 1 GiB cache, 16 MiB of output, 8 GiB
    /// of disk.
    fn default() -> Self {
        Self {
            memory_bytes: 2 << 30,
            nano_cpus: 2_000_000_000,
            pids: 1024,
            timeout: Duration::from_secs(30 * 60),
            cache_bytes: 1 << 30,
            log_bytes: 16 << 20,
            disk_bytes: 8 << 30,
        }
    }
}

/// What a build starts from.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// The build (names its container).
    pub build: BuildId,
    /// The app.
    pub app: AppName,
    /// When the app was created (ms since the epoch): what it keeps (its build cache) is
    /// this app's, never that of an earlier, destroyed app of the same name — whichever
    /// builder kept it.
    pub generation: i64,
    /// The stack it builds on: its builder image.
    pub stack: Stack,
    /// Files handed to the build beside the source, as a tar rooted at `/build` (e.g.
    /// `deps/NAME/` git dependencies the platform fetched, `hex/` settings); empty: none.
    pub extra: Bytes,
    /// Tar of the source tree (the pushed commit with its submodules): a local file, read
    /// as a stream.
    pub source: PathBuf,
    /// A tar of the app's build cache kept elsewhere, to seed a builder that has none
    /// (see [`Builder::has_cache`]), a local file; never for a clean build.
    pub cache: Option<PathBuf>,
    /// The slug of the release that runs, a local file, for a hot push (`GIGALIXIR-HOT`):
    /// the buildpacks prepare an upgrade from it.
    pub previous: Option<PathBuf>,
    /// Config vars, given to the buildpacks as an `ENV_DIR`.
    pub env: BTreeMap<String, Secret>,
    /// Ignore the cache (`GIGALIXIR-CLEAN: true`).
    pub clean: bool,
    /// Limits.
    pub limits: BuildLimits,
}

/// How a build ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildExit {
    /// The slug and cache wait in the build's container.
    Succeeded,
    /// The buildpacks failed; `reason` is for people.
    Failed {
        /// Exit code of the build driver.
        code: i64,
        /// What went wrong.
        reason: String,
    },
}

/// What a finished build leaves for the steps after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BuildOutput {
    /// The slug: a tar holding `slug.tgz`.
    Slug,
    /// What the buildpacks say of the slug: a tar holding `slug.json` (process types,
    /// the cache's new entries).
    SlugMeta,
    /// The app's build cache, as a tar.
    Cache,
}

/// Runs builds.
///
/// Contract: `run` is idempotent per build id — if the build's container exists already it
/// is awaited (running) or its result returned (finished), never started twice. The
/// finished build's [`BuildOutput`]s stay readable through `output` until `discard`.
#[async_trait]
pub trait Builder: Send + Sync + 'static {
    /// Runs (or rejoins) the build; output lines go to `output` as they appear.
    async fn run(&self, spec: &BuildSpec, output: UnboundedSender<String>)
        -> PortResult<BuildExit>;
    /// What the finished build left of `what`, as a tar streamed in chunks: the build
    /// wrote it, so the caller caps it while it reads
    /// ([`capped`](crate::ports::blobs::capped)). `NotFound` (from the call) if the build
    /// is gone.
    async fn output(&self, build: &BuildId, what: BuildOutput) -> PortResult<ByteStream>;
    /// Removes what is left of the build. Idempotent.
    async fn discard(&self, build: &BuildId) -> PortResult<()>;
    /// The stacks this builder can build on, with the versions each has.
    async fn stacks(&self) -> PortResult<Vec<StackVersions>> {
        Ok(Vec::new())
    }
    /// Whether this builder keeps a build cache for `app` of `generation` (then builds use
    /// it in place and need no seed).
    async fn has_cache(&self, _app: &AppName, _generation: i64) -> PortResult<bool> {
        Ok(false)
    }
}
