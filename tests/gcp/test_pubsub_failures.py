"""Pub/Sub failures a trial of the command line met on the emulators: delivery attempts spent
at close, a dead letter's count stated twice differently, an empty publish error, and a worker
run before `init`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1

from behavioral_analytics.broker import BrokerError, OutgoingMessage
from behavioral_analytics.broker_letters import to_dead_letter
from behavioral_analytics.brokers import pubsub_admin
from behavioral_analytics.brokers.failure_log import InMemoryFailureLog
from behavioral_analytics.brokers.pubsub import PubSubBroker
from behavioral_analytics.wiring import worker_options
from behavioral_analytics.worker import Worker
from tests.conftest import wait_until
from tests.emulators import Emulators

from .helpers import data, recipe_payload


def _options(emulators: Emulators, names: dict[str, str], **options: Any) -> dict[str, Any]:
    """A broker on the test's own topic and subscription, with the suite's quick retries."""
    return {
        "project": emulators.project,
        "topic": names["pubsub_topic"],
        "subscription": names["pubsub_subscription"],
        "dead_letter_topic": f"{names['pubsub_topic']}-dead-letter",
        "dead_letter_subscription": f"{names['pubsub_subscription']}-dead-letter",
        "ack_deadline_s": 10,
        "min_backoff_s": 0,
        "max_backoff_s": 1,
        "failure_log": InMemoryFailureLog(),
        **options,
    }


def _broker(emulators: Emulators, names: dict[str, str], **options: Any) -> PubSubBroker:
    return PubSubBroker(**_options(emulators, names, **options))


def _raw_pull(client: Any, subscription: str, deadline_s: float, want: int = 1) -> list[Any]:
    """Unary pulls until `want` messages came or `deadline_s` passed."""
    got: list[Any] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < deadline:
        try:
            response = client.pull(
                request={"subscription": subscription, "max_messages": 10}, timeout=2, retry=None
            )
        except gexc.DeadlineExceeded:
            continue
        got.extend(response.received_messages)
    return got


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- 1. closing spends no delivery attempt of a message the worker never processed ------------


class _LateArrivals(PubSubBroker):
    """Publishes `late` more messages when the idle worker first asks for the backlog, and
    waits until the stream has delivered them: they arrive just as the worker decides to stop."""

    def __init__(self, late: list[bytes], **options: Any) -> None:
        super().__init__(**options)
        self.late = late

    def backlog(self, through: int | None = None) -> int | None:
        if self.late:
            batch, self.late = self.late, []
            self.publish([OutgoingMessage(d) for d in batch])
            wait_until(lambda: self.queued() == len(batch), 30, "the late messages delivered")
        return None


@pytest.mark.slow
def test_until_idle_commits_what_arrived_late_instead_of_giving_it_back(
    emulators: Emulators, names: dict[str, str], settings_for: Any, store: Any
) -> None:
    now = time.time()
    early = [data(recipe_payload(i, ts=now - 60)) for i in range(5)]
    late = [data(recipe_payload(i, ts=now - 60)) for i in range(5, 9)]
    broker = _LateArrivals(late, **_options(emulators, names))
    broker.init()
    broker.publish([OutgoingMessage(d) for d in early])
    worker = Worker(
        broker,
        store,
        options=worker_options(
            settings_for(), flush_interval_s=0.2, idle_after_s=0.5, drain_dead_letters=False
        ),
    )
    finished = threading.Event()
    thread = threading.Thread(
        target=lambda: (worker.run(threading.Event(), until_idle=True), finished.set()),
        daemon=True,
    )
    thread.start()
    wait_until(finished.is_set, 90, "the --until-idle run to end")
    broker.close()
    assert store.count_events() == 9  # the late four were committed, not given back
    client = pubsub_v1.SubscriberClient()
    try:
        # Nothing comes back, neither at once (a nack) nor after the ack deadline (a lapse).
        assert _raw_pull(client, broker.subscription, deadline_s=13) == []
    finally:
        client.close()


def test_stop_receiving_hands_out_what_the_stream_delivered(
    emulators: Emulators, names: dict[str, str]
) -> None:
    broker = _broker(emulators, names)
    broker.init()
    broker.publish([OutgoingMessage(f"m{i}".encode()) for i in range(5)])
    first = broker.pull(1, 10.0)
    wait_until(lambda: broker.queued() == 4, 30, "the other four queued, unclaimed")
    broker.stop_receiving()
    started = time.monotonic()
    rest = broker.pull(10, 5.0)
    assert time.monotonic() - started < 1  # no waiting: nothing more can come
    assert sorted(d.data for d in first + rest) == [f"m{i}".encode() for i in range(5)]
    assert all(d.delivery_attempt == 1 for d in first + rest)
    assert broker.pull(10, 0.5) == []  # and the stream is not started again
    broker.ack([d.ack_id for d in first + rest])  # plain RPCs: the stream is gone
    broker.close()
    client = pubsub_v1.SubscriberClient()
    try:
        assert _raw_pull(client, broker.subscription, deadline_s=13) == []
    finally:
        client.close()


@pytest.mark.parametrize("streaming", [True, False])
def test_a_message_given_back_comes_back_with_no_failure_recorded(
    emulators: Emulators, names: dict[str, str], streaming: bool
) -> None:
    """A stopping worker's unbegun batches are not failures: no failure-log write per message
    (a Firestore write each in production), and redelivered at once."""
    failure_log = InMemoryFailureLog()
    broker = _broker(emulators, names, streaming=streaming, failure_log=failure_log)
    broker.init()
    broker.publish([OutgoingMessage(b"given back")])
    try:
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while not got:  # a unary pull may answer empty
            assert time.monotonic() < deadline, "the message was never delivered"
            got = broker.pull(1, 1.0)
        broker.give_back([got[0].ack_id])
        again: list[Any] = []
        while not again:
            assert time.monotonic() < deadline + 30, "the message given back never came back"
            again = broker.pull(1, 1.0)
        assert again[0].data == b"given back" and again[0].delivery_attempt == 2
        assert failure_log._entries == {}
        broker.ack([again[0].ack_id])
    finally:
        broker.close()


class _LeasesThatGiveUpOnce:
    """A subscriber holding one message whose first lease extension fails as the client
    library's retries do when they give up (`RetryError`, no `GoogleAPICallError`)."""

    def __init__(self) -> None:
        self.extended: list[list[str]] = []

    def pull(self, request: dict[str, Any], **_: Any) -> Any:
        return pubsub_v1.types.PullResponse(
            received_messages=[
                pubsub_v1.types.ReceivedMessage(
                    ack_id="held",
                    message={"data": b"x", "message_id": "1", "publish_time": {"seconds": 1}},
                    delivery_attempt=1,
                )
            ]
        )

    def modify_ack_deadline(self, request: dict[str, Any], **_: Any) -> None:
        self.extended.append(list(request["ack_ids"]))
        if len(self.extended) == 1:
            raise gexc.RetryError("Timeout of 10.0s exceeded", gexc.ServiceUnavailable("refused"))

    def close(self) -> None:
        pass


