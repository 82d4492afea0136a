"""Breakdown dimensions: the value of each named dimension for one event. Pure: no I/O.

An event's properties hold either the seed recipe's fields (`page_url`, `referrer`,
`device_type`) or a Segment call's, with the call's context kept as `properties.context`
(segment/calls.py). Each dimension reads, in order, the first source that has a value:

- `page`: Segment's `properties.path`, `context.page.path` (Page spec and the context's
  `page` object), else the path of `properties.url`, `context.page.url`, else the path of the
  recipe's `page_url`. The query and fragment are dropped; a URL with a host and no path is `/`.
- `referrer`: the host of Segment's `context.page.referrer` or `properties.referrer` (a URL),
  or the recipe's bare domain (`google.com`). Lower-cased, port and a leading `www.` dropped.
  No referrer (absent, empty, or the recipe's `direct`) and a self-referral (the same host as
  the page's URL, when the page's URL has one) are `DIRECT`; a value that is no URL or domain
  is `NONE`.
- `utm_source`, `utm_medium`, `utm_campaign`: Segment's `context.campaign.source`, `.medium`,
  `.name` (the Context spec's campaign object, which analytics.js fills from the page's
  `utm_*` parameters), else the `utm_*` parameter of the query of `properties.url`,
  `context.page.url`, `context.page.search` or the recipe's `page_url`, in that order.
- `device`: Segment's `context.device.type`, else the recipe's `device_type`, else the type
  derived at ingestion from the user agent (`$derived.device`).
- `browser`, `os`, `country`: derived at ingestion (`$derived`, docs/breakdowns.md).
- `event_type`: the event's type.
- `property:<name>`: the top-level property `<name>` as JSON-scalar text: a string as is,
  a number or boolean as canonical JSON (`3`, `99.5`, `true`); null, an object or a list is
  `NONE`.

An empty string is absent. Every value is cut to `MAX_VALUE_CHARS` characters.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from behavioral_analytics.events import Event

__all__ = [
    "DERIVED",
    "DIMENSIONS",
    "DIRECT",
    "MAX_VALUE_CHARS",
    "NONE",
    "PROPERTY_PREFIX",
    "Derive",
    "dimension_values",
    "is_derived",
    "is_dimension",
]

DIMENSIONS: tuple[str, ...] = (
    "page",
    "referrer",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "device",
    "browser",
    "os",
    "country",
    "event_type",
)
NONE = "(none)"  # the dimension has no value for this event
DIRECT = "(direct)"  # the referrer dimension's value when there is no referrer or a self-referral
PROPERTY_PREFIX = "property:"
MAX_VALUE_CHARS = 256
# The property set at ingestion with what is derived from the user agent and the IP address:
# {"browser", "os", "device", "country", "parsers": {"user_agent", "geo"}}, keys absent when
# unknown (docs/breakdowns.md).
DERIVED = "$derived"
# What sets it: a callable given an event's properties (the `enrich` package builds one).
Derive = Callable[[dict[str, Any]], None]

# The recipe's word for "no referrer" (the load generator sends it).
_RECIPE_DIRECT = "direct"
_CAMPAIGN_KEYS = {"utm_source": "source", "utm_medium": "medium", "utm_campaign": "name"}


def is_dimension(name: str) -> bool:
    """Whether `name` is a dimension: one of `DIMENSIONS` or `property:<name>` (non-empty)."""
    return name in DIMENSIONS or (name.startswith(PROPERTY_PREFIX) and name != PROPERTY_PREFIX)


def is_derived(value: object) -> bool:
    """Whether a `$derived` value has the shape ingestion gives it (a map with `parsers`)."""
    return isinstance(value, dict) and isinstance(value.get("parsers"), dict)


def dimension_values(event: Event, dimensions: Sequence[str]) -> dict[str, str]:
    """The value of each named dimension for one event (every name gets a value; NONE when
    absent), at most `MAX_VALUE_CHARS` characters each. The rules and their sources are in the
    module's docstring. Raises ValueError on a name that `is_dimension` refuses."""
    sources = _Sources(event.properties)
    values: dict[str, str] = {}
    for name in dimensions:
        if name.startswith(PROPERTY_PREFIX) and name != PROPERTY_PREFIX:
            value = _scalar_text(event.properties.get(name[len(PROPERTY_PREFIX) :]))
        elif name == "event_type":
            value = event.event_type
        else:
            reader = _READERS.get(name)
            if reader is None:
                raise ValueError(f"unknown dimension {name!r}")
            value = reader(sources)
        values[name] = value[:MAX_VALUE_CHARS] if value else NONE
    return values


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _scalar_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


