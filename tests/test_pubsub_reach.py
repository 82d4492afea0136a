"""`PubSubReach`: an outage is logged once when it begins and once when it ends; the answer to
a request sent before the outage began does not end it (it may arrive as the connection
breaks, after the first failure was seen: seen in tests/gcp/test_pubsub_outage_logs.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from behavioral_analytics.broker import end_logged_by
from behavioral_analytics.brokers.pubsub_reach import PubSubReach


def test_an_answer_to_a_request_sent_before_the_outage_does_not_end_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="behavioral_analytics")
    clock = [100.0]
    reach = PubSubReach("127.0.0.1:1", "sub", clock=lambda: clock[0])
    sent_before = reach.now()
    clock[0] += 1
    reach.failed("pull", gexc.ServiceUnavailable("socket closed"))
    assert reach.down
    clock[0] += 0.1
    reach.answered("acknowledge", sent_before)  # its answer was already on its way
    assert reach.down and reach.ends_logged == 0
    sent_after = reach.now()
    clock[0] += 5
    reach.answered("acknowledge", sent_after)
    assert not reach.down and reach.ends_logged == 1
    begins, ends = [r.getMessage() for r in caplog.records]
    assert begins.startswith("Pub/Sub unreachable at 127.0.0.1:1 (subscription sub)")
    assert ends.startswith("Pub/Sub reachable again after 5 s")


class _Broker:
    """What `end_logged_by` reads of a broker: its outage log."""

    def __init__(self, reach: PubSubReach) -> None:
        self.outage_log = reach


def test_a_call_answered_in_an_outage_the_broker_logged_is_no_recovery_of_the_workers() -> None:
    """A pull sent before the outage, answered after it began, ended the worker's watch with
    "broker answering again" while the broker, rightly, logged its own end only later: two
    recovery lines for one outage (tests/gcp/test_pubsub_recovery_once.py)."""
    clock = [100.0]
    reach = PubSubReach("127.0.0.1:1", "sub", clock=lambda: clock[0])
    broker: Any = _Broker(reach)
    before = end_logged_by(broker)  # the call begins before the outage
    sent_before = reach.now()
    clock[0] += 1
    reach.failed("pull", gexc.ServiceUnavailable("socket closed"))
    reach.answered("pull", sent_before)
    assert before(None)  # the broker's outage is open: it logs the end
    during = end_logged_by(broker)
    sent_after = reach.now()
    clock[0] += 5
    reach.answered("pull", sent_after)
    assert during(None)  # the broker logged the end meanwhile
    after = end_logged_by(broker)
    assert not after(None)  # no outage of the broker's: a stall's end is the worker's to log
