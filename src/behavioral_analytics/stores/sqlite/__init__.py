"""The SQLite store: the read model on one file, the embedded default (see `store` for the
map of the modules).

`EVENTS_SCHEMA` and `INSERT_EVENT` are exported for bench/pipeline.py's bare-insert baseline.
"""

from behavioral_analytics.stores.sqlite.schema import EVENTS_SCHEMA, INSERT_EVENT
from behavioral_analytics.stores.sqlite.store import SQLiteStore

__all__ = ["EVENTS_SCHEMA", "INSERT_EVENT", "SQLiteStore"]
