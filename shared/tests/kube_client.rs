//! The requests `KubeRuntime` sends, against an in-process fake API server (a
//! `tower_test` mock under a real `kube::Client`): what it applies, with which field
//! manager, how it follows a rollout, what it prunes, and what a failed rollout reports
//! and puts back.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use shared::domain::{AppName, ReleaseVersion, Secret};
use shared::kube_runtime::kube::Client;
use shared::kube_runtime::{BaseUrlSlugs, KubeRuntime, KubeSettings};
use shared::model::SlugRef;
use shared::ports::runtime::{DeployOutcome, PhaseOutcome, ReleaseSpec, ReplicaState, Runtime};
use support::{fake_api, Call};

impl Call {
    /// `METHOD path`, the way the assertions below list requests.
    fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What the fake server knows: how many times each path was read.
#[derive(Default)]
struct Seen {
    reads: BTreeMap<String, usize>,
}

type Answer = Box<dyn Fn(&Call, usize) -> (u16, Value) + Send + Sync>;

/// A client whose requests go to `answer` (given the call and how many times this
/// method+path was seen before); every call is recorded.
fn fake_cluster(answer: Answer) -> (Client, Arc<Mutex<Vec<Call>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let record = calls.clone();
    let mut seen = Seen::default();
    let client = fake_api(move |call| {
        let n = seen.reads.entry(call.line()).or_insert(0);
        let reply = answer(&call, *n);
        *n += 1;
        record.lock().expect("lock").push(call);
        reply
    });
    (client, calls)
}

fn runtime(client: Client) -> KubeRuntime {
    let settings = KubeSettings {
        domain: "apps.example.com".into(),
        poll_interval: Duration::from_millis(1),
        ..KubeSettings::default()
    };
    KubeRuntime::new(
        client,
        settings,
        Arc::new(BaseUrlSlugs::new("https://slugs.example.invalid")),
    )
}

fn spec(version: u32, replicas: u32) -> ReleaseSpec {
    let env = [
        ("APP_NAME", "my-app"),
        ("RELEASE_COOKIE", "fake-cookie"),
        ("ERLANG_COOKIE", "fake-cookie"),
        ("SECRET_KEY_BASE", "fake-secret-key-base"),
        ("GREETING", "hello"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), Secret::new(v)))
    .collect();
    ReleaseSpec {
        app: AppName::parse("my-app").expect("name"),
        version: ReleaseVersion(version),
        slug: SlugRef {
            key: "slugs/abc.tgz".into(),
            sha256: "abc".into(),
            size: 1,
            process_types: Some(vec!["web".into()]),
            stack: None,
        },
        env,
        replicas,
        memory_bytes: 1 << 29,
        boot_timeout: Duration::from_secs(60),
        health_path: None,
        health_status: 200,
        drain: Duration::from_secs(30),
        traffic: Default::default(),
    }
}

fn not_found(what: &str) -> (u16, Value) {
    (
        404,
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
               "message": format!("{what} not found"), "reason": "NotFound", "code": 404}),
    )
}

/// How far the server has got with a rollout.
#[derive(Clone, Copy, PartialEq)]
enum Stage {
    /// The controller has not seen the new generation yet: the status is the previous
    /// one's, complete (what a careless watcher takes for done).
    Unobserved,
    /// Every new replica is up, an old one is still there (the surge).
    Surging,
    /// Done.
    Done,
}

