# ---------------------------------------------------------------------------
# Pub/Sub: events topic and subscription, dead-letter topic and subscription.
# ---------------------------------------------------------------------------
resource "google_pubsub_topic" "events" {
  #checkov:skip=CKV_GCP_83:Events are encrypted at rest with Google-managed keys; CMEK is an organisation policy choice, not a default.
  project = var.project_id
  name    = var.pubsub_topic_name
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Same as the events topic: Google-managed encryption.
  project = var.project_id
  name    = local.dead_letter_topic_name
  labels  = local.labels

  depends_on = [google_project_service.apis]
}

# Changing the topic or subscription name, or message ordering (ForceNew), replaces the
# subscription and loses its backlog: refused unless allow_subscription_replacement.
module "subscription_guard" {
  source = "./replacement-guard"

  identity = {
    topic            = var.pubsub_topic_name
    subscription     = var.subscription_name
    message_ordering = tostring(var.message_ordering)
  }
  allow = var.allow_subscription_replacement
  what  = "the Pub/Sub subscription ${var.subscription_name}"
}

resource "google_pubsub_subscription" "events" {
  project = var.project_id
  name    = module.subscription_guard.identity["subscription"]
  topic   = google_pubsub_topic.events.id
  labels  = local.labels

  # A batch is flushed every BA_FLUSH_INTERVAL seconds and the client extends
  # leases; 60 s leaves room for a slow commit without early redelivery.
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s" # 7 days: the replay window raw-event retention must exceed
  retain_acked_messages      = false
  enable_message_ordering    = var.message_ordering

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  expiration_policy {
    ttl = "" # never expire, even after a long idle period
  }

  # Dead-lettering only works once the service agent may publish and subscribe.
  depends_on = [google_pubsub_topic_iam_member.dead_letter_publisher_service_agent]
}

resource "google_pubsub_subscription" "dead_letter" {
  project = var.project_id
  name    = local.dead_letter_subscription_name
  topic   = google_pubsub_topic.dead_letter.id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }
}

# The Pub/Sub service agent's rights for dead-lettering.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher_service_agent" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_service_agent
}

resource "google_pubsub_subscription_iam_member" "source_subscriber_service_agent" {
  project      = var.project_id
  subscription = google_pubsub_subscription.events.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# The worker: subscriber on its own subscription (not the project), and on the
# dead-letter subscription so that it can record poison messages, with the last
# failure reason, in the store's dead_letters collection.
resource "google_pubsub_subscription_iam_member" "worker_subscriber" {
  for_each = {
    events      = google_pubsub_subscription.events.name
    dead_letter = google_pubsub_subscription.dead_letter.name
  }

  project      = var.project_id
  subscription = each.value
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.worker.member
}

# The API publishes collected events to the topic, nothing else.
resource "google_pubsub_topic_iam_member" "api_publisher" {
  count = var.deploy_api ? 1 : 0

  project = var.project_id
  topic   = google_pubsub_topic.events.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.api[0].member
}
