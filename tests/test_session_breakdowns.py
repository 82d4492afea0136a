"""The pure rule of sessions per value (`session_breakdowns`, docs/breakdowns.md "Sessions per
value, entry and exit pages"): what replacing sessions changes, and admission."""

from __future__ import annotations

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.breakdowns import OTHER, BreakdownRules
from behavioral_analytics.events import Event
from behavioral_analytics.session_breakdowns import (
    SessionValues,
    count_sessions_under,
    session_deltas,
    session_endpoints,
    session_values,
)
from behavioral_analytics.sessions import Session

T0 = 1_764_234_000.0  # 2025-11-27 09:00 UTC
HOUR, DAY = "2025-11-27-09", "2025-11-27"
RULES = BreakdownRules(("page", "event_type"), max_values=2)


def page(key: str, at: float, path: str, session_id: str | None = None) -> Event:
    props = {"page_url": f"https://shop.example{path}"}
    return Event(key, key, "u1", None, "page_view", T0 + at, session_id, props, T0, "u1")


def values(first: Event, last: Event) -> SessionValues:
    return session_values(first, last, RULES)


def test_a_session_counts_under_its_first_events_values_and_its_last_events_page() -> None:
    got = values(page("k2", 10, "/b"), page("k9", 99, "/z")).values
    assert got == {"page": "/b", "event_type": "page_view", "entry_page": "/b", "exit_page": "/z"}


def test_replacing_a_session_that_only_gained_a_later_event_moves_its_exit_page_only() -> None:
    before = values(page("k1", 0, "/a"), page("k2", 10, "/b"))
    after = values(page("k1", 0, "/a"), page("k3", 20, "/c"))
    dims = ("page", "event_type", "entry_page", "exit_page")
    delta = session_deltas([before], [after], Periods(), dims)
    assert delta == {
        ("hour", HOUR, "exit_page", "/c"): 1,
        ("day", DAY, "exit_page", "/c"): 1,
        ("hour", HOUR, "exit_page", "/b"): -1,
        ("day", DAY, "exit_page", "/b"): -1,
    }
    # Two sessions joined into one: both out, one in (the earlier one's first event).
    second = values(page("k5", 3000, "/d"), page("k5", 3000, "/d"))
    joined = values(page("k1", 0, "/a"), page("k5", 3000, "/d"))
    delta = session_deltas([before, second], [joined], Periods(), dims)
    assert delta[("day", DAY, "page", "/d")] == -1
    assert delta[("day", DAY, "entry_page", "/d")] == -1
    assert delta[("day", DAY, "exit_page", "/b")] == -1
    assert delta[("day", DAY, "exit_page", "/d")] == 0  # out with one, in with the other
    assert ("day", DAY, "page", "/a") not in delta


def test_admission_fills_entry_and_exit_pages_only_and_takes_out_what_went_in() -> None:
    delta = session_deltas(
        [values(page("k0", 0, "/x"), page("k0", 0, "/x"))],
        [
            values(page("k1", 10, "/a"), page("k1", 10, "/a")),
            values(page("k2", 20, "/b"), page("k2", 20, "/b")),
            values(page("k3", 30, "/c"), page("k3", 30, "/c")),
        ],
        Periods(),
        ("page", "entry_page"),
    )
    admitted = {("day", DAY, "page"): ["/a", "/b"], ("day", DAY, "entry_page"): ["/q"]}
    counted = count_sessions_under(delta, admitted, 2)
    # `page` is filled by events: /c met a full set; /x, taken out, had counted as (other).
    assert counted.sessions[("day", DAY, "page", "/a")] == 1
    assert counted.sessions[("day", DAY, "page", OTHER)] == 0  # /c in, /x out
    # entry_page admits the first page in start order while the set has room.
    assert counted.admitted[("day", DAY, "entry_page")] == ["/a"]
    assert counted.sessions[("day", DAY, "entry_page", "/a")] == 1
    assert counted.sessions[("day", DAY, "entry_page", OTHER)] == 1  # /b, /c in; /x out
    assert ("day", DAY, "page") not in counted.admitted


def test_a_sessions_endpoints_are_the_earliest_and_latest_ties_by_key() -> None:
    events = [page("kb", 0, "/b"), page("ka", 0, "/a"), page("kz", 50, "/z"), page("ky", 50, "/y")]
    session = Session(T0, T0 + 50, 4)
    first, last = session_endpoints([session], events)[session.key]
    assert (first.key, last.key) == ("ka", "kz")
    # A client session's events are its own: an event without the id is not its endpoint.
    client = Session(T0, T0 + 50, 2, "s1")
    own = [page("kc", 0, "/c", "s1"), page("kd", 50, "/d", "s1")]
    first, last = session_endpoints([client], events + own)[client.key]
    assert (first.key, last.key) == ("kc", "kd")