/// The Deployment of `release` as the server reports it at `stage`.
fn deployment(release: u32, replicas: i32, stage: Stage) -> Value {
    let (observed, total, updated) = match stage {
        Stage::Unobserved => (1, replicas, replicas),
        Stage::Surging => (2, replicas + 1, replicas),
        Stage::Done => (2, replicas, replicas),
    };
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "app-my-app", "generation": 2,
                     "annotations": {"gigalixir.release": release.to_string(),
                                     "deployment.kubernetes.io/revision": "4"},
                     "labels": {"gigalixir.app": "my-app", "app.kubernetes.io/managed-by": "gigalixir"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"gigalixir.app": "my-app"}},
            "template": {
                "metadata": {"labels": {"gigalixir.app": "my-app", "gigalixir.release": release.to_string()},
                             "creationTimestamp": null},
                "spec": {"containers": [{"name": "web", "image": "gigalixir-runner:bookworm",
                                         "envFrom": [{"secretRef": {"name": format!("env-v{release}")}}]}]}
            }
        },
        "status": {"observedGeneration": observed, "replicas": total,
                   "updatedReplicas": updated, "availableReplicas": total, "readyReplicas": total}
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

/// A partial-metadata list (what prune reads), of objects named `names`.
fn names(names: &[&str]) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {},
        "items": names.iter().map(|n| json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": n, "namespace": "app-my-app"}})).collect::<Vec<_>>()
    })
}

fn pod(name: &str, release: u32, ready: bool, container: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "app-my-app",
                     "creationTimestamp": "2026-11-25T10:00:00Z",
                     "labels": {"gigalixir.app": "my-app", "gigalixir.release": release.to_string()}},
        "status": {
            "phase": "Running", "podIP": "10.8.0.7", "startTime": "2026-11-25T10:00:01Z",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "containerStatuses": [container]
        }
    })
}

fn booting() -> Value {
    json!({"name": "web", "image": "gigalixir-runner:bookworm", "imageID": "", "ready": false,
           "restartCount": 0, "state": {"running": {"startedAt": "2026-11-25T10:00:02Z"}}})
}

/// Answers a cluster where the app runs `previous` (or nothing), and where the
/// Deployment is rolled out at the second look after the apply.
fn healthy_cluster(previous: Option<u32>, release: u32, replicas: i32) -> Answer {
    Box::new(
        move |call, n| match (call.method.as_str(), call.path.as_str()) {
            ("GET", "/apis/apps/v1/namespaces/app-my-app/deployments/web") => match (previous, n) {
                (None, 0) => not_found("deployments.apps \"web\""),
                (Some(p), 0) => (200, deployment(p, replicas, Stage::Done)),
                (_, 1) => (200, deployment(release, replicas, Stage::Unobserved)),
                (_, 2) => (200, deployment(release, replicas, Stage::Surging)),
                _ => (200, deployment(release, replicas, Stage::Done)),
            },
            ("GET", "/api/v1/namespaces/app-my-app/pods") => (
                200,
                list(
                    "PodList",
                    vec![pod("web-5d9c-a", release, false, booting())],
                ),
            ),
            ("GET", "/api/v1/namespaces/app-my-app/secrets") => {
                (200, names(&["env-v1", &format!("env-v{release}")]))
            }
            ("GET", path) if path.starts_with("/api") => (200, names(&[])),
            ("PATCH", _) => (200, call.body.clone()),
            ("DELETE", _) => (
                200,
                json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}),
            ),
            _ => (500, json!({})),
        },
    )
}

fn calls_of(calls: &Arc<Mutex<Vec<Call>>>) -> Vec<Call> {
    calls.lock().expect("lock").clone()
}

const NS: &str = "/api/v1/namespaces/app-my-app";
const APPS: &str = "/apis/apps/v1/namespaces/app-my-app";

/// The server-side applies of a deploy, in order.
fn applies() -> Vec<String> {
    vec![
        "PATCH /api/v1/namespaces/app-my-app".into(),
        "PATCH /apis/networking.k8s.io/v1/namespaces/app-my-app/networkpolicies/walls".into(),
        format!("PATCH {NS}/resourcequotas/quota"),
        format!("PATCH {NS}/limitranges/limits"),
        format!("PATCH {NS}/serviceaccounts/web"),
        "PATCH /apis/rbac.authorization.k8s.io/v1/namespaces/app-my-app/roles/libcluster".into(),
        "PATCH /apis/rbac.authorization.k8s.io/v1/namespaces/app-my-app/rolebindings/libcluster"
            .into(),
        format!("PATCH {NS}/configmaps/ssh-keys"),
        format!("PATCH {NS}/secrets/env-v1"),
        format!("PATCH {NS}/services/web"),
        format!("PATCH {NS}/services/my-app"),
        format!("PATCH {NS}/services/ssh"),
        format!("PATCH {NS}/services/canary"),
        format!("PATCH {NS}/services/maintenance"),
        format!("PATCH {NS}/configmaps/maintenance-headers"),
        "PATCH /apis/networking.k8s.io/v1/namespaces/app-my-app/ingresses/web".into(),
        format!("PATCH {APPS}/deployments/web"),
    ]
}

