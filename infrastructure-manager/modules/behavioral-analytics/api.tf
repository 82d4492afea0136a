# ---------------------------------------------------------------------------
# The HTTP collector and query API: the same image, `behavioral-analytics api`,
# listening on $PORT. Its write and read keys live in Secret Manager (secrets.tf).
# ---------------------------------------------------------------------------
locals {
  api_secrets = var.deploy_api ? {
    BA_WRITE_KEYS = var.api_write_keys_secret_id
    BA_READ_KEYS  = var.api_read_keys_secret_id
  } : {}
}

resource "google_cloud_run_v2_service" "api" {
  count = var.deploy_api ? 1 : 0

  project             = var.project_id
  name                = var.api_service_name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.cloud_run_deletion_protection
  labels              = local.labels
  # Apps post events from browsers and phones, so the URL is public by default; every
  # request is still checked against BA_WRITE_KEYS / BA_READ_KEYS. Cloud Run's own switch
  # (no invoker check) rather than an allUsers binding, which domain-restricted sharing
  # refuses. Changing it needs run.services.setIamPolicy (roles/run.admin).
  invoker_iam_disabled = var.api_allow_unauthenticated

  template {
    service_account = google_service_account.api[0].email

    scaling {
      min_instance_count = 0
      max_instance_count = var.api_max_instances
    }

    containers {
      name  = "api"
      image = local.image
      # The placeholder image (first deployment) has its own command.
      command = local.runs_placeholder ? null : ["behavioral-analytics"]
      args    = local.runs_placeholder ? null : ["api"]

      ports {
        container_port = 8080 # exported to the process as $PORT
      }

      # Traffic once the API answers GET /healthz (open, docs/api.md), and a new instance when
      # it stops answering. The placeholder image has no such route.
      dynamic "startup_probe" {
        for_each = local.runs_placeholder ? [] : [1]
        content {
          period_seconds    = 2
          timeout_seconds   = 1
          failure_threshold = 30
          http_get {
            path = "/healthz"
          }
        }
      }

      dynamic "liveness_probe" {
        for_each = local.runs_placeholder ? [] : [1]
        content {
          period_seconds    = 30
          timeout_seconds   = 5
          failure_threshold = 3
          http_get {
            path = "/healthz"
          }
        }
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
      }

      dynamic "env" {
        for_each = local.common_env
        content {
          name  = env.key
          value = env.value
        }
      }

      # The API binds loopback unless told otherwise; Cloud Run routes to all interfaces.
      env {
        name  = "BA_API_HOST"
        value = "0.0.0.0"
      }

      # Cloud Run's front end appends the caller's address to X-Forwarded-For: without this
      # every browser call's context.ip (and its country) would be the front end's.
      env {
        name  = "BA_TRUSTED_PROXY_HOPS"
        value = "1"
      }

      # Web pages that send events from the browser (analytics.js preflights its calls).
      dynamic "env" {
        for_each = length(var.api_cors_origins) > 0 ? { BA_CORS_ORIGINS = join(",", var.api_cors_origins) } : {}
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.api_secrets
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.generated[env.key].secret_id
              version = "latest"
            }
          }
        }
      }
    }
  }

  depends_on = [
    google_project_iam_member.api,
    google_pubsub_topic_iam_member.api_publisher,
    google_pubsub_topic_iam_member.api_topic_viewer,
    google_secret_manager_secret_iam_member.generated_accessor,
    google_secret_manager_secret_version.generated,
  ]
}

# /readyz asks Pub/Sub for the topic (GetTopic): pubsub.topics.get, which the publisher role
# lacks. Viewer on this one topic, so a health check does not see 503 on a healthy API.
resource "google_pubsub_topic_iam_member" "api_topic_viewer" {
  count = var.deploy_api ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.events.name
  role    = "roles/pubsub.viewer"
  member  = google_service_account.api[0].member
}
