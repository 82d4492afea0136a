# The seed's Infrastructure Manager inputs (names and defaults). Every other
# setting keeps the module's default; to change one, add a variable here and
# pass it on in main.tf.

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

variable "memory_limit" {
  description = "Memory limit per instance"
  type        = string
  default     = "1Gi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory_limit))
    error_message = "memory_limit must be a quantity such as 512Mi or 1Gi."
  }
}
