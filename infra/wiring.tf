# The pipeline's wiring, as shared/src/deployment.rs declares it
# (`cargo run -q -p gigalixir-platform -- --print-deployment`). tests/infra/check_wiring.py
# compares these literals with that JSON: a topic, subscription, delivery mode, bucket or
# environment variable missing on either side fails `scripts/check-infra`.
#
# Where Pub/Sub's limits differ from the manifest, the value here is the clamped one and the
# comment says why; the check applies the same clamps.
#   ack deadline:           Pub/Sub accepts 10..600 s.
#   max delivery attempts:  a dead-letter policy accepts 5..100.

locals {
  topics = [
    "build-requested",
    "slug-built",
    "slug-uploaded",
    "release-created",
    "deploy-succeeded",
    "deploy-failed",
    "app-destroyed",
    "app-scaled",
    "restart-requested",
    "ssh-keys-changed",
    "dead-letter",
  ]

  dead_letter_topic = "dead-letter"

  # The manifest leaves the dead-letter consumer to the platform (`function: null`). On GCP
  # it is pushed to `release`, the smallest service that holds the store: it marks the
  # build (and release) failed so the pusher hears about it.
  dead_letter_consumer = "release"

  subscriptions = {
    "build.build-requested" = {
      topic    = "build-requested"
      function = "build"
      delivery = "pull"
      # Manifest: 2100 s (build timeout + 300 s). The pull worker extends its lease while
      # the build runs.
      ack_deadline_seconds = 600
      # Manifest: 3 attempts; 5 is the fewest a dead-letter policy allows.
      max_delivery_attempts = 5
      min_backoff_seconds   = 1
      max_backoff_seconds   = 60
      dead_letter           = "dead-letter"
    }
    "upload.slug-built" = {
      topic                 = "slug-built"
      function              = "upload"
      delivery              = "push"
      ack_deadline_seconds  = 600
      max_delivery_attempts = 5
      min_backoff_seconds   = 1
      max_backoff_seconds   = 60
      dead_letter           = "dead-letter"
    }
    "release.slug-uploaded" = {
      topic                 = "slug-uploaded"
      function              = "release"
      delivery              = "push"
      ack_deadline_seconds  = 60
      max_delivery_attempts = 5
      min_backoff_seconds   = 1
      max_backoff_seconds   = 60
      dead_letter           = "dead-letter"
    }
    "platform.dead-letter" = {
      topic                = "dead-letter"
      function             = "release"
      delivery             = "push"
      ack_deadline_seconds = 60
      # No dead letter of its own: a message Pub/Sub cannot deliver here is retried until
      # the subscription's retention (7 days) ends.
      max_delivery_attempts = 5
      min_backoff_seconds   = 1
      max_backoff_seconds   = 60
      dead_letter           = null
    }
    "deploy.release-created" = {
      topic                 = "release-created"
      function              = "deploy"
      delivery              = "push"
      ack_deadline_seconds  = 360
      max_delivery_attempts = 5
      min_backoff_seconds   = 1
      max_backoff_seconds   = 60
      dead_letter           = "dead-letter"
    }
    "deploy.app-destroyed" = {
      topic                 = "app-destroyed"
      function              = "deploy"
      delivery              = "push"
      ack_deadline_seconds  = 60
      max_delivery_attempts = 5
      min_backoff_seconds   = 1
      max_backoff_seconds   = 60
      dead_letter           = "dead-letter"
    }
    "deploy.ssh-keys-changed" = {
      topic                 = "ssh-keys-changed"
      function              = "deploy"
      delivery              = "push"
      ack_deadline_seconds  = 60
      max_delivery_attempts = 5
      min_backoff_seconds   = 1
      max_backoff_seconds   = 60
      dead_letter           = "dead-letter"
    }
    "deploy.app-scaled" = {
      topic    = "app-scaled"
      function = "deploy"
      delivery = "push"
      # Manifest: 1320 s (17 boot timeouts + 300 s). A longer rollout is redelivered while
      # it runs; deploy is idempotent and the Cloud Run request itself may last 30 min.
      ack_deadline_seconds  = 600
      max_delivery_attempts = 5
      min_backoff_seconds   = 1
      max_backoff_seconds   = 60
      dead_letter           = "dead-letter"
    }
    "deploy.restart-requested" = {
      topic    = "restart-requested"
      function = "deploy"
      delivery = "push"
      # Manifest: 1320 s, clamped as above.
      ack_deadline_seconds  = 600
      max_delivery_attempts = 5
      min_backoff_seconds   = 1
      max_backoff_seconds   = 60
      dead_letter           = "dead-letter"
    }
  }

  # Key spaces of the blob store: bucket <bucket_prefix>-<space> each.
  blob_spaces = {
    repos = {
      versioned   = true
      expire_days = 0
    }
    sources = {
      versioned   = false
      expire_days = 30
    }
    slugs = {
      versioned   = true
      expire_days = var.slug_retention_days
    }
    caches = {
      versioned   = false
      expire_days = 30
    }
  }

  bucket_prefix = var.bucket_prefix != "" ? var.bucket_prefix : "${var.project_id}-gigalixir"

  image_base = "${var.region}-docker.pkg.dev/${var.project_id}/${var.artifact_repository}"

  # The runtime URL carries the cluster-wide settings of the Kubernetes runtime
  # (shared/src/kube_runtime: KubeSettings::from_url).
  runtime_url = "kube://?${join("&", [
    "image=${urlencode("${local.image_base}/gigalixir-runner:${var.image_tag}")}",
    "domain=${urlencode(var.apps_domain)}",
    "issuer=${local.cluster_issuer}",
    "ingress_class=nginx",
    "namespace_prefix=app-",
    "ssh=loadbalancer",
  ])}"

  # Each function's environment: exactly the variables deployment.rs lists for it, except
  # PORT, which Cloud Run sets itself (container port 8080).
  function_env = {
    api = {
      GIGALIXIR_STORE = "firestore://${var.project_id}"
      GIGALIXIR_BUS   = "pubsub://${var.project_id}"
    }
    receive = {
      GIGALIXIR_STORE = "firestore://${var.project_id}"
      GIGALIXIR_BUS   = "pubsub://${var.project_id}"
      GIGALIXIR_BLOBS = "gs://${local.bucket_prefix}"
    }
    build = {
      GIGALIXIR_STORE = "firestore://${var.project_id}"
      GIGALIXIR_BUS   = "pubsub://${var.project_id}"
      GIGALIXIR_BLOBS = "gs://${local.bucket_prefix}"
    }
    upload = {
      GIGALIXIR_STORE = "firestore://${var.project_id}"
      GIGALIXIR_BUS   = "pubsub://${var.project_id}"
      GIGALIXIR_BLOBS = "gs://${local.bucket_prefix}"
    }
    release = {
      GIGALIXIR_STORE = "firestore://${var.project_id}"
      GIGALIXIR_BUS   = "pubsub://${var.project_id}"
    }
    deploy = {
      GIGALIXIR_STORE   = "firestore://${var.project_id}"
      GIGALIXIR_BUS     = "pubsub://${var.project_id}"
      GIGALIXIR_BLOBS   = "gs://${local.bucket_prefix}"
      GIGALIXIR_RUNTIME = local.runtime_url
      GIGALIXIR_DOMAIN  = var.apps_domain
    }
  }

  # Variables set here that deployment.rs does not list yet (the check reports them as
  # pending until it does):
  # - LOG_FORMAT: every function reads it (shared::web::init_tracing); JSON for Cloud Logging.
  # - KUBECONFIG: deploy runs outside the cluster; the file names the private endpoint.
  common_env = {
    LOG_FORMAT = "json"
  }
  extra_env = {
    deploy = {
      KUBECONFIG = "/etc/gigalixir/kube/config"
    }
  }
  # Variables whose value is a Secret Manager secret (name => secret id).
  # - GIGALIXIR_WEBHOOK_KEY: HMAC key of receive's push webhook.
  secret_env = {
    receive = {
      GIGALIXIR_WEBHOOK_KEY = google_secret_manager_secret.webhook_key.secret_id
    }
  }

  # The Cloud Run services. `public`: reached from the internet through the load balancer
  # (the function authenticates its callers); otherwise only Pub/Sub pushes reach it.
  services = {
    api = {
      public      = true
      timeout     = "300s"
      cpu         = "1"
      memory      = "512Mi"
      concurrency = 80
    }
    # A push waits for its build and deploy and streams their output back.
    receive = {
      public      = true
      timeout     = "3600s"
      cpu         = "2"
      memory      = "2Gi"
      concurrency = 8
    }
    # Holds a slug (up to 1 GiB) in memory while it hashes and verifies it.
    upload = {
      public      = false
      timeout     = "900s"
      cpu         = "2"
      memory      = "4Gi"
      concurrency = 2
    }
    release = {
      public      = false
      timeout     = "120s"
      cpu         = "1"
      memory      = "512Mi"
      concurrency = 40
    }
    # Follows rollouts (scale and restart may take 17 boot timeouts).
    deploy = {
      public      = false
      timeout     = "1800s"
      cpu         = "1"
      memory      = "512Mi"
      concurrency = 20
    }
  }

  # Topics each function publishes to (its service account may publish nowhere else).
  publishes = {
    api     = ["release-created", "app-destroyed", "app-scaled", "restart-requested", "ssh-keys-changed"]
    receive = ["build-requested"]
    build   = ["slug-built"]
    upload  = ["slug-uploaded"]
    release = ["release-created"]
    deploy  = ["deploy-succeeded", "deploy-failed"]
  }

  cluster_issuer = "letsencrypt"

  labels = merge({ platform = "gigalixir" }, var.labels)
}
