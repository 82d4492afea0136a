# Root module for the Terraform CLI:
#   cd terraform && terraform init && terraform apply -var="project_id=YOUR_PROJECT_ID"
# Every resource is defined once, in ../infrastructure-manager/modules/behavioral-analytics,
# which the Infrastructure Manager root module calls too (see ../infrastructure-manager/README.md).

provider "google" {
  project = var.project_id
  region  = var.region
  zone    = var.zone
}

module "behavioral_analytics" {
  source = "../infrastructure-manager/modules/behavioral-analytics"

  project_id                              = var.project_id
  region                                  = var.region
  zone                                    = var.zone
  worker_pool_name                        = var.worker_pool_name
  firestore_database                      = var.firestore_database
  pubsub_topic_name                       = var.pubsub_topic_name
  subscription_name                       = var.subscription_name
  max_instances                           = var.max_instances
  min_instances                           = var.min_instances
  memory_limit                            = var.memory_limit
  cpu_limit                               = var.cpu_limit
  enable_monitoring                       = var.enable_monitoring
  container_image                         = var.container_image
  labels                                  = var.labels
  message_ordering                        = var.message_ordering
  max_delivery_attempts                   = var.max_delivery_attempts
  raw_retention_days                      = var.raw_retention_days
  flush_interval_seconds                  = var.flush_interval_seconds
  firestore_counter_shards                = var.firestore_counter_shards
  timezone                                = var.timezone
  metrics_exporter                        = var.metrics_exporter
  firestore_location                      = var.firestore_location
  firestore_delete_protection             = var.firestore_delete_protection
  firestore_point_in_time_recovery        = var.firestore_point_in_time_recovery
  cloud_run_deletion_protection           = var.cloud_run_deletion_protection
  enable_autoscaling                      = var.enable_autoscaling
  autoscaling_target_backlog_per_instance = var.autoscaling_target_backlog_per_instance
  autoscaling_polling_interval_seconds    = var.autoscaling_polling_interval_seconds
  crema_image                             = var.crema_image
  crema_base_image                        = var.crema_base_image
  deploy_api                              = var.deploy_api
  api_service_name                        = var.api_service_name
  api_allow_unauthenticated               = var.api_allow_unauthenticated
  api_max_instances                       = var.api_max_instances
  api_cors_origins                        = var.api_cors_origins
  api_write_keys_secret_id                = var.api_write_keys_secret_id
  api_read_keys_secret_id                 = var.api_read_keys_secret_id
  hashed_fields                           = var.hashed_fields
  hash_salt_secret_id                     = var.hash_salt_secret_id
  notification_channels                   = var.notification_channels
  backlog_alert_threshold                 = var.backlog_alert_threshold
  oldest_unacked_alert_seconds            = var.oldest_unacked_alert_seconds
  allow_subscription_replacement          = var.allow_subscription_replacement
  firestore_backup_retention_days         = var.firestore_backup_retention_days
  alert_email                             = var.alert_email
}
