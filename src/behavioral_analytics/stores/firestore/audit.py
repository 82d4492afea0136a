"""What `verify` and `verify --repair` need of the Firestore store: every raw event, every
aggregate in comparable form (`snapshot`), and `rebuild`, which replaces the aggregates by a
recount of the raw events, and the group memberships by those the retained group calls make.

A rebuild keeps what raw events cannot give back (identity links, tombstones), sets each raw
event's `person` (and `bot`, for events stored before the behavioral read model) to what the
recount says, deletes the aggregates and writes them again. It is not atomic: stop the
workers first.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from math import inf
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from behavioral_analytics.aggregation import UNIQUE_GRANULARITIES, fold
from behavioral_analytics.behavior import recount
from behavioral_analytics.bots import is_bot
from behavioral_analytics.breakdowns import (
    BREAKDOWN_GRANULARITIES,
    BreakdownRules,
    recount_breakdowns,
)
from behavioral_analytics.dimensions import SESSION_DIMENSIONS
from behavioral_analytics.events import Event
from behavioral_analytics.identity import relinked
from behavioral_analytics.kept_copies import AnonymousRow, DigestEntry
from behavioral_analytics.session_breakdowns import recount_session_breakdowns
from behavioral_analytics.shared_values import SharedValues
from behavioral_analytics.store import AggregateSnapshot
from behavioral_analytics.stores.firestore.behavior import (
    decode_progress,
    decode_recent,
    decode_sessions,
    encode_progress,
    encode_recent,
    encode_sessions,
)
from behavioral_analytics.stores.firestore.breakdown_layout import (
    ADMITTED,
    COUNT_MAPS,
    SESSIONS,
    Gathered,
    bucket_breakdowns,
    bucket_doc_id,
    gather,
    into_buckets,
    rebuilt_docs,
)
from behavioral_analytics.stores.firestore.breakdowns import decode_markers, encode_markers
from behavioral_analytics.stores.firestore.documents import (
    as_datetime,
    links_of,
    markers_by_who,
    markers_of,
    profile_doc,
)
from behavioral_analytics.stores.firestore.gateway import Gateway
from behavioral_analytics.stores.firestore.groups import joining, members, rewrite_members
from behavioral_analytics.stores.firestore.identity import (
    decode_anonymous_events,
    encode_anonymous_events,
    encode_links,
)
from behavioral_analytics.stores.firestore.keys import (
    decode_map,
    decode_map_key,
    doc_id,
    encode_map,
    encode_map_key,
)
from behavioral_analytics.stores.firestore.minutes import MINUTES_FIELD, minutes_of, split_minute
from behavioral_analytics.stores.firestore.options import StoreOptions
from behavioral_analytics.stores.firestore.reads import BucketSum, profile_of, stored_event
from behavioral_analytics.stores.firestore.schema import (
    AGGREGATES,
    ANONYMOUS_EVENTS_FIELD,
    BOT_FIELD,
    BREAKDOWN_MARKER_FIELD,
    BREAKDOWNS,
    BUCKET_BREAKDOWNS_FIELD,
    BUCKET_PREFIX,
    EVENTS,
    FORGOTTEN_FIELD,
    FUNNEL_FIELD,
    LINKED_USERS_FIELD,
    LINKS_FIELD,
    PROGRESS_FIELD,
    RECENT_FIELD,
    SESSION_STATS,
    SESSION_STATS_FIELD,
    SESSIONS_FIELD,
)
from behavioral_analytics.stores.firestore.session_counts import (
    SESSION_VALUES_FIELD,
    Stored,
    decode_values,
    encode_values,
    recount_sessions,
)
from behavioral_analytics.stores.firestore.wire import field_path

__all__ = ["Audit"]


class Audit:
    """Raw events, the aggregate snapshot and the rebuild, through `gateway`. Every method
    raises as the `Store` port's does."""

    def __init__(self, gateway: Gateway, options: StoreOptions) -> None:
        self.gateway = gateway
        self.options = options

    def iter_raw_events(self, options: dict[str, Any] | None = None) -> Iterator[Event]:
        """Every raw event, by key, each page read with `options` (`retry=`, `timeout=`; by
        default the gateway's `options()`)."""
        for snap in self.gateway.all(EVENTS, options):
            event = stored_event(snap).event
            data = snap.to_dict() or {}
            event.call, event.id_kind = data.get("call"), data.get("id_kind")
            yield event

    def snapshot(self) -> AggregateSnapshot:
        behavioral = self.options.behavioral
        snap = AggregateSnapshot()
        sums: dict[tuple[str, str], BucketSum] = {}
        breakdown_markers: set[tuple[str, str, str, str]] = set()
        text = SharedValues().text  # each profile decodes its own copies of the same values
        sessions: set[tuple[str, str, float, float, int]] = set()
        progress: dict[tuple[str, str, str], int] = {}
        values: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}
        recent: dict[str, tuple[float, dict[str, DigestEntry]]] = {}
        listed: dict[str, list[AnonymousRow]] = {}
        dimensions = self.options.rules.breakdowns.dimensions
        held: list[dict[str, Any]] = []  # the buckets' breakdowns
        for doc in self.gateway.all(AGGREGATES):
            data = doc.to_dict() or {}
            kind = data.get("kind")
            if behavioral and kind in ("user", "person"):
                _add_state(data, dimensions, sessions, progress, values)
                _add_copies(data, recent, listed)
            if kind == "bucket":
                sums.setdefault((data["granularity"], data["period"]), BucketSum()).add(data)
                if (in_bucket := bucket_breakdowns(data)) is not None:
                    held.append(in_bucket)
                for minute, fields in minutes_of(data["period"], data):
                    sums.setdefault(("minute", minute), BucketSum()).add(fields)
            elif kind == "user":
                profile = profile_of(doc)
                snap.profiles[profile.who] = (
                    profile.total_events,
                    profile.events_by_type,
                    profile.first_seen,
                    profile.last_activity,
                )
                snap.markers.update(markers_of(profile.who, data))
                breakdown_markers.update(
                    (text(day), text(dimension), text(value), profile.who)
                    for day, dimension, value in decode_markers(data.get(BREAKDOWN_MARKER_FIELD))
                )
        for key, total in sums.items():
            if total.counted or not behavioral:  # not a bucket of bots only
                snap.buckets[key] = (total.total, dict(total.by_type))
                if key[0] in UNIQUE_GRANULARITIES:
                    snap.unique_users[key] = total.unique_users
            if not behavioral:
                continue
            if total.bot_events:
                snap.bot_events[key] = total.bot_events
            if not total.sessions.is_zero():
                snap.session_stats[key] = total.sessions
            for (name, step), users in total.funnel_users.items():
                if users:
                    snap.funnel_users[name, key[1], step] = users
        if behavioral:
            gathered = gather(doc.to_dict() or {} for doc in self.gateway.all(BREAKDOWNS))
            for in_bucket in held:
                gathered.add(in_bucket)
            gathered.with_sessions = True
            gathered.fill(snap)
            # None, as an empty store's snapshot says, where there is neither state nor figure.
            snap.breakdown_markers = (
                breakdown_markers if breakdown_markers or snap.breakdown_events else None
            )
            snap.person_sessions = sessions if sessions or snap.session_stats else None
            snap.funnel_progress = progress if progress or snap.funnel_users else None
            snap.session_values = values if snap.breakdown_sessions is not None else None
            snap.recent_events, snap.anonymous_events = recent or None, listed or None
        snap.group_members = members(self.gateway)
        return snap

    def rebuild(self, events: Iterator[Event]) -> None:
        """Replace the aggregates by the fold of `events` (with the behavioral read model, by
        `behavior.recount` of them: bots apart, sessions and funnel progress in the profiles,
        their figures in the buckets). Not atomic: stop the workers first.

        Cut short (Firestore stopped answering), running it again (`verify --repair`)
        finishes it and loses nothing: it reads all it recounts from (raw events, links and
        tombstones, the admitted sets) before it deletes anything; it never deletes a document
        holding links or a tombstone (it replaces each whole, with them); it writes the
        breakdown documents before it deletes the buckets, whose admitted sets a second run
        would read, and it deletes the breakdown documents the buckets now hold or that it did
        not rewrite only after writing the buckets (an admitted set the recount lays out in
        another document is still read from the first). What it sets on the raw events
        (`person`, `bot`) is the recount's, the same on every run."""
        options, gateway = self.options, self.gateway
        joined: dict[tuple[str, str], float] = {}
        events = joining(events, joined)
        counted = None
        kept: dict[str, dict[str, Any]] = {}  # person or actor -> links and tombstone fields
        breakdown_docs: dict[str, dict[str, Any]] = {}
        breakdown_markers: dict[str, list[tuple[str, str, str]]] = {}
        kept_values: dict[str, dict[str, Stored]] = {}  # person → their sessions' values
        if options.behavioral:
            kept = self._identity_fields()
            links = []
            for fields in kept.values():
                stored = fields.pop("_links", ())
                # Under the recorded rule (a relink rule changed by `config apply`).
                resolved = relinked(stored, options.rules.allow_relink)
                if resolved != sorted(stored, key=lambda k: (k.linked_at, k.event_key)):
                    fields.update(encode_links(resolved))
                links += resolved
            retained = list(events)
            counted = recount(retained, links, options.rules, options.periods)
            self._backfill_person(counted.persons)
            deltas = counted.deltas
            # The stored admitted sets are kept: a recount maps every value as commits did.
            admitted = self.snapshot().breakdown_admitted
            by_values = recount_breakdowns(
                retained, counted.persons, options.periods, options.rules.breakdowns, admitted
            )
            after = dict(admitted)
            for set_key, new in by_values.admitted.items():
                after[set_key] = (*admitted.get(set_key, ()), *new)
            by_sessions, session_values = recount_session_breakdowns(
                counted.sessions,
                retained,
                counted.persons,
                options.periods,
                options.rules.breakdowns,
                after,
            )
            for set_key, new in by_sessions.admitted.items():
                by_values.admitted[set_key] = [*by_values.admitted.get(set_key, ()), *new]
            breakdown_docs = rebuilt_docs(by_values, admitted, by_sessions.sessions)
            for (who, session_key), found in session_values.items():
                kept_values.setdefault(who, {})[session_key] = (
                    found.start,
                    found.order[1],
                    dict(found.values),
                )
            for day, dimension, value, who in sorted(by_values.users):
                breakdown_markers.setdefault(who, []).append((day, dimension, value))
        else:
            deltas = fold(events, options.periods)
        now = options.clock()
        updated = as_datetime(now)
        # Written before the buckets go: a bucket may hold admitted sets a second run reads.
        writer = gateway.client.batch()
        breakdowns = gateway.collection(BREAKDOWNS)
        for document, fields in breakdown_docs.items():
            writer.set(breakdowns.document(document), {**fields, "last_updated": updated})
            writer = gateway.flush_if_full(writer)
        gateway.flush_if_full(writer, force=True)
        gateway.delete_all(AGGREGATES, keep={doc_id("user_", who) for who in kept})
        writer = gateway.client.batch()
        uniques = deltas.unique_users()
        docs: dict[tuple[str, str], dict[str, Any]] = {}
        for (granularity, period), bucket in deltas.buckets.items():
            doc: dict[str, Any] = {
                "total_events": bucket.total,
                "events_by_type": encode_map(dict(bucket.by_type)),
            }
            if granularity in UNIQUE_GRANULARITIES:
                doc["unique_users"] = uniques[granularity, period]
            docs[granularity, period] = doc
        progress: dict[str, dict[str, dict[str, int]]] = {}
        if counted is not None:
            for key, n in counted.bot_events.items():
                docs.setdefault(key, {})[BOT_FIELD] = n
            for key, stats in counted.session_stats.items():
                values = (stats.sessions, stats.duration_ms, stats.bounces, stats.events)
                docs.setdefault(key, {})[SESSION_STATS_FIELD] = dict(
                    zip(SESSION_STATS, values, strict=True)
                )
            for (name, day, step), n in counted.funnel_users.items():
                if n:
                    funnels = docs.setdefault(("day", day), {}).setdefault(FUNNEL_FIELD, {})
                    funnels.setdefault(encode_map_key(name), {})[str(step)] = n
            for (name, person, day), step in counted.funnel_progress.items():
                progress.setdefault(person, {}).setdefault(name, {})[day] = step
        for unit, period in list(docs):
            if unit == "minute":
                hour, minute = split_minute(period)
                minutes = docs.setdefault(("hour", hour), {}).setdefault(MINUTES_FIELD, {})
                minutes[minute] = docs.pop((unit, period))
        held, folded = into_buckets(breakdown_docs)
        for key, breakdowns_held in held.items():
            docs.setdefault(key, {})[BUCKET_BREAKDOWNS_FIELD] = breakdowns_held
        aggregates = gateway.collection(AGGREGATES)
        for (unit, period), fields in docs.items():
            doc = {
                "kind": "bucket",
                "granularity": unit,
                "period": period,
                **fields,
                "last_updated": updated,
            }
            writer.set(aggregates.document(BUCKET_PREFIX[unit] + period), doc)
            writer = gateway.flush_if_full(writer)
        markers = markers_by_who(deltas.markers)
        for who, p in deltas.profiles.items():
            behavior = None
            if counted is not None:
                behavior = {
                    # Everything the raw events hold (they are younger than the horizon).
                    SESSIONS_FIELD: encode_sessions(counted.sessions.get(who, []), -inf),
                    PROGRESS_FIELD: encode_progress(progress.get(who, {}), ""),
                }
                if who in kept_values:
                    behavior[SESSION_VALUES_FIELD] = encode_values(
                        kept_values[who], counted.sessions.get(who, [])
                    )
            doc = profile_doc(who, p, markers.get(who, []), updated, behavior)
            if breakdown_markers.get(who):
                doc[BREAKDOWN_MARKER_FIELD] = encode_markers(breakdown_markers[who])
            writer.set(aggregates.document(doc_id("user_", who)), {**doc, **kept.pop(who, {})})
            writer = gateway.flush_if_full(writer)
        for who, fields in kept.items():  # links or a tombstone, no profile
            doc = {"kind": "person", "user_id": who, "last_updated": updated, **fields}
            writer.set(aggregates.document(doc_id("user_", who)), doc)
            writer = gateway.flush_if_full(writer)
        gateway.flush_if_full(writer, force=True)
        if options.behavioral:  # those the recount did not write, or that the buckets hold
            gateway.delete_all(BREAKDOWNS, keep=set(breakdown_docs) - folded)
        rewrite_members(gateway, joined)

    def drop_copies(self, digests: Sequence[str], lists: Sequence[str]) -> None:
        """Mark the digests of recent events of the persons `digests` and the event lists of
        the anonymous actors `lists` as not kept: a digest without a start, an empty list
        (what a profile written before them holds). A commit then queries the raw events and
        keeps a new digest; an anonymous actor's list stays unknown (`person_writes`). A
        document that does not exist is left alone. Not atomic: stop the workers first;
        running it again finishes it."""
        aggregates = self.gateway.collection(AGGREGATES)
        fields: dict[str, dict[str, Any]] = {}
        for who in digests:
            fields.setdefault(who, {})[RECENT_FIELD] = encode_recent(None, {})
        for who in lists:
            fields.setdefault(who, {})[ANONYMOUS_EVENTS_FIELD] = encode_anonymous_events(None)
        names = {who: self.gateway.name(AGGREGATES, doc_id("user_", who)) for who in fields}
        found = self.gateway.get(list(names.values()), ["user_id"])
        writer = self.gateway.client.batch()
        for who, dropped in sorted(fields.items()):
            if names[who] in found:
                writer.update(aggregates.document(doc_id("user_", who)), dropped)
                writer = self.gateway.flush_if_full(writer)
        self.gateway.flush_if_full(writer, force=True)

    def recount_dimensions(self, dropped: Sequence[str], recounted: Sequence[str]) -> None:
        """Delete the breakdowns (documents and persons' markers) of `dropped` and
        `recounted`, then count `recounted` afresh from the raw events, each human event for
        the person it is stored as counting for, values admitted in time order (`config
        apply`, or a dimension the configuration adds). Not atomic."""
        gone = {*dropped, *recounted}
        if not gone:
            return
        gateway, options = self.gateway, self.options
        with_sessions = bool(options.rules.breakdowns.dimensions)
        # Every session count is recounted, entry and exit pages' sets too; with the last
        # dimension dropped they all go (entry and exit pages are kept while any dimension is).
        sessions_go = with_sessions or bool(dropped)
        if sessions_go:
            gone |= set(SESSION_DIMENSIONS)
        stored = Gathered()
        events: list[Event] = []
        persons: dict[str, str] = {}
        shared = SharedValues()  # every event is held: each repeated value once
        for snap in gateway.all(EVENTS):
            data = snap.to_dict() or {}
            events.append(shared.event(stored_event(snap).event))
            if not data.get("bot"):
                persons[snap.id] = data.get("person", data["who"])
        rules = BreakdownRules(tuple(recounted), options.rules.breakdowns.max_values)
        counted = recount_breakdowns(events, persons, options.periods, rules, {})
        markers: dict[str, set[tuple[str, str, str]]] = {}
        for day, dimension, value, who in counted.users:
            markers.setdefault(who, set()).add((day, dimension, value))
        writer = gateway.client.batch()

        def take_out(reference: Any, data: Mapping[str, Any], *prefix: str) -> None:
            """`gone`'s entries out of a period's breakdowns (`prefix`: where they are)."""
            nonlocal writer
            paths = [
                field_path(*prefix, name, key)
                for name in (*COUNT_MAPS, ADMITTED)
                for key in data.get(name) or {}
                if decode_map_key(key) in gone or (name == SESSIONS and sessions_go)
            ]
            if paths:
                writer.update(reference, dict.fromkeys(paths, firestore.DELETE_FIELD))
                writer = gateway.flush_if_full(writer)

        for snap in gateway.all(BREAKDOWNS):
            data = snap.to_dict() or {}
            stored.add(data)
            if data.get("dimension") in gone:  # a values document
                writer.delete(snap.reference)
                writer = gateway.flush_if_full(writer)
            elif "dimension" not in data:  # a period's counts or values
                take_out(snap.reference, data)
        mask = ["granularity", "period", BUCKET_BREAKDOWNS_FIELD]
        for granularity in BREAKDOWN_GRANULARITIES:
            for snap in gateway.id_range(AGGREGATES, bucket_doc_id(granularity, ""), mask=mask):
                in_bucket = bucket_breakdowns(snap.to_dict() or {})
                if in_bucket is not None:
                    stored.add(in_bucket)
                    take_out(snap.reference, in_bucket, BUCKET_BREAKDOWNS_FIELD)
        people = gateway.collection(AGGREGATES)
        selected = ["user_id", BREAKDOWN_MARKER_FIELD, *([SESSIONS_FIELD] * with_sessions)]
        if sessions_go and not with_sessions:
            selected.append(SESSION_VALUES_FIELD)
        profiles = {
            snap.reference: snap.to_dict() or {}
            for snap in gateway.stream_all(
                people.select(selected).order_by(FieldPath.document_id())
            )
        }
        docs = rebuilt_docs(counted, {}, own_documents=True)
        values: dict[str, bytes] = {}
        if with_sessions:
            docs, values = recount_sessions(
                profiles.values(), events, persons, options.periods, options.rules.breakdowns,
                (stored, counted, gone),
            )  # fmt: skip
        for reference, data in profiles.items():
            who = str(data.get("user_id"))
            held = decode_markers(data.get(BREAKDOWN_MARKER_FIELD))
            kept = {m for m in held if m[1] not in gone}
            kept |= markers.pop(who, set())
            changed: dict[str, Any] = {}
            if kept != held:
                changed[BREAKDOWN_MARKER_FIELD] = encode_markers(kept)
            if who in values:
                changed[SESSION_VALUES_FIELD] = values[who]
            elif not with_sessions and SESSION_VALUES_FIELD in data:
                changed[SESSION_VALUES_FIELD] = firestore.DELETE_FIELD
            if changed:
                writer.update(reference, changed)
                writer = gateway.flush_if_full(writer)
        updated = as_datetime(options.clock())
        breakdowns = gateway.collection(BREAKDOWNS)
        for document, fields in docs.items():
            # Counts documents hold the other dimensions too: merged, not replaced.
            merge = "dimension" not in fields
            writer.set(
                breakdowns.document(document), {**fields, "last_updated": updated}, merge=merge
            )
            writer = gateway.flush_if_full(writer)
        gateway.flush_if_full(writer, force=True)

    def _identity_fields(self) -> dict[str, dict[str, Any]]:
        """Per document holding links or a tombstone: those fields (and its links, decoded,
        under `_links`), which a rebuild keeps."""
        query = (
            self.gateway.collection(AGGREGATES)
            .select(["user_id", LINKS_FIELD, LINKED_USERS_FIELD, FORGOTTEN_FIELD])
            .order_by(FieldPath.document_id())
        )
        kept: dict[str, dict[str, Any]] = {}
        for snap in self.gateway.stream_all(query):
            data = snap.to_dict() or {}
            fields = {
                name: data[name]
                for name in (LINKS_FIELD, LINKED_USERS_FIELD, FORGOTTEN_FIELD)
                if data.get(name) is not None
            }
            if fields:
                fields["_links"] = links_of(snap)
                kept[data["user_id"]] = fields
        return kept

    def _backfill_person(self, persons: dict[str, str]) -> None:
        """Set each raw event's `person` (and `bot`, for events stored before the behavioral
        read model) to what the recount says: what the behavioral queries select on."""
        writer = self.gateway.client.batch()
        for snap in self.gateway.all(EVENTS):
            data = snap.to_dict() or {}
            fields: dict[str, Any] = {}
            if "bot" not in data:
                fields["bot"] = is_bot(decode_map(data.get("properties") or {}))
            person = persons.get(snap.id, data.get("person", data["who"]))
            if data.get("person") != person:
                fields["person"] = person
            if fields:
                writer.update(snap.reference, fields)
                writer = self.gateway.flush_if_full(writer)
        self.gateway.flush_if_full(writer, force=True)


