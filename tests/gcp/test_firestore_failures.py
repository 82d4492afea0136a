"""The Firestore store when the database cannot be used: unreachable (nothing listens where
FIRESTORE_EMULATOR_HOST points) or named by an id Firestore refuses. Opening it, `init`,
`doctor`, a query and the worker end in bounded time with one line naming the database and
where it is, never a traceback, never "None" as the reason."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from google.api_core import exceptions as gexc
from google.cloud import firestore

from behavioral_analytics.store import StoreError, TransientStoreError
from behavioral_analytics.stores.firestore import FirestoreStore
from behavioral_analytics.stores.firestore.reach import (
    OPEN_DEADLINE_S,
    PING_TIMEOUT_S,
    check_database_id,
    describe,
)
from tests.emulators import Emulators

from .helpers import event, recipe_payload

SHORT_DEADLINE_S = 2.0
SLACK_S = 5.0  # a process's start, the client's first connection


@pytest.fixture
def dead_host(monkeypatch: pytest.MonkeyPatch) -> str:
    """A loopback address where nothing listens, as FIRESTORE_EMULATOR_HOST."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
    return host


@pytest.fixture
def unreachable_store(dead_host: str) -> Iterator[FirestoreStore]:
    client = firestore.Client(project="demo-unreachable", database="test-gone")
    store = FirestoreStore(client, database="test-gone", open_deadline_s=SHORT_DEADLINE_S)
    yield store
    store.close()


def _one_line_naming_the_database(message: str, host: str) -> None:
    assert "\n" not in message, message
    assert "'test-gone'" in message and host in message and "unreachable" in message, message
    assert "None" not in message, message


def test_the_open_time_reads_give_up_within_their_deadline(
    unreachable_store: FirestoreStore, dead_host: str
) -> None:
    for read in (unreachable_store.recorded_config, unreachable_store.key_rules):
        started = time.monotonic()
        with pytest.raises(TransientStoreError) as caught:
            read()
        assert time.monotonic() - started < SHORT_DEADLINE_S + SLACK_S
        _one_line_naming_the_database(str(caught.value), dead_host)
        assert "ServiceUnavailable" in str(caught.value)


def test_a_first_commit_fails_as_transient_within_the_deadline(
    unreachable_store: FirestoreStore, dead_host: str
) -> None:
    """The configuration and key rule are held before a process's first commit: the worker
    retries a TransientStoreError rather than failing on a traceback."""
    started = time.monotonic()
    with pytest.raises(TransientStoreError) as caught:
        unreachable_store.commit([event(recipe_payload(1))])
    assert time.monotonic() - started < SHORT_DEADLINE_S + SLACK_S
    _one_line_naming_the_database(str(caught.value), dead_host)


def test_ping_fails_within_its_timeout(unreachable_store: FirestoreStore, dead_host: str) -> None:
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        unreachable_store.ping()
    assert time.monotonic() - started < PING_TIMEOUT_S + SLACK_S
    _one_line_naming_the_database(str(caught.value), dead_host)


def test_the_default_open_deadline_is_seconds() -> None:
    assert 1.0 <= OPEN_DEADLINE_S <= 30.0


