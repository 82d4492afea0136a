output "worker_pool" {
  description = "Full name of the worker pool."
  value       = google_cloud_run_v2_worker_pool.worker.id
}

output "worker_service_account" {
  description = "Email of the worker's service account."
  value       = google_service_account.worker.email
}

output "container_image" {
  description = "Image the worker pool and the API run."
  value       = local.image
}

output "artifact_registry_repository" {
  description = "Docker repository for the image."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "pubsub_topic" {
  description = "Topic the apps (or the API) publish events to."
  value       = google_pubsub_topic.events.id
}

output "pubsub_subscription" {
  description = "Subscription the worker pool pulls from."
  value       = google_pubsub_subscription.events.id
}

output "dead_letter_topic" {
  description = "Topic Pub/Sub moves poison messages to."
  value       = google_pubsub_topic.dead_letter.id
}

output "dead_letter_subscription" {
  description = "Subscription on the dead-letter topic."
  value       = google_pubsub_subscription.dead_letter.id
}

output "firestore_database" {
  description = "Firestore database id."
  value       = google_firestore_database.analytics.name
}

output "api_url" {
  description = "URL of the collector and query API (empty when deploy_api is false)."
  value       = var.deploy_api ? google_cloud_run_v2_service.api[0].uri : ""
}

output "api_key_secrets" {
  description = "Secret Manager secrets holding the API's write and read keys (read one with: gcloud secrets versions access latest --secret=ID)."
  value       = { for k in keys(local.api_secrets) : k => google_secret_manager_secret.generated[k].secret_id }
}

output "autoscaler_service" {
  description = "CREMA autoscaler service (empty when enable_autoscaling is false)."
  value       = var.enable_autoscaling ? google_cloud_run_v2_service.autoscaler[0].id : ""
}

output "dashboard" {
  description = "Cloud Monitoring dashboard id (empty when enable_monitoring is false)."
  value       = var.enable_monitoring ? google_monitoring_dashboard.analytics[0].id : ""
}

output "alert_policies" {
  description = "Alert policy ids by key."
  value       = { for k, p in google_monitoring_alert_policy.alerts : k => p.name }
}
