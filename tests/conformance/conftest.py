"""Fixtures of the conformance suite: one collector and one worker for the whole run (each
session uses people of its own), and the page server the browser library runs in (its origin
is the one the collector allows by CORS)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conformance.page_server import PageServer
from tests.conformance.stack import Stack


@pytest.fixture(scope="session")
def page_server() -> Iterator[PageServer]:
    server = PageServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def stack(page_server: PageServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("conformance") / "data", [page_server.origin])
    stack.start()
    yield stack
    stack.stop()
