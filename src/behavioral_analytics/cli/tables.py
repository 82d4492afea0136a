"""The tables the commands print.

Every table shows text as it is. A rich `Table` reads a `str` title, header or cell as console
markup (and `:name:` as an emoji code), and clients' values reach these tables: event types,
ids, page paths, properties, traits, dead letters' input. One `[/z]` among them would stop the
command with a markup error, and `[red]` would restyle the row. `TextTable` turns every `str`
into `rich.text.Text` on its way in, so no command has to remember to escape a cell; a cell
that should carry style is passed as `Text` (for example `Text.from_markup(...)`) and kept.
"""

from __future__ import annotations

from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from behavioral_analytics.cli.shared import console

__all__ = ["TextTable", "fits", "period_table"]


def _text(value: RenderableType | None) -> RenderableType | None:
    return Text(value) if isinstance(value, str) else value


class TextTable(Table):
    """A rich `Table` whose `str` title, headers and cells are plain text, never markup.

    Takes `Table`'s keyword arguments (columns are added with `add_column`); a `str` title
    keeps its `title_style` (the theme's `table.title` by default). Captions and footers are
    not used by the commands and are left as rich reads them.
    """

    def __init__(self, *, title: str | Text | None = None, **options: Any) -> None:
        style = options.get("title_style") or "table.title"
        shown = Text(title, style=style) if isinstance(title, str) else title
        super().__init__(title=shown, **options)

    def add_column(self, header: RenderableType = "", *args: Any, **options: Any) -> None:
        """`Table.add_column`, with a `str` header shown as it is."""
        super().add_column(_text(header) or "", *args, **options)

    def add_row(self, *renderables: RenderableType | None, **options: Any) -> None:
        """`Table.add_row`, with each `str` cell shown as it is (`None`: an empty cell)."""
        super().add_row(*(_text(cell) for cell in renderables), **options)


def period_table(title: str, first: str, columns: list[str], *, values: bool = False) -> TextTable:
    """A table whose first column (a period or a day) is never cut or wrapped, and whose other
    columns (right-aligned) wrap rather than lose characters when the terminal is narrow.
    With `values`, the first column holds free text (a breakdown's pages, referrers) and wraps
    instead, so that a long value never squeezes the figures out."""
    table = TextTable(title=title)
    if values:
        table.add_column(first, overflow="fold")
    else:
        table.add_column(first, no_wrap=True, overflow="ignore")
    for column in columns:
        table.add_column(column, justify="right", overflow="fold")
    return table


def fits(cells: list[str]) -> bool:
    """Whether a row of these cells, one column each, fits the console's width unwrapped."""
    return sum(len(cell) + 3 for cell in cells) + 1 <= console.width
