"""The breakdown fold and admission (`breakdowns`), pure: what a set of events adds per value,
which values a (period, dimension) admits, and what the others count under."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

import pytest

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.breakdowns import (
    OTHER,
    BreakdownDelta,
    BreakdownRules,
    admit,
    by_person_day,
    count_under,
    fold_breakdowns,
    recount_breakdowns,
)
from behavioral_analytics.dimensions import dimension_values
from behavioral_analytics.events import Event

T0 = 1_764_234_000.0  # 2025-11-27 09:00:00 UTC
DAY = "2025-11-27"
HOUR = f"{DAY}-09"


def event(n: int, at: float, path: str, who: str, kind: str = "page_view") -> Event:
    return Event(
        f"k{n}", f"e{n}", who, None, kind, T0 + at, None, {"page_url": f"https://x.io{path}"}, T0
    )


def test_admit_takes_the_first_k_new_values_in_order() -> None:
    new, mapping = admit(["/a"], ["/b", "/a", "/c", "/b", "/d"], 3)
    assert new == ["/b", "/c"]
    assert mapping == {"/b": "/b", "/a": "/a", "/c": "/c", "/d": OTHER}
    # A full set admits nothing; a value it holds still counts as itself.
    assert admit(["/a", "/b"], ["/c", "/a"], 2) == ([], {"/c": OTHER, "/a": "/a"})
    # A set larger than K (K lowered) keeps what it holds.
    assert admit(["/a", "/b", "/c"], ["/c", "/d"], 2) == ([], {"/c": "/c", "/d": OTHER})


def test_the_value_other_itself_is_never_admitted() -> None:
    assert admit([], [OTHER, "/a"], 5) == (["/a"], {OTHER: OTHER, "/a": "/a"})


def test_the_fold_counts_every_dimension_per_hour_and_day_with_first_seen_order() -> None:
    rules = BreakdownRules(("page", "event_type"), 2)
    delta = fold_breakdowns(
        [event(1, 0, "/b", "u1"), event(2, 60, "/a", "u2"), event(3, 3600, "/b", "u1", "buy")],
        Periods(),
        rules,
    )
    in_order = [key for key in delta.events if key[:3] == ("hour", HOUR, "page")]
    assert in_order == [("hour", HOUR, "page", "/b"), ("hour", HOUR, "page", "/a")]
    assert delta.events["day", DAY, "page", "/b"] == 2
    assert delta.events["hour", f"{DAY}-10", "event_type", "buy"] == 1
    assert (DAY, "page", "/b", "u1") in delta.users
    assert len(delta.users) == 5  # u1: /b, page_view, buy; u2: /a, page_view
    assert delta.markers == {
        ("u1", DAY): {("page", "/b"), ("event_type", "page_view"), ("event_type", "buy")},
        ("u2", DAY): {("page", "/a"), ("event_type", "page_view")},
    }
    assert fold_breakdowns([event(1, 0, "/b", "u1")], Periods(), BreakdownRules((), 2)).events == {}


def test_count_under_maps_per_set_and_says_what_to_admit() -> None:
    rules = BreakdownRules(("page",), 2)
    delta = fold_breakdowns(
        [event(1, 0, "/c", "u1"), event(2, 1, "/a", "u2"), event(3, 2, "/d", "u3")],
        Periods(),
        rules,
    )
    stored = {("day", DAY, "page"): ["/a"]}
    counted = count_under(delta, stored, 2)
    assert counted.admitted == {("day", DAY, "page"): ["/c"], ("hour", HOUR, "page"): ["/c", "/a"]}
    assert counted.events["day", DAY, "page", OTHER] == 1  # /d
    assert counted.events["hour", HOUR, "page", OTHER] == 1
    assert counted.unique_users() == {(DAY, "page", "/c"): 1, (DAY, "page", "/a"): 1,
                                      (DAY, "page", OTHER): 1}  # fmt: skip
    # Taking stored events back out admits nothing.
    out = count_under(delta, stored, 0)
    assert out.admitted == {} and out.events["day", DAY, "page", OTHER] == 2


def test_a_person_seen_with_two_values_under_other_is_one_other_user() -> None:
    delta = BreakdownDelta()
    for value in ("/a", "/b", "/c"):
        delta.events["day", DAY, "page", value] += 1
        delta.markers.setdefault(("u1", DAY), set()).add(("page", value))
    counted = count_under(delta, {}, 1)
    assert counted.unique_users() == {(DAY, "page", "/a"): 1, (DAY, "page", OTHER): 1}


def test_markers_grouped_per_person_and_day_map_as_the_flat_ones_do() -> None:
    """A store that keeps a person's markers of a day together maps them at once
    (`users=False`, then `markers_under`): the same markers as the flat mapping, OTHER where
    a full set refused a value, on one day and not the next."""
    rules = BreakdownRules(("page", "event_type"), 2)
    events = [
        event(1, 0, "/a", "u1"),
        event(2, 1, "/b", "u2"),
        event(3, 2, "/c", "u1", "buy"),  # /c: the day's page set is full
        event(4, 3, "/d", "u3"),
        event(5, 86_400, "/c", "u1"),  # the next day admits /c
        event(6, 86_401, "/a", "u2", "buy"),
    ]
    delta = fold_breakdowns(events, Periods(), rules)
    stored = {("day", DAY, "page"): ["/a", "/b"]}
    flat = count_under(delta, stored, 2)
    grouped = count_under(delta, stored, 2, users=False)
    assert grouped.users == set() and grouped.events == flat.events
    assert grouped.others == {(DAY, "page"): {"/c", "/d"}}
    mapped = grouped.markers_under(delta.markers)
    assert mapped == by_person_day(flat.users)
    assert mapped["u1", DAY] == {("page", "/a"), ("page", OTHER), ("event_type", "page_view"),
                                 ("event_type", "buy")}  # fmt: skip
    assert mapped["u1", "2025-11-28"] == {("page", "/c"), ("event_type", "page_view")}
    # Nothing refused: the grouped markers are taken as they are.
    unrefused = count_under(delta, {}, 100, users=False)
    assert unrefused.markers_under(delta.markers) == delta.markers


def test_the_fold_equals_a_count_event_by_event() -> None:
    """The fold counts a dimension at a time over its columns: what it gives is what counting
    each event's values one by one gives, each set's values in their first event's order, and
    each person's markers of a day, over events spread across hours, days and people, one
    counted for another person (`persons`)."""
    rules = BreakdownRules(("page", "event_type", "property:plan"), 3)
    rng = random.Random(5)
    events = []
    for n in range(400):
        sent = event(n, rng.uniform(0, 3 * 86_400), f"/p{rng.randrange(6)}", f"u{rng.randrange(9)}",
                     rng.choice(["page_view", "buy"]))  # fmt: skip
        if rng.random() < 0.5:
            sent.properties["plan"] = rng.choice(["free", "pro", 7])
        events.append(sent)
    persons = {"k3": "someone-else"}
    periods = Periods()
    counts: Counter[tuple[str, str, str, str]] = Counter()
    markers: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for sent in events:
        _, hour, day = periods.of(sent.timestamp)
        who = persons.get(sent.key, sent.who)
        for dimension, value in dimension_values(sent, rules.dimensions).items():
            counts["hour", hour, dimension, value] += 1
            counts["day", day, dimension, value] += 1
            markers.setdefault((who, day), set()).add((dimension, value))
    entries: dict[str, tuple[str, ...]] = {}
    delta = fold_breakdowns(events, periods, rules, persons, entries)
    assert delta.events == counts and delta.markers == markers

    def in_order(keys: Iterable[tuple[str, str, str, str]]) -> dict[tuple[str, ...], list[str]]:
        order: dict[tuple[str, ...], list[str]] = {}
        for *key, value in keys:
            order.setdefault(tuple(key), []).append(value)
        return order

    assert in_order(delta.events) == in_order(counts)
    assert entries["k3"] == tuple(dimension_values(events[3], rules.entry_dimensions).values())


def test_the_recount_orders_by_time_and_counts_for_the_person() -> None:
    rules = BreakdownRules(("page",), 1)
    late_first = [event(2, 10, "/b", "anonymous:v"), event(1, 0, "/a", "anonymous:v")]
    counted = recount_breakdowns(late_first, {"k1": "ann", "k2": "ann"}, Periods(), rules, {})
    assert counted.admitted[("day", DAY, "page")] == ["/a"]
    assert counted.users == {(DAY, "page", "/a", "ann"), (DAY, "page", OTHER, "ann")}
    # Events the persons map leaves out (crawlers) are not counted.
    assert recount_breakdowns(late_first, {}, Periods(), rules, {}).events == {}


@pytest.mark.parametrize(
    ("dimensions", "values", "message"),
    [
        (("page", "nope"), 5, "unknown breakdown dimension 'nope'"),
        (("page", "page"), 5, "named twice"),
        (("page",), 0, "at least 1"),
    ],
)
def test_rules_refuse_what_cannot_be_counted(
    dimensions: tuple[str, ...], values: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        BreakdownRules(dimensions, values)
