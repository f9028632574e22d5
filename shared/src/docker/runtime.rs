//! [`Runtime`] on the Docker engine: one network per app, one container per release from
//! the runner image, published on a loopback port for the router.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StartContainerOptions, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;

use super::{
    labels, map_err, LineSplitter, LABEL_APP, LABEL_INSTANCE, LABEL_RELEASE, RUNNER_IMAGE,
};
use crate::domain::AppName;
use crate::error::{PortError, PortResult};
use crate::ports::runtime::{DeployOutcome, ReleaseSpec, Runtime, APP_PORT};

/// How long a stopped release gets to finish its requests before it is killed.
const DRAIN_SECONDS: i32 = 10;

/// Runs releases in containers of [`RUNNER_IMAGE`].
#[derive(Clone)]
pub struct DockerRuntime {
    docker: Docker,
    instance: String,
    /// The host directory holding `slugs/…`, mounted read-only at `/slugs`.
    slug_dir: PathBuf,
    /// Where each app's live release answers, as set by the last healthy deploy.
    live: Arc<Mutex<HashMap<AppName, Vec<SocketAddr>>>>,
}

struct Started {
    name: String,
    ip: IpAddr,
    published: SocketAddr,
}

impl DockerRuntime {
    /// A runtime whose containers carry `gigalixir.instance=<instance>` and read slugs from
    /// `slug_dir` (the blob store's `slugs/` directory).
    pub fn new(docker: Docker, instance: impl Into<String>, slug_dir: PathBuf) -> Self {
        Self {
            docker,
            instance: instance.into(),
            slug_dir,
            live: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn network(&self, app: &AppName) -> String {
        format!("gx-{}-{app}", self.instance)
    }

    fn container(&self, app: &AppName, version: u32) -> String {
        format!("gx-{}-{app}-v{version}", self.instance)
    }

    /// The app's network, made if missing. The engine allows several networks with one
    /// name, so look before creating, and keep one.
    async fn ensure_network(&self, app: &AppName) -> PortResult<()> {
        let name = self.network(app);
        let filters: HashMap<String, Vec<String>> = [
            (
                "label".to_owned(),
                vec![
                    format!("{LABEL_INSTANCE}={}", self.instance),
                    format!("{LABEL_APP}={app}"),
                ],
            ),
            ("name".to_owned(), vec![name.clone()]),
        ]
        .into();
        let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let mut found: Vec<(String, String)> = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(map_err)?
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name.as_str()))
            .filter_map(|n| Some((n.created.clone().unwrap_or_default(), n.id?)))
            .collect();
        found.sort();
        if let Some((_, _keep)) = found.first() {
            for (_, extra) in found.iter().skip(1) {
                let _ = self.docker.remove_network(extra).await;
            }
            return Ok(());
        }
        let request = NetworkCreateRequest {
            name,
            driver: Some("bridge".into()),
            labels: Some(labels(&[
                (LABEL_INSTANCE, &self.instance),
                (LABEL_APP, app.as_str()),
            ])),
            ..Default::default()
        };
        self.docker.create_network(request).await.map_err(map_err)?;
        Ok(())
    }

