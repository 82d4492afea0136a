"""The API's watch on the configuration recorded with the data.

The API answers by the configuration it opened the store with (time zone, funnels, breakdown
dimensions). After `config apply`, or a worker that recorded a funnel the environment added,
the record differs and every answer would be stale: series in the old zone, a new funnel
unknown. Every `CHECK_S` seconds the watch reads the record; on a change it keeps the one line
that names it (`stored_config.changed_line`) in `ApiState.config_changed`, which `/readyz`
reports, logs it at ERROR and calls `ApiState.stop`, which stops the server: `api` then exits 1
with that line, `up` stops with it, and Cloud Run starts a new instance, which counts by the
recorded configuration. A store whose files a newer release upgraded (SQLite's layout number:
the read raises `ConfigChanged` with its line) stops the API the same way. A read that fails
otherwise is left to `/readyz`'s store check.
"""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool

from behavioral_analytics.api.state import ApiState
from behavioral_analytics.store import ConfigChanged
from behavioral_analytics.stored_config import StoredConfig, changed_line
from behavioral_analytics.telemetry import log

__all__ = ["CHECK_S", "watch_config"]

CHECK_S = 10.0


async def watch_config(state: ApiState, held: StoredConfig, check_s: float = CHECK_S) -> None:
    """Read the recorded configuration every `check_s` seconds until it is not `held`; then
    set `state.config_changed`, log it and call `state.stop` (when set). Runs until cancelled."""
    while True:
        await asyncio.sleep(check_s)
        try:
            recorded = await run_in_threadpool(state.store.recorded_config)
        except ConfigChanged as exc:  # a newer release upgraded the store's files
            state.config_changed = str(exc)
        except Exception:
            continue
        else:
            if recorded is None or recorded.to_json() == held.to_json():
                continue
            state.config_changed = changed_line(held, recorded)
        log.error("API stopping", extra={"error": state.config_changed})
        if state.stop is not None:
            state.stop()
        return
