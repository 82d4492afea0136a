# The single definition of every Google Cloud resource of behavioral-analytics.
# Called by the Terraform CLI root module (terraform/) and by the Infrastructure
# Manager root module (infrastructure-manager/); see infrastructure-manager/README.md
# for why it lives under infrastructure-manager/.
terraform {
  # Infrastructure Manager runs Terraform 1.5.7: no feature newer than 1.5 is used
  # (in particular, no validation block refers to another variable).
  required_version = ">= 1.5.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 7.18.0 is the floor: google_cloud_run_v2_worker_pool drops manual_instance_count = 0
      # before 6.47.0 and shows a scaling_mode diff on every plan before 7.18.0. Every
      # resource type used here was checked against the 7.0.0 upgrade guide (docs/deploy.md,
      # "Provider versions").
      version = ">= 7.18.0, < 8.0.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5.0, < 4.0.0"
    }
  }
}
