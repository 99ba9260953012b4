"""The console's view state and the store reads behind it (no Textual here):
what the invoice list of the queue and the finder shows and remembers.

- InvoiceListRow: the list's display row, a frozen copy of a store page row
  (store.queries.InvoiceRow) with the names flattened and the flags parsed;
  built in worker threads, so the UI thread never touches a lazy foreign key
  (no database I/O off the workers).  fresh_rows re-reads some by id.
- Pager: keyset paging of the list, one page at a time, called from workers.
- Selection / Targets: the review queue's marked rows, and what an action
  applies to, frozen when its key is pressed.

Pager: a filter on several statuses (the review queue: under review +
rejected) sorted by deadline or issue date pages each status on its own index
(status, column) and merges the pages by (value, id): on a million invoices
one query over both statuses would sort every matching row for each page,
while per-status pages stay a few milliseconds.  At most one page per status
is buffered; the page order is exactly queries.page's order.
The risk sort (score, then deadline) is merged per status inside
queries.page itself: it is paged as one stream here, keyed by queries.key_of.

Selection: a set of ids, or "all matching the filter".  "All matching" is
kept as a query (the filters) plus the ids unmarked since, never as loaded
rows; it is resolved to ids inside a worker.
"""

from __future__ import annotations

import datetime as dt
import heapq
from dataclasses import dataclass, field
from decimal import Decimal

from . import statuses as S
from .risk import is_flagged, parse_flags
from .store import queries


@dataclass(frozen=True)
class InvoiceListRow:
    """One row of the invoice list as it is shown."""

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
    first_approved_by: str | None = None  # four-eyes: the first of two approvals, waiting for a second

    @property
    def flagged(self) -> bool:
        return is_flagged(self.risk_score)

    @property
    def held(self) -> bool:
        return self.held_at is not None and self.status == S.UNDER_REVIEW

    @classmethod
    def of(cls, inv) -> "InvoiceListRow":
        """From an Invoice selected with its Account and CustomerClass joined."""
        return cls(
            id=inv.id,
            number=inv.number,
            account=inv.account.name,
            account_type=inv.account.account_type,
            customer_class=inv.customer_class.name,
            status=inv.status,
            total=inv.total,
            currency=inv.currency,
            issue_date=inv.issue_date,
            due_date=inv.due_date,
            review_deadline=inv.review_deadline,
            reissue_mode=inv.reissue_mode,
            reissue_after=inv.reissue_after,
            revision=inv.revision,
            payment_model=inv.payment_model,
            first_approved_by=getattr(inv, "first_approved_by", None),
            risk_score=getattr(inv, "risk_score", 0) or 0,
            flags=tuple(parse_flags(getattr(inv, "risk_flags", None))),
            expected_total=getattr(inv, "expected_total", None),
            held_at=getattr(inv, "held_at", None),
        )


def fresh_rows(ids) -> dict[int, InvoiceListRow | None]:
    """Current rows for these ids (None: gone). Call inside a worker."""
    ids = list(ids)
    out: dict[int, InvoiceListRow | None] = {i: None for i in ids}
    for row in queries.rows_by_id(ids):
        out[row.id] = InvoiceListRow.of(row)
    return out


# --------------------------------------------------------------------------
# Keyset paging (Pager)

MERGED_SORTS = {"deadline": "review_deadline", "issue_date": "issue_date"}  # indexed with status first


class _Part:
    def __init__(self, filters):
        self.filters = filters
        self.after = None
        self.buffer: list = []
        self.done = False

    def fill(self, sort: str, descending, limit: int) -> None:
        if self.done or len(self.buffer) >= limit:
            return
        page = queries.page(self.filters, sort=sort, descending=descending, after=self.after, limit=limit)
        self.buffer.extend(page)
        if page:
            self.after = queries.key_of(page[-1], sort)
        self.done = len(page) < limit


