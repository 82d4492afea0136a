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

  project        = var.project_id
  dashboard_json = templatefile("${path.module}/monitoring/dashboard.json.tftpl", local.monitoring_vars)

  lifecycle {
    # The API adds defaults (etag, tile ids) to what was sent.
    ignore_changes = [dashboard_json]
  }

  depends_on = [google_project_service.apis]
}

resource "google_monitoring_alert_policy" "alerts" {
  for_each = var.enable_monitoring ? { for p in local.alerting.alertPolicies : p.key => p } : {}

  project               = var.project_id
  display_name          = each.value.displayName
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  documentation {
    content   = each.value.documentation
    mime_type = "text/markdown"
  }

  conditions {
    display_name = each.value.displayName

    condition_threshold {
      filter          = each.value.filter
      comparison      = each.value.comparison
      threshold_value = tonumber(each.value.threshold)
      duration        = each.value.duration

      aggregations {
        alignment_period   = each.value.alignmentPeriod
        per_series_aligner = each.value.perSeriesAligner
      }

      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  # The worker-errors policy needs its logs-based metric to exist first.
  depends_on = [google_logging_metric.worker_errors]
}