#[tokio::test]
async fn a_first_deploy_applies_everything_server_side_then_follows_the_rollout() {
    let (client, calls) = fake_cluster(healthy_cluster(None, 1, 1));
    let outcome = runtime(client).deploy(&spec(1, 1)).await.expect("deploy");
    assert_eq!(outcome, DeployOutcome::Healthy);

    let calls = calls_of(&calls);
    let lines: Vec<String> = calls.iter().map(Call::line).collect();
    let mut expected = vec![format!("GET {APPS}/deployments/web")];
    expected.extend(applies());
    expected.extend([
        format!("GET {APPS}/deployments/web"),
        format!("GET {NS}/pods"),
        format!("GET {APPS}/deployments/web"),
        format!("GET {NS}/pods"),
        format!("GET {APPS}/deployments/web"),
        format!("GET {NS}/serviceaccounts"),
        "GET /apis/rbac.authorization.k8s.io/v1/namespaces/app-my-app/roles".into(),
        "GET /apis/rbac.authorization.k8s.io/v1/namespaces/app-my-app/rolebindings".into(),
        format!("GET {NS}/configmaps"),
        format!("GET {NS}/secrets"),
        format!("GET {NS}/services"),
        "GET /apis/networking.k8s.io/v1/namespaces/app-my-app/ingresses".into(),
        "GET /apis/batch/v1/namespaces/app-my-app/jobs".into(),
        format!("GET {APPS}/deployments"),
    ]);
    assert_eq!(lines, expected);

    let kinds = [
        "Namespace",
        "NetworkPolicy",
        "ResourceQuota",
        "LimitRange",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Secret",
        "Service",
        "Service",
        "Service",
        "Service",
        "Service",
        "ConfigMap",
        "Ingress",
        "Deployment",
    ];
    let patches: Vec<&Call> = calls.iter().filter(|c| c.method == "PATCH").collect();
    assert_eq!(patches.len(), kinds.len());
    for (call, kind) in patches.iter().zip(kinds) {
        assert_eq!(call.body["kind"], kind, "{}", call.path);
        assert_eq!(
            call.query.get("fieldManager").map(String::as_str),
            Some("gigalixir-deploy")
        );
        assert_eq!(call.query.get("force").map(String::as_str), Some("true"));
        assert_eq!(call.content_type, "application/apply-patch+yaml");
    }
    // The rollout is followed through the new release's pods.
    let pods = calls
        .iter()
        .find(|c| c.path.ends_with("/pods"))
        .expect("pods");
    assert_eq!(
        pods.query.get("labelSelector").map(String::as_str),
        Some("gigalixir.app=my-app,gigalixir.release=1")
    );
    // The slug URL travels in the release's Secret, base64 as the API wants it.
    let secret = &patches
        .iter()
        .find(|c| c.body["kind"] == "Secret")
        .expect("the Secret")
        .body;
    assert_eq!(
        secret["data"]["SLUG_URL"],
        "aHR0cHM6Ly9zbHVncy5leGFtcGxlLmludmFsaWQvc2x1Z3MvYWJjLnRneg=="
    );
    // Nothing else of the app existed: nothing is deleted.
    assert!(calls.iter().all(|c| c.method != "DELETE"), "{lines:#?}");
}

