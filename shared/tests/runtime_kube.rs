//! The runtime suite (`shared::contract::runtime`) against `KubeRuntime` over a fake API
//! server that keeps state: what is applied is stored (server-side apply merges into the
//! stored object), deleted objects go, a namespace's deletion takes everything in it, and
//! a controller of its own turns Deployments and Jobs into pods. That controller runs what
//! a slug's name says: a slug named `crashing` crash-loops with `boom`, one named
//! `failing-phase` fails its release phase with `cannot migrate` and code 3, the rest become
//! ready and pass their release phase with `migrated $GREETING`.
//!
//! Not verified here (no cluster on this machine): a real scheduler, image pulls, probes,
//! the Ingress and NetworkPolicy controllers.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use shared::contract::runtime::{spec, Slugs, Subject};
use shared::contract::{unique, Guard};
use shared::domain::AppName;
use shared::kube_runtime::kube::Client;
use shared::kube_runtime::{BaseUrlSlugs, KubeRuntime, KubeSettings};
use shared::model::SlugRef;
use shared::ports::runtime::{DeployOutcome, HotOutcome};
use support::{fake_api, served_fake_api, Exec};

/// Objects by collection path (`/apis/apps/v1/namespaces/NS/deployments`) and name.
#[derive(Default)]
struct Cluster {
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// The annotation keys each field manager last applied, per object: an apply without a
    /// key its manager applied before removes it, as server-side apply does.
    annotations_of: BTreeMap<(String, String, String), Vec<String>>,
    /// How many times each web pod (by its first name) was deleted: its Deployment's
    /// replacement gets a new name.
    killed: BTreeMap<String, u32>,
}

/// A parsed request path.
struct Target {
    /// The collection (`…/deployments`, or `/api/v1/namespaces` for a namespace).
    collection: String,
    name: Option<String>,
    /// `log` for a pod's log.
    sub: Option<String>,
    namespace: Option<String>,
}

fn target(path: &str) -> Target {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let at = segments
        .iter()
        .position(|s| *s == "namespaces")
        .expect("a namespaced path");
    if segments.len() <= at + 2 {
        // the namespace itself
        return Target {
            collection: format!("/{}", segments[..=at].join("/")),
            name: segments.get(at + 1).map(|s| (*s).to_owned()),
            sub: None,
            namespace: segments.get(at + 1).map(|s| (*s).to_owned()),
        };
    }
    Target {
        collection: format!("/{}", segments[..=at + 2].join("/")),
        name: segments.get(at + 3).map(|s| (*s).to_owned()),
        sub: segments.get(at + 4).map(|s| (*s).to_owned()),
        namespace: Some(segments[at + 1].to_owned()),
    }
}

/// Server-side apply, as far as this fake goes: objects merge, everything else replaces.
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

fn labels_match(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|pair| match pair.split_once('=') {
            Some((k, v)) => object["metadata"]["labels"][k].as_str() == Some(v),
            None => object["metadata"]["labels"][pair].is_string(),
        })
}

fn status(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({"apiVersion": "v1", "kind": "Status", "status": if code < 300 { "Success" } else { "Failure" },
               "reason": reason, "code": code, "message": reason}),
    )
}

