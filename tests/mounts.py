"""Read-only bind mounts: a folder or a file the test process (root) sees as a user who may
not write it would, on any machine where mounting is allowed; skipped loudly elsewhere."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def read_only_bind(source: Path, target: Path) -> Iterator[None]:
    """`source` (a folder or a file) seen at `target` through a read-only bind mount; skips
    loudly where mounting is not allowed (not root)."""
    mounted = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"SKIPPED LOUDLY: cannot bind-mount (needs root): {mounted.stderr!r}")
    try:
        remounted = subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(target)], capture_output=True, check=False
        )
        assert remounted.returncode == 0, remounted.stderr
        yield
    finally:
        subprocess.run(["umount", str(target)], check=True)


@contextmanager
def read_only_view(folder: Path, tmp_path: Path) -> Iterator[Path]:
    """`folder` seen at `tmp_path / "read-only"` through a read-only bind mount."""
    target = tmp_path / "read-only"
    target.mkdir()
    with read_only_bind(folder, target):
        yield target
