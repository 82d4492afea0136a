"""The package's shape, held as tests so later work cannot grow past it.

- no source module over 600 lines and no class over 500;
- no module imports, or reaches by attribute, a `_`-prefixed name defined in another module
  of the package (shared helpers are public names of the module that owns them);
- the import contracts in pyproject.toml (`[tool.importlinter]`): the core imports no port or
  adapter, adapters import no settings, only `wiring` imports adapters, no import cycle at any
  depth (imports under TYPE_CHECKING included);
- the command line prints clients' text as it is: its tables are `cli.tables.TextTable`, its
  consoles `cli.errors.plain_console()`, its style `rich.text.Text`, never rich markup (a
  `[/z]` in a user id would stop a command).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "src" / "behavioral_analytics"
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 500


def _modules() -> Iterator[Path]:
    yield from sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_private_names(tree: ast.Module) -> set[str]:
    """Every `_name` a module defines: functions, classes, assignments, attributes set on
    `self`/`cls`, parameters are left out (they are local)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if _is_private(n)}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")[: -node.level]
    return ".".join([*base, node.module] if node.module else base)


def test_no_module_or_class_is_too_long() -> None:
    too_long = []
    for path in _modules():
        text = path.read_text()
        lines = text.count("\n") + 1
        if lines > MAX_MODULE_LINES:
            too_long.append(f"{_name(path)}: {lines} lines (max {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    too_long.append(
                        f"{_name(path)}.{node.name}: {size} lines (max {MAX_CLASS_LINES})"
                    )
    assert not too_long, "split these:\n" + "\n".join(too_long)


@pytest.mark.slow
def test_no_module_reaches_a_private_name_of_another() -> None:
    trees = {_name(path): ast.parse(path.read_text()) for path in _modules()}
    defined = {module: _defined_private_names(tree) for module, tree in trees.items()}
    elsewhere: dict[str, set[str]] = {}
    for module, names in defined.items():
        for name in names:
            elsewhere.setdefault(name, set()).add(module)
    found = []
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _resolve(module, node)
                if source.startswith("behavioral_analytics"):
                    found += [
                        f"{module}:{node.lineno} imports {source}.{alias.name}"
                        for alias in node.names
                        if _is_private(alias.name)
                    ]
            elif isinstance(node, ast.Attribute) and _is_private(node.attr):
                owners = elsewhere.get(node.attr, set()) - {module}
                if owners and node.attr not in defined[module]:
                    found.append(
                        f"{module}:{node.lineno} reaches .{node.attr} "
                        f"(defined in {', '.join(sorted(owners))})"
                    )
    assert not found, "make these public or pass what is needed:\n" + "\n".join(found)


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    if not lint_imports.exists():
        found = shutil.which("lint-imports")
        if found is None:
            pytest.fail("lint-imports (import-linter) is not installed: ./dev test installs it")
        lint_imports = Path(found)
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def _rich_uses(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, what) for each import of a rich module and each `Console(...)` call in `tree`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name == "Console":
                yield node.lineno, "Console()"


def test_the_command_line_prints_text_as_it_is() -> None:
    """Clients' text reaches the command line's output: no console reads it as markup."""
    allowed = {
        "rich.table": PACKAGE / "cli" / "tables.py",  # TextTable
        "Console()": PACKAGE / "cli" / "errors.py",  # plain_console
    }
    found = []
    for path in _modules():
        for line, what in _rich_uses(ast.parse(path.read_text())):
            kind = "rich.table" if what.startswith("rich.table") else what
            if what.startswith("rich.markup") or (kind in allowed and path != allowed[kind]):
                found.append(f"{_name(path)}:{line} {what}")
    assert not found, (
        "build tables with cli.tables.TextTable, consoles with cli.errors.plain_console, and "
        "style with rich.text.Text, never markup:\n" + "\n".join(found)
    )


def test_every_type_ignore_names_its_code_and_says_why() -> None:
    """A `# type: ignore[code]` carries its reason: after it on the same line, or as the
    comment line just above."""
    bare = []
    for path in _modules():
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            if "# type: ignore" not in line:
                continue
            after = line.split("# type: ignore", 1)[1]
            coded = after.startswith("[")
            reason_here = "#" in after
            reason_above = number > 1 and lines[number - 2].strip().startswith("#")
            if not coded or not (reason_here or reason_above):
                bare.append(f"{_name(path)}:{number}")
    assert not bare, "give these a code and a reason:\n" + "\n".join(bare)