#[tokio::test]
async fn a_new_release_prunes_the_secret_of_the_previous_one() {
    let (client, calls) = fake_cluster(healthy_cluster(Some(1), 2, 1));
    let outcome = runtime(client).deploy(&spec(2, 1)).await.expect("deploy");
    assert_eq!(outcome, DeployOutcome::Healthy);
    let calls = calls_of(&calls);
    let deletes: Vec<String> = calls
        .iter()
        .filter(|c| c.method == "DELETE")
        .map(Call::line)
        .collect();
    assert_eq!(deletes, vec![format!("DELETE {NS}/secrets/env-v1")]);
    let deployment = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path.ends_with("/deployments/web"))
        .expect("deployment applied");
    let template = &deployment.body["spec"]["template"];
    assert_eq!(template["metadata"]["labels"]["gigalixir.release"], "2");
    assert_eq!(
        template["spec"]["containers"][0]["envFrom"][0]["secretRef"]["name"],
        "env-v2"
    );
}

#[tokio::test]
async fn scale_applies_the_replica_count_and_waits_for_all_of_them() {
    let (client, calls) = fake_cluster(healthy_cluster(Some(1), 1, 3));
    let outcome = runtime(client).scale(&spec(1, 3)).await.expect("scale");
    assert_eq!(outcome, DeployOutcome::Healthy);
    let calls = calls_of(&calls);
    let deployment = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path.ends_with("/deployments/web"))
        .expect("deployment applied");
    assert_eq!(deployment.body["spec"]["replicas"], 3);
    // Done only once the server reports three updated, available replicas and no other.
    let polls = calls
        .iter()
        .filter(|c| c.line() == format!("GET {APPS}/deployments/web"))
        .count();
    assert_eq!(polls, 4, "one read before the apply, three while rolling");
}

#[tokio::test]
async fn restart_sets_the_template_annotation_under_its_own_field_manager() {
    let (client, calls) = fake_cluster(healthy_cluster(Some(1), 1, 1));
    let outcome = runtime(client).restart(&spec(1, 1)).await.expect("restart");
    assert_eq!(outcome, DeployOutcome::Healthy);
    let calls = calls_of(&calls);
    let patches: Vec<&Call> = calls.iter().filter(|c| c.method == "PATCH").collect();
    assert_eq!(patches.len(), 1, "{patches:#?}");
    let patch = patches[0];
    assert_eq!(patch.path, format!("{APPS}/deployments/web"));
    assert_eq!(
        patch.query.get("fieldManager").map(String::as_str),
        Some("gigalixir-restart")
    );
    assert_eq!(patch.query.get("force").map(String::as_str), Some("true"));
    let annotations = &patch.body["spec"]["template"]["metadata"]["annotations"];
    let at = annotations["gigalixir.restarted-at"]
        .as_str()
        .expect("timestamp");
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    // Only the annotation: the deploy's fields stay the deploy's.
    assert!(patch.body["spec"].get("replicas").is_none());
    assert!(patch.body["spec"]["template"].get("spec").is_none());
}

