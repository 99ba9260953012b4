"""Keyset paging for a list screen, one page at a time, called from workers.

A filter on several statuses (the review queue: under review + rejected)
sorted by deadline or issue date pages each status on its own index
(status, column) and merges the pages by (value, id): on a million invoices
one query over both statuses would sort every matching row for each page,
while per-status pages stay a few milliseconds.  At most one page per status
is buffered; the page order is exactly queries.page's order.

The risk sort (score, then deadline) is merged per status inside
queries.page itself: it is paged as one stream here, keyed by queries.key_of.
"""
from __future__ import annotations

import heapq

from ..store import queries
from .rows import InvoiceRow

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

    def next_page(self) -> list[InvoiceRow]:
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
        return [InvoiceRow.of(r) for r in taken]
