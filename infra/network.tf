# One VPC for the cluster and for the egress of deploy and api (Direct VPC egress reaches the
# control plane's private endpoint and Cloud SQL's private address). Nodes have no public IP:
# Cloud NAT lets them pull images and lets apps call out.

resource "google_compute_network" "platform" {
  name                    = "gigalixir"
  auto_create_subnetworks = false

  depends_on = [google_project_service.apis]
}

resource "google_compute_subnetwork" "platform" {
  name                     = "gigalixir-${var.region}"
  region                   = var.region
  network                  = google_compute_network.platform.id
  ip_cidr_range            = "10.10.0.0/20"
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = "10.12.0.0/14"
  }
  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = "10.16.0.0/20"
  }

  log_config {
    aggregation_interval = "INTERVAL_10_MIN"
    flow_sampling        = 0.1
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

# Nothing reaches the nodes unless a rule allows it: GKE adds its own rules (control plane to
# nodes, load balancer health checks, pod to pod) at priority 1000. This one makes the default
# explicit and logs what it refuses.
resource "google_compute_firewall" "deny_ingress" {
  name      = "gigalixir-deny-ingress"
  network   = google_compute_network.platform.id
  direction = "INGRESS"
  priority  = 65534

  deny {
    protocol = "all"
  }
  source_ranges = ["0.0.0.0/0"]

  log_config {
    metadata = "EXCLUDE_ALL_METADATA"
  }
}

resource "google_compute_router" "platform" {
  name    = "gigalixir-${var.region}"
  region  = var.region
  network = google_compute_network.platform.id
}

resource "google_compute_router_nat" "platform" {
  name                               = "gigalixir-${var.region}"
  router                             = google_compute_router.platform.name
  region                             = var.region
  nat_ip_allocate_option             = "AUTO_ONLY"
  source_subnetwork_ip_ranges_to_nat = "ALL_SUBNETWORKS_ALL_IP_RANGES"

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}

# The apps' ingress (ingress-nginx's LoadBalancer Service): *.apps_domain points here.
resource "google_compute_address" "apps_ingress" {
  name   = "gigalixir-apps-ingress"
  region = var.region

  depends_on = [google_project_service.apis]
}

# The API and git host (the HTTPS load balancer): platform_host points here.
resource "google_compute_global_address" "platform" {
  name = "gigalixir-platform"

  depends_on = [google_project_service.apis]
}

# Private services access: Cloud SQL (database.tf) gets its private address from this range,
# in Google's network peered with ours; apps (pods) and api reach it there. Kept whether or
# not var.managed_databases is on (it costs nothing), so turning databases off and on again
# leaves the peering alone. 10.20.0.0/16 is clear of the subnet, pods, services and the
# control plane (gke.tf).
resource "google_compute_global_address" "private_services" {
  name          = "gigalixir-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  address       = "10.20.0.0"
  prefix_length = 16
  network       = google_compute_network.platform.id

  depends_on = [google_project_service.apis]
}

# Cloud SQL holds on to the peering for a while after its instance is deleted, and deleting
# the connection fails until then: `terraform destroy` leaves it (ABANDON) and README.md,
# Tear down, says how to remove it. Recreated later, the connection updates the one Google
# kept instead of failing.
resource "google_service_networking_connection" "private_services" {
  network                 = google_compute_network.platform.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_services.name]
  deletion_policy         = "ABANDON"
  update_on_creation_fail = true

  depends_on = [google_project_service.apis]
}
