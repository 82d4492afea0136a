# ---------------------------------------------------------------------------
# Cloud Monitoring: a logs-based error metric, a dashboard and alert policies.
# Their definitions are JSON templates under monitoring/, shared with
# scripts/deploy.sh, which renders the same files for gcloud.
# ---------------------------------------------------------------------------
locals {
  monitoring_vars = {
    project_id                    = var.project_id
    region                        = var.region
    worker_pool_name              = var.worker_pool_name
    subscription_name             = google_pubsub_subscription.events.name
    dead_letter_subscription_name = google_pubsub_subscription.dead_letter.name
    dead_letter_topic_name        = google_pubsub_topic.dead_letter.name
    worker_errors_metric          = "behavioral_analytics_worker_errors_${var.worker_pool_name}"
    dashboard_display_name        = "behavioral-analytics (${var.worker_pool_name})"
    backlog_threshold             = tostring(var.backlog_alert_threshold)
    oldest_unacked_threshold      = tostring(var.oldest_unacked_alert_seconds)
  }
  alerting = jsondecode(templatefile("${path.module}/monitoring/alerting.json.tftpl", local.monitoring_vars))
}

resource "google_logging_metric" "worker_errors" {
  for_each = var.enable_monitoring ? { for m in local.alerting.logMetrics : m.name => m } : {}

  project     = var.project_id
  name        = each.value.name
  description = each.value.description
  filter      = each.value.filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_dashboard" "analytics" {
  count = var.enable_monitoring ? 1 : 0

  project = var.project_id
  # No ignore_changes: an edit made in the console is shown by the next plan and reverted,
  # so the template stays the single definition (the provider ignores the fields the API
  # adds, such as the etag).
  dashboard_json = templatefile("${path.module}/monitoring/dashboard.json.tftpl", local.monitoring_vars)

  depends_on = [google_project_service.apis]
}

# An email channel for the alerts when alert_email is set, beside notification_channels.
resource "google_monitoring_notification_channel" "email" {
  count = var.enable_monitoring && var.alert_email != "" ? 1 : 0

  project      = var.project_id
  display_name = "behavioral-analytics alerts (${var.alert_email})"
  type         = "email"
  labels = {
    email_address = var.alert_email
  }
  user_labels = local.labels
}

locals {
  alert_channels = concat(var.notification_channels, google_monitoring_notification_channel.email[*].name)
}

check "alerts_reach_someone" {
  assert {
    condition     = !var.enable_monitoring || length(local.alert_channels) > 0
    error_message = "The alert policies notify nobody: set alert_email or notification_channels."
  }
}

# Threshold policies on metrics, and the worker-errors policy as a log match: a policy on a
# logs-based metric created in the same apply can fail with 404 for several minutes while the
# metric propagates (terraform-provider-google issue 11102), a log match has no such metric.
resource "google_monitoring_alert_policy" "alerts" {
  for_each = var.enable_monitoring ? { for p in local.alerting.alertPolicies : p.key => p } : {}

  project               = var.project_id
  display_name          = each.value.displayName
  combiner              = "OR"
  notification_channels = local.alert_channels
  user_labels           = local.labels

  documentation {
    content   = each.value.documentation
    mime_type = "text/markdown"
  }

  conditions {
    display_name = each.value.displayName

    dynamic "condition_threshold" {
      for_each = contains(keys(each.value), "filter") ? [each.value] : []
      content {
        filter          = condition_threshold.value.filter
        comparison      = condition_threshold.value.comparison
        threshold_value = tonumber(condition_threshold.value.threshold)
        duration        = condition_threshold.value.duration

        aggregations {
          alignment_period   = condition_threshold.value.alignmentPeriod
          per_series_aligner = condition_threshold.value.perSeriesAligner
        }

        trigger {
          count = 1
        }
      }
    }

    dynamic "condition_matched_log" {
      for_each = contains(keys(each.value), "logFilter") ? [each.value] : []
      content {
        filter = condition_matched_log.value.logFilter
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"

    dynamic "notification_rate_limit" {
      for_each = contains(keys(each.value), "notificationRateLimit") ? [each.value] : []
      content {
        period = notification_rate_limit.value.notificationRateLimit
      }
    }
  }

  depends_on = [google_project_service.apis]
}

# The API answers: /readyz (reads the store and the topic; neither writes nor publishes),
# every 5 minutes from Google's checkers. Only for a public API (an unauthenticated check).
resource "google_monitoring_uptime_check_config" "api" {
  count = var.enable_monitoring && var.deploy_api && var.api_allow_unauthenticated ? 1 : 0

  project      = var.project_id
  display_name = "behavioral-analytics API /readyz (${var.api_service_name})"
  timeout      = "30s"
  period       = "300s"

  http_check {
    path         = "/readyz"
    port         = 443
    use_ssl      = true
    validate_ssl = true
  }

  monitored_resource {
    type = "uptime_url"
    labels = {
      project_id = var.project_id
      host       = trimprefix(google_cloud_run_v2_service.api[0].uri, "https://")
    }
  }
}

resource "google_monitoring_alert_policy" "api_uptime" {
  count = length(google_monitoring_uptime_check_config.api)

  project               = var.project_id
  display_name          = "behavioral-analytics: API ${var.api_service_name} not ready"
  combiner              = "OR"
  notification_channels = local.alert_channels
  user_labels           = local.labels

  documentation {
    content   = "The uptime check of ${var.api_service_name} (/readyz) failed for 10 minutes: the API is down, or cannot reach Firestore or Pub/Sub. Read its logs: gcloud logging read 'resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${var.api_service_name}\"' --limit=50"
    mime_type = "text/markdown"
  }

  conditions {
    display_name = "uptime check failing"

    condition_threshold {
      filter          = "metric.type=\"monitoring.googleapis.com/uptime_check/check_passed\" resource.type=\"uptime_url\" metric.label.\"check_id\"=\"${google_monitoring_uptime_check_config.api[0].uptime_check_id}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1
      duration        = "600s"

      aggregations {
        alignment_period     = "1200s"
        per_series_aligner   = "ALIGN_NEXT_OLDER"
        cross_series_reducer = "REDUCE_COUNT_FALSE"
        group_by_fields      = ["resource.label.host"]
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }
}