/// What a pod of `template` runs: its secret's `SLUG_URL` and `GREETING`.
fn env_of(cluster: &Cluster, ns: &str, template: &Value) -> (String, String) {
    let secret = template["spec"]["containers"][0]["envFrom"][0]["secretRef"]["name"]
        .as_str()
        .unwrap_or_default();
    let data = cluster
        .objects
        .get(&format!("/api/v1/namespaces/{ns}/secrets"))
        .and_then(|c| c.get(secret))
        .map(|s| s["data"].clone())
        .unwrap_or(Value::Null);
    let decode = |key: &str| {
        data[key]
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    (decode("SLUG_URL"), decode("GREETING"))
}

impl Cluster {
    fn collection(&self, path: &str) -> impl Iterator<Item = &Value> {
        self.objects.get(path).into_iter().flat_map(|c| c.values())
    }

    /// The pods its controllers would run in `ns`: the web Deployment's replicas and one
    /// per release-phase Job.
    fn pods(&self, ns: &str) -> Vec<Value> {
        let mut pods = Vec::new();
        for d in self.collection(&format!("/apis/apps/v1/namespaces/{ns}/deployments")) {
            let template = &d["spec"]["template"];
            let (slug, _) = env_of(self, ns, template);
            let crashing = slug.contains("crashing");
            let release = template["metadata"]["labels"]["gigalixir.release"]
                .as_str()
                .unwrap_or("0");
            for i in 0..d["spec"]["replicas"].as_i64().unwrap_or(1) {
                let container = if crashing {
                    json!({"name": "web", "image": "runner", "imageID": "", "ready": false, "restartCount": 3,
                           "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                           "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}})
                } else {
                    json!({"name": "web", "image": "runner", "imageID": "", "ready": true, "restartCount": 0,
                           "state": {"running": {"startedAt": "2026-12-01T10:00:02Z"}}})
                };
                let first = format!("web-v{release}-{i}");
                let name = match self.killed.get(&format!("{ns}/{first}")) {
                    Some(n) => format!("{first}-r{n}"),
                    None => first,
                };
                pods.push(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": ns,
                                 "labels": template["metadata"]["labels"].clone(),
                                 "creationTimestamp": format!("2026-12-01T10:00:0{i}Z")},
                    "status": {"phase": "Running", "podIP": format!("10.8.0.{}", i + 1),
                               "startTime": format!("2026-12-01T10:00:0{i}Z"),
                               "conditions": [{"type": "Ready", "status": if crashing { "False" } else { "True" }}],
                               "containerStatuses": [container]}
                }));
            }
        }
        for job in self.collection(&format!("/apis/batch/v1/namespaces/{ns}/jobs")) {
            let template = &job["spec"]["template"];
            if let Some(command) = one_off_command(job) {
                pods.push(one_off_pod(ns, job, &command));
                continue;
            }
            let (slug, _) = env_of(self, ns, template);
            let code = if slug.contains("failing-phase") { 3 } else { 0 };
            pods.push(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{}-x", job["metadata"]["name"].as_str().unwrap_or("job")),
                             "namespace": ns, "labels": template["metadata"]["labels"].clone(),
                             "creationTimestamp": "2026-12-01T10:00:00Z"},
                "status": {"phase": if code == 0 { "Succeeded" } else { "Failed" },
                           "containerStatuses": [{"name": "web", "image": "runner", "imageID": "",
                               "ready": false, "restartCount": 0,
                               "state": {"terminated": {"exitCode": code, "reason": "Completed"}}}]}
            }));
        }
        pods
    }

    /// A pod's log, as its slug would print it.
    fn log(&self, ns: &str, pod: &str, previous: bool) -> String {
        let pods = self.pods(ns);
        let Some(found) = pods.iter().find(|p| p["metadata"]["name"] == pod) else {
            return String::new();
        };
        if let Some(job) = found["metadata"]["labels"]["job-name"].as_str() {
            let job = &self.objects[&format!("/apis/batch/v1/namespaces/{ns}/jobs")][job];
            let command = one_off_command(job).unwrap_or_default();
            let (_, greeting) = env_of(self, ns, &job["spec"]["template"]);
            return format!("gigalixir-run: running sh -c {command}\nsaid {greeting}\n");
        }
        if found["metadata"]["labels"]["gigalixir.release-phase"].is_string() {
            let job = pod.trim_end_matches("-x");
            let template = &self.objects[&format!("/apis/batch/v1/namespaces/{ns}/jobs")][job]
                ["spec"]["template"];
            let (slug, greeting) = env_of(self, ns, template);
            return if slug.contains("failing-phase") {
                "gigalixir-run: release phase: sh -c 'echo cannot migrate; exit 3'\ncannot migrate\n"
                    .into()
            } else {
                format!("gigalixir-run: release phase: echo \"migrated $GREETING\"\nmigrated {greeting}\n")
            };
        }
        if previous {
            "gigalixir-run: running sh -c 'echo boom; exit 1'\nboom\n".into()
        } else {
            "gigalixir-run: slug ready in 0.2s (6 MB)\nRunning on port 4000\n".into()
        }
    }

    /// The Deployment as its controller reports it: rolled out unless its pods crash.
    fn deployment_status(&self, ns: &str, d: &Value) -> Value {
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let (slug, _) = env_of(self, ns, &d["spec"]["template"]);
        let available = if slug.contains("crashing") {
            0
        } else {
            replicas
        };
        json!({"observedGeneration": d["metadata"]["generation"], "replicas": replicas,
               "updatedReplicas": replicas, "availableReplicas": available,
               "readyReplicas": available})
    }

    fn job_status(&self, ns: &str, job: &Value) -> Value {
        if let Some(command) = one_off_command(job) {
            return match one_off_pod(ns, job, &command)["status"]["phase"].as_str() {
                Some("Running") => json!({"active": 1}),
                Some("Succeeded") => json!({"succeeded": 1}),
                _ => json!({"failed": 1}),
            };
        }
        let (slug, _) = env_of(self, ns, &job["spec"]["template"]);
        if slug.contains("failing-phase") {
            json!({"failed": 1, "conditions": [
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]})
        } else {
            json!({"succeeded": 1})
        }
    }

    fn answer(
        &mut self,
        method: &str,
        path: &str,
        query: &BTreeMap<String, String>,
        body: &Value,
    ) -> (u16, Value) {
        if method == "GET" && !path.contains("/namespaces") {
            // A list across namespaces (`/api/v1/services`).
            let resource = path.rsplit('/').next().unwrap_or_default();
            let items: Vec<Value> = self
                .objects
                .iter()
                .filter(|(k, _)| k.contains("/namespaces/") && k.ends_with(&format!("/{resource}")))
                .flat_map(|(_, c)| c.values())
                .filter(|o| labels_match(o, query.get("labelSelector")))
                .cloned()
                .collect();
            return (
                200,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
            );
        }
        let t = target(path);
        let ns = t.namespace.clone().unwrap_or_default();
        let is_pods = t.collection.ends_with("/pods");
        match (method, &t.name, t.sub.as_deref()) {
            ("GET", Some(pod), Some("log")) => (
                200,
                Value::String(self.log(
                    &ns,
                    pod,
                    query.get("previous").map(String::as_str) == Some("true"),
                )),
            ),
            ("GET", None, _) => {
                let items: Vec<Value> = if is_pods {
                    self.pods(&ns)
                } else {
                    self.collection(&t.collection).cloned().collect()
                };
                let items: Vec<Value> = items
                    .into_iter()
                    .filter(|o| labels_match(o, query.get("labelSelector")))
                    .map(|mut o| {
                        if t.collection.ends_with("/jobs") {
                            o["status"] = self.job_status(&ns, &o);
                        }
                        o
                    })
                    .collect();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            ("GET", Some(name), None) => {
                let found = if is_pods {
                    self.pods(&ns)
                        .into_iter()
                        .find(|p| p["metadata"]["name"] == **name)
                } else {
                    self.objects
                        .get(&t.collection)
                        .and_then(|c| c.get(name))
                        .cloned()
                };
                match found {
                    None => status(404, "NotFound"),
                    Some(mut object) => {
                        if t.collection.ends_with("/deployments") {
                            object["status"] = self.deployment_status(&ns, &object);
                        } else if t.collection.ends_with("/jobs") {
                            object["status"] = self.job_status(&ns, &object);
                        }
                        (200, object)
                    }
                }
            }
            ("PATCH", Some(_), None)
                if t.collection != "/api/v1/namespaces"
                    && !self
                        .objects
                        .get("/api/v1/namespaces")
                        .is_some_and(|n| n.contains_key(&ns)) =>
            {
                status(404, "NotFound")
            }
            ("PATCH", Some(name), None) => {
                let manager = query.get("fieldManager").cloned().unwrap_or_default();
                let owner = (t.collection.clone(), name.clone(), manager);
                let applied: Vec<String> = body["metadata"]["annotations"]
                    .as_object()
                    .map(|a| a.keys().cloned().collect())
                    .unwrap_or_default();
                let dropped: Vec<String> = self
                    .annotations_of
                    .insert(owner, applied.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|k| !applied.contains(k))
                    .collect();
                let stored = self
                    .objects
                    .entry(t.collection.clone())
                    .or_default()
                    .entry(name.clone())
                    .or_insert_with(|| json!({"metadata": {"generation": 0}}));
                let spec_before = stored["spec"].clone();
                if let Some(annotations) = stored["metadata"]["annotations"].as_object_mut() {
                    for key in &dropped {
                        annotations.remove(key);
                    }
                }
                merge(stored, body);
                if stored["spec"] != spec_before {
                    let generation = stored["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                    stored["metadata"]["generation"] = json!(generation);
                }
                (200, stored.clone())
            }
            ("POST", None, None) => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let collection = self.objects.entry(t.collection.clone()).or_default();
                if collection.contains_key(&name) {
                    return status(409, "AlreadyExists");
                }
                let mut stored = body.clone();
                stored["metadata"]["creationTimestamp"] = json!("2026-12-01T10:00:05Z");
                collection.insert(name, stored.clone());
                (201, stored)
            }
            ("DELETE", Some(name), None) if is_pods => {
                // A web pod goes; its Deployment starts another under a new name.
                if !self
                    .pods(&ns)
                    .iter()
                    .any(|p| p["metadata"]["name"] == **name)
                {
                    return status(404, "NotFound");
                }
                let first = name.split("-r").next().unwrap_or(name).to_owned();
                *self.killed.entry(format!("{ns}/{first}")).or_default() += 1;
                status(200, "Deleted")
            }
            ("DELETE", Some(name), None) => {
                if t.collection == "/api/v1/namespaces" {
                    let inside = format!("/namespaces/{name}/");
                    let had = self
                        .objects
                        .get_mut(&t.collection)
                        .and_then(|c| c.remove(name));
                    self.objects.retain(|path, _| !path.contains(&inside));
                    return match had {
                        Some(_) => status(200, "Deleted"),
                        None => status(404, "NotFound"),
                    };
                }
                match self
                    .objects
                    .get_mut(&t.collection)
                    .and_then(|c| c.remove(name))
                {
                    Some(_) => status(200, "Deleted"),
                    None => status(404, "NotFound"),
                }
            }
            _ => status(405, "MethodNotAllowed"),
        }
    }
}

