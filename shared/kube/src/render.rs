//! The objects of one app at one release, as pure functions of the release, the cluster
//! settings and the slug's download URL: no I/O, so they are compared with the YAML files
//! in `tests/data/kube/` and validated against the Kubernetes schemas by
//! `scripts/check-kube-manifests`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, Lifecycle, LifecycleHandler, LimitRange,
    LimitRangeItem, LimitRangeSpec, Namespace, ObjectFieldSelector, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceQuota, ResourceQuotaSpec, ResourceRequirements, SeccompProfile,
    Secret, SecretEnvSource, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
    SleepAction, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, IPBlock, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, NetworkPolicy, NetworkPolicyEgressRule,
    NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
    ServiceBackendPort,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use serde::Serialize;

use super::{
    namespace_of, KubeSettings, SshExposure, ANNOTATION_CLUSTER_ISSUER, API_APP_ROLE, CANARY,
    DOMAINS, EPMD_PORT, LABEL_APP, LABEL_CANARY_OF, LABEL_JOB, LABEL_MANAGED_BY, LABEL_RELEASE,
    LABEL_RELEASE_PHASE, LIBCLUSTER, MAINTENANCE, MAINTENANCE_HEADERS, MAINTENANCE_RETRY_AFTER,
    MANAGED_BY, NGINX, RELEASE_PHASE_TIMEOUT, RUNNER_SSH_PORT, SSH_KEYS, SSH_SERVICE, WEB,
};
use crate::domain::{AppName, Fqdn};
use crate::ports::runtime::{ReleaseSpec, Traffic, APP_PORT};

/// Variables the Deployment sets itself (plain values, or computed by the kubelet); every
/// other variable of the release goes into its Secret, with `SLUG_URL` and `SLUG_SHA256`:
/// nothing in the pod template depends on the slug or the commit, so a hot upgrade can
/// point the template's Secret at the new slug without changing the template.
const POD_ENV: [&str; 9] = [
    "PORT",
    "APP_NAME",
    "MY_POD_IP",
    "MY_NODE_NAME",
    "RELEASE_NODE",
    "RELEASE_DISTRIBUTION",
    "LIBCLUSTER_KUBERNETES_SELECTOR",
    "LIBCLUSTER_KUBERNETES_NODE_BASENAME",
    "GIGALIXIR_CLUSTER_DNS",
];

/// Everything one app needs, in the order it is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct AppObjects {
    /// The app's namespace.
    pub namespace: Namespace,
    /// Which connections reach the app's pods and leave them.
    pub network_policy: NetworkPolicy,
    /// What the namespace's pods may take together.
    pub resource_quota: ResourceQuota,
    /// Defaults and caps for each container of the namespace.
    pub limit_range: LimitRange,
    /// The identity of the app's pods.
    pub service_account: ServiceAccount,
    /// Read access to the namespace's pods and endpoints (libcluster).
    pub role: Role,
    /// Grants [`AppObjects::role`] to [`AppObjects::service_account`].
    pub role_binding: RoleBinding,
    /// The api's rights in this namespace (`ps:kill`, `run`), when it has a user.
    pub api_binding: Option<RoleBinding>,
    /// The SSH keys' ConfigMap, without data: its keys belong to another field manager.
    pub ssh_keys: ConfigMap,
    /// The release's environment and slug URL.
    pub secret: Secret,
    /// Cluster-internal HTTP to the ready replicas.
    pub web_service: Service,
    /// Headless, named after the app: resolves to every replica, ready or not.
    pub cluster_service: Service,
    /// Port 22 to a replica's SSH server.
    pub ssh_service: Service,
    /// `https://<app>.<domain>`.
    pub ingress: Ingress,
    /// The Service of the app's pods that other apps' canary Ingresses send their share to.
    pub canary_service: Service,
    /// The Service with no endpoints the Ingresses point at in maintenance mode.
    pub maintenance_service: Service,
    /// The response headers the ingress controller adds in maintenance mode.
    pub maintenance_headers: ConfigMap,
    /// The Procfile's `release:` command, run once before the rollout; `None` when the
    /// slug's process types are known and have no `release`.
    pub release_phase: Option<Job>,
    /// The replicas.
    pub deployment: Deployment,
}

