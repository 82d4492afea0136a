# Same variables, types, defaults and validations as the module it calls
# (../infrastructure-manager/modules/behavioral-analytics/variables.tf); tests/deploy checks
# that the two files agree. The first twelve are the seed's Terraform table.

# ---------------------------------------------------------------------------
# The seed's Terraform variables: same names, types and defaults.
# ---------------------------------------------------------------------------

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

variable "zone" {
  description = "Deployment zone (the provider's default zone; nothing here is zonal)"
  type        = string
  default     = "us-central1-a"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+-[a-z]$", var.zone))
    error_message = "zone must be a Google Cloud zone such as us-central1-a."
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

variable "pubsub_topic_name" {
  description = "Pub/Sub topic name"
  type        = string
  default     = "user-events"

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9._~%+-]{2,234}$", var.pubsub_topic_name)) && !startswith(lower(var.pubsub_topic_name), "goog")
    error_message = "pubsub_topic_name must be 3-235 characters, start with a letter and not start with \"goog\"."
  }
}

variable "subscription_name" {
  description = "Pub/Sub subscription name"
  type        = string
  default     = "analytics-processor"

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9._~%+-]{2,234}$", var.subscription_name)) && !startswith(lower(var.subscription_name), "goog")
    error_message = "subscription_name must be 3-235 characters, start with a letter and not start with \"goog\"."
  }
}

variable "max_instances" {
  description = "Maximum worker pool instances (the autoscaler's upper bound)"
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances must be a whole number between 1 and 1000."
  }
}

variable "min_instances" {
  description = "Minimum worker pool instances (the manual instance count when autoscaling is off)"
  type        = number
  default     = 1

  validation {
    condition     = var.min_instances >= 0 && var.min_instances <= 1000 && floor(var.min_instances) == var.min_instances
    error_message = "min_instances must be a whole number between 0 and 1000 (and not above max_instances)."
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

variable "cpu_limit" {
  description = "CPU limit per instance"
  type        = string
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.cpu_limit)
    error_message = "cpu_limit must be one of 1, 2, 4, 6 or 8 (the values Cloud Run worker pools accept)."
  }
}

variable "enable_monitoring" {
  description = "Enable Cloud Monitoring dashboard"
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------
# What the system needs beyond the seed's table.
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

variable "labels" {
  description = "Labels added to every resource that takes labels."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))])
    error_message = "labels keys must start with a lowercase letter; keys and values use lowercase letters, digits, _ and - (at most 63 characters)."
  }
}

variable "message_ordering" {
  description = "Enable Pub/Sub message ordering on the subscription. Aggregation does not depend on order, and with ordering on the subscriber holds a key's next message until the previous one is acked; leave off unless you know why."
  type        = bool
  default     = false
}

variable "max_delivery_attempts" {
  description = "Delivery attempts before Pub/Sub moves a message to the dead-letter topic (BA_MAX_DELIVERY_ATTEMPTS)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be a whole number between 5 and 100 (Pub/Sub's range)."
  }
}

variable "raw_retention_days" {
  description = "Days raw events (user_events) are kept before the TTL policy deletes them (BA_RAW_RETENTION_DAYS). They are the dedupe memory, so they must outlive the subscription's 7-day retention plus a replay window."
  type        = number
  default     = 30

  validation {
    condition     = var.raw_retention_days >= 14 && var.raw_retention_days <= 3650 && floor(var.raw_retention_days) == var.raw_retention_days
    error_message = "raw_retention_days must be a whole number of at least 14: 7 days of subscription retention plus at least a 7-day replay window."
  }
}

variable "flush_interval_seconds" {
  description = "Seconds a worker folds events into one commit (BA_FLUSH_INTERVAL). Longer means fewer paid aggregate writes and staler numbers."
  type        = number
  default     = 1

  validation {
    condition     = var.flush_interval_seconds > 0 && var.flush_interval_seconds <= 50
    error_message = "flush_interval_seconds must be above 0 and at most 50 (it must stay well below the 60 s ack deadline)."
  }
}

