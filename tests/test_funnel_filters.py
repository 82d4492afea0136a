"""Funnel step filters compare JSON values strictly by type (docs/behavior.md, "Funnels")."""

from __future__ import annotations

from typing import Any

import pytest

from behavioral_analytics.funnels import json_equal, parse_funnels


def _step_matches(where: dict[str, Any], properties: dict[str, Any]) -> bool:
    (funnel,) = parse_funnels(
        [{"name": "f", "steps": ["view", {"event_type": "buy", "where": where}], "window_s": 60}]
    )
    return bool(funnel.matched_steps("buy", properties))


@pytest.mark.parametrize(
    ("wanted", "value", "equal"),
    [
        (1, True, False),
        (True, 1, False),
        (0, False, False),
        (False, 0, False),
        (1, "1", False),
        ("1", 1, False),
        (1, 1.0, True),
        (1.5, 1.5, True),
        (None, None, True),
        (None, False, False),
        ("", None, False),
        ([1, 2], [1, 2], True),
        ([1], [True], False),
        ({"a": 1}, {"a": True}, False),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ([1], {"0": 1}, False),
    ],
)
def test_json_values_compare_strictly_by_type(wanted: Any, value: Any, equal: bool) -> None:
    assert json_equal(wanted, value) is equal
    assert json_equal(value, wanted) is equal
    assert _step_matches({"qty": wanted}, {"qty": value}) is equal


def test_the_issue_case_qty_one_does_not_match_true() -> None:
    assert not _step_matches({"qty": 1}, {"qty": True})
    assert _step_matches({"qty": 1}, {"qty": 1})


def test_null_does_not_match_a_missing_property_and_paths_go_into_objects() -> None:
    assert not _step_matches({"coupon": None}, {})
    assert _step_matches({"coupon": None}, {"coupon": None})
    assert _step_matches({"cart.total": 10}, {"cart": {"total": 10.0}})
    assert not _step_matches({"cart.total": 10}, {"cart": {"total": "10"}})
