//! [`Builder`] on the Docker engine: one container per build, from its stack's builder
//! image, unprivileged, without network, with resource and time limits. The one way out of
//! a build is the platform's package cache: its socket directory is mounted read-only at
//! `/run/gigalixir/packages`, and the build driver forwards a loopback port to it.

use async_trait::async_trait;
use bollard::models::{ContainerCreateBody, HostConfig, VolumeCreateOptions};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use futures::channel::mpsc::UnboundedSender;
use futures::{StreamExt, TryStreamExt};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{labels, map_err, LineSplitter, LABEL_APP, LABEL_BUILD, LABEL_INSTANCE, LABEL_WARM};
use crate::archive::copy_tar;
use crate::domain::{AppName, BuildId};
use crate::error::{PortError, PortResult};
use crate::ports::builder::{BuildExit, BuildSpec, Builder};
use crate::stack::{Stack, StackVersions};

/// Where a build sees the package cache's socket directory.
pub const PACKAGES_MOUNT: &str = "/run/gigalixir/packages";

/// The uid/gid of the `build` user of the builder image; uploaded files belong to it.
const BUILD_UID: u64 = 1000;

/// Builds in containers of `gigalixir-builder:<stack>`.
#[derive(Clone)]
pub struct DockerBuilder {
    docker: Docker,
    instance: String,
    packages: Option<PathBuf>,
    warm: bool,
}

impl DockerBuilder {
    /// A builder whose containers carry `gigalixir.instance=<instance>`.
    pub fn new(docker: Docker, instance: impl Into<String>) -> Self {
        Self {
            docker,
            instance: instance.into(),
            packages: None,
            warm: true,
        }
    }

    /// Whether builds run in warm builders (the default): a build container stays up
    /// after its build, idle, and the app's next build runs in it (`docker exec`), without
    /// a container to create and start. `false`: one container per build, its process the
    /// build driver.
    pub fn with_warm(mut self, warm: bool) -> Self {
        self.warm = warm;
        self
    }

    /// Builds reach the package cache through the sockets in `dir` (on the engine's host),
    /// mounted read-only at [`PACKAGES_MOUNT`]; without it, builds have no way out at all.
    pub fn with_packages_dir(mut self, dir: PathBuf) -> Self {
        self.packages = Some(dir);
        self
    }

    /// What a stack's builder image says it has; `None` when the image is missing.
    async fn stack_of(&self, stack: Stack) -> PortResult<Option<StackVersions>> {
        let image = match self.docker.inspect_image(&stack.builder_image()).await {
            Ok(image) => image,
            Err(err) => {
                return match map_err(err) {
                    PortError::NotFound => Ok(None),
                    other => Err(other),
                }
            }
        };
        let labels = image.config.and_then(|c| c.labels).unwrap_or_default();
        let label = |k: &str| labels.get(&format!("gigalixir.{k}")).cloned();
        let (Some(otp), Some(elixir)) = (label("otp"), label("elixir")) else {
            return Ok(None);
        };
        Ok(Some(StackVersions {
            stack,
            otp,
            elixir,
            hex: label("hex"),
        }))
    }

    fn name(build: &BuildId) -> String {
        format!("gx-build-{build}")
    }

    /// The app's build cache: a volume mounted at `/build/cache`, which the buildpacks
    /// build into directly, so nothing is copied in or out of a build to keep it.
    /// The cache volume of `app` created at `generation`: a later app of the same name
    /// (another owner, after a destroy) never finds this one's, even on a builder the
    /// destroy did not reach.
    fn cache_volume(&self, app: &AppName, generation: i64) -> String {
        format!("gx-cache-{}-{app}-{generation}", self.instance)
    }

    async fn ensure_cache_volume(&self, app: &AppName, generation: i64) -> PortResult<String> {
        let name = self.cache_volume(app, generation);
        let body = VolumeCreateOptions {
            name: Some(name.clone()),
            labels: Some(labels(&[
                (LABEL_INSTANCE, &self.instance),
                (LABEL_APP, app.as_str()),
            ])),
            ..Default::default()
        };
        self.docker.create_volume(body).await.map_err(map_err)?;
        Ok(name)
    }

    /// Bytes in the volume `volume`, when its directory is readable here.
    async fn volume_size(&self, volume: &str) -> Option<u64> {
        let dir = PathBuf::from(self.docker.inspect_volume(volume).await.ok()?.mountpoint);
        if !dir.is_dir() {
            return None;
        }
        tokio::task::spawn_blocking(move || crate::gitfetch::dir_size(&dir))
            .await
            .ok()
    }

