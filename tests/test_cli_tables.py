"""CLI tables never cut a period: every label is printed whole at 80 columns and narrower,
however many event types the series has."""

from __future__ import annotations

import json
import re
import time

import pytest

from behavioral_analytics.aggregation import Periods
from tests.conftest import cli

TYPES = ("page_view", "button_click", "search", "add_to_cart", "purchase", "signup", "login")
FUNNELS = json.dumps([{"name": "purchase", "steps": ["page_view", "search", "purchase"]}])


@pytest.fixture(scope="module")
def data_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"BA_DATA_DIR": str(tmp_path_factory.mktemp("tables")), "BA_FUNNELS": FUNNELS}


@pytest.fixture(scope="module")
def loaded(data_env: dict[str, str]) -> list[float]:
    now = time.time()
    times = [now - 7200 + i * 97 for i in range(len(TYPES) * 5)]
    lines = [
        json.dumps(
            {
                "event_id": f"e{i}",
                "user_id": f"u{i % 3}",
                "event_type": TYPES[i % len(TYPES)],
                "timestamp": moment,
                "session_id": f"s{i % 3}",
            }
        )
        for i, moment in enumerate(times)
    ]
    cli("init", env=data_env)
    cli("publish", input="\n".join(lines).encode(), env=data_env)
    cli("worker", "--until-idle", env=data_env)
    return times


@pytest.mark.slow
@pytest.mark.parametrize("columns", [80, 60])
@pytest.mark.parametrize("granularity", ["minute", "hour", "day"])
def test_series_tables_print_every_period_whole(
    loaded: list[float], data_env: dict[str, str], granularity: str, columns: int
) -> None:
    out = cli(
        "query", "series", "-g", granularity, env={**data_env, "COLUMNS": str(columns)}
    ).stdout.decode()
    periods = Periods("UTC")
    expected = {periods.label(granularity, moment) for moment in loaded}  # type: ignore[arg-type]  # parametrized literal
    printed = set(re.findall(r"\d{4}-\d{2}-\d{2}(?:-\d{2}){0,2}", out))
    assert expected <= printed, out
    assert "…" not in out, out
    assert max(len(line) for line in out.splitlines()) <= columns


@pytest.mark.parametrize(
    "args", [("query", "sessions", "-g", "hour"), ("query", "funnel", "purchase")]
)
def test_session_and_funnel_tables_print_every_period_whole(
    loaded: list[float], data_env: dict[str, str], args: tuple[str, ...]
) -> None:
    out = cli(*args, env={**data_env, "COLUMNS": "60"}).stdout.decode()
    granularity = "hour" if "sessions" in args else "day"
    labels = {Periods("UTC").label(granularity, moment) for moment in loaded}
    printed = set(re.findall(r"\d{4}-\d{2}-\d{2}(?:-\d{2})?", out))
    assert printed and printed <= labels, out
    assert "…" not in out, out


def test_the_sessions_table_keeps_provisional_whole_at_80_columns(
    loaded: list[float], data_env: dict[str, str]
) -> None:
    """It was folded as `provisiona` / `l` in the last column."""
    out = cli("query", "sessions", "-g", "hour", env={**data_env, "COLUMNS": "80"}).stdout
    lines = out.decode().splitlines()
    assert any("provisional" in line for line in lines), "\n".join(lines)
    assert max(len(line) for line in lines) <= 80