/// The shell command line of a one-off Job (`run`), `None` for a release phase.
fn one_off_command(job: &Value) -> Option<String> {
    job["spec"]["template"]["metadata"]["labels"]["gigalixir.job"].as_str()?;
    let args = job["spec"]["template"]["spec"]["containers"][0]["args"].as_array()?;
    Some(args.last()?.as_str()?.to_owned())
}

/// The pod of a one-off Job, as its command would end: `exit N` with N, `serve` runs
/// on, `sleep` outlives its deadline (the Job kills it); the rest succeed.
fn one_off_pod(ns: &str, job: &Value, command: &str) -> Value {
    let name = job["metadata"]["name"].as_str().unwrap_or("job");
    let mut labels = job["spec"]["template"]["metadata"]["labels"].clone();
    labels["job-name"] = json!(name);
    let (phase, state) = if command.contains("serve") {
        (
            "Running",
            json!({"running": {"startedAt": "2026-12-01T10:00:06Z"}}),
        )
    } else if command.contains("sleep") {
        ("Failed", json!({}))
    } else {
        let code = command
            .split("exit ")
            .nth(1)
            .and_then(|c| c.trim().parse::<i64>().ok())
            .unwrap_or(0);
        (
            if code == 0 { "Succeeded" } else { "Failed" },
            json!({"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }}}),
        )
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{name}-x"), "namespace": ns, "labels": labels,
                     "creationTimestamp": "2026-12-01T10:00:05Z"},
        "status": {"phase": phase, "reason": if command.contains("sleep") { "DeadlineExceeded" } else { "" },
                   "containerStatuses": [{"name": "web", "image": "runner", "imageID": "",
                       "ready": false, "restartCount": 0, "state": state}]}
    })
}

