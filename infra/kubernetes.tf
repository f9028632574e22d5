# Inside the cluster: ingress-nginx and cert-manager (Helm), the Let's Encrypt ClusterIssuer
# the apps' Ingresses name, the build workers, and what deploy may do. The apps' own
# namespaces (app-<name>) are created by deploy, not here.

resource "helm_release" "ingress_nginx" {
  name             = "ingress-nginx"
  repository       = "https://kubernetes.github.io/ingress-nginx"
  chart            = "ingress-nginx"
  version          = "4.12.1"
  namespace        = "ingress-nginx"
  create_namespace = true
  wait             = true
  timeout          = 900

  values = [yamlencode({
    controller = {
      replicaCount = 2
      nodeSelector = { "gigalixir.dev/pool" = "apps" }
      ingressClassResource = {
        name    = "nginx"
        default = true
      }
      # Long-lived connections (LiveView websockets) are not cut after a minute.
      config = {
        "proxy-read-timeout" = "3600"
        "proxy-send-timeout" = "3600"
        "proxy-body-size"    = "32m"
        # maintenance:on answers 503 with Retry-After (the custom-headers annotation;
        # ingress-nginx adds only the response headers named here).
        "global-allowed-response-headers" = "Retry-After"
      }
      service = {
        loadBalancerIP = google_compute_address.apps_ingress.address
        # Keeps the client's address (Cloud Armor-less apps still see who called).
        externalTrafficPolicy = "Local"
      }
    }
  })]

  depends_on = [google_container_node_pool.apps]
}

resource "helm_release" "cert_manager" {
  name             = "cert-manager"
  repository       = "https://charts.jetstack.io"
  chart            = "cert-manager"
  version          = "v1.17.1"
  namespace        = "cert-manager"
  create_namespace = true
  wait             = true
  timeout          = 900

  values = [yamlencode({
    crds = {
      enabled = true
      keep    = true
    }
  })]

  depends_on = [google_container_node_pool.apps]
}

# The issuer every app's Ingress names (cert-manager.io/cluster-issuer), HTTP-01 through
# ingress-nginx. Its CRD comes with cert-manager: see README.md, "First apply".
resource "kubernetes_manifest" "cluster_issuer" {
  manifest = {
    apiVersion = "cert-manager.io/v1"
    kind       = "ClusterIssuer"
    metadata = {
      name = local.cluster_issuer
    }
    spec = {
      acme = {
        email  = var.letsencrypt_email
        server = var.letsencrypt_server
        privateKeySecretRef = {
          name = "${local.cluster_issuer}-account"
        }
        solvers = [{
          http01 = {
            ingress = {
              ingressClassName = "nginx"
            }
          }
        }]
      }
    }
  }

  depends_on = [helm_release.cert_manager, helm_release.ingress_nginx]
}

# --- deploy: what the function may do in the cluster -------------------------------------
# GKE maps deploy's Google identity to the Kubernetes user of the same name. It creates one
# namespace per app and, inside, what shared/kube/ renders; to grant the apps'
# libcluster Role it must hold those permissions itself.

resource "kubernetes_cluster_role_v1" "deploy" {
  metadata {
    name = "gigalixir-deploy"
  }

  rule {
    api_groups = [""]
    resources  = ["namespaces"]
    verbs      = ["get", "list", "watch", "create", "patch", "update", "delete"]
  }
  rule {
    api_groups = [""]
    resources  = ["serviceaccounts", "secrets", "configmaps", "services"]
    verbs      = ["get", "list", "watch", "create", "patch", "update", "delete", "deletecollection"]
  }
  rule {
    api_groups = [""]
    resources  = ["resourcequotas", "limitranges"]
    verbs      = ["get", "list", "watch", "create", "patch", "update", "delete"]
  }
  rule {
    api_groups = [""]
    resources  = ["pods", "endpoints"]
    verbs      = ["get", "list", "watch", "delete"]
  }
  rule {
    api_groups = [""]
    resources  = ["pods/log"]
    verbs      = ["get"]
  }
  rule {
    api_groups = [""]
    resources  = ["events"]
    verbs      = ["get", "list", "watch"]
  }
  rule {
    api_groups = ["apps"]
    resources  = ["deployments", "replicasets"]
    verbs      = ["get", "list", "watch", "create", "patch", "update", "delete"]
  }
  # The release phases' Jobs; one-off jobs are the api's.
  rule {
    api_groups = ["batch"]
    resources  = ["jobs"]
    verbs      = ["get", "list", "watch", "create", "patch", "update", "delete"]
  }
  rule {
    api_groups = ["networking.k8s.io"]
    resources  = ["ingresses", "networkpolicies"]
    verbs      = ["get", "list", "watch", "create", "patch", "update", "delete"]
  }
  rule {
    api_groups = ["rbac.authorization.k8s.io"]
    resources  = ["roles", "rolebindings"]
    verbs      = ["get", "list", "watch", "create", "patch", "update", "delete"]
  }
  # Each app namespace's RoleBinding that gives the api its rights there.
  rule {
    api_groups     = ["rbac.authorization.k8s.io"]
    resources      = ["clusterroles"]
    verbs          = ["bind"]
    resource_names = [kubernetes_cluster_role_v1.api_app.metadata[0].name]
  }
}

