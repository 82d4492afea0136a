"""A pytest plugin that records every Google API call the code makes, by process role.

Load it with `-p tests.gcp.rpc_record` and set `BA_RPC_RECORD=PATH`; without the variable it
does nothing. It hooks at session start, so it observes whatever emulator-backed tests run,
however they are written:

- Every gRPC call goes through one of grpc's channel multi-callables; their `__call__`,
  `with_call` and `future` are wrapped to note the method path
  (`/google.firestore.v1.Firestore/Commit`, …) before the call is made, so a call that fails
  is recorded too.
- The role of a call is the production process it belongs to: `api` when the stack runs
  through `behavioral_analytics/api/`, `worker` through `worker.py` or `exporters/`. A thread
  inherits the role of the code that started it (the Pub/Sub client's streaming-pull and
  batch threads, the API's thread pool), so background work is attributed too. Calls made
  by the tests themselves (creating topics, reading results back) have no role and are not
  recorded.
- For Firestore, the requests are read as well: which collections and top-level fields each
  role writes (and with which precondition), and which fields each query filters and orders
  on. tests/deploy checks these against the indexes, TTL policies and IAM roles declared for
  production.

At the end of the session the record is written to `BA_RPC_RECORD` as JSON:
`{"roles": {role: {"methods": [...], "writes": [...], "queries": [...]}}}`.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
from collections import defaultdict
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

ENV = "BA_RPC_RECORD"
_PACKAGE_DIR = f"{os.sep}behavioral_analytics{os.sep}"
_ROLE_ATTR = "_ba_rpc_role"


def role_from_stack(frame: FrameType | None) -> str | None:
    """The process role whose code is on this stack: "api", "worker" or None (test code)."""
    while frame is not None:
        filename = frame.f_code.co_filename
        at = filename.rfind(_PACKAGE_DIR)
        if at >= 0:
            relative = filename[at + len(_PACKAGE_DIR) :]
            if relative.startswith(f"api{os.sep}"):
                return "api"
            if relative == "worker.py" or relative.startswith(f"exporters{os.sep}"):
                return "worker"
        frame = frame.f_back
    return None


def current_role() -> str | None:
    """The role inherited by this thread, else the one its stack shows."""
    inherited = getattr(threading.current_thread(), _ROLE_ATTR, None)
    return inherited or role_from_stack(sys._getframe(1))


def _method_name(method: Any) -> str:
    return method.decode() if isinstance(method, bytes) else str(method)


def _pb(request: Any) -> Any:
    return getattr(request, "_pb", request)


def _collection(document_name: str) -> str:
    # projects/P/databases/D/documents/c1/d1/c2/d2 -> c2
    parts = document_name.split("/documents/", 1)[-1].split("/")
    return parts[-2] if len(parts) >= 2 else parts[0]


def _enum_name(message: Any, field: str) -> str:
    enum = message.DESCRIPTOR.fields_by_name[field].enum_type
    return enum.values_by_number[getattr(message, field)].name


def _filters(where: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    kind = where.WhichOneof("filter_type") if where is not None else None
    if kind == "composite_filter":
        for sub in where.composite_filter.filters:
            out += _filters(sub)
    elif kind == "field_filter":
        field_filter = where.field_filter
        out.append((field_filter.field.field_path, _enum_name(field_filter, "op")))
    elif kind == "unary_filter":
        out.append((where.unary_filter.field.field_path, "UNARY"))
    return out


class Recorder:
    """Collects, per role, the RPC methods called and Firestore's writes and queries."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.methods: dict[str, set[str]] = defaultdict(set)
        self.writes: dict[str, set[tuple[str, str, str, str]]] = defaultdict(set)
        self.queries: dict[str, set[str]] = defaultdict(set)

    def note(self, method: str, request: Any) -> None:
        role = current_role()
        if role is None:
            return
        with self.lock:
            self.methods[role].add(method)
        try:
            if method.endswith(("/Commit", "/BatchWrite")):
                self._note_writes(role, _pb(request))
            elif method.endswith(("/RunQuery", "/RunAggregationQuery")):
                self._note_query(role, _pb(request))
        except Exception as exc:  # the recording must never change what the code does
            with self.lock:
                self.methods[role].add(f"unreadable request of {method}: {exc!r}")

    def _note_writes(self, role: str, request: Any) -> None:
        for write in request.writes:
            kind = write.WhichOneof("operation")
            if kind == "delete":
                entries = [(_collection(write.delete), "", "", "delete")]
            else:
                document = write.update if kind == "update" else write.transform
                if write.HasField("current_document"):
                    which = write.current_document.WhichOneof("condition_type")
                    exists = write.current_document.exists if which == "exists" else True
                    precondition = "update" if exists else "create"
                else:
                    precondition = "upsert"
                collection = _collection(document.name)
                fields: dict[str, str] = {}
                if kind == "update":
                    for name, value in write.update.fields.items():
                        fields[name] = value.WhichOneof("value_type") or ""
                transforms = (
                    write.update_transforms
                    if kind == "update"
                    else write.transform.field_transforms
                )
                for transform in transforms:
                    top = transform.field_path.split(".", 1)[0].strip("`")
                    fields.setdefault(top, "transform")
                entries = [(collection, f, t, precondition) for f, t in fields.items()] or [
                    (collection, "", "", precondition)
                ]
            with self.lock:
                self.writes[role].update(entries)

    def _note_query(self, role: str, request: Any) -> None:
        if request.DESCRIPTOR.name == "RunAggregationQueryRequest":
            query = request.structured_aggregation_query.structured_query
        else:
            query = request.structured_query
        entry = {
            "collections": [(c.collection_id, c.all_descendants) for c in query.from_],
            "filters": _filters(query.where) if query.HasField("where") else [],
            "orders": [(o.field.field_path, _enum_name(o, "direction")) for o in query.order_by],
        }
        with self.lock:
            self.queries[role].add(json.dumps(entry, sort_keys=True))

    def as_json(self) -> dict[str, Any]:
        roles = set(self.methods) | set(self.writes) | set(self.queries)
        return {
            "roles": {
                role: {
                    "methods": sorted(self.methods[role]),
                    "writes": sorted(list(w) for w in self.writes[role]),
                    "queries": [json.loads(q) for q in sorted(self.queries[role])],
                }
                for role in sorted(roles)
            }
        }


