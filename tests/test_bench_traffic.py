"""The benchmarks' live input signs people in as a site does (`bench/traffic.py`, `identified`):
the share drawn, anonymous events only before the sign-in and in the first session, one
`identify` with both ids just before the event it precedes, every generated event kept."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from typing import Any

from behavioral_analytics.loadgen import iter_messages
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

import traffic


def test_a_share_of_people_arrive_anonymous_and_sign_in_during_their_first_session() -> None:
    config = traffic.live_config(6000, 1500, 17)
    plain = [json.loads(data) for _, data in traffic.generator_pairs(config, 1_796_000_000.0)]
    sent = [json.loads(data) for _, data in traffic.timed(config, 1_796_000_000.0)]
    identifies = [p for p in sent if p["event_type"] == "identify"]
    signed_in = {p["user_id"] for p in identifies}
    assert len(signed_in) == len(identifies)  # one sign-in per person
    people = {p["user_id"] for p in plain if "user_id" in p}
    anonymous = {p["anonymous_id"] for p in sent if "user_id" not in p and "anonymous_id" in p}
    arrived_anonymous = {a for a in anonymous if a.startswith("anon_")}
    assert 0.2 < len(arrived_anonymous) / len(people) < 0.4  # IDENTIFY_SHARE, 30 %
    assert {f"anon_{user}" for user in signed_in} <= arrived_anonymous

    # Every generated message is sent once, in order; an identify comes just before an event
    # of its person's, in that event's session, a millisecond earlier.
    kept: list[dict[str, Any]] = []
    state: dict[str, str] = {}  # person → "anonymous" | "signed in"
    first_session: dict[str, str] = {}
    for i, payload in enumerate(sent):
        if payload["event_type"] == "identify":
            nxt = sent[i + 1]
            user = payload["user_id"]
            assert (nxt["user_id"], nxt["session_id"]) == (user, payload["session_id"])
            assert payload["anonymous_id"] == f"anon_{user}"
            assert round(nxt["timestamp"] - payload["timestamp"], 3) == 0.001
            assert state.pop(user) == "anonymous"
            state[user] = "signed in"
            continue
        anonymous_id = payload.get("anonymous_id", "")
        if anonymous_id.startswith("anon_"):
            user = anonymous_id.removeprefix("anon_")
            first_session.setdefault(user, payload["session_id"])
            if "user_id" not in payload:
                assert state.setdefault(user, "anonymous") == "anonymous"
                assert payload["session_id"] == first_session[user]
            else:
                assert state.get(user) == "signed in"
            payload = {**payload, "user_id": user}
            del payload["anonymous_id"]
            payload = {k: payload[k] for k in plain[len(kept)]}
        kept.append(payload)
    assert kept == plain


def test_the_generators_malformed_messages_pass_unchanged() -> None:
    """`loadgen` makes malformed messages by default: not JSON, a time that is no number."""
    config = replace(traffic.live_config(3000, 300, 5), malformed_rate=0.05)
    plain = [data for _, data in traffic.generator_pairs(config, 1_796_000_000.0)]
    sent = [
        data for _, data in traffic.identified(traffic.generator_pairs(config, 1_796_000_000.0), 5)
    ]
    malformed = [data for data in plain if traffic._event(data) is None]
    assert len(malformed) > 50
    assert [data for data in sent if traffic._event(data) is None] == malformed


def test_the_live_input_keeps_the_bytes_the_readmes_figures_were_measured_on() -> None:
    # The generator's bytes for the live model, as they were when the README's live rows were
    # measured: a change of the generator that moves them moves every figure, so it must be
    # deliberate (a new digest here, and the figures measured again).
    config = replace(traffic.live_config(3000, 2000, 17), start=1_764_320_000.0)
    digest = hashlib.sha256(b"".join(m.data for m in iter_messages(config)))
    assert digest.hexdigest() == "8a469d709868889f77a7029a679c2493387adb9bb26fbbe2414aca25ac7df0b8"
