# One HTTPS host for the API and git (the CLI derives the git remote from the API URL:
# https://HOST/APP.git). Paths under /api go to `api`, everything else to `receive`
# (/APP.git/info/refs, /APP.git/git-receive-pack, /APP.git/git-upload-pack, the webhook).

resource "google_compute_region_network_endpoint_group" "functions" {
  for_each = { for name, s in local.services : name => s if s.public }

  name                  = "gigalixir-${each.key}"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = google_cloud_run_v2_service.functions[each.key].name
  }
}

resource "google_compute_backend_service" "functions" {
  for_each = google_compute_region_network_endpoint_group.functions

  name                  = "gigalixir-${each.key}"
  protocol              = "HTTPS"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  security_policy       = google_compute_security_policy.platform.id

  backend {
    group = each.value.id
  }

  log_config {
    enable      = true
    sample_rate = 1.0
  }
}

# Cloud Armor: a per-client rate limit in front of sign-up, login and git (password guessing).
resource "google_compute_security_policy" "platform" {
  name = "gigalixir-platform"

  rule {
    action   = "throttle"
    priority = 1000
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    rate_limit_options {
      conform_action = "allow"
      exceed_action  = "deny(429)"
      enforce_on_key = "IP"
      rate_limit_threshold {
        count        = var.rate_limit_per_minute
        interval_sec = 60
      }
    }
    description = "per-client rate limit"
  }

  # Log4Shell probes (CVE-2021-44228) are dropped before they reach any function.
  rule {
    action   = "deny(403)"
    priority = 900
    match {
      expr {
        expression = "evaluatePreconfiguredExpr('cve-canary')"
      }
    }
    description = "CVE-2021-44228"
  }

  rule {
    action   = "allow"
    priority = 2147483647
    match {
      versioned_expr = "SRC_IPS_V1"
      config {
        src_ip_ranges = ["*"]
      }
    }
    description = "default"
  }
}

resource "google_compute_url_map" "platform" {
  name            = "gigalixir-platform"
  default_service = google_compute_backend_service.functions["receive"].id

  host_rule {
    hosts        = [var.platform_host]
    path_matcher = "platform"
  }

  path_matcher {
    name            = "platform"
    default_service = google_compute_backend_service.functions["receive"].id

    path_rule {
      paths   = ["/api", "/api/*"]
      service = google_compute_backend_service.functions["api"].id
    }
  }
}

resource "google_compute_managed_ssl_certificate" "platform" {
  name = "gigalixir-platform"

  managed {
    domains = [var.platform_host]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_ssl_policy" "platform" {
  name            = "gigalixir-platform"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"
}

resource "google_compute_target_https_proxy" "platform" {
  name             = "gigalixir-platform"
  url_map          = google_compute_url_map.platform.id
  ssl_certificates = [google_compute_managed_ssl_certificate.platform.id]
  ssl_policy       = google_compute_ssl_policy.platform.id
}

resource "google_compute_global_forwarding_rule" "https" {
  name                  = "gigalixir-platform-https"
  target                = google_compute_target_https_proxy.platform.id
  ip_address            = google_compute_global_address.platform.address
  port_range            = "443"
  load_balancing_scheme = "EXTERNAL_MANAGED"
}

# Plain HTTP only redirects to HTTPS.
resource "google_compute_url_map" "https_redirect" {
  name = "gigalixir-platform-redirect"

  default_url_redirect {
    https_redirect         = true
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
    strip_query            = false
  }
}

resource "google_compute_target_http_proxy" "https_redirect" {
  name    = "gigalixir-platform-redirect"
  url_map = google_compute_url_map.https_redirect.id
}

resource "google_compute_global_forwarding_rule" "http" {
  name                  = "gigalixir-platform-http"
  target                = google_compute_target_http_proxy.https_redirect.id
  ip_address            = google_compute_global_address.platform.address
  port_range            = "80"
  load_balancing_scheme = "EXTERNAL_MANAGED"
}
