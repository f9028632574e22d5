# The store: Firestore in native mode, the project's (default) database
# (GIGALIXIR_STORE=firestore://PROJECT).

resource "google_firestore_database" "store" {
  name                              = "(default)"
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "PESSIMISTIC"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = "DELETE"

  depends_on = [google_project_service.apis]
}

# Indexes, as the Firestore adapter (shared/gcp/src/firestore.rs, "Indexes") describes them:
# no composite index is needed — every query is one equality filter (apps.owner, builds.app,
# api_keys.user, ssh_keys.id) or a range and order on one field (chunks.last,
# releases.version), served by the automatic single-field indexes. Fields that are never
# queried are exempted, since indexing them only costs write throughput: `json` (the record)
# in every collection that has it, and `lines` in log chunks.
locals {
  firestore_unindexed = {
    users_json    = { collection = "users", field = "json" }
    ssh_keys_json = { collection = "ssh_keys", field = "json" }
    api_keys_json = { collection = "api_keys", field = "json" }
    apps_json     = { collection = "apps", field = "json" }
    releases_json = { collection = "releases", field = "json" }
    builds_json   = { collection = "builds", field = "json" }
    chunks_lines  = { collection = "chunks", field = "lines" }
  }
}

resource "google_firestore_field" "unindexed" {
  for_each = local.firestore_unindexed

  database   = google_firestore_database.store.name
  collection = each.value.collection
  field      = each.value.field

  # An empty index_config removes every single-field index of the field.
  index_config {}
}
