"""`PubSubReach`: an outage is logged once when it begins and once when it ends; the answer to
a request sent before the outage began does not end it (it may arrive as the connection
breaks, after the first failure was seen: seen in tests/gcp/test_pubsub_outage_logs.py)."""

from __future__ import annotations

import logging

import pytest
from google.api_core import exceptions as gexc

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
