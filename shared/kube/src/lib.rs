//! [`Runtime`](crate::ports::Runtime) on Kubernetes: every app lives in a namespace of its
//! own, `app-<name>`, holding what DESIGN §4 lists: a service account allowed to list the
//! app's pods and endpoints (libcluster), one Secret per release with the config vars and
//! the generated secrets, a rolling Deployment of the runner image, a Service and an Ingress
//! (TLS by cert-manager) for HTTP, a second Ingress for the app's custom domains
//! ([`render_domains()`], written by [`Runtime::set_routes`](crate::ports::Runtime::set_routes)),
//! a headless Service named after the app for clustering DNS, and an SSH Service.
//!
//! Objects are rendered by pure functions ([`render()`]) and written with server-side apply
//! under the field manager [`FIELD_MANAGER`]; [`KubeRuntime`] then follows the rollout and,
//! when the release never becomes ready, puts the previous pod template back, so the old
//! replicas keep serving, exactly as the Docker runtime does.
//!
//! Choices worth knowing:
//! - The Secret of a release (`env-v<N>`) also holds the slug's download URL: signed URLs
//!   are credentials, and keeping them out of the pod template means re-signing (on a
//!   scale or a redelivered deploy) never restarts a replica.
//! - SSH: one Service `ssh` of type LoadBalancer (or NodePort), port 22 to the runner's
//!   2222, with client-IP affinity. It reaches *a* replica of the app, not a chosen one:
//!   Deployment pods have no stable slots, so `HOST_INDEX` is not set either.
//! - SSH keys live in the ConfigMap `ssh-keys`, mounted at `/etc/gigalixir/ssh`, written by
//!   [`SSH_KEYS_MANAGER`]; the kubelet refreshes mounted ConfigMaps within about a minute.
//! - Readiness: a TCP probe on port 4000, or an HTTP GET of the health path; the kubelet
//!   accepts any status from 200 to 399, not only the one configured.
//! - The Procfile's `release:` command runs once per release as the Job `release-v<N>`
//!   (one attempt, 15 minutes at most) before the Deployment changes; it is skipped when
//!   the slug's process types are known and have no `release`, and on a redelivered deploy
//!   of the release already running.
//! - Tenants are walled off: each namespace has a NetworkPolicy (`walls`) that denies every
//!   connection but the app's own pods to each other (epmd, distribution), the ingress
//!   controller's namespace to port 4000, anyone to the SSH port, and, out, the app's
//!   pods, DNS and addresses outside the link-local range (the internet: apps call APIs,
//!   replicas download their slug); a ResourceQuota (`quota`) and a
//!   LimitRange (`limits`) cap what the namespace's pods may take together and each.
//! - Hot upgrades: `gigalixir-hot-upgrade SLUG_URL SHA256` runs in every ready pod, one
//!   after the other, through the pods' `exec` subresource (the runner downloads the slug
//!   itself). The pod template does not change, so no pod restarts: the Secret the
//!   template names (`env-v<T>`, T the release whose template the pods run) now holds the
//!   new release's environment, `SLUG_URL` and `SLUG_SHA256` (a pod started again, or a new
//!   one, boots the new release), and the Deployment's annotations say both releases:
//!   `gigalixir.release` the one that runs, [`ANNOTATION_TEMPLATE`] the template's. Scaling
//!   keeps that template; the next normal deploy replaces it (a rollout). Only when every
//!   pod is ready; while it runs the Deployment carries [`ANNOTATION_UPGRADING`], so that
//!   after a failure part-way (or the platform dying) the deploy of the release that runs
//!   restarts every pod rather than leave some on code nobody records.

pub mod packages;
pub mod render;
mod runtime;

// The core's modules, by the paths the modules of this crate use.
use gigalixir_core::{domain, error, lines, ports};

use std::time::Duration;

use async_trait::async_trait;

use crate::error::{PortError, PortResult};

/// The Kubernetes client this runtime speaks through (for a client made elsewhere, e.g.
/// over a test's fake API server).
pub use kube;
pub use render::{render, render_canary, render_domains, web_ingress, AppObjects};
pub use runtime::KubeRuntime;

/// The field manager of every object the deploy applies.
pub const FIELD_MANAGER: &str = "gigalixir-deploy";
/// The field manager of the restart annotation, so that a later deploy leaves it alone.
pub const RESTART_MANAGER: &str = "gigalixir-restart";
/// The field manager of the SSH keys, so that a deploy never empties them.
pub const SSH_KEYS_MANAGER: &str = "gigalixir-ssh-keys";

