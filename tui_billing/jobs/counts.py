"""The maintained invoice counts' upkeep (store/counts.py): on PostgreSQL the
statement triggers only ever add rows, and this job folds them back into one
row per group, so reading a count stays a lookup.  SQLite: nothing to do."""

from __future__ import annotations

from ..context import Ctx
from ..store import counts
from .base import JobResult, Log, null_log


def fold_counts(ctx: Ctx, *, stop=None, log: Log | None = None) -> JobResult:
    """Fold the counts' added rows when there are more than counts.COMPACT_ABOVE."""
    res = JobResult()
    folded = counts.compact()
    if folded:
        res.done += 1
        (log or null_log)("fold_counts", action="folded", groups=folded)
    return res