resource "kubernetes_cluster_role_binding_v1" "deploy" {
  metadata {
    name = "gigalixir-deploy"
  }

  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "ClusterRole"
    name      = kubernetes_cluster_role_v1.deploy.metadata[0].name
  }

  subject {
    api_group = "rbac.authorization.k8s.io"
    kind      = "User"
    name      = google_service_account.functions["deploy"].email
  }
}

# --- api: looks at the apps (ps, logs, ps:ssh) everywhere; kills a pod (ps:kill) and runs
# jobs (run) only in the apps' namespaces ----------------------------------------------------

resource "kubernetes_cluster_role_v1" "api" {
  metadata {
    name = "gigalixir-api"
  }

  # What KubeRuntime's replicas, logs, jobs and SSH address read, nothing more.
  rule {
    api_groups = [""]
    resources  = ["pods", "services"]
    verbs      = ["get", "list"]
  }
  rule {
    api_groups = [""]
    resources  = ["pods/log"]
    verbs      = ["get"]
  }
  # The web Deployment: which release its pods run, and the pod template a job copies.
  rule {
    api_groups = ["apps"]
    resources  = ["deployments"]
    verbs      = ["get"]
  }
  rule {
    api_groups = ["batch"]
    resources  = ["jobs"]
    verbs      = ["get", "list"]
  }
}

# Bound in each app namespace only (the RoleBinding `gigalixir-api-app` deploy renders there,
# runtime URL `api_user`): never in the cluster's own namespaces.
resource "kubernetes_cluster_role_v1" "api_app" {
  metadata {
    name = "gigalixir-api-app"
  }

  # ps:kill: one web pod goes (its Deployment starts another).
  rule {
    api_groups = [""]
    resources  = ["pods"]
    verbs      = ["delete"]
  }
  # run: a one-off Job of the web pod's template; gone at its deadline.
  rule {
    api_groups = ["batch"]
    resources  = ["jobs"]
    verbs      = ["create", "delete"]
  }
}

resource "kubernetes_cluster_role_binding_v1" "api" {
  metadata {
    name = "gigalixir-api"
  }

  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "ClusterRole"
    name      = kubernetes_cluster_role_v1.api.metadata[0].name
  }

  subject {
    api_group = "rbac.authorization.k8s.io"
    kind      = "User"
    name      = google_service_account.functions["api"].email
  }
}

# --- build and upload: pull workers, each pod with its own Docker engine -----------------
# A Deployment whose pods hold three containers sharing the engine's unix socket through an
# emptyDir: a docker:dind engine, the build function's pull worker (runs each build in a
# container of that engine) and the upload function's pull worker (streams the slug out of
# that finished container, then removes it).
#
# upload is a container of the same pod, not a Deployment of its own, because it must talk
# to the very engine that ran the build: the build container exists only there, and an
# engine listening on a pod-local socket is out of reach of any other pod. (A separate
# upload Deployment would need the engine exposed over TCP across pods, or a node-wide
# Docker socket, and still could not tell which pod holds a given build.) The price: one
# pod has one Kubernetes service account, hence one Google identity, so least privilege
# per container is impossible here; the pod's account holds what build and upload each need
# (local.runs_as, wiring.tf) and nothing more.
#
# Chosen over a privileged DaemonSet with a host socket: no node-wide Docker socket is
# exposed, the engine lives and dies with its workers (scaling the Deployment scales all),
# and builds only land on the tainted build pool. The engine listens on the unix socket only
# (no TCP port in the pod network).
#
# One pod at a time (var.build_workers is at most 1, and pods are replaced with Recreate): the
# slug-built subscription is shared by every upload worker, and one in another pod than the
# build's would find no container and fail the build ("vanished"). More pods need
# slug-built routed to the pod that built it (README.md, "Not yet ready on the Rust side").

