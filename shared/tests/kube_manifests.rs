//! The Kubernetes objects of an app, rendered and compared with the snapshots in
//! `tests/data/kube/` (`UPDATE_SNAPSHOTS=1` rewrites them; `scripts/check-kube-manifests`
//! validates them against the Kubernetes schemas), and what a running app gets from them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use shared::domain::{AppName, ReleaseVersion, Secret};
use shared::kube_runtime::{render, AppObjects, KubeSettings};
use shared::model::SlugRef;
use shared::ports::runtime::ReleaseSpec;

const FAKE_COOKIE: &str = "fake-cookie-for-snapshots";
const FAKE_SKB: &str = "fake-secret-key-base-for-snapshots-only";
const SHA: &str = "0000000000000000000000000000000000000000000000000000000000000abc";

/// The environment the deploy function gives a release (its `release_env`).
fn env(app: &str, commit: &str, config: &[(&str, &str)]) -> BTreeMap<String, Secret> {
    let mut env: BTreeMap<String, Secret> = config
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Secret::new(*v)))
        .collect();
    for (k, v) in [
        ("PORT", "4000"),
        ("APP_NAME", app),
        ("SOURCE_VERSION", commit),
        ("RELEASE_COOKIE", FAKE_COOKIE),
        ("ERLANG_COOKIE", FAKE_COOKIE),
        ("SECRET_KEY_BASE", FAKE_SKB),
        ("MIX_ENV", "prod"),
        (
            "LIBCLUSTER_KUBERNETES_SELECTOR",
            &format!("gigalixir.app={app}"),
        ),
        ("LIBCLUSTER_KUBERNETES_NODE_BASENAME", app),
        ("GIGALIXIR_CLUSTER_DNS", app),
    ] {
        env.insert(k.to_owned(), Secret::new(v));
    }
    env
}

fn slug(process_types: &[&str]) -> SlugRef {
    SlugRef {
        key: format!("slugs/{SHA}.tgz"),
        sha256: SHA.into(),
        size: 5_781_690,
        process_types: Some(process_types.iter().map(|t| (*t).to_owned()).collect()),
        stack: None,
    }
}

/// A new app: one replica of 0.5 GB, TCP health check, no config vars, default settings.
fn default_tcp() -> (ReleaseSpec, KubeSettings) {
    let spec = ReleaseSpec {
        app: AppName::parse("my-app").expect("name"),
        version: ReleaseVersion(1),
        slug: slug(&["web"]),
        env: env("my-app", "1a2b3c4d5e6f1a2b3c4d5e6f1a2b3c4d5e6f1a2b", &[]),
        replicas: 1,
        memory_bytes: 1 << 29,
        boot_timeout: Duration::from_secs(60),
        health_path: None,
        health_status: 200,
        drain: Duration::from_secs(30),
        traffic: Default::default(),
    };
    (spec, KubeSettings::default())
}

/// Three replicas of 1 GB, an HTTP health check, config vars, a Procfile with a `release:`
/// command, a production-like cluster.
fn http_three_replicas() -> (ReleaseSpec, KubeSettings) {
    let spec = ReleaseSpec {
        app: AppName::parse("shop").expect("name"),
        version: ReleaseVersion(7),
        slug: slug(&["web", "release"]),
        env: env(
            "shop",
            "9f8e7d6c5b4a9f8e7d6c5b4a9f8e7d6c5b4a9f8e",
            &[
                (
                    "DATABASE_URL",
                    "postgres://fake:fake@db.example.invalid/shop",
                ),
                ("POOL_SIZE", "10"),
            ],
        ),
        replicas: 3,
        memory_bytes: 1 << 30,
        boot_timeout: Duration::from_secs(90),
        health_path: Some("/health".into()),
        health_status: 200,
        drain: Duration::from_secs(20),
        traffic: Default::default(),
    };
    let settings = KubeSettings {
        image: "registry.example.invalid/gigalixir/runner:2026.11".into(),
        domain: "apps.example.com".into(),
        cluster_issuer: "letsencrypt-prod".into(),
        api_user: Some("api@project.iam.gserviceaccount.com".into()),
        ..KubeSettings::default()
    };
    (spec, settings)
}

fn rendered((spec, settings): (ReleaseSpec, KubeSettings)) -> AppObjects {
    let url = format!(
        "https://slugs.example.invalid/{}?X-Signature=fake",
        spec.slug.key
    );
    render(&spec, &settings, &url)
}

fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/kube")
        .join(format!("{name}.yaml"))
}

/// Compares `objects` with the snapshot `name`, or rewrites it with `UPDATE_SNAPSHOTS=1`.
fn check_snapshot(name: &str, objects: &AppObjects) {
    let yaml = objects.to_yaml().expect("yaml");
    let path = snapshot_path(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &yaml).expect("write snapshot");
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run UPDATE_SNAPSHOTS=1 cargo test -p gigalixir-shared --features kube --test kube_manifests",
            path.display()
        )
    });
    if stored != yaml {
        let first = stored
            .lines()
            .zip(yaml.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| stored.lines().count().min(yaml.lines().count()));
        panic!(
            "{} differs from the rendering at line {}:\n  stored:   {:?}\n  rendered: {:?}\n\
             if the change is intended: UPDATE_SNAPSHOTS=1 cargo test -p gigalixir-shared --features kube --test kube_manifests",
            path.display(),
            first + 1,
            stored.lines().nth(first),
            yaml.lines().nth(first),
        );
    }
    // The YAML reads back as the very objects (no number turned into a string or back).
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&stored).expect("parse");
    let mut typed = vec![
        serde_json::to_value(&objects.namespace),
        serde_json::to_value(&objects.network_policy),
        serde_json::to_value(&objects.resource_quota),
        serde_json::to_value(&objects.limit_range),
        serde_json::to_value(&objects.service_account),
        serde_json::to_value(&objects.role),
        serde_json::to_value(&objects.role_binding),
    ];
    if let Some(binding) = &objects.api_binding {
        typed.push(serde_json::to_value(binding));
    }
    typed.extend([
        serde_json::to_value(&objects.ssh_keys),
        serde_json::to_value(&objects.secret),
        serde_json::to_value(&objects.web_service),
        serde_json::to_value(&objects.cluster_service),
        serde_json::to_value(&objects.ssh_service),
        serde_json::to_value(&objects.canary_service),
        serde_json::to_value(&objects.ingress),
        serde_json::to_value(&objects.maintenance_service),
        serde_json::to_value(&objects.maintenance_headers),
    ]);
    if let Some(job) = &objects.release_phase {
        typed.push(serde_json::to_value(job));
    }
    typed.push(serde_json::to_value(&objects.deployment));
    assert_eq!(docs.len(), typed.len());
    for (doc, typed) in docs.iter().zip(typed) {
        assert_eq!(
            doc,
            &typed.expect("json"),
            "{name}: a document does not read back"
        );
    }
}

#[test]
fn default_tcp_health_matches_its_snapshot() {
    check_snapshot("default-tcp", &rendered(default_tcp()));
}

#[test]
fn http_health_three_replicas_with_config_matches_its_snapshot() {
    check_snapshot("http-3-replicas-config", &rendered(http_three_replicas()));
}

fn env_of(o: &AppObjects) -> BTreeMap<String, serde_json::Value> {
    let pod = o
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec");
    pod.containers[0]
        .env
        .as_ref()
        .expect("env")
        .iter()
        .map(|e| (e.name.clone(), serde_json::to_value(e).expect("json")))
        .collect()
}