class Pager:
    def __init__(self, filters, sort: str, descending: bool | None, limit: int = 100):
        self.sort = sort
        self.descending = descending
        self.limit = limit
        desc = queries.SORTS[sort][1] if descending is None else descending
        self.desc = desc
        statuses = filters.statuses
        self.column: str | None
        if len(statuses) > 1 and sort in MERGED_SORTS:
            self.parts = [_Part(filters.with_(statuses=(s,))) for s in statuses]
            self.column = MERGED_SORTS[sort]
        else:
            self.parts = [_Part(filters)]
            self.column = None

    @property
    def has_more(self) -> bool:
        return any(p.buffer or not p.done for p in self.parts)

    def _key(self, row):
        return (getattr(row, self.column), row.id)

    def next_page(self) -> list[InvoiceListRow]:
        """The next page of rows (database I/O: call inside a worker)."""
        for part in self.parts:
            part.fill(self.sort, self.descending, self.limit)
        if len(self.parts) == 1:
            taken, self.parts[0].buffer = self.parts[0].buffer, []
        else:
            keyed = [[(self._key(r), i, r) for r in part.buffer] for i, part in enumerate(self.parts)]
            merged = heapq.merge(*keyed, key=lambda t: t[0], reverse=self.desc)
            taken = []
            counts = [0] * len(self.parts)
            for _, i, row in merged:
                if len(taken) >= self.limit:
                    break
                taken.append(row)
                counts[i] += 1
            for part, n in zip(self.parts, counts):
                del part.buffer[:n]
        return [InvoiceListRow.of(r) for r in taken]


# --------------------------------------------------------------------------
# The selection and an action's targets


@dataclass
class Selection:
    ids: set[int] = field(default_factory=set)
    all_matching: bool = False
    excluded: set[int] = field(default_factory=set)
    filters: queries.Filters | None = None  # when all_matching

    def is_marked(self, invoice_id: int) -> bool:
        if self.all_matching:
            return invoice_id not in self.excluded
        return invoice_id in self.ids

    def toggle(self, invoice_id: int) -> bool:
        """Flip one row; return whether it is marked now."""
        if self.all_matching:
            if invoice_id in self.excluded:
                self.excluded.discard(invoice_id)
                return True
            self.excluded.add(invoice_id)
            return False
        if invoice_id in self.ids:
            self.ids.discard(invoice_id)
            return False
        self.ids.add(invoice_id)
        return True

    def mark(self, ids) -> None:
        for i in ids:
            if self.all_matching:
                self.excluded.discard(i)
            else:
                self.ids.add(i)

    def mark_all_matching(self, filters) -> None:
        self.ids.clear()
        self.excluded.clear()
        self.all_matching = True
        self.filters = filters

    def clear(self) -> None:
        self.ids.clear()
        self.excluded.clear()
        self.all_matching = False
        self.filters = None

    def forget(self, ids) -> None:
        """Rows that left the list (e.g. approved out of the queue)."""
        for i in ids:
            self.ids.discard(i)

    def count(self, matching: int | None = None) -> int | None:
        if self.all_matching:
            return None if matching is None else max(matching - len(self.excluded), 0)
        return len(self.ids)

    def __bool__(self) -> bool:
        return self.all_matching or bool(self.ids)

    def snapshot(self) -> "Targets":
        return Targets(frozenset(self.ids), self.all_matching, frozenset(self.excluded), self.filters)


@dataclass(frozen=True)
class Targets:
    """What an action applies to, frozen when the key is pressed."""

    ids: frozenset = frozenset()
    all_matching: bool = False
    excluded: frozenset = frozenset()
    filters: queries.Filters | None = None

    @classmethod
    def one(cls, invoice_id: int) -> "Targets":
        return cls(ids=frozenset([invoice_id]))

    def resolve(self) -> list[int]:
        """Invoice ids, oldest first. Call inside a worker (database I/O)."""
        if not self.all_matching:
            return sorted(self.ids)
        from .store.models import Invoice, tuple_rows

        assert self.filters is not None  # all matching: the filters they match
        query = queries.ids_matching(self.filters).order_by(Invoice.id)
        return [i for (i,) in tuple_rows(query.tuples()) if i not in self.excluded]
