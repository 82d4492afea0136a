"""What is derived at ingestion (`$derived`): the parsers' readings of real user agents and
addresses, the deriver, and where it runs — the collector's two paths, before IPs are
truncated, and the worker for events published without it."""

from __future__ import annotations

import json
from importlib.metadata import version
from typing import Any

import msgspec
import pytest

from behavioral_analytics.behavior import BehaviorRules
from behavioral_analytics.dimensions import DERIVED, dimension_values
from behavioral_analytics.enrich import Deriver, build_deriver
from behavioral_analytics.enrich.countries import client_address, country_of
from behavioral_analytics.enrich.user_agents import MAX_AGENT_CHARS, agent_facts
from behavioral_analytics.events import Event, Limits, parse_message, validate_event
from behavioral_analytics.segment import (
    Receipt,
    decode_batch,
    from_segment,
    prepare,
    prepare_calls,
)

NOW = 1_800_000_000.0
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/16.6 Mobile/15E148 Safari/604.1"
)
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
ANDROID_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
MAC_FIREFOX = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7; rv:125.0) Gecko/20100101 Firefox/125.0"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
PARSERS = {
    "user_agent": f"{version('ua-parser')}/{version('ua-parser-builtins')}",
    "geo": version("iptocc"),
}


# -- the parsers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agent", "facts"),
    [
        (IPHONE, {"browser": "Mobile Safari", "os": "iOS", "device": "mobile"}),
        (IPAD, {"browser": "Mobile Safari", "os": "iOS", "device": "tablet"}),
        (WINDOWS_CHROME, {"browser": "Chrome", "os": "Windows", "device": "desktop"}),
        (ANDROID_PHONE, {"browser": "Chrome Mobile", "os": "Android", "device": "mobile"}),
        (ANDROID_TABLET, {"browser": "Chrome", "os": "Android", "device": "tablet"}),
        (MAC_FIREFOX, {"browser": "Firefox", "os": "Mac OS X", "device": "desktop"}),
        (GOOGLEBOT, {"browser": "Googlebot", "device": "bot"}),
        ("BehavioralAnalytics/1.0", {}),
        ("", {}),
    ],
)
def test_user_agents(agent: str, facts: dict[str, str]) -> None:
    assert dict(agent_facts(agent)) == facts


def test_a_long_user_agent_is_read_up_to_the_limit() -> None:
    padded = WINDOWS_CHROME + " " + "x" * 5000
    assert dict(agent_facts(padded)) == dict(agent_facts(padded[:MAX_AGENT_CHARS]))
    assert dict(agent_facts(padded))["browser"] == "Chrome"


@pytest.mark.parametrize(
    ("address", "country"),
    [
        ("8.8.8.8", "US"),
        ("1.0.16.1", "JP"),
        ("193.0.6.139", "NL"),
        ("2001:67c:2e8::1", "NL"),
        ("8.8.8.8:443", "US"),
        ("[2001:67c:2e8::1]:443", "NL"),
        ("::ffff:8.8.8.8", "US"),
        ("10.0.0.1", None),  # private
        ("127.0.0.1", None),
        ("fe80::1%eth0", None),  # link-local, with a zone
        ("2001:db8::1", None),  # documentation range
        ("unknown", None),
        ("[::1", None),
    ],
)
def test_countries(address: str, country: str | None) -> None:
    assert country_of(address) == country


@pytest.mark.parametrize(
    ("properties", "address"),
    [
        ({"ip": "8.8.8.8, 10.0.0.1"}, "8.8.8.8"),
        ({"ip_address": " 1.0.16.1 "}, "1.0.16.1"),
        ({"context": {"ip": "193.0.6.139"}}, "193.0.6.139"),
        ({"ip": "8.8.8.8", "context": {"ip": "1.0.16.1"}}, "8.8.8.8"),
        ({"ip": 42, "context": {"ip": "1.0.16.1"}}, "1.0.16.1"),
        ({"context": "x"}, None),
        ({}, None),
    ],
)
def test_where_the_address_is_read(properties: dict[str, Any], address: str | None) -> None:
    assert client_address(properties) == address