#[test]
fn a_replica_gets_the_runtime_contract_environment() {
    let o = rendered(http_three_replicas());
    let env = env_of(&o);
    assert_eq!(env["PORT"]["value"], "4000");
    assert_eq!(env["APP_NAME"]["value"], "shop");
    assert_eq!(
        env["MY_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    assert_eq!(env["MY_NODE_NAME"]["value"], "$(APP_NAME)@$(MY_POD_IP)");
    assert_eq!(env["RELEASE_NODE"]["value"], "$(MY_NODE_NAME)");
    assert_eq!(env["RELEASE_DISTRIBUTION"]["value"], "name");
    assert_eq!(
        env["LIBCLUSTER_KUBERNETES_SELECTOR"]["value"],
        "gigalixir.app=shop"
    );
    assert_eq!(env["LIBCLUSTER_KUBERNETES_NODE_BASENAME"]["value"], "shop");
    // Dependent variables expand only from variables defined before them.
    let order: Vec<&String> = env.keys().collect();
    let pos = |k: &str| {
        o.deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod")
            .containers[0]
            .env
            .as_ref()
            .expect("env")
            .iter()
            .position(|e| e.name == k)
            .expect(k)
    };
    assert!(pos("APP_NAME") < pos("MY_NODE_NAME") && pos("MY_POD_IP") < pos("MY_NODE_NAME"));
    assert!(pos("MY_NODE_NAME") < pos("RELEASE_NODE"), "{order:?}");

    // Config vars, cookies and the slug URL come from the release's Secret.
    let data = o.secret.data.as_ref().expect("data");
    let text = |k: &str| String::from_utf8(data[k].0.clone()).expect("utf8");
    assert_eq!(
        text("DATABASE_URL"),
        "postgres://fake:fake@db.example.invalid/shop"
    );
    assert_eq!(text("ERLANG_COOKIE"), FAKE_COOKIE);
    assert_eq!(text("RELEASE_COOKIE"), FAKE_COOKIE);
    assert_eq!(text("SECRET_KEY_BASE"), FAKE_SKB);
    assert!(text("SLUG_URL").starts_with("https://slugs.example.invalid/slugs/"));
    // The commit and the slug's checksum too: nothing in the pod template names the slug
    // (a hot upgrade points the Secret at another without a rollout).
    assert_eq!(
        text("SOURCE_VERSION"),
        "9f8e7d6c5b4a9f8e7d6c5b4a9f8e7d6c5b4a9f8e"
    );
    assert_eq!(text("SLUG_SHA256"), SHA);
    assert!(!env.contains_key("SOURCE_VERSION") && !env.contains_key("SLUG_SHA256"));
    assert!(
        !data.contains_key("PORT"),
        "pod-level variables stay out of the Secret"
    );
    let container = &o
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod")
        .containers[0];
    let from = container.env_from.as_ref().expect("envFrom");
    assert_eq!(from[0].secret_ref.as_ref().expect("secret").name, "env-v7");
    assert_eq!(o.secret.metadata.name.as_deref(), Some("env-v7"));
}

#[test]
fn health_rollout_size_and_drain_follow_the_app() {
    let o = rendered(http_three_replicas());
    let spec = o.deployment.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(3));
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .expect("rolling");
    assert_eq!(
        serde_json::to_value(&rolling.max_unavailable).expect("json"),
        0
    );
    assert_eq!(serde_json::to_value(&rolling.max_surge).expect("json"), 1);
    let pod = spec.template.spec.as_ref().expect("pod");
    assert_eq!(pod.termination_grace_period_seconds, Some(20));
    let c = &pod.containers[0];
    let probe = c.readiness_probe.as_ref().expect("probe");
    assert_eq!(
        probe.http_get.as_ref().and_then(|h| h.path.as_deref()),
        Some("/health")
    );
    let limits = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .expect("limits");
    assert_eq!(limits["memory"].0, "1024Mi");

    let o = rendered(default_tcp());
    let pod = o
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod");
    let probe = pod.containers[0].readiness_probe.as_ref().expect("probe");
    assert!(probe.tcp_socket.is_some() && probe.http_get.is_none());
    let limits = pod.containers[0]
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .expect("limits");
    assert_eq!(limits["memory"].0, "512Mi");
}

#[test]
fn traffic_clustering_and_ssh_reach_the_app() {
    let o = rendered(http_three_replicas());
    let ns = o.namespace.metadata.name.as_deref();
    assert_eq!(ns, Some("app-shop"));
    let rule = &o
        .ingress
        .spec
        .as_ref()
        .and_then(|s| s.rules.clone())
        .expect("rules")[0];
    assert_eq!(rule.host.as_deref(), Some("shop.apps.example.com"));
    let annotations = o
        .ingress
        .metadata
        .annotations
        .as_ref()
        .expect("annotations");
    assert_eq!(
        annotations["cert-manager.io/cluster-issuer"],
        "letsencrypt-prod"
    );
    let tls = &o
        .ingress
        .spec
        .as_ref()
        .and_then(|s| s.tls.clone())
        .expect("tls")[0];
    assert_eq!(
        tls.hosts.as_deref(),
        Some(&["shop.apps.example.com".to_owned()][..])
    );

    // GIGALIXIR_CLUSTER_DNS = the app's name = the headless Service, not-ready pods included.
    let headless = o.cluster_service.spec.as_ref().expect("spec");
    assert_eq!(o.cluster_service.metadata.name.as_deref(), Some("shop"));
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    assert_eq!(headless.publish_not_ready_addresses, Some(true));

    let ssh = o.ssh_service.spec.as_ref().expect("spec");
    assert_eq!(ssh.type_.as_deref(), Some("LoadBalancer"));
    let port = &ssh.ports.as_ref().expect("ports")[0];
    assert_eq!(port.port, 22);
    let pod = o
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod");
    let ssh_port = pod.containers[0]
        .ports
        .as_ref()
        .expect("ports")
        .iter()
        .find(|p| p.name.as_deref() == Some("ssh"))
        .expect("ssh port");
    assert_eq!(ssh_port.container_port, 2222);

    // libcluster may read pods and endpoints of its namespace, nothing more.
    let rule = &o.role.rules.as_ref().expect("rules")[0];
    assert_eq!(
        rule.resources.as_deref(),
        Some(&["endpoints".to_owned(), "pods".to_owned()][..])
    );
    assert_eq!(rule.verbs, ["get", "list", "watch"]);
    assert_eq!(pod.service_account_name.as_deref(), Some("web"));
}

#[test]
fn an_apps_namespace_is_walled_off_and_capped() {
    let o = rendered(http_three_replicas());
    let policy = o.network_policy.spec.as_ref().expect("spec");
    // Every pod of the namespace, both directions: what no rule admits is denied.
    assert_eq!(policy.pod_selector, Some(Default::default()));
    assert_eq!(
        policy.policy_types.as_deref(),
        Some(&["Ingress".to_owned(), "Egress".to_owned()][..])
    );
    let ingress: Vec<serde_json::Value> = policy
        .ingress
        .as_ref()
        .expect("ingress")
        .iter()
        .map(|r| serde_json::to_value(r).expect("json"))
        .collect();
    assert_eq!(
        ingress,
        vec![
            serde_json::json!({"from": [{"podSelector": {}}]}),
            serde_json::json!({
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
                "ports": [{"port": 4000, "protocol": "TCP"}]
            }),
            serde_json::json!({"ports": [{"port": 2222, "protocol": "TCP"}]}),
        ]
    );
    let egress: Vec<serde_json::Value> = policy
        .egress
        .as_ref()
        .expect("egress")
        .iter()
        .map(|r| serde_json::to_value(r).expect("json"))
        .collect();
    assert_eq!(egress[0], serde_json::json!({"to": [{"podSelector": {}}]}));
    assert_eq!(
        egress[1]["ports"],
        serde_json::json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}])
    );
    assert_eq!(
        egress[2],
        serde_json::json!({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}]})
    );
    assert_eq!(egress.len(), 3);

    let hard = o
        .resource_quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .expect("hard");
    for resource in [
        "pods",
        "requests.cpu",
        "limits.memory",
        "requests.ephemeral-storage",
        "limits.ephemeral-storage",
    ] {
        assert!(hard.contains_key(resource), "the quota caps {resource}");
    }
    let limits = &o.limit_range.spec.as_ref().expect("spec").limits[0];
    assert_eq!(limits.type_, "Container");
    let defaults = limits.default.as_ref().expect("default limits");
    assert!(defaults.contains_key("memory") && defaults.contains_key("ephemeral-storage"));
    // The replicas' own requests fit within the per-container caps.
    let max = limits.max.as_ref().expect("max");
    assert_eq!(max["memory"].0, "128Gi");
}

