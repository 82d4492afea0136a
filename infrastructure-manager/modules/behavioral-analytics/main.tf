data "google_project" "this" {
  project_id = var.project_id
}

locals {
  image              = var.container_image != "" ? var.container_image : "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}/processor:latest"
  firestore_location = var.firestore_location != "" ? var.firestore_location : var.region

  dead_letter_topic_name        = "${var.pubsub_topic_name}-dead-letter"
  dead_letter_subscription_name = "${var.subscription_name}-dead-letter"

  # The Pub/Sub service agent moves poison messages to the dead-letter topic.
  pubsub_service_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  labels = merge({ app = "behavioral-analytics", managed-by = "terraform" }, var.labels)

  # Environment of both the worker and the API (the application's configuration contract).
  common_env = {
    BA_BACKEND                      = "gcp"
    GOOGLE_CLOUD_PROJECT            = var.project_id
    PUBSUB_TOPIC                    = google_pubsub_topic.events.name
    PUBSUB_SUBSCRIPTION             = google_pubsub_subscription.events.name
    PUBSUB_DEAD_LETTER_TOPIC        = google_pubsub_topic.dead_letter.name
    PUBSUB_DEAD_LETTER_SUBSCRIPTION = google_pubsub_subscription.dead_letter.name
    FIRESTORE_DATABASE              = google_firestore_database.analytics.name
    BA_TIMEZONE                     = var.timezone
    BA_RAW_RETENTION_DAYS           = tostring(var.raw_retention_days)
    BA_METRICS_EXPORTER             = var.metrics_exporter
  }
  worker_env = merge(local.common_env, {
    BA_FLUSH_INTERVAL        = tostring(var.flush_interval_seconds)
    BA_MAX_DELIVERY_ATTEMPTS = tostring(var.max_delivery_attempts)
  })

  required_apis = toset(concat([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    ], var.enable_autoscaling ? ["parametermanager.googleapis.com"] : [],
  ))
}

# ---------------------------------------------------------------------------
# APIs. disable_on_destroy = false: other workloads of the project may use them.
# ---------------------------------------------------------------------------
resource "google_project_service" "apis" {
  for_each = local.required_apis

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# ---------------------------------------------------------------------------
# Artifact Registry: REGION-docker.pkg.dev/PROJECT_ID/behavioral-analytics/processor
# ---------------------------------------------------------------------------
resource "google_artifact_registry_repository" "images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption is enough for a public-code image; pass a CMEK key by editing this resource if policy demands it.
  project       = var.project_id
  location      = var.region
  repository_id = "behavioral-analytics"
  format        = "DOCKER"
  description   = "behavioral-analytics container images (processor)"
  labels        = local.labels

  depends_on = [google_project_service.apis]
}

# ---------------------------------------------------------------------------
# Service accounts, least privilege: resource-level roles wherever the
# resource supports IAM, project-level only for Firestore, metrics and logs.
# ---------------------------------------------------------------------------
resource "google_service_account" "worker" {
  project      = var.project_id
  account_id   = "analytics-processor"
  display_name = "behavioral-analytics worker pool (${var.worker_pool_name})"

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "api" {
  count = var.deploy_api ? 1 : 0

  project      = var.project_id
  account_id   = "analytics-api"
  display_name = "behavioral-analytics collector and query API"

  depends_on = [google_project_service.apis]
}

locals {
  worker_project_roles = toset([
    "roles/datastore.user",          # read and commit raw events and aggregates
    "roles/monitoring.metricWriter", # custom.googleapis.com/behavioral_analytics/*
    "roles/logging.logWriter",       # JSON logs
  ])
  api_project_roles = toset([
    "roles/datastore.viewer", # queries only: the API never writes Firestore
    "roles/monitoring.metricWriter",
    "roles/logging.logWriter",
  ])
}

resource "google_project_iam_member" "worker" {
  for_each = local.worker_project_roles

  project = var.project_id
  role    = each.value
  member  = google_service_account.worker.member
}

resource "google_project_iam_member" "api" {
  for_each = var.deploy_api ? local.api_project_roles : toset([])

  project = var.project_id
  role    = each.value
  member  = google_service_account.api[0].member
}
