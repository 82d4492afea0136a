"""The key rule's version recorded in the Firestore store: `analytics_metadata/key_rule`,
field `versions` (the versions that have written the store, oldest first;
`events.KEY_RULE_VERSION`).

A process checks it before its first commit (once: a read per flush would be billed). A
database holding raw events but no document was written under version 1 (before the rule was
recorded), so its first recording lists [1, 2]: its stored Segment events keep their old keys,
and their redeliveries (published without `id_kind`) are keyed the old way, so they are still
one event each. A process older than the store's newest rule refuses to commit.
"""

from __future__ import annotations

import time

from google.api_core import exceptions as gexc
from google.cloud import firestore

from behavioral_analytics.events import KEY_RULE_VERSION
from behavioral_analytics.store import StoreError
from behavioral_analytics.stores.firestore.metadata import METADATA
from behavioral_analytics.stores.firestore.reach import Reach
from behavioral_analytics.stores.firestore.schema import EVENTS

__all__ = ["KeyRuleDocument"]

_DOCUMENT = "key_rule"


class KeyRuleDocument:
    """The recorded key rule versions of the database behind `client`, read and written with
    requests bounded by `reach`."""

    def __init__(self, client: firestore.Client, reach: Reach) -> None:
        self._client = client
        self._ref = client.collection(METADATA).document(_DOCUMENT)
        self._reach = reach
        self.held = False

    def read(self) -> list[int]:
        """The versions that have written the store, oldest first ([] before its first commit).

        Raises StoreError."""
        snapshot = self._reach.call(
            "key rule read", lambda timeout: self._ref.get(timeout=timeout, retry=None)
        )
        if not snapshot.exists:
            return []
        return [int(v) for v in snapshot.get("versions") or []]

    def hold(self) -> None:
        """Before a process's first commit: record this process's version unless recorded.

        Raises StoreError when the store was written by a newer key rule, or on a failed
        request."""
        if self.held:
            return
        reach = self._reach
        versions = self.read()
        if versions and max(versions) > KEY_RULE_VERSION:
            raise StoreError(
                f"the store's events are keyed by key rule {max(versions)}, this "
                f"process's is {KEY_RULE_VERSION}: upgrade it"
            )
        if not versions:
            first_event = self._client.collection(EVENTS).limit(1)
            events = reach.call(
                "raw event read", lambda timeout: first_event.get(timeout=timeout, retry=None)
            )
            document = {
                "versions": [1, KEY_RULE_VERSION] if events else [KEY_RULE_VERSION],
                "recorded_at": time.time(),
            }
            try:
                reach.call(
                    "key rule write",
                    lambda timeout: self._ref.create(document, timeout=timeout, retry=None),
                    passing=(gexc.AlreadyExists,),
                )
            except gexc.AlreadyExists:
                versions = self.read()  # another process recorded it meanwhile
        if versions and KEY_RULE_VERSION not in versions:
            added = {"versions": firestore.ArrayUnion([KEY_RULE_VERSION])}
            reach.call(
                "key rule write",
                lambda timeout: self._ref.update(added, timeout=timeout, retry=None),
            )
        self.held = True