impl AppObjects {
    /// The objects as one multi-document YAML text, in apply order.
    pub fn to_yaml(&self) -> Result<String, serde_saphyr::ser::Error> {
        fn doc<T: Serialize>(
            out: &mut Vec<String>,
            value: &T,
        ) -> Result<(), serde_saphyr::ser::Error> {
            out.push(serde_saphyr::to_string(value)?);
            Ok(())
        }
        let mut docs = Vec::new();
        doc(&mut docs, &self.namespace)?;
        doc(&mut docs, &self.network_policy)?;
        doc(&mut docs, &self.resource_quota)?;
        doc(&mut docs, &self.limit_range)?;
        doc(&mut docs, &self.service_account)?;
        doc(&mut docs, &self.role)?;
        doc(&mut docs, &self.role_binding)?;
        if let Some(binding) = &self.api_binding {
            doc(&mut docs, binding)?;
        }
        doc(&mut docs, &self.ssh_keys)?;
        doc(&mut docs, &self.secret)?;
        doc(&mut docs, &self.web_service)?;
        doc(&mut docs, &self.cluster_service)?;
        doc(&mut docs, &self.ssh_service)?;
        doc(&mut docs, &self.canary_service)?;
        doc(&mut docs, &self.ingress)?;
        doc(&mut docs, &self.maintenance_service)?;
        doc(&mut docs, &self.maintenance_headers)?;
        if let Some(job) = &self.release_phase {
            doc(&mut docs, job)?;
        }
        doc(&mut docs, &self.deployment)?;
        Ok(docs.join("---\n"))
    }
}

/// The labels of every object of `app`.
pub fn app_labels(app: &AppName) -> BTreeMap<String, String> {
    [
        (LABEL_APP.to_owned(), app.to_string()),
        (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
    ]
    .into()
}

/// The label selector of everything the platform made for `app`.
pub fn app_selector(app: &AppName) -> String {
    format!("{LABEL_APP}={app},{LABEL_MANAGED_BY}={MANAGED_BY}")
}

/// The label selector of the pods of one release.
pub fn release_selector(app: &AppName, version: u32) -> String {
    format!("{LABEL_APP}={app},{LABEL_RELEASE}={version}")
}

/// The name of the Secret of release `version`.
pub fn secret_name(version: u32) -> String {
    format!("env-v{version}")
}

fn meta(name: &str, namespace: &str, app: &AppName) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(app_labels(app)),
        ..Default::default()
    }
}

fn plain(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(port),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn service_port(name: &str, port: u16, target: &str) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: i32::from(port),
        target_port: Some(IntOrString::String(target.to_owned())),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

fn seconds(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The restart annotation's object: only the pod template's annotation, applied by
/// [`RESTART_MANAGER`](super::RESTART_MANAGER) over the Deployment the deploy applied.
pub fn restart_patch(namespace: &str, restarted_at: Option<&str>) -> serde_json::Value {
    let annotations = match restarted_at {
        Some(at) => serde_json::json!({ super::ANNOTATION_RESTARTED_AT: at }),
        None => serde_json::json!({}),
    };
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": WEB, "namespace": namespace },
        "spec": { "template": { "metadata": { "annotations": annotations } } },
    })
}

/// The hot upgrade's mark on the web Deployment, applied by
/// [`HOT_UPGRADE_MANAGER`](super::HOT_UPGRADE_MANAGER): `Some(release)` while an upgrade to
/// it may have changed pods, `None` to take the mark away.
pub fn upgrading_patch(namespace: &str, release: Option<u32>) -> serde_json::Value {
    let annotations = match release {
        Some(v) => serde_json::json!({ super::ANNOTATION_UPGRADING: v.to_string() }),
        None => serde_json::json!({}),
    };
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": WEB, "namespace": namespace, "annotations": annotations },
    })
}

