# The pipeline's wiring, as shared/core/src/deployment.rs declares it
# (`cargo run -q -p gigalixir-platform -- --print-deployment`). tests/infra/check_wiring.py
# compares these literals with that JSON: a topic, subscription, delivery mode, push path,
# bucket or environment variable missing on either side fails `scripts/check-infra`.
# A push subscription is delivered to its function's Cloud Run URL + `path`; a pull
# subscription is pulled by that function's worker on GKE (kubernetes.tf).
#
# Where Pub/Sub's limits differ from the manifest, the value here is the clamped one and the
# comment says why; the check applies the same clamps. The manifest's own values go into each
# subscription's labels (gigalixir-ack-deadline-ms, gigalixir-max-attempts), which the Pub/Sub
# adapter (shared/gcp/src/pubsub.rs) reads back: the pull worker extends its lease up to the
# exact deadline and dead-letters after the exact number of attempts.
#   ack deadline:           Pub/Sub accepts 10..600 s.
#   max delivery attempts:  a dead-letter policy accepts 5..100.

locals {
  topics = [
    "build-requested",
    "slug-built",
    "slug-uploaded",
    "release-requested",
    "release-created",
    "deploy-succeeded",
    "deploy-failed",
    "app-destroyed",
    "app-scaled",
    "restart-requested",
    "ssh-keys-changed",
    "domains-changed",
    "dead-letter",
  ]

  dead_letter_topic = "dead-letter"

  subscriptions = {
    "build.build-requested" = {
      topic    = "build-requested"
      function = "build"
      delivery = "pull"
      path     = "/"
      # Manifest: 2100 s (build timeout + 300 s) and 3 attempts. The pull worker extends its
      # lease up to the 2100 s and dead-letters after 3 attempts itself (labels below); the
      # server-side values are Pub/Sub's bounds, a backstop when a worker dies.
      ack_deadline_seconds  = 600
      max_delivery_attempts = 5
      # Unclamped, as the manifest says: kept in labels for the Pub/Sub adapter.
      spec_ack_deadline_seconds = 2100
      spec_max_attempts         = 3
      min_backoff_seconds       = 1
      max_backoff_seconds       = 60
      dead_letter               = "dead-letter"
    }
    # Pulled by the upload worker, a container of the build worker pods: it reads the slug
    # out of the finished build container through the Docker engine of the same pod.
    "upload.slug-built" = {
      topic                 = "slug-built"
      function              = "upload"
      delivery              = "pull"
      path                  = "/"
      ack_deadline_seconds  = 600
      max_delivery_attempts = 5
      # Unclamped, as the manifest says: kept in labels for the Pub/Sub adapter.
      spec_ack_deadline_seconds = 600
      spec_max_attempts         = 5
      min_backoff_seconds       = 1
      max_backoff_seconds       = 60
      dead_letter               = "dead-letter"
    }
    "release.slug-uploaded" = {
      topic                 = "slug-uploaded"
      function              = "release"
      delivery              = "push"
      path                  = "/"
      ack_deadline_seconds  = 60
      max_delivery_attempts = 5
      # Unclamped, as the manifest says: kept in labels for the Pub/Sub adapter.
      spec_ack_deadline_seconds = 60
      spec_max_attempts         = 5
      min_backoff_seconds       = 1
      max_backoff_seconds       = 60
      dead_letter               = "dead-letter"
    }
    "release.release-requested" = {
      topic                 = "release-requested"
      function              = "release"
      delivery              = "push"
      path                  = "/"
      ack_deadline_seconds  = 60
      max_delivery_attempts = 5
      # Unclamped, as the manifest says: kept in labels for the Pub/Sub adapter.
      spec_ack_deadline_seconds = 60
      spec_max_attempts         = 5
      min_backoff_seconds       = 1
      max_backoff_seconds       = 60
      dead_letter               = "dead-letter"
    }
    # Dead letters end their build (and release) as failed, so the pusher hears about it:
    # `release` takes them at its own path (shared/function/src/dead_letters.rs).
    "platform.dead-letter" = {
      topic                = "dead-letter"
      function             = "release"
      delivery             = "push"
      path                 = "/dead-letters"
      ack_deadline_seconds = 60
      # No dead letter of its own: a message Pub/Sub cannot deliver here is retried until
      # the subscription's retention (7 days) ends.
      max_delivery_attempts = 5
      # Unclamped, as the manifest says: kept in labels for the Pub/Sub adapter.
      spec_ack_deadline_seconds = 60
      spec_max_attempts         = 5
      min_backoff_seconds       = 1
      max_backoff_seconds       = 60
      dead_letter               = null
    }
    "deploy.release-created" = {
      topic                 = "release-created"
      function              = "deploy"
      delivery              = "push"
      path                  = "/"
      ack_deadline_seconds  = 360
      max_delivery_attempts = 5
      # Unclamped, as the manifest says: kept in labels for the Pub/Sub adapter.
      spec_ack_deadline_seconds = 360
      spec_max_attempts         = 5
      min_backoff_seconds       = 1
      max_backoff_seconds       = 60
      dead_letter               = "dead-letter"
    }
    "deploy.app-destroyed" = {
      topic                 = "app-destroyed"
      function              = "deploy"
      delivery              = "push"
      path                  = "/"
      ack_deadline_seconds  = 60
      max_delivery_attempts = 5
      # Unclamped, as the manifest says: kept in labels for the Pub/Sub adapter.
      spec_ack_deadline_seconds = 60
      spec_max_attempts         = 5
      min_backoff_seconds       = 1
      max_backoff_seconds       = 60
      dead_letter               = "dead-letter"
    }
    "deploy.ssh-keys-changed" = {
      topic                 = "ssh-keys-changed"
      function              = "deploy"
      delivery              = "push"
      path                  = "/"
      ack_deadline_seconds  = 60
      max_delivery_attempts = 5
      # Unclamped, as the manifest says: kept in labels for the Pub/Sub adapter.
      spec_ack_deadline_seconds = 60
      spec_max_attempts         = 5
      min_backoff_seconds       = 1
      max_backoff_seconds       = 60
      dead_letter               = "dead-letter"
    }
    "deploy.domains-changed" = {
      topic                 = "domains-changed"
      function              = "deploy"
      delivery              = "push"
      path                  = "/"
      ack_deadline_seconds  = 60
      max_delivery_attempts = 5
      # Unclamped, as the manifest says: kept in labels for the Pub/Sub adapter.
      spec_ack_deadline_seconds = 60
      spec_max_attempts         = 5
      min_backoff_seconds       = 1
      max_backoff_seconds       = 60
      dead_letter               = "dead-letter"
    }
    "deploy.app-scaled" = {
      topic    = "app-scaled"
      function = "deploy"
      delivery = "push"
      path     = "/"
      # Manifest: 1320 s (17 boot timeouts + 300 s). A longer rollout is redelivered while
      # it runs; deploy is idempotent and the Cloud Run request itself may last 30 min.
      ack_deadline_seconds  = 600
      max_delivery_attempts = 5
      # Unclamped, as the manifest says: kept in labels for the Pub/Sub adapter.
      spec_ack_deadline_seconds = 1320
      spec_max_attempts         = 5
      min_backoff_seconds       = 1
      max_backoff_seconds       = 60
      dead_letter               = "dead-letter"
    }
    "deploy.restart-requested" = {
      topic    = "restart-requested"
      function = "deploy"
      delivery = "push"
      path     = "/"
      # Manifest: 1320 s, clamped as above.
      ack_deadline_seconds  = 600
      max_delivery_attempts = 5
      # Unclamped, as the manifest says: kept in labels for the Pub/Sub adapter.
      spec_ack_deadline_seconds = 1320
      spec_max_attempts         = 5
      min_backoff_seconds       = 1
      max_backoff_seconds       = 60
      dead_letter               = "dead-letter"
    }
  }

  # Key spaces of the blob store: bucket <bucket_prefix>-<space> each. soft_delete_days: how
  # long a deleted object can still be restored (0 for the disposable spaces).
  blob_spaces = {
    repos = {
      versioned        = true
      expire_days      = 0
      soft_delete_days = 7
    }
    sources = {
      versioned        = false
      expire_days      = 30
      soft_delete_days = 0
    }
    slugs = {
      versioned        = true
      expire_days      = var.slug_retention_days
      soft_delete_days = 7
    }
    caches = {
      versioned        = false
      expire_days      = 30
      soft_delete_days = 0
    }
    # What the platform fetches for builds: Hex registry records and tarballs (shared by
    # every app, by checksum), git dependencies, tool binaries. Refetched when missing.
    packages = {
      versioned        = false
      expire_days      = 90
      soft_delete_days = 0
    }
    # The managed databases' dumps (pg_dump -Fc, backups/DATABASE/BACKUP.dump), written and
    # read by api. No expiry: the platform prunes them itself (the newest 7 daily and 7 on
    # request per database) and deletes them with their database. Each dump is written once
    # under a new name, so no versioning; a deleted one stays restorable for 7 days.
    backups = {
      versioned        = false
      expire_days      = 0
      soft_delete_days = 7
    }
  }

  bucket_prefix = var.bucket_prefix != "" ? var.bucket_prefix : "${var.project_id}-gigalixir"

  image_base = "${var.region}-docker.pkg.dev/${var.project_id}/${var.artifact_repository}"

  # The runtime URL carries the cluster-wide settings of the Kubernetes runtime
  # (shared/kube/: KubeSettings::from_url). In the image, %7Bstack%7D is {stack}:
  # each release runs on its own stack's runner (gigalixir-runner:<stack>-<tag>).
  # build and upload share a pod's engine and label its containers alike.
  builder_url = "docker://?instance=default"

  runtime_url = "kube://?${join("&", [
    "image=${urlencode("${local.image_base}/gigalixir-runner:")}%7Bstack%7D${urlencode("-${var.image_tag}")}",
    "domain=${urlencode(var.apps_domain)}",
    "issuer=${local.cluster_issuer}",
    "ingress_class=nginx",
    "namespace_prefix=app-",
    "ssh=loadbalancer",
    # GKE's Kubernetes user of the api's Google identity (kubernetes.tf's api_app role)
    "api_user=${urlencode(google_service_account.functions["api"].email)}",
  ])}"

  # Each function's environment: exactly the variables deployment.rs lists for it, except
  # PORT, which Cloud Run sets itself (container port 8080). A null value leaves the variable
  # unset; a { secret, version } value is read from Secret Manager (cloudrun.tf).
  function_env = {
    # DOMAIN: a custom domain's CNAME target is APP.DOMAIN; the platform's own host is no
    # app's custom domain. RUNTIME: ps, logs and ps:ssh look at the cluster; ps:kill and run
    # delete a pod and create a Job in the apps' namespaces (kubernetes.tf's api_app role).
    api = {
      GIGALIXIR_STORE            = "firestore://${var.project_id}"
      GIGALIXIR_BUS              = "pubsub://${var.project_id}"
      GIGALIXIR_BLOBS            = "gs://${local.bucket_prefix}"
      GIGALIXIR_RUNTIME          = local.runtime_url
      GIGALIXIR_DOMAIN           = var.apps_domain
      GIGALIXIR_RESERVED_DOMAINS = var.platform_host
      # Account mail (confirmations, password resets) and the links in it.
      GIGALIXIR_SMTP_URL           = var.smtp_url
      GIGALIXIR_OUTBOX_DIR         = ""
      GIGALIXIR_MAIL_FROM          = "noreply@${var.platform_host}"
      GIGALIXIR_PUBLIC_URL         = "https://${var.platform_host}"
      GIGALIXIR_EMAIL_CONFIRMATION = "true"
      # Managed databases (database.tf): the admin URL, from Secret Manager, and the address
      # apps connect to. Both null, hence not set, when var.managed_databases is off.
      GIGALIXIR_POSTGRES_URL  = local.postgres_url_secret
      GIGALIXIR_POSTGRES_HOST = local.postgres_host
    }
    # DOMAIN: a push ends with the app's URL.
    receive = {
      GIGALIXIR_STORE  = "firestore://${var.project_id}"
      GIGALIXIR_BUS    = "pubsub://${var.project_id}"
      GIGALIXIR_BLOBS  = "gs://${local.bucket_prefix}"
      GIGALIXIR_DOMAIN = var.apps_domain
    }
    # The build worker serves the package cache to its builds (hex.pm's by default).
    build = {
      GIGALIXIR_STORE            = "firestore://${var.project_id}"
      GIGALIXIR_BUS              = "pubsub://${var.project_id}"
      GIGALIXIR_BLOBS            = "gs://${local.bucket_prefix}"
      GIGALIXIR_HEX_UPSTREAM     = var.hex_upstream
      GIGALIXIR_HEX_UPSTREAM_KEY = ""
      GIGALIXIR_PACKAGES_DIR     = "/run/gigalixir/packages"
      GIGALIXIR_BUILDER          = local.builder_url
    }
    upload = {
      GIGALIXIR_STORE   = "firestore://${var.project_id}"
      GIGALIXIR_BUS     = "pubsub://${var.project_id}"
      GIGALIXIR_BLOBS   = "gs://${local.bucket_prefix}"
      GIGALIXIR_BUILDER = local.builder_url
    }
    # PUSH_*: the function believes a push only with Google's token for its own URL, from
    # the service account the subscriptions push as (pubsub.tf).
    release = {
      GIGALIXIR_STORE         = "firestore://${var.project_id}"
      GIGALIXIR_BUS           = "pubsub://${var.project_id}"
      GIGALIXIR_PUSH_AUDIENCE = local.push_audience["release"]
      GIGALIXIR_PUSH_INVOKER  = google_service_account.pubsub_invoker.email
      GIGALIXIR_PUSH_JWKS     = "https://www.googleapis.com/oauth2/v3/certs"
    }
    deploy = {
      GIGALIXIR_STORE         = "firestore://${var.project_id}"
      GIGALIXIR_BUS           = "pubsub://${var.project_id}"
      GIGALIXIR_BLOBS         = "gs://${local.bucket_prefix}"
      GIGALIXIR_RUNTIME       = local.runtime_url
      GIGALIXIR_DOMAIN        = var.apps_domain
      GIGALIXIR_PUSH_AUDIENCE = local.push_audience["deploy"]
      GIGALIXIR_PUSH_INVOKER  = google_service_account.pubsub_invoker.email
      GIGALIXIR_PUSH_JWKS     = "https://www.googleapis.com/oauth2/v3/certs"
    }
  }

  # The audience of each pushed service's tokens: its deterministic Cloud Run URL, known
  # before the service exists (the service's own `uri` would make its environment depend on
  # itself).
  push_audience = {
    for name in ["release", "deploy"] :
    name => "https://gigalixir-${name}-${data.google_project.current.number}.${var.region}.run.app"
  }

  # Platform-level variables: read by libraries under every binary rather than by a
  # function's own settings, so deployment.rs does not list them. The check accepts exactly
  # these (its PLATFORM_ENV allow-list) and fails on any other variable the manifest lacks.
  # - LOG_FORMAT: JSON log lines for Cloud Logging (shared/function/src/web.rs, init_tracing).
  # - KUBECONFIG: deploy and api run outside the cluster; read by the kube client, the file
  #   names the private endpoint.
  # - DOCKER_HOST: the pod's own Docker engine, read by the Docker client
  #   (shared/docker, connect); build runs its containers there, upload reads them back.
  common_env = {
    LOG_FORMAT = "json"
  }
  extra_env = {
    build = {
      DOCKER_HOST = local.docker_host
    }
    upload = {
      DOCKER_HOST = local.docker_host
    }
    deploy = {
      KUBECONFIG = "/etc/gigalixir/kube/config"
    }
    api = {
      KUBECONFIG = "/etc/gigalixir/kube/config"
    }
  }
  # The functions that reach the cluster: its kubeconfig mounted, the VPC for its private
  # endpoint.
  cluster_clients = ["deploy", "api"]
  # The functions that reach the managed databases' server (its private address, through
  # the VPC).
  database_clients = ["api"]
  docker_host      = "unix:///var/run/docker.sock"

  # The Cloud Run services. `public`: reached from the internet through the load balancer
  # (the function authenticates its callers); otherwise only Pub/Sub pushes reach it.
  # build and upload pull instead: they run in the build worker pods (kubernetes.tf).
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

  # The Google service account each function runs as (iam.tf creates one per value).
  # upload runs as `build`: it is a container of the build worker pods (it must reach the
  # Docker engine that ran the build), and every container of a pod shares the pod's
  # Kubernetes service account, which Workload Identity maps to one Google account. So the
  # worker pods hold the union of build's and upload's grants (storage.tf, pubsub.tf).
  runs_as = {
    api     = "api"
    receive = "receive"
    build   = "build"
    upload  = "build"
    release = "release"
    deploy  = "deploy"
  }

  # Topics each function publishes to (its service account may publish nowhere else).
  # The pull workers dead-letter a message themselves after exactly the manifest's attempts.
  publishes = {
    api     = ["release-requested", "app-destroyed", "app-scaled", "restart-requested", "ssh-keys-changed", "domains-changed"]
    receive = ["build-requested"]
    build   = ["slug-built", "slug-uploaded", "dead-letter"] # slug-uploaded: a push that reuses the running slug
    upload  = ["slug-uploaded", "dead-letter"]
    release = ["release-created"]
    deploy  = ["deploy-succeeded", "deploy-failed"]
  }

  cluster_issuer = "letsencrypt"

  labels = merge({ platform = "gigalixir" }, var.labels)
}
