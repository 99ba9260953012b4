"""The review queue (the first screen): invoices under review and rejected
ones awaiting reissue, riskiest first (risk score, then review deadline),
with their flags and the time left until auto-approval; the counts line
says how many flagged invoices wait held for a person, and how many sent
invoices are overdue.  `s` switches to
the review-deadline order and back; `f` shows flagged invoices only."""

from __future__ import annotations

from textual.binding import Binding

from .. import statuses as S
from ..widgets.invoice_table import QUEUE_COLUMNS
from .invoice_list import InvoiceListScreen


class QueueScreen(InvoiceListScreen):
    TITLE = "Review queue"
    STATUSES = [S.UNDER_REVIEW, S.REJECTED]
    BASE_STATUSES = (S.UNDER_REVIEW, S.REJECTED)
    STATUS_PROMPT = "Review + rejected"
    NOTHING = "Nothing waits for review: no invoice is under review or awaiting reissue."
    COLUMNS = QUEUE_COLUMNS
    SORT = "risk"  # risk score high to low, then the nearest deadline (queries.page merges the statuses)
    QUEUE = True
    BINDINGS = [
        Binding("s", "toggle_sort", "Sort: risk / deadline", id="queue.sort", show=False),
    ]

    def count_notes(self) -> dict[str, int]:
        """Flagged invoices the job loop held for a person at the end of their hold,
        and invoices owed past their due date (collections: `find --status overdue`)."""
        from ..workflow import held_count, overdue_count

        return {"held": held_count(), "overdue": overdue_count()}

    def action_toggle_sort(self) -> None:
        """Risk first (the default) or review deadline first."""
        self.sort, self.descending = ("deadline" if self.sort == "risk" else "risk"), None
        self.counts.set_sort(self.sort_words())
        self.reload()