/// Label naming the app (also libcluster's selector, `gigalixir.app=<app>`).
pub const LABEL_APP: &str = "gigalixir.app";
/// Label (on pods) and annotation naming the release version.
pub const LABEL_RELEASE: &str = "gigalixir.release";
/// Label of the pod of a release phase (its value: the release).
pub const LABEL_RELEASE_PHASE: &str = "gigalixir.release-phase";
/// Label of a one-off job (`run`), on its Job and its pod (its value: the release it runs).
pub const LABEL_JOB: &str = "gigalixir.job";
/// How long a release phase may run.
pub const RELEASE_PHASE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Label marking what the platform manages (and may prune).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "gigalixir";
/// Pod template annotation a restart sets to the current time.
pub const ANNOTATION_RESTARTED_AT: &str = "gigalixir.restarted-at";
/// The web Deployment's annotation naming the release whose pod template (labels, Secret)
/// its pods run; beside [`LABEL_RELEASE`], the release they run. The two differ after a hot
/// upgrade: the pods kept their template, and its Secret points at the new release's slug.
pub const ANNOTATION_TEMPLATE: &str = "gigalixir.template-release";
/// The web Deployment's annotation naming the release a hot upgrade is installing: while
/// it is there, pods may run that release's code whatever their template says; a deploy of
/// another release restarts every pod (a rollout restart), then takes it away.
pub const ANNOTATION_UPGRADING: &str = "gigalixir.upgrading";
/// The field manager of [`ANNOTATION_UPGRADING`].
pub const HOT_UPGRADE_MANAGER: &str = "gigalixir-hot-upgrade";
/// The cert-manager annotation naming the cluster issuer of the Ingress's certificate.
pub const ANNOTATION_CLUSTER_ISSUER: &str = "cert-manager.io/cluster-issuer";

/// The Deployment, Service, Ingress and container name of the web process.
pub const WEB: &str = "web";
/// The Ingress of the app's custom domains.
pub const DOMAINS: &str = "domains";
/// The field manager of the custom domains' Ingress and of a canary's objects.
pub const DOMAINS_MANAGER: &str = "gigalixir-domains";
/// The Service with no endpoints an app's Ingresses send requests to in maintenance mode
/// (the ingress controller answers 503), and the ConfigMap of the headers it adds then.
pub const MAINTENANCE: &str = "maintenance";
/// The ConfigMap of the response headers in maintenance mode (`Retry-After`).
pub const MAINTENANCE_HEADERS: &str = "maintenance-headers";
/// How long a client is told to wait in maintenance mode, seconds (as the router says).
pub const MAINTENANCE_RETRY_AFTER: u32 = 120;
/// Label of a canary's Service and Ingress (in the canary app's namespace): the app whose
/// requests they take a share of.
pub const LABEL_CANARY_OF: &str = "gigalixir.canary-of";
/// ingress-nginx's annotations, by their names after the prefix.
pub const NGINX: &str = "nginx.ingress.kubernetes.io/";
/// The ClusterRole (made by the Terraform) that the api's user gets in each app namespace,
/// and the RoleBinding there that grants it.
pub const API_APP_ROLE: &str = "gigalixir-api-app";
/// The Service of an app's own pods that canary Ingresses of other apps send their share
/// to (ingress-nginx takes no Service that is another Ingress's main backend).
pub const CANARY: &str = "canary";
/// The Service exposing the replicas' SSH servers.
pub const SSH_SERVICE: &str = "ssh";
/// The ConfigMap holding `authorized_keys`.
pub const SSH_KEYS: &str = "ssh-keys";
/// The Role and RoleBinding that let the app's pods list pods and endpoints.
pub const LIBCLUSTER: &str = "libcluster";
/// The port of the runner's SSH server.
pub const RUNNER_SSH_PORT: u16 = 2222;
/// Erlang's port mapper, for clustering.
pub const EPMD_PORT: u16 = 4369;

/// How the SSH Service is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshExposure {
    /// A cloud load balancer per app, port 22 (the default).
    LoadBalancer,
    /// A port on every node.
    NodePort,
}

