provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = local.labels
}

data "google_client_config" "current" {}

data "google_project" "current" {
  project_id = var.project_id
}

# The cluster's providers talk to the control plane's public endpoint (restricted to
# var.master_authorized_cidrs) with the operator's own Google credentials. They are configured
# from a cluster this same configuration creates: see README.md, "First apply", for the order.
provider "kubernetes" {
  host                   = "https://${google_container_cluster.apps.endpoint}"
  token                  = data.google_client_config.current.access_token
  cluster_ca_certificate = base64decode(google_container_cluster.apps.master_auth[0].cluster_ca_certificate)
}

provider "helm" {
  kubernetes {
    host                   = "https://${google_container_cluster.apps.endpoint}"
    token                  = data.google_client_config.current.access_token
    cluster_ca_certificate = base64decode(google_container_cluster.apps.master_auth[0].cluster_ca_certificate)
  }
}