/// A cluster whose new release crash-loops: the previous one (if any) keeps running.
fn crash_looping_cluster(previous: Option<u32>) -> Answer {
    Box::new(move |call, n| {
        match (call.method.as_str(), call.path.as_str()) {
        ("GET", "/apis/apps/v1/namespaces/app-my-app/deployments/web") => match (previous, n) {
            (None, 0) => not_found("deployments.apps \"web\""),
            (Some(p), 0) => (200, deployment(p, 1, Stage::Done)),
            _ => (200, deployment(2, 1, Stage::Unobserved)),
        },
        ("GET", "/api/v1/namespaces/app-my-app/pods") => (
            200,
            list(
                "PodList",
                vec![pod(
                    "web-7f6b-x",
                    2,
                    false,
                    json!({"name": "web", "image": "gigalixir-runner:bookworm", "imageID": "",
                           "ready": false, "restartCount": 2,
                           "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                 "message": "back-off 20s restarting failed container"}},
                           "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}),
                )],
            ),
        ),
        ("GET", "/api/v1/namespaces/app-my-app/pods/web-7f6b-x/log") => (
            200,
            Value::String(
                "gigalixir-run: starting bin/my_app start\n** (RuntimeError) DATABASE_URL is missing\n"
                    .into(),
            ),
        ),
        ("PATCH", _) => (200, call.body.clone()),
        ("DELETE", _) => (200, json!({"apiVersion": "v1", "kind": "Status", "status": "Success"})),
        _ => (500, json!({})),
    }
    })
}

#[tokio::test]
async fn a_crash_looping_release_fails_with_its_last_lines_and_the_previous_template_returns() {
    let (client, calls) = fake_cluster(crash_looping_cluster(Some(1)));
    let outcome = runtime(client).deploy(&spec(2, 1)).await.expect("deploy");
    assert_eq!(
        outcome,
        DeployOutcome::Failed {
            reason: "the release exited with code 1 while booting (CrashLoopBackOff)".into(),
            output: vec![
                "gigalixir-run: starting bin/my_app start".into(),
                "** (RuntimeError) DATABASE_URL is missing".into(),
            ],
        }
    );
    let calls = calls_of(&calls);
    // The crashed container's own output: the previous run, the last 50 lines.
    let log = calls
        .iter()
        .find(|c| c.path.ends_with("/log"))
        .expect("log read");
    assert_eq!(log.query.get("previous").map(String::as_str), Some("true"));
    assert_eq!(log.query.get("tailLines").map(String::as_str), Some("50"));
    assert_eq!(log.query.get("container").map(String::as_str), Some("web"));
    // The last request puts release 1's template back; nothing is pruned.
    let last = calls.last().expect("calls");
    assert_eq!(last.line(), format!("PATCH {APPS}/deployments/web"));
    assert_eq!(
        last.query.get("fieldManager").map(String::as_str),
        Some("gigalixir-deploy")
    );
    let template = &last.body["spec"]["template"];
    assert_eq!(template["metadata"]["labels"]["gigalixir.release"], "1");
    assert_eq!(
        template["spec"]["containers"][0]["envFrom"][0]["secretRef"]["name"],
        "env-v1"
    );
    assert!(last.body.get("status").is_none_or(Value::is_null));
    assert!(last.body["metadata"]["annotations"]
        .get("deployment.kubernetes.io/revision")
        .is_none());
    assert!(calls.iter().all(|c| c.method != "DELETE"));
}

#[tokio::test]
async fn a_first_release_that_crash_loops_leaves_no_deployment_behind() {
    let (client, calls) = fake_cluster(crash_looping_cluster(None));
    let outcome = runtime(client).deploy(&spec(2, 1)).await.expect("deploy");
    assert!(
        matches!(outcome, DeployOutcome::Failed { .. }),
        "{outcome:?}"
    );
    let calls = calls_of(&calls);
    let last = calls.last().expect("calls");
    assert_eq!(last.line(), format!("DELETE {APPS}/deployments/web"));
}

#[tokio::test]
async fn remove_app_deletes_the_namespace_and_is_idempotent() {
    let (client, calls) = fake_cluster(Box::new(|call, n| {
        if call.method == "GET" {
            // the canary objects of the app, anywhere: none
            (
                200,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []}),
            )
        } else if n == 0 {
            (
                200,
                json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}),
            )
        } else {
            not_found("namespaces \"app-my-app\"")
        }
    }));
    let rt = runtime(client);
    let app = AppName::parse("my-app").expect("name");
    rt.remove_app(&app).await.expect("first");
    rt.remove_app(&app).await.expect("second: already gone");
    let calls = calls_of(&calls);
    let lines: Vec<String> = calls.iter().map(Call::line).collect();
    let canaries = [
        "GET /apis/networking.k8s.io/v1/ingresses",
        "DELETE /api/v1/namespaces/app-my-app",
    ];
    assert_eq!(lines, [canaries, canaries].concat());
    assert_eq!(
        calls[0].query.get("labelSelector").map(String::as_str),
        Some("gigalixir.canary-of=my-app")
    );
}