    /// The app's containers of this instance: (name, release version, running).
    async fn containers_of(&self, app: &AppName) -> PortResult<Vec<(String, u32, bool)>> {
        let filters: HashMap<String, Vec<String>> = [(
            "label".to_owned(),
            vec![
                format!("{LABEL_INSTANCE}={}", self.instance),
                format!("{LABEL_APP}={app}"),
            ],
        )]
        .into();
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(map_err)?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.first()?.trim_start_matches('/').to_owned();
                let version = c.labels?.get(LABEL_RELEASE)?.parse().ok()?;
                let running = c.state.map(|s| s.to_string() == "running").unwrap_or(false);
                Some((name, version, running))
            })
            .collect())
    }

    async fn start(&self, spec: &ReleaseSpec) -> PortResult<Started> {
        let name = self.container(&spec.app, spec.version.0);
        let network = self.network(&spec.app);
        let key = spec.slug.key.trim_start_matches("slugs/");
        let mut env: Vec<String> = spec
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", v.expose()))
            .collect();
        env.push(format!("SLUG_URL=file:///slugs/{key}"));
        env.push(format!("SLUG_SHA256={}", spec.slug.sha256));
        let port = format!("{APP_PORT}/tcp");
        let config = ContainerCreateBody {
            image: Some(RUNNER_IMAGE.into()),
            env: Some(env),
            labels: Some(labels(&[
                (LABEL_INSTANCE, &self.instance),
                (LABEL_APP, spec.app.as_str()),
                (LABEL_RELEASE, &spec.version.0.to_string()),
            ])),
            exposed_ports: Some([(port.clone(), HashMap::new())].into()),
            host_config: Some(HostConfig {
                binds: Some(vec![format!("{}:/slugs:ro", self.slug_dir.display())]),
                network_mode: Some(network.clone()),
                // Loopback only: the router is the way in.
                port_bindings: Some(
                    [(
                        port.clone(),
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".into()),
                            host_port: Some(String::new()),
                        }]),
                    )]
                    .into(),
                ),
                memory: Some(spec.memory_bytes),
                security_opt: Some(vec!["no-new-privileges".into()]),
                // The slug unpacks into memory: several times faster than the overlay.
                tmpfs: Some(
                    [(
                        "/app".to_owned(),
                        "exec,uid=1000,gid=1000,mode=0755".to_owned(),
                    )]
                    .into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        let fresh = match self
            .docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .map_err(map_err)
        {
            Ok(info) if info.state.as_ref().and_then(|s| s.running).unwrap_or(false) => false,
            Ok(_) => {
                self.remove(&name).await?;
                true
            }
            Err(PortError::NotFound) => true,
            Err(err) => return Err(err),
        };
        if fresh {
            let options = CreateContainerOptionsBuilder::new().name(&name).build();
            self.docker
                .create_container(Some(options), config)
                .await
                .map_err(|e| match map_err(e) {
                    PortError::NotFound => PortError::Invalid(format!(
                        "the image {RUNNER_IMAGE} is missing: run scripts/images"
                    )),
                    other => other,
                })?;
            self.docker
                .start_container(&name, None::<StartContainerOptions>)
                .await
                .map_err(map_err)?;
        }
        let info = self
            .docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .map_err(map_err)?;
        let settings = info.network_settings.unwrap_or_default();
        let ip = settings
            .networks
            .as_ref()
            .and_then(|n| n.get(&network))
            .and_then(|e| e.ip_address.clone())
            .and_then(|ip| ip.parse().ok());
        let host_port = settings
            .ports
            .as_ref()
            .and_then(|p| p.get(&port).cloned().flatten())
            .and_then(|b| b.first().and_then(|b| b.host_port.clone()))
            .and_then(|p| p.parse::<u16>().ok());
        match (ip, host_port) {
            (Some(ip), Some(hp)) => Ok(Started {
                name,
                ip,
                published: SocketAddr::from(([127, 0, 0, 1], hp)),
            }),
            // Exited at once: no address; the health loop reports why.
            _ => Ok(Started {
                name,
                ip: IpAddr::from([0, 0, 0, 0]),
                published: SocketAddr::from(([127, 0, 0, 1], 0)),
            }),
        }
    }

    /// Waits until the container accepts connections on the app port, or says why not.
    async fn wait_healthy(&self, started: &Started, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let info = self
                .docker
                .inspect_container(&started.name, None::<InspectContainerOptions>)
                .await
                .map_err(|e| format!("the container vanished: {e}"))?;
            let state = info.state.unwrap_or_default();
            if !state.running.unwrap_or(false) {
                let code = state.exit_code.unwrap_or(-1);
                return Err(if state.oom_killed.unwrap_or(false) {
                    "the release ran out of memory while booting".into()
                } else {
                    format!("the release exited with code {code} while booting")
                });
            }
            // Straight to the container: a published port accepts connections through the
            // engine's proxy even when nothing listens inside.
            let target = SocketAddr::new(started.ip, APP_PORT);
            let probe = tokio::time::timeout(
                Duration::from_millis(500),
                tokio::net::TcpStream::connect(target),
            )
            .await;
            if matches!(probe, Ok(Ok(_))) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the release did not accept connections on port {APP_PORT} within {} s",
                    timeout.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn tail(&self, name: &str, lines: usize) -> Vec<String> {
        let options = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&lines.to_string())
            .build();
        let mut logs = self.docker.logs(name, Some(options));
        let mut split = LineSplitter::default();
        let mut out = Vec::new();
        while let Some(Ok(chunk)) = logs.next().await {
            out.extend(split.push(&chunk.into_bytes()));
        }
        out.extend(split.finish());
        out
    }

    async fn stop(&self, name: &str) -> PortResult<()> {
        let options = StopContainerOptionsBuilder::new().t(DRAIN_SECONDS).build();
        match self
            .docker
            .stop_container(name, Some(options))
            .await
            .map_err(map_err)
        {
            Ok(()) | Err(PortError::NotFound) => {}
            Err(err) => return Err(err),
        }
        self.remove(name).await
    }

    async fn remove(&self, name: &str) -> PortResult<()> {
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
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

    fn set_live(&self, app: &AppName, addrs: Vec<SocketAddr>) {
        if let Ok(mut live) = self.live.lock() {
            live.insert(app.clone(), addrs);
        }
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn deploy(&self, spec: &ReleaseSpec) -> PortResult<DeployOutcome> {
        self.ensure_network(&spec.app).await?;
        let started = self.start(spec).await?;
        if let Err(reason) = self.wait_healthy(&started, spec.boot_timeout).await {
            let output = self.tail(&started.name, 50).await;
            self.stop(&started.name).await?;
            return Ok(DeployOutcome::Failed { reason, output });
        }
        self.set_live(&spec.app, vec![started.published]);
        // Traffic has moved: the old releases drain and stop in the background.
        let old: Vec<String> = self
            .containers_of(&spec.app)
            .await?
            .into_iter()
            .map(|(name, _, _)| name)
            .filter(|name| *name != started.name)
            .collect();
        let me = self.clone();
        tokio::spawn(async move {
            for name in old {
                if let Err(err) = me.stop(&name).await {
                    tracing::warn!(container = %name, error = %err, "could not stop an old release");
                }
            }
        });
        Ok(DeployOutcome::Healthy)
    }

    async fn endpoints(&self, app: &AppName) -> PortResult<Vec<SocketAddr>> {
        if let Some(addrs) = self.live.lock().ok().and_then(|l| l.get(app).cloned()) {
            return Ok(addrs);
        }
        // After a restart of the platform: the newest running release is the live one.
        let newest = self
            .containers_of(app)
            .await?
            .into_iter()
            .filter(|(_, _, running)| *running)
            .max_by_key(|(_, v, _)| *v);
        let Some((name, _, _)) = newest else {
            return Ok(Vec::new());
        };
        let info = self
            .docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .map_err(map_err)?;
        let port = format!("{APP_PORT}/tcp");
        let addr = info
            .network_settings
            .and_then(|s| s.ports)
            .and_then(|p| p.get(&port).cloned().flatten())
            .and_then(|b| b.first().and_then(|b| b.host_port.clone()))
            .and_then(|p| p.parse::<u16>().ok())
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        let addrs: Vec<SocketAddr> = addr.into_iter().collect();
        if !addrs.is_empty() {
            self.set_live(app, addrs.clone());
        }
        Ok(addrs)
    }

    async fn remove_app(&self, app: &AppName) -> PortResult<()> {
        if let Ok(mut live) = self.live.lock() {
            live.remove(app);
        }
        for (name, _, _) in self.containers_of(app).await? {
            self.remove(&name).await?;
        }
        match self
            .docker
            .remove_network(&self.network(app))
            .await
            .map_err(map_err)
        {
            Ok(()) | Err(PortError::NotFound) => Ok(()),
            Err(err) => Err(err),
        }
    }
}
