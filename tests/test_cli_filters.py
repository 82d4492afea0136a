"""`--filter DIMENSION:VALUE` (repeatable) on `query series`, `sessions`, `funnel` and
`breakdown` over the SQLite store: where each answer came from, the session-scoped rule, and
a refused raw scan as one line with exit 2."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from behavioral_analytics.funnels import PURCHASE_FUNNEL
from tests.conftest import cli

ENV = {"BA_FUNNELS": PURCHASE_FUNNEL, "COLUMNS": "200"}
# (user, seconds after 10:00 yesterday, type, page, device)
VISITS = [
    ("u1", 0, "page_view", "/pricing", "mobile"),
    ("u1", 60, "search", "/pricing", "mobile"),
    ("u1", 120, "add_to_cart", "/docs", "mobile"),
    ("u1", 180, "purchase", "/docs", "mobile"),
    ("u2", 10, "page_view", "/docs", "desktop"),
    ("u2", 70, "search", "/pricing", "desktop"),
    ("u2", 130, "add_to_cart", "/pricing", "mobile"),
    ("u3", 20, "page_view", "/pricing", "desktop"),
]


def _publish() -> str:
    today = datetime.fromtimestamp(time.time(), UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    start = (today - timedelta(days=1, hours=-10)).timestamp()
    lines = [
        json.dumps(
            {
                "event_id": f"f{i}",
                "user_id": user,
                "event_type": kind,
                "timestamp": start + at,
                "session_id": f"s-{user}",
                "properties": {"page_url": f"https://shop.example{page}", "device_type": device},
            }
        )
        for i, (user, at, kind, page, device) in enumerate(VISITS)
    ]
    cli("init", env=ENV)
    cli("publish", input="\n".join(lines).encode(), env=ENV)
    cli("worker", "--until-idle", env=ENV)
    return (today - timedelta(days=1)).strftime("%Y-%m-%d")


def _json(*args: str, env: dict[str, str] = ENV) -> dict[str, Any]:
    return json.loads(cli("query", *args, "--json", env=env).stdout)


@pytest.mark.slow
def test_every_query_takes_filters_and_says_where_the_answer_came_from() -> None:
    day = _publish()
    span = ("--from", day, "--to", day)
    both = ("--filter", "page:/pricing", "--filter", "device:mobile")
    series = _json("series", "-g", "day", *span, *both)
    assert series["filters"] == [
        {"dimension": "page", "value": "/pricing"},
        {"dimension": "device", "value": "mobile"},
    ]
    assert (series["answered_from"], series["scanned_events"]) == ("raw_events", len(VISITS))
    assert [(p["total_events"], p["unique_users"]) for p in series["points"]] == [(3, 2)]
    # A value nobody sent: no period, as from the raw events (the breakdowns gave a 0 point).
    nobody = _json("series", "-g", "day", *span, "--filter", "page:/nowhere")
    assert (nobody["answered_from"], nobody["points"]) == ("aggregates", [])

    # u1 and u3 started on /pricing; u2 started on /docs.
    sessions = _json("sessions", *span, "--filter", "page:/pricing")
    assert [p["sessions"] for p in sessions["points"]] == [2]
    desktop = _json("sessions", *span, "--filter", "page:/pricing", "--filter", "device:desktop")
    assert desktop["answered_from"] == "raw_events"
    assert [p["sessions"] for p in desktop["points"]] == [1]

    funnel = _json("funnel", "purchase", *span, "--filter", "device:mobile")
    assert [d["users"] for d in funnel["days"]] == [[1, 1, 1, 1]]

    pages = _json("breakdown", "page", *span, "--filter", "device:mobile")
    assert pages["answered_from"] == "raw_events"
    assert [(v["value"], v["events"], v["unique_users"]) for v in pages["values"]] == [
        ("/pricing", 3, 2),
        ("/docs", 2, 1),
    ]
    table = cli("query", "breakdown", "page", *span, "--filter", "device:mobile", env=ENV)
    assert b"answered from raw events (8 scanned)" in table.stdout
    # A space after the colon is part of the value: the line shows it, quoted.
    spaced = cli("query", "series", "-g", "day", *span, "--filter", "page: /pricing", env=ENV)
    assert b'filter: page = " /pricing" (its spaces included);' in spaced.stdout
    # Nothing matched: an empty table, and a line on how values and types match.
    cased = cli("query", "series", "-g", "day", *span, "--filter", "device:Mobile", env=ENV)
    assert cased.stdout.decode().endswith(
        "filter: device = Mobile; answered from the aggregates\nno event matched: values match "
        "exactly, case included (`query breakdown device` lists its values)\n"
    )
    assert b"no event matched" not in table.stdout
    # The API's bounds on filters hold here too.
    eleven = [arg for n in range(11) for arg in ("--filter", f"page:/p{n}")]
    many = cli("query", "series", "-g", "day", *span, *eleven, env=ENV, check=False)
    assert (many.returncode, many.stderr) == (2, b"error: --filter: at most 10 filters, not 11\n")
    typed = cli("query", "series", "-g", "day", *span, "--type", "Purchase", env=ENV)
    assert b"no 'Purchase' events there (types match exactly, case included)" in typed.stdout
    entry = _json("breakdown", "entry_page", *span, "--filter", "device:desktop")
    assert [(v["value"], v["sessions"]) for v in entry["values"]] == [("/docs", 1), ("/pricing", 1)]

    bounded = {**ENV, "BA_RAW_SCAN_MAX_EVENTS": "5"}
    refused = cli("query", "series", "-g", "day", *span, *both, env=bounded, check=False)
    assert refused.returncode == 2
    message = refused.stderr.decode()
    assert "8 events" in message and "5" in message and "BA_RAW_SCAN_MAX_EVENTS" in message
    assert message.count("error:") == 1


@pytest.mark.slow
def test_filters_and_retention_answer_the_last_periods_of_year_9999() -> None:
    _publish()
    queries = [
        ("series", "-g", "minute", "--from", "9999-12-31-23-50", "--to", "9999-12-31-23-59"),
        ("series", "-g", "hour", "--from", "9999-12-31-20", "--to", "9999-12-31-23"),
        ("series", "-g", "day", "--from", "9999-12-30", "--to", "9999-12-31"),
        ("sessions", "-g", "day", "--from", "9999-12-30", "--to", "9999-12-31"),
        ("breakdown", "page", "--from", "9999-12-30", "--to", "9999-12-31"),
        ("funnel", "purchase", "--from", "9999-12-30", "--to", "9999-12-31"),
        ("retention", "--from", "9999-12-25", "--to", "9999-12-31"),
    ]
    two = ("--filter", "page:/pricing", "--filter", "device:mobile")
    for query in queries:
        answer = _json(*query, *two)
        assert answer["answered_from"] == "raw_events" and answer["scanned_events"] == 0, query
    unfiltered = _json("retention", "--from", "9999-12-25", "--to", "9999-12-31")
    assert unfiltered["cohorts"] == []