#[tokio::test]
async fn ssh_keys_go_to_their_configmap_under_their_own_field_manager() {
    let (client, calls) = fake_cluster(Box::new(|call, _| (200, call.body.clone())));
    let keys = vec!["ssh-ed25519 AAAAfake ada@example.com".to_owned()];
    runtime(client)
        .set_ssh_keys(&AppName::parse("my-app").expect("name"), &keys)
        .await
        .expect("keys");
    let calls = calls_of(&calls);
    let lines: Vec<String> = calls.iter().map(Call::line).collect();
    assert_eq!(
        lines,
        vec![
            "PATCH /api/v1/namespaces/app-my-app".to_owned(),
            format!("PATCH {NS}/configmaps/ssh-keys"),
        ]
    );
    for c in &calls {
        assert_eq!(
            c.query.get("fieldManager").map(String::as_str),
            Some("gigalixir-ssh-keys")
        );
    }
    assert_eq!(
        calls[1].body["data"]["authorized_keys"],
        "ssh-ed25519 AAAAfake ada@example.com\n"
    );
}

#[tokio::test]
async fn custom_domains_become_their_own_ingress_and_go_with_the_last_one() {
    let (client, calls) = fake_cluster(Box::new(|call, n| match call.method.as_str() {
        "DELETE" if n == 0 => (
            200,
            json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}),
        ),
        "DELETE" => not_found("ingresses.networking.k8s.io \"domains\""),
        // no canary objects anywhere; the app is not deployed yet
        "GET" if call.path.ends_with("/web") => not_found("deployments.apps \"web\""),
        "GET" => (
            200,
            json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []}),
        ),
        _ => (200, call.body.clone()),
    }));
    let rt = runtime(client);
    let app = AppName::parse("my-app").expect("name");
    let domains = ["shop.example.com", "www.example.com"]
        .map(|d| shared::domain::Fqdn::parse(d).expect("fqdn"));
    let none = Default::default();
    rt.set_routes(&app, &domains, &none).await.expect("domains");
    // none left: the Ingress is deleted; already gone is fine too
    rt.set_routes(&app, &[], &none).await.expect("no domains");
    rt.set_routes(&app, &[], &none).await.expect("still none");
    let calls: Vec<Call> = calls_of(&calls)
        .into_iter()
        .filter(|c| c.method != "GET")
        .collect();
    let lines: Vec<String> = calls.iter().map(Call::line).collect();
    let ingress = "/apis/networking.k8s.io/v1/namespaces/app-my-app/ingresses/domains";
    assert_eq!(
        lines,
        vec![
            "PATCH /api/v1/namespaces/app-my-app".to_owned(),
            format!("PATCH {ingress}"),
            format!("DELETE {ingress}"),
            format!("DELETE {ingress}"),
        ]
    );
    for c in &calls[..2] {
        assert_eq!(
            c.query.get("fieldManager").map(String::as_str),
            Some("gigalixir-domains")
        );
    }
    let spec = &calls[1].body["spec"];
    assert_eq!(spec["rules"][1]["host"], "www.example.com");
    assert_eq!(
        spec["rules"][1]["http"]["paths"][0]["backend"]["service"]["name"],
        "web"
    );
    assert_eq!(spec["tls"][0]["hosts"][0], "shop.example.com");
    assert_eq!(spec["tls"][0]["secretName"], "tls-shop.example.com");
    assert_eq!(
        calls[1].body["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
        "letsencrypt"
    );
}