class _NoPublisher:
    def stop(self) -> None:
        pass


def test_leases_are_extended_again_after_an_extension_gives_up() -> None:
    """A `RetryError` out of one extension ended the thread that extends the leases, so every
    message held after it was redelivered once its lease ran out, for the life of the worker."""
    subscriber = _LeasesThatGiveUpOnce()
    broker = PubSubBroker(
        "p",
        subscription="s",
        ack_deadline_s=3,  # an extension a second
        streaming=False,
        publisher=_NoPublisher(),  # type: ignore[arg-type]
        subscriber=subscriber,  # type: ignore[arg-type]
    )
    try:
        [held] = broker.pull(1, 1.0)
        assert held.ack_id == "held"
        wait_until(lambda: len(subscriber.extended) >= 2, timeout=20, what="a second extension")
        assert subscriber.extended[:2] == [["held"], ["held"]]
    finally:
        broker.close(timeout=1)


def test_a_dead_letter_states_one_delivery_count(
    emulators: Emulators, names: dict[str, str]
) -> None:
    broker = _broker(emulators, names, streaming=False)
    broker.init()
    broker.publish([OutgoingMessage(b"never acked"), OutgoingMessage(b"nacked once by us")])
    client = pubsub_v1.SubscriberClient()
    dead: list[Any] = []
    try:
        deadline = time.monotonic() + 90
        while len(dead) < 2:
            assert time.monotonic() < deadline, f"not dead-lettered: {dead}"
            for delivery in broker.pull(10, 1.0):
                if delivery.data == b"nacked once by us" and delivery.delivery_attempt == 1:
                    broker.nack([delivery.ack_id], "worker stopping")
                    continue
                client.modify_ack_deadline(  # a nack that records no reason
                    request={
                        "subscription": broker.subscription,
                        "ack_ids": [delivery.ack_id],
                        "ack_deadline_seconds": 0,
                    }
                )
            dead.extend(broker.pull_dead_letters(10))
    finally:
        client.close()
        broker.close()
    records = {d.data: to_dead_letter(d) for d in dead}
    silent, recorded = records[b"never acked"], records[b"nacked once by us"]
    assert silent.reason == "max_delivery_attempts: 5 deliveries, no ack"
    assert silent.detail == "the broker gave up after 5 delivery attempts"
    assert recorded.reason == "worker stopping"
    assert recorded.detail == "the broker gave up after 5 delivery attempts"


