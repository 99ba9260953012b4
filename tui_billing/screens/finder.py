"""The invoice finder: every invoice, filtered, sorted by issue date, number
total or risk (keys i, n, t, k; again to reverse); `f`: flagged only."""

from __future__ import annotations

from textual.binding import Binding

from ..widgets.invoice_table import FINDER_COLUMNS
from .invoice_list import InvoiceListScreen


class FinderScreen(InvoiceListScreen):
    TITLE = "Find invoices"
    COLUMNS = FINDER_COLUMNS
    SORT = "issue_date"
    SORT_KEYS = Binding.Group("Sort")
    BINDINGS = [
        Binding("i", "sort('issue_date')", "Sort by issue date", id="finder.sort_issue_date", group=SORT_KEYS),
        Binding("n", "sort('number')", "Sort by number", id="finder.sort_number", group=SORT_KEYS),
        Binding("t", "sort('total')", "Sort by total", id="finder.sort_total", group=SORT_KEYS),
        Binding("k", "sort('risk')", "Sort by risk", id="finder.sort_risk", group=SORT_KEYS),
        # as in the queue, but not in the footer (80 columns: the sort keys go first)
        Binding("f", "toggle_flagged", "Flagged", id="list.flagged", show=False),
    ]

    def action_sort(self, sort: str) -> None:
        from ..store.queries import SORTS

        if sort == self.sort:
            current = SORTS[sort][1] if self.descending is None else self.descending
            self.descending = not current
        else:
            self.sort, self.descending = sort, None
        self.counts.set_sort(self.sort_words())
        self.reload()
