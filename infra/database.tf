# Managed databases (pg:create): one Cloud SQL for PostgreSQL instance, on which api makes a
# database and a role per app database over an admin connection (GIGALIXIR_POSTGRES_URL), and
# whose private address apps get in their DATABASE_URL (GIGALIXIR_POSTGRES_HOST). Reached
# over private services access only (network.tf): from the apps' pods and from api's Direct
# VPC egress (cloudrun.tf). Off (var.managed_databases = false): no instance, and api gets
# neither variable (it then offers no managed databases).

resource "google_sql_database_instance" "postgres" {
  #checkov:skip=CKV_GCP_6:api (tokio-postgres with NoTls) and apps connect without TLS today; requiring encrypted connections would lock both out. Private address only, inside the peered VPC.
  #checkov:skip=CKV_GCP_79:PostgreSQL 15 on purpose: api's pg_dump and pg_restore must be of the server's major version or newer, and Debian bookworm's are 15. Upgrade both together.
  #checkov:skip=CKV_GCP_108:Clients have private addresses without reverse DNS names; log_connections already records each client's address, and a lookup per connection would only slow connecting.
  #checkov:skip=CKV2_GCP_13:log_duration writes a line for every statement of every app's database (log volume and cost); slow statements show in Cloud SQL's own metrics.
  count = var.managed_databases ? 1 : 0

  name                = "gigalixir-postgres"
  region              = var.region
  database_version    = "POSTGRES_15"
  deletion_protection = var.deletion_protection

  settings {
    tier                        = var.database_tier
    edition                     = "ENTERPRISE"
    availability_type           = var.database_high_availability ? "REGIONAL" : "ZONAL"
    disk_type                   = "PD_SSD"
    disk_autoresize             = true
    deletion_protection_enabled = var.deletion_protection
    user_labels                 = local.labels

    # Private address only. TLS is allowed but not required: the platform's clients do not
    # use it yet (see the checkov skip above).
    ip_configuration {
      ipv4_enabled       = false
      private_network    = google_compute_network.platform.id
      allocated_ip_range = google_compute_global_address.private_services.name
      ssl_mode           = "ALLOW_UNENCRYPTED_AND_ENCRYPTED"
    }

    # Cloud SQL's own backups of the whole instance (14 daily) and point-in-time recovery
    # (7 days of WAL), for the operator. The users' backups (pg:backups) are pg_dump files in
    # the backups bucket (storage.tf).
    backup_configuration {
      enabled                        = true
      start_time                     = "02:00"
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7

      backup_retention_settings {
        retained_backups = 14
        retention_unit   = "COUNT"
      }
    }

    maintenance_window {
      day          = 7
      hour         = 3
      update_track = "stable"
    }

    # Each database's role has its own CONNECTION LIMIT (4 for a free one, 25 to 250 by
    # size); Cloud SQL's default for 3.75 GB (100) is less than one large database's limit.
    database_flags {
      name  = "max_connections"
      value = tostring(var.database_max_connections)
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "warning"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    # Records every CREATE, ALTER and DROP, the platform's own (roles, databases) included;
    # role passwords reach the server as SCRAM verifiers only, never in clear.
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    # Loads pgAudit, so that an operator can turn auditing on later without a restart. It
    # audits nothing until `pgaudit.log` is set and `CREATE EXTENSION pgaudit` is run in a
    # database (Cloud SQL does not take that from Terraform).
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "on"
    }
  }

  depends_on = [google_service_networking_connection.private_services]
}

# The admin api connects as: a built-in user, member of cloudsqlsuperuser (creates roles and
# databases; not a PostgreSQL superuser). api makes it a member of each database's role, and
# Cloud SQL refuses to delete a user that holds roles: on destroy it goes with the instance.
resource "google_sql_user" "admin" {
  count = var.managed_databases ? 1 : 0

  instance        = google_sql_database_instance.postgres[0].name
  name            = "gigalixir"
  type            = "BUILT_IN"
  password        = var.database_admin_password
  deletion_policy = "ABANDON"

  lifecycle {
    precondition {
      condition     = var.database_admin_password != ""
      error_message = "managed_databases needs database_admin_password (letters, digits, - . _ ~, at least 20), e.g. `openssl rand -hex 24`."
    }
  }
}

# The admin URL, for api's GIGALIXIR_POSTGRES_URL (read from here by Cloud Run, cloudrun.tf).
resource "google_secret_manager_secret" "postgres_admin_url" {
  count = var.managed_databases ? 1 : 0

  secret_id = "gigalixir-postgres-admin-url"

  replication {
    user_managed {
      replicas {
        location = var.region
      }
    }
  }

  depends_on = [google_project_service.apis]
}

# The password goes into the URL as is: database_admin_password allows URL-safe characters
# only (variables.tf).
resource "google_secret_manager_secret_version" "postgres_admin_url" {
  count = var.managed_databases ? 1 : 0

  secret      = google_secret_manager_secret.postgres_admin_url[0].id
  secret_data = "postgresql://${google_sql_user.admin[0].name}:${google_sql_user.admin[0].password}@${google_sql_database_instance.postgres[0].private_ip_address}:5432/postgres"
}

resource "google_secret_manager_secret_iam_member" "postgres_admin_url" {
  count = var.managed_databases ? 1 : 0

  secret_id = google_secret_manager_secret.postgres_admin_url[0].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.functions[local.runs_as["api"]].email}"
}

locals {
  # api's two variables (wiring.tf, function_env), null (not set) when managed databases
  # are off. The URL is a reference to its secret, pinned to the version this apply wrote so
  # that a new password rolls out a new revision; cloudrun.tf hands any such { secret,
  # version } value to Cloud Run as a secret, not as plain text.
  postgres_url_secret = var.managed_databases ? {
    secret  = google_secret_manager_secret.postgres_admin_url[0].secret_id
    version = google_secret_manager_secret_version.postgres_admin_url[0].version
  } : null
  postgres_host = var.managed_databases ? google_sql_database_instance.postgres[0].private_ip_address : null
}