/// The app's namespace.
pub fn namespace_object(settings: &KubeSettings, app: &AppName) -> Namespace {
    let mut labels = app_labels(app);
    // The pods meet the "restricted" Pod Security Standard; the namespace enforces it.
    labels.insert(
        "pod-security.kubernetes.io/enforce".into(),
        "restricted".into(),
    );
    Namespace {
        metadata: ObjectMeta {
            name: Some(namespace_of(settings, app)),
            labels: Some(labels),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The SSH keys' ConfigMap: with `keys`, its `authorized_keys` (one key a line); without,
/// only its name and labels (what the deploy applies, so that it never owns the keys).
pub fn ssh_keys_object(
    settings: &KubeSettings,
    app: &AppName,
    keys: Option<&[String]>,
) -> ConfigMap {
    let data = keys.map(|keys| {
        let mut text = keys.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        [("authorized_keys".to_owned(), text)].into()
    });
    ConfigMap {
        metadata: meta(SSH_KEYS, &namespace_of(settings, app), app),
        data,
        ..Default::default()
    }
}

/// Renders every object of `spec.app` at `spec.version`; `slug_url` is where the runner
/// downloads the slug.
pub fn render(spec: &ReleaseSpec, settings: &KubeSettings, slug_url: &str) -> AppObjects {
    let app = &spec.app;
    let ns = namespace_of(settings, app);
    let version = spec.version.0;
    let selector: BTreeMap<String, String> = [(LABEL_APP.to_owned(), app.to_string())].into();

    let namespace = namespace_object(settings, app);

    let service_account = ServiceAccount {
        metadata: meta(WEB, &ns, app),
        ..Default::default()
    };
    let role = Role {
        metadata: meta(LIBCLUSTER, &ns, app),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["endpoints".into(), "pods".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        }]),
    };
    let role_binding = RoleBinding {
        metadata: meta(LIBCLUSTER, &ns, app),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: LIBCLUSTER.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: WEB.into(),
            namespace: Some(ns.clone()),
            ..Default::default()
        }]),
    };
    let ssh_keys = ssh_keys_object(settings, app, None);
    let api_binding = settings.api_user.as_ref().map(|user| RoleBinding {
        metadata: meta(API_APP_ROLE, &ns, app),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: API_APP_ROLE.into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: user.clone(),
            ..Default::default()
        }]),
    });

    let mut data: BTreeMap<String, ByteString> = spec
        .env
        .iter()
        .filter(|(k, _)| !POD_ENV.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), ByteString(v.expose().as_bytes().to_vec())))
        .collect();
    data.insert("SLUG_URL".into(), ByteString(slug_url.as_bytes().to_vec()));
    data.insert(
        "SLUG_SHA256".into(),
        ByteString(spec.slug.sha256.as_bytes().to_vec()),
    );
    let secret = Secret {
        metadata: meta(&secret_name(version), &ns, app),
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    };

    let web_service = Service {
        metadata: meta(WEB, &ns, app),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector.clone()),
            ports: Some(vec![service_port("http", 80, "http")]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let cluster_service = Service {
        metadata: meta(app.as_str(), &ns, app),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // Nodes must find each other while booting, before they are ready.
            publish_not_ready_addresses: Some(true),
            selector: Some(selector.clone()),
            ports: Some(vec![service_port("epmd", EPMD_PORT, "epmd")]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ssh_service = Service {
        metadata: meta(SSH_SERVICE, &ns, app),
        spec: Some(ServiceSpec {
            type_: Some(
                match settings.ssh {
                    SshExposure::LoadBalancer => "LoadBalancer",
                    SshExposure::NodePort => "NodePort",
                }
                .into(),
            ),
            selector: Some(selector.clone()),
            ports: Some(vec![service_port("ssh", 22, "ssh")]),
            // A session's reconnects (scp after ssh) land on the same replica.
            session_affinity: Some("ClientIP".into()),
            ..Default::default()
        }),
        ..Default::default()
    };

    let canary_service = canary_service(settings, app);
    let ingress = web_ingress(settings, app, &spec.traffic);
    let (maintenance_service, maintenance_headers) = maintenance_objects(&ns, app);

    let deployment = deployment(spec, settings, &ns, selector);
    let release_phase = spec
        .slug
        .has_release_phase()
        .then(|| release_phase_job(spec, &ns, &deployment));

    AppObjects {
        namespace,
        network_policy: network_policy(settings, &ns, app),
        resource_quota: resource_quota(&ns, app),
        limit_range: limit_range(&ns, app),
        service_account,
        role,
        role_binding,
        api_binding,
        ssh_keys,
        secret,
        web_service,
        cluster_service,
        ssh_service,
        canary_service,
        ingress,
        maintenance_service,
        maintenance_headers,
        release_phase,
        deployment,
    }
}

/// The NetworkPolicy of each app namespace.
pub const WALLS: &str = "walls";
/// The ResourceQuota of each app namespace.
pub const QUOTA: &str = "quota";
/// The LimitRange of each app namespace.
pub const LIMITS: &str = "limits";
/// Where cloud metadata servers answer (and hand out credentials): never reachable.
pub const LINK_LOCAL: &str = "169.254.0.0/16";

/// Default deny, then: the app's own pods to each other on any port (epmd, distribution,
/// HTTP), the ingress controller's namespace to the HTTP port, anyone to the SSH port (the
/// `ssh` Service's load balancer keeps the client's address); out: the app's pods, the
/// cluster DNS, and every address outside the link-local range. Other apps' pods are out
/// of reach by their own namespace's policy.
fn network_policy(settings: &KubeSettings, ns: &str, app: &AppName) -> NetworkPolicy {
    let tcp = |port: u16| NetworkPolicyPort {
        port: Some(IntOrString::Int(port.into())),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let own_pods = NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..Default::default()
    };
    let namespace_named = |name: &str| LabelSelector {
        match_labels: Some([("kubernetes.io/metadata.name".to_owned(), name.to_owned())].into()),
        ..Default::default()
    };
    let egress = vec![
        NetworkPolicyEgressRule {
            to: Some(vec![own_pods.clone()]),
            ports: None,
        },
        NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(namespace_named("kube-system")),
                pod_selector: Some(LabelSelector {
                    match_labels: Some([("k8s-app".to_owned(), "kube-dns".to_owned())].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ports: Some(vec![
                NetworkPolicyPort {
                    port: Some(IntOrString::Int(53)),
                    protocol: Some("UDP".into()),
                    ..Default::default()
                },
                tcp(53),
            ]),
        },
        NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: "0.0.0.0/0".into(),
                    except: Some(vec![LINK_LOCAL.into()]),
                }),
                ..Default::default()
            }]),
            ports: None,
        },
    ];
    NetworkPolicy {
        metadata: meta(WALLS, ns, app),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![own_pods]),
                    ports: None,
                },
                NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(namespace_named(&settings.ingress_namespace)),
                        ..Default::default()
                    }]),
                    ports: Some(vec![tcp(APP_PORT)]),
                },
                NetworkPolicyIngressRule {
                    from: None,
                    ports: Some(vec![tcp(RUNNER_SSH_PORT)]),
                },
            ]),
            egress: Some(egress),
        }),
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
        .collect()
}

