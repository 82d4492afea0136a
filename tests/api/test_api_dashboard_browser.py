"""The dashboard in headless Chromium, served by uvicorn while events flow: its numbers change
without a reload and agree with the store. Leaves a screenshot in test-artifacts/."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import READ_KEY, WRITE, make_settings

from behavioral_analytics.aggregation import Periods
from behavioral_analytics.funnels import PURCHASE_FUNNEL
from behavioral_analytics.loadgen import synthetic_stream
from behavioral_analytics.settings import Settings
from behavioral_analytics.telemetry import WorkerMetrics
from behavioral_analytics.wiring import build_broker, build_server, build_store, worker_options
from behavioral_analytics.worker import Worker

pytestmark = pytest.mark.browser

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
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="SKIPPED LOUDLY: playwright is not installed (pip install playwright)",
)
if not Path(CHROMIUM).exists():
    pytest.skip(
        "SKIPPED LOUDLY: no Chromium at /usr/bin/chromium (apt-get install -y chromium)",
        allow_module_level=True,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Traffic:
    """Posts batches to the collector (a few bad events among them) and runs a worker."""

    def __init__(self, base_url: str, settings: Settings) -> None:
        self.base_url = base_url
        self.settings = settings
        self.stop_publishing = threading.Event()
        self.stop_worker = threading.Event()
        self.sent = 0
        self.errors: list[BaseException] = []
        self._threads = [
            threading.Thread(target=self._guard(self._publish), daemon=True),
            threading.Thread(target=self._guard(self._work), daemon=True),
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_publishing.set()
        self.stop_worker.set()
        for thread in self._threads:
            thread.join(10)

    def finish_publishing(self) -> None:
        """Stops the publisher and waits for it, so that `sent` counts a batch in flight."""
        self.stop_publishing.set()
        self._threads[0].join(15)
        assert not self._threads[0].is_alive(), "the publisher did not stop within 15 s"

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # surfaced by the test
                self.errors.append(exc)

        return run

    def _publish(self) -> None:
        stream = synthetic_stream(seed=7)
        with httpx.Client(base_url=self.base_url, headers=WRITE, timeout=10) as http:
            # An hour of history first, so that the chart has something to show.
            now = time.time()
            history = [next(stream) for _ in range(1200)]
            for index, event in enumerate(history):
                event["timestamp"] = now - 55 * 60 + (55 * 60 - 30) * index / len(history)
            for start in range(0, len(history), 400):
                response = http.post("/v1/events", json=history[start : start + 400])
                assert response.status_code == 202, response.text
                self.sent += len(response.json()["accepted"])
            round_ = 0
            while not self.stop_publishing.is_set():
                batch: list[Any] = [next(stream) for _ in range(10)]
                del batch[0]["event_id"]
                if round_ % 4 == 0:
                    batch.append({"user_id": "user_1"})  # no event_type: a dead letter
                response = http.post("/v1/events", json=batch)
                assert response.status_code == 202, response.text
                self.sent += len(response.json()["accepted"])
                round_ += 1
                self.stop_publishing.wait(0.4)

    def _work(self) -> None:
        broker = build_broker(self.settings)
        store = build_store(self.settings)
        options = worker_options(self.settings, flush_interval_s=0.2)
        Worker(broker, store, options=options, metrics=WorkerMetrics()).run(self.stop_worker)


def serving(settings: Settings) -> Iterator[tuple[str, Settings]]:
    """The API and dashboard for `settings` on their port, in a thread, until resumed."""
    server = build_server(settings)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 15, "uvicorn to start")
    yield f"http://127.0.0.1:{settings.api_port}", settings
    server.should_exit = True
    thread.join(15)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    yield from serving(make_settings(tmp_path, api_port=free_port(), funnels=PURCHASE_FUNNEL))


def page_errors(page: Any) -> list[str]:
    """The page's script errors and console errors from now on, as they come. A 400 is left
    out: the page shows such an answer as a panel's message (a refused filter, a dimension the
    store does not keep), and Chromium logs every one as a console error."""
    errors: list[str] = []
    page.on(
        "console",
        lambda msg: (
            msg.type == "error" and "status of 400" not in msg.text and errors.append(msg.text)
        ),
    )
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


def number(page: Any, element_id: str) -> int | None:
    value = page.get_attribute(f"#{element_id}", "data-value")
    return int(value) if value else None


def test_the_dashboard_is_live_and_agrees_with_the_store(served: tuple[str, Settings]) -> None:
    base_url, settings = served
    store = build_store(settings)
    broker = build_broker(settings)
    periods = Periods(settings.timezone)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            console_errors = page_errors(page)

            # Without a key the page asks for one, and the JSON stays closed.
            page.goto(base_url + "/")
            page.wait_for_selector("#key-form:not([hidden])", timeout=10_000)
            console_errors.clear()  # the 401 itself is logged by the browser

            page.goto(base_url + f"/#key={READ_KEY}")  # a fragment: never sent to a server
            # Kept in localStorage, and gone from the address bar.
            page.wait_for_function("!location.href.includes('key=')", timeout=10_000)
            # Nothing committed yet: not "live".
            wait_for(
                lambda: page.inner_text("#status-text") == "no commit yet", 10, "the idle status"
            )
            assert page.get_attribute("#status", "data-state") == "stale"
            with Traffic(base_url, settings) as traffic:
                first = wait_for(
                    lambda: number(page, "kpi-today"), 20, "the first events on the page"
                )
                wait_for(lambda: (number(page, "kpi-today") or 0) > first, 20, "the total to grow")
                wait_for(lambda: page.locator("#recent-events tr").count() > 0, 10, "recent events")
                wait_for(lambda: page.locator("#chart rect[fill]").count() > 1, 10, "chart columns")
                traffic.finish_publishing()
                wait_for(lambda: not broker.backlog(), 20, "the worker to drain the backlog")

                day = periods.label("day", time.time())

                def agrees() -> bool:
                    points = store.series("day", day, day)
                    if not points:
                        return False
                    return (
                        number(page, "kpi-today") == points[0].total_events
                        and number(page, "kpi-users-today") == points[0].unique_users
                        and number(page, "kpi-dead-letters") == store.count_dead_letters()
                        and number(page, "kpi-active-5") == store.active_users(time.time() - 300)
                    )

                wait_for(agrees, 20, "the page to agree with the store")
                assert traffic.errors == []

                # Crawlers' events are counted apart from the humans'. The last hour's tile is
                # fetched apart from today's: it may show the drained backlog a refresh later.
                def last_hour_adds_up() -> bool:
                    human, bots = number(page, "kpi-60"), number(page, "kpi-bots-60")
                    return human is not None and bots is not None and human + bots == traffic.sent

                wait_for(last_hour_adds_up, 20, "the last hour's humans and crawlers to add up")
                sessions = store.session_series("day", day, day)[0].stats
                assert number(page, "sessions-count") == sessions.sessions > 0
                funnel = store.funnel("purchase", day, day)[0].users_by_step
                shown = page.locator("#funnel-steps li").evaluate_all(
                    "items => items.map(item => Number(item.dataset.users))"
                )
                assert shown == funnel and funnel[0] > 0
                assert (number(page, "kpi-dead-letters") or 0) > 0
            assert page.get_attribute("#status", "data-state") == "live"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            assert console_errors == []
        finally:
            browser.close()
            store.close()
            broker.close()
