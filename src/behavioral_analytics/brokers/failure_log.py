"""Why a Pub/Sub message failed, kept outside Pub/Sub.

Pub/Sub's dead-letter forwarding attaches no failure reason and gives the forwarded message a
new message id; it keeps the data and attributes and adds
`CloudPubSubDeadLetterSourceSubscription`. So a failure is recorded under a key made of the
source subscription, the data and the original attributes, which the drainer can compute again
from the dead-lettered copy. Identical payloads share a record, which is harmless: they fail
for the same reason.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

__all__ = ["FailureLog", "FirestoreFailureLog", "InMemoryFailureLog", "failure_key"]

DEAD_LETTER_ATTRIBUTE_PREFIX = "CloudPubSubDeadLetter"


def failure_key(subscription: str, data: bytes, attributes: Mapping[str, str]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(subscription.encode())
    digest.update(b"\x1e")
    digest.update(data)
    for name in sorted(attributes):
        if name.startswith(DEAD_LETTER_ATTRIBUTE_PREFIX):
            continue
        digest.update(b"\x1e" + name.encode() + b"\x1f" + attributes[name].encode())
    return digest.hexdigest()


class FailureLog(Protocol):
    def record(self, failures: Mapping[str, dict[str, Any]]) -> None:
        """`failures`: key → {"message_id", "attempt", "at", "reason"}."""

    def lookup(self, keys: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """key → the recorded attempts, oldest first (keys never recorded are left out)."""

    def forget(self, keys: Iterable[str]) -> None: ...


class InMemoryFailureLog:
    """For a single process (and tests): lost on restart."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, list[dict[str, Any]]] = {}
        self._max_keys = max_keys

    def record(self, failures: Mapping[str, dict[str, Any]]) -> None:
        with self._lock:
            for key, entry in failures.items():
                if key not in self._entries and len(self._entries) >= self._max_keys:
                    self._entries.pop(next(iter(self._entries)))
                self._entries.setdefault(key, []).append(dict(entry))

    def lookup(self, keys: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {k: list(self._entries[k]) for k in keys if k in self._entries}

    def forget(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)


class FirestoreFailureLog:
    """One small document per failing message in `delivery_failures`, shared by every worker.

    Written only on nack (a transient failure), never on the happy path. `expire_at` lets a
    TTL policy clear records of messages that later succeeded."""

    def __init__(
        self,
        client: Any,
        collection: str = "delivery_failures",
        retention_s: float = 8 * 86400.0,
        timeout_s: float = 10.0,
    ) -> None:
        from google.cloud import firestore

        self._firestore = firestore
        self.db = client
        self.collection = collection
        self.retention_s = retention_s
        self.timeout_s = timeout_s

    def record(self, failures: Mapping[str, dict[str, Any]]) -> None:
        items = list(failures.items())
        expire_at = datetime.now(UTC) + timedelta(seconds=self.retention_s)
        for start in range(0, len(items), 400):
            batch = self.db.batch()
            for key, entry in items[start : start + 400]:
                batch.set(
                    self.db.collection(self.collection).document(key),
                    {
                        "attempts": self._firestore.ArrayUnion([dict(entry)]),
                        "reason": entry.get("reason", ""),
                        "updated_at": time.time(),
                        "expire_at": expire_at,
                    },
                    merge=True,
                )
            batch.commit(timeout=self.timeout_s)

    def lookup(self, keys: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        refs = [self.db.collection(self.collection).document(k) for k in dict.fromkeys(keys)]
        found: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(refs), 500):
            for snap in self.db.get_all(refs[start : start + 500], timeout=self.timeout_s):
                if snap.exists:
                    attempts = (snap.to_dict() or {}).get("attempts") or []
                    found[snap.id] = sorted(attempts, key=lambda a: a.get("at", 0.0))
        return found

    def forget(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), 400):
            batch = self.db.batch()
            for key in keys[start : start + 400]:
                batch.delete(self.db.collection(self.collection).document(key))
            batch.commit(timeout=self.timeout_s)