fn fake_cluster() -> Client {
    let mut cluster = Cluster::default();
    fake_api(move |call| cluster.answer(&call.method, &call.path, &call.query, &call.body))
}

fn slug(name: &str, types: &[&str]) -> SlugRef {
    SlugRef {
        key: format!("slugs/{name}.tgz"),
        sha256: "0".repeat(64),
        size: 1,
        process_types: Some(types.iter().map(|t| (*t).to_owned()).collect()),
        stack: None,
    }
}

fn settings() -> KubeSettings {
    KubeSettings {
        domain: "apps.example.com".into(),
        poll_interval: Duration::from_millis(1),
        ..KubeSettings::default()
    }
}

const SLUG_BASE: &str = "https://slugs.example.invalid";

async fn make() -> (Subject, Guard) {
    let runtime = KubeRuntime::new(
        fake_cluster(),
        settings(),
        Arc::new(BaseUrlSlugs::new(SLUG_BASE)),
    );
    let subject = Subject {
        runtime: Arc::new(runtime),
        app: AppName::parse(&unique("suite")[..14]).expect("app name"),
        slugs: Slugs {
            serving: slug("serving", &["web", "release"]),
            failing_phase: slug("failing-phase", &["web", "release"]),
            crashing: slug("crashing", &["web"]),
        },
    };
    (subject, Box::new(()))
}

shared::runtime_contract!(make);

/// What `gigalixir-hot-upgrade` answers in a fake pod, by the new slug's name: one named
/// `impossible` cannot be installed in place (exit 3), one named `raising` fails (exit 1),
/// the rest are installed.
fn upgrade_in_pod(exec: &Exec) -> (i32, String) {
    let url = exec.command.get(1).map(String::as_str).unwrap_or_default();
    if url.contains("impossible") {
        (
            3,
            "hot upgrade not possible: applications were added (crypto)\n".into(),
        )
    } else if url.contains("raising") {
        (
            1,
            "hot upgrade failed: installing 0.3.0 failed: ** (RuntimeError) boom\n".into(),
        )
    } else {
        (
            0,
            "hot upgrade: 0.1.0 -> 0.2.0 installed in place (OTP release upgrade)\n".into(),
        )
    }
}

