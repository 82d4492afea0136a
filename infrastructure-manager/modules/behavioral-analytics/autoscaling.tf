# ---------------------------------------------------------------------------
# Backlog-driven autoscaling with CREMA (Cloud Run External Metrics Autoscaler),
# Google's KEDA-based autoscaler for Cloud Run. Off unless enable_autoscaling.
#
# - Its configuration (a CremaConfig with one KEDA ScaledObject using the
#   gcp-pubsub scaler) is a YAML parameter version in Parameter Manager.
# - It runs as one always-on Cloud Run instance. Google publishes the image
#   FROM scratch, to be run on Cloud Run's managed Java base image
#   (automatic base image updates); that option exists on services, so CREMA is
#   a private service (internal ingress, no invoker) with one instance and
#   always-allocated CPU, which is how Google's CREMA guide deploys it. With
#   pollingInterval set it loops by itself and needs no request.
# - Its own service account may read the parameter and the metrics, and set the
#   instance count of this worker pool only.
# ---------------------------------------------------------------------------
locals {
  crema_config = {
    apiVersion = "crema/v1"
    kind       = "CremaConfig"
    spec = {
      pollingInterval = var.autoscaling_polling_interval_seconds
      triggerAuthentications = [{
        metadata = { name = "crema-gcp-identity" }
        spec     = { podIdentity = { provider = "gcp" } }
      }]
      scaledObjects = [{
        spec = {
          scaleTargetRef = {
            name = "projects/${var.project_id}/locations/${var.region}/workerpools/${var.worker_pool_name}"
          }
          minReplicaCount = var.min_instances
          maxReplicaCount = var.max_instances
          triggers = [{
            type = "gcp-pubsub"
            name = "subscription-backlog"
            metadata = {
              subscriptionName = "projects/${var.project_id}/subscriptions/${var.subscription_name}"
              mode             = "SubscriptionSize"
              value            = tostring(var.autoscaling_target_backlog_per_instance)
            }
            authenticationRef = { name = "crema-gcp-identity" }
          }]
          advanced = {
            horizontalPodAutoscalerConfig = {
              behavior = {
                # Scale in slowly: a worker that stops drops its leases and the
                # messages are redelivered (exactly-once effect, wasted work).
                scaleDown = { stabilizationWindowSeconds = 300 }
              }
            }
          }
        }
      }]
    }
  }
  crema_config_yaml = yamlencode(local.crema_config)
}

resource "google_service_account" "autoscaler" {
  count = var.enable_autoscaling ? 1 : 0

  project      = var.project_id
  account_id   = "analytics-autoscaler"
  display_name = "behavioral-analytics CREMA autoscaler"

  depends_on = [google_project_service.apis]
}

resource "google_parameter_manager_parameter" "crema_config" {
  count = var.enable_autoscaling ? 1 : 0

  project      = var.project_id
  parameter_id = "${var.worker_pool_name}-crema-config"
  format       = "YAML"
  labels       = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_parameter_manager_parameter_version" "crema_config" {
  count = var.enable_autoscaling ? 1 : 0

  parameter = google_parameter_manager_parameter.crema_config[0].id
  # A new version per configuration, so that a change rolls CREMA to it.
  parameter_version_id = "v-${substr(sha256(local.crema_config_yaml), 0, 16)}"
  parameter_data       = local.crema_config_yaml
}

resource "google_project_iam_member" "autoscaler" {
  for_each = var.enable_autoscaling ? toset([
    "roles/parametermanager.parameterViewer", # read its configuration
    "roles/monitoring.viewer",                # the gcp-pubsub scaler reads num_undelivered_messages
  ]) : toset([])

  project = var.project_id
  role    = each.value
  member  = google_service_account.autoscaler[0].member
}

# Set the instance count of this worker pool, and nothing else.
resource "google_cloud_run_v2_worker_pool_iam_member" "autoscaler_developer" {
  count = var.enable_autoscaling ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_worker_pool.worker.name
  role     = "roles/run.developer"
  member   = google_service_account.autoscaler[0].member
}

# Updating a worker pool acts as its service account.
resource "google_service_account_iam_member" "autoscaler_acts_as_worker" {
  count = var.enable_autoscaling ? 1 : 0

  service_account_id = google_service_account.worker.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.autoscaler[0].member
}

resource "google_pubsub_subscription_iam_member" "autoscaler_viewer" {
  count = var.enable_autoscaling ? 1 : 0

  project      = var.project_id
  subscription = google_pubsub_subscription.events.name
  role         = "roles/pubsub.viewer"
  member       = google_service_account.autoscaler[0].member
}

resource "google_cloud_run_v2_service" "autoscaler" {
  count = var.enable_autoscaling ? 1 : 0

  project             = var.project_id
  name                = "${var.worker_pool_name}-autoscaler"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = var.cloud_run_deletion_protection
  labels              = merge(local.labels, { created-by = "crema" })

  template {
    service_account = google_service_account.autoscaler[0].email

    scaling {
      min_instance_count = 1
      max_instance_count = 1
    }

    containers {
      image          = var.crema_image
      base_image_uri = var.crema_base_image

      resources {
        cpu_idle = false # polls on its own clock, not on requests
        limits = {
          cpu    = "1"
          memory = "1Gi"
        }
      }

      env {
        name  = "CREMA_CONFIG"
        value = google_parameter_manager_parameter_version.crema_config[0].name
      }
      env {
        name  = "OUTPUT_SCALER_METRICS"
        value = "False"
      }
    }
  }

  depends_on = [
    google_project_iam_member.autoscaler,
    google_cloud_run_v2_worker_pool_iam_member.autoscaler_developer,
    google_service_account_iam_member.autoscaler_acts_as_worker,
  ]
}