RECORDER = Recorder()
_installed = False


def _wrap(cls: type, name: str) -> None:
    original = getattr(cls, name)

    @functools.wraps(original)
    def recorded(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        RECORDER.note(_method_name(self._method), request)
        return original(self, request, *args, **kwargs)

    setattr(cls, name, recorded)


def install() -> None:
    """Wrap grpc's multi-callables and `Thread.start` (role inheritance). Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    from grpc import _channel

    for cls_name, names in (
        ("_UnaryUnaryMultiCallable", ("__call__", "with_call", "future")),
        ("_UnaryStreamMultiCallable", ("__call__",)),
        ("_SingleThreadedUnaryStreamMultiCallable", ("__call__",)),
        ("_StreamUnaryMultiCallable", ("__call__", "with_call", "future")),
        ("_StreamStreamMultiCallable", ("__call__",)),
    ):
        cls = getattr(_channel, cls_name, None)
        for name in names if cls is not None else ():
            _wrap(cls, name)

    start = threading.Thread.start

    @functools.wraps(start)
    def start_with_role(self: threading.Thread) -> None:
        role = current_role()
        if role is not None and getattr(self, _ROLE_ATTR, None) is None:
            setattr(self, _ROLE_ATTR, role)
        start(self)

    threading.Thread.start = start_with_role  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get(ENV):
        install()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(ENV)
    if path and _installed:
        Path(path).write_text(json.dumps(RECORDER.as_json(), indent=1), encoding="utf-8")