#[tokio::test]
async fn a_hot_upgrade_runs_in_every_pod_through_exec_and_restarts_none() {
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    let execs: Arc<Mutex<Vec<Exec>>> = Arc::default();
    let client = served_fake_api(
        {
            let cluster = cluster.clone();
            move |call| {
                (cluster.lock().expect("cluster")).answer(
                    &call.method,
                    &call.path,
                    &call.query,
                    &call.body,
                )
            }
        },
        {
            let execs = execs.clone();
            move |exec| {
                let answer = upgrade_in_pod(&exec);
                execs.lock().expect("execs").push(exec);
                answer
            }
        },
    )
    .await;
    let runtime = KubeRuntime::new(client, settings(), Arc::new(BaseUrlSlugs::new(SLUG_BASE)));
    let s = Subject {
        runtime: Arc::new(runtime),
        app: AppName::parse(&unique("hot")[..14]).expect("app name"),
        slugs: Slugs {
            serving: slug("serving", &["web"]),
            failing_phase: slug("failing-phase", &["web"]),
            crashing: slug("crashing", &["web"]),
        },
    };
    let (rt, app) = (&s.runtime, &s.app);
    let ns = format!("app-{app}");
    let pods = || async {
        let mut names: Vec<String> = rt
            .replicas(app)
            .await
            .expect("replicas")
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        names
    };
    let deployment = || {
        cluster.lock().expect("cluster").objects
            [&format!("/apis/apps/v1/namespaces/{ns}/deployments")]["web"]
            .clone()
    };
    let secret_url = |name: &str| {
        let c = cluster.lock().expect("cluster");
        let data = &c.objects[&format!("/api/v1/namespaces/{ns}/secrets")][name]["data"];
        let b = data["SLUG_URL"].as_str().expect("SLUG_URL");
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .expect("b64"),
        )
        .expect("utf8")
    };

    // v1 runs on two pods.
    let v1 = spec(&s, 1, &slug("serving", &["web"]), 2);
    assert_eq!(
        rt.deploy(&v1).await.expect("deploy"),
        DeployOutcome::Healthy
    );
    let before = pods().await;
    assert_eq!(before, ["web-v1-0", "web-v1-1"]);

    // v2, hot: the upgrade script runs in each pod, one after the other, with the slug's
    // URL and checksum.
    let v2_slug = slug("serving-v2", &["web"]);
    let v2 = spec(&s, 2, &v2_slug, 2);
    let HotOutcome::Upgraded { output } = rt.hot_upgrade(&v2).await.expect("hot upgrade") else {
        panic!("not upgraded");
    };
    assert_eq!(
        output,
        [
            "web.1: hot upgrade: 0.1.0 -> 0.2.0 installed in place (OTP release upgrade)",
            "web.2: hot upgrade: 0.1.0 -> 0.2.0 installed in place (OTP release upgrade)",
        ]
    );
    let seen = execs.lock().expect("execs").clone();
    let url = format!("{SLUG_BASE}/{}", v2_slug.key);
    let expected: Vec<Exec> = before
        .iter()
        .map(|pod| Exec {
            path: format!("/api/v1/namespaces/{ns}/pods/{pod}/exec"),
            container: "web".into(),
            command: vec![
                "gigalixir-hot-upgrade".into(),
                url.clone(),
                v2_slug.sha256.clone(),
            ],
        })
        .collect();
    assert_eq!(seen, expected);

    // No pod restarted: the template is still v1's, and the Secret it names points at
    // v2's slug (a pod started again boots v2); the Deployment says v2 runs.
    assert_eq!(pods().await, before);
    let d = deployment();
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"]["gigalixir.release"],
        "1"
    );
    assert_eq!(d["metadata"]["annotations"]["gigalixir.release"], "2");
    assert_eq!(
        d["metadata"]["annotations"]["gigalixir.template-release"],
        "1"
    );
    assert_eq!(
        d["metadata"]["annotations"]["gigalixir.upgrading"],
        Value::Null
    );
    assert_eq!(d["metadata"]["generation"], 1, "the pod template changed");
    assert_eq!(secret_url("env-v1"), url);
    // `ps` shows the release the pods run, not their template's.
    let versions: Vec<u32> = rt
        .replicas(app)
        .await
        .expect("replicas")
        .iter()
        .map(|r| r.version.0)
        .collect();
    assert_eq!(versions, [2, 2]);
    assert!(rt
        .runs(app, shared::domain::ReleaseVersion(2))
        .await
        .expect("runs"));

    // Scaling v2 keeps that template: one more pod of it, none replaced.
    let v2_three = spec(&s, 2, &v2_slug, 3);
    assert_eq!(
        rt.scale(&v2_three).await.expect("scale"),
        DeployOutcome::Healthy
    );
    assert_eq!(pods().await, ["web-v1-0", "web-v1-1", "web-v1-2"]);
    assert_eq!(secret_url("env-v1"), url);

    // Not possible in the first pod: nothing else is tried, the deploy goes on normally.
    execs.lock().expect("execs").clear();
    let v3 = spec(&s, 3, &slug("impossible", &["web"]), 3);
    assert_eq!(
        rt.hot_upgrade(&v3).await.expect("hot upgrade"),
        HotOutcome::NotPossible {
            reason: "hot upgrade not possible: applications were added (crypto)".into()
        }
    );
    assert_eq!(execs.lock().expect("execs").len(), 1);
    assert_eq!(
        deployment()["metadata"]["annotations"]["gigalixir.upgrading"],
        Value::Null
    );

    // Failing in the first pod: the push fails with why; the other pods are not touched.
    execs.lock().expect("execs").clear();
    let v3 = spec(&s, 3, &slug("raising", &["web"]), 3);
    match rt.hot_upgrade(&v3).await.expect("hot upgrade") {
        HotOutcome::Failed { reason, .. } => assert_eq!(
            reason,
            "the hot upgrade failed on web.1: installing 0.3.0 failed: ** (RuntimeError) boom"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(execs.lock().expect("execs").len(), 1);
    let failed = deployment();
    assert_eq!(failed["metadata"]["annotations"]["gigalixir.release"], "2");
    assert_eq!(
        failed["metadata"]["annotations"]["gigalixir.upgrading"],
        "3"
    );

    // The deploy of the release that runs (what the deploy step does after a failed hot
    // upgrade) restarts every pod, one of which may run code nobody records; then the
    // mark goes.
    assert_eq!(
        rt.deploy(&v2_three).await.expect("deploy"),
        DeployOutcome::Healthy
    );
    let d = deployment();
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["gigalixir.restarted-at"].is_string(),
        "{d}"
    );
    assert_eq!(
        d["metadata"]["annotations"]["gigalixir.upgrading"],
        Value::Null
    );
    assert_eq!(d["metadata"]["annotations"]["gigalixir.release"], "2");

    // The next normal deploy rolls out its own template.
    let v4 = spec(&s, 4, &slug("serving-v4", &["web"]), 3);
    assert_eq!(
        rt.deploy(&v4).await.expect("deploy"),
        DeployOutcome::Healthy
    );
    assert_eq!(pods().await, ["web-v4-0", "web-v4-1", "web-v4-2"]);
    let d = deployment();
    assert_eq!(
        d["metadata"]["annotations"]["gigalixir.template-release"],
        "4"
    );
    assert_eq!(d["metadata"]["annotations"]["gigalixir.release"], "4");
}

