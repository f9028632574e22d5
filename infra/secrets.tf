# Secrets the functions read from Secret Manager.

# The HMAC key of receive's GitHub-style push webhook (env GIGALIXIR_WEBHOOK_KEY). Generated
# here, so it is also in the Terraform state: keep the state bucket private (backend.tf).
# Rotate by adding a version (`gcloud secrets versions add`) and redeploying receive.
resource "google_secret_manager_secret" "webhook_key" {
  secret_id = "gigalixir-webhook-key"

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.apis]
}

resource "random_password" "webhook_key" {
  length  = 48
  special = false
}

resource "google_secret_manager_secret_version" "webhook_key" {
  secret      = google_secret_manager_secret.webhook_key.id
  secret_data = random_password.webhook_key.result
}

resource "google_secret_manager_secret_iam_member" "receive_webhook_key" {
  secret_id = google_secret_manager_secret.webhook_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.functions["receive"].email}"
}

# deploy's kubeconfig: the cluster's private endpoint and CA (no credential: deploy
# authenticates with its own identity through the `gcp` auth provider). Mounted as a file.
resource "google_secret_manager_secret" "deploy_kubeconfig" {
  secret_id = "gigalixir-deploy-kubeconfig"

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret_version" "deploy_kubeconfig" {
  secret = google_secret_manager_secret.deploy_kubeconfig.id
  secret_data = yamlencode({
    apiVersion = "v1"
    kind       = "Config"
    clusters = [{
      name = "gigalixir"
      cluster = {
        server                     = "https://${google_container_cluster.apps.private_cluster_config[0].private_endpoint}"
        certificate-authority-data = google_container_cluster.apps.master_auth[0].cluster_ca_certificate
      }
    }]
    users = [{
      name = "deploy"
      user = { auth-provider = { name = "gcp" } }
    }]
    contexts = [{
      name    = "gigalixir"
      context = { cluster = "gigalixir", user = "deploy" }
    }]
    current-context = "gigalixir"
  })
}

resource "google_secret_manager_secret_iam_member" "deploy_kubeconfig" {
  secret_id = google_secret_manager_secret.deploy_kubeconfig.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.functions["deploy"].email}"
}
