"""The Firestore store's layout: collections, document and field names, and the limits it
keeps under.

Collections, in the seed recipe's layout:

  user_events/{event key}                 canonical event, TTL field `expire_at`
  analytics_aggregates/user_{who}         profile (kind=user) with its unique-user markers;
                                          an anonymous actor's also holds its identity links
                                          (kind=person when no event counts for it)
  analytics_aggregates/hourly_|daily_{period}   buckets (kind=bucket); an hour's holds its
                                          minutes (`minutes`); `minute_{period}` documents
                                          of an earlier layout are still read; both hold
                                          the period's breakdowns (`breakdowns`)
  analytics_aggregates/…{period}_shard{k} counter shards of a bucket (BA_FIRESTORE_COUNTER_SHARDS)
  breakdowns/counts_{hour|day}_{period}[~n]   breakdown counts a bucket's write had no room for
  breakdowns/values_|counts_{hour|day}_{period}   a period's breakdowns, stores written
                                          before they moved into the buckets
  breakdowns/hourly_|daily_{dimension}_{period}   an admitted set kept on its own
  dead_letters/{hash}                     rejected and dead-lettered messages
  pipeline_state/freshness[_shard{k}]     newest event time, last commit
"""

from __future__ import annotations

__all__ = [
    "AGGREGATES",
    "ANONYMOUS_EVENTS_FIELD",
    "BOT_FIELD",
    "BREAKDOWNS",
    "BREAKDOWN_MARKER_FIELD",
    "BUCKET_BREAKDOWNS_FIELD",
    "BUCKET_PREFIX",
    "DEAD_LETTERS",
    "DEFAULT_MARKER_RETENTION_S",
    "EVENTS",
    "FORGOTTEN_FIELD",
    "FRESHNESS",
    "FUNNEL_FIELD",
    "GRANULARITY_OF_FIELD",
    "KNOWN_MARKERS_MAX",
    "LINKED_USERS_FIELD",
    "LINKS_FIELD",
    "MANY_HOURS",
    "MARKER_FIELD",
    "MAX_BUILT_REQUEST_BYTES",
    "MAX_DEAD_LETTER_DATA",
    "MAX_REQUEST_BYTES",
    "MAX_TRANSFORMS_PER_DOC",
    "MOVE_FIELDS",
    "PERSON_FIELDS",
    "PROGRESS_FIELD",
    "RECENT_FIELD",
    "REVISION_FIELD",
    "SESSIONS_FIELD",
    "SESSION_STATS",
    "SESSION_STATS_FIELD",
    "SHARD_SUFFIX",
    "STATE",
    "WRITE_OVERHEAD_BYTES",
]

EVENTS = "user_events"
AGGREGATES = "analytics_aggregates"
DEAD_LETTERS = "dead_letters"
BREAKDOWNS = "breakdowns"
STATE = "pipeline_state"
FRESHNESS = "freshness"
SHARD_SUFFIX = "_shard"

BUCKET_PREFIX: dict[str, str] = {"minute": "minute_", "hour": "hourly_", "day": "daily_"}
# Profile fields holding the user's unique-user markers: {period label: true}.
MARKER_FIELD: dict[str, str] = {"hour": "unique_hours", "day": "unique_days"}
GRANULARITY_OF_FIELD: dict[str, str] = {v: k for k, v in MARKER_FIELD.items()}
# Profile field holding the person's per-value breakdown markers (`breakdowns`):
# {day: {dimension: {counted value: true}}}.
BREAKDOWN_MARKER_FIELD = "breakdown_days"
# Bucket field holding the period's breakdowns (`breakdown_layout`): {admitted, events, users,
# sessions}.
BUCKET_BREAKDOWNS_FIELD = "breakdowns"
# The behavioral read model. Profile: the person's stored derivation. Bucket documents: bots
# (minute, hour, day), sessions started (hour, day) and funnel users per step (day).
SESSIONS_FIELD = "sessions"  # profile: {session key: [start, end, events, client id]}
PROGRESS_FIELD = "funnel_progress"  # profile: {funnel: {day: furthest step}}
RECENT_FIELD = "recent"  # profile: digest of the person's recent events (`behavior`)
BOT_FIELD = "bot_events"
FORGOTTEN_FIELD = "forgotten_at"  # profile or person document: a `forget`'s tombstone
REVISION_FIELD = "revision"  # anonymous actor: bumped when its events count for a linked user
SESSION_STATS_FIELD = "sessions"  # bucket: {started, duration_ms, bounces, events}
FUNNEL_FIELD = "funnel_users"  # daily bucket: {funnel: {step: users}}
SESSION_STATS = ("started", "duration_ms", "bounces", "events")
# Identity links, in an anonymous actor's document (`identity`).
LINKS_FIELD = "links"
LINKED_USERS_FIELD = "linked_users"
ANONYMOUS_EVENTS_FIELD = "anonymous_events"
# What a behavioral commit reads of a person's (or anonymous actor's) document, beyond markers.
PERSON_FIELDS = (
    "total_events",
    "first_seen",
    "last_activity",
    SESSIONS_FIELD,
    PROGRESS_FIELD,
    RECENT_FIELD,
    LINKS_FIELD,
    FORGOTTEN_FIELD,
    ANONYMOUS_EVENTS_FIELD,
)
# What recounting a person or moving events needs of a raw event.
MOVE_FIELDS = (
    "ts",
    "event_type",
    "session_id",
    "properties",
    "user_id",
    "anonymous_id",
    "person",
    "bot",
)

# Firestore: 10 MiB per commit request, 500 field transforms per document, 1 MiB per document.
MAX_REQUEST_BYTES = 8 * 1024 * 1024
MAX_TRANSFORMS_PER_DOC = 450
MAX_DEAD_LETTER_DATA = 900 * 1024
# A built commit request over this is split (profiles carry the behavioral state, so their size
# is known only once built): under the emulator's 4 MiB gRPC limit (Firestore allows 10 MiB).
MAX_BUILT_REQUEST_BYTES = 4_000_000
WRITE_OVERHEAD_BYTES = 300  # per write beyond its fields (name, precondition, framing)
# Markers must outlive every event that can still be counted for their period: the oldest
# accepted event (BA_MAX_EVENT_AGE_DAYS) redelivered or replayed as late as possible.
# `wiring.build_store` computes it; this conservative default serves stores built without settings.
DEFAULT_MARKER_RETENTION_S = (30 + 7 + 7 + 2) * 86400.0
KNOWN_MARKERS_MAX = 200_000  # markers remembered per store (about 40 MB at most)
MANY_HOURS = 100  # read a profile's whole hour map rather than this many single paths
