"""segment-analytics-python and rudder-sdk-python, unmodified but for their host, through the
fault-injecting proxy to the real collector and worker: every scripted call stored once and as
sent (issue #13).

Each library plays the server session in its default (batching, background) mode with faults
injected, and in its sync mode (one blocking request per call, which the libraries never
retry) without faults.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conformance.checks import (
    Outcome,
    alias_and_group_answers,
    fault_problems,
    store_side_problems,
    stored_once_problems,
)
from tests.conformance.drivers import collect, run_python
from tests.conformance.fault_proxy import FaultProxy
from tests.conformance.profiles import RUDDER, SEGMENT_PYTHON
from tests.conformance.script import server_faults, server_session
from tests.conformance.stack import Stack

pytestmark = pytest.mark.slow

for _module, _package in (
    ("segment.analytics", "segment-analytics-python"),
    ("rudderstack.analytics", "rudder-sdk-python"),
):
    pytest.importorskip(
        _module, reason=f"SKIPPED LOUDLY: {_package} is not installed (pip install -e '.[test]')"
    )

# name: (library, sync mode, faults injected)
SESSIONS = {
    "segment": ("segment", False, True),
    "segment-sync": ("segment", True, False),
    "rudder": ("rudder", False, True),
    "rudder-sync": ("rudder", True, False),
}


@pytest.fixture(scope="module", params=list(SESSIONS))
def outcome(
    request: pytest.FixtureRequest, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Outcome:
    library, sync, faulty = SESSIONS[request.param]
    calls = server_session(f"py-{request.param}")
    profile = SEGMENT_PYTHON if library == "segment" else RUDDER
    with FaultProxy(stack.url, server_faults() if faulty else ()) as proxy:
        report: dict[str, Any] = run_python(
            library, proxy, calls, tmp_path_factory.mktemp(request.param), sync=sync
        )
    return collect(f"python-{request.param}", stack, proxy, profile, calls, report)


def test_each_call_is_stored_once_as_sent(outcome: Outcome) -> None:
    problems = stored_once_problems(outcome)
    assert not problems, outcome.report(problems)


def test_injected_faults_were_met_and_retried(outcome: Outcome) -> None:
    if not outcome.faults:
        pytest.skip("sync mode: the libraries do not retry, so no faults are injected")
    problems = fault_problems(outcome)
    assert not problems, outcome.report(problems)


def test_alias_and_group_are_answered_as_delivered(outcome: Outcome) -> None:
    problems = alias_and_group_answers(outcome)
    assert not problems, outcome.report(problems, outcome.ids(("alias", "group")))


def test_alias_and_group_are_stored_once(outcome: Outcome) -> None:
    problems = store_side_problems(outcome)
    assert not problems, outcome.report(problems, outcome.ids(("alias", "group")))
