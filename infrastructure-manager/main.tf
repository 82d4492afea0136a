# Root module for Google Cloud Infrastructure Manager
# (gcloud infra-manager deployments apply ... --local-source=infrastructure-manager
#  or --git-source-directory=infrastructure-manager). See README.md.
#
# The module lives inside this folder on purpose: --local-source uploads only this
# folder, so a module path outside it (../terraform) would not travel with it.

provider "google" {
  project = var.project_id
  region  = var.region
}

module "behavioral_analytics" {
  source = "./modules/behavioral-analytics"

  project_id         = var.project_id
  region             = var.region
  worker_pool_name   = var.worker_pool_name
  firestore_database = var.firestore_database
  max_instances      = var.max_instances
  min_instances      = var.min_instances
  enable_autoscaling = var.enable_autoscaling
  memory_limit       = var.memory_limit

  container_image                = var.container_image
  alert_email                    = var.alert_email
  firestore_delete_protection    = var.firestore_delete_protection
  allow_subscription_replacement = var.allow_subscription_replacement
}
