"""docs/api.md's compatibility table names every library the conformance tests run, at the
version they run: the Python libraries as installed, the npm ones as locked."""

from __future__ import annotations

import json
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from tests.conformance.drivers import NODE_DIR

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
SECTION = "## Client libraries: compatibility"


def table() -> dict[str, str]:
    """Library name (the link text of the first cell) → version tested."""
    text = DOC.read_text(encoding="utf-8")
    assert SECTION in text
    rows: dict[str, str] = {}
    for line in text.split(SECTION, 1)[1].split("\n## ", 1)[0].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        name = re.match(r"\[([^\]]+)\]", cells[0]) if len(cells) > 2 else None
        if name:
            rows[name.group(1)] = cells[1]
    return rows


def test_the_npm_libraries_are_listed_at_their_locked_versions() -> None:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text(encoding="utf-8"))
    rows = table()
    for package in ("@segment/analytics-node", "@segment/analytics-next"):
        assert rows[package] == lock["packages"][f"node_modules/{package}"]["version"], package


@pytest.mark.parametrize("package", ["segment-analytics-python", "rudder-sdk-python"])
def test_the_python_libraries_are_listed_at_their_installed_versions(package: str) -> None:
    try:
        installed = version(package)
    except PackageNotFoundError:
        pytest.skip(f"SKIPPED LOUDLY: {package} is not installed (pip install -e '.[test]')")
    assert table()[package] == installed
