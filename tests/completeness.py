"""Every selected test reports an outcome, or the run fails.

A test process that ends without running all it was given leaves a run of fewer tests that
still exits 0: a pass that tested less than it says. So does a node id given to several tests
(schemathesis' `schema.parametrize()` gives one to all its operations): pytest-xdist hands
tests out by id and runs one of them. The test ids selected (after `-k`, `-m`), counted with
their repeats, are compared at the end with the setups reported; a run that ends otherwise
successfully with any missing exits 1 and names them. A run stopped on purpose (`-x`, an
interrupt) or already failing is left as it is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest

_SHOWN = 20  # missing ids named in the message; the rest are counted


class Completeness:
    """The plugin: `expected` from the collection (the serial run's, or the first xdist
    worker's: every worker collects the same ids), `reported` from the setups reported (one
    per test run, skipped ones included)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.expected: Counter[str] | None = None
        self.reported: Counter[str] = Counter()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.items:
            self.expected = Counter(item.nodeid for item in session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: object, ids: Sequence[str]) -> None:
        if self.expected is None:
            self.expected = Counter(ids)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "setup":
            self.reported[report.nodeid] += 1

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if exitstatus != pytest.ExitCode.OK or session.shouldstop or self.expected is None:
            return
        missing = sorted((self.expected - self.reported).elements())
        if not missing:
            return
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        lines = [
            f"{len(missing)} of {self.expected.total()} selected tests never reported an "
            "outcome (a test process ended early, or tests share a node id): the run fails",
            *(f"  {nodeid}" for nodeid in missing[:_SHOWN]),
        ]
        if len(missing) > _SHOWN:
            lines.append(f"  … and {len(missing) - _SHOWN} more")
        if reporter is not None:
            reporter.line("")
            reporter.section("tests without an outcome", sep="=", red=True, bold=True)
            for line in lines:
                reporter.write_line(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config: pytest.Config) -> None:
    # Checked where the run's exit code is decided: the serial process, or xdist's controller.
    if hasattr(config, "workerinput") or config.option.collectonly:
        return
    config.pluginmanager.register(Completeness(config), "completeness")
