data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # First deployment: the repository that will hold the image is created by this same apply,
  # so nothing can be in it yet. Until container_image is set, the worker pool and the API
  # run Google's public sample container (it serves on $PORT and does nothing else); then
  # build the image and apply again with container_image (docs/deploy.md, "First deployment").
  placeholder_image  = "us-docker.pkg.dev/cloudrun/container/hello:latest"
  runs_placeholder   = var.container_image == ""
  image              = local.runs_placeholder ? local.placeholder_image : var.container_image
  image_repository   = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
  firestore_location = var.firestore_location != "" ? var.firestore_location : var.region

  dead_letter_topic_name        = "${var.pubsub_topic_name}-dead-letter"
  dead_letter_subscription_name = "${var.subscription_name}-dead-letter"

  # The Pub/Sub service agent moves poison messages to the dead-letter topic. Its address
  # needs the project number, read at plan time through the Cloud Resource Manager API,
  # which a new project does not have enabled: docs/deploy.md enables it before the first
  # plan (a google_project_service cannot, since the plan needs it first).
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
    # Both services read the shards: the API's freshness and series sum them.
    BA_FIRESTORE_COUNTER_SHARDS = tostring(var.firestore_counter_shards)
    # An ordered subscription orders by key: the API sends keys only with BA_ORDERING.
    BA_ORDERING = tostring(var.message_ordering)
    # Labels of the custom metrics (location, job): the dashboard filters on the job.
    REGION = var.region
  }
  worker_env = merge(local.common_env, {
    WORKER_POOL_NAME         = var.worker_pool_name
    BA_FLUSH_INTERVAL        = tostring(var.flush_interval_seconds)
    BA_MAX_DELIVERY_ATTEMPTS = tostring(var.max_delivery_attempts)
    },
    # Their key, BA_HASH_SALT, comes from Secret Manager (secrets.tf).
    length(var.hashed_fields) > 0 ? { BA_HASHED_FIELDS = join(",", var.hashed_fields) } : {},
  )

  required_apis = toset(concat([
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudresourcemanager.googleapis.com",
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

  # Every build pushes a new version: keep the newest ten (and whatever a revision may still
  # run), delete the rest after 30 days.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-newest"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "2592000s"
    }
  }

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
    # Reads for the query routes, and the collector's own writes: an event it rejects is
    # recorded in dead_letters by the API itself (only creates; it never updates or deletes).
    # Firestore IAM stops at the database, so no narrower predefined role exists.
    # No metricWriter: only the worker exports to Cloud Monitoring; the API serves /metrics.
    "roles/datastore.user",
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

# Each worker writes the current hour's and day's documents once per flush; past about one
# sustained write per second per document they contend (docs/gcp.md, "Hot documents and
# counter shards"). A plan warns when the workers outrun the shards.
check "bucket_documents_keep_up_with_the_workers" {
  assert {
    condition = (
      (var.enable_autoscaling ? var.max_instances : var.min_instances) <= max(var.firestore_counter_shards, 1) * var.flush_interval_seconds
    )
    error_message = "Up to ${var.enable_autoscaling ? var.max_instances : var.min_instances} workers flushing every ${var.flush_interval_seconds} s write each hour and day document more than ${max(var.firestore_counter_shards, 1)} times a second: set firestore_counter_shards to at least ${ceil((var.enable_autoscaling ? var.max_instances : var.min_instances) / var.flush_interval_seconds)}, or lengthen flush_interval_seconds."
  }
}
