# Topics and subscriptions exactly as wiring.tf (= shared/core/src/deployment.rs) lists them.

locals {
  push_subscriptions = { for name, s in local.subscriptions : name => s if s.delivery == "push" }
  pull_subscriptions = { for name, s in local.subscriptions : name => s if s.delivery == "pull" }
  # The Google-managed identity Pub/Sub acts as (OIDC tokens, dead-lettering).
  pubsub_agent = "serviceAccount:service-${data.google_project.current.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic" "topics" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest; messages hold ids and names, not user data. Add kms_key_name (and the Pub/Sub agent's KMS grant) where policy demands CMEK.
  for_each = toset(local.topics)

  name = each.value

  # Messages stay in the platform's region.
  message_storage_policy {
    allowed_persistence_regions = [var.region]
  }

  depends_on = [google_project_service.apis]
}

# Pushed to the consuming function's Cloud Run URL + the subscription's path (`/`, or
# `/dead-letters` for the dead letters `release` takes), signed with an OIDC token of the
# invoker account, which alone may invoke the internal services.
resource "google_pubsub_subscription" "push" {
  for_each = local.push_subscriptions

  labels = {
    gigalixir-ack-deadline-ms = each.value.spec_ack_deadline_seconds * 1000
    gigalixir-max-attempts    = each.value.spec_max_attempts
  }

  name                       = each.key
  topic                      = google_pubsub_topic.topics[each.value.topic].id
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.functions[each.value.function].uri}${each.value.path}"

    oidc_token {
      service_account_email = google_service_account.pubsub_invoker.email
      audience              = local.push_audience[each.value.function]
    }
  }

  retry_policy {
    minimum_backoff = "${each.value.min_backoff_seconds}s"
    maximum_backoff = "${each.value.max_backoff_seconds}s"
  }

  dynamic "dead_letter_policy" {
    for_each = each.value.dead_letter == null ? [] : [each.value.dead_letter]
    content {
      dead_letter_topic     = google_pubsub_topic.topics[dead_letter_policy.value].id
      max_delivery_attempts = each.value.max_delivery_attempts
    }
  }

  # Never expire for lack of traffic (the default is 31 days).
  expiration_policy {
    ttl = ""
  }

  depends_on = [google_service_account_iam_member.pubsub_agent_token_creator]
}

# Pulled by the build worker pods on GKE (build and upload), next to their Docker engine.
resource "google_pubsub_subscription" "pull" {
  for_each = local.pull_subscriptions

  labels = {
    gigalixir-ack-deadline-ms = each.value.spec_ack_deadline_seconds * 1000
    gigalixir-max-attempts    = each.value.spec_max_attempts
  }

  name                       = each.key
  topic                      = google_pubsub_topic.topics[each.value.topic].id
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = "604800s"

  retry_policy {
    minimum_backoff = "${each.value.min_backoff_seconds}s"
    maximum_backoff = "${each.value.max_backoff_seconds}s"
  }

  dynamic "dead_letter_policy" {
    for_each = each.value.dead_letter == null ? [] : [each.value.dead_letter]
    content {
      dead_letter_topic     = google_pubsub_topic.topics[dead_letter_policy.value].id
      max_delivery_attempts = each.value.max_delivery_attempts
    }
  }

  expiration_policy {
    ttl = ""
  }
}

# Dead-lettering: Pub/Sub's service agent publishes to the dead-letter topic and acks the
# message on the source subscription, so it needs both roles.
resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letter" {
  topic  = google_pubsub_topic.topics[local.dead_letter_topic].id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_push" {
  for_each = { for name, s in local.push_subscriptions : name => s if s.dead_letter != null }

  subscription = google_pubsub_subscription.push[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_pull" {
  for_each = { for name, s in local.pull_subscriptions : name => s if s.dead_letter != null }

  subscription = google_pubsub_subscription.pull[each.key].id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# Each function publishes only its own events. Keyed by identity (local.runs_as): build and
# upload share one, and one binding per (identity, topic) keeps Terraform from managing the
# same member twice.
resource "google_pubsub_topic_iam_member" "publishers" {
  for_each = toset(distinct(flatten([
    for fn, topics in local.publishes : [for topic in topics : "${local.runs_as[fn]}/${topic}"]
  ])))

  topic  = google_pubsub_topic.topics[split("/", each.value)[1]].id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.functions[split("/", each.value)[0]].email}"
}

# The pull workers (build, upload) consume their subscription, and read its settings and
# labels (the exact ack deadline and attempts) when they start.
resource "google_pubsub_subscription_iam_member" "pull_workers" {
  for_each = merge([
    for name, s in local.pull_subscriptions : {
      for role in ["roles/pubsub.subscriber", "roles/pubsub.viewer"] :
      "${name}/${role}" => { subscription = name, function = s.function, role = role }
    }
  ]...)

  subscription = google_pubsub_subscription.pull[each.value.subscription].id
  role         = each.value.role
  member       = "serviceAccount:${google_service_account.functions[local.runs_as[each.value.function]].email}"
}
