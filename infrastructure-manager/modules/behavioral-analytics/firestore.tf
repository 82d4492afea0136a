# ---------------------------------------------------------------------------
# Firestore (Native mode) database, indexes, TTL policies and index exemptions.
# The same indexes and field overrides are listed, in the Firebase CLI format,
# in firestore.indexes.json at the repository root (used by scripts/deploy.sh);
# tests/deploy checks that the two agree.
# ---------------------------------------------------------------------------
resource "google_firestore_database" "analytics" {
  project     = var.project_id
  name        = var.firestore_database
  location_id = local.firestore_location
  type        = "FIRESTORE_NATIVE"

  concurrency_mode                  = "OPTIMISTIC"
  app_engine_integration_mode       = "DISABLED"
  point_in_time_recovery_enablement = var.firestore_point_in_time_recovery ? "POINT_IN_TIME_RECOVERY_ENABLED" : "POINT_IN_TIME_RECOVERY_DISABLED"
  delete_protection_state           = var.firestore_delete_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  # `terraform destroy` deletes the database once delete protection is off;
  # while it is on, the destroy stops at the database and keeps the data.
  deletion_policy = "DELETE"

  depends_on = [google_project_service.apis]
}

locals {
  # Composite indexes the query API needs: a user's timeline and the events of a type,
  # newest first.
  firestore_composite_indexes = {
    user_events_by_user = {
      collection = "user_events"
      fields = [
        { field_path = "user_id", order = "ASCENDING" },
        { field_path = "timestamp", order = "DESCENDING" },
      ]
    }
    user_events_by_type = {
      collection = "user_events"
      fields = [
        { field_path = "event_type", order = "ASCENDING" },
        { field_path = "timestamp", order = "DESCENDING" },
      ]
    }
    # Anonymous visitors' timelines (`who` = "anonymous:<id>"; they have no user_id).
    user_events_by_actor = {
      collection = "user_events"
      fields = [
        { field_path = "who", order = "ASCENDING" },
        { field_path = "timestamp", order = "DESCENDING" },
      ]
    }
    # Sessions and funnels: a person's events over a time range, read around each flush's
    # new events to recompute the derivation (person = who the event counts for).
    user_events_by_person = {
      collection = "user_events"
      fields = [
        { field_path = "person", order = "ASCENDING" },
        { field_path = "timestamp", order = "ASCENDING" },
      ]
    }
    # A person's timeline, newest first: their own events and the anonymous ones an
    # identity link gives them.
    user_events_by_person_newest = {
      collection = "user_events"
      fields = [
        { field_path = "person", order = "ASCENDING" },
        { field_path = "timestamp", order = "DESCENDING" },
      ]
    }
  }

  # Single-field overrides. ttl = true adds a TTL policy on the field; every entry
  # here also turns the field's automatic single-field indexes off, because:
  # - expire_at (user_events, dead_letters, delivery_failures): the TTL field is never
  #   queried and its values grow monotonically, so an index on it would only
  #   hot-spot writes (Firestore advises exempting TTL timestamp fields).
  # - user_events.timestamp, received_at, processed_at: sequential values; a
  #   single-field index on them caps the collection near 500 writes/s. Timelines
  #   and per-type queries go through the composite indexes above; a scan of the
  #   whole collection (verify) goes by document id, which needs no index.
  # - user_events.properties: a map of arbitrary client keys; indexing each
  #   sub-field costs index entries and writes for queries nobody makes.
  # - breakdowns.admitted, .events, .users, .sessions and analytics_aggregates.breakdown_days:
  #   the breakdowns' dimensions and values (page paths, referrers, property values) as map
  #   keys and array items, up to K per dimension and a dozen per person and day; read by
  #   document id, never queried, so their per-key index entries would be paid for nothing.
  # - analytics_aggregates.minutes: an hour's minute counts (up to 60 minutes, each with its
  #   event types), read with the hour's document, never queried.
  firestore_field_overrides = {
    user_events_expire_at    = { collection = "user_events", field = "expire_at", ttl = true }
    user_events_timestamp    = { collection = "user_events", field = "timestamp", ttl = false }
    user_events_received_at  = { collection = "user_events", field = "received_at", ttl = false }
    user_events_processed_at = { collection = "user_events", field = "processed_at", ttl = false }
    user_events_properties   = { collection = "user_events", field = "properties", ttl = false }
    person_breakdown_days    = { collection = "analytics_aggregates", field = "breakdown_days", ttl = false }
    person_session_values    = { collection = "analytics_aggregates", field = "session_values", ttl = false }
    bucket_minutes           = { collection = "analytics_aggregates", field = "minutes", ttl = false }
    breakdowns_admitted      = { collection = "breakdowns", field = "admitted", ttl = false }
    breakdowns_events        = { collection = "breakdowns", field = "events", ttl = false }
    breakdowns_users         = { collection = "breakdowns", field = "users", ttl = false }
    breakdowns_sessions      = { collection = "breakdowns", field = "sessions", ttl = false }
    dead_letters_expire_at   = { collection = "dead_letters", field = "expire_at", ttl = true }
    # The Pub/Sub broker's per-message failure reasons (brokers/failure_log.py): written on
    # each failed delivery, read when the message is dead-lettered, kept past the
    # subscription's retention, then deleted by this TTL.
    delivery_failures_expire_at = { collection = "delivery_failures", field = "expire_at", ttl = true }
  }
}

resource "google_firestore_index" "composite" {
  for_each = local.firestore_composite_indexes

  project     = var.project_id
  database    = google_firestore_database.analytics.name
  collection  = each.value.collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value.field_path
      order      = fields.value.order
    }
  }
}

resource "google_firestore_field" "overrides" {
  for_each = local.firestore_field_overrides

  project    = var.project_id
  database   = google_firestore_database.analytics.name
  collection = each.value.collection
  field      = each.value.field

  # An empty index_config removes the field's automatic single-field indexes.
  index_config {}

  dynamic "ttl_config" {
    for_each = each.value.ttl ? [1] : []
    content {}
  }
}

# ---------------------------------------------------------------------------
# Daily backups, kept firestore_backup_retention_days (at most 7 for a daily schedule);
# 0 turns them off. Billed as backup storage (per GiB-month of each backup kept) and, on a
# restore, per GiB restored: see docs/deploy.md ("Backups").
# ---------------------------------------------------------------------------
resource "google_firestore_backup_schedule" "daily" {
  count = var.firestore_backup_retention_days > 0 ? 1 : 0

  project   = var.project_id
  database  = google_firestore_database.analytics.name
  retention = "${var.firestore_backup_retention_days * 86400}s"

  daily_recurrence {}
}