variable "firestore_counter_shards" {
  description = "Shard documents per hour and day bucket (BA_FIRESTORE_COUNTER_SHARDS, on the worker pool and the API): 0 keeps single documents; past one worker per second of flush interval, at least workers / flush_interval_seconds (docs/gcp.md, \"Hot documents and counter shards\"). Can be changed at any time: reads sum the single document and every shard."
  type        = number
  default     = 0

  validation {
    condition     = var.firestore_counter_shards >= 0 && var.firestore_counter_shards <= 100 && floor(var.firestore_counter_shards) == var.firestore_counter_shards
    error_message = "firestore_counter_shards must be a whole number from 0 to 100."
  }
}

variable "timezone" {
  description = "Reporting time zone of the hourly and daily buckets (IANA name, BA_TIMEZONE)."
  type        = string
  default     = "UTC"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$", var.timezone))
    error_message = "timezone must be an IANA time zone name such as UTC or Europe/Paris."
  }

  # Names the zone database's folder holds that the worker refuses as a reporting zone
  # (time_zones.timezone_problem): localtime is each machine's own zone; posixrules,
  # leapseconds and the right/ and posix/ copies are no zones of zoneinfo.available_timezones().
  validation {
    condition     = !contains(["localtime", "posixrules", "leapseconds"], var.timezone) && !startswith(var.timezone, "right/") && !startswith(var.timezone, "posix/")
    error_message = "timezone must name an IANA time zone such as UTC or Europe/Paris: localtime (each machine's own zone), posixrules, leapseconds and the right/ and posix/ variants are refused by the worker."
  }
}

variable "metrics_exporter" {
  description = "Where the worker sends its metrics (BA_METRICS_EXPORTER)."
  type        = string
  default     = "cloud-monitoring"

  validation {
    condition     = contains(["cloud-monitoring", "none"], var.metrics_exporter)
    error_message = "metrics_exporter must be cloud-monitoring or none."
  }
}

variable "firestore_location" {
  description = "Firestore location; empty means the region. A multi-region such as nam5 or eur3 is also accepted."
  type        = string
  default     = ""

  validation {
    condition     = var.firestore_location == "" || can(regex("^[a-z0-9-]+$", var.firestore_location))
    error_message = "firestore_location must be empty, a region (us-central1) or a multi-region (nam5, eur3)."
  }
}

variable "firestore_delete_protection" {
  description = "Delete protection of the Firestore database. Turn it off (and apply) before a destroy that should delete the data."
  type        = bool
  default     = true
}

variable "firestore_point_in_time_recovery" {
  description = "Point-in-time recovery (7 days of versions, billed as storage) on the Firestore database."
  type        = bool
  default     = false
}

variable "cloud_run_deletion_protection" {
  description = "Terraform-side deletion protection of the worker pool and the API service."
  type        = bool
  default     = false
}

variable "enable_autoscaling" {
  description = "Deploy CREMA (Cloud Run External Metrics Autoscaler, on KEDA) to scale the worker pool between min_instances and max_instances on the subscription backlog. Off: the worker pool runs exactly min_instances instances."
  type        = bool
  default     = false
}

variable "autoscaling_target_backlog_per_instance" {
  description = "Undelivered messages per worker instance the autoscaler aims for (the gcp-pubsub scaler's value)."
  type        = number
  default     = 1000

  validation {
    condition     = var.autoscaling_target_backlog_per_instance >= 1
    error_message = "autoscaling_target_backlog_per_instance must be at least 1."
  }
}

variable "autoscaling_polling_interval_seconds" {
  description = "Seconds between two autoscaler decisions."
  type        = number
  default     = 30

  validation {
    condition     = var.autoscaling_polling_interval_seconds >= 10 && var.autoscaling_polling_interval_seconds <= 600
    error_message = "autoscaling_polling_interval_seconds must be between 10 and 600."
  }
}

variable "crema_image" {
  description = "CREMA autoscaler image published by Google (1.2: the tag its README prefers; 1.0 is a legacy release with a known memory leak)."
  type        = string
  default     = "us-central1-docker.pkg.dev/cloud-run-oss-images/crema-v1/autoscaler:1.2"
}

variable "crema_base_image" {
  description = "Runtime base image of the CREMA image (which is built FROM scratch for automatic base image updates)."
  type        = string
  default     = "us-central1-docker.pkg.dev/serverless-runtimes/google-24/runtimes/java25"
}

variable "deploy_api" {
  description = "Deploy the HTTP collector and query API (behavioral-analytics api) as a Cloud Run service."
  type        = bool
  default     = true
}