def _url(text: str) -> tuple[str | None, str, str]:
    """(host without `www.`, path, query) of a URL or a path; (None, "", "") when unreadable.
    Pages and referrers repeat: short texts are cached."""
    return _cached_url(text) if len(text) <= _CACHED_URL_CHARS else _split_url(text)


_CACHED_URL_CHARS = 2048


def _split_url(text: str) -> tuple[str | None, str, str]:
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:
        return None, "", ""
    path = parts.path
    if host and not path:
        path = "/"
    return _bare_host(host), path, parts.query


_cached_url = lru_cache(maxsize=4096)(_split_url)


def _bare_host(host: str | None) -> str | None:
    if not host:
        return None
    return host[4:] if host.startswith("www.") else host


def _referrer_host(text: str) -> str | None:
    if "//" not in text:
        text = "//" + text  # a bare domain (the recipe's `google.com`)
    return _url(text)[0]


_EMPTY: dict[str, Any] = {}
_UTM_KEYS = frozenset(_CAMPAIGN_KEYS)


class _Sources:
    """An event's properties, read once for every dimension (decoded JSON: objects are dicts)."""

    __slots__ = ("context", "derived", "page", "properties", "recipe_page", "urls", "utm_params")

    def __init__(self, properties: dict[str, Any]) -> None:
        self.properties = properties
        context = properties.get("context")
        self.context: dict[str, Any] = context if type(context) is dict else _EMPTY
        page = self.context.get("page")
        self.page: dict[str, Any] = page if type(page) is dict else _EMPTY
        derived = properties.get(DERIVED)
        self.derived: dict[str, Any] = derived if type(derived) is dict else _EMPTY
        # The page's URLs in the order they are read, then the recipe's `page_url`.
        self.urls = [
            text
            for text in (_text(properties.get("url")), _text(self.page.get("url")))
            if text is not None
        ]
        self.recipe_page = _text(properties.get("page_url"))
        self.utm_params: dict[str, str] | None = None

    def utm(self, key: str) -> str | None:
        """The first non-empty `key` parameter of the page's queries (read once for all keys)."""
        if self.utm_params is None:
            queries = [_url(text)[2] for text in self.urls]
            if search := _text(self.page.get("search")):
                queries.append(search.removeprefix("?"))
            if self.recipe_page is not None:
                queries.append(_url(self.recipe_page)[2])
            params: dict[str, str] = {}
            for query in queries:
                if "utm_" in query:
                    for name, value in parse_qsl(query):
                        if value and name in _UTM_KEYS:
                            params.setdefault(name, value)
            self.utm_params = params
        return self.utm_params.get(key)

    def derived_value(self, key: str) -> str | None:
        return _text(self.derived.get(key))


def _page(sources: _Sources) -> str | None:
    for text in (sources.properties.get("path"), sources.page.get("path")):
        if type(text) is str and text:
            return _url(text)[1] or None
    text = sources.urls[0] if sources.urls else sources.recipe_page
    return None if text is None else _url(text)[1] or None


def _referrer(sources: _Sources) -> str | None:
    text = _text(sources.page.get("referrer")) or _text(sources.properties.get("referrer"))
    if text is None or text.lower() in (_RECIPE_DIRECT, DIRECT):
        return DIRECT
    host = _referrer_host(text)
    if host is None:
        return None
    page_urls = [*sources.urls, sources.recipe_page]
    for url in page_urls:
        if url is not None and (page_host := _url(url)[0]) is not None:
            return DIRECT if page_host == host else host
    return host


def _utm(key: str) -> Callable[[_Sources], str | None]:
    campaign_key = _CAMPAIGN_KEYS[key]

    def read(sources: _Sources) -> str | None:
        campaign = sources.context.get("campaign")
        if type(campaign) is dict and (value := _text(campaign.get(campaign_key))):
            return value
        return sources.utm(key)

    return read


def _device(sources: _Sources) -> str | None:
    device = sources.context.get("device")
    if type(device) is dict and (value := _text(device.get("type"))):
        return value
    return _text(sources.properties.get("device_type")) or sources.derived_value("device")


_READERS: dict[str, Callable[[_Sources], str | None]] = {
    "page": _page,
    "referrer": _referrer,
    "utm_source": _utm("utm_source"),
    "utm_medium": _utm("utm_medium"),
    "utm_campaign": _utm("utm_campaign"),
    "device": _device,
    "browser": lambda sources: sources.derived_value("browser"),
    "os": lambda sources: sources.derived_value("os"),
    "country": lambda sources: sources.derived_value("country"),
}
