"""Which tables and indexes the pages of a SQLite store's last commit belong to, and how large
its write-ahead log grew over a run (`LogPeak`).

A commit appends every page it changed to the write-ahead log, whole, and the checkpoint copies
each into the file again: on a grown store that is most of the bytes the worker writes. After a
commit, the log holds the pages written since it last started over (the commit's, as the store
checkpoints after every commit: `stores/sqlite/checkpoints.py`): the frames whose salts match
the log's header (https://www.sqlite.org/fileformat.html, "The WAL File Format"). `dbstat`
says which B-tree owns each page; one the file does not hold yet (a new page the checkpoint has
not copied in) is "(new)".
"""

from __future__ import annotations

import contextlib
import sqlite3
import struct
import threading
from collections import Counter
from pathlib import Path
from types import TracebackType

_WAL_HEADER = 32
_FRAME_HEADER = 24


def last_commit_pages(path: Path) -> Counter[str] | None:
    """Distinct pages in the log of the SQLite file at `path`, by the table or index owning
    them ("(new)": not in the file yet); None without a log, or without `dbstat` in this
    SQLite."""
    wal = path.with_name(path.name + "-wal")
    if not wal.exists() or wal.stat().st_size <= _WAL_HEADER:
        return None
    data = wal.read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    salts = data[16:24]
    pages = set()
    for offset in range(_WAL_HEADER, len(data) - _FRAME_HEADER - page_size + 1,
                        _FRAME_HEADER + page_size):  # fmt: skip
        if data[offset + 8 : offset + 16] != salts:
            break  # an older frame, from before the log last started over
        pages.add(struct.unpack(">I", data[offset : offset + 4])[0])
    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)  # the file alone, not the log
    try:
        owner = dict(db.execute("SELECT pageno, name FROM dbstat"))
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()
    return Counter(_named(owner.get(page, "(new)")) for page in pages)


def _named(btree: str) -> str:
    """`sqlite_autoindex_events_1` (the index SQLite makes for a UNIQUE column) as "events
    key"; other names as they are."""
    if btree.startswith("sqlite_autoindex_"):
        return btree.removeprefix("sqlite_autoindex_").rsplit("_", 1)[0] + " key"
    return btree


def pages_line(pages: Counter[str] | None, shown: int = 6) -> str:
    """One line of `last_commit_pages`' shares, the largest first."""
    if not pages:
        return "pages of the last commit: not available (no log, or no dbstat in this SQLite)"
    total = sum(pages.values())
    return f"pages of the last commit ({total:,}): " + ", ".join(
        f"{name} {n / total:.0%}" for name, n in pages.most_common(shown)
    )


class LogPeak:
    """The largest size in bytes (`bytes`) the write-ahead log of the SQLite file at `path`
    reached while the `with` block ran, sampled every `every_s` seconds on a thread (a peak
    between two samples can be missed: a lower bound)."""

    def __init__(self, path: Path, every_s: float = 0.05) -> None:
        self.log = path.with_name(path.name + "-wal")
        self.every_s = every_s
        self.bytes = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_done, daemon=True)

    def __enter__(self) -> LogPeak:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()

    def _sample_until_done(self) -> None:
        while True:
            with contextlib.suppress(FileNotFoundError):
                self.bytes = max(self.bytes, self.log.stat().st_size)
            if self._done.wait(self.every_s):
                return
