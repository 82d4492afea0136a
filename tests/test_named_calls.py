"""alias and group calls: which are kept, which are refused and why, and what alias links."""

from __future__ import annotations

import json
from typing import Any

import pytest

from behavioral_analytics.events import Event, parse_message
from behavioral_analytics.identity import Link, proposal
from behavioral_analytics.named_calls import GroupCall, group_call, rejection
from behavioral_analytics.segment import Receipt, from_segment, prepare

NOW = 1_800_000_000.0


def worker_event(call: dict[str, Any]) -> Event:
    """A Segment call as the worker reads it: normalized by the collector, published, parsed."""
    payload = from_segment(call, receipt=Receipt(NOW))
    assert isinstance(payload, dict), payload
    prepared = prepare([(call, payload)], received_at=NOW)
    ((_, _, data),) = prepared.accepted
    event = parse_message(data, message_id="m", received_at=NOW)
    assert isinstance(event, Event), event
    return event


def test_an_alias_of_an_anonymous_id_links_it_as_an_identify_would() -> None:
    alias = worker_event(
        {"type": "alias", "messageId": "a-1", "userId": "user-1", "previousId": "anon-1"}
    )
    assert rejection(alias) is None
    assert proposal(alias) == Link("anon-1", "user-1", alias.timestamp, alias.key)


def test_an_alias_naming_its_own_anonymous_id_links_it() -> None:
    alias = worker_event(
        {
            "type": "alias",
            "messageId": "a-2",
            "userId": "user-1",
            "anonymousId": "anon-1",
            "previousId": "anon-1",
        }
    )
    assert rejection(alias) is None
    assert proposal(alias) == Link("anon-1", "user-1", alias.timestamp, alias.key)


def test_an_alias_of_another_user_id_is_refused_with_its_own_reason() -> None:
    """analytics.js after an identify: `previousId = user.id()`, beside the visitor's own
    anonymousId."""
    alias = worker_event(
        {
            "type": "alias",
            "messageId": "a-3",
            "userId": "user-2",
            "anonymousId": "anon-1",
            "previousId": "user-1",
        }
    )
    refused = rejection(alias)
    assert refused is not None
    assert (refused.reason, refused.event_id) == ("alias_of_user_unsupported", "a-3")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"userId": "user-1"}, "missing_field:previous_id"),
        ({"userId": "user-1", "previousId": 7}, "invalid_value:previous_id"),
        ({"anonymousId": "anon-1", "previousId": "anon-2"}, "missing_field:user_id"),
    ],
)
def test_an_alias_that_links_nothing_is_refused(fields: dict[str, Any], reason: str) -> None:
    alias = worker_event({"type": "alias", "messageId": "a-4", **fields})
    refused = rejection(alias)
    assert refused is not None and refused.reason == reason


def test_an_alias_of_the_user_itself_links_nothing_and_is_kept() -> None:
    """What analytics.js sends for `alias(newId)` once it knows a user: it stamps the call with
    the current user id, so `userId` and `previousId` are the same."""
    alias = worker_event(
        {
            "type": "alias",
            "messageId": "a-5",
            "userId": "user-1",
            "anonymousId": "anon-1",
            "previousId": "user-1",
        }
    )
    assert rejection(alias) is None
    assert proposal(alias) is None


def test_a_group_call_makes_its_sender_a_member_with_the_traits_sent() -> None:
    group = worker_event(
        {"type": "group", "messageId": "g-1", "userId": "user-1", "groupId": "acme",
         "traits": {"plan": "b2b"}}
    )  # fmt: skip
    assert rejection(group) is None
    assert proposal(group) is None
    assert group_call(group) == GroupCall("acme", "user-1", {"plan": "b2b"}, NOW, group.key)
    anonymous = worker_event(
        {"type": "group", "messageId": "g-2", "anonymousId": "anon-1", "groupId": "acme"}
    )
    assert group_call(anonymous) == GroupCall("acme", "anonymous:anon-1", {}, NOW, anonymous.key)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "missing_field:group_id"),
        ({"groupId": ""}, "missing_field:group_id"),
        ({"groupId": ["acme"]}, "invalid_value:group_id"),
        ({"groupId": "acme", "traits": "b2b"}, "invalid_type:traits"),
    ],
)
def test_a_group_call_without_a_group_is_refused(fields: dict[str, Any], reason: str) -> None:
    payload = from_segment(
        {"type": "group", "messageId": "g-3", "userId": "user-1", **fields}, receipt=Receipt(NOW)
    )
    assert isinstance(payload, dict)
    if fields.get("traits") is not None:
        payload["properties"]["traits"] = fields["traits"]
    event = parse_message(json.dumps(payload).encode(), message_id="m", received_at=NOW)
    assert isinstance(event, Event)
    refused = rejection(event)
    assert refused is not None and refused.reason == reason


def test_a_recipe_event_named_alias_or_group_is_an_ordinary_event() -> None:
    for name in ("alias", "group"):
        data = {"event_id": "e", "user_id": "u", "event_type": name,
                "properties": {"previousId": "anon-1", "groupId": "acme"}}  # fmt: skip
        event = parse_message(json.dumps(data).encode(), message_id="m", received_at=NOW)
        assert isinstance(event, Event) and event.call is None
        assert rejection(event) is None and proposal(event) is None and group_call(event) is None
