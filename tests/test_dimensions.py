"""The value of each breakdown dimension for one event (the core's `dimensions` module): each
source rule for Segment calls (as the collector normalizes them) and the recipe's payload."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from behavioral_analytics import dimensions
from behavioral_analytics.dimensions import (
    DERIVED,
    DIMENSIONS,
    DIRECT,
    MAX_VALUE_CHARS,
    NONE,
    dimension_values,
    is_dimension,
)
from behavioral_analytics.events import Event, Rejection, validate_event
from behavioral_analytics.segment import from_segment

NOW = 1_800_000_000.0


def recipe(**properties: Any) -> Event:
    payload = {
        "user_id": "u-1",
        "event_type": "page_view",
        "timestamp": NOW,
        "properties": properties,
    }
    event = validate_event(payload, message_id="m", received_at=NOW)
    assert isinstance(event, Event), event
    return event


def segment(message: dict[str, Any]) -> Event:
    payload = from_segment({"messageId": "m-1", "userId": "u-1", **message})
    assert not isinstance(payload, Rejection), payload
    event = validate_event(payload, message_id="m", received_at=NOW)
    assert isinstance(event, Event), event
    return event


def values(event: Event, *names: str) -> dict[str, str]:
    return dimension_values(event, names or DIMENSIONS)


# analytics.js's page call: the page's fields in the properties and in `context.page`.
PAGE_CONTEXT = {
    "page": {
        "path": "/pricing",
        "referrer": "https://www.Google.com/search?q=analytics",
        "search": "?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
        "title": "Pricing",
        "url": "https://shop.example/pricing?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
    },
    "userAgent": "Mozilla/5.0",
}


def test_every_name_gets_a_value_and_absent_ones_are_none() -> None:
    got = values(recipe())
    assert set(got) == set(DIMENSIONS)
    assert got == {
        **dict.fromkeys(DIMENSIONS, NONE),
        "referrer": DIRECT,  # no referrer at all is a direct visit
        "event_type": "page_view",
    }


def test_recipe_fields() -> None:
    event = recipe(page_url="/page/7?ref=x#top", referrer="google.com", device_type="mobile")
    got = values(event, "page", "referrer", "device", "utm_source")
    assert got == {
        "page": "/page/7",
        "referrer": "google.com",
        "device": "mobile",
        "utm_source": NONE,
    }


@pytest.mark.parametrize("referrer", ["direct", "Direct", "", None])
def test_the_recipes_direct_and_no_referrer_are_direct(referrer: str | None) -> None:
    assert values(recipe(page_url="/", referrer=referrer), "referrer") == {"referrer": DIRECT}


def test_the_recipes_bare_domain_with_a_path_and_www() -> None:
    got = values(recipe(referrer="WWW.Twitter.com/some/post"), "referrer")
    assert got == {"referrer": "twitter.com"}


def test_segment_page_call_with_context() -> None:
    event = segment({"type": "page", "name": "Pricing", "context": PAGE_CONTEXT})
    got = values(event)
    assert got["page"] == "/pricing"
    assert got["referrer"] == "google.com"
    assert (got["utm_source"], got["utm_medium"], got["utm_campaign"]) == (
        "newsletter",
        "email",
        "spring",
    )
    assert got["event_type"] == "page_view"


def test_segment_track_call_reads_the_context_page() -> None:
    event = segment({"type": "track", "event": "Signed Up", "context": PAGE_CONTEXT})
    got = values(event, "page", "referrer", "utm_campaign", "event_type")
    assert got == {
        "page": "/pricing",
        "referrer": "google.com",
        "utm_campaign": "spring",
        "event_type": "Signed Up",
    }


def test_properties_path_comes_before_the_context_page() -> None:
    event = segment({"type": "page", "properties": {"path": "/docs?x=1"}, "context": PAGE_CONTEXT})
    assert values(event, "page") == {"page": "/docs"}


def test_page_from_the_url_when_there_is_no_path() -> None:
    event = segment({"type": "page", "properties": {"url": "https://shop.example/a/b?q=1#frag"}})
    assert values(event, "page") == {"page": "/a/b"}
    bare = segment({"type": "page", "properties": {"url": "https://shop.example"}})
    assert values(bare, "page") == {"page": "/"}


def test_properties_referrer_when_the_context_has_none() -> None:
    event = segment(
        {
            "type": "page",
            "properties": {"url": "https://shop.example/", "referrer": "https://news.site:8443/x"},
        }
    )
    assert values(event, "referrer") == {"referrer": "news.site"}


@pytest.mark.parametrize(
    "referrer", ["https://shop.example/other", "https://www.shop.example/", "http://SHOP.example"]
)
def test_a_self_referral_is_direct(referrer: str) -> None:
    context = {"page": {"url": "https://shop.example/pricing", "referrer": referrer}}
    event = segment({"type": "track", "event": "Clicked", "context": context})
    assert values(event, "referrer") == {"referrer": DIRECT}


def test_an_empty_context_referrer_is_direct() -> None:
    context = {"page": {"url": "https://shop.example/", "referrer": ""}}
    event = segment({"type": "page", "context": context})
    assert values(event, "referrer") == {"referrer": DIRECT}


def test_an_unreadable_referrer_is_none() -> None:
    event = recipe(referrer="http://[::1")
    assert values(event, "referrer") == {"referrer": NONE}


@pytest.mark.parametrize(
    ("referrer", "expected"),
    [
        ("not a url!", NONE),
        ("https://bad host/x", NONE),
        ("newsletter", "newsletter"),
        ("Bing.com:443", "bing.com"),
        ("https://münchen.example/a", "münchen.example"),
        ("http://[2001:db8::1]/", "2001:db8::1"),
    ],
)
def test_a_referrer_is_a_host_domain_or_one_word_source(referrer: str, expected: str) -> None:
    assert values(recipe(referrer=referrer), "referrer") == {"referrer": expected}


def test_campaign_context_comes_before_the_url_query() -> None:
    context = {
        "campaign": {"source": "ads", "medium": "cpc", "name": "launch"},
        "page": {"url": "https://shop.example/?utm_source=newsletter&utm_campaign=spring"},
    }
    event = segment({"type": "track", "event": "Clicked", "context": context})
    got = values(event, "utm_source", "utm_medium", "utm_campaign")
    assert got == {"utm_source": "ads", "utm_medium": "cpc", "utm_campaign": "launch"}


def test_utm_from_the_url_query_per_parameter() -> None:
    context = {"campaign": {"source": "ads"}}
    event = segment(
        {
            "type": "page",
            "properties": {"url": "https://shop.example/?utm_medium=social&utm_campaign=a+b%21"},
            "context": context,
        }
    )
    got = values(event, "utm_source", "utm_medium", "utm_campaign")
    assert got == {"utm_source": "ads", "utm_medium": "social", "utm_campaign": "a b!"}


def test_utm_from_the_context_page_search() -> None:
    event = segment(
        {"type": "track", "event": "x", "context": {"page": {"search": "?utm_source=s"}}}
    )
    assert values(event, "utm_source") == {"utm_source": "s"}


def test_utm_from_the_recipes_page_url() -> None:
    event = recipe(page_url="/landing?utm_source=partner&utm_medium=")
    got = values(event, "utm_source", "utm_medium")
    assert got == {"utm_source": "partner", "utm_medium": NONE}


def test_device_sources_in_order() -> None:
    derived = {
        DERIVED: {"device": "tablet", "browser": "Firefox", "os": "Android", "country": "DE"}
    }
    context = {"device": {"type": "ios"}}
    first = segment({"type": "track", "event": "x", "context": context, "properties": derived})
    assert values(first, "device") == {"device": "ios"}
    second = recipe(device_type="desktop", **derived)
    assert values(second, "device") == {"device": "desktop"}
    third = recipe(**derived)
    assert values(third, "device", "browser", "os", "country") == {
        "device": "tablet",
        "browser": "Firefox",
        "os": "Android",
        "country": "DE",
    }


def test_derived_values_absent_or_malformed_are_none() -> None:
    assert values(recipe(**{DERIVED: {"browser": ""}}), "browser", "os") == {
        "browser": NONE,
        "os": NONE,
    }
    assert values(recipe(**{DERIVED: "Chrome"}), "browser") == {"browser": NONE}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("gold", "gold"),
        (3, "3"),
        (99.5, "99.5"),
        (1.0, "1.0"),
        (True, "true"),
        (False, "false"),
        ("", NONE),
        (None, NONE),
        ({"a": 1}, NONE),
        ([1, 2], NONE),
    ],
)
def test_property_dimensions_are_scalar_text(value: Any, text: str) -> None:
    assert values(recipe(plan=value), "property:plan") == {"property:plan": text}


def test_a_missing_property_is_none_and_nested_ones_are_not_read() -> None:
    event = recipe(**{"plan.tier": "x", "context": {"plan": "gold"}})
    assert values(event, "property:plan") == {"property:plan": NONE}


def test_values_are_cut_to_the_limit() -> None:
    long_path = "/" + "a" * 1000
    got = values(recipe(page_url=long_path, plan="b" * 1000), "page", "property:plan")
    assert got == {"page": long_path[:MAX_VALUE_CHARS], "property:plan": "b" * MAX_VALUE_CHARS}


def test_an_unknown_dimension_is_refused() -> None:
    assert not is_dimension("city")
    assert not is_dimension("property:")
    assert is_dimension("property:plan") and all(map(is_dimension, DIMENSIONS))
    with pytest.raises(ValueError, match="city"):
        values(recipe(), "city")


def test_a_long_url_is_read_whole() -> None:
    url = "https://shop.example/landing?pad=" + "x" * 5000 + "&utm_source=late"
    event = segment({"type": "page", "properties": {"url": url}})
    assert values(event, "page", "utm_source") == {"page": "/landing", "utm_source": "late"}


@pytest.mark.parametrize(
    ("sent", "value"),
    [
        ("(other)", '"(other)"'),
        ("(none)", '"(none)"'),
        ("(direct)", '"(direct)"'),
        ('"(other)"', '""(other)""'),
        ('""(none)""', '"""(none)"""'),
        ('"(other)', '"(other)'),  # not a quoted label: as sent
        ("(Other)", "(Other)"),
        ("x(other)", "x(other)"),
    ],
)
def test_a_client_text_that_reads_as_a_label_is_quoted(sent: str, value: str) -> None:
    event = segment(
        {"type": "track", "event": "Signed Up", "properties": {"plan": sent},
         "context": {"campaign": {"source": sent, "medium": sent}}}
    )  # fmt: skip
    got = values(event, "utm_source", "utm_medium", "property:plan")
    assert got == {"utm_source": value, "utm_medium": value, "property:plan": value}


def test_labels_in_urls_referrers_devices_and_event_types_are_quoted() -> None:
    event = recipe(page_url="(none)", referrer="https://(other)/x", device_type="(none)")
    assert values(event, "page", "referrer", "device") == {
        "page": '"(none)"',
        "referrer": NONE,  # brackets are in no host name: not a referrer, so never a label
        "device": '"(none)"',
    }
    typed = validate_event(
        {"user_id": "u-1", "event_type": "(other)", "timestamp": NOW, "properties": {}},
        message_id="m",
        received_at=NOW,
    )
    if isinstance(typed, Event):  # an event type may be refused before it gets here
        assert values(typed, "event_type") == {"event_type": '"(other)"'}


def test_the_recipes_direct_word_in_brackets_still_means_no_referrer() -> None:
    assert values(recipe(referrer="(direct)"), "referrer") == {"referrer": DIRECT}


def test_values_are_read_afresh_for_each_event_with_the_same_page() -> None:
    # The fixed dimensions' values are remembered per combination of raw inputs: events that
    # share a page but not a campaign, device or derived value must not share values.
    base = {"page_url": "/p?utm_source=url-source", "referrer": "google.com"}
    first = recipe(**base, device_type="mobile")
    second = recipe(**base, device_type="desktop", **{DERIVED: {"parsers": {}, "os": "iOS"}})
    third = segment(
        {"type": "page", "properties": {"url": "https://a.example/p"},
         "context": {"campaign": {"source": "ctx"}}}
    )  # fmt: skip
    names = ("page", "utm_source", "device", "os", "referrer")
    assert values(first, *names) == {
        "page": "/p", "utm_source": "url-source", "device": "mobile", "os": NONE,
        "referrer": "google.com",
    }  # fmt: skip
    assert values(second, *names)["device"] == "desktop"
    assert values(second, *names)["os"] == "iOS"
    assert values(third, *names)["utm_source"] == "ctx"
    assert values(first, "event_type", "page", "property:x") == {
        "event_type": "page_view", "page": "/p", "property:x": NONE,
    }  # fmt: skip


def test_objects_where_strings_belong_are_absent() -> None:
    # An object or list cannot key the values' cache: read afresh, as absent.
    event = recipe(path={"a": 1}, url=["x"], page_url="/shop?utm_source=s", device_type={"t": 1})
    assert values(event, "page", "utm_source", "device") == {
        "page": "/shop", "utm_source": "s", "device": NONE,
    }  # fmt: skip
    numbers = recipe(path=7, page_url="/seven")
    assert values(numbers, "page") == {"page": "/seven"}


# Inputs a reader might read: URLs with and without campaigns, paths, hosts, bare words.
_TEXTS = st.sampled_from(
    [
        "https://a.example/p?utm_source=q&utm_medium=m&utm_campaign=c",
        "https://www.b.example/",
        "/path",
        "?utm_source=s",
        "b.example",
        "direct",
        "mobile",
        "Chrome",
        "page_view",
        "(none)",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.none() | _TEXTS, min_size=18, max_size=18))
def test_each_dimension_reads_the_inputs_of_its_group_alone(raw: list[str | None]) -> None:
    # Values are remembered per group of inputs: a reader that read past its group would be
    # served another event's value.
    for name, read in dimensions._READERS.items():
        start = dimensions._GROUP_OF[name]
        stop = dict(dimensions._GROUPS)[start]
        masked = [value if start <= i < stop else None for i, value in enumerate(raw)]
        assert read(tuple(raw)) == read(tuple(masked)), name


def test_values_come_back_in_the_order_asked_across_groups() -> None:
    event = segment(
        {"type": "page", "properties": {"url": "https://a.example/p", "referrer": "b.example"},
         "context": {"device": {"type": "tablet"}}}
    )  # fmt: skip
    names = ("event_type", "page", "device", "referrer", "entry_page", "country", "property:x")
    alone = {name: values(event, name)[name] for name in names}
    assert alone == {
        "event_type": "page_view", "page": "/p", "device": "tablet", "referrer": "b.example",
        "entry_page": "/p", "country": NONE, "property:x": NONE,
    }  # fmt: skip
    assert values(event, *names) == alone
    assert list(dimension_values(event, names).values()) == list(alone.values())
