//! The package cache on Kubernetes: a Service in front of the `packages` function's pods,
//! and the NetworkPolicies that make it the build pods' one way out — build pods may reach
//! the cache (and the cluster's DNS to find it) and nothing else, and the cache admits
//! only build pods.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

/// The label of the package cache's pods.
pub const PACKAGES_APP: &str = "gigalixir-packages";
/// The label of build pods (`gigalixir.role=build`).
pub const BUILD_ROLE: &str = "build";
/// The port the cache's pods serve on.
pub const PACKAGES_PORT: i32 = 8080;

/// The objects, in apply order.
#[derive(Debug, Clone)]
pub struct PackagesObjects {
    /// `http://gigalixir-packages.<namespace>.svc/`: the Hex repository builds use.
    pub service: Service,
    /// Build pods: no ingress; egress to the cache and to the cluster's DNS only.
    pub build_policy: NetworkPolicy,
    /// The cache's pods: ingress from build pods only, on the cache's port.
    pub cache_policy: NetworkPolicy,
}

impl PackagesObjects {
    /// The objects as one multi-document YAML text.
    pub fn to_yaml(&self) -> Result<String, serde_saphyr::ser::Error> {
        fn doc<T: Serialize>(value: &T) -> Result<String, serde_saphyr::ser::Error> {
            serde_saphyr::to_string(value)
        }
        Ok([
            doc(&self.service)?,
            doc(&self.build_policy)?,
            doc(&self.cache_policy)?,
        ]
        .join("---\n"))
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn selector(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels(pairs)),
        ..Default::default()
    }
}

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels(&[("app.kubernetes.io/part-of", "gigalixir")])),
        ..Default::default()
    }
}

fn port(protocol: &str, number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.to_owned()),
        port: Some(IntOrString::Int(number)),
        ..Default::default()
    }
}

/// The package cache's objects in `namespace` (where the build pods run too).
pub fn render_packages(namespace: &str) -> PackagesObjects {
    let cache = [("app.kubernetes.io/name", PACKAGES_APP)];
    let builds = [("gigalixir.role", BUILD_ROLE)];
    let service = Service {
        metadata: meta(PACKAGES_APP, namespace),
        spec: Some(ServiceSpec {
            selector: Some(labels(&cache)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(PACKAGES_PORT)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let dns = NetworkPolicyPeer {
        namespace_selector: Some(selector(&[("kubernetes.io/metadata.name", "kube-system")])),
        pod_selector: Some(selector(&[("k8s-app", "kube-dns")])),
        ..Default::default()
    };
    let build_policy = NetworkPolicy {
        metadata: meta("gigalixir-builds-reach-the-package-cache-only", namespace),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(&builds)),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![]),
            egress: Some(vec![
                NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(selector(&cache)),
                        ..Default::default()
                    }]),
                    ports: Some(vec![port("TCP", PACKAGES_PORT)]),
                },
                NetworkPolicyEgressRule {
                    to: Some(vec![dns]),
                    ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
                },
            ]),
        }),
    };
    let cache_policy = NetworkPolicy {
        metadata: meta("gigalixir-package-cache-admits-builds", namespace),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(&cache)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(selector(&builds)),
                    ..Default::default()
                }]),
                ports: Some(vec![port("TCP", PACKAGES_PORT)]),
            }]),
            egress: None,
        }),
    };
    PackagesObjects {
        service,
        build_policy,
        cache_policy,
    }
}