def _add_state(
    data: dict[str, Any],
    dimensions: Sequence[str],
    sessions: set[tuple[str, str, float, float, int]],
    progress: dict[tuple[str, str, str], int],
    values: dict[tuple[str, str], tuple[float, dict[str, str]]],
) -> None:
    """A person's or actor's document's kept sessions, funnel progress and sessions' values
    (for the configured `dimensions`), added to `sessions`, `progress` and `values`
    (`AggregateSnapshot.person_sessions`, `.funnel_progress`, `.session_values`)."""
    who = data["user_id"]
    sessions.update(
        (who, key, s.start, s.end, s.events)
        for key, s in decode_sessions(data.get(SESSIONS_FIELD)).items()
    )
    for funnel, days in decode_progress(data.get(PROGRESS_FIELD)).items():
        for day, step in days.items():
            progress[funnel, who, day] = step
    for key, (start, _, raw) in decode_values(data.get(SESSION_VALUES_FIELD), dimensions).items():
        values[who, key] = (start, raw)


def _add_copies(
    data: dict[str, Any],
    recent: dict[str, tuple[float, dict[str, DigestEntry]]],
    listed: dict[str, list[AnonymousRow]],
) -> None:
    """A person's or actor's document's digest of recent events and list of anonymous events,
    where it keeps them, added to `recent` and `listed` (`AggregateSnapshot.recent_events`,
    `.anonymous_events`)."""
    who = data["user_id"]
    since, digest = decode_recent(data.get(RECENT_FIELD))
    if since is not None:
        recent[who] = (since, {k: (e.timestamp, e.loose, e.steps) for k, e in digest.items()})
    events = decode_anonymous_events(who, data.get(ANONYMOUS_EVENTS_FIELD))
    if events is not None:
        listed[who] = [(e.key, e.timestamp, e.event_type, e.session_id) for e in events]
