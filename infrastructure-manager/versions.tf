terraform {
  # Infrastructure Manager runs Terraform 1.5.7; the Terraform CLI 1.5 or later works too.
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
