output "api_url" {
  description = "GIGALIXIR_API_URL for the CLI (once platform_host resolves to platform_ip and its certificate is active)."
  value       = "https://${var.platform_host}"
}

output "git_url" {
  description = "Git remotes are <git_url>/APP.git (the CLI derives them from the API URL)."
  value       = "https://${var.platform_host}"
}

output "platform_ip" {
  description = "Point an A record for platform_host here."
  value       = google_compute_global_address.platform.address
}

output "apps_ingress_ip" {
  description = "Point a wildcard A record *.apps_domain here."
  value       = google_compute_address.apps_ingress.address
}

output "apps_url_pattern" {
  description = "Where each app answers."
  value       = "https://APP.${var.apps_domain}"
}

output "bucket_names" {
  description = "The blob store's buckets, by key space (GIGALIXIR_BLOBS=gs://<bucket_prefix>)."
  value       = { for space, b in google_storage_bucket.blobs : space => b.name }
}

output "blob_store_url" {
  description = "GIGALIXIR_BLOBS of the functions."
  value       = "gs://${local.bucket_prefix}"
}

output "image_repository" {
  description = "Push the platform images here: <image_repository>/gigalixir-<name>:<image_tag>."
  value       = local.image_base
}

output "service_urls" {
  description = "The Cloud Run URLs of the functions (internal ones answer Pub/Sub only)."
  value       = { for name, s in google_cloud_run_v2_service.functions : name => s.uri }
}

output "cluster_name" {
  description = "For `gcloud container clusters get-credentials`."
  value       = google_container_cluster.apps.name
}

output "cluster_location" {
  description = "For `gcloud container clusters get-credentials --location`."
  value       = google_container_cluster.apps.location
}

output "database_private_ip" {
  description = "Where apps reach their managed databases (GIGALIXIR_POSTGRES_HOST); null when managed_databases is off."
  value       = one(google_sql_database_instance.postgres[*].private_ip_address)
}