resource "kubernetes_namespace_v1" "system" {
  metadata {
    name = local.system_namespace
    labels = {
      "pod-security.kubernetes.io/enforce" = "privileged"
    }
  }

  depends_on = [google_container_node_pool.build]
}

resource "kubernetes_service_account_v1" "build" {
  metadata {
    name      = "build"
    namespace = kubernetes_namespace_v1.system.metadata[0].name
    annotations = {
      "iam.gke.io/gcp-service-account" = google_service_account.functions["build"].email
    }
  }
  automount_service_account_token = false
}

# Nothing connects to the workers: they only pull and call out.
resource "kubernetes_network_policy_v1" "system_no_ingress" {
  metadata {
    name      = "no-ingress"
    namespace = kubernetes_namespace_v1.system.metadata[0].name
  }

  spec {
    pod_selector {}
    policy_types = ["Ingress"]
  }
}

locals {
  registry_host = "${var.region}-docker.pkg.dev"
  # One builder image per stack (gigalixir-builder:<stack>-<tag> in the registry).
  builder_stacks = ["bookworm", "trixie"]
  # Kubernetes starts the workers only once this hook is done: the engine is up and holds
  # each stack's builder image under the local name the build function uses
  # (gigalixir-builder:<stack>).
  # The registry token is the pod's Workload Identity token.
  load_builder_image = <<-EOT
    set -eu
    i=0
    until docker info >/dev/null 2>&1; do
      i=$((i + 1)); [ "$i" -lt 120 ] || exit 1; sleep 1
    done
    wget -qO- --header 'Metadata-Flavor: Google' \
      http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token \
      | sed -E 's/.*"access_token":"([^"]+)".*/\1/' \
      | docker login -u oauth2accesstoken --password-stdin https://${local.registry_host}
    for stack in ${join(" ", local.builder_stacks)}; do
      docker pull ${local.image_base}/gigalixir-builder:$stack-${var.image_tag}
      docker tag ${local.image_base}/gigalixir-builder:$stack-${var.image_tag} gigalixir-builder:$stack
    done
    docker logout https://${local.registry_host}
  EOT
}

