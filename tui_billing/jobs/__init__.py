"""The job loop and one function per job.

    run_loop(env, stop_event)   the loop (console --jobs worker, `tui-billing jobs run`)
    JOBS                        name -> job, in the order one pass runs them

Every job is a function `job(ctx, *, stop=None, log=None) -> JobResult`:
idempotent (running it twice does nothing the second time), safe with a
second caller (every change is a guarded transition in its own
transaction), and stoppable between items (`stop.is_set()`).

SQLite: one loop per store (LoopLock).  PostgreSQL: several loops share the
work (LoopRegistration); each job claims its items so none is done twice:

    close_postpay      per invoice: FOR UPDATE SKIP LOCKED in the item's transaction
    auto_approve       per batch: WITH due AS MATERIALIZED (SELECT … FOR UPDATE SKIP LOCKED) UPDATE …
    reissue_offpeak    per batch: claimed_by/claimed_until lease, chosen with SKIP LOCKED
    dispatch_approved  per batch: claimed_by/claimed_until lease, chosen with SKIP LOCKED
    expire_payments    per payment: FOR UPDATE SKIP LOCKED in the item's transaction
    notify_admins      per digest: the invoices' rows with SKIP LOCKED, notified_at set
                       in the transaction that queues the digest
    deliver_outbox     per message: queued -> sending (conditional UPDATE), sender + lease
    fold_counts        PostgreSQL: folds the invoice counts' added rows (store/counts.py);
                       rows added meanwhile stay beside the folded ones

Which loops are alive on the store (the console's header, its dialogs):
`loop_status()` -> LoopStatus (holder host:pid, heartbeat, last pass).

For the console: `review_notice(cursor)` (toast: invoices newly waiting for
review) and `mail.failed_messages()` (deliveries an operator must look at).
"""

from __future__ import annotations

from ..mail import failed_messages as _failed
from .base import JobLog, JobResult, format_line
from .dispatch import deliver_outbox, dispatch_approved
from .lock import LoopBusy, LoopLock, LoopRegistration, current_holder, loop_lock, running_loops
from .loop import DEFAULT_INTERVAL, DEFAULT_SLICE, JOBS, LoopSummary, console_mode, intervals, run_loop, run_slice
from .postpay import close_postpay, closing_day, expire_payments
from .review import ReviewNotice, auto_approve_due, notify_admins, reissue_offpeak, review_notice
from .status import LoopInfo, LoopStatus, loop_status


def failed_messages(limit: int = 200):
    """Failed and uncertain deliveries (for the console's outbox view)."""
    return _failed(limit)


__all__ = [
    "JOBS",
    "DEFAULT_INTERVAL",
    "DEFAULT_SLICE",
    "JobLog",
    "JobResult",
    "LoopBusy",
    "LoopLock",
    "LoopInfo",
    "LoopRegistration",
    "LoopStatus",
    "LoopSummary",
    "ReviewNotice",
    "auto_approve_due",
    "close_postpay",
    "closing_day",
    "console_mode",
    "current_holder",
    "deliver_outbox",
    "dispatch_approved",
    "expire_payments",
    "failed_messages",
    "format_line",
    "intervals",
    "loop_lock",
    "loop_status",
    "notify_admins",
    "reissue_offpeak",
    "review_notice",
    "run_loop",
    "run_slice",
    "running_loops",
]
