"""The Firestore store's metadata: the configuration that shapes its numbers (`StoredConfig`),
in one document, `analytics_metadata/config` (field `config`: its canonical JSON).

The first commit of a process creates the document if it is missing (`create`, so two
workers starting together record one configuration) and otherwise checks it: a process built
with another configuration fails its commit with one line. Later commits do not read it again
(a read per flush would be billed): after `config apply`, restart the workers.
"""

from __future__ import annotations

import time

from google.api_core import exceptions as gexc
from google.cloud import firestore

from behavioral_analytics.store import ConfigChanged, StoreError
from behavioral_analytics.stored_config import StoredConfig, changed_line

__all__ = ["METADATA", "ConfigDocument"]

METADATA = "analytics_metadata"
_CONFIG = "config"


class ConfigDocument:
    """The recorded configuration of the database behind `client`, read and written with
    requests bounded by `timeout_s`."""

    def __init__(self, client: firestore.Client, timeout_s: float) -> None:
        self._ref = client.collection(METADATA).document(_CONFIG)
        self._timeout_s = timeout_s
        self.held = False

    def read(self) -> StoredConfig | None:
        """The recorded configuration, None before the first commit.

        Raises StoreError when it cannot be read (or read as one).
        """
        try:
            snapshot = self._ref.get(timeout=self._timeout_s)
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"Firestore metadata unreadable: {exc}") from exc
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
        try:
            self._ref.set(
                {_CONFIG: config.to_json(), "recorded_at": time.time()},
                timeout=self._timeout_s,
            )
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"Firestore metadata not written: {exc}") from exc

    def hold(self, config: StoredConfig) -> None:
        """Before a process's first commit: record `config` if nothing is recorded, else check
        that it is the recorded one (once per process).

        Raises ConfigChanged (one line, naming what differs) when another configuration is
        recorded.
        """
        if self.held:
            return
        try:
            self._ref.create(
                {_CONFIG: config.to_json(), "recorded_at": time.time()}, timeout=self._timeout_s
            )
        except gexc.AlreadyExists:
            recorded = self.read()
            if recorded is not None and recorded.to_json() != config.to_json():
                raise ConfigChanged(changed_line(config, recorded)) from None
        except gexc.GoogleAPICallError as exc:
            raise StoreError(f"Firestore metadata not written: {exc}") from exc
        self.held = True
