# Secrets the functions read from Secret Manager: deploy's kubeconfig (api's PostgreSQL admin
# URL is in database.tf, with the instance). (Webhook secrets are per app, kept on the app
# record in the store: none here.)

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
  for_each  = toset(local.cluster_clients)
  secret_id = google_secret_manager_secret.deploy_kubeconfig.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.functions[each.key].email}"
}