# -- 2. a publish that gets no answer says why, in bounded time --------------------------------


@pytest.fixture
def dead_pubsub(monkeypatch: pytest.MonkeyPatch) -> str:
    """PUBSUB_EMULATOR_HOST set to a loopback address where nothing listens; that address."""
    host = f"127.0.0.1:{_free_port()}"
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", host)
    return host


def test_publish_to_an_unreachable_pubsub_names_the_reason(dead_pubsub: str) -> None:
    host = dead_pubsub
    broker = PubSubBroker("p", topic="t", publish_timeout_s=2)
    started = time.monotonic()
    with pytest.raises(BrokerError) as caught:
        broker.publish([OutgoingMessage(b"x")])
    assert time.monotonic() - started < 10
    assert str(caught.value) == (
        f"cannot publish to projects/p/topics/t: DeadlineExceeded (Pub/Sub at {host} did not "
        "answer in 2 s)"
    )
    broker.close(timeout=1)


def test_a_synchronous_pull_from_an_unreachable_pubsub_is_an_error_not_an_empty_answer(
    dead_pubsub: str,
) -> None:
    """An empty answer read as "idle": `worker --until-idle` exited 0 having pulled nothing."""
    host = dead_pubsub
    broker = PubSubBroker("p", topic="t", subscription="s", streaming=False)
    with pytest.raises(BrokerError) as caught:
        broker.pull(10, 1.0)
    assert str(caught.value).startswith(f"Pub/Sub at {host} unavailable: ")
    assert not caught.value.permanent  # a worker retries it
    broker.close(timeout=1)


def test_publish_to_a_topic_that_does_not_exist_says_to_run_init(
    emulators: Emulators, names: dict[str, str]
) -> None:
    broker = PubSubBroker(emulators.project, topic=names["pubsub_topic"], publish_timeout_s=10)
    with pytest.raises(BrokerError) as caught:
        broker.publish([OutgoingMessage(b"x")])
    assert str(caught.value) == (
        f"cannot publish to {broker.topic}: the topic does not exist: run "
        "`behavioral-analytics init` first"
    )
    broker.close(timeout=1)