# -- the deriver ------------------------------------------------------------------------------


def test_the_deriver_sets_what_is_known_and_the_parsers_versions() -> None:
    recipe = {"user_agent": IPHONE, "ip": "1.0.16.1"}
    build_deriver()(recipe)
    assert recipe[DERIVED] == {
        "browser": "Mobile Safari",
        "os": "iOS",
        "device": "mobile",
        "country": "JP",
        "parsers": PARSERS,
    }
    segment = {"context": {"userAgent": WINDOWS_CHROME, "ip": "10.1.2.3"}}
    build_deriver()(segment)
    assert segment[DERIVED] == {
        "browser": "Chrome",
        "os": "Windows",
        "device": "desktop",
        "parsers": PARSERS,
    }
    bare: dict[str, Any] = {}
    build_deriver()(bare)
    assert bare == {DERIVED: {"parsers": PARSERS}}


def test_the_deriver_replaces_what_a_client_sent() -> None:
    properties = {"user_agent": IPHONE, DERIVED: {"browser": "Netscape", "country": "AQ"}}
    build_deriver()(properties)
    assert properties[DERIVED]["browser"] == "Mobile Safari"
    assert "country" not in properties[DERIVED]


def test_the_dimensions_read_the_derived_values() -> None:
    payload = {"user_id": "u", "event_type": "x", "timestamp": NOW, "properties": {}}
    payload["properties"] = {"user_agent": ANDROID_TABLET, "ip": "193.0.6.139"}
    event = validate_event(payload, message_id="m", received_at=NOW)
    assert isinstance(event, Event)
    build_deriver()(event.properties)
    got = dimension_values(event, ("browser", "os", "device", "country"))
    assert got == {"browser": "Chrome", "os": "Android", "device": "tablet", "country": "NL"}


# -- the collector ----------------------------------------------------------------------------


