"""Postpay and payment jobs: close open invoices on day 2, expire payments."""

from __future__ import annotations

import datetime as dt

from .. import payments, workflow
from .. import statuses as S
from ..billrun import close_open_invoice
from ..money import format_money
from ..store.models import Invoice, Payment, database
from ..workflow import number_of
from .base import JobResult, Log, null_log, shared_store, skip_locked, stopped

CLOSE_ON_DAY = 2  # seed 001: "closed on the second day of the next billing period"


def _claimed(query) -> bool:
    """PostgreSQL, inside the item's transaction: lock the item's row unless
    another loop holds it (SKIP LOCKED); False: another loop has it, or it no
    longer qualifies.  SQLite (one loop): always True."""
    if not shared_store():
        return True
    return skip_locked(query).first() is not None


class _Taken(Exception):
    """The item is another loop's (or no longer qualifies): skip it quietly."""


def closing_day(period_to: dt.date) -> dt.date:
    """The next period starts the day after period_to; its second day closes."""
    return period_to + dt.timedelta(days=CLOSE_ON_DAY)


def close_postpay(ctx: workflow.Ctx, *, stop=None, log: Log | None = None, batch: int = 200) -> JobResult:
    """Close OPEN postpay invoices whose closing day (local date) has come,
    and issue them: under review where the class asks for it, else approved
    (then the dispatch job sends them).

    Closing recalculates the invoice from the period's usage first, in the
    same transaction as workflow.close_postpay (billrun.close_open_invoice,
    one invoice at a time; the bill run closes a chunk at once with
    recalc.close_postpay_many, which writes the same rows).  On PostgreSQL that transaction
    first claims the invoice (FOR UPDATE SKIP LOCKED): several loops close
    different invoices.
    """
    close_one = close_open_invoice
    log = log or null_log
    res = JobResult()
    last_period_to = ctx.clock.today() - dt.timedelta(days=CLOSE_ON_DAY)
    failed: set[int] = set()
    while not stopped(stop):
        query = Invoice.select(Invoice.id).where(
            (Invoice.status == S.OPEN) & (Invoice.payment_model == "postpay") & (Invoice.period_to <= last_period_to)
        )
        if failed:
            query = query.where(Invoice.id.not_in(list(failed)))
        ids = [r.id for r in query.order_by(Invoice.period_to, Invoice.id).limit(batch)]
        if not ids:
            break
        progressed = False
        for inv_id in ids:
            if stopped(stop):
                break
            try:
                with database.atomic():
                    if not _claimed(
                        Invoice.select(Invoice.id).where((Invoice.id == inv_id) & (Invoice.status == S.OPEN))
                    ):
                        raise _Taken()
                    inv = close_one(ctx, inv_id)
            except _Taken:
                failed.add(inv_id)  # another loop closes it: do not look at it again in this run
                res.skipped += 1
                continue
            except workflow.Refused as exc:
                res.skipped += 1
                log("close_postpay", invoice=exc.number, action="skipped", reason=exc.reason)
                continue
            except Exception as exc:
                failed.add(inv_id)
                res.failed += 1
                log("close_postpay", invoice=number_of(inv_id), action="failed", reason=f"{type(exc).__name__}: {exc}")
                continue
            progressed = True
            res.done += 1
            log(
                "close_postpay",
                invoice=inv.number,
                action="closed",
                status=inv.status,
                total=format_money(inv.total, inv.currency),
                due=inv.due_date,
            )
        if not progressed and len(ids) < batch:
            break
    return res


def expire_payments(ctx: workflow.Ctx, *, stop=None, log: Log | None = None, batch: int = 500) -> JobResult:
    """Payments waiting_for_payment past their due date -> expired; the
    invoice (unpaid) -> overdue.  One transaction per payment; on PostgreSQL
    it first claims the payment (FOR UPDATE SKIP LOCKED), so several loops
    expire different payments."""
    log = log or null_log
    res = JobResult()
    today = ctx.clock.today()
    failed: set[int] = set()
    while not stopped(stop):
        query = Payment.select(Payment.id, Payment.invoice).where(
            (Payment.status == "waiting_for_payment") & (Payment.due_date < today)
        )
        if failed:
            query = query.where(Payment.id.not_in(list(failed)))
        rows = list(query.order_by(Payment.due_date, Payment.id).limit(batch))
        if not rows:
            break
        progressed = False
        for row in rows:
            if stopped(stop):
                break
            try:
                with database.atomic():
                    # The invoice's row is claimed, not the payment's: every payment
                    # transition locks the invoice first (payments.py), so no deadlock.
                    if not _claimed(Invoice.select(Invoice.id).where(Invoice.id == row.invoice_id)):
                        raise _Taken()
                    pay = payments.expire_payment(ctx, row.id)
            except _Taken:
                failed.add(row.id)  # another loop expires it
                res.skipped += 1
                continue
            except Exception as exc:
                failed.add(row.id)
                res.failed += 1
                log(
                    "expire_payments",
                    invoice=number_of(row.invoice_id),
                    payment=row.id,
                    action="failed",
                    reason=f"{type(exc).__name__}: {exc}",
                )
                continue
            if pay is None:
                res.skipped += 1
                failed.add(row.id)  # not expirable any more: do not look at it again in this run
                continue
            progressed = True
            res.done += 1
            status = Invoice.select(Invoice.status).where(Invoice.id == row.invoice_id).scalar()
            log(
                "expire_payments",
                invoice=number_of(row.invoice_id),
                payment=row.id,
                action="expired",
                due=pay.due_date,
                invoice_status=status,
            )
        if not progressed and len(rows) < batch:
            break
    return res