def test_init_against_an_unreachable_pubsub_gives_up_within_its_deadline(
    dead_pubsub: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client library's own retry kept `init` waiting for minutes."""
    host = dead_pubsub
    monkeypatch.setattr(pubsub_admin, "ADMIN_DEADLINE_S", 2.0)
    broker = PubSubBroker("p", topic="t", subscription="s")
    started = time.monotonic()
    with pytest.raises(BrokerError) as caught:
        broker.init()
    assert time.monotonic() - started < 10
    assert str(caught.value) == (
        f"Pub/Sub at {host} did not answer within 2 s (ServiceUnavailable) to create the "
        "topics and subscriptions"
    )
    broker.close(timeout=1)


def _cli(args: list[str], env: dict[str, str], cwd: Path, stdin: bytes = b"") -> Any:
    return subprocess.run(
        [sys.executable, "-m", "behavioral_analytics.cli", *args],
        env={**os.environ, "BA_METRICS_EXPORTER": "none", **env},
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.slow
def test_cli_publish_to_an_unreachable_pubsub_prints_one_line(tmp_path: Path) -> None:
    host = f"127.0.0.1:{_free_port()}"
    started = time.monotonic()
    result = _cli(
        ["publish", "-"],
        # Both emulator hosts, as a user's shell has them: with Pub/Sub's alone, the broker's
        # Firestore client looks for credentials (the test passed only after another test had
        # set FIRESTORE_EMULATOR_HOST in this process).
        {
            "BA_BACKEND": "gcp",
            "GOOGLE_CLOUD_PROJECT": "p",
            "PUBSUB_EMULATOR_HOST": host,
            "FIRESTORE_EMULATOR_HOST": host,
        },
        tmp_path,
        b'{"event_id": "e1"}\n',
    )
    assert time.monotonic() - started < 60
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "Traceback" not in err
    assert err.strip().splitlines() == [
        "error: cannot publish to projects/p/topics/user-events: DeadlineExceeded (Pub/Sub at "
        f"{host} did not answer in 10 s); nothing was published"
    ]


# -- 3. a worker run before `init` ---------------------------------------------------------


@pytest.mark.parametrize(
    ("pull", "command"),
    # `--until-idle` pulls synchronously whatever BA_PUBSUB_PULL says; a worker that runs
    # until stopped streams by default.
    [("streaming", ["worker"]), ("sync", ["worker"]), ("streaming", ["worker", "--until-idle"])],
)
def test_worker_before_init_exits_non_zero_with_one_line(
    pull: str,
    command: list[str],
    emulators: Emulators,
    names: dict[str, str],
    database: str,
    tmp_path: Path,
) -> None:
    env = {
        **emulators.env(),
        "BA_BACKEND": "gcp",
        "BA_PUBSUB_PULL": pull,
        "FIRESTORE_DATABASE": database,
        "PUBSUB_TOPIC": names["pubsub_topic"],
        "PUBSUB_SUBSCRIPTION": names["pubsub_subscription"],
    }
    result = _cli(command, env, tmp_path)
    err, out = result.stderr.decode(), result.stdout.decode()
    assert result.returncode == 1, (out, err)
    subscription = f"projects/{emulators.project}/subscriptions/{names['pubsub_subscription']}"
    assert err.strip().splitlines() == [
        f"error: subscription {subscription} does not exist: run `behavioral-analytics init` first"
    ]
    assert "answering again" not in out
    assert "Traceback" not in out + err


# -- repeated runs until idle, as a user's script makes them -------------------------------


def test_rounds_of_publish_and_worker_until_idle_count_every_event_once(
    emulators: Emulators, names: dict[str, str], database: str, tmp_path: Path
) -> None:
    """With the default streaming setting: the emulator keeps sending to a stream that ended,
    so a streaming `--until-idle` left later rounds' events stranded (5 of 25 counted)."""
    env = {
        **emulators.env(),
        "BA_BACKEND": "gcp",
        "FIRESTORE_DATABASE": database,
        "PUBSUB_TOPIC": names["pubsub_topic"],
        "PUBSUB_SUBSCRIPTION": names["pubsub_subscription"],
    }
    assert _cli(["init"], env, tmp_path).returncode == 0
    for round_ in range(3):
        now = time.time()
        lines = b"".join(
            data(recipe_payload(round_ * 10 + i, ts=now - i)) + b"\n" for i in range(4)
        )
        assert _cli(["publish", "-"], env, tmp_path, lines).returncode == 0
        result = _cli(["worker", "--until-idle"], env, tmp_path)
        assert result.returncode == 0, result.stderr.decode()
    result = _cli(["verify", "--json"], env, tmp_path)
    report = json.loads(result.stdout)
    assert report["raw_events"] == 12, report
    assert report["ok"], report


def test_a_failed_ordered_publish_does_not_hold_its_ordering_key_afterwards(
    emulators: Emulators, names: dict[str, str]
) -> None:
    """With ordering on, the library pauses an ordering key whose publish failed for good and
    fails every later publish of it at once: a person's events were refused (503) until the
    collector restarted."""
    broker = _broker(emulators, names, ordering=True, publish_timeout_s=3.0)
    try:
        with pytest.raises(BrokerError):  # no topic yet: NotFound
            broker.publish([OutgoingMessage(b"first", ordering_key="person-1")])
        broker.init()
        (published,) = broker.publish([OutgoingMessage(b"again", ordering_key="person-1")])
        assert published
    finally:
        broker.close()
