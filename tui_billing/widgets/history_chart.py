"""A small bar chart of an account's recent invoices: one bar per invoice,
oldest to newest, the invoice shown highlighted with a marker underneath, so
that a reviewer sees a spike before reading a number."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from rich.text import Text
from textual.widget import Widget

from .fmt import FLAGGED_STYLE

BLOCKS = "▁▂▃▄▅▆▇█"  # an eighth of a row to a full row
MARKER = "▲"
OTHER_STYLE = "dim"
CURRENT_STYLE = "bold"  # not flagged; flagged: fmt.FLAGGED_STYLE


@dataclass(frozen=True)
class Series:
    title: str
    values: tuple[Decimal, ...]  # oldest first
    current: int  # the index of the invoice shown


def bar_rows(values: Sequence[Decimal], rows: int) -> list[list[str]]:
    """`rows` rows (top first) of one block character per value, scaled to the
    largest value; an amount above zero keeps at least an eighth of a row,
    zero and below stay empty."""
    top = max(values, default=Decimal(0))
    levels = rows * len(BLOCKS)
    heights = [0 if top <= 0 or v <= 0 else max(1, int(v * levels / top + Decimal("0.5"))) for v in values]
    out = []
    for r in range(rows):
        base = (rows - 1 - r) * len(BLOCKS)
        out.append([" " if h <= base else BLOCKS[min(h - base, len(BLOCKS)) - 1] for h in heights])
    return out


def render_series(series: Series, width: int, rows: int, current_style: str) -> Text:
    """Title, bars and the marker line of one series, `width` columns wide."""
    n = len(series.values)
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(series.title, style="bold")
    if n < 2:
        text.append("\nno history", style=OTHER_STYLE)
        return text
    per = max(1, min(3, width // n))  # columns per bar: one, or a bar and a gap
    bar = per - 1 if per > 1 else 1
    for cells in bar_rows(series.values, rows):
        text.append("\n")
        for i, cell in enumerate(cells):
            text.append(cell * bar, style=current_style if i == series.current else OTHER_STYLE)
            if per > 1:
                text.append(" " * (per - bar))
    at = series.current * per + (bar - 1) // 2
    marker = Text(" " * at)
    marker.append(MARKER, style=current_style)
    if at >= 5:  # "this ▲" under the bar; "▲ this" when there is no room before it
        marker = Text(" " * (at - 5)) + Text("this ", style=OTHER_STYLE) + Text(MARKER, style=current_style)
    elif at + 6 <= width:
        marker.append(" this", style=OTHER_STYLE)
    text.append("\n")
    text.append_text(marker)
    return text


class HistoryChart(Widget):
    """The charts beside the detail's header: the account's totals and, when a
    flag names a service, that service's amounts on the same invoices."""

    DEFAULT_CSS = """
    HistoryChart { width: 13; height: auto; padding: 0 0 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.series: list[Series] = []
        self.lines = 7
        self.flagged = False

    def show(self, series: list[Series], lines: int, flagged: bool) -> None:
        """`lines`: the height to fill (the header's), titles and markers included."""
        self.series, self.lines, self.flagged = series, lines, flagged
        self.refresh(layout=True)

    def bar_heights(self) -> list[int]:
        """Rows of bars per series: what `lines` leaves after titles and markers, the first chart the tallest."""
        n = len(self.series)
        spare = max(self.lines - 2 * n, n)
        return [spare // n + (1 if i < spare % n else 0) for i in range(n)]

    def render(self) -> Text:
        if not self.series:
            return Text("")
        width = self.content_size.width or self.size.width
        style = FLAGGED_STYLE if self.flagged else CURRENT_STYLE
        out = Text(no_wrap=True, overflow="ellipsis")
        for i, (series, rows) in enumerate(zip(self.series, self.bar_heights())):
            if i:
                out.append("\n")
            out.append_text(render_series(series, width, rows, style))
        return out
