# Everything an operator chooses. Copy terraform.tfvars.example to terraform.tfvars.

variable "project_id" {
  description = "The GCP project that holds the whole platform (its billing account must be linked)."
  type        = string
}

variable "region" {
  description = "Region of Cloud Run, Pub/Sub storage, the buckets, Artifact Registry and the subnet."
  type        = string
  default     = "europe-west1"
}

variable "gke_location" {
  description = "Location of the GKE cluster: a zone (one control plane, cheapest) or the region (regional control plane)."
  type        = string
  default     = "europe-west1-b"
}

variable "firestore_location" {
  description = "Firestore location: a region (e.g. europe-west1) or a multi-region (eur3, nam5). Cannot be changed later."
  type        = string
  default     = "europe-west1"
}

variable "apps_domain" {
  description = "Apps answer on https://APP.<apps_domain> (GIGALIXIR_DOMAIN). Its wildcard DNS record points at the ingress IP (output apps_ingress_ip)."
  type        = string
}

variable "platform_host" {
  description = "Host name of the API and the git host (https://HOST/api/..., https://HOST/APP.git). Keep it outside apps_domain so that no app name can shadow it."
  type        = string
}

variable "letsencrypt_email" {
  description = "Contact address of the Let's Encrypt account that issues the apps' certificates."
  type        = string
}

variable "letsencrypt_server" {
  description = "ACME directory of the ClusterIssuer. Use the staging directory while testing to stay clear of rate limits."
  type        = string
  default     = "https://acme-v02.api.letsencrypt.org/directory"
}

variable "bucket_prefix" {
  description = "Blob store prefix: GIGALIXIR_BLOBS is gs://<prefix>, buckets are <prefix>-repos, -sources, -slugs, -caches, -packages, -backups. Bucket names are global: include something unique. Empty: <project_id>-gigalixir."
  type        = string
  default     = ""
}

variable "image_tag" {
  description = "Tag of every platform image in Artifact Registry (gigalixir-api, -receive, -build, -upload, -release, -deploy, -builder, -runner), e.g. a git commit."
  type        = string
}

variable "artifact_repository" {
  description = "Name of the Artifact Registry Docker repository the images are pushed to."
  type        = string
  default     = "gigalixir"
}

variable "dind_image" {
  description = "Docker engine image run next to each build worker. Pin a digest in production."
  type        = string
  default     = "docker.io/library/docker:27.5-dind"
}

variable "master_authorized_cidrs" {
  description = "CIDR blocks allowed to reach the GKE control plane's public endpoint (the operator's network, CI). The subnet of the platform itself is always allowed."
  type        = list(string)
  default     = []
}

variable "app_node_machine_type" {
  description = "Machine type of the nodes that run the apps."
  type        = string
  default     = "e2-standard-4"
}

variable "app_nodes_min" {
  description = "Fewest app nodes (per zone of the cluster)."
  type        = number
  default     = 1
}

variable "app_nodes_max" {
  description = "Most app nodes (per zone of the cluster)."
  type        = number
  default     = 5
}

variable "build_node_machine_type" {
  description = "Machine type of the build nodes (each build container takes up to 2 CPUs and 2 GiB)."
  type        = string
  default     = "e2-standard-4"
}

variable "build_nodes_min" {
  description = "Fewest build nodes."
  type        = number
  default     = 1
}

variable "build_nodes_max" {
  description = "Most build nodes."
  type        = number
  default     = 3
}

variable "build_workers" {
  description = "Build worker pods (each with its own Docker engine and the build and upload pull workers, 2 builds at once). At most 1 for now (0 stops building): upload finds a build's container only in the pod that built it (kubernetes.tf)."
  type        = number
  default     = 1

  validation {
    condition     = contains([0, 1], var.build_workers)
    error_message = "build_workers must be 0 or 1 until slug-built is routed to the pod that ran the build: an upload worker in another pod finds no container and fails the build."
  }
}

variable "node_disk_size_gb" {
  description = "Boot disk of every node, in GB (build nodes keep Docker images and build layers on it)."
  type        = number
  default     = 100
}

variable "api_min_instances" {
  description = "Warm instances of the api and receive services (0: scale to zero, with a cold start on the first request)."
  type        = number
  default     = 0
}

variable "max_instances" {
  description = "Most instances of each Cloud Run service."
  type        = number
  default     = 10
}

variable "rate_limit_per_minute" {
  description = "Requests a minute one client address may send to the API and git host before Cloud Armor answers 429."
  type        = number
  default     = 600
}

variable "slug_retention_days" {
  description = "Slugs older than this are deleted. An app whose live release is older cannot start new replicas: deploy again before then."
  type        = number
  default     = 365
}

variable "deletion_protection" {
  description = "Protects the cluster, Firestore, the Cloud SQL instance and the Cloud Run services from `terraform destroy`. Set false, apply, then destroy (README, Tear down)."
  type        = bool
  default     = true
}

variable "force_destroy_buckets" {
  description = "Lets `terraform destroy` delete buckets that still hold objects (repos, slugs: the users' data)."
  type        = bool
  default     = false
}

variable "labels" {
  description = "Labels added to every resource that takes them."
  type        = map(string)
  default     = {}
}

variable "hex_upstream" {
  type        = string
  default     = "https://repo.hex.pm"
  description = "The Hex repository the platform's package cache pulls from (GIGALIXIR_HEX_UPSTREAM); builds reach only the cache."
}

variable "smtp_url" {
  description = "SMTP server of account mail (GIGALIXIR_SMTP_URL): smtps://USER:PASSWORD@HOST:465 or smtp://HOST:587?tls=required. Sign-up confirmations and password resets need it."
  type        = string
  sensitive   = true
}

variable "managed_databases" {
  description = "Managed PostgreSQL (pg:create): a Cloud SQL instance, and api's GIGALIXIR_POSTGRES_URL and GIGALIXIR_POSTGRES_HOST. false: no instance, and the API offers no databases."
  type        = bool
  default     = true
}

variable "database_admin_password" {
  description = "Password of the Cloud SQL user `gigalixir` that api makes the databases and roles as. Needed when managed_databases is on. Letters, digits, - . _ ~ only (it goes into the admin URL as is), at least 20: e.g. `openssl rand -hex 24`."
  type        = string
  sensitive   = true
  default     = ""

  validation {
    condition     = var.database_admin_password == "" || can(regex("^[A-Za-z0-9._~-]{20,}$", var.database_admin_password))
    error_message = "database_admin_password: letters, digits, - . _ ~ only, at least 20 of them."
  }
}

variable "database_tier" {
  description = "Machine type of the Cloud SQL instance that holds every app's databases (db-custom-CPUS-MEMORY_MB). Raise it with database_max_connections."
  type        = string
  default     = "db-custom-1-3840"
}

variable "database_max_connections" {
  description = "Most connections the Cloud SQL instance accepts (flag max_connections). Each database has its own limit (4 free, 25 to 250 by size); together they may exceed this, as they seldom all fill. At least 260: the largest limit plus the admin's sessions. Each connection takes some of the tier's memory."
  type        = number
  default     = 400

  validation {
    condition     = var.database_max_connections >= 260
    error_message = "database_max_connections must be at least 260: a database of the largest sizes may hold 250 connections."
  }
}

variable "database_high_availability" {
  description = "A standby in a second zone of the region, with automatic failover (Cloud SQL REGIONAL; twice the price)."
  type        = bool
  default     = false
}