@pytest.mark.parametrize(
    "database",
    ["Bad DB!", "abc", "Abcd", "1abc", "abc-", "a" * 64, "e7c8a0b2-1234-4bcd-8def-0123456789ab"],
)
def test_an_invalid_database_id_is_refused_with_firestores_rule(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")  # never asked
    with pytest.raises(StoreError) as caught:
        FirestoreStore(firestore.Client(project="demo-x", database=database))
    message = str(caught.value)
    assert repr(database) in message and "4 to 63 characters" in message, message
    assert "lowercase letters, digits and hyphens" in message and "None" not in message


@pytest.mark.parametrize("database", ["(default)", "test-db", "a1-b", "b" * 63])
def test_valid_database_ids_pass(database: str) -> None:
    check_database_id(database)


def test_an_error_without_a_message_is_described_by_its_type() -> None:
    """The emulator answered an invalid database id with UNKNOWN and no message: the old line
    read "Firestore metadata unreadable: None"."""
    assert str(gexc.Unknown("")).strip() == "None"  # what the old line printed
    assert describe(gexc.Unknown("")) == "Unknown: no message from the server"
    retried = gexc.RetryError("Timeout of 300.0s exceeded", gexc.ServiceUnavailable("refused"))
    assert describe(retried) == "ServiceUnavailable: refused (retried: RetryError)"


def _cli(*args: str, env: dict[str, str], unset: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    environment = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.Popen(
        [sys.executable, "-m", "behavioral_analytics.cli", *args],
        env={**environment, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_commands_against_an_unreachable_firestore_end_in_bounded_time_with_one_line(
    emulators: Emulators, dead_host: str, names: dict[str, str]
) -> None:
    """As a user meets it, with the default deadline: the commands run side by side, so the
    test takes one deadline (Pub/Sub is the emulator, which answers)."""
    env = {
        "BA_BACKEND": "gcp",
        "GOOGLE_CLOUD_PROJECT": emulators.project,
        "PUBSUB_EMULATOR_HOST": emulators.pubsub_host,
        "FIRESTORE_EMULATOR_HOST": dead_host,
        "FIRESTORE_DATABASE": "test-gone",
        "PUBSUB_TOPIC": names["pubsub_topic"],
        "PUBSUB_SUBSCRIPTION": names["pubsub_subscription"],
    }
    commands = {
        "doctor": ("doctor",),
        "query": ("query", "profile", "user_1"),
        "init": ("init",),
        "worker": ("worker", "--until-idle"),
    }
    started = time.monotonic()
    running = {name: _cli(*args, env=env) for name, args in commands.items()}
    limit_s = OPEN_DEADLINE_S + 20.0
    outputs = {}
    try:
        for name, process in running.items():
            left = max(limit_s - (time.monotonic() - started), 1.0)
            out, err = process.communicate(timeout=left)
            outputs[name] = (process.returncode, out.decode(), err.decode())
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)
    for name, (code, out, err) in outputs.items():
        assert code == 1, (name, code, out, err)
        assert "Traceback" not in err, (name, err)
        flat = " ".join(err.split())  # the console wraps long lines
        assert "Firestore database 'test-gone' on the emulator at" in flat, (name, err)
        assert dead_host in flat and "unreachable" in flat and "None" not in flat, (name, err)
    assert "✗ store" in outputs["doctor"][2]


@pytest.mark.slow
def test_a_command_with_an_invalid_database_id_says_what_is_wrong(
    emulators: Emulators,
) -> None:
    env = {
        "BA_BACKEND": "gcp",
        "GOOGLE_CLOUD_PROJECT": emulators.project,
        "FIRESTORE_EMULATOR_HOST": emulators.firestore_host,
        "FIRESTORE_DATABASE": "Bad DB!",
    }
    process = _cli("query", "profile", "user_1", env=env)
    out, err = process.communicate(timeout=60)
    flat = " ".join(err.decode().split())
    assert process.returncode == 2, (out, err)  # a configuration error, refused at load
    assert "invalid FIRESTORE_DATABASE: 'Bad DB!' is not a valid Firestore database id" in flat
    assert "4 to 63 characters" in flat and "None" not in flat, flat


@pytest.mark.parametrize("command", [("doctor",), ("query", "series"), ("publish", "-")])
def test_no_google_credentials_is_one_line_that_says_how_to_get_them(
    command: tuple[str, ...],
) -> None:
    """No emulator and no credentials: the Google clients refuse to start. Each command says
    so in one line naming the two ways out and exits 2, a configuration error (they printed a
    traceback)."""
    env = {
        "BA_BACKEND": "gcp",
        "GOOGLE_CLOUD_PROJECT": "demo-no-credentials",
        "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/credentials.json",
    }
    process = _cli(*command, env=env, unset=("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"))
    out, err = process.communicate(b"", timeout=60)
    text = err.decode()
    assert process.returncode == 2, (out, text)
    assert "Traceback" not in text, text
    assert (
        "found no Google credentials (File /nonexistent/credentials.json was not found): run "
        "`gcloud auth application-default login`"
    ) in text, text
    assert "_EMULATOR_HOST for the emulators" in text, text
    assert len(text.strip().splitlines()) == 1, text
