output "worker_pool" {
  description = "Full name of the worker pool."
  value       = module.behavioral_analytics.worker_pool
}

output "worker_service_account" {
  description = "Email of the worker's service account."
  value       = module.behavioral_analytics.worker_service_account
}

output "container_image" {
  description = "Image the worker pool and the API run."
  value       = module.behavioral_analytics.container_image
}

output "artifact_registry_repository" {
  description = "Docker repository for the image."
  value       = module.behavioral_analytics.artifact_registry_repository
}

output "pubsub_topic" {
  description = "Topic the apps (or the API) publish events to."
  value       = module.behavioral_analytics.pubsub_topic
}

output "pubsub_subscription" {
  description = "Subscription the worker pool pulls from."
  value       = module.behavioral_analytics.pubsub_subscription
}

output "dead_letter_topic" {
  description = "Topic Pub/Sub moves poison messages to."
  value       = module.behavioral_analytics.dead_letter_topic
}

output "dead_letter_subscription" {
  description = "Subscription on the dead-letter topic."
  value       = module.behavioral_analytics.dead_letter_subscription
}

output "firestore_database" {
  description = "Firestore database id."
  value       = module.behavioral_analytics.firestore_database
}

output "api_url" {
  description = "URL of the collector and query API (empty when deploy_api is false)."
  value       = module.behavioral_analytics.api_url
}

output "api_key_secrets" {
  description = "Secret Manager secrets holding the API's write and read keys (read one with: gcloud secrets versions access latest --secret=ID)."
  value       = module.behavioral_analytics.api_key_secrets
}

output "autoscaler_service" {
  description = "CREMA autoscaler service (empty when enable_autoscaling is false)."
  value       = module.behavioral_analytics.autoscaler_service
}

output "dashboard" {
  description = "Cloud Monitoring dashboard id (empty when enable_monitoring is false)."
  value       = module.behavioral_analytics.dashboard
}

output "alert_policies" {
  description = "Alert policy ids by key."
  value       = module.behavioral_analytics.alert_policies
}