/// Cluster-wide settings of the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeSettings {
    /// The runner image, as the cluster pulls it; `{stack}` stands for the release's stack
    /// (`gigalixir-runner:{stack}`).
    pub image: String,
    /// Apps answer on `<app>.<domain>`.
    pub domain: String,
    /// cert-manager's ClusterIssuer for the apps' certificates.
    pub cluster_issuer: String,
    /// The IngressClass; `None`: the cluster's default.
    pub ingress_class: Option<String>,
    /// Each app's namespace is this prefix and its name.
    pub namespace_prefix: String,
    /// How SSH is exposed.
    pub ssh: SshExposure,
    /// How often a rollout is checked.
    pub poll_interval: Duration,
    /// The namespace of the ingress controller, the one way into an app's HTTP port.
    pub ingress_namespace: String,
    /// The Kubernetes user the api function acts as: each app's namespace binds it to
    /// the ClusterRole [`API_APP_ROLE`] (`ps:kill`, `run`), so those rights hold in the
    /// apps' namespaces only. `None`: no such binding.
    pub api_user: Option<String>,
}

impl Default for KubeSettings {
    fn default() -> Self {
        Self {
            image: "gigalixir-runner:{stack}".into(),
            domain: "localhost".into(),
            cluster_issuer: "letsencrypt".into(),
            ingress_class: Some("nginx".into()),
            namespace_prefix: "app-".into(),
            ssh: SshExposure::LoadBalancer,
            poll_interval: Duration::from_secs(2),
            ingress_namespace: "ingress-nginx".into(),
            api_user: None,
        }
    }
}

impl KubeSettings {
    /// Settings from a runtime URL, `kube://` with optional query parameters over the
    /// defaults: `image`, `domain`, `issuer`, `ingress_class` (empty: the cluster's
    /// default), `namespace_prefix`, `ssh` (`loadbalancer` or `nodeport`), `poll_ms`,
    /// `ingress_namespace`, `api_user`.
    pub fn from_url(url: &str) -> PortResult<Self> {
        let parsed = url::Url::parse(url)
            .map_err(|e| PortError::Invalid(format!("`{url}` is not a runtime URL: {e}")))?;
        if parsed.scheme() != "kube" {
            return Err(PortError::Invalid(format!(
                "`{url}` is not a Kubernetes runtime URL (kube://?image=…)"
            )));
        }
        let mut settings = Self::default();
        for (key, value) in parsed.query_pairs() {
            let value = value.into_owned();
            match key.as_ref() {
                "image" => settings.image = value,
                "domain" => settings.domain = value,
                "issuer" => settings.cluster_issuer = value,
                "ingress_class" => {
                    settings.ingress_class = Some(value).filter(|v| !v.is_empty());
                }
                "namespace_prefix" => settings.namespace_prefix = value,
                "ssh" => {
                    settings.ssh = match value.as_str() {
                        "loadbalancer" => SshExposure::LoadBalancer,
                        "nodeport" => SshExposure::NodePort,
                        other => {
                            return Err(PortError::Invalid(format!(
                                "ssh={other} in `{url}`: use loadbalancer or nodeport"
                            )))
                        }
                    }
                }
                "ingress_namespace" => settings.ingress_namespace = value,
                "api_user" => settings.api_user = Some(value).filter(|v| !v.is_empty()),
                "poll_ms" => {
                    let ms: u64 = value.parse().map_err(|_| {
                        PortError::Invalid(format!("poll_ms={value} in `{url}` is not a number"))
                    })?;
                    settings.poll_interval = Duration::from_millis(ms.max(1));
                }
                other => {
                    return Err(PortError::Invalid(format!(
                        "unknown setting `{other}` in `{url}`"
                    )))
                }
            }
        }
        Ok(settings)
    }
}

/// Turns a slug's blob key (`slugs/<sha>.tgz`) into a URL the runner can download at boot
/// (a signed Cloud Storage URL in production). The URL is stored in the release's Secret;
/// it must stay valid as long as replicas of the release may start (scale, node loss).
#[async_trait]
pub trait SlugUrls: Send + Sync + 'static {
    /// The download URL of the blob `key`.
    async fn download_url(&self, key: &str) -> PortResult<String>;
}

/// Slugs served under a fixed base URL (`<base>/<key>`): a public bucket or an in-cluster
/// file server.
#[derive(Debug, Clone)]
pub struct BaseUrlSlugs {
    base: String,
}

