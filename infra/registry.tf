# Where the platform's images live: gigalixir-<function> for the six functions, plus
# gigalixir-builder (pulled by the build workers' Docker engines) and gigalixir-runner
# (pulled by the app nodes). Pushed by the operator or CI before `terraform apply`.

resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption at rest; the images are the platform's own, built from this repository. Add kms_key_name where policy demands CMEK.
  location      = var.region
  repository_id = var.artifact_repository
  description   = "gigalixir platform images"
  format        = "DOCKER"

  docker_config {
    # A tag names one build forever: var.image_tag always means the same images.
    immutable_tags = true
  }

  depends_on = [google_project_service.apis]
}

locals {
  # Cloud Run pulls the function images with its own service agent, which may read the
  # project's repositories already; the functions' accounts get no registry access.
  registry_readers = {
    # The build workers' Docker engines pull the builder image with the worker's token.
    build = "serviceAccount:${google_service_account.functions["build"].email}"
    # The kubelet pulls the build and upload worker images and the runner image.
    nodes = "serviceAccount:${google_service_account.nodes.email}"
  }
}

resource "google_artifact_registry_repository_iam_member" "readers" {
  for_each = local.registry_readers

  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = each.value
}
