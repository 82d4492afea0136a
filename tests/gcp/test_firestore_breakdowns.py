"""Breakdowns on the Firestore store (the emulator): the same figures as the SQLite store on the
same batches (identity links moving events, values past K counted under `(other)`, a crawler,
`forget`, `verify --repair`), the document layout (map keys a value may break, escaped), the
period's breakdowns riding in its bucket's write (spilling into counts parts past the transform
limit; an admission under the bucket's update time), the previous layouts still read and
written, and the size of a full document by Firestore's rules.
The contract suite (tests/contract/test_breakdowns.py) holds both stores to the port."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.cloud import firestore

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.breakdowns import BreakdownRules
from behavioral_analytics.dimensions import DIMENSIONS, MAX_VALUE_CHARS, dimension_values
from behavioral_analytics.events import Event
from behavioral_analytics.store import Store
from behavioral_analytics.stores.firestore import FirestoreStore, breakdowns
from behavioral_analytics.stores.firestore.breakdown_layout import (
    PERIOD_VALUES_BYTES,
    Gathered,
    breakdown_doc_id,
    bucket_breakdowns,
    bucket_doc_id,
    counts_doc_id,
    doc_size_bytes,
    gather,
    list_bytes,
    values_doc_id,
)
from behavioral_analytics.stores.firestore.metadata import METADATA
from behavioral_analytics.stores.firestore.schema import (
    AGGREGATES,
    BREAKDOWN_MARKER_FIELD,
    BREAKDOWNS,
    BUCKET_BREAKDOWNS_FIELD,
)
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from tests.faults import BOT_AGENT, behavior_event

NOW = 1_764_320_400.0  # on the hour
HOUR = 3600.0
DAY_START = NOW - 86400
DIMS = ("page", "referrer", "device", "event_type", "property:plan")
ODD_PAGES = ["/a.b", "/`tick`", "/~home", "/__x__", "/p/1", "/p/2", "/p/3"]
# Values a map key could trip on: dots, backticks, a leading `~`, the reserved `__…__` shape.
ODD_VALUES = ["a.b", "`tick`", "~home", "__x__", "p/1", "ü ñ", "(none)"]


def ev(n: int, at: float, **fields: Any) -> Event:
    return behavior_event(n, DAY_START + at, received_at=NOW, **fields)


def bucket_held(store: FirestoreStore, granularity: str, period: str) -> dict[str, Any]:
    """The breakdowns a bucket document holds ({} when none)."""
    document = store.db.collection(AGGREGATES).document(bucket_doc_id(granularity, period))
    return bucket_breakdowns(document.get().to_dict() or {}) or {}


def gathered_all(store: FirestoreStore) -> Gathered:
    """Every breakdown the store holds: its breakdown documents and its buckets'."""
    gathered = gather(doc.to_dict() or {} for doc in store.gateway.all(BREAKDOWNS))
    for doc in store.gateway.all(AGGREGATES):
        held = bucket_breakdowns(doc.to_dict() or {})
        if held is not None:
            gathered.add(held)
    gathered.with_sessions = True
    return gathered


def firestore_store(settings_for: Callable[..., Any], **options: Any) -> FirestoreStore:
    settings = settings_for()
    return FirestoreStore(
        firestore.Client(project=settings.project, database=settings.firestore_database),
        clock=lambda: NOW,
        **options,
    )


def rules(max_values: int = 3) -> BehaviorRules:
    return BehaviorRules(breakdowns=BreakdownRules(dimensions=DIMS, max_values=max_values))


