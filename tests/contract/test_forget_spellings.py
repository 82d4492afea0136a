"""`forget` finds every spelling of an id that parses to the same person in the dead letters'
original bytes: an integer and its decimal string, JSON escapes, Segment's who-fields, alias's
`previousId`, a Segment `batch`; and leaves the dead letters of other people alone (issue #16,
case 1; docs/behavior.md, "Forgetting a user")."""

from __future__ import annotations

import json

from behavioral_analytics.store import NewDeadLetter
from tests.contract.builders import HOUR, NOW, MakeStore, ev


def _letters(*payloads: bytes, received_at: float = 0.0) -> list[NewDeadLetter]:
    return [
        NewDeadLetter("invalid_value", "", data, f"m{i}", received_at=received_at)
        for i, data in enumerate(payloads)
    ]


def test_forget_finds_every_spelling_of_the_id_in_dead_letters(make_store: MakeStore) -> None:
    store = make_store(identity_window_s=HOUR)
    store.commit([ev(1, 0, anon="dev-9"), ev(2, 60, user="12345", anon="dev-9", kind="identify")])
    doomed = [
        b'{"event_id":"bad3","user_id":12345,"timestamp":1,'
        b'"properties":{"email":"n@example.test"}}',
        json.dumps({"type": "track", "userId": 12345, "event": ""}).encode(),
        b'{"type":"track","userId":"\\u0031\\u0032345","event":""}',
        json.dumps({"type": "alias", "previousId": 12345, "userId": "x"}).encode(),
        json.dumps({"type": "track", "anonymousId": "dev-9", "event": ""}).encode(),
        json.dumps({"batch": [{"type": "track", "userId": 12345, "event": ""}]}).encode(),
        json.dumps([{"user_id": "12345", "event_type": 7}]).encode(),
        json.dumps({"call": "alias", "properties": {"previousId": "dev-9"}}).encode(),
        b"not json user_id=12345",
    ]
    kept = [
        json.dumps({"type": "track", "userId": 123456, "event": ""}).encode(),
        json.dumps({"type": "track", "userId": True, "event": "12345"}).encode(),
        json.dumps({"user_id": 12345.5, "event_type": "x"}).encode(),
        json.dumps({"user_id": "someone", "event_type": "12345"}).encode(),
        json.dumps({"anonymous_id": 12345, "event_type": "x"}).encode(),
        b"not json at all",
    ]
    store.add_dead_letters(_letters(*doomed, *kept))

    report = store.forget("12345")

    assert report.dead_letters == len(doomed)
    assert sorted(bytes(letter.data) for letter in store.dead_letters(limit=100).items) == sorted(
        kept
    )

    # The same messages still on their way when the forget ran (published before it): none is
    # recorded, in any spelling. Bytes that are not JSON are left out: only SQLite reads their
    # text at commit (docs/behavior.md, step 6).
    result = store.commit([], _letters(*doomed[:-1], received_at=NOW))
    assert (result.letters_forgotten, result.dead_letters) == (len(doomed) - 1, 0)
    assert sorted(bytes(letter.data) for letter in store.dead_letters(limit=100).items) == sorted(
        kept
    )
