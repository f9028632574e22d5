# The cluster the apps run on, with a second node pool for the build workers.
# Private nodes, Workload Identity, shielded nodes, Dataplane V2 (network policies), a
# release channel for upgrades. The control plane keeps a public endpoint, restricted to
# var.master_authorized_cidrs and the platform's own subnet, so that the operator's
# Terraform (helm, kubernetes providers) can reach it; deploy uses the private endpoint.

locals {
  system_namespace = "gigalixir-system"
  build_pool_label = { "gigalixir.dev/pool" = "build" }
}

resource "google_container_cluster" "apps" {
  #checkov:skip=CKV_GCP_12:Dataplane V2 (datapath_provider ADVANCED_DATAPATH) enforces NetworkPolicy itself; the Calico network_policy block cannot be combined with it.
  #checkov:skip=CKV_GCP_65:Google Groups for RBAC needs a Google Workspace domain; the only RBAC subject here is deploy's service account (kubernetes.tf).
  name     = "gigalixir"
  location = var.gke_location

  network    = google_compute_network.platform.id
  subnetwork = google_compute_subnetwork.platform.id

  # Node pools are managed below; the default one is removed right after creation.
  remove_default_node_pool = true
  initial_node_count       = 1

  deletion_protection = var.deletion_protection
  resource_labels     = local.labels

  release_channel {
    channel = "REGULAR"
  }

  workload_identity_config {
    workload_pool = "${var.project_id}.svc.id.goog"
  }

  ip_allocation_policy {
    cluster_secondary_range_name  = "pods"
    services_secondary_range_name = "services"
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
    master_ipv4_cidr_block  = "172.16.0.0/28"
  }

  master_authorized_networks_config {
    gcp_public_cidrs_access_enabled = false

    cidr_blocks {
      cidr_block   = google_compute_subnetwork.platform.ip_cidr_range
      display_name = "platform subnet (deploy's VPC egress)"
    }

    dynamic "cidr_blocks" {
      for_each = var.master_authorized_cidrs
      content {
        cidr_block   = cidr_blocks.value
        display_name = "operator"
      }
    }
  }

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  datapath_provider           = "ADVANCED_DATAPATH"
  enable_shielded_nodes       = true
  enable_intranode_visibility = true
  enable_legacy_abac          = false

  binary_authorization {
    evaluation_mode = "PROJECT_SINGLETON_POLICY_ENFORCE"
  }

  logging_config {
    enable_components = ["SYSTEM_COMPONENTS", "WORKLOADS"]
  }

  monitoring_config {
    enable_components = ["SYSTEM_COMPONENTS"]
  }

  maintenance_policy {
    daily_maintenance_window {
      start_time = "03:00"
    }
  }

  # The temporary default pool is configured like the real ones.
  node_config {
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    image_type      = "COS_CONTAINERD"

    metadata = {
      disable-legacy-endpoints = "true"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }

  depends_on = [google_project_iam_member.nodes]
}

resource "google_container_node_pool" "apps" {
  name     = "apps"
  cluster  = google_container_cluster.apps.id
  location = var.gke_location

  autoscaling {
    min_node_count = var.app_nodes_min
    max_node_count = var.app_nodes_max
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.app_node_machine_type
    disk_size_gb    = var.node_disk_size_gb
    disk_type       = "pd-balanced"
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = { "gigalixir.dev/pool" = "apps" }
    resource_labels = local.labels

    metadata = {
      disable-legacy-endpoints = "true"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}

# Build nodes: only the build workers (privileged Docker engines) are scheduled here, and
# nothing else, so that an app never shares a node with a build.
resource "google_container_node_pool" "build" {
  name     = "build"
  cluster  = google_container_cluster.apps.id
  location = var.gke_location

  autoscaling {
    min_node_count = var.build_nodes_min
    max_node_count = var.build_nodes_max
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.build_node_machine_type
    disk_size_gb    = var.node_disk_size_gb
    disk_type       = "pd-ssd"
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes.email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    labels          = local.build_pool_label
    resource_labels = local.labels

    taint {
      key    = "gigalixir.dev/pool"
      value  = "build"
      effect = "NO_SCHEDULE"
    }

    metadata = {
      disable-legacy-endpoints = "true"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}