/// What one app's pods may take together: the largest app an account may run (its replicas
/// × size quota), a rollout's surge and a release phase included.
fn resource_quota(ns: &str, app: &AppName) -> ResourceQuota {
    ResourceQuota {
        metadata: meta(QUOTA, ns, app),
        spec: Some(ResourceQuotaSpec {
            hard: Some(quantities(&[
                ("pods", "64"),
                ("requests.cpu", "128"),
                ("requests.memory", "256Gi"),
                ("limits.memory", "256Gi"),
                ("requests.ephemeral-storage", "64Gi"),
                ("limits.ephemeral-storage", "128Gi"),
                ("services", "8"),
                ("services.loadbalancers", "1"),
                ("secrets", "64"),
                ("configmaps", "16"),
            ])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Each container: what it gets when it asks for nothing, and the most it may ask for.
fn limit_range(ns: &str, app: &AppName) -> LimitRange {
    LimitRange {
        metadata: meta(LIMITS, ns, app),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default: Some(quantities(&[
                    ("memory", "512Mi"),
                    ("ephemeral-storage", "2Gi"),
                ])),
                default_request: Some(quantities(&[
                    ("cpu", "100m"),
                    ("memory", "512Mi"),
                    ("ephemeral-storage", "256Mi"),
                ])),
                max: Some(quantities(&[
                    ("memory", "128Gi"),
                    ("ephemeral-storage", "8Gi"),
                ])),
                ..Default::default()
            }],
        }),
    }
}

/// The name of the release phase's Job of release `version`.
pub fn release_phase_name(version: u32) -> String {
    format!("release-v{version}")
}

/// The label selector of the pod of a release phase.
pub fn release_phase_selector(version: u32) -> String {
    format!("{LABEL_RELEASE_PHASE}={version}")
}

/// The web pod's template as a one-off pod runs it: the same image, environment,
/// confinement and slug, with `args`, no probes, ports or SSH keys, never restarted.
fn one_off_pod(web: &Deployment, args: Vec<String>) -> PodSpec {
    let mut pod = web
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    pod.restart_policy = Some("Never".into());
    pod.volumes = pod
        .volumes
        .map(|v| v.into_iter().filter(|v| v.name != SSH_KEYS).collect());
    for c in &mut pod.containers {
        c.args = Some(args.clone());
        c.readiness_probe = None;
        c.lifecycle = None;
        c.ports = None;
        c.volume_mounts = c
            .volume_mounts
            .take()
            .map(|m| m.into_iter().filter(|m| m.name != SSH_KEYS).collect());
    }
    pod
}

/// The release phase: the web pod's environment and image, the runner's `release-phase`
/// command, one attempt. Its pod has no app label, so no Service sends it traffic and
/// libcluster does not take it for a node.
pub fn release_phase_job(spec: &ReleaseSpec, ns: &str, web: &Deployment) -> Job {
    let version = spec.version.0;
    Job {
        metadata: meta(&release_phase_name(version), ns, &spec.app),
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(seconds(RELEASE_PHASE_TIMEOUT)),
            ttl_seconds_after_finished: Some(24 * 3600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([(LABEL_RELEASE_PHASE.to_owned(), version.to_string())].into()),
                    ..Default::default()
                }),
                spec: Some(one_off_pod(web, vec!["release-phase".into()])),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// How long past its own time limit a one-off job's pod may live: its start (the image,
/// the slug's download) counts against the Job's deadline, not against the command's.
pub const JOB_START_ALLOWANCE: std::time::Duration = std::time::Duration::from_secs(120);

/// A one-off job (`run`) named `name`: the running web pod's template with `command` as a
/// shell command line, killed at `limit` by `timeout` inside the pod and by the Job's
/// deadline outside it, one attempt, gone an hour after it ends. Neither the Job nor its
/// pod carries the managed-by label, so a deploy's pruning leaves a running job alone;
/// its pod has no app label, so no Service sends it traffic and libcluster does not take
/// it for a node.
pub fn one_off_job(
    spec: &ReleaseSpec,
    ns: &str,
    web: &Deployment,
    name: &str,
    command: &str,
    limit: std::time::Duration,
) -> Job {
    let version = spec.version.0.to_string();
    let args = [
        "timeout",
        "-s",
        "KILL",
        &limit.as_secs().max(1).to_string(),
        "sh",
        "-c",
        command,
    ]
    .map(str::to_owned)
    .to_vec();
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            labels: Some(
                [
                    (LABEL_APP.to_owned(), spec.app.to_string()),
                    (LABEL_JOB.to_owned(), version.clone()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(seconds(limit + JOB_START_ALLOWANCE)),
            ttl_seconds_after_finished: Some(3600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([(LABEL_JOB.to_owned(), version)].into()),
                    ..Default::default()
                }),
                spec: Some(one_off_pod(web, args)),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn deployment(
    spec: &ReleaseSpec,
    settings: &KubeSettings,
    ns: &str,
    selector: BTreeMap<String, String>,
) -> Deployment {
    let app = &spec.app;
    let version = spec.version.0.to_string();
    let mut pod_labels = selector.clone();
    pod_labels.insert(LABEL_RELEASE.into(), version.clone());
    let release_annotation: BTreeMap<String, String> =
        [(LABEL_RELEASE.to_owned(), version.clone())].into();
    let mut pod_annotations = release_annotation.clone();
    pod_annotations.insert("kubectl.kubernetes.io/default-container".into(), WEB.into());

    let env = vec![
        plain("PORT", APP_PORT.to_string()),
        plain("APP_NAME", app.as_str()),
        EnvVar {
            name: "MY_POD_IP".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
        plain("MY_NODE_NAME", "$(APP_NAME)@$(MY_POD_IP)"),
        plain("RELEASE_NODE", "$(MY_NODE_NAME)"),
        plain("RELEASE_DISTRIBUTION", "name"),
        plain(
            "LIBCLUSTER_KUBERNETES_SELECTOR",
            format!("{LABEL_APP}={app}"),
        ),
        plain("LIBCLUSTER_KUBERNETES_NODE_BASENAME", app.as_str()),
        // The headless Service: resolves to every replica (the namespace's search domain).
        plain("GIGALIXIR_CLUSTER_DNS", app.as_str()),
    ];

    let probe = match &spec.health_path {
        None => Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("http".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        Some(path) => Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.clone()),
                port: IntOrString::String("http".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
    };
    let readiness = Probe {
        period_seconds: Some(2),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        success_threshold: Some(1),
        ..probe
    };

    let memory_mib = (spec.memory_bytes.max(1) + (1 << 20) - 1) >> 20;
    let cpu_millis = ((spec.memory_bytes.max(0) * 1000) >> 30).max(50);
    let resources = ResourceRequirements {
        requests: Some(
            [
                ("cpu".to_owned(), Quantity(format!("{cpu_millis}m"))),
                ("memory".to_owned(), Quantity(format!("{memory_mib}Mi"))),
            ]
            .into(),
        ),
        limits: Some([("memory".to_owned(), Quantity(format!("{memory_mib}Mi")))].into()),
        ..Default::default()
    };

    let drain = seconds(spec.drain);
    // Lets the ingress stop sending requests before the release hears SIGTERM.
    let lifecycle = (drain > 0).then(|| Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction {
                seconds: drain.min(5),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });

    let container = Container {
        name: WEB.into(),
        image: Some(
            settings
                .image
                .replace("{stack}", spec.slug.stack().as_str()),
        ),
        image_pull_policy: Some("IfNotPresent".into()),
        env: Some(env),
        env_from: Some(vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: super::render::secret_name(spec.version.0),
                optional: Some(false),
            }),
            ..Default::default()
        }]),
        ports: Some(vec![
            port("http", APP_PORT),
            port("ssh", RUNNER_SSH_PORT),
            port("epmd", EPMD_PORT),
        ]),
        readiness_probe: Some(readiness),
        resources: Some(resources),
        lifecycle,
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "app".into(),
                mount_path: "/app".into(),
                ..Default::default()
            },
            VolumeMount {
                name: SSH_KEYS.into(),
                mount_path: "/etc/gigalixir/ssh".into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };

    let mut deployment_annotations = release_annotation;
    deployment_annotations.insert(super::ANNOTATION_TEMPLATE.into(), version.clone());
    Deployment {
        metadata: ObjectMeta {
            annotations: Some(deployment_annotations),
            ..meta(WEB, ns, app)
        },
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(spec.replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            // One replica that stays unready this long stops the rollout.
            progress_deadline_seconds: Some(
                i32::try_from(spec.boot_timeout.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(pod_annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(WEB.into()),
                    termination_grace_period_seconds: Some(drain),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(1000),
                        run_as_group: Some(1000),
                        fs_group: Some(1000),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    volumes: Some(vec![
                        Volume {
                            // The slug unpacks into memory, as on Docker.
                            name: "app".into(),
                            empty_dir: Some(EmptyDirVolumeSource {
                                medium: Some("Memory".into()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        Volume {
                            name: SSH_KEYS.into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: SSH_KEYS.into(),
                                optional: Some(true),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Ingress rules sending each of `hosts` (every path) to `service`'s `http` port.
fn rules_to(hosts: &[String], service: &str) -> Vec<IngressRule> {
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: service.into(),
            port: Some(ServiceBackendPort {
                name: Some("http".into()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    hosts
        .iter()
        .map(|host| IngressRule {
            host: Some(host.clone()),
            http: Some(HTTPIngressRuleValue {
                paths: vec![HTTPIngressPath {
                    path: Some("/".into()),
                    path_type: "Prefix".into(),
                    backend: backend.clone(),
                }],
            }),
        })
        .collect()
}

/// An Ingress named `name` sending each of `hosts` (name, TLS Secret) to the web Service,
/// with cert-manager's annotation: one certificate per host, so a host whose DNS is not
/// set up yet does not hold back the others' certificates. `traffic` as ingress-nginx
/// does it: in maintenance mode the Service with no endpoints (the controller answers 503)
/// and a `Retry-After` header; with a canary of weight 1–99, a cookie that keeps each
/// browser on the side it was first sent to (the canary's Ingress copies it).
fn ingress(
    settings: &KubeSettings,
    ns: &str,
    app: &AppName,
    name: &str,
    hosts: &[(String, String)],
    traffic: &Traffic,
) -> Ingress {
    let mut metadata = meta(name, ns, app);
    let mut annotations: BTreeMap<String, String> = [(
        ANNOTATION_CLUSTER_ISSUER.to_owned(),
        settings.cluster_issuer.clone(),
    )]
    .into();
    if traffic.maintenance {
        annotations.insert(
            format!("{NGINX}custom-headers"),
            format!("{ns}/{MAINTENANCE_HEADERS}"),
        );
    }
    if !traffic.maintenance
        && traffic
            .canary
            .as_ref()
            .is_some_and(|c| (1..100).contains(&c.weight))
    {
        for (key, value) in [
            ("affinity", "cookie".to_owned()),
            ("session-cookie-name", format!("gx_canary_{app}")),
            ("session-cookie-max-age", "86400".to_owned()),
            ("session-cookie-samesite", "Lax".to_owned()),
        ] {
            annotations.insert(format!("{NGINX}{key}"), value);
        }
    }
    metadata.annotations = Some(annotations);
    let names: Vec<String> = hosts.iter().map(|(host, _)| host.clone()).collect();
    let service = if traffic.maintenance {
        MAINTENANCE
    } else {
        WEB
    };
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: settings.ingress_class.clone(),
            tls: Some(
                hosts
                    .iter()
                    .map(|(host, secret)| IngressTLS {
                        hosts: Some(vec![host.clone()]),
                        secret_name: Some(secret.clone()),
                    })
                    .collect(),
            ),
            rules: Some(rules_to(&names, service)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The app's host under the platform's domain.
fn app_host(settings: &KubeSettings, app: &AppName) -> String {
    format!("{app}.{}", settings.domain)
}

/// The Ingress of `APP.<domain>` ([`WEB`]) as `traffic` wants it.
pub fn web_ingress(settings: &KubeSettings, app: &AppName, traffic: &Traffic) -> Ingress {
    ingress(
        settings,
        &namespace_of(settings, app),
        app,
        WEB,
        &[(app_host(settings, app), format!("{WEB}-tls"))],
        traffic,
    )
}

/// The Service with no selector, so no endpoints, that maintenance mode points the
/// Ingresses at, and the headers the ingress controller adds then.
fn maintenance_objects(ns: &str, app: &AppName) -> (Service, ConfigMap) {
    let service = Service {
        metadata: meta(MAINTENANCE, ns, app),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(APP_PORT.into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let headers = ConfigMap {
        metadata: meta(MAINTENANCE_HEADERS, ns, app),
        data: Some(
            [(
                "Retry-After".to_owned(),
                MAINTENANCE_RETRY_AFTER.to_string(),
            )]
            .into(),
        ),
        ..Default::default()
    };
    (service, headers)
}

/// The name of the Ingress, in the canary app's namespace, that takes a share of `app`'s
/// requests.
pub fn canary_name(app: &AppName) -> String {
    format!("canary-of-{app}")
}

/// The Service [`CANARY`] of `app`'s web pods, which canary Ingresses of other apps send
/// their share to: one for all of them (a namespace holds few Services).
pub fn canary_service(settings: &KubeSettings, app: &AppName) -> Service {
    Service {
        metadata: meta(CANARY, &namespace_of(settings, app), app),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some([(LABEL_APP.to_owned(), app.to_string())].into()),
            ports: Some(vec![service_port("http", 80, "http")]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What sends `canary.weight` % of `app`'s new visitors, on its host and its custom
/// `domains`, to the canary app: an ingress-nginx canary Ingress for the same hosts in the
/// canary's namespace, to its [`CANARY`] Service, labelled [`LABEL_CANARY_OF`] (without
/// the managed-by label, so the canary's own deploys do not prune it). `None` without a
/// canary, at weight 0 (everyone stays), or in maintenance (everyone gets the 503).
pub fn render_canary(
    settings: &KubeSettings,
    app: &AppName,
    domains: &[Fqdn],
    traffic: &Traffic,
) -> Option<Ingress> {
    if traffic.maintenance {
        return None;
    }
    let canary = traffic.canary.as_ref().filter(|c| c.weight > 0)?;
    let mut hosts = vec![app_host(settings, app)];
    hosts.extend(domains.iter().map(ToString::to_string));
    let annotations: BTreeMap<String, String> = [
        ("canary", "true".to_owned()),
        ("canary-weight", canary.weight.min(100).to_string()),
        ("canary-weight-total", "100".to_owned()),
        ("affinity-canary-behavior", "sticky".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("{NGINX}{k}"), v))
    .collect();
    Some(Ingress {
        metadata: ObjectMeta {
            name: Some(canary_name(app)),
            namespace: Some(namespace_of(settings, &canary.app)),
            labels: Some(
                [
                    (LABEL_APP.to_owned(), canary.app.to_string()),
                    (LABEL_CANARY_OF.to_owned(), app.to_string()),
                ]
                .into(),
            ),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: settings.ingress_class.clone(),
            rules: Some(rules_to(&hosts, CANARY)),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The Secret of a custom domain's certificate: `tls-<domain>`, or for a name too long
/// for a Secret's (253 characters), `tls-` and the first 32 hex digits of its SHA-256.
fn tls_secret(domain: &Fqdn) -> String {
    let name = format!("tls-{domain}");
    if name.len() <= 253 {
        return name;
    }
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(domain.as_str().as_bytes()));
    format!("tls-{}", &hash[..32])
}

/// The Ingress of an app's custom domains ([`DOMAINS`]), each with its own cert-manager
/// certificate in the Secret [`tls_secret`]; `None` when the app has none (the Ingress is
/// then deleted). Kept apart from the release's objects: adding a domain touches no
/// release, and a deploy does not reset the domains.
pub fn render_domains(
    settings: &KubeSettings,
    app: &AppName,
    domains: &[Fqdn],
    traffic: &Traffic,
) -> Option<Ingress> {
    if domains.is_empty() {
        return None;
    }
    let ns = namespace_of(settings, app);
    let hosts: Vec<(String, String)> = domains
        .iter()
        .map(|d| (d.to_string(), tls_secret(d)))
        .collect();
    Some(ingress(settings, &ns, app, DOMAINS, &hosts, traffic))
}
