"""The line under the filter bar: how many invoices per status (and, in the
queue, how many are held for a person and how many sent invoices are
overdue), what is marked, the sort."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from .. import statuses as S
from .fmt import HELD_STYLE, STATUS_STYLES


class StatusCounts(Static):
    DEFAULT_CSS = """
    StatusCounts { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, shown: list[str], **kwargs):
        super().__init__("counting…", **kwargs)
        self.shown = shown
        self.counts: dict[str, int] | None = None
        self.active: tuple[str, ...] = ()
        self.marked = ""
        self.sort = ""
        self.notes: dict[str, int] = {}  # the queue: "held" for a person, "overdue" invoices

    def set_counts(
        self, counts: dict[str, int] | None, active: tuple[str, ...], notes: dict[str, int] | None = None
    ) -> None:
        self.counts = counts
        self.active = active
        self.notes = notes or {}
        self._paint()

    def set_marked(self, text: str) -> None:
        self.marked = text
        self._paint()

    def set_sort(self, text: str) -> None:
        self.sort = text
        self._paint()

    def matching(self) -> int | None:
        if self.counts is None:
            return None
        statuses = self.active or tuple(self.shown)
        return sum(self.counts.get(s, 0) for s in statuses)

    def _paint(self) -> None:
        text = Text(no_wrap=False)
        if self.counts is None:
            text.append("counting…")
        else:
            for i, status in enumerate(self.shown):
                if i:
                    text.append(" · ", style="dim")
                style = STATUS_STYLES.get(status, "")
                if self.active and status not in self.active:
                    style = "dim"
                text.append(S.INVOICE_STATUSES[status], style=style)
                text.append(f" {self.counts.get(status, 0):,}")
            if self.notes.get("held"):
                text.append(" · ", style="dim")
                text.append(f"{self.notes['held']:,} held for a person", style=HELD_STYLE)
            if self.notes.get("overdue"):
                text.append(" · ", style="dim")
                text.append(f"{self.notes['overdue']:,} overdue", style=STATUS_STYLES[S.OVERDUE])
        if self.sort:
            text.append("  │ ", style="dim")
            text.append(self.sort)
        if self.marked:
            text.append("  │ ", style="dim")
            text.append(self.marked, style="bold green")
        self.update(text)
