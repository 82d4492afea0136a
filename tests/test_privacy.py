"""IP truncation whatever the form of the value, and hashed-field paths that match keys with
dots (docs/behavior.md, "Privacy")."""

from __future__ import annotations

import ipaddress
import json
from random import Random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from behavioral_analytics.privacy import (
    hash_value,
    mentions,
    named_ids,
    scrub,
    truncate_ip,
    who_first,
)

SALT = b"s" * 16


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("203.0.113.77:8443", "203.0.113.0"),
        (" 203.0.113.77 ", "203.0.113.0"),
        ("203.0.113.77, 10.0.0.1", "203.0.113.0, 10.0.0.0"),
        (
            "203.0.113.77,198.51.100.9:80,[2001:db8:1:2::1]",
            "203.0.113.0, 198.51.100.0, 2001:db8:1::",
        ),
        ("2001:db8:1234:5678::1", "2001:db8:1234::"),
        ("[2001:db8:1:2::1]:443", "2001:db8:1::"),
        ("[2001:db8:1:2::1]", "2001:db8:1::"),
        ("fe80::1:2%eth0", "fe80::"),
        ("::ffff:198.51.100.7", "198.51.100.0"),
        ("[::ffff:198.51.100.7]:8080", "198.51.100.0"),
        ("203.0.113.0", "203.0.113.0"),
        ("203.0.113.0, 10.0.0.0", "203.0.113.0, 10.0.0.0"),
    ],
)
def test_every_form_of_an_address_is_truncated_and_truncating_twice_changes_nothing(
    raw: str, kept: str
) -> None:
    assert truncate_ip(raw) == kept
    assert truncate_ip(kept) == kept


@given(
    st.one_of(
        st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n))),
        st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n))),
    )
)
def test_truncation_is_the_network_address_of_the_standard_library(text: str) -> None:
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    expected = str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
    assert truncate_ip(text) == expected
    assert truncate_ip(f"{text}, {text}") == f"{expected}, {expected}"


@pytest.mark.parametrize(
    "raw",
    [
        "not an ip",
        "unknown",
        "203.0.113.77, unknown",
        "",
        "203.0.113.77,",
        "host.example:80",
        "203.0.113.77:http",
        "[2001:db8::1",
        "[2001:db8::1]x",
        "203.0.113.777",
        3405803777,
        ["203.0.113.77"],
        {"v": "203.0.113.77"},
        True,
    ],
)
def test_a_value_that_cannot_be_read_as_addresses_is_removed(raw: Any) -> None:
    assert truncate_ip(raw) is None
    properties: dict[str, Any] = {"ip": raw, "context": {"ip": raw}, "other": raw}
    assert scrub(properties, truncate_ips=True)
    assert properties == {"context": {}, "other": raw}


def test_the_issue_case_host_port_and_forwarded_for_list() -> None:
    properties: dict[str, Any] = {
        "ip": "203.0.113.77:8443",
        "context": {"ip": "203.0.113.77, 10.0.0.1"},
    }
    assert scrub(properties, truncate_ips=True)
    assert properties == {"ip": "203.0.113.0", "context": {"ip": "203.0.113.0, 10.0.0.0"}}


def test_null_stays_and_flattened_ip_keys_are_ip_fields_too() -> None:
    properties: dict[str, Any] = {"ip_address": None, "context.ip": "198.51.100.23:1"}
    assert scrub(properties, truncate_ips=True)
    assert properties == {"ip_address": None, "context.ip": "198.51.100.0"}
    assert not scrub(properties, truncate_ips=True)


@pytest.mark.parametrize(
    "name",
    ["ipAddress", "IP", "$ip", "IpAddress", "ip-address", "client_ip", "user_ipaddress"],
)
def test_an_ip_field_is_one_whatever_its_spelling(name: str) -> None:
    properties: dict[str, Any] = {
        name: "203.0.113.77",
        "context": {name: "2001:db8:1:2::1"},
        f"context.{name}": "198.51.100.23",
    }
    assert scrub(properties, truncate_ips=True)
    assert properties == {
        name: "203.0.113.0",
        "context": {name: "2001:db8:1::"},
        f"context.{name}": "198.51.100.0",
    }


def test_a_key_plain_inside_a_context_is_still_judged_at_the_top() -> None:
    """`context.ip` inside a context names no IP field, at the top of the properties it does:
    the keys remembered as plain in one place must not pass it over in the other."""
    first: dict[str, Any] = {"context": {"context.ip": "x", "client.ip": "y"}}
    scrub(first, truncate_ips=True)
    second: dict[str, Any] = {"context.ip": "203.0.113.77"}
    assert scrub(second, truncate_ips=True)
    assert second == {"context.ip": "203.0.113.0"}


def test_a_name_that_merely_holds_ip_is_not_an_ip_field() -> None:
    properties: dict[str, Any] = {
        "zip": "10115",
        "tip": "203.0.113.77",
        "ip_country": "DE",
        "shipping": {"ip": "203.0.113.77"},
        "context": {"ipo": "x"},
    }
    before = json.loads(json.dumps(properties))
    assert not scrub(properties, truncate_ips=True)
    assert properties == before


