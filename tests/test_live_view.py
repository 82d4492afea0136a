"""`up`'s live view: its per-minute table has a column per event type when they fit the
terminal, else one column of "type n" pairs (a narrow terminal, many types)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rich import get_console
from rich.console import Console

from behavioral_analytics.brokers.local import LocalBroker
from behavioral_analytics.cli.live_view import _render, counted_by
from behavioral_analytics.settings import load_settings
from behavioral_analytics.stores.sqlite import SQLiteStore
from tests.faults import behavior_event

TYPES = [f"event_type_{n:02d}" for n in range(12)]


def _texts(tmp_path: Path, types: list[str]) -> dict[int, str]:
    """The view's text at a terminal width of 80 and of 400 columns, one event of each type."""
    store = SQLiteStore(tmp_path / "store.db")
    broker = LocalBroker(tmp_path / "broker.db")
    now = time.time()
    store.commit(
        [behavior_event(n, now, received_at=now, user="u", kind=t) for n, t in enumerate(types)]
    )
    settings = load_settings(data_dir=tmp_path)
    console = get_console()
    before = console.width
    texts = {}
    try:
        for width in (80, 400):
            console.width = width
            view = _render(settings, store, broker, None, None, 1, tmp_path / "up.log")
            out = Console(width=width, record=True, file=io.StringIO())
            out.print(view)
            texts[width] = out.export_text()
        return texts
    finally:
        console.width = before
        store.close()
        broker.close()


@pytest.fixture
def shown(tmp_path: Path) -> dict[int, str]:
    return _texts(tmp_path, TYPES)


def test_many_types_in_a_narrow_terminal_share_one_column(shown: dict[int, str]) -> None:
    assert "by type" in shown[80]
    assert "event_type_00 1, event_type_01 1" in shown[80].replace("\n", " ").replace("  ", " ")
    assert "by type" not in shown[400] and "event_type_11" in shown[400]


def test_a_clients_event_type_is_shown_as_it_is(tmp_path: Path) -> None:
    kind = "[/z][bold]x:smile:"
    texts = _texts(tmp_path, [kind])
    assert kind in texts[400] and kind in texts[80]


def test_the_view_counts_in_the_zone_the_store_recorded(tmp_path: Path) -> None:
    """From a shell without BA_TIMEZONE: the minutes are the store's (Kolkata, +05:30)."""
    store = SQLiteStore(tmp_path / "store.db", timezone="Asia/Kolkata")
    broker = LocalBroker(tmp_path / "broker.db")
    now = time.time()
    store.commit([behavior_event(1, now, received_at=now, user="u", kind="visit")])
    settings = load_settings(data_dir=tmp_path)
    out = Console(width=200, record=True, file=io.StringIO())
    out.print(
        _render(counted_by(settings, store), store, broker, None, None, 1, tmp_path / "up.log")
    )
    text = out.export_text()
    local = time.strftime("%H:%M", time.gmtime(now + 5.5 * 3600))
    assert "Asia/Kolkata" in text and local in text
    assert "events this hour" in text
