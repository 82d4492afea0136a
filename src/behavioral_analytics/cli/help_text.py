"""How `--help` reads: option values named by what they are (`--from PERIOD`, `--workers
WORKERS [1<=x<=16]`), with nothing after a flag, instead of the Python type typer shows by
default (`<str>`, `<bool>`, `<int range>`); and each command's text as flowing paragraphs, not
broken where its docstring's source lines end.

Typer builds its commands on its own copy of click, so the commands are read by their
attributes (`params`, `is_flag`, `commands`), not by click's classes."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["plain_metavars"]

# A single line break inside a paragraph (a blank line still separates paragraphs).
_LINE_BREAK = re.compile(r"(?<!\n)[ \t]*\n[ \t]*(?!\n)")


def plain_metavars(command: Any) -> Any:
    """`command` (a click command built by typer) and every subcommand with plain metavars,
    changed in place; returns `command`."""
    for param in command.params:
        if param.param_type_name == "argument":
            # An argument is named in the usage line already; its type column says nothing.
            param.display_type_rich = _no_type
            continue
        if param.metavar is not None:
            continue
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        else:
            param.metavar = (param.name or "value").upper()
    for name in ("help", "short_help"):
        text = getattr(command, name, None)
        if text:
            setattr(command, name, _LINE_BREAK.sub(" ", text))
    help_option = command.get_help_option(command.context_class(command))
    if help_option is not None:
        help_option.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        plain_metavars(sub)
    return command


def _no_type(ctx: Any = None) -> None:
    return None
