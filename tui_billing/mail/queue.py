"""Queueing, inside the caller's transaction.

A row is queued inside the transaction that makes it necessary (an invoice is
queued in the same transaction that marks it sent), so "the invoice went out"
and "its email is waiting" are never apart.  An invoice's email is keyed by
(invoice, revision) and queued at most once; an unusable recipient still gets
a row, failed with the reason, so `outbox --failed` lists it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..money import format_money
from ..store.models import Account, Invoice, OutboxMessage
from .addresses import AddressError, check_address, clean_header_text, digest_message_id, invoice_message_id
from .compose import invoice_body, invoice_subject
from .states import DIGEST, FAILED, INVOICE, QUEUED

# The reason a digest failed when queued because the admin_email setting was
# not an address: operator.requeue_digests_for_admin_email finds them by it.
BAD_ADMIN_EMAIL = "invalid admin_email setting: "


@dataclass
class Queued:
    message: OutboxMessage
    created: bool  # False: it was already queued (idempotent re-run)


def queue_invoice(ctx, inv: Invoice, settings) -> Queued:
    """Queue the email of `inv`'s current revision (insert-or-ignore).

    A customer address that is not usable still gets a row, status failed
    with the reason, so the failure is listed by `outbox --failed` (fix the
    account's email, then `outbox --retry`).
    """
    account = Account.get_by_id(inv.account_id)
    now = ctx.clock.now()
    status, error, recipient = QUEUED, "", account.email
    try:
        recipient = check_address(account.email)
    except AddressError as exc:
        status, error = FAILED, f"invalid recipient address: {exc}"
        recipient = clean_header_text(account.email, 254)
    row = dict(
        kind=INVOICE,
        invoice=inv.id,
        revision=inv.revision,
        message_id=invoice_message_id(inv, inv.revision, settings["mail_from"]),
        recipient=recipient,
        subject=invoice_subject(inv, settings),
        body=invoice_body(inv, account, settings),
        status=status,
        attempts=0,
        next_attempt_at=now,
        last_error=error,
        created_at=now,
    )
    before = _find(INVOICE, inv.id, inv.revision)
    if before is None:
        OutboxMessage.insert(row).on_conflict_ignore().execute()
    msg = _find(INVOICE, inv.id, inv.revision)
    # Inserted, or there already: in the caller's transaction, under the invoice's lock.
    assert msg is not None, f"{inv.number}: revision {inv.revision} not queued"
    return Queued(msg, created=before is None)


def _find(kind: str, invoice_id: int, revision: int) -> OutboxMessage | None:
    return (
        OutboxMessage.select()
        .where(
            (OutboxMessage.kind == kind) & (OutboxMessage.invoice == invoice_id) & (OutboxMessage.revision == revision)
        )
        .first()
    )


def queue_digest(ctx, invoices: list[Invoice], settings) -> Queued:
    """One email to the admin address listing `invoices` (now under review).

    Invoices the job loop held for a person (held_at set: flagged at the end
    of their hold) are listed apart, under "Held for a person (flagged)",
    each with its flags' reasons."""
    from ..risk import parse_flags
    from ..workflow import hold_score

    now = ctx.clock.now()
    n = len(invoices)
    status, error, recipient = QUEUED, "", settings["admin_email"]
    try:
        recipient = check_address(settings["admin_email"])
    except AddressError as exc:
        status, error = FAILED, f"{BAD_ADMIN_EMAIL}{exc}"
        recipient = clean_header_text(recipient, 254)
    fresh = [inv for inv in invoices if getattr(inv, "held_at", None) is None]
    held = [inv for inv in invoices if getattr(inv, "held_at", None) is not None]
    holds = not settings.auto_approve_flagged
    threshold = hold_score(settings)

    def head(inv: Invoice) -> str:
        return (
            f"  {inv.number:<20} {clean_header_text(inv.account.name, 40):<40} "
            f"{format_money(inv.total, inv.currency):>18}"
        )

    lines: list[str] = []
    if fresh:
        k = len(fresh)
        lines += [f"{k} invoice{'s are' if k != 1 else ' is'} waiting for your review:", ""]
        for inv in fresh:
            deadline = ctx.clock.local(inv.review_deadline).strftime("%Y-%m-%d %H:%M") if inv.review_deadline else "—"
            fate = "held (flagged)" if holds and (inv.risk_score or 0) >= threshold else "auto-approved"
            lines.append(f"{head(inv)}   {fate} {deadline}")
        lines.append("")
    if held:
        k = len(held)
        lines += [
            "Held for a person (flagged): "
            f"{k} invoice{'s' if k != 1 else ''} reached the end of the hold and "
            f"{'were' if k != 1 else 'was'} not approved automatically:",
            "",
        ]
        for inv in held:
            lines.append(head(inv))
            flags = parse_flags(inv.risk_flags)
            lines += [f"      {clean_header_text(f.short, 40)}: {clean_header_text(f.reason, 300)}" for f in flags]
            if not flags:
                lines.append(f"      risk score {inv.risk_score or 0}")
        lines += [
            "",
            "A person approves each of them after checking its flags (the console asks to accept them), or with:",
            "  tui-billing approve NUMBER --include-flagged",
            "",
        ]
    lines += [
        "Review them in the console (tui-billing) or with:",
        "  tui-billing find --status under_review",
        "",
        "Invoices not approved, adjusted or reissued by their deadline are approved "
        "automatically and sent to the customer" + ("; flagged ones are held for a person instead." if holds else "."),
    ]
    if fresh and held:
        subject = f"{len(fresh)} invoice{'s' if len(fresh) != 1 else ''} waiting for review, {len(held)} held"
    elif held:
        subject = f"{n} flagged invoice{'s' if n != 1 else ''} held for review"
    else:
        subject = f"{n} invoice{'s' if n != 1 else ''} waiting for review"
    message_id = digest_message_id(invoices, settings["mail_from"], now)
    OutboxMessage.insert(
        kind=DIGEST,
        invoice=None,
        revision=0,
        message_id=message_id,
        recipient=recipient,
        subject=clean_header_text(subject, 300),
        body="\n".join(lines) + "\n",
        status=status,
        attempts=0,
        next_attempt_at=now,
        last_error=error,
        created_at=now,
    ).on_conflict_ignore().execute()
    msg = OutboxMessage.get(OutboxMessage.message_id == message_id)
    return Queued(msg, created=True)
