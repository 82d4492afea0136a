"""Plays a scripted session through segment-analytics-python or rudder-sdk-python, unmodified
but for their host setting, and prints what each call sent as JSON on stdout.

Run as `python python_client.py CONFIG.json`, config: `library` ("segment" | "rudder"), `host`,
`write_key`, `sync` (the libraries' sync mode: one blocking request per call, no retries),
`upload_size`, `flush_timeout_s`, `calls` (see script.py). Output: `results` (per call: the
`messageId`, `userId`, `anonymousId`, `timestamp` and `context` the library put in the message,
or the `error` the call raised), `failed_batches` (what the library's `on_error` reported) and
`flushed` (False when `flush()` did not return in time). A separate process, so that a library
that never returns from `flush()` ends with the process instead of hanging the tests.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from datetime import datetime
from typing import Any


def _client(config: dict[str, Any], failed: list[dict[str, Any]]) -> Any:
    def on_error(error: Exception, batch: list[dict[str, Any]]) -> None:
        failed.append({"error": repr(error), "messageIds": [m.get("messageId") for m in batch]})

    options = {
        "host": config["host"],
        "sync_mode": config["sync"],
        "on_error": on_error,
        "upload_size": config["upload_size"],
        "max_retries": 6,
        "timeout": 10,
    }
    if config["library"] == "segment":
        from segment.analytics import Client

        return Client(config["write_key"], **options)
    from rudderstack.analytics import Client as RudderClient

    return RudderClient(config["write_key"], **options)


def _call(client: Any, step: dict[str, Any]) -> dict[str, Any]:
    when = datetime.fromisoformat(step["timestamp"]) if step.get("timestamp") else None
    common = {"context": dict(step.get("context") or {}), "timestamp": when}
    user, anon = step.get("userId"), step.get("anonymousId")
    kind = step["call"]
    if kind == "identify":
        result = client.identify(user, step.get("traits"), anonymous_id=anon, **common)
    elif kind == "track":
        result = client.track(
            user, step["event"], step.get("properties"), anonymous_id=anon, **common
        )
    elif kind in ("page", "screen"):
        result = getattr(client, kind)(
            user,
            step.get("category"),
            step.get("name"),
            step.get("properties"),
            anonymous_id=anon,
            **common,
        )
    elif kind == "alias":
        result = client.alias(step["previousId"], user, **common)
    elif kind == "group":
        result = client.group(
            user, step["groupId"], step.get("traits"), anonymous_id=anon, **common
        )
    else:
        raise ValueError(f"unknown call {kind!r}")
    _, message = result
    return {
        field: message.get(field)
        for field in ("messageId", "type", "userId", "anonymousId", "timestamp", "context")
    }


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as file:
        config = json.load(file)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    failed: list[dict[str, Any]] = []
    client = _client(config, failed)
    results = []
    for step in config["calls"]:
        try:
            results.append(_call(client, step))
        except Exception as exc:  # reported per call: sync mode raises what the server said
            results.append({"error": repr(exc)})
    flushed = True
    if not config["sync"]:
        flusher = threading.Thread(target=client.flush, daemon=True)
        flusher.start()
        flusher.join(config["flush_timeout_s"])
        flushed = not flusher.is_alive()
    report = {"results": results, "failed_batches": failed, "flushed": flushed}
    sys.stdout.write(json.dumps(report))
    sys.stdout.flush()
    # The libraries join their consumer threads at exit, which waits out any retry still
    # pending; the report is out, so leave now.
    os._exit(0)


if __name__ == "__main__":
    main()
