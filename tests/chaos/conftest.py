"""What the chaos tests share: the worker's log lines, captured as they are written."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


class Lines:
    """The worker's log lines (message, level, fields) as they are written."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []

    def has(self, message: str, level: str = "WARNING", **fields: object) -> bool:
        return any(
            r.getMessage() == message
            and r.levelname == level
            and all(getattr(r, k, None) == v for k, v in fields.items())
            for r in list(self.records)
        )


@pytest.fixture
def lines() -> Iterator[Lines]:
    found = Lines()
    handler = logging.Handler()
    handler.emit = found.records.append  # type: ignore[method-assign]
    logger = logging.getLogger("behavioral_analytics")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield found
    logger.removeHandler(handler)
    logger.setLevel(old)