#[tokio::test]
async fn a_release_of_the_same_slug_and_config_is_adopted_by_the_running_pods() {
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    let client = served_fake_api(
        {
            let cluster = cluster.clone();
            move |call| {
                (cluster.lock().expect("cluster")).answer(
                    &call.method,
                    &call.path,
                    &call.query,
                    &call.body,
                )
            }
        },
        |_exec| (1, "no exec expected\n".to_owned()),
    )
    .await;
    let runtime = KubeRuntime::new(client, settings(), Arc::new(BaseUrlSlugs::new(SLUG_BASE)));
    let s = Subject {
        runtime: Arc::new(runtime),
        app: AppName::parse(&unique("adopt")[..14]).expect("app name"),
        slugs: Slugs {
            serving: slug("serving", &["web"]),
            failing_phase: slug("failing-phase", &["web"]),
            crashing: slug("crashing", &["web"]),
        },
    };
    let (rt, app) = (&s.runtime, &s.app);
    let ns = format!("app-{app}");
    let deployment = || {
        cluster.lock().expect("cluster").objects
            [&format!("/apis/apps/v1/namespaces/{ns}/deployments")]["web"]
            .clone()
    };
    let serving = slug("serving", &["web"]);
    let v1 = spec(&s, 1, &serving, 2);
    assert_eq!(
        rt.deploy(&v1).await.expect("deploy"),
        DeployOutcome::Healthy
    );
    // Not from a release that does not run.
    let v2 = spec(&s, 2, &serving, 2);
    assert!(!rt
        .adopt(&v2, shared::domain::ReleaseVersion(7))
        .await
        .expect("adopt"));

    // From v1: the pods carry on as v2's, their template untouched.
    assert!(rt
        .adopt(&v2, shared::domain::ReleaseVersion(1))
        .await
        .expect("adopt"));
    let mut pods: Vec<(String, u32)> = rt
        .replicas(app)
        .await
        .expect("replicas")
        .into_iter()
        .map(|r| (r.name, r.version.0))
        .collect();
    pods.sort();
    assert_eq!(
        pods,
        [("web-v1-0".to_owned(), 2), ("web-v1-1".to_owned(), 2)]
    );
    let d = deployment();
    assert_eq!(d["metadata"]["annotations"]["gigalixir.release"], "2");
    assert_eq!(
        d["metadata"]["annotations"]["gigalixir.template-release"],
        "1"
    );
    assert_eq!(d["metadata"]["generation"], 1, "the pod template changed");
    assert!(rt
        .runs(app, shared::domain::ReleaseVersion(2))
        .await
        .expect("runs"));
}

/// A runtime over a fake API server of its own (its cluster, to look into), and an app.
fn on_a_cluster_of_its_own(name: &str) -> (Arc<Mutex<Cluster>>, Subject) {
    let cluster = Arc::new(Mutex::new(Cluster::default()));
    let client = fake_api({
        let cluster = cluster.clone();
        move |call| {
            (cluster.lock().expect("cluster")).answer(
                &call.method,
                &call.path,
                &call.query,
                &call.body,
            )
        }
    });
    let runtime = KubeRuntime::new(client, settings(), Arc::new(BaseUrlSlugs::new(SLUG_BASE)));
    let s = Subject {
        runtime: Arc::new(runtime),
        app: AppName::parse(&unique(name)[..14]).expect("app name"),
        slugs: Slugs {
            serving: slug("serving", &["web"]),
            failing_phase: slug("failing-phase", &["web"]),
            crashing: slug("crashing", &["web"]),
        },
    };
    (cluster, s)
}

/// The events of a one-off job to its end: its lines, its exit code.
async fn ended(job: shared::ports::runtime::JobRun) -> (Vec<String>, i64) {
    use futures::StreamExt;
    use shared::ports::runtime::JobEvent;
    let events: Vec<JobEvent> = tokio::time::timeout(Duration::from_secs(30), job.events.collect())
        .await
        .expect("the job's events end");
    let mut lines = Vec::new();
    let mut code = None;
    for event in events {
        match event {
            JobEvent::Line(line) => lines.push(line),
            JobEvent::Exited(c) => code = Some(c),
        }
    }
    (lines, code.expect("an exit code"))
}

