#!/usr/bin/env python3
"""The Terraform in infra/ against the Rust side's wiring (shared/core/src/deployment.rs).

Reads the manifest that `gigalixir-platform --print-deployment` prints and every `infra/*.tf`
(parsed with python-hcl2), and fails when the two disagree on a topic, a subscription (its
topic, consumer, push or pull, path, ack deadline, attempts, backoff, dead letter), a blob
space (bucket) or an environment variable a function reads. Also checks that the resources
really use the wiring locals they are compared through (a push subscription has a
push_config to the function's URL + the subscription's path, buckets are named
<prefix>-<space>, build and upload share a pod and hence a Docker engine, ...).

    check_wiring.py --manifest deployment.json --infra infra/ [--self-test]

`--self-test` then breaks one thing at a time in copies of both sides (a topic, a
subscription, a delivery mode, a path, a bucket, an environment variable, ...) and fails
unless every break is caught: it adds an error that the unbroken comparison does not have. Prints one line per check and a closing `N passed, N failed`.
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import os
import re
import sys
from typing import Any, Callable

# Pub/Sub's limits, applied to the manifest's values before comparing (wiring.tf says why).
ACK_DEADLINE_RANGE = (10, 600)
DEAD_LETTER_ATTEMPTS_RANGE = (5, 100)

# Platform-level variables: read by libraries under the binaries, not by a function's own
# settings, so deployment.rs does not list them. Terraform may set exactly these (name ->
# the functions that may get it, None for every function; and why); any other variable the
# manifest does not list fails.
PLATFORM_ENV: dict[str, tuple[set[str] | None, str]] = {
    "LOG_FORMAT": (None, "every binary's logging (shared/function/src/web.rs, init_tracing)"),
    "KUBECONFIG": ({"deploy", "api"}, "the kube client of deploy and api; they run outside the cluster"),
    "DOCKER_HOST": ({"build", "upload"}, "the Docker client (shared/docker): the pod's engine"),
}

# Functions that must run in one pod: upload reads the slug out of the container that
# build ran, which only the same Docker engine (a pod-local socket) can reach.
SAME_POD = ("build", "upload")

# What each URL-valued variable must look like on GCP.
ENV_VALUE_PATTERNS = {
    "GIGALIXIR_STORE": r"^firestore://\$\{var\.project_id\}$",
    "GIGALIXIR_BUS": r"^pubsub://\$\{var\.project_id\}$",
    "GIGALIXIR_BLOBS": r"^gs://\$\{local\.bucket_prefix\}$",
    "GIGALIXIR_RUNTIME": r"^\$\{local\.runtime_url\}$",
    "GIGALIXIR_DOMAIN": r"^\$\{var\.apps_domain\}$",
    "DOCKER_HOST": r"^\$\{local\.docker_host\}$",
}


# --- reading the HCL -------------------------------------------------------------------------


def load_hcl2():
    """python-hcl2 from the infra venv's side directory, else whatever `hcl2` is importable."""
    side = os.environ.get("GIGALIXIR_PYTHON_HCL2")
    if side and side not in sys.path:
        sys.path.insert(0, side)
    import hcl2  # noqa: PLC0415

    return hcl2


def clean(value: Any) -> Any:
    """python-hcl2's output without its markers: keys and string literals unquoted,
    expressions kept as `${...}` text."""
    if isinstance(value, dict):
        return {
            unquote(k): clean(v)
            for k, v in value.items()
            if k not in ("__is_block__", "__comments__", "__inline_comments__")
        }
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, str):
        return unquote(value)
    return value


def unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def read_terraform(infra_dir: str) -> dict:
    """Every locals entry and every resource of the *.tf files directly in infra_dir."""
    hcl2 = load_hcl2()
    files = sorted(glob.glob(os.path.join(infra_dir, "*.tf")))
    if not files:
        raise SystemExit(f"no *.tf files in {infra_dir}")
    tf = {"locals": {}, "resources": {}}
    for path in files:
        with open(path, encoding="utf-8") as f:
            doc = clean(hcl2.load(f))
        for block in doc.get("locals", []):
            for name, value in block.items():
                if name in tf["locals"]:
                    raise SystemExit(f"local.{name} is defined twice ({path})")
                tf["locals"][name] = value
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                for rname, body in named.items():
                    tf["resources"][f"{rtype}.{rname}"] = body
    return tf