def workload(seed: int) -> list[Event]:
    """Two days of page views by users and anonymous visitors (some of whom identify, moving
    their earlier events), more pages than K, a crawler."""
    rng = random.Random(seed)
    events: list[Event] = []
    for n in range(160):
        at = rng.uniform(0, 20 * HOUR) + (0 if n < 110 else -20 * HOUR)
        fields: dict[str, Any] = {
            "page_url": f"https://shop.example{rng.choice(ODD_PAGES)}?utm_source=x",
            "referrer": rng.choice(["google.com", "direct", "news.example", "shop.example"]),
            "device_type": rng.choice(["mobile", "desktop"]),
        }
        if rng.random() < 0.7:
            fields["plan"] = rng.choice(["free", "pro", 3, True, "team"])
        who = rng.randrange(6)
        if who < 3:
            fields["user"] = f"u{who}"
        else:
            fields["anon"] = f"a{who}"
        kind = rng.choice(["page_view", "button_click", "purchase"])
        events.append(ev(n, at, kind=kind, **fields))
    # a3 and a4 sign in (a3 as u0, a4 as u1): their earlier events move to the users.
    events.append(ev(900, 19 * HOUR, kind="identify", user="u0", anon="a3", page_url="/in"))
    events.append(ev(901, 19 * HOUR, kind="identify", user="u1", anon="a4", page_url="/in"))
    events.append(ev(902, 3 * HOUR, anon="crawler", user_agent=BOT_AGENT, page_url="/bot"))
    return events


def figures(store: Store) -> dict[str, Any]:
    """Events, unique users and admitted sets of the configured dimensions (sessions per
    value, and the session dimensions, are held to the port by the contract suite)."""
    snap = store.snapshot()
    points = {
        (dimension, granularity): [
            {k: v for k, v in p.to_dict().items() if k != "sessions"}
            for p in store.breakdown(dimension, granularity)
        ]
        for dimension in DIMS
        for granularity in ("hour", "day")
    }
    return {
        "events": {k: n for k, n in snap.breakdown_events.items() if k[2] in DIMS},
        "users": {k: n for k, n in snap.breakdown_users.items() if k[1] in DIMS},
        "admitted": {k: v for k, v in snap.breakdown_admitted.items() if k[2] in DIMS},
        "points": points,
    }


