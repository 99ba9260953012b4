"""The review queue's selection: a set of ids, or "all matching the filter".

"All matching" is kept as a query (the filters) plus the ids unmarked since,
never as loaded rows; it is resolved to ids inside a worker.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Selection:
    ids: set[int] = field(default_factory=set)
    all_matching: bool = False
    excluded: set[int] = field(default_factory=set)
    filters: object = None  # store.queries.Filters when all_matching

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
    filters: object = None

    @classmethod
    def one(cls, invoice_id: int) -> "Targets":
        return cls(ids=frozenset([invoice_id]))

    def resolve(self) -> list[int]:
        """Invoice ids, oldest first. Call inside a worker (database I/O)."""
        if not self.all_matching:
            return sorted(self.ids)
        from ..store import queries
        from ..store.models import Invoice

        query = queries.ids_matching(self.filters).order_by(Invoice.id)
        return [i for (i,) in query.tuples() if i not in self.excluded]
