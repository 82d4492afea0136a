"""The way the Firestore store opens its database, in bounded time: the database id checked
against Firestore's rule, and the few requests made when a process opens the store, at `init`,
at `doctor` and before its first commit (the recorded configuration and key rule, the ping)
retried within `OPEN_DEADLINE_S` in all, then turned into one line naming the database and
where it is (the emulator's host or the project); and the reads made after that, at query time
(`query_bound`, `Reach.querying`), each retried within `QUERY_DEADLINE_S`, turned likewise;
and the requests of `verify` (each read within `ADMIN_READ_DEADLINE_S`) and of `rebuild` and
`forget` (each request within `ADMIN_WRITE_DEADLINE_S`), under `Reach.administering`.

The client library's own retry of a read gives up only after 300 s, and then raises
`RetryError`, which is not a `GoogleAPICallError`: a command run against a database that does
not answer waited five minutes and printed a traceback, and so did a query (or an API request,
the dashboard's) made after Firestore stopped answering.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.api_core import retry as retries
from google.cloud import firestore

from behavioral_analytics.firestore_ids import DATABASE_ID_RULE, database_id_problem
from behavioral_analytics.store import (
    LinkedAnonymousId,
    NotSupported,
    StoreError,
    TransientStoreError,
)
from behavioral_analytics.stores.firestore.gateway import BACKOFF_S, TRANSIENT_ERRORS

__all__ = [
    "ADMIN_READ_DEADLINE_S",
    "ADMIN_WRITE_DEADLINE_S",
    "OPEN_DEADLINE_S",
    "PING_TIMEOUT_S",
    "QUERY_DEADLINE_S",
    "QUERY_MAX_BACKOFF_S",
    "Reach",
    "check_database_id",
    "describe",
    "query_bound",
]

T = TypeVar("T")

# Seconds the requests made when the store opens may take in all, retries included.
OPEN_DEADLINE_S = 15.0
# Seconds one ping may take (no retry: the worker pings to ask whether the store is down).
PING_TIMEOUT_S = 5.0
# Seconds one read made after the store opened may take in all, retries included: a query's
# (a command's, an API request's and so the dashboard's), the dead-letter reads and writes of
# `dlq`. Long enough to ride out a transient error or two (retried with backoff from 0.2 s,
# as the commit is), short enough that an API request against a database that stopped
# answering gets its 503 before the dashboard's next refresh (15 s; its live view polls 1.5 s
# after each answer) rather than holding a server thread for the library's 300 s.
QUERY_DEADLINE_S = 10.0
# Seconds at most between two attempts of a read at query time (the wait from 0.2 s doubles up
# to this; the library draws each wait at random below it). Shorter than the commit's 4 s
# (`gateway.BACKOFF_S`): an API request that joined a read already retrying when Firestore came
# back (the API shares one read among the requests that want it, `api.cache`) waited up to 4 s
# more for it, and `/readyz`, which waits 2 s, answered 503 meanwhile. Against a Firestore that
# refuses, an attempt fails at once, so ten attempts in the 10 s cost nothing to speak of.
QUERY_MAX_BACKOFF_S = 1.0
# Seconds each read of `verify` may take, retries included: a page of up to 1,000 documents
# (`gateway.PAGE`) of the raw events, aggregates, breakdowns or group members. Per read, not
# for the whole verify: a verify of a big store makes thousands of reads over minutes, which no
# total deadline fits. Longer than a query's, since nobody's dashboard waits on it and a verify
# given up on a blip of 10 s has to start over; a tenth of the library's 300 s.
ADMIN_READ_DEADLINE_S = 30.0
# Seconds each request of `rebuild` (`verify --repair`, `config apply`) and `forget` may take,
# retries included (a read, or the commit of up to 400 writes). They write in many steps, not
# atomically, so they ride out an outage of a minute or so rather than stop half done; past
# that, one line says the database does not answer and how to finish (run again).
ADMIN_WRITE_DEADLINE_S = 90.0

_DETAIL_CHARS = 300


def check_database_id(database: str) -> None:
    """Raises StoreError (naming the rule) unless `database` is a valid Firestore database id
    (`firestore_ids`)."""
    if database_id_problem(database) is not None:
        raise StoreError(
            f"Firestore database id {database!r} is not valid (FIRESTORE_DATABASE): "
            f"{DATABASE_ID_RULE}"
        )


def describe(exc: BaseException) -> str:
    """`exc` as one line: its type and message (never a bare "None": some errors carry no
    message), with the last error a `RetryError` gave up on."""
    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        return f"{describe(exc.cause)} (retried: {type(exc).__name__})"
    # A GoogleAPICallError's str starts with its HTTP code, "None" when it has none.
    message = (exc.message or "") if isinstance(exc, gexc.GoogleAPICallError) else str(exc)
    message = " ".join(message.split())
    if not message or message == "None":
        message = "no message from the server"
    if len(message) > _DETAIL_CHARS:
        message = message[: _DETAIL_CHARS - 1] + "…"
    return f"{type(exc).__name__}: {message}"


def query_bound(
    timeout_s: float, deadline_s: float = QUERY_DEADLINE_S, max_backoff_s: float = BACKOFF_S[-1]
) -> dict[str, Any]:
    """The `retry=` and `timeout=` to give a client library read at query time (`get`,
    `stream`, `get_all`, a count's `get`, a `WriteBatch.commit`): the transient errors retried
    with backoff (0.2 s doubling up to `max_backoff_s`, by default 4 s, jittered) until
    `deadline_s` has passed, the attempts given `timeout_s` seconds at most, and never more than
    `deadline_s` in all (all in seconds).

    (The library counts `timeout` from the first attempt: an attempt gets what is left of it,
    or all of it again once less than a second is left, so a read can last up to twice
    `deadline_s` when its last attempt hangs; against a database that refuses, or hangs from
    the start, it gives up after `deadline_s`.)"""
    return {
        "retry": retries.Retry(
            predicate=retries.if_exception_type(*TRANSIENT_ERRORS),
            initial=BACKOFF_S[0],
            maximum=max_backoff_s,
            multiplier=2.0,
            timeout=deadline_s,
        ),
        "timeout": min(timeout_s, deadline_s),
    }


class Reach:
    """Requests to the database behind `client` retried within `deadline_s` seconds in all
    (each bounded by `timeout_s` and by what is left), their errors as StoreError; and the
    reads at query time, made with `bound` (`query_bound`: within `query_deadline_s` each,
    attempts at most `QUERY_MAX_BACKOFF_S` apart) under `querying`, which turns their errors
    likewise; and the requests of `verify`, made with `admin_read_bound` (within
    `admin_read_deadline_s` each), and of `rebuild` and `forget`, made with `admin_write_bound`
    (within `admin_write_deadline_s` each), under `administering`, likewise.

    `clock` and `sleep` are the monotonic clock and the wait between attempts."""

    def __init__(
        self,
        client: firestore.Client,
        *,
        timeout_s: float,
        deadline_s: float = OPEN_DEADLINE_S,
        query_deadline_s: float = QUERY_DEADLINE_S,
        admin_read_deadline_s: float = ADMIN_READ_DEADLINE_S,
        admin_write_deadline_s: float = ADMIN_WRITE_DEADLINE_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.database: str = client._database
        emulator = client._emulator_host
        self.where = (
            f"Firestore database {self.database!r} on the emulator at {emulator} "
            "(FIRESTORE_EMULATOR_HOST)"
            if emulator
            else f"Firestore database {self.database!r} of project {client.project!r}"
        )
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.query_deadline_s = query_deadline_s
        self.bound = query_bound(timeout_s, query_deadline_s, QUERY_MAX_BACKOFF_S)
        self.admin_read_deadline_s = admin_read_deadline_s
        self.admin_read_bound = query_bound(timeout_s, admin_read_deadline_s)
        self.admin_write_deadline_s = admin_write_deadline_s
        self.admin_write_bound = query_bound(timeout_s, admin_write_deadline_s)
        self._clock = clock
        self._sleep = sleep

    def call(
        self,
        what: str,
        request: Callable[[float], T],
        passing: tuple[type[BaseException], ...] = (),
        *,
        deadline_s: float | None = None,
    ) -> T:
        """`request(timeout_s)`, one attempt of `what` (say "metadata read"), sent again
        after a transient error until `deadline_s` (by default the one given at construction)
        has passed.

        Raises what `request` raises among `passing` as it is; `TransientStoreError` when the
        database did not answer in time; `StoreError` for any other refusal."""
        deadline_s = self.deadline_s if deadline_s is None else deadline_s
        started = self._clock()
        deadline = started + deadline_s
        attempt = 0
        while True:
            left = deadline - self._clock()
            try:
                return request(max(min(self.timeout_s, left), 0.1))
            except passing:
                raise
            except (*TRANSIENT_ERRORS, gexc.RetryError) as exc:
                pause = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)]
                if self._clock() + pause >= deadline:
                    tried_s = self._clock() - started
                    tries = "1 try" if attempt == 0 else f"{attempt + 1} tries"
                    raise TransientStoreError(
                        f"{self.where} unreachable: the {what} failed ({tries} in "
                        f"{tried_s:.0f} s, retried for up to {deadline_s:g} s): {describe(exc)}"
                    ) from exc
                self._sleep(pause)
                attempt += 1
            except gexc.GoogleAPIError as exc:
                raise self.error(what, exc) from exc

    @contextmanager
    def querying(self, what: str) -> Iterator[None]:
        """Runs the body, a read at query time (say "series read") whose requests are made with
        `bound`.

        Raises `TransientStoreError` when the database did not answer (a request's retries
        ran out, or a transient error came through); `StoreError` for any other refusal; the
        body's other errors as they are."""
        started = self._clock()
        try:
            yield
        except (*TRANSIENT_ERRORS, gexc.RetryError) as exc:
            tried_s = self._clock() - started
            raise TransientStoreError(
                f"{self.where} unreachable: the {what} failed after {tried_s:.0f} s (retried "
                f"for up to {self.query_deadline_s:g} s): {describe(exc)}"
            ) from exc
        except gexc.GoogleAPIError as exc:
            raise self.error(what, exc) from exc

    @contextmanager
    def administering(self, what: str, deadline_s: float, then: str = "") -> Iterator[None]:
        """Runs the body, `what` (say "verify read of the raw events"), whose requests are each
        retried within `deadline_s` seconds (made with `admin_read_bound` or
        `admin_write_bound`). `then`, when given, ends the line: what the interruption left and
        what to do (say "; run the same command again to finish").

        Raises `TransientStoreError` when the database did not answer (a request's retries
        ran out, or a transient error came through); `StoreError` for any other refusal; the
        body's `StoreError`s with where the database is and `then` added (`NotSupported` and
        `LinkedAnonymousId`, refusals, as they are); its other errors as they are."""
        try:
            yield
        except (*TRANSIENT_ERRORS, gexc.RetryError) as exc:
            raise TransientStoreError(
                f"{self.where} unreachable: the {what} stopped (each request retried for up to "
                f"{deadline_s:g} s): {describe(exc)}{then}"
            ) from exc
        except gexc.GoogleAPIError as exc:
            raise StoreError(f"{self.where}: the {what} failed: {describe(exc)}{then}") from exc
        except (NotSupported, LinkedAnonymousId):
            raise
        except StoreError as exc:
            message = " ".join(str(exc).split())
            if self.where not in message:
                message = f"{self.where}: the {what} stopped: {message}"
            raise type(exc)(f"{message}{then}") from exc

    def error(self, what: str, exc: BaseException) -> StoreError:
        """The one-line StoreError for `what` failing with `exc`."""
        return StoreError(f"{self.where}: {what} failed: {describe(exc)}")