#[tokio::test]
async fn one_off_jobs_run_as_jobs_of_the_web_template_and_ps_kill_deletes_one_pod() {
    let (cluster, s) = on_a_cluster_of_its_own("jobs");
    let (rt, app) = (&s.runtime, &s.app);
    let ns = format!("app-{app}");
    let serving = slug("serving", &["web"]);
    let v1 = spec(&s, 1, &serving, 2);
    let limit = Duration::from_secs(300);

    // Nothing runs yet: nothing to run a job with.
    assert!(matches!(
        rt.run_job(&v1, "true", limit).await.map(|j| j.name),
        Err(shared::PortError::NotFound)
    ));
    assert_eq!(
        rt.deploy(&v1).await.expect("deploy"),
        DeployOutcome::Healthy
    );

    // Its output and code, in a Job of the web pod's template.
    let job = rt.run_job(&v1, "echo hi", limit).await.expect("run");
    let name = job.name.clone();
    let (lines, code) = ended(job).await;
    assert_eq!(code, 0, "{lines:?}");
    assert!(
        lines.contains(&format!("said {}", shared::contract::runtime::GREETING)),
        "{lines:?}"
    );
    let stored = cluster.lock().expect("cluster").objects
        [&format!("/apis/batch/v1/namespaces/{ns}/jobs")][&name]
        .clone();
    let pod = &stored["spec"]["template"];
    assert_eq!(
        pod["spec"]["containers"][0]["args"],
        json!(["timeout", "-s", "KILL", "300", "sh", "-c", "echo hi"])
    );
    assert_eq!(
        pod["spec"]["containers"][0]["envFrom"][0]["secretRef"]["name"],
        "env-v1"
    );
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert!(pod["spec"]["containers"][0]["readinessProbe"].is_null());
    assert!(
        pod["metadata"]["labels"]["gigalixir.app"].is_null(),
        "no traffic, no node"
    );
    assert!(stored["metadata"]["labels"]["app.kubernetes.io/managed-by"].is_null());
    assert_eq!(stored["spec"]["backoffLimit"], 0);
    assert_eq!(stored["spec"]["activeDeadlineSeconds"], 420);

    let (_, code) = ended(rt.run_job(&v1, "exit 3", limit).await.expect("run")).await;
    assert_eq!(code, 3);
    let (_, code) = ended(rt.run_job(&v1, "sleep 999", limit).await.expect("run")).await;
    assert_eq!(
        code, 137,
        "a pod the Job's deadline ended (no exit code of its own)"
    );

    // One that runs is listed, and a deploy leaves it running.
    let running = rt.run_job(&v1, "serve", limit).await.expect("run").name;
    let listed = |jobs: Vec<shared::ports::runtime::JobInfo>| {
        jobs.into_iter()
            .map(|j| (j.name, j.version))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed(rt.jobs(app).await.expect("jobs")),
        [(running.clone(), 1)]
    );
    let v2 = spec(&s, 2, &serving, 2);
    assert_eq!(
        rt.deploy(&v2).await.expect("deploy"),
        DeployOutcome::Healthy
    );
    assert_eq!(
        listed(rt.jobs(app).await.expect("jobs")),
        [(running.clone(), 1)]
    );

    // ps:kill: one web pod goes and another takes its place; nothing else is reachable.
    let names = || async {
        let mut n: Vec<String> = rt
            .replicas(app)
            .await
            .expect("replicas")
            .into_iter()
            .map(|r| r.name)
            .collect();
        n.sort();
        n
    };
    assert_eq!(names().await, ["web-v2-0", "web-v2-1"]);
    rt.kill(app, "web-v2-0").await.expect("kill");
    assert_eq!(names().await, ["web-v2-0-r1", "web-v2-1"]);
    let other = AppName::parse(&unique("other")[..14]).expect("app name");
    for (whose, pod) in [
        (app, "web-v2-0"),
        (app, &format!("{running}-x")),
        (app, "nope"),
        (&other, "web-v2-1"),
    ] {
        assert!(
            matches!(rt.kill(whose, pod).await, Err(shared::PortError::NotFound)),
            "{whose} {pod}"
        );
    }
    assert_eq!(names().await, ["web-v2-0-r1", "web-v2-1"]);
}

