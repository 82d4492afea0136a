"""`wire.merged`: a commit's writes to one document made one write (Firestore bills each write
of a commit, also a second to the same document): fields and masks united, transforms kept in
order, the one precondition kept; what a merge cannot join stays apart."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from behavioral_analytics.stores.firestore.wire import delete, from_value, merged, write

BUCKET = "projects/p/databases/(default)/documents/analytics_aggregates/daily_2026-12-06"
OTHER = "projects/p/databases/(default)/documents/analytics_aggregates/user_u1"


def test_two_updates_of_a_document_become_one_in_the_place_of_the_first() -> None:
    fields = {"kind": "bucket", "period": "2026-12-06"}
    counts = write(BUCKET, fields, mask=list(fields), transforms=[("total_events", "increment", 3)])
    person = write(OTHER, {"user_id": "u1"}, mask=["user_id"])
    held = {**fields, "breakdowns": {"admitted": {"page": ["/a", "/b"]}}}
    stamp = Timestamp(seconds=7)  # the update time a commit read
    breakdowns = write(
        BUCKET,
        held,
        mask=[*fields, "breakdowns.admitted.page"],
        transforms=[("breakdowns.events.page.`1`", "increment", 2)],
        update_time=stamp,
    )
    out = merged([counts, person, breakdowns])
    assert [w.update.name for w in out] == [BUCKET, OTHER]
    (one, _) = out
    assert list(one.update_mask.field_paths) == ["kind", "period", "breakdowns.admitted.page"]
    assert [t.field_path for t in one.update_transforms] == [
        "total_events",
        "breakdowns.events.page.`1`",
    ]
    assert from_value(one.update.fields["breakdowns"]) == {"admitted": {"page": ["/a", "/b"]}}
    assert one.current_document.update_time.seconds == 7


def test_maps_of_both_writes_are_united_key_by_key() -> None:
    first = write(BUCKET, {"breakdowns": {"admitted": {"page": ["/a"]}}}, mask=["x"])
    second = write(BUCKET, {"breakdowns": {"admitted": {"device": ["mobile"]}}}, mask=["y"])
    (one,) = merged([first, second])
    assert from_value(one.update.fields["breakdowns"]) == {
        "admitted": {"page": ["/a"], "device": ["mobile"]}
    }
    assert list(one.update_mask.field_paths) == ["x", "y"]


def test_what_a_merge_cannot_join_stays_apart() -> None:
    created = write(BUCKET, {"kind": "bucket"}, exists=False)  # no mask: replaces the document
    first = write(BUCKET, {}, mask=["a"], exists=True)
    second = write(BUCKET, {}, mask=["b"], exists=False)  # a second precondition
    gone = delete(BUCKET)
    assert merged([created, first, second, gone]) == [created, first, second, gone]