impl BaseUrlSlugs {
    /// Slugs under `base` (a trailing `/` is optional).
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
        }
    }
}

#[async_trait]
impl SlugUrls for BaseUrlSlugs {
    async fn download_url(&self, key: &str) -> PortResult<String> {
        Ok(format!("{}/{}", self.base, key.trim_start_matches('/')))
    }
}

/// Slugs behind URLs the blob store signs (V4 signed Cloud Storage URLs), valid for `ttl`.
#[derive(Clone)]
pub struct SignedSlugs {
    blobs: std::sync::Arc<dyn crate::ports::Blobs>,
    ttl: Duration,
}

impl SignedSlugs {
    /// URLs of `blobs`, each valid for `ttl` (Cloud Storage allows up to 7 days).
    pub fn new(blobs: std::sync::Arc<dyn crate::ports::Blobs>, ttl: Duration) -> Self {
        Self { blobs, ttl }
    }
}

#[async_trait]
impl SlugUrls for SignedSlugs {
    async fn download_url(&self, key: &str) -> PortResult<String> {
        match self.blobs.signed_url(key, self.ttl).await? {
            Some(url) => Ok(url.to_string()),
            None => Err(PortError::Invalid(
                "this blob store cannot sign download URLs for the runner (use gs://)".into(),
            )),
        }
    }
}

/// The namespace of `app`: the prefix and the name, shortened with a hash when longer
/// than a DNS label allows (63).
pub fn namespace_of(settings: &KubeSettings, app: &crate::domain::AppName) -> String {
    use sha2::Digest;
    let full = format!("{}{app}", settings.namespace_prefix);
    if full.len() <= 63 {
        return full;
    }
    let hash = hex::encode(sha2::Sha256::digest(full.as_bytes()));
    let keep = 63 - 9;
    format!("{}-{}", &full[..keep], &hash[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AppName;

    #[test]
    fn the_runner_image_names_the_stack() {
        // as Terraform writes it (infra/wiring.tf)
        let s =
            KubeSettings::from_url("kube://?image=r.example%2Fgigalixir-runner%3A%7Bstack%7D-v7")
                .expect("parses");
        assert_eq!(s.image, "r.example/gigalixir-runner:{stack}-v7");
        assert_eq!(KubeSettings::default().image, "gigalixir-runner:{stack}");
    }

    #[test]
    fn urls_set_what_they_name_and_refuse_the_rest() {
        let s = KubeSettings::from_url(
            "kube://?image=r.example/runner:1&domain=apps.example.com&issuer=le-prod&ingress_class=&ssh=nodeport&poll_ms=50",
        )
        .expect("parses");
        assert_eq!(s.image, "r.example/runner:1");
        assert_eq!(s.domain, "apps.example.com");
        assert_eq!(s.cluster_issuer, "le-prod");
        assert_eq!(s.ingress_class, None);
        assert_eq!(s.ssh, SshExposure::NodePort);
        assert_eq!(s.poll_interval, Duration::from_millis(50));
        assert_eq!(
            KubeSettings::from_url("kube://").expect("bare"),
            KubeSettings::default()
        );
        let err = KubeSettings::from_url("kube://?colour=blue").expect_err("unknown key");
        assert!(
            err.to_string().contains("unknown setting `colour`"),
            "{err}"
        );
        assert!(KubeSettings::from_url("docker://").is_err());
    }

    #[tokio::test]
    async fn base_urls_join_the_blob_key() {
        let slugs = BaseUrlSlugs::new("https://slugs.example.invalid/");
        let url = slugs.download_url("slugs/abc.tgz").await.expect("url");
        assert_eq!(url, "https://slugs.example.invalid/slugs/abc.tgz");
    }

    #[test]
    fn long_app_names_still_make_valid_namespaces() {
        let s = KubeSettings::default();
        let short = AppName::parse("my-app").expect("name");
        assert_eq!(namespace_of(&s, &short), "app-my-app");
        let long = AppName::parse(&"a".repeat(63)).expect("name");
        let ns = namespace_of(&s, &long);
        assert_eq!(ns.len(), 63);
        assert!(ns.starts_with("app-aaa"), "{ns}");
        let other = AppName::parse(&format!("{}b", "a".repeat(62))).expect("name");
        assert_ne!(namespace_of(&s, &other), ns);
    }
}
