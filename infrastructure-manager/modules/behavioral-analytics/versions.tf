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
      # google_cloud_run_v2_worker_pool first shipped in 6.38.0.
      version = ">= 6.38.0, < 8.0.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5.0, < 4.0.0"
    }
  }
}