#[test]
fn the_release_phase_runs_once_apart_from_the_traffic() {
    assert!(
        rendered(default_tcp()).release_phase.is_none(),
        "no release: process type"
    );
    let o = rendered(http_three_replicas());
    let job = o
        .release_phase
        .as_ref()
        .expect("a Job for the release: command");
    assert_eq!(job.metadata.name.as_deref(), Some("release-v7"));
    let spec = job.spec.as_ref().expect("spec");
    assert_eq!(spec.backoff_limit, Some(0));
    let template = &spec.template;
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("labels");
    assert!(
        !labels.contains_key("gigalixir.app"),
        "the web and cluster Services select gigalixir.app: {labels:?}"
    );
    let pod = template.spec.as_ref().expect("pod");
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let c = &pod.containers[0];
    assert_eq!(c.args.as_deref(), Some(&["release-phase".to_owned()][..]));
    assert!(c.readiness_probe.is_none());
    // Same environment as the web replicas: the release's Secret.
    let from = c.env_from.as_ref().expect("envFrom");
    assert_eq!(from[0].secret_ref.as_ref().expect("secret").name, "env-v7");
}

#[test]
fn the_package_cache_is_the_build_pods_one_way_out() {
    use shared::kube_runtime::packages::render_packages;
    let objects = render_packages("gigalixir");
    let yaml = objects.to_yaml().expect("yaml");
    let path = snapshot_path("packages-cache");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &yaml).expect("write snapshot");
    }
    let stored = std::fs::read_to_string(&path).expect("tests/data/kube/packages-cache.yaml");
    assert_eq!(stored, yaml, "re-render with UPDATE_SNAPSHOTS=1");
    let builds = objects.build_policy.spec.expect("spec");
    assert_eq!(
        builds.policy_types.as_deref(),
        Some(&["Ingress".to_owned(), "Egress".to_owned()][..])
    );
    assert_eq!(
        builds.ingress.as_deref().map(<[_]>::len),
        Some(0),
        "nothing reaches a build"
    );
    let egress = builds.egress.expect("egress");
    assert_eq!(egress.len(), 2, "the cache and DNS, nothing else");
    let cache = egress[0].to.as_ref().expect("to")[0]
        .pod_selector
        .as_ref()
        .expect("pods");
    assert_eq!(
        cache.match_labels.as_ref().expect("labels")["app.kubernetes.io/name"],
        "gigalixir-packages"
    );
    assert!(
        egress
            .iter()
            .all(|rule| rule.to.as_ref().is_some_and(|t| !t.is_empty())),
        "no rule admits everyone"
    );
}

