# The four HTTP functions on Cloud Run (api, receive, release, deploy). `build` and `upload`
# run on GKE instead, as pull workers in the same pods (kubernetes.tf): build needs a Docker
# engine next to it, and upload reads the slug out of the container that engine ran.

resource "google_cloud_run_v2_service" "functions" {
  for_each = local.services

  name                = "gigalixir-${each.key}"
  location            = var.region
  deletion_protection = var.deletion_protection
  # Public services are reached through the HTTPS load balancer only; the others only by
  # Pub/Sub pushes, which count as internal traffic of the project.
  ingress = each.value.public ? "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" : "INGRESS_TRAFFIC_INTERNAL_ONLY"

  template {
    service_account                  = google_service_account.functions[local.runs_as[each.key]].email
    timeout                          = each.value.timeout
    max_instance_request_concurrency = each.value.concurrency
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"

    scaling {
      min_instance_count = each.value.public ? var.api_min_instances : 0
      max_instance_count = var.max_instances
    }

    containers {
      image = "${local.image_base}/gigalixir-${each.key}:${var.image_tag}"

      # Cloud Run passes this port to the function as PORT.
      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = each.value.cpu
          memory = each.value.memory
        }
      }

      # Plain values; null ones are left unset (wiring.tf, function_env).
      dynamic "env" {
        for_each = {
          for name, value in merge(local.function_env[each.key], local.common_env, try(local.extra_env[each.key], {})) :
          name => value if value != null && can(tostring(value))
        }
        content {
          name  = env.key
          value = env.value
        }
      }

      # { secret, version } values: read from Secret Manager when an instance starts, so
      # the value never shows in the service's configuration (api's GIGALIXIR_POSTGRES_URL).
      dynamic "env" {
        for_each = {
          for name, value in merge(local.function_env[each.key], local.common_env, try(local.extra_env[each.key], {})) :
          name => value if value != null && !can(tostring(value))
        }
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value.secret
              version = env.value.version
            }
          }
        }
      }

      dynamic "volume_mounts" {
        for_each = contains(local.cluster_clients, each.key) ? [1] : []
        content {
          name       = "kubeconfig"
          mount_path = "/etc/gigalixir/kube"
        }
      }
    }

    # The cluster's kubeconfig (secrets.tf), for deploy and api.
    dynamic "volumes" {
      for_each = contains(local.cluster_clients, each.key) ? [1] : []
      content {
        name = "kubeconfig"
        secret {
          secret = google_secret_manager_secret.deploy_kubeconfig.secret_id
          items {
            version = "latest"
            path    = "config"
          }
        }
      }
    }

    # deploy and api reach the cluster's private endpoint through the VPC, api also the
    # managed databases' server (Cloud SQL's private address, network.tf).
    dynamic "vpc_access" {
      for_each = contains(concat(local.cluster_clients, local.database_clients), each.key) ? [1] : []
      content {
        egress = "PRIVATE_RANGES_ONLY"
        network_interfaces {
          network    = google_compute_network.platform.id
          subnetwork = google_compute_subnetwork.platform.id
        }
      }
    }
  }

  depends_on = [
    google_artifact_registry_repository_iam_member.readers,
    google_secret_manager_secret_iam_member.deploy_kubeconfig,
    google_secret_manager_secret_version.deploy_kubeconfig,
    google_secret_manager_secret_iam_member.postgres_admin_url,
  ]
}

# Internal services: only the push identity may call them.
resource "google_cloud_run_v2_service_iam_member" "pubsub_invoker" {
  for_each = { for name, s in local.services : name => s if !s.public }

  name     = google_cloud_run_v2_service.functions[each.key].name
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.pubsub_invoker.email}"
}

# Public services: anyone may reach them through the load balancer; the functions
# themselves authenticate every request (HTTP Basic with an API key; a webhook's HMAC with
# its app's own secret, kept on the app record).
resource "google_cloud_run_v2_service_iam_member" "public" {
  for_each = { for name, s in local.services : name => s if s.public }

  name     = google_cloud_run_v2_service.functions[each.key].name
  location = var.region
  role     = "roles/run.invoker"
  member   = "allUsers"
}
