"""The Firestore store's metadata: the configuration that shapes its numbers (`StoredConfig`),
in one document, `analytics_metadata/config` (field `config`: its canonical JSON).

The first commit of a process creates the document if it is missing (`create`, so two
workers starting together record one configuration) and otherwise checks it: a process built
with another configuration fails its commit with one line. Later commits do not read it again
(a read per flush would be billed): after `config apply`, restart the workers.

Every request goes through `Reach`: retried within its deadline, its errors one line naming
the database (`reach`).
"""

from __future__ import annotations

import time

from google.api_core import exceptions as gexc
from google.cloud import firestore

from behavioral_analytics.store import ConfigChanged, StoreError
from behavioral_analytics.stored_config import StoredConfig, changed_line
from behavioral_analytics.stores.firestore.reach import Reach

__all__ = ["METADATA", "ConfigDocument"]

METADATA = "analytics_metadata"
_CONFIG = "config"


class ConfigDocument:
    """The recorded configuration of the database behind `client`, read and written with
    requests bounded by `reach`."""

    def __init__(self, client: firestore.Client, reach: Reach) -> None:
        self._ref = client.collection(METADATA).document(_CONFIG)
        self._reach = reach
        self.held = False

    def read(self) -> StoredConfig | None:
        """The recorded configuration, None before the first commit.

        Raises StoreError when it cannot be read (or read as one); TransientStoreError when
        the database did not answer within the deadline.
        """
        snapshot = self._reach.call(
            "configuration read at open", lambda timeout: self._ref.get(timeout=timeout, retry=None)
        )
        if not snapshot.exists:
            return None
        try:
            return StoredConfig.from_json(str(snapshot.get(_CONFIG)))
        except (KeyError, ValueError) as exc:
            raise StoreError(f"the store's recorded configuration is unreadable: {exc}") from None

    def write(self, config: StoredConfig) -> None:
        """Record `config`, replacing what was recorded.

        Raises StoreError.
        """
        document = {_CONFIG: config.to_json(), "recorded_at": time.time()}
        self._reach.call(
            "metadata write", lambda timeout: self._ref.set(document, timeout=timeout, retry=None)
        )

    def hold(self, config: StoredConfig) -> None:
        """Before a process's first commit: record `config` if nothing is recorded, else check
        that it is the recorded one (once per process).

        Raises ConfigChanged (one line, naming what differs) when another configuration is
        recorded.
        """
        if self.held:
            return
        document = {_CONFIG: config.to_json(), "recorded_at": time.time()}
        try:
            self._reach.call(
                "metadata write",
                lambda timeout: self._ref.create(document, timeout=timeout, retry=None),
                passing=(gexc.AlreadyExists,),
            )
        except gexc.AlreadyExists:
            recorded = self.read()
            if recorded is not None and recorded.to_json() != config.to_json():
                raise ConfigChanged(changed_line(config, recorded)) from None
        self.held = True