resource "kubernetes_deployment_v1" "build" {
  #checkov:skip=CKV_K8S_16:The Docker engine sidecar must be privileged to run build containers; it is confined to the tainted build node pool.
  #checkov:skip=CKV_K8S_22:dockerd writes its state and socket outside its volumes; the workers have read-only root file systems.
  #checkov:skip=CKV_K8S_28:The Docker engine needs NET_RAW and every other capability for its containers' networking; the workers drop all.
  #checkov:skip=CKV_K8S_43:Images are pinned by immutable tags (Artifact Registry immutable_tags; var.dind_image should be pinned to a digest by the operator).
  metadata {
    name      = "build"
    namespace = kubernetes_namespace_v1.system.metadata[0].name
    labels    = { "app.kubernetes.io/name" = "gigalixir-build" }
  }

  spec {
    replicas = var.build_workers

    # Never two pods at once, not even during a rollout: see above.
    strategy {
      type = "Recreate"
    }

    selector {
      match_labels = { "app.kubernetes.io/name" = "gigalixir-build" }
    }

    template {
      metadata {
        labels = { "app.kubernetes.io/name" = "gigalixir-build" }
      }

      spec {
        service_account_name            = kubernetes_service_account_v1.build.metadata[0].name
        automount_service_account_token = false
        node_selector                   = local.build_pool_label
        # A build may run 30 minutes: a replaced worker finishes the one it holds.
        termination_grace_period_seconds = 2100

        toleration {
          key      = "gigalixir.dev/pool"
          operator = "Equal"
          value    = "build"
          effect   = "NoSchedule"
        }

        security_context {
          seccomp_profile {
            type = "RuntimeDefault"
          }
        }

        # First, so that its postStart hook runs before the workers start.
        container {
          name              = "docker"
          image             = var.dind_image
          image_pull_policy = "Always"
          # `dockerd` as first argument: the image's entrypoint adds no TCP listener.
          args = ["dockerd", "--host=unix:///var/run/docker.sock", "--group=1000"]

          security_context {
            privileged = true
          }

          lifecycle {
            post_start {
              exec {
                command = ["/bin/sh", "-c", local.load_builder_image]
              }
            }
          }

          liveness_probe {
            exec {
              command = ["docker", "info"]
            }
            period_seconds    = 30
            timeout_seconds   = 10
            failure_threshold = 3
          }

          readiness_probe {
            exec {
              command = ["docker", "image", "inspect", "gigalixir-builder:trixie"]
            }
            period_seconds  = 30
            timeout_seconds = 10
          }

          resources {
            requests = {
              cpu    = "1500m"
              memory = "2560Mi"
            }
            limits = {
              cpu    = "3"
              memory = "5Gi"
            }
          }

          volume_mount {
            name       = "docker-run"
            mount_path = "/var/run"
          }
          volume_mount {
            name       = "docker-data"
            mount_path = "/var/lib/docker"
          }
          # The package cache's socket, which the engine mounts read-only into each build
          # (the same path in both containers: the engine resolves bind mounts in its own).
          volume_mount {
            name       = "packages"
            mount_path = "/run/gigalixir/packages"
          }
        }

        # The build pull worker: pulls build.build-requested (deployment.rs says pull, so
        # the binary pulls without flags) and runs each build on the engine (DOCKER_HOST).
        container {
          name              = "build"
          image             = "${local.image_base}/gigalixir-build:${var.image_tag}"
          image_pull_policy = "Always"
          command           = ["gigalixir-build"]

          dynamic "env" {
            for_each = merge(local.function_env["build"], local.common_env, try(local.extra_env["build"], {}))
            content {
              name  = env.key
              value = env.value
            }
          }

          security_context {
            run_as_non_root            = true
            run_as_user                = 1000
            run_as_group               = 1000
            allow_privilege_escalation = false
            read_only_root_filesystem  = true
            capabilities {
              drop = ["ALL"]
            }
          }

          # No probe: the worker serves no port, and its image need not hold a shell.
          resources {
            requests = {
              cpu    = "250m"
              memory = "512Mi"
            }
            limits = {
              cpu    = "1"
              memory = "1536Mi"
            }
          }

          volume_mount {
            name       = "docker-run"
            mount_path = "/var/run"
          }
          volume_mount {
            name       = "tmp"
            mount_path = "/tmp"
          }
          # The worker serves the package cache to its builds here (GIGALIXIR_PACKAGES_DIR).
          volume_mount {
            name       = "packages"
            mount_path = "/run/gigalixir/packages"
          }
        }

        # The upload pull worker: pulls upload.slug-built and reads each slug out of the
        # finished build container on the same engine. Holds a slug (up to 1 GiB) and its
        # archive in memory while it hashes and verifies it.
        container {
          name              = "upload"
          image             = "${local.image_base}/gigalixir-upload:${var.image_tag}"
          image_pull_policy = "Always"
          command           = ["gigalixir-upload"]

          dynamic "env" {
            for_each = merge(local.function_env["upload"], local.common_env, try(local.extra_env["upload"], {}))
            content {
              name  = env.key
              value = env.value
            }
          }

          security_context {
            run_as_non_root            = true
            run_as_user                = 1000
            run_as_group               = 1000
            allow_privilege_escalation = false
            read_only_root_filesystem  = true
            capabilities {
              drop = ["ALL"]
            }
          }

          # No probe: the worker serves no port, and its image need not hold a shell.
          resources {
            requests = {
              cpu    = "250m"
              memory = "512Mi"
            }
            limits = {
              cpu    = "2"
              memory = "4Gi"
            }
          }

          volume_mount {
            name       = "docker-run"
            mount_path = "/var/run"
          }
          volume_mount {
            name       = "upload-tmp"
            mount_path = "/tmp"
          }
        }

        volume {
          name = "docker-run"
          empty_dir {}
        }
        volume {
          name = "upload-tmp"
          empty_dir {
            size_limit = "2Gi"
          }
        }
        volume {
          name = "docker-data"
          empty_dir {
            size_limit = "60Gi"
          }
        }
        volume {
          name = "tmp"
          empty_dir {
            size_limit = "8Gi"
          }
        }
        volume {
          name = "packages"
          empty_dir {
            size_limit = "1Mi"
          }
        }
      }
    }
  }

  depends_on = [
    google_service_account_iam_member.build_workload_identity,
    google_artifact_registry_repository_iam_member.readers,
  ]
}