def commit_in_batches(stores: list[Store], events: list[Event], seed: int) -> None:
    rng = random.Random(seed)
    position = 0
    while position < len(events):
        size = rng.randint(1, 40)
        batch = events[position : position + size]
        for store in stores:
            store.commit(batch)
            assert store.commit(batch[: len(batch) // 2 + 1]).created == 0  # redelivered
        position += size


def test_firestore_breakdowns_equal_sqlite_through_links_forget_and_repair(
    settings_for: Callable[..., Any], tmp_path: Path
) -> None:
    fs = firestore_store(settings_for, rules=rules())
    lite = SQLiteStore(tmp_path / "store.db", clock=lambda: NOW, rules=rules())
    try:
        commit_in_batches([fs, lite], workload(5), seed=6)
        got = figures(fs)
        assert got == figures(lite)
        assert any("(other)" in key for key in got["events"]), "K was never reached"
        assert got["users"], "no unique users per value"
        markers = fs.snapshot().breakdown_markers
        assert markers and markers == lite.snapshot().breakdown_markers
        assert {who for *_, who in markers} >= {"u0", "u1"}  # a3's and a4's moved with the links
        assert verify(fs, fs.periods, now=NOW, retention_s=None).ok

        fs.forget("u0")
        lite.forget("u0")
        assert figures(fs) == figures(lite)
        assert fs.snapshot().breakdown_markers == lite.snapshot().breakdown_markers
        assert verify(fs, fs.periods, now=NOW, retention_s=None).ok

        before = figures(fs)
        day = fs.periods.of(DAY_START + HOUR)[2]
        damaged = fs.db.collection(AGGREGATES).document(bucket_doc_id("day", day))
        damaged.update({f"{BUCKET_BREAKDOWNS_FIELD}.events": {}})
        assert not verify(fs, fs.periods, now=NOW, retention_s=None).ok
        fs.rebuild(fs.iter_raw_events())  # verify --repair
        assert figures(fs) == before
    finally:
        fs.close()
        lite.close()


def test_a_flush_writes_a_periods_breakdowns_in_its_buckets_write_with_escaped_keys(
    settings_for: Callable[..., Any],
) -> None:
    store = firestore_store(settings_for, rules=rules(max_values=100))
    try:
        events = [
            ev(n, 2 * HOUR + n, user=f"u{n % 7}", page_url=ODD_PAGES[n % 7], plan=ODD_VALUES[n % 7])
            for n in range(300)
        ]
        before = store.write_ops
        store.commit(events)
        writes = store.write_ops - before
        people = 7
        # Raw events, people, the buckets (an hour carrying its 5 minutes, a day), freshness:
        # each period's breakdowns (values admitted, counts) ride in its bucket's write,
        # however many events and dimensions fall in it.
        assert writes == len(events) + people + (1 + 1) + 1
        day = store.periods.of(DAY_START + 2 * HOUR)[2]
        collection = store.db.collection(BREAKDOWNS)
        for document in (values_doc_id("day", day), counts_doc_id("day", day)):
            assert not collection.document(document).get().exists
        assert sum(bucket_held(store, "day", day)["events"]["page"].values()) == len(events)
        later = [
            ev(n, 2 * HOUR + n, user=f"u{n % 7}", page_url=ODD_PAGES[n % 7], plan=ODD_VALUES[n % 7])
            for n in range(300, 400)
        ]
        before = store.write_ops
        store.commit(later)
        # Nothing admitted: the same writes.
        assert store.write_ops - before == len(later) + people + (1 + 1) + 1

        held = bucket_held(store, "day", day)
        assert held["admitted"]["page"] == ODD_PAGES  # each value once; counts keyed by rank
        assert set(held["admitted"]) == {*DIMS, "entry_page", "exit_page"}
        assert set(held["events"]) == set(DIMS)
        assert not collection.document(breakdown_doc_id("day", day, "page")).get().exists
        assert not collection.document(counts_doc_id("day", day)).get().exists
        gathered = gather([held])
        assert gathered.counts["events", ("day", day, "page")] == {
            str(rank): 58 - (rank >= 1) for rank in range(7)
        }
        one_page_each = {str(rank): 1 for rank in range(7)}
        assert gathered.counts["users", ("day", day, "page")] == one_page_each
        person = store.db.collection(AGGREGATES).document("user_u1").get().to_dict()
        assert person is not None
        assert person[BREAKDOWN_MARKER_FIELD][day]["page"] == {"/`tick`": True}
        assert person[BREAKDOWN_MARKER_FIELD][day]["property:plan"] == {"`tick`": True}
        escaped = store.db.collection(AGGREGATES).document("user_u2").get().to_dict() or {}
        assert escaped[BREAKDOWN_MARKER_FIELD][day]["property:plan"] == {"~~home": True}
        escaped = store.db.collection(AGGREGATES).document("user_u3").get().to_dict() or {}
        assert escaped[BREAKDOWN_MARKER_FIELD][day]["property:plan"] == {"~__x__": True}
        plans = {dimension_values(e, ["property:plan"])["property:plan"] for e in events}
        assert len(plans) == len(ODD_VALUES)
        (point,) = store.breakdown("property:plan", "day")
        assert set(point.events) == plans
        assert point.unique_users == dict.fromkeys(plans, 1)
    finally:
        store.close()


def test_series_reads_take_the_buckets_counts_without_their_breakdowns(
    settings_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The series (by minute, hour and day) and the session series read a bucket's counts,
    not the breakdowns the bucket carries (only breakdown reads want them): no document they
    get holds them, and their figures add up to every event."""
    store = firestore_store(settings_for, rules=rules(max_values=100))
    try:
        events = [ev(n, 2 * HOUR + 40 * n, user=f"u{n % 7}", page_url=ODD_PAGES[n % 7])
                  for n in range(120)]  # fmt: skip
        store.commit(events)
        day = store.periods.of(DAY_START + 2 * HOUR)[2]
        assert bucket_held(store, "day", day)  # the bucket carries its breakdowns
        read: list[dict[str, Any]] = []
        id_range = store.gateway.id_range

        def watched(*args: Any, **kwargs: Any) -> Any:
            for snapshot in id_range(*args, **kwargs):
                read.append(snapshot.to_dict() or {})
                yield snapshot

        monkeypatch.setattr(store.gateway, "id_range", watched)
        totals = {
            granularity: sum(point.total_events for point in store.series(granularity))
            for granularity in ("minute", "hour", "day")
        }
        assert totals == dict.fromkeys(("minute", "hour", "day"), len(events))
        assert sum(point.stats.sessions for point in store.session_series("day")) == 7
        buckets = [data for data in read if data.get("kind") == "bucket"]
        assert len(buckets) >= 3 and not any(BUCKET_BREAKDOWNS_FIELD in d for d in buckets)
        assert any("minutes" in data for data in buckets)  # the minute series' hours
        monkeypatch.undo()
        (point,) = store.breakdown("page", "day")  # the breakdown read still has them
        assert sum(point.events.values()) == len(events)
    finally:
        store.close()


def test_a_late_event_in_an_old_period_costs_its_buckets_writes_only(
    settings_for: Callable[..., Any],
) -> None:
    """The values it admits and its counts ride in its hour's and day's bucket writes."""
    store = firestore_store(settings_for, rules=rules(max_values=100))
    try:
        store.commit([ev(n, 2 * HOUR + 900 + n, user="u1", page_url="/now") for n in range(5)])
        before = store.write_ops
        store.commit([ev(10, 2 * HOUR, user="u1", page_url="/late")])
        # The raw event, the person, its hour (carrying its minute) and day buckets, freshness.
        assert store.write_ops - before == 1 + 1 + 2 + 1
        hour, day = store.periods.of(DAY_START + 2 * HOUR)[1:]
        assert list(store.gateway.all(BREAKDOWNS)) == []
        assert bucket_held(store, "hour", hour)["admitted"]["page"] == ["/now", "/late"]
        (point,) = store.breakdown("page", "hour", start=hour, end=hour)
        assert point.events == {"/now": 5, "/late": 1}
        (point,) = store.breakdown("page", "day", start=day, end=day)
        assert point.events == {"/now": 5, "/late": 1}
        assert point.unique_users == {"/now": 1, "/late": 1}
        assert verify(store, store.periods, now=NOW, retention_s=None).ok
    finally:
        store.close()


def test_increments_past_the_transform_limit_spill_into_parts_that_reads_sum(
    settings_for: Callable[..., Any], tmp_path: Path
) -> None:
    fs = firestore_store(settings_for, rules=rules(max_values=100))
    lite = SQLiteStore(tmp_path / "store.db", clock=lambda: NOW, rules=rules(max_values=100))
    fs.max_transforms_per_doc = 30
    try:
        events = [
            ev(n, 2 * HOUR + n, user=f"u{n % 13}", page_url=f"/p/{n % 40}", plan=f"v{n % 17}")
            for n in range(200)
        ]
        for store in (fs, lite):
            store.commit(events)
        day = fs.periods.of(DAY_START + 2 * HOUR)[2]
        collection = fs.db.collection(BREAKDOWNS)
        parts = [collection.document(counts_doc_id("day", day, part)).get() for part in range(6)]
        assert all(part.exists for part in parts[:3]), "the day's increments did not spill"
        for part in parts:
            data = part.to_dict() or {}
            assert (
                sum(len(m) for name in ("events", "users") for m in data.get(name, {}).values())
                <= 30
            )
        assert figures(fs) == figures(lite)
        assert verify(fs, fs.periods, now=NOW, retention_s=None).ok
    finally:
        fs.close()
        lite.close()


def test_a_set_outgrowing_its_periods_values_document_moves_to_its_own(
    settings_for: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(breakdowns, "PERIOD_VALUES_BYTES", 120)
    fs = firestore_store(settings_for, rules=rules(max_values=100))
    lite = SQLiteStore(tmp_path / "store.db", clock=lambda: NOW, rules=rules(max_values=100))
    try:
        events = [
            ev(n, 2 * HOUR + n, user=f"u{n % 5}", page_url=f"/page/{n}", plan="free")
            for n in range(40)
        ]
        for at in range(0, len(events), 10):
            for store in (fs, lite):
                store.commit(events[at : at + 10])
        day = fs.periods.of(DAY_START + 2 * HOUR)[2]
        collection = fs.db.collection(BREAKDOWNS)
        own = collection.document(breakdown_doc_id("day", day, "page")).get().to_dict()
        assert own is not None and own["admitted"] == [f"/page/{n}" for n in range(40)]
        shared = bucket_held(store=fs, granularity="day", period=day)
        assert "page" not in shared["admitted"]
        assert shared["admitted"]["property:plan"] == ["free"]
        assert figures(fs) == figures(lite)
        assert verify(fs, fs.periods, now=NOW, retention_s=None).ok
        before = figures(fs)
        fs.rebuild(fs.iter_raw_events())  # verify --repair lays the sets out afresh
        assert figures(fs) == before
    finally:
        fs.close()
        lite.close()


def test_session_counts_fold_into_the_periods_counts_documents(
    settings_for: Callable[..., Any],
) -> None:
    """`add_session_counts` (the sessions-per-value writer): admitted values keyed by rank,
    a new value admitted while its set has room, `(other)` once full, a set the batch had not
    read read first, a negative delta taken away; all in the periods' writes of the commit."""
    store = firestore_store(settings_for, rules=rules(max_values=2))
    try:
        store.commit([ev(n, 2 * HOUR + n, user="u1", page_url=f"/{n}") for n in range(3)])
        hour, day = store.periods.of(DAY_START + 2 * HOUR)[1:]
        gateway = store.gateway
        batch = breakdowns.BreakdownBatch(
            [],
            [],
            rules(max_values=2).breakdowns,
            store.periods,
            lambda keys: breakdowns.read_admitted(gateway.get, gateway.name, keys),
        )
        deltas = Counter(
            {
                ("hour", hour, "page", "/0"): 2,
                ("hour", hour, "page", "/2"): 2,  # the hour's set is full: (other)
                ("hour", hour, "page", "/9"): -1,  # likewise, taken away
                ("day", day, "page", "/1"): 3,
                ("day", day, "entry_page", "/0"): 1,  # on top of the committed session
            }
        )
        breakdowns.add_session_counts(batch, deltas)
        gateway.send(batch.writes(gateway.name, datetime.now(UTC), {}))
        gathered = gathered_all(store)
        assert gathered.by_value("sessions", ("hour", hour, "page")) == {"/0": 3, "(other)": 1}
        assert gathered.by_value("sessions", ("day", day, "page")) == {"/0": 1, "/1": 3}
        assert gathered.by_value("sessions", ("day", day, "entry_page")) == {"/0": 2}
        assert gathered.admitted(("day", day, "entry_page")) == ["/0"]
        (point,) = [p for p in [gathered.point(("day", day, "entry_page"))] if p]
        assert (point.events, point.other_events, point.unique_users) == ({}, 0, None)
        assert point.sessions == {"/0": 2}
        batch = breakdowns.BreakdownBatch(
            [],
            [],
            rules(max_values=2).breakdowns,
            store.periods,
            lambda keys: breakdowns.read_admitted(gateway.get, gateway.name, keys),
        )
        breakdowns.add_session_counts(batch, Counter({("hour", hour, "page", "/0"): -2}))
        gateway.send(batch.writes(gateway.name, datetime.now(UTC), {}))
        gathered = gathered_all(store)
        assert gathered.by_value("sessions", ("hour", hour, "page")) == {"/0": 1, "(other)": 1}
    finally:
        store.close()


def test_config_apply_takes_a_dropped_dimension_out_of_the_period_documents(
    settings_for: Callable[..., Any],
) -> None:
    first = firestore_store(settings_for, rules=rules(max_values=100))
    try:
        first.record_config()
        first.commit([ev(n, 2 * HOUR + n, user="u1", page_url="/a", plan="pro") for n in range(3)])
    finally:
        first.close()
    kept = tuple(d for d in DIMS if d != "property:plan")
    narrower = BehaviorRules(breakdowns=BreakdownRules(dimensions=kept, max_values=100))
    store = firestore_store(settings_for, rules=narrower)
    try:
        store.record_config(replace=True)
        day = store.periods.of(DAY_START + 2 * HOUR)[2]
        held = bucket_held(store, "day", day)
        maps = [held[name] for name in ("admitted", "events", "users") if name in held]
        assert len(maps) == 3 and all("page" in m and "property:plan" not in m for m in maps)
        assert store.breakdown("property:plan", "day") == []
        assert store.breakdown("page", "day")[0].events == {"/a": 3}
        assert verify(store, store.periods, now=NOW, retention_s=None).ok
    finally:
        store.close()


def test_a_store_with_events_but_no_record_gets_its_breakdowns_counted_when_recorded(
    settings_for: Callable[..., Any],
) -> None:
    """Written before configurations were recorded, and breakdowns: no record, no breakdown."""
    old = firestore_store(settings_for, rules=BehaviorRules(breakdowns=BreakdownRules(())))
    try:
        old.commit([ev(n, 2 * HOUR + n, user=f"u{n}", page_url="/a") for n in range(3)])
        old.db.collection(METADATA).document("config").delete()
    finally:
        old.close()
    store = firestore_store(settings_for, rules=rules(max_values=100))
    try:
        assert store.recorded_config() is None
        store.record_config()
        assert store.breakdown("page", "day")[0].events == {"/a": 3}
        assert verify(store, store.periods, now=NOW, retention_s=None).ok
    finally:
        store.close()


def test_a_store_written_in_the_previous_layout_keeps_its_numbers(
    settings_for: Callable[..., Any],
) -> None:
    """Before counts documents, a set's counts were kept by rank in its values document."""
    store = firestore_store(settings_for, rules=rules(max_values=100))
    try:
        day = store.periods.of(DAY_START + 2 * HOUR)[2]
        old = {
            "kind": "breakdown",
            "granularity": "day",
            "period": day,
            "dimension": "page",
            "admitted": ["/a", "/b"],
            "events": {"0": 5, "1": 2},
            "users": {"0": 2, "1": 1},
        }
        store.db.collection(BREAKDOWNS).document(breakdown_doc_id("day", day, "page")).set(old)
        store.commit(
            [ev(1, 2 * HOUR, user="u1", page_url="/b"), ev(2, 2 * HOUR, user="u9", page_url="/c")]
        )
        (point,) = store.breakdown("page", "day")
        assert point.events == {"/a": 5, "/b": 3, "/c": 1}
        assert point.unique_users == {"/a": 2, "/b": 2, "/c": 1}
        assert store.snapshot().breakdown_admitted["day", day, "page"] == ("/a", "/b", "/c")
    finally:
        store.close()


def test_an_admission_under_the_buckets_update_time_conflicts_with_a_write_since(
    settings_for: Callable[..., Any], tmp_path: Path
) -> None:
    """Two workers admit values into one day: the commit whose read of the day's bucket is
    older than the other's write fails its precondition and recounts, so each value keeps its
    own rank (without the precondition the later list would replace the earlier one)."""
    settings = settings_for()
    first = firestore_store(lambda: settings, rules=rules(max_values=100))
    second = firestore_store(lambda: settings, rules=rules(max_values=100))
    lite = SQLiteStore(tmp_path / "store.db", clock=lambda: NOW, rules=rules(max_values=100))
    base = [ev(n, 2 * HOUR + n, user="u1", page_url="/base") for n in range(3)]
    mine = [ev(10, 2 * HOUR + 60, user="u2", page_url="/mine")]
    theirs = [ev(20, 3 * HOUR, user="u3", page_url="/theirs")]
    send = first.gateway.send
    interleaved: list[int] = []

    def send_after_theirs(writes: list[Any]) -> None:
        if not interleaved:  # between this commit's read and its write
            interleaved.append(1)
            second.commit(theirs)
        send(writes)

    try:
        first.commit(base)
        first.gateway.send = send_after_theirs  # type: ignore[method-assign]
        conflicts = first.conflicts
        first.commit(mine)
        assert interleaved and first.conflicts == conflicts + 1
        for batch in (base, theirs, mine):
            lite.commit(batch)
        day = first.periods.of(DAY_START + 2 * HOUR)[2]
        assert bucket_held(first, "day", day)["admitted"]["page"] == ["/base", "/theirs", "/mine"]
        (point,) = first.breakdown("page", "day")
        assert point.events == {"/base": 3, "/mine": 1, "/theirs": 1}
        assert point.unique_users == {"/base": 1, "/mine": 1, "/theirs": 1}
        assert verify(first, first.periods, now=NOW, retention_s=None).ok
    finally:
        first.close()
        second.close()
        lite.close()


def test_a_period_with_a_values_document_keeps_its_breakdowns_there(
    settings_for: Callable[..., Any],
) -> None:
    """A store written before breakdowns moved into the buckets: a period whose values
    document exists admits into it (its counts carried there, or in its counts document);
    `verify --repair` moves them into the bucket, its admitted lists kept."""
    store = firestore_store(settings_for, rules=rules(max_values=100))
    try:
        day = store.periods.of(DAY_START + 2 * HOUR)[2]
        collection = store.db.collection(BREAKDOWNS)
        old = {
            "kind": "breakdown_values",
            "granularity": "day",
            "period": day,
            "admitted": {"page": ["/a"]},
            "events": {"page": {"0": 4}},
        }
        collection.document(values_doc_id("day", day)).set(old)
        store.commit([ev(1, 2 * HOUR, user="u1", page_url="/b")])
        store.commit([ev(2, 2 * HOUR + 1, user="u1", page_url="/a")])
        values = collection.document(values_doc_id("day", day)).get().to_dict() or {}
        assert values["admitted"]["page"] == ["/a", "/b"]
        assert "admitted" not in bucket_held(store, "day", day)
        (point,) = store.breakdown("page", "day")
        assert point.events == {"/a": 5, "/b": 1}
        store.rebuild(store.iter_raw_events())  # verify --repair: into the buckets
        assert not collection.document(values_doc_id("day", day)).get().exists
        assert bucket_held(store, "day", day)["admitted"]["page"] == ["/a", "/b"]
        (point,) = store.breakdown("page", "day")
        assert point.events == {"/a": 1, "/b": 1}  # the four events it held are no raw events
        assert verify(store, store.periods, now=NOW, retention_s=None).ok
    finally:
        store.close()


def test_a_repair_cut_short_once_the_buckets_are_gone_still_keeps_their_admitted_sets(
    settings_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The buckets hold the admitted sets: a repair writes the breakdown documents before it
    deletes them, so a second run maps every value as the commits did (counted in time order
    afresh, a late event's value would take a rank it never had)."""
    store = firestore_store(settings_for, rules=rules(max_values=2))
    try:
        store.commit([ev(1, 2 * HOUR + 10, user="u1", page_url="/x")])
        store.commit([ev(2, 2 * HOUR + 20, user="u1", page_url="/y")])
        store.commit([ev(3, 2 * HOUR + 5, user="u1", page_url="/z")])  # late: (other)
        day = store.periods.of(DAY_START + 2 * HOUR)[2]
        assert bucket_held(store, "day", day)["admitted"]["page"] == ["/x", "/y"]
        before = figures(store)
        delete_all = store.gateway.delete_all

        def delete_then_stop(collection: str, **options: Any) -> None:
            delete_all(collection, **options)
            if collection == AGGREGATES:
                raise ConnectionError("Firestore stopped answering")

        monkeypatch.setattr(store.gateway, "delete_all", delete_then_stop)
        with pytest.raises(ConnectionError):
            store.rebuild(store.iter_raw_events())
        monkeypatch.undo()
        store.rebuild(store.iter_raw_events())  # verify --repair, run again
        assert figures(store) == before
        assert bucket_held(store, "day", day)["admitted"]["page"] == ["/x", "/y"]
    finally:
        store.close()


def test_full_breakdown_documents_stay_under_256_kib() -> None:
    """The largest documents at the default K, sized by Firestore's storage-size rules: a
    values document of K values of the longest length in the widest UTF-8 (4 bytes a
    character), and a day's counts document with events, users and sessions for K values and
    `(other)` in each of 17 dimensions (the 10 fixed ones, entry and exit page, 5 properties
    of the longest names)."""
    k = BreakdownRules().max_values
    dimension = "property:" + "p" * 200
    values = {
        "kind": "breakdown_values",
        "granularity": "day",
        "period": "2026-11-01",
        "dimension": dimension,
        "admitted": [f"{n:03d}" + "😀" * (MAX_VALUE_CHARS - 3) for n in range(k)],
        "last_updated": 0.0,
    }
    prefix = f"projects/p/databases/d/documents/{BREAKDOWNS}/"
    name = prefix + breakdown_doc_id("day", "2026-11-01", dimension)
    size = doc_size_bytes(name, values)
    assert 4 * k * (MAX_VALUE_CHARS - 3) < size < 256 * 1024
    counts = {key: 2**40 for key in [*map(str, range(k)), "(other)"]}
    dimensions = [*DIMENSIONS, "entry_page", "exit_page"]
    dimensions += [f"property:{n}" + "p" * 200 for n in range(5)]
    by_dimension = dict.fromkeys(dimensions, counts)
    day = {
        "kind": "breakdown_counts",
        "granularity": "day",
        "period": "2026-11-01",
        "events": by_dimension,
        "users": by_dimension,
        "sessions": by_dimension,
        "last_updated": 0.0,
    }
    size = doc_size_bytes(prefix + counts_doc_id("day", "2026-11-01"), day)
    assert 17 * 3 * (k + 1) * 8 < size < 256 * 1024
    # A period's breakdowns in its bucket: lists up to `PERIOD_VALUES_BYTES`, and the counts
    # (at most those of a counts document), beside the bucket's own fields.
    longest = ["x" * 1000] * ((PERIOD_VALUES_BYTES - 2) // 1001)
    assert PERIOD_VALUES_BYTES - 1001 < list_bytes("d", longest) <= PERIOD_VALUES_BYTES
    maps = {name: by_dimension for name in ("events", "users", "sessions")}
    bucket = {"kind": "bucket", "granularity": "day", "period": "2026-11-01"}
    held = {**bucket, BUCKET_BREAKDOWNS_FIELD: {"admitted": {"d": longest}, **maps}}
    name = f"projects/p/databases/d/documents/{AGGREGATES}/{bucket_doc_id('day', '2026-11-01')}"
    size = doc_size_bytes(name, held) - doc_size_bytes(name, bucket)
    assert PERIOD_VALUES_BYTES < size < 256 * 1024
    assert len(DIMENSIONS) == 10


@pytest.mark.parametrize("value", ["plain", "a.b", "`x`", "~y", "__z__", "ü/ñ", "(other)"])
def test_marker_and_value_keys_round_trip(value: str) -> None:
    from behavioral_analytics.stores.firestore.breakdowns import decode_markers, encode_markers

    markers = [("2026-11-01", "property:a.b", value)]
    assert decode_markers(encode_markers(markers)) == frozenset(markers)
