# The seed's Infrastructure Manager inputs (names and defaults), then the few a deployment
# needs to change from the module's default: the image (second apply of a first
# deployment), where alerts go, and the two switches teardown and renames need. To change
# another setting, add a variable here (same definition as the module's) and pass it on in
# main.tf; tests/deploy checks the definitions agree.

variable "project_id" {
  description = "Google Cloud Project ID"
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project ID: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Deployment region"
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as us-central1."
  }
}

variable "worker_pool_name" {
  description = "Cloud Run Worker Pool name"
  type        = string
  default     = "behavioral-processor"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$", var.worker_pool_name))
    error_message = "worker_pool_name must be 1-49 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "firestore_database" {
  description = "Firestore database name"
  type        = string
  default     = "behavioral-analytics"

  validation {
    condition     = var.firestore_database == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore_database))
    error_message = "firestore_database must be 4-63 lowercase letters, digits or hyphens starting with a letter, or \"(default)\"."
  }
}

variable "max_instances" {
  description = "Maximum worker pool instances"
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances must be a whole number between 1 and 1000."
  }
}

# The worker pool runs min_instances instances; max_instances bounds the autoscaler, which
# only runs with enable_autoscaling.
variable "min_instances" {
  description = "Minimum worker pool instances (the manual instance count when autoscaling is off)"
  type        = number
  default     = 1

  validation {
    condition     = var.min_instances >= 0 && var.min_instances <= 1000 && floor(var.min_instances) == var.min_instances
    error_message = "min_instances must be a whole number between 0 and 1000 (and not above max_instances)."
  }
}

variable "enable_autoscaling" {
  description = "Deploy CREMA (Cloud Run External Metrics Autoscaler, on KEDA) to scale the worker pool between min_instances and max_instances on the subscription backlog. Off: the worker pool runs exactly min_instances instances."
  type        = bool
  default     = false
}

variable "memory_limit" {
  description = "Memory limit per instance"
  type        = string
  default     = "1Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory_limit))
    error_message = "memory_limit must be a quantity such as 512Mi or 1Gi."
  }
}

# ---------------------------------------------------------------------------
# Beyond the seed's inputs.
# ---------------------------------------------------------------------------

variable "container_image" {
  description = "Container image of the worker and the API, e.g. REGION-docker.pkg.dev/PROJECT_ID/behavioral-analytics/processor:latest once built (docs/deploy.md). Empty (the first apply, before the repository exists) runs Google's public placeholder container instead, and so does any later apply without it: the workers stop processing. Keep it in terraform.tfvars (Infrastructure Manager: the --inputs-file) so that every apply carries it."
  type        = string
  default     = ""

  validation {
    condition     = var.container_image == "" || can(regex("^[a-z0-9.-]+(:[0-9]+)?/.+", var.container_image))
    error_message = "container_image must be empty or a full image reference such as us-central1-docker.pkg.dev/p/behavioral-analytics/processor:latest."
  }
}

variable "alert_email" {
  description = "Email address the alert policies notify (a notification channel is created); notification_channels adds existing channels."
  type        = string
  default     = ""

  validation {
    condition     = var.alert_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alert_email))
    error_message = "alert_email must be empty or an email address."
  }
}

variable "firestore_delete_protection" {
  description = "Delete protection of the Firestore database. Turn it off (and apply) before a destroy that should delete the data."
  type        = bool
  default     = true
}

variable "allow_subscription_replacement" {
  description = "Allow a change that replaces the events subscription (topic or subscription name, message_ordering), losing its undelivered messages. Drain it first; set back to false after the apply."
  type        = bool
  default     = false
}
