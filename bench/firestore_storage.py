"""The index entries a Firestore document adds to storage, by Firestore's storage-size rules.

Firestore bills the storage of every index entry beside the documents
(https://cloud.google.com/firestore/docs/storage-size, "Index entry size"). Which entries a
document has follows from the database's index configuration, here the repository's
`firestore.indexes.json` (which Terraform and Infrastructure Manager apply):

- single-field indexes, collection scope, kept automatically: an ascending and a descending
  entry for every field that is neither a map nor an array, an array-contains entry per distinct
  element of an array, and the same for every field of a map, recursively
  (https://cloud.google.com/firestore/docs/concepts/index-overview#automatic_indexing); a field
  listed in `fieldOverrides` with no indexes (and every field beneath it) has none;
- composite indexes, collection scope: one entry per document holding every field the index
  names.

An entry's size, collection scope: the indexed document's name size, the name size of its
parent document, the indexed field name's string size (single-field entries only), the indexed
values' sizes, and 32 bytes. A document of a top-level collection has no parent document: its
parent's name is counted as an empty name (16 bytes, the fixed part of a name's size), an
assumption the page does not spell out. Firestore indexes the first 1,500 bytes of a longer
string or bytes value (https://cloud.google.com/firestore/quotas, "Indexes"): so are they
sized here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from behavioral_analytics.stores.firestore.breakdown_layout import name_size, value_size

INDEXED_BYTES = 1500
_EXTRA_BYTES = 32


def _indexed_size(value: Any) -> int:
    if isinstance(value, str):
        return min(len(value.encode()), INDEXED_BYTES) + 1
    if isinstance(value, bytes):
        return min(len(value), INDEXED_BYTES)
    return value_size(value)


@dataclass(frozen=True)
class IndexConfig:
    """Per collection, the field paths whose single-field indexes are exempted and the
    composite indexes (each a tuple of field paths)."""

    exempt: dict[str, frozenset[str]] = field(default_factory=dict)
    composites: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> IndexConfig:
        """From a `firestore.indexes.json` (the Firebase CLI's format)."""
        data = json.loads(path.read_text())
        exempt: dict[str, set[str]] = {}
        for override in data.get("fieldOverrides", []):
            if not override.get("indexes"):
                exempt.setdefault(override["collectionGroup"], set()).add(override["fieldPath"])
        composites: dict[str, list[tuple[str, ...]]] = {}
        for index in data.get("indexes", []):
            paths = tuple(f["fieldPath"] for f in index["fields"])
            composites.setdefault(index["collectionGroup"], []).append(paths)
        return cls({c: frozenset(p) for c, p in exempt.items()}, composites)


@dataclass
class IndexEntries:
    """Index entries counted: how many and their bytes, single-field and composite apart."""

    single: int = 0
    single_bytes: int = 0
    composite: int = 0
    composite_bytes: int = 0

    @property
    def bytes(self) -> int:
        return self.single_bytes + self.composite_bytes

    @property
    def entries(self) -> int:
        return self.single + self.composite

    def add(self, other: IndexEntries) -> None:
        self.single += other.single
        self.single_bytes += other.single_bytes
        self.composite += other.composite
        self.composite_bytes += other.composite_bytes


def collection_of(path: str) -> str:
    """The collection id of the document at `path` (its second-to-last segment)."""
    return path.split("/documents/", 1)[-1].split("/")[-2]


def parent_name_size(path: str) -> int:
    """The name size of the parent document of the document at `path` (an empty name for a
    top-level collection's documents)."""
    segments = path.split("/documents/", 1)[-1].split("/")
    return name_size("/".join(segments[:-2]))


def index_entries(path: str, data: Mapping[str, Any], config: IndexConfig) -> IndexEntries:
    """The collection-scope index entries of the document at `path` holding `data`."""
    collection = collection_of(path)
    base = name_size(path) + parent_name_size(path) + _EXTRA_BYTES
    exempt = config.exempt.get(collection, frozenset())
    out = IndexEntries()
    for field_path, value in _leaves(data, "", exempt):
        if isinstance(value, list | tuple):
            for element in {_hashable(v): v for v in value}.values():
                out.single += 1
                out.single_bytes += base + value_size(field_path) + _indexed_size(element)
        else:
            out.single += 2
            out.single_bytes += 2 * (base + value_size(field_path) + _indexed_size(value))
    for paths in config.composites.get(collection, []):
        values = [_lookup(data, p) for p in paths]
        if any(v is _MISSING for v in values):
            continue
        out.composite += 1
        out.composite_bytes += base + sum(_indexed_size(v) for v in values)
    return out


Leaf = tuple[str, Any]  # (dotted field path, value that is not a map)


def _leaves(data: Mapping[str, Any], prefix: str, exempt: frozenset[str]) -> Iterator[Leaf]:
    for key, value in data.items():
        path = f"{prefix}{key}"
        if path in exempt:
            continue
        if isinstance(value, Mapping):
            yield from _leaves(value, path + ".", exempt)
        else:
            yield path, value


_MISSING = object()


def _lookup(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True, default=str)