    /// `spec`, or a clean one when the app's cache alone fills the disk a build may use (an
    /// earlier build stopped for it: it would stop every later one), and the name of the
    /// app's cache volume.
    async fn checked(
        &self,
        spec: &BuildSpec,
        output: &UnboundedSender<String>,
    ) -> PortResult<(BuildSpec, String)> {
        // A new volume takes the image's empty /build/cache, owned by the build user.
        let cache = self.ensure_cache_volume(&spec.app, spec.generation).await?;
        if !spec.clean
            && self
                .volume_size(&cache)
                .await
                .is_some_and(|size| size > spec.limits.disk_bytes)
        {
            let _ = output.unbounded_send(format!(
                "-----> The build cache is larger than the {} MB a build may fill: starting from an empty cache",
                spec.limits.disk_bytes >> 20
            ));
            let cleaned = BuildSpec {
                clean: true,
                ..spec.clone()
            };
            return Ok((cleaned, cache));
        }
        Ok((spec.clone(), cache))
    }

    /// What the build driver is told of this build (its environment); `warm`: its builder
    /// stays for the app's next build (the buildpack may leave a Mix running for it).
    fn driver_env(&self, spec: &BuildSpec, warm: bool) -> Vec<String> {
        let mut env = vec![
            format!("GIGALIXIR_CLEAN={}", spec.clean),
            format!("GIGALIXIR_CACHE_LIMIT_BYTES={}", spec.limits.cache_bytes),
        ];
        if warm {
            env.push("GIGALIXIR_WARM=true".into());
            env.push("GIGALIXIR_INPUTS=stdin".into());
        }
        if spec.previous.is_some() {
            env.push(format!("GIGALIXIR_PREVIOUS_SLUG=/build/{PREVIOUS_SLUG}"));
        }
        if self.packages.is_some() {
            env.push(format!("GIGALIXIR_PACKAGES={PACKAGES_MOUNT}"));
        }
        env
    }

    /// What a warm builder is made for: a kept one is used only for builds it fits.
    fn fingerprint(&self, spec: &BuildSpec, cache: &str) -> String {
        use sha2::Digest;
        let l = &spec.limits;
        // (`emptied-when-idle`: builders left idle by a platform that emptied them only
        // when it claimed them do not fit)
        let what = format!(
            "emptied-when-idle|{}|{cache}|{}|{}|{}|{}|{:?}",
            spec.stack.builder_image(),
            l.memory_bytes,
            l.nano_cpus,
            l.pids,
            l.disk_bytes,
            self.packages
        );
        hex::encode(&sha2::Sha256::digest(what.as_bytes())[..8])
    }