#[tokio::test]
async fn replicas_and_endpoints_come_from_the_pods() {
    let (client, _calls) = fake_cluster(Box::new(|call, _| match call.path.as_str() {
        "/api/v1/namespaces/app-my-app/pods" => (
            200,
            list(
                "PodList",
                vec![
                    pod("web-5d9c-a", 3, true, booting()),
                    pod("web-5d9c-b", 3, false, booting()),
                ],
            ),
        ),
        "/api/v1/namespaces/app-my-app/services/ssh" => (
            200,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ssh"},
                   "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}}),
        ),
        "/apis/apps/v1/namespaces/app-my-app/deployments/web" => (
            200,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "annotations": {
                       "gigalixir.release": "3", "gigalixir.template-release": "3"}}}),
        ),
        _ => (500, json!({})),
    }));
    let rt = runtime(client);
    let app = AppName::parse("my-app").expect("name");
    let replicas = rt.replicas(&app).await.expect("replicas");
    let seen: Vec<(String, u32, u32, ReplicaState)> = replicas
        .iter()
        .map(|r| (r.name.clone(), r.index, r.version.0, r.state))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("web-5d9c-a".to_owned(), 0, 3, ReplicaState::Running),
            ("web-5d9c-b".to_owned(), 1, 3, ReplicaState::Starting),
        ]
    );
    assert_eq!(
        replicas[0].ssh,
        Some("203.0.113.9:22".parse().expect("addr"))
    );
    let endpoints = rt.endpoints(&app).await.expect("endpoints");
    assert_eq!(endpoints, vec!["10.8.0.7:4000".parse().expect("addr")]);
}

#[tokio::test]
async fn logs_are_each_running_pods_web_container_tail() {
    use futures::StreamExt;
    let (client, calls) = fake_cluster(Box::new(|call, _| match call.path.as_str() {
        "/api/v1/namespaces/app-my-app/pods" => (
            200,
            list(
                "PodList",
                vec![
                    pod("web-5d9c-a", 3, true, booting()),
                    pod("web-5d9c-b", 3, true, booting()),
                ],
            ),
        ),
        path if path.ends_with("/log") => (
            200,
            Value::String(format!(
                "hello from {}\n",
                path.split('/').nth(6).unwrap_or("?")
            )),
        ),
        _ => (500, json!({})),
    }));
    let app = AppName::parse("my-app").expect("name");
    let stream = runtime(client).logs(&app, 20, false).await.expect("logs");
    let mut lines: Vec<String> = stream.collect().await;
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "my-app[web.1]: hello from web-5d9c-a".to_owned(),
            "my-app[web.2]: hello from web-5d9c-b".to_owned(),
        ]
    );
    let logs: Vec<Call> = calls_of(&calls)
        .into_iter()
        .filter(|c| c.path.ends_with("/log"))
        .collect();
    assert_eq!(logs.len(), 2);
    for c in &logs {
        assert_eq!(c.query.get("container").map(String::as_str), Some("web"));
        assert_eq!(c.query.get("tailLines").map(String::as_str), Some("20"));
        assert!(!c.query.contains_key("follow"), "{:?}", c.query);
    }
}

