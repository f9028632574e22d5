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

# Composite indexes for the Store trait's list queries (shared/src/ports/store.rs).
# TO BE CONFIRMED against the Firestore adapter (shared/src/gcp/firestore.rs) once it exists:
# the collection and field names below are guesses; Firestore names the missing index in
# the error of a query that needs one.
locals {
  firestore_indexes = {
    # apps_of(owner): apps owned by a user, by name.
    apps_by_owner = {
      collection = "apps"
      fields     = [["owner", "ASCENDING"], ["name", "ASCENDING"]]
    }
    # releases(app): newest first.
    releases_by_app = {
      collection = "releases"
      fields     = [["app", "ASCENDING"], ["version", "DESCENDING"]]
    }
    # builds_of(app): newest first.
    builds_by_app = {
      collection = "builds"
      fields     = [["app", "ASCENDING"], ["created_at", "DESCENDING"]]
    }
    # build_log(build, after, limit): lines in order.
    build_log_lines = {
      collection = "build_log"
      fields     = [["build", "ASCENDING"], ["line", "ASCENDING"]]
    }
    # ssh_keys(user): oldest first.
    ssh_keys_by_user = {
      collection = "ssh_keys"
      fields     = [["user", "ASCENDING"], ["created_at", "ASCENDING"]]
    }
    # replace_api_keys(key.user): every key of an account.
    api_keys_by_user = {
      collection = "api_keys"
      fields     = [["user", "ASCENDING"], ["created_at", "ASCENDING"]]
    }
  }
}

resource "google_firestore_index" "store" {
  for_each = local.firestore_indexes

  database    = google_firestore_database.store.name
  collection  = each.value.collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value[0]
      order      = fields.value[1]
    }
  }
}
