"""Plain rows for tables: built in worker threads from store objects, so the
UI thread never touches a lazy foreign key (no database I/O off the workers)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from .. import statuses as S
from ..risk import is_flagged, parse_flags


@dataclass(frozen=True)
class InvoiceRow:
    id: int
    number: str
    account: str
    account_type: str
    customer_class: str
    status: str
    total: Decimal
    currency: str
    issue_date: dt.date | None
    due_date: dt.date | None
    review_deadline: dt.datetime | None
    reissue_mode: str | None
    reissue_after: dt.datetime | None
    revision: int
    payment_model: str
    risk_score: int = 0  # risk review: flagged at risk.FLAGGED and above (risk.is_flagged)
    flags: tuple = ()  # risk.Flag, heaviest first
    expected_total: Decimal | None = None  # what the account's history predicts (None: no history)
    held_at: dt.datetime | None = None  # the job loop held it for a person at the end of its hold

    @property
    def flagged(self) -> bool:
        return is_flagged(self.risk_score)

    @property
    def held(self) -> bool:
        return self.held_at is not None and self.status == S.UNDER_REVIEW

    @classmethod
    def of(cls, inv) -> "InvoiceRow":
        """From an Invoice selected with its Account and CustomerClass joined."""
        return cls(
            id=inv.id, number=inv.number, account=inv.account.name,
            account_type=inv.account.account_type, customer_class=inv.customer_class.name,
            status=inv.status, total=inv.total, currency=inv.currency,
            issue_date=inv.issue_date, due_date=inv.due_date, review_deadline=inv.review_deadline,
            reissue_mode=inv.reissue_mode, reissue_after=inv.reissue_after, revision=inv.revision,
            payment_model=inv.payment_model,
            risk_score=getattr(inv, "risk_score", 0) or 0,
            flags=tuple(parse_flags(getattr(inv, "risk_flags", None))),
            expected_total=getattr(inv, "expected_total", None),
            held_at=getattr(inv, "held_at", None),
        )


def fresh_rows(ids) -> dict[int, InvoiceRow | None]:
    """Current rows for these ids (None: gone). Call inside a worker."""
    from ..store import queries

    ids = list(ids)
    out: dict[int, InvoiceRow | None] = {i: None for i in ids}
    for row in queries.rows_by_id(ids):
        out[row.id] = InvoiceRow.of(row)
    return out