#[test]
fn custom_domains_match_their_snapshot() {
    use shared::domain::Fqdn;
    use shared::kube_runtime::render_domains;
    let (spec, settings) = http_three_replicas();
    let domains =
        ["shop.example.com", "www.shop.example.com"].map(|d| Fqdn::parse(d).expect("fqdn"));
    let ingress =
        render_domains(&settings, &spec.app, &domains, &Default::default()).expect("an ingress");
    let yaml = serde_saphyr::to_string(&ingress).expect("yaml");
    let path = snapshot_path("custom-domains");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &yaml).expect("write snapshot");
    }
    let stored = std::fs::read_to_string(&path).expect("tests/data/kube/custom-domains.yaml");
    assert_eq!(stored, yaml, "re-render with UPDATE_SNAPSHOTS=1");
    assert!(render_domains(&settings, &spec.app, &[], &Default::default()).is_none());
    // a name as long as names go still makes a Secret name Kubernetes takes
    let long = format!(
        "{}.{}.example.com",
        ["a".repeat(63), "b".repeat(63), "c".repeat(63)].join("."),
        "d".repeat(48)
    );
    assert_eq!(long.len(), 252);
    let long = Fqdn::parse(&long).expect("a long name");
    let ingress =
        render_domains(&settings, &spec.app, &[long], &Default::default()).expect("an ingress");
    let tls = ingress.spec.expect("spec").tls.expect("tls");
    let secret = tls[0].secret_name.clone().expect("secret");
    assert!(
        secret.len() <= 253 && secret.starts_with("tls-"),
        "{secret}"
    );
}

#[test]
fn a_one_off_job_matches_its_snapshot() {
    use shared::kube_runtime::render::one_off_job;
    let objects = rendered(http_three_replicas());
    let ns = objects.namespace.metadata.name.clone().expect("namespace");
    let (spec, _) = http_three_replicas();
    let job = one_off_job(
        &spec,
        &ns,
        &objects.deployment,
        "run-v7-0a1b2c",
        "mix run priv/repo/seeds.exs",
        std::time::Duration::from_secs(300),
    );
    let yaml = serde_saphyr::to_string(&job).expect("yaml");
    let path = snapshot_path("one-off-job");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &yaml).expect("write snapshot");
    }
    let stored = std::fs::read_to_string(&path).expect("tests/data/kube/one-off-job.yaml");
    assert_eq!(stored, yaml, "re-render with UPDATE_SNAPSHOTS=1");
    let pod = job.spec.expect("spec").template;
    let labels = pod.metadata.expect("meta").labels.expect("labels");
    assert!(!labels.contains_key("gigalixir.app"), "{labels:?}");
    let container = &pod.spec.expect("pod").containers[0];
    assert!(container.ports.is_none() && container.readiness_probe.is_none());
    assert!(!container
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name == "ssh-keys"));
}

