"""@segment/analytics-node, unmodified but for its host, through the fault-injecting proxy to the
real collector and worker: every scripted call stored once and as sent (issue #13)."""

from __future__ import annotations

import pytest

from tests.conformance.checks import (
    Outcome,
    alias_and_group_answers,
    fault_problems,
    store_side_problems,
    stored_once_problems,
)
from tests.conformance.drivers import collect, node_missing, run_node
from tests.conformance.fault_proxy import FaultProxy
from tests.conformance.profiles import NODE
from tests.conformance.script import server_faults, server_session
from tests.conformance.stack import Stack

pytestmark = pytest.mark.slow

if reason := node_missing():
    pytest.skip(reason, allow_module_level=True)


@pytest.fixture(scope="module")
def outcome(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    calls = server_session("node")
    with FaultProxy(stack.url, server_faults()) as proxy:
        report = run_node(proxy, calls, tmp_path_factory.mktemp("node"))
    return collect("node", stack, proxy, NODE, calls, report)


def test_each_call_is_stored_once_as_sent(outcome: Outcome) -> None:
    problems = stored_once_problems(outcome)
    assert not problems, outcome.report(problems)


def test_injected_faults_were_met_and_retried(outcome: Outcome) -> None:
    problems = fault_problems(outcome)
    assert not problems, outcome.report(problems)


def test_alias_and_group_are_answered_as_delivered(outcome: Outcome) -> None:
    problems = alias_and_group_answers(outcome)
    assert not problems, outcome.report(problems, outcome.ids(("alias", "group")))


def test_alias_and_group_are_stored_once(outcome: Outcome) -> None:
    problems = store_side_problems(outcome)
    assert not problems, outcome.report(problems, outcome.ids(("alias", "group")))
