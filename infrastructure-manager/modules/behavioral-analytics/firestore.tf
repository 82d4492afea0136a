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
  # - user_events.event_id, session_id, bot, ts, latency, call, id_kind: no query filters
  #   or orders on them (queries name person, who, user_id, anonymous_id, event_type and
  #   timestamp); their ascending and descending entries were about 1.2 KB of index storage
  #   per raw event (bench/firestore_writes.py, docs/gcp.md).
  # - breakdowns.admitted, .events, .users, .sessions and analytics_aggregates.breakdown_days:
  #   the breakdowns' dimensions and values (page paths, referrers, property values) as map
  #   keys and array items, up to K per dimension and a dozen per person and day; read by
  #   document id, never queried, so their per-key index entries would be paid for nothing.
  # - analytics_aggregates.minutes: an hour's minute counts (up to 60 minutes, each with its
  #   event types), read with the hour's document, never queried.
  # - every other field of analytics_aggregates (profiles, people and buckets) but
  #   first_seen, last_activity and linked_users, which retention, the active-user count and
  #   forget query, and period, which the recipe's readers query (`where('period', '>=', …)`,
  #   docs/gcp.md; a few bucket documents per hour, far from a sequential index's limit of
  #   about 500 writes/s): the documents are read by id, and their maps keyed by periods and event
  #   types (unique_hours, unique_days, events_by_type, funnel_progress) and their digests
  #   (recent, sessions: bytes, indexed up to 1,500 bytes each) made most of the index
  #   storage: about 1.2 KB per event on live traffic (bench/firestore_writes.py).
  firestore_field_overrides = {
    user_events_expire_at       = { collection = "user_events", field = "expire_at", ttl = true }
    user_events_timestamp       = { collection = "user_events", field = "timestamp", ttl = false }
    user_events_received_at     = { collection = "user_events", field = "received_at", ttl = false }
    user_events_processed_at    = { collection = "user_events", field = "processed_at", ttl = false }
    user_events_properties      = { collection = "user_events", field = "properties", ttl = false }
    user_events_event_id        = { collection = "user_events", field = "event_id", ttl = false }
    user_events_session_id      = { collection = "user_events", field = "session_id", ttl = false }
    user_events_bot             = { collection = "user_events", field = "bot", ttl = false }
    user_events_ts              = { collection = "user_events", field = "ts", ttl = false }
    user_events_latency         = { collection = "user_events", field = "latency", ttl = false }
    user_events_call            = { collection = "user_events", field = "call", ttl = false }
    user_events_id_kind         = { collection = "user_events", field = "id_kind", ttl = false }
    person_breakdown_days       = { collection = "analytics_aggregates", field = "breakdown_days", ttl = false }
    person_session_values       = { collection = "analytics_aggregates", field = "session_values", ttl = false }
    bucket_minutes              = { collection = "analytics_aggregates", field = "minutes", ttl = false }
    bucket_breakdowns           = { collection = "analytics_aggregates", field = "breakdowns", ttl = false }
    aggregates_events_by_type   = { collection = "analytics_aggregates", field = "events_by_type", ttl = false }
    aggregates_total_events     = { collection = "analytics_aggregates", field = "total_events", ttl = false }
    aggregates_unique_users     = { collection = "analytics_aggregates", field = "unique_users", ttl = false }
    aggregates_bot_events       = { collection = "analytics_aggregates", field = "bot_events", ttl = false }
    aggregates_sessions         = { collection = "analytics_aggregates", field = "sessions", ttl = false }
    aggregates_funnel_users     = { collection = "analytics_aggregates", field = "funnel_users", ttl = false }
    aggregates_granularity      = { collection = "analytics_aggregates", field = "granularity", ttl = false }
    aggregates_kind             = { collection = "analytics_aggregates", field = "kind", ttl = false }
    aggregates_user_id          = { collection = "analytics_aggregates", field = "user_id", ttl = false }
    aggregates_last_updated     = { collection = "analytics_aggregates", field = "last_updated", ttl = false }
    aggregates_recent           = { collection = "analytics_aggregates", field = "recent", ttl = false }
    aggregates_unique_days      = { collection = "analytics_aggregates", field = "unique_days", ttl = false }
    aggregates_unique_hours     = { collection = "analytics_aggregates", field = "unique_hours", ttl = false }
    aggregates_funnel_progress  = { collection = "analytics_aggregates", field = "funnel_progress", ttl = false }
    aggregates_links            = { collection = "analytics_aggregates", field = "links", ttl = false }
    aggregates_anonymous_events = { collection = "analytics_aggregates", field = "anonymous_events", ttl = false }
    aggregates_revision         = { collection = "analytics_aggregates", field = "revision", ttl = false }
    aggregates_forgotten_at     = { collection = "analytics_aggregates", field = "forgotten_at", ttl = false }
    breakdowns_admitted         = { collection = "breakdowns", field = "admitted", ttl = false }
    breakdowns_events           = { collection = "breakdowns", field = "events", ttl = false }
    breakdowns_users            = { collection = "breakdowns", field = "users", ttl = false }
    breakdowns_sessions         = { collection = "breakdowns", field = "sessions", ttl = false }
    dead_letters_expire_at      = { collection = "dead_letters", field = "expire_at", ttl = true }
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