    /// The container of a build of `spec`: the driver as its process (`warm: None`), or a
    /// warm builder (`Some(fingerprint)`) that idles until a build runs in it.
    fn body(&self, spec: &BuildSpec, cache: &str, warm: Option<&str>) -> ContainerCreateBody {
        let build = spec.build.to_string();
        let app = spec.app.to_string();
        let image = spec.stack.builder_image();
        let mut binds = vec![format!("{cache}:/build/cache")];
        if let Some(dir) = &self.packages {
            binds.push(format!("{}:{PACKAGES_MOUNT}:ro", dir.display()));
        }
        let mut pairs = vec![(LABEL_INSTANCE, self.instance.as_str()), (LABEL_APP, &app)];
        let (cmd, env) = match warm {
            Some(fingerprint) => {
                pairs.push((LABEL_WARM, fingerprint));
                (
                    vec!["bash".into(), "-c".into(), WARM_IDLE.into()],
                    Vec::new(),
                )
            }
            None => {
                pairs.push((LABEL_BUILD, &build));
                (
                    vec!["/usr/local/bin/gigalixir-build".into()],
                    self.driver_env(spec, false),
                )
            }
        };
        let labels = labels(&pairs);
        ContainerCreateBody {
            image: Some(image),
            cmd: Some(cmd),
            user: Some("build".into()),
            working_dir: Some("/build".into()),
            env: Some(env),
            labels: Some(labels.clone()),
            host_config: Some(HostConfig {
                memory: Some(spec.limits.memory_bytes),
                memory_swap: Some(spec.limits.memory_bytes),
                nano_cpus: Some(spec.limits.nano_cpus),
                pids_limit: Some(spec.limits.pids),
                // No network: sources, submodules and git dependencies come in the inputs,
                // and Hex packages through the package cache's socket.
                network_mode: Some("none".into()),
                // Nothing of the image can be changed: the build writes only to /build (a
                // volume of its own, gone with the container, the cache a volume inside it)
                // and to its home, /tmp and the release it assembles in memory (writing
                // the release, some 600 files, to the volume took 0.6 s more).
                readonly_rootfs: Some(true),
                mounts: Some(vec![bollard::models::Mount {
                    target: Some("/build".into()),
                    typ: Some(bollard::models::MountTypeEnum::VOLUME),
                    // labelled like the container, so that what removes an app's things
                    // finds it too
                    volume_options: Some(bollard::models::MountVolumeOptions {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                tmpfs: Some(
                    [
                        ("/tmp".to_owned(), "exec,mode=1777,size=512m".to_owned()),
                        (
                            "/home/build".to_owned(),
                            format!("exec,uid={BUILD_UID},gid={BUILD_UID},mode=0755,size=512m"),
                        ),
                        (
                            RELEASE_DIR.to_owned(),
                            format!(
                                "exec,uid={BUILD_UID},gid={BUILD_UID},mode=0755,size={}",
                                release_bytes(spec.limits.memory_bytes)
                            ),
                        ),
                    ]
                    .into(),
                ),
                cap_drop: Some(vec!["ALL".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                binds: Some(binds),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Creates the container `name` (started separately).
    async fn create_container(
        &self,
        name: &str,
        spec: &BuildSpec,
        body: ContainerCreateBody,
    ) -> PortResult<()> {
        let image = body.image.clone().unwrap_or_default();
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map(|_| ())
            .map_err(|e| match map_err(e) {
                PortError::NotFound => PortError::Invalid(format!(
                    "the image {image} is missing: the operator runs `scripts/images --stack {}`",
                    spec.stack
                )),
                other => other,
            })
    }

    /// Streams the build's inputs ([`build_inputs`]) into `/build` of the container `name`.
    async fn upload_inputs(&self, name: &str, inputs: &tempfile::NamedTempFile) -> PortResult<()> {
        let file = tokio::fs::File::open(inputs.path())
            .await
            .map_err(PortError::unavailable)?;
        let upload = UploadToContainerOptionsBuilder::new()
            .path("/build")
            .build();
        self.docker
            .upload_to_container(
                name,
                Some(upload),
                bollard::body_try_stream(tokio_util::io::ReaderStream::new(file)),
            )
            .await
            .map_err(map_err)
    }

    async fn start_container(&self, name: &str) -> PortResult<()> {
        self.docker
            .start_container(
                name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(map_err)
    }

    /// A build container whose process is the driver, started with the inputs in place.
    async fn create(
        &self,
        spec: &BuildSpec,
        name: &str,
        output: &UnboundedSender<String>,
    ) -> PortResult<()> {
        let (spec, cache) = self.checked(spec, output).await?;
        let body = self.body(&spec, &cache, None);
        self.create_container(name, &spec, body).await?;
        self.upload_inputs(name, &build_inputs(&spec).await?)
            .await?;
        self.start_container(name).await
    }

    async fn remove_container(&self, name: &str) -> PortResult<()> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self
            .docker
            .remove_container(name, Some(options))
            .await
            .map_err(map_err)
        {
            Ok(()) | Err(PortError::NotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The file `path` (`/build/out/NAME`) of the build, as a tar holding it (as the
    /// engine's archive request answers), read straight from the build's volume where this
    /// process can (an engine on this machine): the engine's archive request costs some
    /// 0.1 s, and 0.2 s for a slug. `None` where it cannot, or when the file is not a plain
    /// file: then the engine answers. The build may have planted links: `out` and the file
    /// are opened without following any (the volume's directory is the engine's).
    async fn output_from_volume(
        &self,
        build: &BuildId,
        path: &str,
    ) -> Option<crate::ports::blobs::ByteStream> {
        let file_name = path.strip_prefix("/build/out/")?.to_owned();
        let info = self.inspect(&Self::name(build)).await.ok()?;
        let volume = info
            .mounts?
            .into_iter()
            .find(|m| m.destination.as_deref() == Some("/build"))?
            .source?;
        let name = file_name.clone();
        let (file, size) = tokio::task::spawn_blocking(move || {
            use rustix::fs::{openat, Mode, OFlags};
            let root = std::fs::File::open(&volume).ok()?;
            let dir = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let out = openat(&root, "out", dir, Mode::empty()).ok()?;
            let plain = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
            let fd = openat(&out, name.as_str(), plain, Mode::empty()).ok()?;
            let file = std::fs::File::from(fd);
            let meta = file.metadata().ok()?;
            let size = meta.len();
            meta.file_type().is_file().then_some((file, size))
        })
        .await
        .ok()??;
        let mut header = tar::Header::new_gnu();
        header.set_path(&file_name).ok()?;
        header.set_size(size);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        // the file's bytes as the header says (a file that shrank meanwhile is an error),
        // padded to a block, then the two end blocks
        use tokio::io::AsyncReadExt;
        let body = tokio_util::io::ReaderStream::with_capacity(
            tokio::fs::File::from_std(file).take(size),
            1 << 20,
        );
        let padding = (512 - size % 512) % 512;
        let body = body.map(|chunk| chunk.map_err(PortError::unavailable));
        let end = futures::stream::once(async move {
            Ok(bytes::Bytes::from(vec![0u8; padding as usize + 1024]))
        });
        let checked = body
            .chain(futures::stream::once(async move {
                Ok::<_, PortError>(bytes::Bytes::new())
            }))
            .scan(0u64, move |seen, chunk: PortResult<bytes::Bytes>| {
                let item = match chunk {
                    Ok(c) if c.is_empty() && *seen < size => Err(PortError::unavailable(
                        "the build's file shrank while it was read",
                    )),
                    Ok(c) => {
                        *seen += c.len() as u64;
                        Ok(c)
                    }
                    Err(e) => Err(e),
                };
                futures::future::ready(Some(item))
            });
        Some(
            futures::stream::once(
                async move { Ok(bytes::Bytes::copy_from_slice(header.as_bytes())) },
            )
            .chain(checked)
            .chain(end)
            .boxed(),
        )
    }

    /// Makes `name` the app's warm builder for `spec`: an idle one that fits, renamed (a
    /// rename is the claim: of two builds only one gets it), else a new one, started.
    /// Idle ones that no longer fit (another stack, other limits) or are old go.
    async fn claim(&self, spec: &BuildSpec, cache: &str, name: &str) -> PortResult<()> {
        let fingerprint = self.fingerprint(spec, cache);
        let filters: std::collections::HashMap<String, Vec<String>> = [(
            "label".to_owned(),
            vec![
                format!("{LABEL_INSTANCE}={}", self.instance),
                format!("{LABEL_APP}={}", spec.app),
                LABEL_WARM.to_owned(),
            ],
        )]
        .into();
        let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let mut idle: Vec<_> = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(map_err)?
            .into_iter()
            .filter_map(|c| {
                let name = c
                    .names
                    .as_ref()?
                    .first()?
                    .trim_start_matches('/')
                    .to_owned();
                name.contains(IDLE_MARK).then_some((c, name))
            })
            .collect();
        idle.sort_by_key(|(c, _)| std::cmp::Reverse(c.created.unwrap_or_default()));
        let now = chrono::Utc::now().timestamp();
        let mut claimed = false;
        for (c, idle_name) in idle {
            let fits = c.state.as_ref().is_some_and(|s| s.to_string() == "running")
                && c.labels.as_ref().and_then(|l| l.get(LABEL_WARM)) == Some(&fingerprint)
                && now - c.created.unwrap_or_default() < WARM_CLAIM_BEFORE_SECS;
            if fits && !claimed {
                let rename = bollard::query_parameters::RenameContainerOptionsBuilder::new()
                    .name(name)
                    .build();
                if self
                    .docker
                    .rename_container(&idle_name, rename)
                    .await
                    .is_ok()
                {
                    claimed = true;
                }
            } else if !fits {
                self.remove_container(&idle_name).await?;
            }
        }
        if claimed {
            return Ok(());
        }
        let body = self.body(spec, cache, Some(&fingerprint));
        self.create_container(name, spec, body).await?;
        self.start_container(name).await
    }

    /// Runs `cmd` in the container as the build user; its exit code.
    async fn exec_status(&self, name: &str, cmd: &[&str]) -> PortResult<i64> {
        let exec = self
            .docker
            .create_exec(
                name,
                bollard::models::ExecConfig {
                    cmd: Some(cmd.iter().map(|c| (*c).to_owned()).collect()),
                    user: Some("build".into()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(map_err)?;
        if let bollard::exec::StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(map_err)?
        {
            while output.next().await.is_some() {}
        }
        Ok(self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(map_err)?
            .exit_code
            .unwrap_or(-1))
    }

    /// Runs the build in a warm builder (claimed or new, see [`Self::claim`]): what the
    /// previous build left (its processes, its files but the cache) goes, the inputs go
    /// in, and the driver runs through `docker exec`. A builder whose build was stopped
    /// (time, disk, memory) is removed; one whose build ended stays for the next.
    async fn run_warm(
        &self,
        spec: &BuildSpec,
        name: &str,
        output: UnboundedSender<String>,
    ) -> PortResult<BuildExit> {
        let (spec, cache) = self.checked(spec, &output).await?;
        let spec = &spec;
        // (an idle builder was swept and emptied when it became idle, a new one is empty;
        // the inputs' archive is made meanwhile)
        let (inputs, claimed) = tokio::join!(build_inputs(spec), self.claim(spec, &cache, name));
        claimed?;
        let inputs = inputs?;
        let over_disk = Arc::new(AtomicBool::new(false));
        let _watch = self
            .watch_disk(name, spec.limits.disk_bytes, over_disk.clone())
            .await;
        let exec = self
            .docker
            .create_exec(
                name,
                bollard::models::ExecConfig {
                    cmd: Some(vec!["/usr/local/bin/gigalixir-build".into()]),
                    user: Some("build".into()),
                    working_dir: Some("/build".into()),
                    env: Some(self.driver_env(spec, true)),
                    // the inputs come on its standard input, which it unpacks first: one
                    // round trip to the engine less than an archive upload (some 50 ms)
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(map_err)?;
        let started = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(map_err)?;
        let started = match started {
            bollard::exec::StartExecResults::Attached { output, mut input } => {
                let file = tokio::fs::File::open(inputs.path())
                    .await
                    .map_err(PortError::unavailable)?;
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut file = file;
                    // (a driver that stopped reading says why in its output)
                    if let Err(err) = tokio::io::copy(&mut file, &mut input).await {
                        tracing::debug!(error = %err, "the build's inputs were not all read");
                    }
                    let _ = input.shutdown().await;
                    drop(inputs);
                });
                Some(output)
            }
            bollard::exec::StartExecResults::Detached => None,
        };
        // The output ends when the driver does, unless something it started keeps it open:
        // the driver's own end is watched too.
        let docker = self.docker.clone();
        let exec_id = exec.id.clone();
        let driver_ended = async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                match docker.inspect_exec(&exec_id).await {
                    Ok(e) if e.running == Some(true) => continue,
                    _ => break,
                }
            }
            // what it wrote last
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        };
        let finished = match started {
            Some(out) => {
                tokio::select! {
                    finished = relay(out, &output, spec.limits.timeout) => finished,
                    () = driver_ended => true,
                }
            }
            None => true,
        };
        if !finished {
            self.remove_container(name).await?;
            return Ok(BuildExit::Failed {
                code: -1,
                reason: format!(
                    "the build took longer than {} minutes and was stopped",
                    spec.limits.timeout.as_secs() / 60
                ),
            });
        }
        let code = match self.docker.inspect_exec(&exec.id).await.map_err(map_err) {
            Ok(e) => e.exit_code.unwrap_or(-1),
            // the builder went (killed for its disk, or removed with its app)
            Err(PortError::NotFound) => -1,
            Err(err) => return Err(err),
        };
        let oom = match self.inspect(name).await {
            Ok(info) => info.state.and_then(|s| s.oom_killed).unwrap_or(false),
            Err(PortError::NotFound) => false,
            Err(err) => return Err(err),
        };
        let over = over_disk.load(Ordering::SeqCst);
        if over || oom || code == 137 {
            self.remove_container(name).await?;
        } else if code != 0 {
            // Nothing of a failed build outlives it (a process left running would hold
            // the app's CPU and memory share while the builder idles). Off the push's
            // path; the next build in this builder sweeps again first. A build that
            // succeeded is swept by its upload's discard, once the slug is out: a sweep
            // now would hold the engine's attention while upload asks for the slug.
            let (builder, name) = (self.clone(), name.to_owned());
            tokio::spawn(async move {
                let _ = builder
                    .exec_status(&name, &["bash", "-c", &format!("{SWEEP} true")])
                    .await;
            });
        }
        Ok(exit(spec, code, oom, over))
    }

    /// Watches the disk the running build `name` fills (the volumes at `/build` and
    /// `/build/cache`, read where the engine keeps them) and kills it past `limit`, setting
    /// `over`. Stops with the returned guard. Without access to the engine's volume
    /// directories (an engine on another machine), nothing is watched.
    async fn watch_disk(
        &self,
        name: &str,
        limit: u64,
        over: Arc<AtomicBool>,
    ) -> Option<AbortOnDrop> {
        let info = self.inspect(name).await.ok()?;
        let dirs: Vec<PathBuf> = info
            .mounts
            .unwrap_or_default()
            .into_iter()
            .filter(|m| matches!(m.destination.as_deref(), Some("/build" | "/build/cache")))
            .filter_map(|m| m.source.map(PathBuf::from))
            .filter(|dir| dir.is_dir())
            .collect();
        if dirs.is_empty() {
            tracing::warn!(
                build = name,
                "the build's volumes are not readable here: its disk use is not watched"
            );
            return None;
        }
        let (docker, name) = (self.docker.clone(), name.to_owned());
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(DISK_WATCH_EVERY).await;
                let measured = dirs.clone();
                let used = tokio::task::spawn_blocking(move || {
                    measured
                        .iter()
                        .map(|d| crate::gitfetch::dir_size(d))
                        .sum::<u64>()
                })
                .await
                .unwrap_or(0);
                if used > limit {
                    over.store(true, Ordering::SeqCst);
                    let _ = docker
                        .kill_container(
                            &name,
                            None::<bollard::query_parameters::KillContainerOptions>,
                        )
                        .await;
                    return;
                }
            }
        });
        Some(AbortOnDrop(task))
    }

    async fn inspect(&self, name: &str) -> PortResult<bollard::models::ContainerInspectResponse> {
        self.docker
            .inspect_container(
                name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(map_err)
    }

    async fn exit_of(&self, name: &str) -> PortResult<(bool, i64, bool)> {
        let info = self.inspect(name).await?;
        let state = info.state.unwrap_or_default();
        Ok((
            state.running.unwrap_or(false),
            state.exit_code.unwrap_or(-1),
            state.oom_killed.unwrap_or(false),
        ))
    }
}

/// What a warm builder runs while no build does: it waits, and ends after two hours (a
/// platform that died leaves no builder running for long); it is claimed only in its first
/// hour ([`WARM_CLAIM_BEFORE_SECS`]), so a build of at most 30 minutes ends before it does.
const WARM_IDLE: &str =
    "trap 'exit 0' TERM; while [ \"$SECONDS\" -lt 7200 ]; do sleep 60 & wait $!; done";
/// A warm builder older than this is not given another build.
const WARM_CLAIM_BEFORE_SECS: i64 = 3600;
/// After each build in a warm builder, and before the next: every process but PID 1 (the
/// idle loop), the sweep itself and the Mix the buildpack keeps running for the next build
/// is killed, pass after pass until none is left (a process that forks as it goes is caught
/// in the next pass). The kept Mix is the session whose leader `/dev/shm/gigalixir-mix/pid`
/// names (started with `setsid`, so its BEAM and the scripts that start it are all of it,
/// and no other process can join it), with the sessions its BEAM's children lead (the
/// BEAM's port helper starts one of its own for the ports); its directory goes when that
/// names no session leader. (A build could name a session of its own there: it would
/// outlive the build in its own app's builder, within that builder's limits and life, as
/// the kept Mix does.)
const SWEEP: &str = r#"stat() { # PID: state, ppid and session of the process (its name may hold anything)
  local line
  read -r line 2>/dev/null <"/proc/$1/stat" || return 1
  read -r state ppid _ sid _ <<<"${line##*) }"
}
keep=" 1 $$ " server=$(cat /dev/shm/gigalixir-mix/pid 2>/dev/null) sessions=" "
if [[ "$server" =~ ^[0-9]+$ ]] && stat "$server" && [ "$sid" = "$server" ]; then
  sessions=" $server "
else
  server=""
fi
kept_session() { # SID: the kept Mix's, or one a child of its BEAM leads (looked at on every
  # pass: a BEAM that is starting starts its port helper's session meanwhile)
  local state ppid sid
  [[ "$sessions" == *" $1 "* ]] && return 0
  [ -n "$server" ] && stat "$1" && [ "$ppid" = "$server" ] && [ "$sid" = "$1" ] || return 1
  sessions="$sessions$1 "
}
for _ in $(seq 100); do
  victims=()
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [[ "$keep" == *" $p "* ]] && continue
    stat "$p" || continue
    [ "$state" = Z ] && continue
    kept_session "$sid" && continue
    victims+=("$p")
  done
  [ ${#victims[@]} -eq 0 ] && break
  kill -9 "${victims[@]}" 2>/dev/null
done
[ -n "$server" ] || rm -rf /dev/shm/gigalixir-mix
"#;
/// When a warm builder's build is over and its outputs were read (`discard`), after
/// [`SWEEP`] and before it idles: the build's files but the cache (and the kept Mix's
/// directory) go, so the next build starts in an empty `/build` without waiting for it.
const WARM_RESET: &str = "find /build /tmp /home/build /dev/shm /build/release -mindepth 1 \
     -maxdepth 1 ! -path /build/cache ! -path /build/release ! -path /dev/shm/gigalixir-mix \
     -exec rm -rf {} + && \
     [ -z \"$(find /build /build/release -mindepth 1 -maxdepth 1 ! -path /build/cache \
       ! -path /build/release)\" ]";
/// Where the buildpack assembles the release (`GIGALIXIR_RELEASE_DIR`): in memory.
const RELEASE_DIR: &str = "/build/release";

/// The size of the in-memory release directory: half the build's memory (it counts
/// there), at least 64 MB.
fn release_bytes(memory_bytes: i64) -> i64 {
    (memory_bytes / 2).max(64 << 20)
}
/// What a warm builder's name holds between builds.
const IDLE_MARK: &str = "-idle-";

/// Whether `info` is a warm builder's.
fn is_warm(info: &bollard::models::ContainerInspectResponse) -> bool {
    info.config
        .as_ref()
        .and_then(|c| c.labels.as_ref())
        .is_some_and(|l| l.contains_key(LABEL_WARM))
}

/// How often a running build's disk use is measured.
const DISK_WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

/// A task stopped when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Relays a build's output to `output` line by line until it ends (`true`) or `limit`
/// passes (`false`).
async fn relay(
    mut stream: impl futures::Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>>
        + Unpin,
    output: &UnboundedSender<String>,
    limit: std::time::Duration,
) -> bool {
    let mut lines = LineSplitter::default();
    let streamed = tokio::time::timeout(limit, async {
        while let Some(Ok(chunk)) = stream.next().await {
            for line in lines.push(&chunk.into_bytes()) {
                let _ = output.unbounded_send(line);
            }
        }
    })
    .await;
    if let Some(rest) = lines.finish() {
        let _ = output.unbounded_send(rest);
    }
    streamed.is_ok()
}

/// What a build's exit code (and an out-of-memory kill, a disk over its limit) means.
fn exit(spec: &BuildSpec, code: i64, oom: bool, over_disk: bool) -> BuildExit {
    if over_disk {
        return BuildExit::Failed {
            code,
            reason: format!(
                "the build wrote more than {} MB to disk (its files and its cache together) and was stopped",
                spec.limits.disk_bytes >> 20
            ),
        };
    }
    match code {
        0 => BuildExit::Succeeded,
        _ if oom => BuildExit::Failed {
            code,
            reason: format!(
                "the build ran out of memory (limit {} MiB)",
                spec.limits.memory_bytes >> 20
            ),
        },
        // SIGKILL: in a warm builder the engine may not say it was out of memory
        137 => BuildExit::Failed {
            code,
            reason: format!(
                "the build was killed (exit code 137), most likely out of memory (limit {} MiB)",
                spec.limits.memory_bytes >> 20
            ),
        },
        2 => BuildExit::Failed {
            code,
            reason: "no buildpack could build this app".into(),
        },
        3 => BuildExit::Failed {
            code,
            reason: "the slug is larger than 1 GB".into(),
        },
        _ => BuildExit::Failed {
            code,
            reason: format!("the build failed (exit code {code})"),
        },
    }
}

/// Where a hot push's running slug is in the build, under `/build`.
const PREVIOUS_SLUG: &str = "previous/slug.tgz";

/// One tar for `/build`: `src/` from the source archive, `cache/` from a seed (a cache kept
/// elsewhere, when this engine has none for the app; never for a clean build), `env/NAME`
/// per config var, the running slug for a hot push; everything owned by the build user.
/// Written to a local file: the inputs (a source of up to 1 GB, a cache seed of up to 2 GB)
/// never sit whole in memory.
async fn build_inputs(spec: &BuildSpec) -> PortResult<tempfile::NamedTempFile> {
    let source = spec.source.clone();
    let cache = if spec.clean { None } else { spec.cache.clone() };
    let extra = spec.extra.clone();
    let previous = spec.previous.clone();
    let env: Vec<(String, String)> = spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || -> std::io::Result<tempfile::NamedTempFile> {
        use std::io::{BufReader, Write};
        let inputs = tempfile::NamedTempFile::new()?;
        let mut out = tar::Builder::new(std::io::BufWriter::new(inputs.reopen()?));
        for dir in ["src", "env", "out"] {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_uid(BUILD_UID);
            h.set_gid(BUILD_UID);
            h.set_size(0);
            out.append_data(&mut h, dir, std::io::empty())?;
        }
        let open = |path: &std::path::Path| std::fs::File::open(path).map(BufReader::new);
        copy_tar(open(&source)?, "src/", Some(BUILD_UID), &mut out)?;
        if let Some(cache) = cache {
            copy_tar(open(&cache)?, "", Some(BUILD_UID), &mut out)?;
        }
        if !extra.is_empty() {
            copy_tar(&extra[..], "", Some(BUILD_UID), &mut out)?;
        }
        if let Some(previous) = previous {
            let file = std::fs::File::open(&previous)?;
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o444);
            h.set_uid(BUILD_UID);
            h.set_gid(BUILD_UID);
            h.set_size(file.metadata()?.len());
            out.append_data(&mut h, PREVIOUS_SLUG, BufReader::new(file))?;
        }
        for (name, value) in env {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o600);
            h.set_uid(BUILD_UID);
            h.set_gid(BUILD_UID);
            h.set_size(value.len() as u64);
            out.append_data(&mut h, format!("env/{name}"), value.as_bytes())?;
        }
        out.into_inner()?.flush()?;
        Ok(inputs)
    })
    .await
    .map_err(PortError::unavailable)?
    .map_err(|e| PortError::Invalid(format!("unreadable build input archive: {e}")))
}

#[async_trait]
impl Builder for DockerBuilder {
    async fn run(
        &self,
        spec: &BuildSpec,
        output: UnboundedSender<String>,
    ) -> PortResult<BuildExit> {
        let name = Self::name(&spec.build);
        let (running, _, _) = match self.inspect(&name).await {
            // A warm builder holding this build when its platform died: the build's output
            // cannot be followed again, so it starts over in another.
            Ok(info) if is_warm(&info) => {
                self.remove_container(&name).await?;
                return self.run_warm(spec, &name, output).await;
            }
            Ok(_) => self.exit_of(&name).await?,
            Err(PortError::NotFound) if self.warm => {
                return self.run_warm(spec, &name, output).await;
            }
            Err(PortError::NotFound) => {
                self.create(spec, &name, &output).await?;
                (true, 0, false)
            }
            Err(err) => return Err(err),
        };
        let over_disk = Arc::new(AtomicBool::new(false));
        if running {
            let _watch = self
                .watch_disk(&name, spec.limits.disk_bytes, over_disk.clone())
                .await;
            let follow = LogsOptionsBuilder::new()
                .follow(true)
                .stdout(true)
                .stderr(true)
                .build();
            let logs = self.docker.logs(&name, Some(follow));
            let finished = relay(logs, &output, spec.limits.timeout).await;
            if !finished {
                let _ = self
                    .docker
                    .kill_container(
                        &name,
                        None::<bollard::query_parameters::KillContainerOptions>,
                    )
                    .await;
                return Ok(BuildExit::Failed {
                    code: -1,
                    reason: format!(
                        "the build took longer than {} minutes and was stopped",
                        spec.limits.timeout.as_secs() / 60
                    ),
                });
            }
            // The log stream ends when the container stops; wait for its final state.
            let mut waits = self.docker.wait_container(
                &name,
                None::<bollard::query_parameters::WaitContainerOptions>,
            );
            while let Some(w) = waits.next().await {
                if w.is_err() {
                    break;
                }
            }
        }
        let (_, code, oom) = self.exit_of(&name).await?;
        Ok(exit(spec, code, oom, over_disk.load(Ordering::SeqCst)))
    }

    async fn output(
        &self,
        build: &BuildId,
        what: crate::ports::builder::BuildOutput,
    ) -> PortResult<crate::ports::blobs::ByteStream> {
        use crate::ports::builder::BuildOutput;
        // where the build driver leaves them in the builder image
        let path = match what {
            BuildOutput::Slug => "/build/out/slug.tgz",
            BuildOutput::SlugMeta => "/build/out/slug.json",
            BuildOutput::Cache => "/build/cache",
        };
        if let BuildOutput::Slug | BuildOutput::SlugMeta = what {
            if let Some(stream) = self.output_from_volume(build, path).await {
                return Ok(stream);
            }
        }
        let options = DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        // The engine answers 404 before any byte for a missing container or path: the first
        // item is awaited here so that `NotFound` comes from the call, not the stream.
        let mut stream = self
            .docker
            .download_from_container(&Self::name(build), Some(options))
            .map_err(map_err);
        Ok(match stream.next().await {
            Some(Err(err)) => return Err(err),
            Some(Ok(first)) => futures::stream::once(async move { Ok(first) })
                .chain(stream)
                .boxed(),
            None => futures::stream::empty().boxed(),
        })
    }

    async fn stacks(&self) -> PortResult<Vec<StackVersions>> {
        let mut out = Vec::new();
        for stack in Stack::ALL {
            // a build node needs the builder image; the runner image is the runtime's
            if let Some(versions) = self.stack_of(stack).await? {
                out.push(versions);
            }
        }
        Ok(out)
    }

    async fn has_cache(&self, app: &AppName, generation: i64) -> PortResult<bool> {
        match self
            .docker
            .inspect_volume(&self.cache_volume(app, generation))
            .await
            .map_err(map_err)
        {
            Ok(_) => Ok(true),
            Err(PortError::NotFound) => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn discard(&self, build: &BuildId) -> PortResult<()> {
        let name = Self::name(build);
        let info = match self.inspect(&name).await {
            Ok(info) => info,
            Err(PortError::NotFound) => return Ok(()),
            Err(err) => return Err(err),
        };
        // A warm builder whose build has ended waits for the app's next one; one whose
        // build still runs (a push that died, an app destroyed) goes with it.
        if is_warm(&info) && info.state.as_ref().and_then(|s| s.running) == Some(true) {
            // (the sweep after the build may still be running: five seconds at most)
            let execs = info.exec_ids.unwrap_or_default();
            let mut busy = true;
            for _ in 0..250 {
                busy = false;
                for id in &execs {
                    if let Ok(exec) = self.docker.inspect_exec(id).await {
                        busy |= exec.running == Some(true);
                    }
                }
                if !busy {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let app = info
                .config
                .and_then(|c| c.labels)
                .and_then(|l| l.get(LABEL_APP).cloned())
                .unwrap_or_default();
            // swept again and emptied: what an idle builder is (not kept when that fails)
            let reset = format!("{SWEEP} {WARM_RESET}");
            if !busy
                && tokio::time::timeout(
                    std::time::Duration::from_secs(60),
                    self.exec_status(&name, &["bash", "-c", &reset]),
                )
                .await
                .is_ok_and(|code| matches!(code, Ok(0)))
            {
                let idle = format!(
                    "gx-build-{}-{app}{IDLE_MARK}{}",
                    self.instance,
                    &uuid::Uuid::new_v4().simple().to_string()[..8]
                );
                let rename = bollard::query_parameters::RenameContainerOptionsBuilder::new()
                    .name(&idle)
                    .build();
                if self.docker.rename_container(&name, rename).await.is_ok() {
                    return Ok(());
                }
            }
        }
        self.remove_container(&name).await
    }
}
