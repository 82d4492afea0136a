"""A worker pulling synchronously (`BA_PUBSUB_PULL=sync`, and `worker --until-idle` whatever
it says) logs the end of a Pub/Sub outage once: the broker's INFO "Pub/Sub reachable again
after N s (at HOST, subscription S)", which says where and how long Pub/Sub was down. The
worker's own bare "broker answering again" (`StallWatch.recovered`, with only the count of
failed pulls) followed it for the same outage; it is now logged only after pull failures the
broker had not reported itself (a local broker's, say).

Two outages in a row, as tests/gcp/test_pubsub_outage_logs.py and test_pubsub_sync_hang.py make
them: the worker reaches the emulator through a `Relay` (tests/gcp/helpers.py) that refuses
connections (then hangs them), then listens again; the messages are published straight to the
emulator. Every wait has a deadline; the test takes about 40 s."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from behavioral_analytics.broker import Broker
from tests.conftest import wait_until
from tests.emulators import Emulators

from .helpers import LogLines, Relay, publish_recipe, worker_through_relay

BEGINS = "Pub/Sub unreachable"
ENDS = "Pub/Sub reachable again after"
# Every line that says the broker answers again after failing.
RECOVERED = (ENDS, "broker answering again")


@pytest.mark.slow
def test_a_sync_pull_outage_ends_with_one_recovery_line(
    emulators: Emulators,
    settings_for: Any,
    store: Any,
    names: dict[str, str],
    log_lines: LogLines,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_for(pubsub_pull="sync")
    with worker_through_relay(settings, store, emulators.pubsub_host, monkeypatch) as (
        publisher,
        relay,
        _,
    ):
        publish_recipe(publisher, 0, 3)
        wait_until(lambda: store.count_events() == 3, 60, "the first messages counted")
        # Refused connections (a stopped emulator), then a host that takes requests and never
        # answers (a frozen one): each pull then blocks past the watch's 5 s, which says "broker
        # not answering"; its failure is not the end of the outage.
        for outage, how in ((1, relay.refuse), (2, relay.hang)):
            _outage(outage, how, relay, publisher, store, log_lines, names["pubsub_subscription"])
        assert len(log_lines.starting(BEGINS)) == 2
        assert log_lines.starting("broker not answering")  # the hang's pulls were watched
        assert not log_lines.starting("pull failed")


def _outage(
    outage: int,
    begin: Callable[[], None],
    relay: Relay,
    publisher: Broker,
    store: Any,
    log_lines: LogLines,
    subscription: str,
) -> None:
    """Outage number `outage`, begun by `begin`, ended by the relay listening again: logged
    once when it begins, once when it ends (where, how long), whatever the worker tried."""
    assert len(log_lines.starting(*RECOVERED)) == outage - 1
    begin()
    wait_until(lambda: len(log_lines.starting(BEGINS)) == outage, 30, "the outage logged")
    logged_at = time.monotonic()
    time.sleep(8.0)  # several failed pulls (the worker backs off 1 s, 2 s, 4 s)
    relay.refuse()  # the hung connections closed: new ones reach the emulator
    down_s = time.monotonic() - logged_at
    relay.restore()
    wait_until(lambda: len(log_lines.starting(ENDS)) == outage, 60, "the recovery logged")
    publish_recipe(publisher, 3 * outage, 3)  # pulled after the outage
    counted = 3 * (outage + 1)
    wait_until(lambda: store.count_events() == counted, 60, "the next messages counted")
    time.sleep(1.0)  # time for a second line, were there one
    recovered = log_lines.starting(*RECOVERED)
    assert len(recovered) == outage, [r.getMessage() for r in recovered]
    line = recovered[-1].getMessage()
    assert line.startswith(ENDS) and f"at {relay.host}" in line, line
    assert f"subscription {subscription}" in line, line
    assert recovered[-1].outage_s >= down_s - 1  # type: ignore[attr-defined]