#[tokio::test]
async fn maintenance_and_a_canary_route_through_ingresses_and_leave_with_the_app() {
    use shared::kube_runtime::render::canary_name;
    use shared::model::Canary;
    use shared::ports::runtime::Traffic;
    let (cluster, s) = on_a_cluster_of_its_own("shop");
    let (rt, shop) = (&s.runtime, &s.app);
    let green = AppName::parse(&unique("green")[..14]).expect("app name");
    let serving = slug("serving", &["web"]);
    let shop_v1 = spec(&s, 1, &serving, 1);
    let green_v1 = shared::ports::runtime::ReleaseSpec {
        app: green.clone(),
        ..shop_v1.clone()
    };
    for v1 in [&shop_v1, &green_v1] {
        assert_eq!(rt.deploy(v1).await.expect("deploy"), DeployOutcome::Healthy);
    }
    let object = |ns: &AppName, kind: &str, name: &str| {
        let path = if kind == "services" {
            format!("/api/v1/namespaces/app-{ns}/services")
        } else {
            format!("/apis/networking.k8s.io/v1/namespaces/app-{ns}/{kind}")
        };
        cluster
            .lock()
            .expect("cluster")
            .objects
            .get(&path)
            .and_then(|c| c.get(name))
            .cloned()
    };
    let backend = |ingress: &Value| {
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"].clone()
    };
    let split = canary_name(shop);
    let shop_domain = shared::domain::Fqdn::parse("shop.example.com").expect("fqdn");
    let to_green = |weight| Traffic {
        canary: Some(Canary {
            app: green.clone(),
            weight,
        }),
        ..Traffic::default()
    };

    // A canary: its Service and canary Ingress in green's namespace, for shop's hosts.
    rt.set_routes(shop, std::slice::from_ref(&shop_domain), &to_green(10))
        .await
        .expect("canary");
    let ingress = object(&green, "ingresses", &split).expect("the canary's Ingress");
    assert_eq!(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"],
        "10"
    );
    assert_eq!(backend(&ingress), "canary");
    let hosts: Vec<&str> = ingress["spec"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["host"].as_str().expect("host"))
        .collect();
    assert_eq!(
        hosts,
        [
            format!("{shop}.apps.example.com").as_str(),
            "shop.example.com"
        ]
    );
    let service = object(&green, "services", "canary").expect("green's canary Service");
    assert_eq!(service["spec"]["selector"]["gigalixir.app"], green.as_str());
    let web = object(shop, "ingresses", "web").expect("shop's Ingress");
    assert_eq!(
        web["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"],
        "cookie"
    );
    let domains = object(shop, "ingresses", "domains").expect("shop's domains");
    assert_eq!(
        domains["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"],
        "cookie"
    );
    // Green's own deploys leave it alone, and so do its routes while it serves shop.
    let mut green_v2 = shared::ports::runtime::ReleaseSpec {
        version: shared::domain::ReleaseVersion(2),
        ..green_v1.clone()
    };
    green_v2.traffic.serves = vec![shop.clone()];
    assert_eq!(
        rt.deploy(&green_v2).await.expect("deploy"),
        DeployOutcome::Healthy
    );
    rt.set_routes(&green, &[], &green_v2.traffic)
        .await
        .expect("green's routes");
    assert!(object(&green, "ingresses", &split).is_some());
    // Green given away (it serves shop no more): its routes drop shop's share, even if
    // shop's own routes were never synced again.
    rt.set_routes(&green, &[], &Traffic::default())
        .await
        .expect("green's routes");
    assert!(object(&green, "ingresses", &split).is_none());
    rt.set_routes(shop, std::slice::from_ref(&shop_domain), &to_green(10))
        .await
        .expect("canary again");
    assert!(object(&green, "ingresses", &split).is_some());

    // Maintenance, the canary still set: shop's hosts go to the Service with no
    // endpoints, and no share goes to green.
    let down = Traffic {
        maintenance: true,
        ..to_green(10)
    };
    rt.set_routes(shop, &[], &down).await.expect("maintenance");
    assert!(object(&green, "ingresses", &split).is_none());
    let web = object(shop, "ingresses", "web").expect("shop's Ingress");
    assert_eq!(backend(&web), "maintenance");
    assert_eq!(
        web["metadata"]["annotations"]["nginx.ingress.kubernetes.io/custom-headers"],
        format!("app-{shop}/maintenance-headers")
    );
    let maintenance = object(shop, "services", "maintenance").expect("the maintenance Service");
    assert!(maintenance["spec"]["selector"].is_null(), "no endpoints");
    // A deploy in maintenance keeps it.
    let mut shop_v2 = spec(&s, 2, &serving, 1);
    shop_v2.traffic = down;
    assert_eq!(
        rt.deploy(&shop_v2).await.expect("deploy"),
        DeployOutcome::Healthy
    );
    assert_eq!(
        backend(&object(shop, "ingresses", "web").expect("web")),
        "maintenance"
    );
    rt.set_routes(shop, &[], &Traffic::default())
        .await
        .expect("on");
    let web = object(shop, "ingresses", "web").expect("shop's Ingress");
    assert_eq!(backend(&web), "web");
    assert!(web["metadata"]["annotations"]["nginx.ingress.kubernetes.io/custom-headers"].is_null());
    assert!(web["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"].is_null());

    // A canary not deployed yet: nothing to route to, no error.
    let ghost = AppName::parse(&unique("ghost")[..14]).expect("app name");
    let to_ghost = Traffic {
        canary: Some(Canary {
            app: ghost.clone(),
            weight: 10,
        }),
        ..Traffic::default()
    };
    rt.set_routes(shop, &[], &to_ghost).await.expect("ghost");
    assert!(object(&ghost, "ingresses", &split).is_none());

    // The app gone, its share of green's traffic goes too; green keeps its own.
    rt.set_routes(shop, &[], &to_green(50))
        .await
        .expect("canary");
    assert!(object(&green, "ingresses", &split).is_some());
    rt.remove_app(shop).await.expect("remove");
    assert!(object(&green, "ingresses", &split).is_none());
    assert!(object(&green, "ingresses", "web").is_some());
    assert!(object(&green, "services", "canary").is_some());
}

#[tokio::test]
async fn one_replica_or_job_is_followed_by_name_and_nothing_of_another_app() {
    use futures::StreamExt;
    let (_cluster, s) = on_a_cluster_of_its_own("drained");
    let (rt, app) = (&s.runtime, &s.app);
    let v1 = spec(&s, 1, &slug("serving", &["web"]), 1);
    assert_eq!(
        rt.deploy(&v1).await.expect("deploy"),
        DeployOutcome::Healthy
    );
    let lines = |stream: futures::stream::BoxStream<'static, String>| async move {
        tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<String>>())
            .await
            .expect("the fake's log ends")
    };
    let web = rt.replica_logs(app, "web-v1-0", None).await.expect("web");
    assert!(lines(web)
        .await
        .contains(&"Running on port 4000".to_owned()));
    let job = rt
        .run_job(&v1, "serve", Duration::from_secs(60))
        .await
        .expect("run")
        .name;
    let followed = rt.replica_logs(app, &job, None).await.expect("job");
    assert!(lines(followed)
        .await
        .contains(&format!("said {}", shared::contract::runtime::GREETING)));
    let other = AppName::parse(&unique("other")[..14]).expect("app name");
    for (whose, name) in [
        (app, "web-v9-0"),
        (&other, "web-v1-0"),
        (&other, job.as_str()),
    ] {
        assert!(
            matches!(
                rt.replica_logs(whose, name, None).await.map(|_| ()),
                Err(shared::PortError::NotFound)
            ),
            "{whose} {name}"
        );
    }
}