variable "api_service_name" {
  description = "Cloud Run service name of the collector and query API."
  type        = string
  default     = "behavioral-analytics-api"

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$", var.api_service_name))
    error_message = "api_service_name must be 1-49 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "api_allow_unauthenticated" {
  description = "Let anyone reach the API's URL (apps send events from browsers and phones); requests are still checked against the write and read keys."
  type        = bool
  default     = true
}

variable "api_cors_origins" {
  description = "Origins of the web pages that send events from the browser (BA_CORS_ORIGINS), e.g. [\"https://www.example.com\"], or [\"*\"] for any; empty: no CORS headers, so browsers cannot call the API."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for origin in var.api_cors_origins : origin == "*" || can(regex("^https?://[^/,\\s]+$", origin))])
    error_message = "api_cors_origins: each origin is scheme://host[:port] (no path, no comma) or \"*\"."
  }
}

variable "api_max_instances" {
  description = "Maximum instances of the API service."
  type        = number
  default     = 10

  validation {
    condition     = var.api_max_instances >= 1 && var.api_max_instances <= 1000
    error_message = "api_max_instances must be between 1 and 1000."
  }
}

variable "api_write_keys_secret_id" {
  description = "Secret Manager secret holding BA_WRITE_KEYS (comma-separated keys accepted by the collector). Created with one random key."
  type        = string
  default     = "behavioral-analytics-write-keys"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,255}$", var.api_write_keys_secret_id))
    error_message = "api_write_keys_secret_id must be 1-255 letters, digits, _ or -."
  }
}

variable "api_read_keys_secret_id" {
  description = "Secret Manager secret holding BA_READ_KEYS (comma-separated keys accepted by the query API). Created with one random key."
  type        = string
  default     = "behavioral-analytics-read-keys"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,255}$", var.api_read_keys_secret_id))
    error_message = "api_read_keys_secret_id must be 1-255 letters, digits, _ or -."
  }
}

variable "hashed_fields" {
  description = "Property paths the worker replaces with their HMAC-SHA256 at ingestion (BA_HASHED_FIELDS), such as [\"email\", \"context.traits.email\"]. When not empty, the key (BA_HASH_SALT) is read from the Secret Manager secret hash_salt_secret_id, created with one random value."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for path in var.hashed_fields : can(regex("^[^,[:space:]]+$", path))])
    error_message = "hashed_fields: each path must be non-empty, without commas or spaces."
  }
}

variable "hash_salt_secret_id" {
  description = "Secret Manager secret holding BA_HASH_SALT, the HMAC key of hashed_fields (used only when hashed_fields is not empty). Created with one random 40-character value; keep it: another key hashes the same value differently."
  type        = string
  default     = "behavioral-analytics-hash-salt"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,255}$", var.hash_salt_secret_id))
    error_message = "hash_salt_secret_id must be 1-255 letters, digits, _ or -."
  }
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) the alert policies notify."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "notification_channels must be full ids such as projects/my-project/notificationChannels/123."
  }
}

variable "backlog_alert_threshold" {
  description = "Undelivered messages on the subscription that raise the backlog alert (after 10 minutes)."
  type        = number
  default     = 10000

  validation {
    condition     = var.backlog_alert_threshold >= 1
    error_message = "backlog_alert_threshold must be at least 1."
  }
}

variable "oldest_unacked_alert_seconds" {
  description = "Age in seconds of the oldest unacked message that raises the lag alert."
  type        = number
  default     = 600

  validation {
    condition     = var.oldest_unacked_alert_seconds >= 60
    error_message = "oldest_unacked_alert_seconds must be at least 60."
  }
}

variable "allow_subscription_replacement" {
  description = "Allow a change that replaces the events subscription (topic or subscription name, message_ordering), losing its undelivered messages. Drain it first; set back to false after the apply."
  type        = bool
  default     = false
}

variable "firestore_backup_retention_days" {
  description = "Days each daily Firestore backup is kept (1-7); 0 turns the backup schedule off. Billed as backup storage, see docs/deploy.md."
  type        = number
  default     = 7

  validation {
    condition     = var.firestore_backup_retention_days >= 0 && var.firestore_backup_retention_days <= 7 && floor(var.firestore_backup_retention_days) == var.firestore_backup_retention_days
    error_message = "firestore_backup_retention_days must be a whole number from 0 (off) to 7 (Firestore's limit for daily backups)."
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
