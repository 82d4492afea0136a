"""Moved: the identity and forget scenarios are tests of the Store contract suite
(tests/contract/test_identity.py and test_forget.py), run once over every store, and their
time frame and builders live in tests/contract/builders.py. These names stay importable from
here only until the last module that imports them points there instead."""

from __future__ import annotations

from tests.contract.builders import (
    DAY_START,
    HOUR,
    NOW,
    assert_matches_remaining,
    assert_recounts,
    ev,
    refused_scenario,
)
from tests.contract.test_forget import (
    test_forget_covers_an_event_dated_ahead_of_the_clock as forget_covers_an_event_dated_ahead_of_the_clock,  # noqa: E501
)

__all__ = [
    "DAY_START",
    "HOUR",
    "NOW",
    "assert_matches_remaining",
    "assert_recounts",
    "ev",
    "forget_covers_an_event_dated_ahead_of_the_clock",
    "refused_scenario",
]