class Spy:
    """A deriver that records the properties it was given (as they were then)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def __call__(self, properties: dict[str, Any]) -> None:
        self.seen.append(json.loads(json.dumps(properties)))
        properties[DERIVED] = {"parsers": {"user_agent": "spy 1"}, "country": "XX"}


def _call(**extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "messageId": "m-1",
        "userId": "u-1",
        "event": "Signed Up",
        "context": {"ip": "193.0.6.139", "userAgent": IPHONE},
        **extra,
    }


def _slow(message: dict[str, Any], **options: Any) -> tuple[list[bytes], list[str]]:
    payload = from_segment(message, receipt=Receipt(NOW))
    prepared = prepare([(message, payload)], received_at=NOW, new_id=lambda: "id", **options)
    return [data for _, _, data in prepared.accepted], [r.reason for _, r, _ in prepared.rejected]


def _fast(message: dict[str, Any], **options: Any) -> list[bytes] | None:
    batch = decode_batch(msgspec.json.encode({"batch": [message]}))
    outcome = prepare_calls(
        batch.batch, None, batch.context, receipt=Receipt(NOW), new_id=lambda: "id", **options
    )
    return None if outcome is None else outcome.data


def test_the_collector_derives_before_it_truncates_the_address() -> None:
    spy = Spy()
    (data,), rejected = _slow(_call(), derive=spy, truncate_ips=True)
    assert rejected == []
    assert spy.seen[0]["context"]["ip"] == "193.0.6.139"
    properties = json.loads(data)["properties"]
    assert properties["context"]["ip"] == "193.0.6.0"
    assert properties[DERIVED]["country"] == "XX"
    spy = Spy()
    (fast,) = _fast(_call(), derive=spy, truncate_ips=True) or [b""]
    assert spy.seen[0]["context"]["ip"] == "193.0.6.139"
    assert fast == data


@pytest.mark.parametrize(
    "message",
    [
        _call(),
        _call(properties={DERIVED: {"browser": "sent by the client"}, "plan": "pro"}),
        _call(context=None, properties={}),
        {"type": "page", "userId": "u", "context": {"userAgent": IPAD, "ip": "8.8.8.8"}},
    ],
)
def test_both_paths_publish_the_same_derived_bytes(message: dict[str, Any]) -> None:
    slow, rejected = _slow(message, derive=Deriver(), truncate_ips=True)
    assert rejected == []
    assert _fast(message, derive=Deriver(), truncate_ips=True) == slow
    derived = json.loads(slow[0])["properties"][DERIVED]
    assert derived["parsers"] == PARSERS
    assert derived.get("browser") != "sent by the client"


def test_without_a_deriver_the_collector_leaves_properties_alone() -> None:
    (data,), _ = _slow(_call())
    assert DERIVED not in json.loads(data)["properties"]


def test_an_event_at_the_property_limit_is_left_for_the_worker() -> None:
    limits = Limits(max_properties=3)
    message = _call(properties={"a": 1, "b": 2})  # with the context: 3 properties
    (data,), rejected = _slow(message, derive=Deriver(), limits=limits)
    assert rejected == []
    properties = json.loads(data)["properties"]
    assert DERIVED not in properties
    assert _fast(message, derive=Deriver(), limits=limits) == [data]
    event = parse_message(data, message_id="m", received_at=NOW, limits=limits)
    assert isinstance(event, Event), event  # the worker accepts it, then derives
    BehaviorRules(derive=Deriver()).enrich(event)
    assert event.properties[DERIVED]["browser"] == "Mobile Safari"


def test_an_event_too_large_only_with_derived_is_published_without() -> None:
    plain, _ = _slow(_call(properties={"pad": ""}))
    size = len(plain[0])
    limits = Limits(max_message_bytes=size + 50)  # `$derived` adds more than 50 bytes
    (data,), rejected = _slow(_call(properties={"pad": ""}), derive=Deriver(), limits=limits)
    assert rejected == []
    assert data == plain[0]
    assert _fast(_call(properties={"pad": ""}), derive=Deriver(), limits=limits) is None


# -- the worker -------------------------------------------------------------------------------


def _event(properties: dict[str, Any]) -> Event:
    payload = {"user_id": "u", "event_type": "x", "timestamp": NOW, "properties": properties}
    event = validate_event(payload, message_id="m", received_at=NOW)
    assert isinstance(event, Event)
    return event


def test_the_worker_derives_a_direct_publish_before_truncating() -> None:
    spy = Spy()
    event = _event({"ip": "193.0.6.139", "user_agent": IPHONE})
    BehaviorRules(derive=spy).enrich(event)
    assert spy.seen[0]["ip"] == "193.0.6.139"
    assert event.properties["ip"] == "193.0.6.0"
    assert event.properties[DERIVED]["country"] == "XX"


def test_the_worker_keeps_the_collectors_derived_values() -> None:
    collected = {"browser": "Chrome", "country": "NL", "parsers": {"user_agent": "x 1"}}
    event = _event({"ip": "193.0.6.0", DERIVED: collected})
    spy = Spy()
    BehaviorRules(derive=spy).enrich(event)
    assert spy.seen == []
    assert event.properties[DERIVED] == collected


@pytest.mark.parametrize("sent", [{"browser": "Netscape"}, "Chrome", None])
def test_the_worker_replaces_a_derived_value_not_of_ingestions_shape(sent: Any) -> None:
    event = _event({"user_agent": IPHONE, DERIVED: sent})
    BehaviorRules(derive=Deriver()).enrich(event)
    assert event.properties[DERIVED]["browser"] == "Mobile Safari"
    assert event.properties[DERIVED]["parsers"] == PARSERS


def test_without_a_deriver_the_worker_derives_nothing() -> None:
    event = _event({"user_agent": IPHONE, "ip": "8.8.8.8"})
    BehaviorRules().enrich(event)
    assert DERIVED not in event.properties


def test_agents_are_parsed_by_the_rust_resolver() -> None:
    """ua-parser falls back to its pure-Python resolver, about 35 times slower on an agent it
    has not seen, when ua-parser-rs (its `regex` extra, pinned in pyproject.toml) is missing."""
    import ua_parser

    assert ua_parser.RegexResolver is not None