def text(value: Any) -> str:
    """A resource attribute or block as one searchable string."""
    return json.dumps(value, sort_keys=True)


# --- the comparison --------------------------------------------------------------------------


def clamp(value: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(bounds[1], value))


class Report:
    """Errors and notes of one comparison, grouped by check."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}
        self.notes: list[str] = []

    def check(self, group: str, ok: bool, message: str) -> None:
        self.errors.setdefault(group, [])
        if not ok:
            self.errors[group].append(message)

    def failed(self) -> list[str]:
        return [g for g, errs in self.errors.items() if errs]

    def new_failures(self, baseline: "Report") -> list[str]:
        """The groups with an error that `baseline` does not have."""
        old = {(g, e) for g, errs in baseline.errors.items() for e in errs}
        return sorted({g for g, errs in self.errors.items() for e in errs if (g, e) not in old})


def compare(manifest: dict, tf: dict) -> Report:
    r = Report()
    loc = tf["locals"]
    res = tf["resources"]

    def need_local(name: str) -> Any:
        r.check("structure", name in loc, f"local.{name} is missing")
        return loc.get(name)

    tf_topics = need_local("topics") or []
    tf_subs = need_local("subscriptions") or {}
    tf_spaces = need_local("blob_spaces") or {}
    function_env = need_local("function_env") or {}
    common_env = need_local("common_env") or {}
    extra_env = need_local("extra_env") or {}
    services = need_local("services") or {}
    publishes = need_local("publishes") or {}
    runs_as = need_local("runs_as") or {}

    # Functions that run as GKE workers: a Deployment with a container whose env is that
    # function's (function -> the Deployments that run it).
    workers: dict[str, set[str]] = {}
    for rid, body in res.items():
        if rid.startswith("kubernetes_deployment"):
            for fn in re.findall(r'local\.function_env\[\\"([a-z]+)\\"\]', text(body)):
                workers.setdefault(fn, set()).add(rid)

    # Topics.
    m_topics = set(manifest["topics"])
    t_topics = set(tf_topics)
    for t in sorted(m_topics - t_topics):
        r.check("topics", False, f"topic {t} is published by the platform but Terraform lacks it")
    for t in sorted(t_topics - m_topics):
        r.check("topics", False, f"Terraform declares topic {t}, which the manifest does not list")
    r.check("topics", len(tf_topics) == len(t_topics), "a topic is listed twice in local.topics")

    # Subscriptions.
    m_subs = {s["name"]: s for s in manifest["subscriptions"]}
    for name in sorted(set(m_subs) - set(tf_subs)):
        r.check("subscriptions", False, f"subscription {name} is missing in Terraform")
    for name in sorted(set(tf_subs) - set(m_subs)):
        r.check("subscriptions", False, f"Terraform declares subscription {name}, unknown to the manifest")
    for name in sorted(set(m_subs) & set(tf_subs)):
        m, t = m_subs[name], tf_subs[name]
        r.check("subscriptions", m["function"] is not None, f"{name}: the manifest names no consumer")
        expect = {
            "topic": m["topic"],
            "function": m["function"],
            "delivery": m["delivery"],
            "path": m["path"],
            "ack_deadline_seconds": clamp(m["ack_deadline_seconds"], ACK_DEADLINE_RANGE),
            "min_backoff_seconds": m["min_backoff_seconds"],
            "max_backoff_seconds": m["max_backoff_seconds"],
            "dead_letter": m["dead_letter"],
            # The exact values, for the adapter's labels.
            "spec_ack_deadline_seconds": m["ack_deadline_seconds"],
            "spec_max_attempts": m["max_attempts"],
        }
        if m["dead_letter"] is not None:
            expect["max_delivery_attempts"] = clamp(m["max_attempts"], DEAD_LETTER_ATTEMPTS_RANGE)
        for key, want in expect.items():
            group = "delivery" if key in ("delivery", "path") else "subscriptions"
            r.check(group, t.get(key) == want, f"{name}: {key} is {t.get(key)!r} in Terraform, the manifest wants {want!r}")
        r.check("subscriptions", t.get("topic") in t_topics, f"{name}: its topic {t.get('topic')} is not declared")
        if t.get("delivery") == "push":
            r.check("delivery", t.get("function") in services, f"{name} is pushed to {t.get('function')}, which has no Cloud Run service")
        elif t.get("delivery") == "pull":
            r.check("delivery", t.get("function") in workers, f"{name} is pulled by {t.get('function')}, which has no GKE worker")
        else:
            r.check("delivery", False, f"{name}: delivery {t.get('delivery')!r} is neither push nor pull")

    # The resources behind the subscriptions.
    push = res.get("google_pubsub_subscription.push", {})
    pull = res.get("google_pubsub_subscription.pull", {})
    r.check("delivery", bool(push.get("push_config")), "google_pubsub_subscription.push has no push_config")
    r.check("delivery", "push_config" not in pull, "google_pubsub_subscription.pull must not have a push_config")
    r.check("delivery", push.get("for_each") == "${local.push_subscriptions}", "the push subscriptions are not local.push_subscriptions")
    r.check("delivery", pull.get("for_each") == "${local.pull_subscriptions}", "the pull subscriptions are not local.pull_subscriptions")
    r.check("delivery", 's.delivery == "push"' in str(loc.get("push_subscriptions")), 'local.push_subscriptions does not select delivery == "push"')
    r.check("delivery", 's.delivery == "pull"' in str(loc.get("pull_subscriptions")), 'local.pull_subscriptions does not select delivery == "pull"')
    endpoint = str((push.get("push_config") or [{}])[0].get("push_endpoint"))
    want_endpoint = "${google_cloud_run_v2_service.functions[each.value.function].uri}${each.value.path}"
    r.check("delivery", endpoint == want_endpoint, f"push endpoint {endpoint} is not the function's URL + the subscription's path ({want_endpoint})")
    for name, t in sorted(tf_subs.items()):
        r.check("delivery", str(t.get("path", "")).startswith("/"), f"{name}: path {t.get('path')!r} does not start with /")
    for rid in ("google_pubsub_subscription.push", "google_pubsub_subscription.pull"):
        body = res.get(rid, {})
        r.check("subscriptions", "dead_letter_policy" in text(body.get("dynamic", [])), f"{rid} has no dead_letter_policy")
        r.check("subscriptions", body.get("ack_deadline_seconds") == "${each.value.ack_deadline_seconds}", f"{rid} does not take its ack deadline from the wiring")
        r.check("subscriptions", "each.value.min_backoff_seconds" in text(body.get("retry_policy")), f"{rid} does not take its backoff from the wiring")
        labels = body.get("labels") or {}
        r.check("subscriptions", labels.get("gigalixir-ack-deadline-ms") == "${each.value.spec_ack_deadline_seconds * 1000}", f"{rid} lacks the label gigalixir-ack-deadline-ms from the wiring")
        r.check("subscriptions", labels.get("gigalixir-max-attempts") == "${each.value.spec_max_attempts}", f"{rid} lacks the label gigalixir-max-attempts from the wiring")
    r.check("topics", res.get("google_pubsub_topic.topics", {}).get("for_each") == "${toset(local.topics)}", "google_pubsub_topic.topics is not one per local.topics")

    # Publishers: every subscribed topic is published by some function (dead letters come
    # from Pub/Sub itself), and only to declared topics.
    published = {t for ts in publishes.values() for t in ts}
    for t in sorted(published - t_topics):
        r.check("topics", False, f"local.publishes names undeclared topic {t}")
    for name, t in sorted(tf_subs.items()):
        if t.get("topic") != loc.get("dead_letter_topic"):
            r.check("topics", t.get("topic") in published, f"{name}: no function may publish to {t.get('topic')}")

    # Buckets.
    m_spaces = set(manifest["blob_spaces"])
    for s in sorted(m_spaces - set(tf_spaces)):
        r.check("buckets", False, f"blob space {s} has no bucket in Terraform")
    for s in sorted(set(tf_spaces) - m_spaces):
        r.check("buckets", False, f"Terraform declares bucket space {s}, unknown to the manifest")
    bucket = res.get("google_storage_bucket.blobs", {})
    r.check("buckets", bucket.get("for_each") == "${local.blob_spaces}", "google_storage_bucket.blobs is not one per local.blob_spaces")
    r.check("buckets", bucket.get("name") == "${local.bucket_prefix}-${each.key}", "bucket names are not <bucket_prefix>-<space>")

    # Where each function runs: Cloud Run or a GKE worker, not both; build and upload in one
    # pod (one Deployment), sharing its Docker engine and therefore its identity.
    for fn in sorted(set(services) & set(workers)):
        r.check("delivery", False, f"{fn} is both a Cloud Run service and a GKE worker")
    pods = [workers.get(fn, set()) for fn in SAME_POD]
    r.check("delivery", all(len(p) == 1 for p in pods) and len(set().union(*pods)) == 1,
            f"{' and '.join(SAME_POD)} do not run in one and the same Deployment (pod): {sorted(set().union(*pods))}")
    r.check("delivery", len({runs_as.get(fn) for fn in SAME_POD}) == 1,
            f"{' and '.join(SAME_POD)} share a pod, hence one identity, but local.runs_as gives them {[runs_as.get(fn) for fn in SAME_POD]}")

    # Environments.
    m_env = {fn: {v["name"] for v in vars_} for fn, vars_ in manifest["env"].items()}
    deployed = set(services) | set(workers)
    for fn in sorted(set(m_env) - set(runs_as)):
        r.check("structure", False, f"local.runs_as gives {fn} no identity")
    for fn in sorted(set(m_env) - deployed):
        r.check("env", False, f"function {fn} is neither a Cloud Run service nor a GKE worker")
    for fn in sorted(deployed - set(m_env)):
        r.check("env", False, f"Terraform deploys {fn}, which the manifest does not know")
    for fn in sorted(set(m_env) & deployed):
        tf_names = set(function_env.get(fn, {})) | set(common_env) | set(extra_env.get(fn, {}))
        if fn in services:
            tf_names.add("PORT")  # Cloud Run sets it
        for name in sorted(m_env[fn] - tf_names):
            r.check("env", False, f"{fn} reads {name} but Terraform does not set it")
        for name in sorted(tf_names - m_env[fn]):
            allowed, why = PLATFORM_ENV.get(name, (set(), ""))
            if allowed is None or fn in allowed:
                r.notes.append(f"{name} is a platform-level variable (PLATFORM_ENV), not in the manifest: {why}")
            else:
                r.check("env", False, f"Terraform sets {name} for {fn}, which the manifest does not list (nor PLATFORM_ENV for {fn})")
        values = {**function_env.get(fn, {}), **common_env, **extra_env.get(fn, {})}
        for name, value in values.items():
            pattern = ENV_VALUE_PATTERNS.get(name)
            if pattern:
                r.check("env", bool(re.match(pattern, str(value))), f"{fn}: {name}={value} is not of the form {pattern}")
    run = res.get("google_cloud_run_v2_service.functions", {})
    run_text = text(run)
    r.check("env", run.get("for_each") == "${local.services}", "the Cloud Run services are not local.services")
    for needle in ("local.function_env[each.key]", "local.common_env", "local.extra_env"):
        r.check("env", needle in run_text, f"the Cloud Run services do not use {needle}")
    for fn, rids in sorted(workers.items()):
        for rid in sorted(rids):
            body = text(res[rid])
            for needle in ("local.common_env", f'local.extra_env[\\"{fn}\\"]'):
                r.check("env", needle in body, f"{rid}: the {fn} container does not use {needle}")
    r.check("env", "container_port" in run_text and "8080" in run_text, "the Cloud Run services do not declare container port 8080 (PORT)")

    return r


# --- self-test -------------------------------------------------------------------------------


def self_tests(manifest: dict, tf: dict) -> list[tuple[str, Callable[[dict, dict], None]]]:
    """Each breaks one thing; compare() must then fail."""
    first_push = next(s for s in manifest["subscriptions"] if s["delivery"] == "push")
    first_pull = next(s for s in manifest["subscriptions"] if s["delivery"] == "pull")
    with_dl = next(s for s in manifest["subscriptions"] if s["dead_letter"])

    def sub(m: dict, name: str) -> dict:
        return next(s for s in m["subscriptions"] if s["name"] == name)

    def drop_env(m: dict, fn: str, name: str) -> None:
        m["env"][fn] = [v for v in m["env"][fn] if v["name"] != name]

    def containers(body: Any) -> list:
        """The `container` blocks of a Deployment, wherever python-hcl2 put them."""
        if isinstance(body, dict):
            found = list(body["container"]) if "container" in body else []
            return found + [c for k, v in body.items() if k != "container" for c in containers(v)]
        if isinstance(body, list):
            return [c for v in body for c in containers(v)]
        return []

    def own_pod(t: dict, fn: str) -> None:
        """Moves fn's container out of its Deployment into a Deployment of its own."""
        needle = f'local.function_env[\\"{fn}\\"]'
        rid = next(r for r, b in t["resources"].items() if r.startswith("kubernetes_deployment") and needle in text(b))
        copy_ = copy.deepcopy(t["resources"][rid])
        for body, keep in ((t["resources"][rid], False), (copy_, True)):
            def prune(node: Any) -> None:
                if isinstance(node, dict):
                    if "container" in node:
                        node["container"] = [c for c in node["container"] if (needle in text(c)) == keep]
                    for k, v in node.items():
                        if k != "container":
                            prune(v)
                elif isinstance(node, list):
                    for v in node:
                        prune(v)
            prune(body)
        assert any(needle in text(c) for c in containers(copy_)), fn
        t["resources"][f"kubernetes_deployment_v1.{fn}"] = copy_

    push_endpoint = lambda t: t["resources"]["google_pubsub_subscription.push"]["push_config"][0]  # noqa: E731

    return [
        ("manifest loses a topic", lambda m, t: m["topics"].remove("slug-built")),
        ("manifest gains a topic", lambda m, t: m["topics"].append("app-renamed")),
        ("Terraform loses a topic", lambda m, t: t["locals"]["topics"].remove("deploy-failed")),
        ("manifest loses a subscription", lambda m, t: m["subscriptions"].remove(sub(m, first_push["name"]))),
        ("Terraform loses a subscription", lambda m, t: t["locals"]["subscriptions"].pop(first_push["name"])),
        ("manifest gains a subscription", lambda m, t: m["subscriptions"].append(dict(first_push, name="api.app-scaled"))),
        ("push becomes pull in the manifest", lambda m, t: sub(m, first_push["name"]).update(delivery="pull")),
        ("pull becomes push in Terraform", lambda m, t: t["locals"]["subscriptions"][first_pull["name"]].update(delivery="push")),
        ("push resource loses push_config", lambda m, t: t["resources"]["google_pubsub_subscription.push"].pop("push_config")),
        ("subscription changes topic", lambda m, t: sub(m, first_push["name"]).update(topic="app-scaled")),
        ("subscription changes consumer", lambda m, t: sub(m, first_push["name"]).update(function="api")),
        ("attempts change", lambda m, t: sub(m, with_dl["name"]).update(max_attempts=9)),
        ("backoff changes", lambda m, t: sub(m, with_dl["name"]).update(max_backoff_seconds=120)),
        ("ack deadline changes", lambda m, t: sub(m, with_dl["name"]).update(ack_deadline_seconds=30)),
        ("a deadline beyond Pub/Sub's bound changes", lambda m, t: sub(m, first_pull["name"]).update(ack_deadline_seconds=first_pull["ack_deadline_seconds"] + 60)),
        ("the pull labels are dropped", lambda m, t: t["resources"]["google_pubsub_subscription.pull"].pop("labels")),
        ("dead letter dropped", lambda m, t: sub(m, with_dl["name"]).update(dead_letter=None)),
        ("manifest loses a blob space", lambda m, t: m["blob_spaces"].remove("caches")),
        ("manifest gains a blob space", lambda m, t: m["blob_spaces"].append("logs")),
        ("Terraform loses a bucket", lambda m, t: t["locals"]["blob_spaces"].pop("slugs")),
        ("a function stops reading a variable", lambda m, t: drop_env(m, "deploy", "GIGALIXIR_RUNTIME")),
        ("a function reads a new variable", lambda m, t: m["env"]["api"].append({"name": "GIGALIXIR_HEX_UPSTREAM", "required": False, "doc": ""})),
        ("Terraform forgets a variable", lambda m, t: t["locals"]["function_env"]["build"].pop("GIGALIXIR_BUS")),
        ("a variable points at the wrong backend", lambda m, t: t["locals"]["function_env"]["api"].update(GIGALIXIR_STORE="sqlite:///tmp/x")),
        ("the pull worker reads PORT", lambda m, t: m["env"]["build"].append({"name": "PORT", "required": False, "doc": ""})),
        ("a new function appears", lambda m, t: m["env"].update(scheduler=[])),
        ("a subscription's path changes in the manifest", lambda m, t: sub(m, first_push["name"]).update(path="/elsewhere")),
        ("Terraform changes a subscription's path", lambda m, t: t["locals"]["subscriptions"][first_push["name"]].update(path="/")
            if first_push["path"] != "/" else t["locals"]["subscriptions"][first_push["name"]].update(path="/elsewhere")),
        ("the push endpoint ignores the path", lambda m, t: push_endpoint(t).update(push_endpoint="${google_cloud_run_v2_service.functions[each.value.function].uri}/")),
        ("Terraform sets a variable nobody reads", lambda m, t: t["locals"]["extra_env"].update(receive={"GIGALIXIR_WEBHOOK_KEY": "x"})),
        ("a platform-level variable goes to a function not allowed it", lambda m, t: t["locals"]["extra_env"].update(receive={"KUBECONFIG": "/x"})),
        ("a pull worker also gets a Cloud Run service", lambda m, t: t["locals"]["services"].update({first_pull["function"]: {"public": False}})),
        ("upload moves to a pod of its own", lambda m, t: own_pod(t, "upload")),
        ("upload runs as another identity than build", lambda m, t: t["locals"]["runs_as"].update(upload="upload")),
        ("a function has no identity", lambda m, t: t["locals"]["runs_as"].pop("release")),
        ("the manifest names no consumer", lambda m, t: sub(m, first_push["name"]).update(function=None)),
    ]


