# ---------------------------------------------------------------------------
# The worker pool: `behavioral-analytics worker` (the image's default command)
# pulling from the subscription and committing to Firestore.
#
# Scaling. Cloud Run worker pools do not autoscale by themselves:
# - enable_autoscaling = false (default): a manual instance count of
#   min_instances, billed whether busy or idle.
# - enable_autoscaling = true: CREMA (autoscaling.tf) polls the subscription's
#   backlog every autoscaling_polling_interval_seconds and sets the manual
#   instance count between min_instances and max_instances. A later
#   `terraform apply` resets the count to min_instances until CREMA's next poll.
# ---------------------------------------------------------------------------
# The pair of limits Cloud Run takes, checked at plan time (instance-limits/main.tf).
module "worker_limits" {
  source = "./instance-limits"

  cpu    = var.cpu_limit
  memory = var.memory_limit
}

resource "google_cloud_run_v2_worker_pool" "worker" {
  project             = var.project_id
  name                = var.worker_pool_name
  location            = var.region
  launch_stage        = "BETA"
  deletion_protection = var.cloud_run_deletion_protection
  labels              = local.labels

  scaling {
    manual_instance_count = var.min_instances
  }

  template {
    service_account = google_service_account.worker.email
    labels          = local.labels

    containers {
      name  = "worker"
      image = local.image

      resources {
        limits = module.worker_limits.limits
      }

      dynamic "env" {
        for_each = local.worker_env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.worker_secrets
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

  instance_splits {
    type    = "INSTANCE_SPLIT_ALLOCATION_TYPE_LATEST"
    percent = 100
  }

  lifecycle {
    # The API reports the launch stage actually used, which may differ from the input.
    ignore_changes = [launch_stage]
  }

  # The index exemptions before the workers that write the exempted fields: a bucket's
  # breakdowns indexed could pass Firestore's 40,000 index entries per document.
  depends_on = [
    google_project_iam_member.worker,
    google_pubsub_subscription_iam_member.worker_subscriber,
    google_secret_manager_secret_iam_member.generated_accessor,
    google_secret_manager_secret_version.generated,
    google_firestore_index.composite,
    google_firestore_field.overrides,
  ]
}