/// A cluster running release 1, where release 2's release phase ends with `exit`
/// (0: success), and whose rollout then completes.
fn release_phase_cluster(exit: i32) -> Answer {
    let rollout = healthy_cluster(Some(1), 2, 1);
    Box::new(move |call, n| {
        let job_path = "/apis/batch/v1/namespaces/app-my-app/jobs/release-v2";
        let phase_pods = call.query.get("labelSelector").map(String::as_str)
            == Some("gigalixir.release-phase=2");
        match (call.method.as_str(), call.path.as_str()) {
            ("GET", path) if path == job_path => {
                let status = match (n, exit) {
                    (0, _) => json!({"active": 1}),
                    (_, 0) => json!({"succeeded": 1}),
                    _ => json!({"failed": 1, "conditions": [
                        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
                };
                (
                    200,
                    json!({"apiVersion": "batch/v1", "kind": "Job",
                           "metadata": {"name": "release-v2", "namespace": "app-my-app"},
                           "status": status}),
                )
            }
            ("GET", "/api/v1/namespaces/app-my-app/pods") if phase_pods => (
                200,
                list(
                    "PodList",
                    vec![json!({
                        "apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": "release-v2-q7x", "namespace": "app-my-app"},
                        "status": {"phase": if exit == 0 { "Succeeded" } else { "Failed" },
                                   "containerStatuses": [
                            {"name": "web", "image": "gigalixir-runner:bookworm", "imageID": "",
                             "ready": false, "restartCount": 0,
                             "state": {"terminated": {"exitCode": exit, "reason": "Error"}}}]}
                    })],
                ),
            ),
            ("GET", "/api/v1/namespaces/app-my-app/pods/release-v2-q7x/log") => (
                200,
                Value::String(
                    "gigalixir-run: release phase: mix ecto.migrate\n** (DBConnection.ConnectionError) connection refused\n"
                        .into(),
                ),
            ),
            _ => rollout(call, n),
        }
    })
}

fn with_release_phase(mut spec: ReleaseSpec) -> ReleaseSpec {
    spec.slug.process_types = Some(vec!["web".into(), "release".into()]);
    spec
}

#[tokio::test]
async fn the_release_phase_job_runs_to_its_end_and_changes_no_replica() {
    let (client, calls) = fake_cluster(release_phase_cluster(0));
    let outcome = runtime(client)
        .release_phase(&with_release_phase(spec(2, 1)))
        .await
        .expect("release phase");
    // Its output, for the pusher, as on Docker.
    assert_eq!(
        outcome,
        PhaseOutcome::Done {
            output: vec![
                "gigalixir-run: release phase: mix ecto.migrate".into(),
                "** (DBConnection.ConnectionError) connection refused".into(),
            ]
        }
    );
    let calls = calls_of(&calls);
    let lines: Vec<String> = calls.iter().map(Call::line).collect();
    let at = |line: &str| {
        lines
            .iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no {line} in {lines:#?}"))
    };
    let job = "/apis/batch/v1/namespaces/app-my-app/jobs/release-v2";
    let secret = at(&format!("PATCH {NS}/secrets/env-v2"));
    let applied = at(&format!("PATCH {job}"));
    assert!(secret < applied, "its Secret first: {lines:#?}");
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("/deployments/web") || l.starts_with("GET")),
        "the Deployment must stay as it was: {lines:#?}"
    );
    assert_eq!(
        lines.iter().filter(|l| **l == format!("GET {job}")).count(),
        2,
        "read until it succeeded"
    );
    let body = &calls[applied].body;
    assert_eq!(body["kind"], "Job");
    assert_eq!(
        body["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["release-phase"])
    );
}

#[tokio::test]
async fn a_failed_release_phase_says_why_with_its_output_and_touches_no_replica() {
    let (client, calls) = fake_cluster(release_phase_cluster(3));
    let outcome = runtime(client)
        .release_phase(&with_release_phase(spec(2, 1)))
        .await
        .expect("release phase");
    assert_eq!(
        outcome,
        PhaseOutcome::Failed {
            reason: "the release phase (the Procfile's release: command) exited with code 3".into(),
            output: vec![
                "gigalixir-run: release phase: mix ecto.migrate".into(),
                "** (DBConnection.ConnectionError) connection refused".into(),
            ],
        }
    );
    let calls = calls_of(&calls);
    assert!(
        calls
            .iter()
            .all(|c| !c.path.contains("/deployments/web") || c.method == "GET"),
        "the Deployment must stay as it was"
    );
}

#[tokio::test]
async fn a_release_runs_once_its_deployment_carries_its_version() {
    let app = AppName::parse("my-app").expect("name");
    let (client, _) = fake_cluster(healthy_cluster(Some(2), 2, 1));
    let rt = runtime(client);
    assert!(rt.runs(&app, ReleaseVersion(2)).await.expect("runs"));
    assert!(!rt.runs(&app, ReleaseVersion(3)).await.expect("runs"));
    let (client, _) = fake_cluster(healthy_cluster(None, 2, 1));
    assert!(!runtime(client)
        .runs(&app, ReleaseVersion(2))
        .await
        .expect("runs"));
}