#[test]
fn maintenance_and_a_canary_as_ingress_nginx_does_them_match_their_snapshot() {
    use shared::domain::{AppName, Fqdn};
    use shared::kube_runtime::render::canary_service;
    use shared::kube_runtime::{render_canary, web_ingress};
    use shared::model::Canary;
    use shared::ports::runtime::Traffic;
    let (spec, settings) = http_three_replicas();
    let green = AppName::parse("shop-green").expect("name");
    let domains = [Fqdn::parse("shop.example.com").expect("fqdn")];
    let canary = |weight| Traffic {
        canary: Some(Canary {
            app: green.clone(),
            weight,
        }),
        ..Traffic::default()
    };
    let maintenance = Traffic {
        maintenance: true,
        ..canary(10)
    };
    let down = web_ingress(&settings, &spec.app, &maintenance);
    let sticky = web_ingress(&settings, &spec.app, &canary(10));
    let split = render_canary(&settings, &spec.app, &domains, &canary(10)).expect("a canary");
    let service = canary_service(&settings, &green);
    let objects = rendered(http_three_replicas());
    let docs = [
        serde_saphyr::to_string(&down),
        serde_saphyr::to_string(&objects.maintenance_service),
        serde_saphyr::to_string(&objects.maintenance_headers),
        serde_saphyr::to_string(&sticky),
        serde_saphyr::to_string(&service),
        serde_saphyr::to_string(&split),
    ]
    .map(|d| d.expect("yaml"));
    let yaml = docs.join("---\n");
    let path = snapshot_path("traffic");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &yaml).expect("write snapshot");
    }
    let stored = std::fs::read_to_string(&path).expect("tests/data/kube/traffic.yaml");
    assert_eq!(stored, yaml, "re-render with UPDATE_SNAPSHOTS=1");

    let backend = |v: serde_json::Value| {
        v["spec"]["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| {
                (
                    r["host"].as_str().unwrap_or_default().to_owned(),
                    r["http"]["paths"][0]["backend"]["service"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let annotations = |v: serde_json::Value| -> BTreeMap<String, String> {
        serde_json::from_value(v["metadata"]["annotations"].clone()).unwrap_or_default()
    };
    let json = |v: Result<serde_json::Value, serde_json::Error>| v.expect("json");
    // Maintenance: a Service with no endpoints (the controller answers 503), Retry-After.
    assert_eq!(
        backend(json(serde_json::to_value(&down))),
        [("shop.apps.example.com".to_owned(), "maintenance".to_owned())]
    );
    assert_eq!(
        annotations(json(serde_json::to_value(&down)))
            ["nginx.ingress.kubernetes.io/custom-headers"],
        "app-shop/maintenance-headers"
    );
    assert!(json(serde_json::to_value(&objects.maintenance_service))["spec"]["selector"].is_null());
    // A canary: the app's hosts, its own and its custom domains, in the canary's
    // namespace, weighed; the main Ingress keeps each browser on its side.
    assert_eq!(split.metadata.namespace.as_deref(), Some("app-shop-green"));
    assert_eq!(
        service.metadata.namespace.as_deref(),
        Some("app-shop-green")
    );
    assert_eq!(
        backend(json(serde_json::to_value(&split))),
        [
            ("shop.apps.example.com".to_owned(), "canary".to_owned()),
            ("shop.example.com".to_owned(), "canary".to_owned())
        ]
    );
    assert_eq!(
        annotations(json(serde_json::to_value(&split)))
            ["nginx.ingress.kubernetes.io/canary-weight"],
        "10"
    );
    assert_eq!(
        json(serde_json::to_value(&service))["spec"]["selector"]["gigalixir.app"],
        "shop-green"
    );
    assert_eq!(
        annotations(json(serde_json::to_value(&sticky)))
            ["nginx.ingress.kubernetes.io/session-cookie-name"],
        "gx_canary_shop"
    );
    assert_eq!(backend(json(serde_json::to_value(&sticky)))[0].1, "web");
    // 100: everyone moves, no cookie holds anyone back; 0: no canary at all.
    assert!(!annotations(json(serde_json::to_value(web_ingress(
        &settings,
        &spec.app,
        &canary(100)
    ))))
    .contains_key("nginx.ingress.kubernetes.io/affinity"));
    assert!(render_canary(&settings, &spec.app, &domains, &canary(0)).is_none());
    // In maintenance everyone gets the 503: no share, no cookie.
    assert!(render_canary(&settings, &spec.app, &domains, &maintenance).is_none());
    assert!(!annotations(json(serde_json::to_value(&down)))
        .contains_key("nginx.ingress.kubernetes.io/affinity"));
}
