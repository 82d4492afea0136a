"""The `firestore.v1` protobufs the Firestore store writes and reads, built by hand: the client
library's per-field proto-plus marshalling cost several times the commit itself (see
docs/gcp.md, "Throughput")."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

from google.cloud.firestore_v1.field_path import FieldPath
from google.cloud.firestore_v1.types import firestore as request_types
from google.cloud.firestore_v1.types import write as write_types

__all__ = [
    "BatchGetRequestPb",
    "CommitRequestPb",
    "delete",
    "field_path",
    "from_value",
    "merged",
    "write",
]

WritePb = write_types.Write.pb()
CommitRequestPb = request_types.CommitRequest.pb()
BatchGetRequestPb = request_types.BatchGetDocumentsRequest.pb()


@lru_cache(maxsize=8192)
def field_path(*parts: str) -> str:
    """A field path with every part quoted as needed (`events_by_type.\\`checkout.step_2\\``)."""
    return FieldPath(*parts).to_api_repr()


def _set_value(out: Any, value: Any) -> None:
    """Fill the `firestore.v1.Value` protobuf `out` with a JSON-like Python value."""
    if isinstance(value, str):
        out.string_value = value
    elif isinstance(value, bool):
        out.boolean_value = value
    elif isinstance(value, int):
        out.integer_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif value is None:
        out.null_value = 0
    elif isinstance(value, dict):
        out.map_value.SetInParent()
        _set_fields(out.map_value.fields, value)
    elif isinstance(value, list | tuple):
        array = out.array_value
        array.SetInParent()
        for item in value:
            _set_value(array.values.add(), item)
    elif isinstance(value, datetime):
        out.timestamp_value.FromDatetime(value)
    elif isinstance(value, bytes | bytearray | memoryview):
        out.bytes_value = bytes(value)
    else:
        raise TypeError(f"cannot store {type(value).__name__} in Firestore")


def _set_fields(out: Any, data: dict[str, Any]) -> None:
    for key, value in data.items():
        _set_value(out[key], value)


def write(
    name: str,
    fields: dict[str, Any],
    *,
    mask: Iterable[str] | None = None,
    transforms: Iterable[tuple[str, str, float]] = (),
    exists: bool | None = None,
    update_time: Any = None,
) -> Any:
    """One `Write`: `mask` None replaces the document (create/set), else only the masked paths
    change (a merge; masked paths absent from `fields` are deleted). A transform is
    (field path, increment|minimum|maximum, number)."""
    out = WritePb()
    out.update.name = name
    _set_fields(out.update.fields, fields)
    if mask is not None:
        out.update_mask.SetInParent()
        out.update_mask.field_paths.extend(mask)
    for path, operation, number in transforms:
        transform = out.update_transforms.add()
        transform.field_path = path
        _set_value(getattr(transform, operation), number)
    if exists is not None:
        out.current_document.exists = exists
    elif update_time is not None:
        out.current_document.update_time.CopyFrom(update_time)
    return out


def merged(writes: Iterable[Any]) -> list[Any]:
    """`writes` with the updates of one document made one `Write`, in the place of its first
    (which is changed in place): fields and masks united, transforms one after the other, the
    one precondition kept. Writes a merge cannot join (a delete, two preconditions, a replacing
    write without a mask) stay apart.

    Firestore bills a commit per document write it holds (cloud.google.com/firestore/pricing):
    a document's changes in one write are one billed write."""
    out: list[Any] = []
    first: dict[str, Any] = {}
    for item in writes:
        if not item.HasField("update") or not item.HasField("update_mask"):
            out.append(item)
            continue
        into = first.get(item.update.name)
        if into is None or (
            into.HasField("current_document") and item.HasField("current_document")
        ):
            first.setdefault(item.update.name, item)
            out.append(item)
            continue
        _merge_fields(into.update.fields, item.update.fields)
        masked = set(into.update_mask.field_paths)
        paths = item.update_mask.field_paths
        into.update_mask.field_paths.extend(p for p in paths if p not in masked)
        into.update_transforms.extend(item.update_transforms)
        if item.HasField("current_document"):
            into.current_document.CopyFrom(item.current_document)
    return out


def _merge_fields(into: Any, fields: Any) -> None:
    for key, value in fields.items():
        if key in into and into[key].HasField("map_value") and value.HasField("map_value"):
            _merge_fields(into[key].map_value.fields, value.map_value.fields)
        else:
            into[key].CopyFrom(value)


def from_value(value: Any) -> Any:
    """A `firestore.v1.Value` protobuf as a JSON-like Python value (the kinds the store
    writes into profiles)."""
    kind = value.WhichOneof("value_type")
    if kind == "map_value":
        return {k: from_value(v) for k, v in value.map_value.fields.items()}
    if kind == "array_value":
        return [from_value(v) for v in value.array_value.values]
    if kind == "null_value" or kind is None:
        return None
    return getattr(value, kind)


def delete(name: str, *, exists: bool | None = None) -> Any:
    """A `Write` deleting a document (with `exists=True`, failing the commit if it is gone)."""
    out = WritePb()
    out.delete = name
    if exists is not None:
        out.current_document.exists = exists
    return out
