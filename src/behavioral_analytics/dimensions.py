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
  the page's URL, when the page's URL has one) are `DIRECT`; a value that is no URL, domain
  or one-word source (the recipe's `newsletter`) — text with a space or punctuation no host
  has — is `NONE`.
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

An empty string is absent. Every value is cut to `MAX_VALUE_CHARS` characters. A client's
text that is a label (`NONE`, `DIRECT`, `OTHER`), alone or inside pairs of double quotes, gets
one more pair of quotes (`quote_label`): `(other)` sent as a UTM source is the value
`"(other)"`, never the label. (A referrer of `direct` or `(direct)` is the recipe's way of
saying there is none, so it is `DIRECT`, as above.)

Speed: every dimension's value but a property's is a function of 18 raw strings of the event
(`_raw`), so a fold reads those once per event and computes the values once per distinct
combination (an LRU cache); URL splitting and the UTM parameters of a page's queries are cached
on their texts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from behavioral_analytics.call_context import segment_context
from behavioral_analytics.events import Event

__all__ = [
    "DERIVED",
    "DIMENSIONS",
    "DIRECT",
    "LABELS",
    "MAX_VALUE_CHARS",
    "NONE",
    "OTHER",
    "PROPERTY_PREFIX",
    "SESSION_DIMENSIONS",
    "Derive",
    "dimension_values",
    "is_derived",
    "is_dimension",
    "quote_label",
    "value_tuple",
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
# Session-scoped: the page of a session's first and of its last event (docs/breakdowns.md,
# "Sessions per value"); `dimension_values` reads both as `page`. Counted by session_breakdowns.
SESSION_DIMENSIONS: tuple[str, ...] = ("entry_page", "exit_page")
NONE = "(none)"  # the dimension has no value for this event
DIRECT = "(direct)"  # the referrer dimension's value when there is no referrer or a self-referral
OTHER = "(other)"  # what values past the admitted ones count under (`breakdowns`)
# The values no event sends: a client's text equal to one is quoted (`quote_label`).
LABELS = frozenset((NONE, DIRECT, OTHER))
_LABEL_ENDS = (")", '"')
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
    absent), at most `MAX_VALUE_CHARS` characters each (two more for a quoted label). The rules
    and their sources are in the module's docstring. Raises ValueError on a name that
    `is_dimension` refuses."""
    names = tuple(dimensions)
    return dict(zip(names, value_tuple(event, names), strict=True))


def value_tuple(event: Event, dimensions: tuple[str, ...]) -> tuple[str, ...]:
    """`dimension_values` as a tuple in the order of `dimensions`: what a fold over many events
    calls, without a dict per event. Raises ValueError on an unknown name."""
    plan = _plan(dimensions)
    fixed = _fixed_values(_raw(event), plan) if plan.fixed else ()
    if plan.only_fixed:
        return fixed
    properties = event.properties
    values: list[str] = []
    for position, name in plan.steps:
        if position >= 0:
            values.append(fixed[position])
        else:
            values.append(_client_or_none(_scalar_text(properties.get(name))) or NONE)
    return tuple(values)


def quote_label(text: str) -> str:
    """A client's `text` as a breakdown value: cut to `MAX_VALUE_CHARS`, and when it is a label
    (`(none)`, `(direct)`, `(other)`) inside zero or more pairs of double quotes, one more pair
    of quotes, so that no client value is counted as a label and no two texts share a value
    (`(other)` → `"(other)"`, `"(other)"` → `""(other)""`)."""
    text = text[:MAX_VALUE_CHARS]
    if text[-1:] not in _LABEL_ENDS:
        return text
    quotes = len(text) - len(text.lstrip('"'))
    inner = text[quotes : len(text) - quotes]
    if inner in LABELS and text.endswith('"' * quotes):
        return f'"{text}"'
    return text


def _client_or_none(text: str | None) -> str | None:
    return quote_label(text) if text else None


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
        text = "//" + text  # a bare domain (the recipe's `google.com`) or source (`newsletter`)
    host = _url(text)[0]
    return host if host is not None and _HOST.fullmatch(host) else None


# What a host name or address can hold (letters of any script, digits, `.`, `-`, `:` of IPv6):
# a referrer with a space or other punctuation is no URL, domain or source name.
_HOST = re.compile(r"[\w.:-]+")


_EMPTY: dict[str, Any] = {}
_UTM_KEYS = frozenset(_CAMPAIGN_KEYS)

# An event's raw inputs at these positions (`_raw`), each read as a non-empty string or None. Every
# dimension's value but a property's is a function of one group of them alone (`_GROUPS`): the
# page's address, referrer and campaign; the device, browser, OS and country; the event's type.
# A group's values are computed once per combination of its inputs and remembered
# (`_fixed_values`): pages, referrers, campaigns and devices repeat, and each group's combinations
# far less than the whole's (live traffic: 1,019 and 601 where the 18 inputs make 24,560).
_Raw = tuple[str | None, ...]
_RAW_INPUTS = 18
(
    _PATH,  # properties.path
    _PAGE_PATH,  # context.page.path
    _URL,  # properties.url
    _PAGE_URL,  # context.page.url
    _RECIPE_PAGE,  # properties.page_url
    _SEARCH,  # context.page.search
    _PAGE_REFERRER,  # context.page.referrer
    _REFERRER,  # properties.referrer
    _SOURCE,  # context.campaign.source
    _MEDIUM,  # context.campaign.medium
    _CAMPAIGN,  # context.campaign.name
    _DEVICE,  # context.device.type
    _DEVICE_TYPE,  # properties.device_type
    _DERIVED_DEVICE,  # $derived.device
    _BROWSER,  # $derived.browser
    _OS,  # $derived.os
    _COUNTRY,  # $derived.country
    _EVENT_TYPE,  # the event's type
) = range(_RAW_INPUTS)
# (first position, position past the last) of each group; `_READERS` read within one group.
_GROUPS: tuple[tuple[int, int], ...] = (
    (_PATH, _DEVICE),
    (_DEVICE, _EVENT_TYPE),
    (_EVENT_TYPE, _RAW_INPUTS),
)


def _raw(event: Event) -> tuple[object, ...]:
    """The raw inputs of an event (its properties are decoded JSON: objects are dicts), as sent:
    a non-string is read as None by `_fixed_values`."""
    get = event.properties.get
    context = segment_context(event.properties)
    if context is not None:
        page = context.get("page")
        page = page if type(page) is dict else _EMPTY
        campaign = context.get("campaign")
        campaign = campaign if type(campaign) is dict else _EMPTY
        device = context.get("device")
        device = device if type(device) is dict else _EMPTY
    else:
        page = campaign = device = _EMPTY
    derived = get(DERIVED)
    derived = derived if type(derived) is dict else _EMPTY
    return (
        get("path"),
        page.get("path"),
        get("url"),
        page.get("url"),
        get("page_url"),
        page.get("search"),
        page.get("referrer"),
        get("referrer"),
        campaign.get("source"),
        campaign.get("medium"),
        campaign.get("name"),
        device.get("type"),
        get("device_type"),
        derived.get("device"),
        derived.get("browser"),
        derived.get("os"),
        derived.get("country"),
        event.event_type,
    )


def _fixed_values(raw: tuple[object, ...], plan: _Plan) -> tuple[str, ...]:
    """The values of `plan`'s fixed dimensions for an event's `_raw` inputs. Equal inputs of a
    group give equal values of its dimensions (a non-string input counts as absent, whatever it
    is), so they are remembered per group's inputs; inputs that cannot be a cache key (an object)
    are read afresh."""
    values: tuple[str, ...] = ()
    for start, stop, names in plan.groups:
        inputs = raw[start:stop]
        try:
            values += _remembered_values(inputs, start, names)
        except TypeError:  # unhashable: a JSON object or list where a string belongs
            values += _read_values(inputs, start, names)
    return values if plan.order is None else plan.order(values)


def _read_values(inputs: tuple[object, ...], start: int, names: tuple[str, ...]) -> tuple[str, ...]:
    raw = (
        (None,) * start + tuple(map(_text, inputs)) + (None,) * (_RAW_INPUTS - start - len(inputs))
    )
    return tuple(_READERS[name](raw) or NONE for name in names)


_remembered_values = lru_cache(maxsize=16384)(_read_values)


class _Plan:
    """How to read `dimensions`: the fixed ones (read through `_fixed_values`), and per
    dimension in order, (position among the fixed ones, or -1 for a property; its name)."""

    __slots__ = ("fixed", "groups", "only_fixed", "order", "steps")

    def __init__(self, dimensions: tuple[str, ...]) -> None:
        fixed: list[str] = []
        self.steps: list[tuple[int, str]] = []
        for name in dimensions:
            if name.startswith(PROPERTY_PREFIX) and name != PROPERTY_PREFIX:
                self.steps.append((-1, name[len(PROPERTY_PREFIX) :]))
            elif name in _READERS:
                self.steps.append((len(fixed), ""))
                fixed.append(name)
            else:
                raise ValueError(f"unknown dimension {name!r}")
        self.fixed = tuple(fixed)
        self.only_fixed = len(fixed) == len(dimensions)
        # The fixed names by group, read group by group, then put back in their order.
        self.groups: list[tuple[int, int, tuple[str, ...]]] = []
        read_order: list[int] = []
        for start, stop in _GROUPS:
            members = [i for i, name in enumerate(fixed) if _GROUP_OF[name] == start]
            if members:
                self.groups.append((start, stop, tuple(fixed[i] for i in members)))
                read_order += members
        back = [read_order.index(i) for i in range(len(fixed))]
        self.order = None if back == sorted(back) else itemgetter(*back)


_plan = lru_cache(maxsize=256)(_Plan)


@lru_cache(maxsize=4096)
def _utm_params(
    url: str | None, page_url: str | None, search: str | None, recipe_page: str | None
) -> dict[str, str]:
    """The first non-empty value of each `utm_*` parameter of the page's queries, in the order
    the module's docstring gives (a shared cached map: never changed)."""
    queries = [_url(text)[2] for text in (url, page_url) if text is not None]
    if search:
        queries.append(search.removeprefix("?"))
    if recipe_page is not None:
        queries.append(_url(recipe_page)[2])
    params: dict[str, str] = {}
    for query in queries:
        if "utm_" in query:
            for name, value in parse_qsl(query):
                if value and name in _UTM_KEYS:
                    params.setdefault(name, value)
    return params


def _page(raw: _Raw) -> str | None:
    text = raw[_PATH] or raw[_PAGE_PATH] or raw[_URL] or raw[_PAGE_URL] or raw[_RECIPE_PAGE]
    return None if text is None else _client_or_none(_url(text)[1])


def _referrer(raw: _Raw) -> str | None:
    text = raw[_PAGE_REFERRER] or raw[_REFERRER]
    if text is None or text.lower() in (_RECIPE_DIRECT, DIRECT):
        return DIRECT
    host = _referrer_host(text)
    if host is None:
        return None
    for url in (raw[_URL], raw[_PAGE_URL], raw[_RECIPE_PAGE]):
        if url is not None and (page_host := _url(url)[0]) is not None:
            return DIRECT if page_host == host else quote_label(host)
    return quote_label(host)


def _utm(key: str, position: int) -> Callable[[_Raw], str | None]:
    def read(raw: _Raw) -> str | None:
        value = raw[position] or _utm_params(
            raw[_URL], raw[_PAGE_URL], raw[_SEARCH], raw[_RECIPE_PAGE]
        ).get(key)
        return _client_or_none(value)

    return read


def _first(*positions: int) -> Callable[[_Raw], str | None]:
    def read(raw: _Raw) -> str | None:
        for position in positions:
            if (value := raw[position]) is not None:
                return quote_label(value)
        return None

    return read


_READERS: dict[str, Callable[[_Raw], str | None]] = {
    "page": _page,
    "entry_page": _page,
    "exit_page": _page,
    "referrer": _referrer,
    "utm_source": _utm("utm_source", _SOURCE),
    "utm_medium": _utm("utm_medium", _MEDIUM),
    "utm_campaign": _utm("utm_campaign", _CAMPAIGN),
    "device": _first(_DEVICE, _DEVICE_TYPE, _DERIVED_DEVICE),
    "browser": _first(_BROWSER),
    "os": _first(_OS),
    "country": _first(_COUNTRY),
    "event_type": _first(_EVENT_TYPE),
}
# The group (`_GROUPS`, by its first position) whose inputs alone each reader reads.
_GROUP_OF: dict[str, int] = {
    **dict.fromkeys(("page", "entry_page", "exit_page", "referrer"), _PATH),
    **dict.fromkeys(("utm_source", "utm_medium", "utm_campaign"), _PATH),
    **dict.fromkeys(("device", "browser", "os", "country"), _DEVICE),
    "event_type": _EVENT_TYPE,
}