def test_a_hashed_path_matches_every_key_path_that_joins_to_it() -> None:
    properties: dict[str, Any] = {
        "context.traits.email": "a@example.test",
        "context": {
            "traits": {"email": "b@example.test"},
            "traits.email": "c@example.test",
            "traits.email.more": "kept@example.test",
        },
        "context.traits": {"email": "d@example.test", "emails": ["kept"]},
        "email": "e@example.test",
    }
    assert scrub(properties, truncate_ips=False, hashed_fields=("context.traits.email",), salt=SALT)
    assert properties["context.traits.email"] == hash_value("a@example.test", SALT)
    assert properties["context"]["traits"]["email"] == hash_value("b@example.test", SALT)
    assert properties["context"]["traits.email"] == hash_value("c@example.test", SALT)
    assert properties["context.traits"]["email"] == hash_value("d@example.test", SALT)
    assert properties["context"]["traits.email.more"] == "kept@example.test"
    assert properties["context.traits"]["emails"] == ["kept"]
    assert properties["email"] == "e@example.test"


def test_a_hashed_path_listed_twice_is_hashed_once_and_null_is_left() -> None:
    properties: dict[str, Any] = {"email": "a@example.test", "phone": None}
    scrub(properties, truncate_ips=False, hashed_fields=("email", "email", "phone"), salt=SALT)
    assert properties == {"email": hash_value("a@example.test", SALT), "phone": None}


def _every_key_path(node: dict[str, Any], prefix: str | None = None) -> list[tuple[str, Any]]:
    """(joined key path, value) of every key at every depth, read plainly: the rule's oracle."""
    found = []
    for key, value in node.items():
        path = key if prefix is None else f"{prefix}.{key}"
        found.append((path, value))
        if isinstance(value, dict):
            found.extend(_every_key_path(value, path))
    return found


def test_hashed_paths_match_exactly_the_joined_key_paths_on_random_nestings() -> None:
    random = Random(5)
    keys = ["a", "b", "a.b", "b.c", "", "a.", ".b", "c"]
    paths = ["a.b.c", "a..b", "a.b", ".b", "a", "a.b.", "c"]

    def tree(depth: int) -> dict[str, Any]:
        return {
            random.choice(keys): tree(depth + 1) if depth < 3 and random.random() < 0.5 else n
            for n in range(random.randint(1, 4))
        }

    for _ in range(300):
        properties = tree(0)
        path = random.choice(paths)
        if any(joined == path and isinstance(v, dict) for joined, v in _every_key_path(properties)):
            continue  # an object at the path is hashed whole: the leaves below it go
        expected = sorted(
            repr(hash_value(value, SALT) if joined == path and value is not None else value)
            for joined, value in _every_key_path(properties)
            if not isinstance(value, dict)
        )
        scrub(properties, truncate_ips=False, hashed_fields=(path,), salt=SALT)
        leaves = [value for _, value in _every_key_path(properties) if not isinstance(value, dict)]
        assert sorted(repr(value) for value in leaves) == expected, path


@pytest.mark.parametrize(
    "letter",
    [
        b'{"userID": "kim", "event": "x"}',
        b'{"USER-ID": "kim"}',
        b'{"properties": {"user_id": "kim"}}',
        b'{"previous_id": "kim"}',
        b'{"batch": {"type": "track", "userId": "kim"}}',
        b'[[{"userId": "kim"}]]',
        b'{"batch": [{"batch": {"userId": "kim"}}]}',
    ],
)
def test_a_dead_letter_names_the_user_under_any_spelling_of_a_who_field(letter: bytes) -> None:
    """A dead letter may be one for its field's spelling, or for a batch that is no list."""
    assert mentions(letter, {"kim"}, set())


def test_other_fields_and_the_other_kind_of_id_do_not_name_them() -> None:
    assert not mentions(b'{"customer_id": "kim", "userId": "bob"}', {"kim"}, set())
    assert not mentions(b'{"anonymousID": "kim"}', {"kim"}, set())
    # In the properties, another spelling is a property: bob's event stays.
    assert not mentions(b'{"userId": "bob", "properties": {"UserID": "kim"}}', {"kim"}, set())
    assert named_ids(b'{"AnonymousId": "a", "previousID": "p", "user_id": 7}') == (
        {"p", "7"},
        {"a", "p"},
    )


def test_who_first_puts_each_messages_who_fields_first_and_keeps_every_value() -> None:
    call = {"event": "x", "properties": {"email": "e", "user_id": "k"}, "userId": "kim"}
    payload = {"context": {}, "batch": [call, {"anonymousId": "a"}], "writeKey": ""}
    ordered = who_first(payload)
    assert ordered == payload
    (first, second) = ordered["batch"]
    assert list(first) == ["userId", "properties", "event"]
    assert list(first["properties"]) == ["user_id", "email"]
    assert list(second) == ["anonymousId"]
    assert list(who_first({"event": "x", "properties": {"email": "e"}})["properties"]) == ["email"]


def test_bytes_that_are_no_json_name_an_id_escaped_in_part() -> None:
    broken = b'{"userId": "kim-u-\\u00342", "email": "kim@example.test" BROKEN'
    assert mentions(broken, {"kim-u-42"}, set())
    assert not mentions(b'{"userId": "kim-u-43" BROKEN', {"kim-u-42"}, set())


@pytest.mark.parametrize("odd", ["NaN", "-Infinity", "9" * 5000, '"\\ud83c"'])
def test_who_fields_of_json_only_a_lenient_reader_takes_are_read(odd: str) -> None:
    """The collector keeps a call rejected for `NaN`, a long integer or a lone surrogate as
    sent: it names its sender (Firestore's tombstone check read none), and nobody else by
    the text of another field."""
    data = f'{{"userId":"kim","properties":{{"x":{odd},"friend":"lee"}}}}'.encode()
    assert named_ids(data) == ({"kim"}, set())
    assert mentions(data, {"kim"}, set())
    assert not mentions(data, {"lee"}, set())
