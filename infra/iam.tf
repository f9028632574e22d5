# One service account per identity in local.runs_as (wiring.tf): each function's own, except
# upload, which runs in the build worker pods as `build` (a pod has one identity). Each is
# granted only what its functions touch. Bucket grants are in storage.tf, topic and
# subscription grants in pubsub.tf.

resource "google_service_account" "functions" {
  for_each = toset(distinct(values(local.runs_as)))

  account_id   = "gigalixir-${each.key}"
  display_name = "gigalixir ${each.key} function"

  depends_on = [google_project_service.apis]
}

# Every function reads and writes the store. Firestore's IAM is per project: give the platform
# a project of its own so that this reaches no other database.
resource "google_project_iam_member" "store_users" {
  for_each = google_service_account.functions

  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${each.value.email}"
}

# deploy signs the slugs' download URLs with its own identity (IAM signBlob, no key file).
resource "google_service_account_iam_member" "deploy_signs_urls" {
  service_account_id = google_service_account.functions["deploy"].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.functions["deploy"].email}"
}

# deploy and api may see the cluster; what they may do inside is Kubernetes RBAC
# (kubernetes.tf).
resource "google_project_iam_member" "deploy_cluster_viewer" {
  for_each = toset(local.cluster_clients)
  project  = var.project_id
  role     = "roles/container.clusterViewer"
  member   = "serviceAccount:${google_service_account.functions[each.key].email}"
}

# The build worker pods (containers build, upload and the Docker engine) run as the
# Kubernetes service account gigalixir-system/build, which Workload Identity maps to the
# build account. The engine's postStart hook uses it too (pulls the builder image).
resource "google_service_account_iam_member" "build_workload_identity" {
  service_account_id = google_service_account.functions["build"].name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${local.system_namespace}/build]"

  depends_on = [google_container_cluster.apps]
}

# The identity in the OIDC token of every push: the only caller of the internal services.
resource "google_service_account" "pubsub_invoker" {
  account_id   = "gigalixir-pubsub-invoker"
  display_name = "gigalixir Pub/Sub push invoker"

  depends_on = [google_project_service.apis]
}

resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.pubsub_invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# The nodes' own identity: logs, metrics, and pulling the runner image.
resource "google_service_account" "nodes" {
  account_id   = "gigalixir-nodes"
  display_name = "gigalixir GKE nodes"

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "nodes" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
    "roles/autoscaling.metricsWriter",
  ])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.nodes.email}"
}