def hcl_edit_is_caught(manifest: dict, infra_dir: str) -> bool:
    import shutil  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        edited = 0
        for path in glob.glob(os.path.join(infra_dir, "*.tf")):
            dest = os.path.join(tmp, os.path.basename(path))
            shutil.copy(path, dest)
            with open(dest, encoding="utf-8") as f:
                src = f.read()
            new = re.sub(r'delivery(\s*)= "pull"', r'delivery\1= "push"', src)
            if new != src:
                edited += 1
                with open(dest, "w", encoding="utf-8") as f:
                    f.write(new)
        baseline = compare(manifest, read_terraform(infra_dir))
        return edited > 0 and bool(compare(manifest, read_terraform(tmp)).new_failures(baseline))


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", required=True, help="JSON printed by gigalixir-platform --print-deployment")
    ap.add_argument("--infra", required=True, help="the folder holding the *.tf files")
    ap.add_argument("--self-test", action="store_true", help="also prove that each kind of mismatch is caught")
    args = ap.parse_args()

    with open(args.manifest, encoding="utf-8") as f:
        manifest = json.load(f)
    tf = read_terraform(args.infra)

    passed = failed = 0
    report = compare(manifest, tf)
    for group in sorted(report.errors):
        errs = report.errors[group]
        if errs:
            failed += 1
            print(f"FAIL wiring: {group}")
            for e in errs:
                print(f"     - {e}")
        else:
            passed += 1
            print(f"ok   wiring: {group}")
    for note in sorted(set(report.notes)):
        print(f"note {note}")

    if args.self_test:
        for label, breaks in self_tests(manifest, tf):
            m, t = copy.deepcopy(manifest), copy.deepcopy(tf)
            breaks(m, t)
            caught = compare(m, t).new_failures(report)
            if caught:
                passed += 1
                print(f"ok   self-test: {label} (caught by {', '.join(caught)})")
            else:
                failed += 1
                print(f"FAIL self-test: {label} went unnoticed")

    if args.self_test:
        # The same through the parser: an edit of the .tf text itself is caught.
        ok = hcl_edit_is_caught(manifest, args.infra)
        passed, failed = passed + ok, failed + (not ok)
        print(f"{'ok  ' if ok else 'FAIL'} self-test: a pull subscription made push in a copy of the .tf files")

    print(f"check_wiring: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
