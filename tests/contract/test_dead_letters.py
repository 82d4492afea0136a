"""Dead letters: kept with their reason and original bytes, in the commit of their batch,
recorded once per message (`NewDeadLetter.fingerprint`) however often it is redelivered, paged
newest first, and marked when replayed."""

from __future__ import annotations

import pytest

from behavioral_analytics.store import InvalidCursor, NewDeadLetter, Store, StoreError
from tests.conftest import FakeClock
from tests.contract.builders import NOW, dead_letter, ev, every_page


def test_a_dead_letter_round_trips_with_its_reason_bytes_and_history(
    store: Store, clock: FakeClock
) -> None:
    sent = NewDeadLetter(
        "invalid_utf8",
        "byte 0 is not UTF-8",
        b"\xff\xfe",
        "m-9",
        {"a": "b", "x.y": "z"},
        source="broker",
        received_at=NOW - 60,
        attempts=[{"attempt": 1, "reason": "timeout"}],
    )
    clock.advance(1)
    result = store.commit([ev(1, 0, user="u1")], [sent])
    assert (result.created, result.dead_letters) == (1, 1)
    [kept] = store.dead_letters().items
    assert (kept.reason, kept.detail, kept.data, kept.message_id) == (
        "invalid_utf8",
        "byte 0 is not UTF-8",
        b"\xff\xfe",
        "m-9",
    )
    assert (kept.attributes, kept.source) == ({"a": "b", "x.y": "z"}, "broker")
    assert kept.received_at == NOW - 60
    assert (kept.attempts, kept.recorded_at, kept.replayed_at) == (sent.attempts, NOW + 1, None)
    assert kept.to_dict()["data"] is None and kept.to_dict()["data_base64"] == "//4="
    assert store.get_dead_letter(kept.id) == kept
    assert store.get_dead_letter("nope") is None
    assert store.count_dead_letters() == 1


def test_a_redelivered_rejection_is_recorded_once_and_a_replay_again(store: Store) -> None:
    first = dead_letter(1, attempts=[{"attempt": 1}])
    again = dead_letter(1, attempts=[{"attempt": 2}])  # the same message, delivered again
    assert first.fingerprint == again.fingerprint
    store.commit([ev(1, 0, user="u1")], [first, dead_letter(2)])
    store.commit([ev(1, 0, user="u1")], [again, dead_letter(2)])  # crash before the ack
    store.add_dead_letters([again])
    assert store.count_dead_letters() == 2
    replay = dead_letter(1, received_at=NOW + 60)  # replayed: a new publish, a new message
    store.add_dead_letters([replay])
    assert store.count_dead_letters() == 3
    assert sorted(d.received_at for d in store.dead_letters().items) == [NOW, NOW, NOW + 60]


def test_a_replay_refused_again_is_marked_not_replayed(store: Store) -> None:
    # `dlq replay` keeps the message id and first receipt time: the worker's new rejection is
    # the same dead letter, which must show again as not replayed (else nothing traces it).
    refused = dead_letter(1)
    store.commit([ev(1, 0, user="u1")], [refused, dead_letter(2)])
    ids = {d.message_id: d.id for d in store.dead_letters().items}
    store.mark_replayed(list(ids.values()), NOW + 5)
    store.commit([ev(2, 0, user="u1")], [dead_letter(1)])  # the replay of 1, refused again
    store.add_dead_letters([dead_letter(1)])  # or dead-lettered by the broker, drained
    replayed = {d.message_id: d.replayed_at for d in store.dead_letters().items}
    assert store.count_dead_letters() == 2
    assert replayed == {refused.message_id: None, dead_letter(2).message_id: NOW + 5}


def test_dead_letters_page_newest_first(store: Store, clock: FakeClock) -> None:
    older = [dead_letter(i) for i in range(4)]
    newer = [dead_letter(i) for i in range(4, 7)]
    store.add_dead_letters(older)
    clock.advance(10)
    store.commit([], newer)
    pages = every_page(lambda cursor: store.dead_letters(limit=2, cursor=cursor))
    assert [len(page) for page in pages] == [2, 2, 2, 1]
    seen = [d.message_id for page in pages for d in page]
    assert sorted(seen[:3]) == ["m4", "m5", "m6"] and sorted(seen[3:]) == ["m0", "m1", "m2", "m3"]
    assert [d.recorded_at for page in pages for d in page] == [NOW + 10] * 3 + [NOW] * 4


@pytest.mark.parametrize("cursor", ["garbage!", "-1"])
def test_a_dead_letter_cursor_the_store_did_not_hand_out_is_refused(
    store: Store, cursor: str
) -> None:
    store.add_dead_letters([dead_letter(1)])
    with pytest.raises(InvalidCursor):
        store.dead_letters(cursor=cursor)


def test_mark_replayed_stamps_only_the_named_dead_letters(store: Store) -> None:
    store.add_dead_letters([dead_letter(i) for i in range(3)])
    ids = {d.message_id: d.id for d in store.dead_letters().items}
    store.mark_replayed([ids["m0"], ids["m2"]], NOW + 30)
    replayed = {d.message_id: d.replayed_at for d in store.dead_letters().items}
    assert replayed == {"m0": NOW + 30, "m1": None, "m2": NOW + 30}
    store.mark_replayed([], NOW + 40)
    assert store.get_dead_letter(ids["m1"]).replayed_at is None  # type: ignore[union-attr]


def test_expired_dead_letters_are_purged_with_counts_kept_or_expired_by_the_store(
    store: Store, clock: FakeClock, backend: str
) -> None:
    """They hold original bytes: 30 days by default, then gone. SQLite purges them itself
    (`purge_expired`, `purge_dead_letters`) and keeps counts by reason; Firestore's TTL
    policy on `expire_at` deletes them, so it refuses a purge by hand."""
    store.commit([ev(1, 0, user="u1")], [dead_letter(1)])
    store.add_dead_letters([dead_letter(2)])
    clock.advance(30 * 86400 + 1)
    if backend == "firestore":
        with pytest.raises(StoreError, match="TTL"):
            store.purge_dead_letters(clock())
        return
    store.add_dead_letters([dead_letter(3, reason="too_deep")])
    assert store.purge_dead_letters(clock()) == {"not_json": 2}  # counts ever purged
    assert [d.message_id for d in store.dead_letters().items] == ["m3"]
    clock.advance(30 * 86400)
    assert store.purge_dead_letters(clock()) == {"not_json": 2, "too_deep": 1}
    assert store.count_dead_letters() == 0


def test_a_purge_of_letters_recorded_before_a_time_takes_the_expired_too(
    store: Store, clock: FakeClock, backend: str
) -> None:
    """`dlq purge --older-than-days N` with N beyond the retention: the expired letters go as
    well as those recorded before the time, not only the latter."""
    if backend == "firestore":
        pytest.skip("Firestore's TTL policy expires dead letters; a purge by hand is refused")
    store.add_dead_letters([dead_letter(1)])
    clock.advance(20 * 86400)
    store.add_dead_letters([dead_letter(2, reason="too_deep")])
    clock.advance(11 * 86400)  # m1 expired (31 days, retention 30), m2 not (11 days)
    store.purge_dead_letters(clock(), before=clock() - 40 * 86400)  # recorded 40+ days ago: none
    assert store.count_dead_letters() == 1
    assert [d.message_id for d in store.dead_letters().items] == ["m2"]
    store.purge_dead_letters(clock(), before=clock() - 5 * 86400)
    assert store.count_dead_letters() == 0
