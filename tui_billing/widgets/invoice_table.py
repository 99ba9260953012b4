"""The invoice list of the queue and the finder: keyset pages appended as the
cursor nears the end, a mark column for multi-select, cells refreshed in place."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.message import Message

from .. import statuses as S
from ..clock import Clock
from ..console_state import InvoiceListRow, Selection
from .fit_table import Col, FitTable
from .fmt import (
    MiddleCut,
    amount_cell,
    flags_cell,
    left_cell,
    money_cell,
    review_or_flags,
    review_state,
    status_text,
    text_cell,
)

MARK = "✓"
NUMBER_MAX = 24  # the Number column grows to fit numbers up to this; longer ones end in "…"
TOTAL_MAX = 24  # and the Total column to fit its amounts: money is never cut
EXPECTED_MAX = TOTAL_MAX - 4  # the Expected amount without its currency (80 columns)
NEAR_END = 25  # rows before the end at which the next page is fetched
# The Account column never gets narrower than this (80 columns, large totals):
# a name too long is cut in the middle ("Acme Wid… #33", fmt.MiddleCut), so
# accounts whose names differ only at the end stay apart.
ACCOUNT_MIN = 10

# 80 columns: Total with the Expected amount beside it (the total the
# account's history predicts, without the currency Total already shows), and
# one "Review" cell: a flagged invoice's flags (a person must look at it), or
# when any other goes out on its own (time left, awaiting reissue).  From
# QUEUE_FLAGS columns a Flags column of its own and Expected as money; wide:
# a "Left" column and the full state ("awaiting reissue (off-peak, from 01:00)").
QUEUE_FLAGS = 100
QUEUE_WIDE = 150
QUEUE_COLUMNS = [
    Col("mark", MARK, 1),
    Col("number", "Number", 15, max_width=NUMBER_MAX),
    Col("account", "Account", 0),
    Col("class", "Class", 16, min_table=170),
    Col("total", "Total", 14, justify="right", wide_width=16, max_width=TOTAL_MAX),
    Col("expected_amount", "Expected", 10, justify="right", max_width=EXPECTED_MAX, max_table=QUEUE_FLAGS),
    Col("expected", "Expected", 14, justify="right", max_width=TOTAL_MAX, min_table=QUEUE_FLAGS),
    Col("flags", "Flags", 11, wide_width=16, min_table=QUEUE_FLAGS),
    Col("review", "Review", 13, max_table=QUEUE_WIDE),
    Col("left", "Time left", 11, min_table=QUEUE_WIDE),
    Col("state", "Status", 40, min_table=QUEUE_WIDE),
]
FINDER_COLUMNS = [
    Col("mark", MARK, 1),
    Col("number", "Number", 15, max_width=NUMBER_MAX),
    Col("account", "Account", 0),
    Col("class", "Class", 16, min_table=110),
    Col("status", "Status", 12),
    Col("total", "Total", 16, justify="right", max_width=TOTAL_MAX),
    Col("issued", "Issued", 10),
    Col("due", "Due", 10, min_table=110),
    Col("flags", "Flags", 10, min_table=130, wide_width=16),
]


class InvoiceTable(FitTable):
    BINDINGS = [
        Binding(
            "space",
            "toggle_mark",
            "Mark ↓",
            id="list.mark",
            tooltip="Mark or unmark the row, then move down to the next one",
        ),
        Binding("home", "first_row", "First row", show=False),
        Binding("end", "last_row", "Last loaded row (loads the next page)", show=False),
    ]

    class NearEnd(Message):
        """The cursor is close to the last loaded row: time for the next page."""

    class MarksChanged(Message):
        pass

    def __init__(self, columns: list[Col], clock: Clock, *, queue: bool = False, **kwargs):
        self.clock = clock
        self.queue = queue
        self.selection = Selection()
        kwargs.setdefault("min_flex", ACCOUNT_MIN)
        super().__init__(columns, **kwargs)

    # -- cells ----------------------------------------------------------------
    def render_cells(self, row: InvoiceListRow, cols: list[Col], wide: bool) -> list:
        cells: list[object] = []
        narrow = not any(c.key == "flags" for c in cols)
        for c in cols:
            k = c.key
            if k == "mark":
                cells.append(Text(MARK, style="bold green") if self.selection.is_marked(row.id) else Text(" "))
            elif k == "number":  # never cut silently: a wrong-looking number is worse than "…"
                cells.append(text_cell(row.number, no_wrap=True, overflow="ellipsis"))
            elif k == "account":
                cells.append(MiddleCut(row.account))
            elif k == "class":
                cells.append(text_cell(row.customer_class, no_wrap=True, overflow="ellipsis"))
            elif k == "status":
                cells.append(status_text(row.status))
            elif k == "total":
                cells.append(money_cell(row.total, row.currency))
            elif k == "expected":
                cells.append(money_cell(row.expected_total, row.currency, blank=True))
            elif k == "expected_amount":
                cells.append(amount_cell(row.expected_total, row.currency, blank=True))
            elif k == "issued":
                cells.append(Text(row.issue_date.isoformat() if row.issue_date and row.status != S.OPEN else "—"))
            elif k == "due":
                cells.append(Text(row.due_date.isoformat() if row.due_date else "—"))
            elif k == "left":
                cells.append(left_cell(row, self.clock))
            elif k == "review":
                if narrow:  # no Flags column: this cell shows a flagged invoice's flags
                    cells.append(review_or_flags(row, self.clock, self.width_of(c)))
                else:
                    cells.append(review_state(row, self.clock, wide=False, width=self.width_of(c)))
            elif k == "flags":
                cells.append(flags_cell(row, self.width_of(c)))
            elif k == "state":
                cells.append(review_state(row, self.clock, wide=True))
            else:
                cells.append("")
        return cells

    def measure(self, row: InvoiceListRow) -> dict[str, int]:
        sizes = {"number": len(text_cell(row.number).plain), "total": len(money_cell(row.total, row.currency).plain)}
        if row.expected_total is not None:
            sizes["expected"] = len(money_cell(row.expected_total, row.currency).plain)
            sizes["expected_amount"] = len(amount_cell(row.expected_total, row.currency).plain)
        return sizes

    def width_of(self, col: Col) -> int:
        """The column's width in the current layout."""
        if self._layout and col.key in self._layout[0]:
            return self._layout[1][self._layout[0].index(col.key)]
        return col.wide_width if self.wide and col.wide_width else col.width

    # -- rows -----------------------------------------------------------------
    def set_rows(self, rows: list[InvoiceListRow]) -> None:
        self.set_items((str(r.id), r) for r in rows)

    def append_rows(self, rows: list[InvoiceListRow]) -> None:
        self.append_items((str(r.id), r) for r in rows)

    def loaded_ids(self) -> list[int]:
        return [int(k) for k in self.order]

    def current_row(self) -> InvoiceListRow | None:
        key = self.current_key()
        return self.items.get(key) if key else None

    def refresh_rows(self, fresh: dict[int, InvoiceListRow | None], keep) -> tuple[int, int]:
        """Apply fresh rows: update changed cells, drop rows that left the list."""
        updated = removed = 0
        for invoice_id, row in fresh.items():
            key = str(invoice_id)
            if key not in self.items:
                continue
            if row is None or not keep(row):
                self.remove_item(key)
                self.selection.forget([invoice_id])
                removed += 1
            else:
                self.update_item(key, row)
                updated += 1
        return updated, removed

    def tick(self) -> None:
        """Time passed: repaint the time-left cells that changed."""
        for key in self.order:
            row = self.items[key]
            if row.status in (S.UNDER_REVIEW, S.REJECTED):
                self.update_item(key, row)

    # -- marks ----------------------------------------------------------------
    def _repaint_mark(self, key: str) -> None:
        if self._built and self._layout is not None and "mark" in self._layout[0]:
            row = self.items[key]
            cell = Text(MARK, style="bold green") if self.selection.is_marked(row.id) else Text(" ")
            self.update_cell(key, "mark", cell)

    def repaint_marks(self) -> None:
        for key in self.order:
            self._repaint_mark(key)
        self.post_message(self.MarksChanged())

    def action_toggle_mark(self) -> None:
        key = self.current_key()
        if key is None:
            return
        self.selection.toggle(int(key))
        self._repaint_mark(key)
        self.post_message(self.MarksChanged())
        if self.cursor_row < self.row_count - 1:
            self.move_cursor(row=self.cursor_row + 1)

    def mark_loaded(self) -> None:
        self.selection.mark(self.loaded_ids())
        self.repaint_marks()

    # -- paging ---------------------------------------------------------------
    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def watch_cursor_coordinate(self, old, new) -> None:
        super().watch_cursor_coordinate(old, new)
        if self.row_count and new.row >= self.row_count - NEAR_END:
            self.post_message(self.NearEnd())
