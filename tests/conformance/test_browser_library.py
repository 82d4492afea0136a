"""@segment/analytics-next (analytics.js) in headless Chromium, unmodified but for its host
settings, through the fault-injecting proxy to the real collector and worker: every scripted
call stored once and as sent (issue #13).

The page is served from an origin of its own, so every request crosses CORS (analytics.js
sends `Authorization` and, on retries, `X-Retry-Count`, so each needs a preflight). The browser
presents an ordinary desktop Chrome user agent: headless Chromium's own names itself
"HeadlessChrome" and is rightly flagged as a bot. Three sessions:

- standard: one request per call to the short paths (`/v1/p`, `/v1/i`, `/v1/t`, …) as
  `text/plain`, settings given inline with `apiHost`; the anonymous landing page's answer is
  dropped, so its retry carries the `userId` the identify added meanwhile.
- batching: `/v1/b` batches, with the settings fetched from the collector
  (`GET /v1/projects/{writeKey}/settings`): only the host is configured.
- skewed clock: the device clock two hours ahead; the collector must correct with `sentAt`.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.checks import (
    Outcome,
    alias_and_group_answers,
    fault_problems,
    store_side_problems,
    stored_once_problems,
)
from tests.conformance.drivers import bundle_browser_client, collect, node_missing, settled
from tests.conformance.fault_proxy import Fault, FaultProxy
from tests.conformance.page_server import PageServer
from tests.conformance.profiles import BROWSER
from tests.conformance.script import (
    browser_batch_faults,
    browser_batch_session,
    browser_faults,
    browser_session,
    skewed_clock_session,
)
from tests.conformance.stack import WRITE_KEY, Stack

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SETTLE_TIMEOUT_S = 30
RUN_TIMEOUT_MS = 30_000
SKEW_S = 2 * 3600

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="SKIPPED LOUDLY: playwright is not installed (pip install -e '.[test]')",
)
if not Path(CHROMIUM).exists():
    pytest.skip(
        "SKIPPED LOUDLY: no Chromium at /usr/bin/chromium (apt-get install -y chromium)",
        allow_module_level=True,
    )
if reason := node_missing():
    pytest.skip(reason, allow_module_level=True)

# Runs before any script of the page: the device's clock, SKEW_S ahead of the real one.
_SKEWED_CLOCK = """
(() => {
  const offset = %d * 1000
  const RealDate = Date
  class DeviceDate extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(RealDate.now() + offset)
      else super(...args)
    }
    static now() { return RealDate.now() + offset }
  }
  window.Date = DeviceDate
})()
"""


@dataclasses.dataclass(frozen=True)
class Session:
    calls: Callable[[str], list[dict[str, Any]]]
    faults: Callable[[], list[Fault]]
    batching: bool = False
    settings_from_collector: bool = False
    clock_offset_s: float = 0.0


SESSIONS = {
    "standard": Session(browser_session, browser_faults),
    "batching": Session(
        browser_batch_session, browser_batch_faults, batching=True, settings_from_collector=True
    ),
    "skewed-clock": Session(skewed_clock_session, list, clock_offset_s=SKEW_S),
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def published(page_server: PageServer, tmp_path_factory: pytest.TempPathFactory) -> None:
    bundle = tmp_path_factory.mktemp("bundle") / "bundle.js"
    bundle_browser_client(bundle)
    page_server.publish("/bundle.js", "text/javascript; charset=utf-8", bundle.read_bytes())


def desktop_user_agent(browser: Any) -> str:
    """Chrome on Linux as a person runs it, in the version of the Chromium under test."""
    major = re.match(r"\d+", browser.version)
    return (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{major.group(0) if major else '130'}.0.0.0 Safari/537.36"
    )


def _config(session: Session, proxy: FaultProxy, calls: list[Any]) -> dict[str, Any]:
    segment: dict[str, Any] = {}
    config: dict[str, Any] = {"writeKey": WRITE_KEY, "calls": calls, "segment": segment}
    if session.settings_from_collector:
        config["cdnURL"] = proxy.url
    else:
        config["cdnSettings"] = {"integrations": {"Segment.io": {"apiKey": WRITE_KEY}}}
        segment.update(apiHost=f"127.0.0.1:{proxy.port}/v1", protocol="http")
    if session.batching:
        segment["deliveryStrategy"] = {
            "strategy": "batching",
            "config": {"size": 3, "timeout": 300},
        }
    return config


@pytest.fixture(scope="module", params=list(SESSIONS))
def outcome(
    request: pytest.FixtureRequest,
    stack: Stack,
    page_server: PageServer,
    browser: Any,
    published: None,
) -> Outcome:
    name = request.param
    session = SESSIONS[name]
    calls = session.calls(f"web-{name}")
    user_agent = desktop_user_agent(browser)
    page_url = f"{page_server.origin}/{name}/shop.html?utm_source=conformance"
    profile = dataclasses.replace(
        BROWSER, user_agent=user_agent, page_url=page_url, clock_offset_s=session.clock_offset_s
    )
    identified = next((c["userId"] for c in calls if c["call"] == "identify"), None)
    with FaultProxy(stack.url, session.faults()) as proxy:
        context = browser.new_context(user_agent=user_agent)
        try:
            if session.clock_offset_s:
                context.add_init_script(_SKEWED_CLOCK % session.clock_offset_s)
            page = context.new_page()
            page_errors: list[str] = []
            page.on("pageerror", lambda exc: page_errors.append(str(exc)))
            page.goto(page_url)
            page.wait_for_function("() => window.conformance !== undefined", timeout=15_000)
            report = _run(page, _config(session, proxy, calls), len(calls))
            ids = [r["messageId"] for r in report["results"] if r.get("messageId")]
            if not settled(proxy, ids, profile, SETTLE_TIMEOUT_S):
                report["flushed"] = False
            report["failures"] = page.evaluate("() => window.conformance.failures()")
            report["page errors"] = page_errors
        finally:
            context.close()
    return collect(
        f"browser-{name}", stack, proxy, profile, calls, report, identified_user=identified
    )


def _run(page: Any, config: dict[str, Any], count: int) -> dict[str, Any]:
    """The session in the page, bounded: a library that never loads is a report, not a hang."""
    try:
        report: dict[str, Any] = page.evaluate(
            """([config, ms]) => Promise.race([
                window.conformance.run(config),
                new Promise((_, reject) => setTimeout(
                    () => reject(new Error(`the session did not finish in ${ms} ms`)), ms)),
            ])""",
            [config, RUN_TIMEOUT_MS],
        )
    except sync_api.Error as exc:
        return {"results": [{} for _ in range(count)], "errors": [str(exc).splitlines()[0]]}
    return report


def test_each_call_is_stored_once_as_sent(outcome: Outcome) -> None:
    problems = stored_once_problems(outcome)
    assert not problems, outcome.report(problems)


def test_injected_faults_were_met_and_retried(outcome: Outcome) -> None:
    if not outcome.faults:
        pytest.skip("no faults injected in this session")
    problems = fault_problems(outcome)
    assert not problems, outcome.report(problems)


def test_alias_and_group_are_answered_as_delivered(outcome: Outcome) -> None:
    problems = alias_and_group_answers(outcome)
    assert not problems, outcome.report(problems, outcome.ids(("alias", "group")))


def test_alias_and_group_are_stored_once(outcome: Outcome) -> None:
    problems = store_side_problems(outcome)
    assert not problems, outcome.report(problems, outcome.ids(("alias", "group")))
