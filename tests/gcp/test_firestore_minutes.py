"""Minute counts in their hour's bucket document (`stores/firestore/minutes.py`), against the
emulator: no document of their own, the same series as the SQLite store for the same events,
a commit split when an hour's minutes would pass the transforms limit, `forget` in chunks that
fit it, and `minute_…` documents of the earlier layout read and then moved by a rebuild."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.cloud import firestore

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.events import Event
from behavioral_analytics.store import SeriesPoint, Store
from behavioral_analytics.stores.firestore import FirestoreStore
from behavioral_analytics.stores.firestore.schema import AGGREGATES
from behavioral_analytics.stores.sqlite import SQLiteStore
from behavioral_analytics.verification import verify
from tests.faults import BOT_AGENT, behavior_event

NOW = 1_764_320_400.0  # on the hour
HOUR = 3600.0
TYPES = ("page_view", "button_click", "purchase", "search", "signup", "login", "share")


def firestore_store(settings_for: Callable[..., Any]) -> FirestoreStore:
    settings = settings_for()
    return FirestoreStore(
        firestore.Client(project=settings.project, database=settings.firestore_database),
        clock=lambda: NOW,
        rules=BehaviorRules(),
    )


def traffic(seed: int, n: int, start: float, span_s: float) -> list[Event]:
    """`n` events of five people and a crawler, of several types, over `span_s` seconds;
    their ids differ by `seed`."""
    rng = random.Random(seed)
    events = []
    for i in range(seed * 10_000, seed * 10_000 + n):
        at = start + rng.uniform(0, span_s)
        if rng.random() < 0.1:
            events.append(behavior_event(i, at, received_at=NOW, anon="bot", user_agent=BOT_AGENT))
        else:
            who = f"u{rng.randrange(5)}"
            events.append(behavior_event(i, at, received_at=NOW, user=who, kind=rng.choice(TYPES)))
    return events


def most_transforms(fs: FirestoreStore) -> list[int]:
    """Records, per request `fs` sends from now on, the most field transforms one document
    gets in it."""
    sent: list[int] = []
    send = fs.gateway.send

    def counting(writes: list[Any], *args: Any, **kwargs: Any) -> Any:
        per_document: dict[str, int] = {}
        for w in writes:
            name = w.update.name or w.delete
            per_document[name] = per_document.get(name, 0) + len(w.update_transforms)
        sent.append(max(per_document.values(), default=0))
        return send(writes, *args, **kwargs)

    fs.gateway.send = counting  # type: ignore[method-assign]  # a spy on the one send path
    return sent


def minute_series(store: Store) -> list[SeriesPoint]:
    return store.series("minute", "2025-11-27-00-00", "2025-11-29-00-00")


def bucket_ids(store: FirestoreStore) -> list[str]:
    return [
        snap.id
        for snap in store.db.collection(AGGREGATES).stream()
        if (snap.to_dict() or {}).get("kind") == "bucket"
    ]


def test_minutes_are_kept_in_their_hours_document(settings_for, tmp_path: Path) -> None:
    fs = firestore_store(settings_for)
    lite = SQLiteStore(tmp_path / "store.db", clock=lambda: NOW, rules=BehaviorRules())
    events = traffic(1, 300, NOW - 2 * HOUR, 2 * HOUR)
    for store in (fs, lite):
        for start in range(0, len(events), 50):  # later batches reach minutes already written
            store.commit(events[start : start + 50])
    ids = bucket_ids(fs)
    assert not [i for i in ids if i.startswith("minute_")], "a minute has a document of its own"
    series = minute_series(fs)
    assert len(series) > 60
    assert series == minute_series(lite)
    hour = fs.periods.label("hour", NOW - HOUR)
    stored = fs.db.collection(AGGREGATES).document(f"hourly_{hour}").get().to_dict() or {}
    minutes = stored["minutes"]
    assert sum(m.get("total_events", 0) for m in minutes.values()) == stored["total_events"]
    assert sum(m.get("bot_events", 0) for m in minutes.values()) == stored["bot_events"]
    one = series[len(series) // 2]
    assert fs.series("minute", one.period, one.period) == [one]
    assert verify(fs, fs.periods, now=NOW, retention_s=None).ok
    lite.close()


def test_an_hours_minutes_past_the_transforms_limit_split_the_commit(
    settings_for, tmp_path: Path
) -> None:
    fs = firestore_store(settings_for)
    lite = SQLiteStore(tmp_path / "store.db", clock=lambda: NOW, rules=BehaviorRules())
    fs.max_transforms_per_doc = 60  # 51 after the fixed ones: about five minutes of seven types
    sent = most_transforms(fs)
    events = traffic(2, 400, NOW - HOUR, HOUR)  # one hour, its sixty minutes
    assert fs.commit(events).created == 400
    assert len(sent) >= 8
    assert max(sent) <= 60
    lite.commit(events)
    assert minute_series(fs) == minute_series(lite)
    assert verify(fs, fs.periods, now=NOW, retention_s=None).ok
    fs.max_transforms_per_doc = 450
    lite.close()


def test_forget_deletes_in_chunks_whose_minutes_fit_the_limit(settings_for, tmp_path: Path) -> None:
    fs = firestore_store(settings_for)
    lite = SQLiteStore(tmp_path / "store.db", clock=lambda: NOW, rules=BehaviorRules())
    events = traffic(3, 400, NOW - HOUR, HOUR)
    fs.commit(events)
    lite.commit(events)
    fs.max_transforms_per_doc = 60
    sent = most_transforms(fs)
    assert fs.forget("u1").raw_events == lite.forget("u1").raw_events > 40
    assert len(sent) >= 4
    assert max(sent) <= 60
    assert minute_series(fs) == minute_series(lite)
    assert verify(fs, fs.periods, now=NOW, retention_s=None).ok
    fs.max_transforms_per_doc = 450
    lite.close()


def test_minute_documents_of_the_earlier_layout_are_read_then_moved(settings_for) -> None:
    fs = firestore_store(settings_for)
    fs.commit(traffic(4, 120, NOW - HOUR, HOUR))
    before = minute_series(fs)
    # The earlier layout: each minute in a `minute_{label}` document, none in the hour's.
    aggregates = fs.db.collection(AGGREGATES)
    for snap in aggregates.stream():
        data = snap.to_dict() or {}
        if data.get("kind") != "bucket" or "minutes" not in data:
            continue
        for minute, fields in data["minutes"].items():
            label = f"{data['period']}-{minute}"
            aggregates.document(f"minute_{label}").set(
                {"kind": "bucket", "granularity": "minute", "period": label, **fields}
            )
        snap.reference.update({"minutes": firestore.DELETE_FIELD})
    assert [i for i in bucket_ids(fs) if i.startswith("minute_")]
    assert minute_series(fs) == before
    assert verify(fs, fs.periods, now=NOW, retention_s=None).ok
    more = traffic(5, 60, NOW - HOUR, HOUR)
    fs.commit(more)  # new counts land in the hours' maps
    after = minute_series(fs)
    humans = sum(1 for e in more if e.user_id)
    assert sum(p.total_events for p in after) == sum(p.total_events for p in before) + humans
    assert verify(fs, fs.periods, now=NOW, retention_s=None).ok
    fs.rebuild(fs.iter_raw_events())
    assert not [i for i in bucket_ids(fs) if i.startswith("minute_")]
    assert minute_series(fs) == after
    assert verify(fs, fs.periods, now=NOW, retention_s=None).ok
