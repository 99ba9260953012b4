"""Dispatch jobs: approved invoice -> email queued + sent status; outbox delivery."""

from __future__ import annotations

from .. import config_file, documents, mail, workflow
from .. import statuses as S
from ..store.locking import for_update
from ..store.models import Account, Invoice, OutboxMessage, database
from ..store.settings import load_settings
from ..workflow import number_of
from .base import JobResult, Log, claim_invoices, claimant, null_log, release_invoices, stopped

COUNT_UP_TO = 10_000  # approved invoices counted at the start of a dispatch run


def dispatch_approved(
    ctx: workflow.Ctx, *, stop=None, log: Log | None = None, batch: int = 50, workers: int | None = None
) -> JobResult:
    """For each approved invoice: render the PDF of its current revision (the
    final one, without the review watermark), then in ONE transaction queue
    its email (insert-or-ignore on (invoice, revision)) and mark it sent
    (workflow.mark_invoice_sent: PAID from the balance, or UNPAID with a payment
    waiting).  A crash before the commit leaves the invoice approved with no
    email queued; after it, both are done: never one without the other.

    Invoices are claimed in batches (claim_invoices: claimed_by lease, chosen
    with SKIP LOCKED on PostgreSQL), so several loops dispatch different
    invoices; the guarded transition would refuse a second dispatch anyway.
    The PDFs are rendered ahead by a render_pool (`workers` processes,
    default [jobs] workers, when there are enough invoices); every write
    stays here, invoice after invoice, in the order above.
    """
    log = log or null_log
    res = JobResult()
    holder = claimant("dispatch:")
    settings = load_settings()
    failed: set[int] = set()
    # Enough waiting for worker processes? (Counted up to a bound: that is all the pool asks.)
    waiting = Invoice.select(Invoice.id).where(Invoice.status == S.APPROVED).limit(COUNT_UP_TO).count()
    with documents.render_pool(workers, expected=waiting) as pool:
        while not stopped(stop):
            ids = claim_invoices(holder, Invoice.status == S.APPROVED, (Invoice.approved_at, Invoice.id), batch, failed)
            if not ids:
                break
            try:
                _dispatch_batch(ctx, ids, settings, pool, res, failed, stop, log)
            finally:
                release_invoices(holder, ids)
    return res


def _dispatch_batch(ctx, ids: list[int], settings, pool, res: JobResult, failed: set[int], stop, log: Log) -> None:
    rendered = documents.pdfs(ids, pool, load=_approved, reuse=False, now=ctx.clock.now())
    for inv_id in ids:
        if stopped(stop):
            break
        try:
            inv, data = next(rendered)  # its PDF rendered and stored (or why not)
            if isinstance(data, Exception):
                raise data
            outcome = _send(ctx, inv_id, inv.revision, settings) if inv is not None else None
        except workflow.Refused as exc:
            res.skipped += 1
            log("dispatch_approved", invoice=exc.number, action="skipped", reason=exc.reason)
            continue
        except Exception as exc:  # one bad invoice never blocks the others
            failed.add(inv_id)
            res.failed += 1
            log("dispatch_approved", invoice=number_of(inv_id), action="failed", reason=f"{type(exc).__name__}: {exc}")
            continue
        if outcome is None:  # someone else dispatched it meanwhile
            res.skipped += 1
            continue
        inv, msg = outcome
        res.done += 1
        log(
            "dispatch_approved",
            invoice=inv.number,
            action="queued",
            status=inv.status,
            revision=inv.sent_revision,
            message=msg.message_id,
            to=msg.recipient,
            mail=msg.status if msg.status != mail.QUEUED else None,
        )


def _approved(inv_id: int) -> Invoice | None:
    inv = Invoice.get_or_none(Invoice.id == inv_id)
    return inv if inv is not None and inv.status == S.APPROVED else None  # else: dispatched meanwhile


def _send(ctx: workflow.Ctx, inv_id: int, revision: int, settings) -> tuple[Invoice, OutboxMessage] | None:
    """Queue the email and mark the invoice sent, in one transaction, once
    the PDF of `revision` is stored.  Approved invoices cannot change (adjust
    and reissue refuse them), so the PDF rendered outside the transaction is
    the one of this revision; the revision is checked again under the lock."""
    with database.atomic():
        inv = for_update(Invoice.select().where(Invoice.id == inv_id)).first()
        if inv is None or inv.status != S.APPROVED:
            return None
        if inv.revision != revision:
            raise workflow.Refused(inv.number, f"changed to revision {inv.revision} while its PDF was rendered")
        queued = mail.queue_invoice(ctx, inv, settings)  # 1. queue (idempotent)
        inv = workflow.mark_invoice_sent(ctx, inv_id, revision)  # 2. approved -> paid / unpaid
        if queued.message.status == mail.QUEUED:  # say what to do now that the payment exists
            body = mail.invoice_body(inv, Account.get_by_id(inv.account_id), settings, paid=inv.status == S.PAID)
            (
                OutboxMessage.update(body=body)
                .where((OutboxMessage.id == queued.message.id) & (OutboxMessage.status == mail.QUEUED))
                .execute()
            )
        Invoice.update(claimed_by=None, claimed_until=None).where(Invoice.id == inv_id).execute()
    msg = OutboxMessage.get_by_id(queued.message.id)
    return inv, msg


def deliver_outbox(
    ctx: workflow.Ctx,
    *,
    stop=None,
    log: Log | None = None,
    transport=None,
    policy: mail.RetryPolicy | None = None,
    batch: int = 200,
    holder: str | None = None,
) -> JobResult:
    """Send queued messages whose next attempt is due, batch after batch.

    Each message is claimed (queued -> sending, a conditional UPDATE) before
    it is sent, so several loops deliver different messages; `holder` (the
    loop's) is recorded on the claim for crash recovery.

    `transport` defaults to the one configured ([mail] / TUI_BILLING_SMTP_*).
    A transient failure puts the message back with exponential backoff; after
    policy.max_attempts it is failed (listed by `outbox --failed`).  When the
    server is unreachable the run ends: the rest waits for the next run.
    """
    log = log or null_log
    if transport is None:
        cfg = config_file.load()  # the one loader: flags none, then environment, file, defaults
        transport = mail.transport_from_config(cfg.mail)
        policy = policy or mail.RetryPolicy.from_config(cfg.mail)
    res = JobResult()
    while not stopped(stop):
        r = mail.deliver_due(ctx, transport, policy=policy, limit=batch, stop=stop, log=log, holder=holder)
        res.done += len(r.sent)
        res.failed += len(r.failed) + len(r.uncertain) + len(r.retrying)
        res.skipped += r.skipped
        handled = len(r.sent) + len(r.failed) + len(r.uncertain) + len(r.retrying) + r.skipped
        if r.stopped_early or handled < batch or not (r.sent or r.failed or r.retrying):
            break
    return res
