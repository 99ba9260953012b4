"""Review jobs: auto-approve at the deadline, off-peak reissue, admin digest."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .. import mail, recalc, workflow
from .. import statuses as S
from ..money import format_money
from ..offpeak import in_window
from ..store import risk_store
from ..store.bulk import heavy_writes
from ..store.models import Account, AuditEvent, Invoice, database, ids_in, tuple_rows
from ..store.settings import load_settings
from .base import JobResult, Log, claim_invoices, claimant, null_log, release_invoices, skip_locked, stopped

# Invoices per guarded UPDATE (one transaction each).  2,000, not 500: each
# statement runs the invoice table's count triggers and a planning, and a
# tick of 10,000 took 2.1x (SQLite) and 2.3x (PostgreSQL, 1M invoices) one
# set-based UPDATE in batches of 500, 1.4x and 1.3x in batches of 2,000
# (bench_store.py); a batch holds its rows (SQLite: the store) about 0.1 s.
AUTO_APPROVE_BATCH = 2000


def auto_approve_due(
    ctx: workflow.Ctx, *, stop=None, log: Log | None = None, batch: int = AUTO_APPROVE_BATCH
) -> JobResult:
    """Approve invoices under review whose review_deadline <= now.

    Rejected invoices are never selected (they wait for their reissue); an
    invoice an admin approved, adjusted or rejected meanwhile is skipped.
    A flagged one (risk score at least risk_hold_score) is held for a person
    instead, unless the store setting auto_approve_flagged is on: logged
    `action=held` once, counted as skipped, listed in the next admin digest.
    Each batch is one guarded transaction.  On PostgreSQL the batch is
    claimed with FOR UPDATE SKIP LOCKED (workflow.auto_approve_due), so
    several loops approve different invoices and none twice.
    """
    log = log or null_log
    res = JobResult()
    # One set-based guarded UPDATE per batch on both stores: its WHERE is the
    # guard, so an invoice an admin approved or rejected meanwhile is simply
    # not taken (no refusal to report).
    hold = True  # the first batch holds every flagged due invoice, unless there are more than a batch
    while not stopped(stop):
        r = workflow.auto_approve_due(ctx, limit=batch, hold=hold)
        hold = len(r.held) >= batch
        for number in r.done:
            log("auto_approve", invoice=number, action="approved")
        for number, flags in r.held:
            log("auto_approve", invoice=number, action="held", flags=",".join(f.code for f in flags) or "-")
        res.done += len(r.done)
        res.skipped += len(r.held)
        if len(r.done) < batch and len(r.held) < batch:
            break
    return res


def reissue_offpeak(ctx: workflow.Ctx, *, stop=None, log: Log | None = None, batch: int = 200) -> JobResult:
    """Complete reissues that are due.

    Off-peak requests (reissue_after <= now) only while the off-peak window
    is open (local time); "now" requests left rejected (the process asking
    died before completing them) at any time.  One transaction per batch
    (recalc.Reissues: one statement per kind of read and write for the whole
    batch), stopping between any two invoices: a stop commits those done, a
    crash loses nothing (the batch is done again next time).  An invoice is
    logged as reissued when it is done in the batch; should the batch fail
    to be saved, each is logged again as failed, and retried next run.
    """
    log = log or null_log
    res = JobResult()
    start, end = load_settings().offpeak
    holder = claimant("reissue:")
    failed: set[int] = set()
    classes = recalc.Classes()  # read once for the run

    def due():
        cond = (Invoice.status == S.REJECTED) & (Invoice.reissue_after <= ctx.clock.now())
        return cond if in_window(ctx.clock.local(), start, end) else cond & (Invoice.reissue_mode == "now")

    batches = -(-Invoice.select().where(due()).count() // batch)
    with heavy_writes(), risk_store.assessor(batches) as assess:
        while not stopped(stop):
            ids = claim_invoices(holder, due(), (Invoice.reissue_after, Invoice.id), batch, failed)
            if not ids:
                break
            _histories_ahead(assess, ids)
            try:
                _reissue_batch(ctx, ids, (start, end), stop, log, res, failed, assess, classes)
            finally:
                release_invoices(holder, ids)
    return res


def _histories_ahead(assess: risk_store.Assessor, ids: list[int]) -> None:
    """The batch's risk histories, read by the worker at once: while this
    process calculates and writes the batch (read when assessing, they held
    it up about a quarter of the run)."""
    by_period: dict[dt.date, list[int]] = {}  # period_from -> its accounts
    for account_id, period_from in tuple_rows(
        Invoice.select(Invoice.account, Invoice.period_from).where(ids_in(Invoice.id, ids)).tuples()
    ):
        by_period.setdefault(period_from, []).append(account_id)
    for period_from, accounts in by_period.items():
        assess.ahead(accounts, period_from, now=True)


def _reissue_batch(
    ctx: workflow.Ctx,
    ids: list[int],
    window,
    stop,
    log: Log,
    res: JobResult,
    failed: set[int],
    assess: recalc.Assess,
    classes: recalc.Classes,
) -> None:
    done: list[tuple[int, str]] = []
    batch: recalc.Reissues | None = None
    try:
        with database.atomic():
            batch = recalc.Reissues(ctx, ids, assess, classes)
            for inv_id in ids:
                if stopped(stop):
                    break
                try:
                    mode = batch.mode(inv_id)
                    if mode != "now" and not in_window(ctx.clock.local(), *window):
                        continue  # the window closed meanwhile: these wait for the next one
                    inv = batch.complete(inv_id)
                except workflow.Refused as exc:
                    res.skipped += 1
                    log("reissue_offpeak", invoice=exc.number, action="skipped", reason=exc.reason)
                    continue
                except Exception as exc:  # one bad invoice never blocks the others
                    failed.add(inv_id)
                    res.failed += 1
                    log(
                        "reissue_offpeak",
                        invoice=_number(inv_id),
                        action="failed",
                        reason=f"{type(exc).__name__}: {exc}",
                    )
                    continue
                done.append((inv_id, inv.number))
                res.done += 1
                log(
                    "reissue_offpeak",
                    invoice=inv.number,
                    action="reissued",
                    mode=mode,
                    revision=inv.revision,
                    total=format_money(inv.total, inv.currency),
                )
            batch.write()
    except Exception as exc:  # not saved (rolled back): none of the batch was reissued; retried next run
        res.done -= len(done)
        numbers = dict(done)
        for inv_id in numbers if batch is not None else ids:  # those logged as reissued, or all: none was read
            failed.add(inv_id)
            res.failed += 1
            number = numbers.get(inv_id) or _number(inv_id)
            log("reissue_offpeak", invoice=number, action="failed", reason=f"not saved: {type(exc).__name__}: {exc}")


def _number(inv_id: int) -> str:
    return Invoice.select(Invoice.number).where(Invoice.id == inv_id).scalar() or str(inv_id)


# --------------------------------------------------------------------------
# Notifications


def notify_admins(ctx: workflow.Ctx, *, stop=None, log: Log | None = None, batch: int = 500) -> JobResult:
    """One digest email to the admin address listing invoices newly waiting
    for review (under review, notified_at NULL); then notified_at is set.
    Both in one transaction: an invoice is in one digest per announcement.
    The auto-approve job clears notified_at when it holds a flagged invoice,
    so a held invoice is announced once more, in the digest's section "Held
    for a person (flagged)".  On PostgreSQL the invoices are claimed with FOR
    UPDATE SKIP LOCKED, so two loops never list the same invoice (each sends
    a digest of others).  A digest queued while admin_email was not an
    address is failed at once (listed by `outbox --failed`); once the setting
    is fixed, the next run requeues it to the new address."""
    log = log or null_log
    res = JobResult()
    settings = load_settings()
    # Digests that failed on an unusable admin_email go out once it is fixed.
    for msg in mail.requeue_digests_for_admin_email(ctx, settings):
        log(
            "notify_admins",
            action="digest_requeued",
            to=msg.recipient,
            message=msg.message_id,
            reason="admin_email fixed",
        )
    while not stopped(stop):
        with database.atomic():
            order = (Invoice.review_deadline, Invoice.id)
            ids = [
                r.id
                for r in skip_locked(
                    Invoice.select(Invoice.id)
                    .where((Invoice.status == S.UNDER_REVIEW) & Invoice.notified_at.is_null())
                    .order_by(*order)
                    .limit(batch)
                )
            ]
            if not ids:
                break
            rows = list(
                Invoice.select(Invoice, Account)
                .join(Account, on=(Invoice.account == Account.id))
                .where(Invoice.id.in_(ids))
                .order_by(*order)
            )
            n = (
                Invoice.update(notified_at=ctx.clock.now())
                .where(Invoice.id.in_(ids) & Invoice.notified_at.is_null() & (Invoice.status == S.UNDER_REVIEW))
                .execute()
            )
            if n != len(ids):  # another notifier raced us (no row locks): undo, retry next time
                raise RuntimeError("notify_admins: invoices changed meanwhile; retrying next run")
            queued = mail.queue_digest(ctx, rows, settings)
        res.done += len(rows)
        log(
            "notify_admins",
            action="digest_queued",
            invoices=len(rows),
            to=queued.message.recipient,
            message=queued.message.message_id,
            status=queued.message.status,
        )
        if len(rows) < batch:
            break
    return res


@dataclass(frozen=True)
class ReviewNotice:
    """What the console polls for its toast."""

    waiting: int  # invoices under review now
    new: int  # invoices that entered review since `cursor` (and still wait)
    newest: str | None  # number of the newest of those
    unnotified: int  # under review and not yet in an admin digest
    cursor: int  # pass back to the next call


ENTER_REVIEW_ACTIONS = ("generate", "close", "reissue")


def review_notice(cursor: int | None = None) -> ReviewNotice:
    """Cheap poll: how many invoices wait for review, how many are new since
    the last call.  The first call (cursor None) sets the baseline (new=0)."""
    waiting = Invoice.select().where(Invoice.status == S.UNDER_REVIEW).count()
    unnotified = Invoice.select().where((Invoice.status == S.UNDER_REVIEW) & Invoice.notified_at.is_null()).count()
    top = AuditEvent.select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1).scalar() or 0
    if cursor is None:
        return ReviewNotice(waiting, 0, None, unnotified, top)
    rows = list(
        tuple_rows(
            AuditEvent.select(AuditEvent.invoice, AuditEvent.number)
            .join(Invoice, on=(AuditEvent.invoice == Invoice.id))
            .where(
                (AuditEvent.id > cursor)
                & (AuditEvent.id <= top)
                & AuditEvent.action.in_(ENTER_REVIEW_ACTIONS)
                & (AuditEvent.after_status == S.UNDER_REVIEW)
                & (Invoice.status == S.UNDER_REVIEW)
            )
            .order_by(AuditEvent.id)
            .tuples()
        )
    )
    invoices = {inv_id: number for inv_id, number in rows}
    newest = rows[-1][1] if rows else None
    return ReviewNotice(waiting, len(invoices), newest, unnotified, top)
