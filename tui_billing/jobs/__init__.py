"""The job loop and one function per job.

    run_loop(env, stop_event)   the loop (console --jobs worker, `tui-billing jobs run`)
    JOBS                        name -> job, in the order one pass runs them

Every job is a function `job(ctx, *, stop=None, log=None) -> JobResult`:
idempotent (running it twice does nothing the second time), safe with a
second caller (every change is a guarded transition in its own
transaction), and stoppable between items (`stop.is_set()`).

For the console: `review_notice(cursor)` (toast: invoices newly waiting for
review) and `mail.failed_messages()` (deliveries an operator must look at).
"""
from __future__ import annotations

from .base import JobLog, JobResult, format_line
from .dispatch import deliver_outbox, dispatch_approved
from .lock import LoopBusy, LoopLock, current_holder
from .loop import DEFAULT_INTERVAL, JOBS, LoopSummary, intervals, run_loop
from .postpay import close_postpay, closing_day, expire_payments
from .review import ReviewNotice, auto_approve_due, notify_admins, reissue_offpeak, review_notice


def failed_messages(limit: int = 200):
    """Failed and uncertain deliveries (for the console's outbox view)."""
    from ..mail import failed_messages as _failed

    return _failed(limit)


__all__ = [
    "JOBS", "DEFAULT_INTERVAL", "JobLog", "JobResult", "LoopBusy", "LoopLock", "LoopSummary", "ReviewNotice",
    "auto_approve_due", "close_postpay", "closing_day", "current_holder", "deliver_outbox", "dispatch_approved",
    "expire_payments", "failed_messages", "format_line", "intervals", "notify_admins", "reissue_offpeak",
    "review_notice", "run_loop",
]
