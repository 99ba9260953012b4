"""The review queue (the first screen): invoices under review and rejected
ones awaiting reissue, by review deadline, with the time left until
auto-approval."""
from __future__ import annotations

from .. import statuses as S
from ..widgets.invoice_table import QUEUE_COLUMNS
from .invoice_list import InvoiceListScreen


class QueueScreen(InvoiceListScreen):
    TITLE = "Review queue"
    STATUSES = [S.UNDER_REVIEW, S.REJECTED]
    BASE_STATUSES = (S.UNDER_REVIEW, S.REJECTED)
    STATUS_PROMPT = "Review + rejected"
    COLUMNS = QUEUE_COLUMNS
    SORT = "deadline"
    QUEUE = True
