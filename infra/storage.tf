# The blob store: one bucket per key space (gs://PREFIX -> PREFIX-repos, -sources, -slugs,
# -caches, -packages, -backups), so that each has its own lifecycle and its own readers and
# writers.

resource "google_storage_bucket" "blobs" {
  #checkov:skip=CKV_GCP_62:Access is recorded by the project's Data Access audit logs for storage (apis.tf), not by legacy usage logs.
  #checkov:skip=CKV_GCP_78:Versioning is on for repos and slugs (wiring.tf, blob_spaces); sources, caches and packages are disposable and expire; backups are written once under new names and pruned on purpose (soft delete keeps a deleted one 7 days).
  for_each = local.blob_spaces

  name                        = "${local.bucket_prefix}-${each.key}"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  versioning {
    enabled = each.value.versioned
  }

  # Disposable spaces keep no soft-deleted copies (they would only cost).
  soft_delete_policy {
    retention_duration_seconds = each.value.soft_delete_days * 86400
  }

  # Live objects: sources and caches expire after a month, packages after three (fetched
  # again when needed), slugs after var.slug_retention_days; repositories stay, and so do
  # backups (the platform prunes those itself).
  dynamic "lifecycle_rule" {
    for_each = each.value.expire_days > 0 ? [each.value.expire_days] : []
    content {
      condition {
        age        = lifecycle_rule.value
        with_state = "LIVE"
      }
      action {
        type = "Delete"
      }
    }
  }

  # Replaced versions (a repository rewritten by each push) are kept 30 days, at most 3.
  dynamic "lifecycle_rule" {
    for_each = each.value.versioned ? [1] : []
    content {
      condition {
        days_since_noncurrent_time = 30
        with_state                 = "ARCHIVED"
      }
      action {
        type = "Delete"
      }
    }
  }
  dynamic "lifecycle_rule" {
    for_each = each.value.versioned ? [1] : []
    content {
      condition {
        num_newer_versions = 3
        with_state         = "ARCHIVED"
      }
      action {
        type = "Delete"
      }
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.apis]
}

# Who may touch which space (least privilege per function):
#   receive: repos (read, write), sources (write; read back on a retried push)
#   build:   sources (read), caches (read), packages (read, write: the package cache,
#            git dependencies and tools it fetches for builds)
#   upload:  slugs (read, write: it verifies what it stored), caches (read, write)
#   deploy:  slugs (read: it signs the URLs the replicas download the slug from), and on
#            app-destroyed removes the app's objects from repos, sources, caches and slugs
#   api:     backups (read, write: database dumps, pruned and deleted by api itself)
#   release: none
# Granted to the identity each function runs as (local.runs_as): build and upload share the
# build worker pods' account, which therefore holds both rows. One binding per
# (identity, space, role).
locals {
  bucket_needs = [
    { function = "receive", space = "repos", role = "roles/storage.objectUser" },
    { function = "receive", space = "sources", role = "roles/storage.objectUser" },
    { function = "build", space = "sources", role = "roles/storage.objectViewer" },
    { function = "build", space = "caches", role = "roles/storage.objectViewer" },
    { function = "build", space = "packages", role = "roles/storage.objectUser" },
    { function = "upload", space = "slugs", role = "roles/storage.objectUser" },
    { function = "upload", space = "caches", role = "roles/storage.objectUser" },
    { function = "deploy", space = "slugs", role = "roles/storage.objectUser" },
    { function = "deploy", space = "repos", role = "roles/storage.objectUser" },
    { function = "deploy", space = "sources", role = "roles/storage.objectUser" },
    { function = "deploy", space = "caches", role = "roles/storage.objectUser" },
    { function = "api", space = "backups", role = "roles/storage.objectUser" },
  ]
  bucket_grants = {
    for g in local.bucket_needs :
    "${local.runs_as[g.function]}/${g.space}/${g.role}" => { identity = local.runs_as[g.function], space = g.space, role = g.role }...
  }
}

resource "google_storage_bucket_iam_member" "functions" {
  for_each = local.bucket_grants

  bucket = google_storage_bucket.blobs[each.value[0].space].name
  role   = each.value[0].role
  member = "serviceAccount:${google_service_account.functions[each.value[0].identity].email}"
}
