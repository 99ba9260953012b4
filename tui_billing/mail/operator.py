"""Listing the outbox and the operator's actions on it (the `outbox` command
and the console's outbox screen): what is pending, failed, uncertain or
stalled; retry, mark sent, and requeue digests once admin_email is fixed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from peewee import JOIN, fn

from .. import access
from ..store.models import Account, Invoice, OutboxMessage, database, tuple_rows
from .addresses import AddressError, check_address
from .queue import BAD_ADMIN_EMAIL
from .states import DIGEST, FAILED, INVOICE, PENDING_STATUSES, PROBLEM_STATUSES, QUEUED, SENT, STATUSES, UNCERTAIN


def list_messages(statuses: Iterable[str] | None = PENDING_STATUSES, limit: int = 200) -> list[OutboxMessage]:
    query = OutboxMessage.select(OutboxMessage, Invoice.id, Invoice.number).join(Invoice, JOIN.LEFT_OUTER)
    if statuses is not None:
        query = query.where(OutboxMessage.status.in_(list(statuses)))
    return list(query.order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc()).limit(limit))


def failed_messages(limit: int = 200) -> list[OutboxMessage]:
    """Deliveries an operator must look at: failed, and uncertain (SMTP crash window)."""
    return list_messages(PROBLEM_STATUSES, limit)


STALLED_AFTER = dt.timedelta(minutes=15)


def stalled_messages(now: dt.datetime, limit: int = 200) -> list[OutboxMessage]:
    """Queued mail tried and still not taken after STALLED_AFTER: the server is
    unreachable, refuses the login, or mail_from is unusable.  It is retried
    on its own (never failed for an outage), but a person should know."""
    return list(
        OutboxMessage.select(OutboxMessage, Invoice.id, Invoice.number)
        .join(Invoice, JOIN.LEFT_OUTER)
        .where(_stalled(now))
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
        .limit(limit)
    )


def stalled_summary(now: dt.datetime) -> tuple[int, str]:
    """(how many stalled, the newest one's last error) without loading them (the console's poll)."""
    newest = (
        OutboxMessage.select(OutboxMessage.last_error)
        .where(_stalled(now))
        .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        .first()
    )
    if newest is None:
        return 0, ""
    return OutboxMessage.select().where(_stalled(now)).count(), newest.last_error


def _stalled(now: dt.datetime):
    return (
        (OutboxMessage.status == QUEUED)
        & (OutboxMessage.attempts > 0)
        & (OutboxMessage.created_at <= now - STALLED_AFTER)
    )


def counts() -> dict[str, int]:
    rows = (
        OutboxMessage.select(OutboxMessage.status, fn.COUNT(OutboxMessage.id).alias("n"))
        .group_by(OutboxMessage.status)
        .tuples()
    )
    found = dict(tuple_rows(rows))
    return {s: found.get(s, 0) for s in STATUSES}


def message_dict(msg: OutboxMessage, clock) -> dict:
    from ..present import iso_time

    number = getattr(msg.invoice, "number", None) if msg.invoice_id else None
    return {
        "id": msg.id,
        "kind": msg.kind,
        "invoice": number,
        "revision": msg.revision if msg.invoice_id else None,
        "message_id": msg.message_id,
        "recipient": msg.recipient,
        "subject": msg.subject,
        "status": msg.status,
        "attempts": msg.attempts,
        "next_attempt_at": iso_time(clock, msg.next_attempt_at) if msg.status == QUEUED else None,
        "last_error": msg.last_error or None,
        "created_at": iso_time(clock, msg.created_at),
        "sent_at": iso_time(clock, msg.sent_at),
    }


def retry(ctx, ids: Iterable[int]) -> tuple[list[int], list[tuple[int, str]]]:
    """Operator: put failed/uncertain messages back in the queue now.

    Invoice emails take the account's current address, review digests the
    current admin_email setting (either fixed meanwhile).
    An uncertain message may then arrive twice: the operator decides.
    """
    from ..audit import write_audit
    from ..store.settings import load_settings

    access.require(ctx, "outbox")
    settings = None
    done: list[int] = []
    refused: list[tuple[int, str]] = []
    for msg_id in ids:
        with database.atomic():
            msg = _operable(msg_id, PROBLEM_STATUSES, "failed or uncertain", refused)
            if msg is None:
                continue
            recipient = msg.recipient
            if msg.kind == INVOICE and msg.invoice_id:
                inv = Invoice.get_or_none(Invoice.id == msg.invoice_id)
                if inv is not None:
                    recipient = Account.get_by_id(inv.account_id).email
            elif msg.kind == DIGEST:
                if settings is None:
                    settings = load_settings()
                recipient = settings["admin_email"]
            try:
                recipient = check_address(recipient)
            except AddressError as exc:
                what = "the admin_email setting is" if msg.kind == DIGEST else "recipient"
                refused.append((msg_id, f"{what} still invalid: {exc}"))
                continue
            OutboxMessage.update(
                status=QUEUED,
                next_attempt_at=ctx.clock.now(),
                recipient=recipient,
                refusals=0,
                last_error=f"requeued by {ctx.actor}; was {msg.status}: {msg.last_error}"[:2000],
            ).where((OutboxMessage.id == msg_id) & OutboxMessage.status.in_(PROBLEM_STATUSES)).execute()
            inv = Invoice.get_or_none(Invoice.id == msg.invoice_id) if msg.invoice_id else None
            write_audit(ctx, "mail_retry", inv, outbox=msg_id, message_id=msg.message_id, was=msg.status)
            done.append(msg_id)
    return done, refused


def requeue_digests_for_admin_email(ctx, settings) -> list[OutboxMessage]:
    """Digests that were never tried because the admin_email setting was not
    an address (failed when queued, attempts 0) go back to the queue,
    addressed to the current setting, once it is one.  Nothing was sent, so
    nothing can arrive twice.  Returns the rows requeued."""
    try:
        recipient = check_address(settings["admin_email"])
    except AddressError:
        return []
    rows = list(
        OutboxMessage.select(OutboxMessage.id, OutboxMessage.message_id, OutboxMessage.last_error).where(
            (OutboxMessage.kind == DIGEST)
            & (OutboxMessage.status == FAILED)
            & (OutboxMessage.attempts == 0)
            & OutboxMessage.last_error.startswith(BAD_ADMIN_EMAIL)
        )
    )
    done = []
    for msg in rows:
        n = (
            OutboxMessage.update(
                status=QUEUED,
                recipient=recipient,
                next_attempt_at=ctx.clock.now(),
                refusals=0,
                last_error=f"requeued: admin_email is now set; was failed: {msg.last_error}"[:2000],
            )
            .where((OutboxMessage.id == msg.id) & (OutboxMessage.status == FAILED) & (OutboxMessage.attempts == 0))
            .execute()
        )
        if n == 1:
            msg.recipient = recipient
            done.append(msg)
    return done


def _operable(msg_id: int, statuses, wanted: str, refused: list) -> OutboxMessage | None:
    """The message an operator action may take, or None with the refusal noted."""
    msg = OutboxMessage.get_or_none(OutboxMessage.id == msg_id)
    if msg is None:
        refused.append((msg_id, "does not exist"))
    elif msg.status not in statuses:
        refused.append((msg_id, f"is {msg.status}, not {wanted}"))
    else:
        return msg
    return None


def mark_mail_sent(ctx, ids: Iterable[int]) -> tuple[list[int], list[tuple[int, str]]]:
    """Operator: an uncertain message was found in the server's log."""
    from ..audit import write_audit

    access.require(ctx, "outbox")
    done: list[int] = []
    refused: list[tuple[int, str]] = []
    for msg_id in ids:
        with database.atomic():
            msg = _operable(msg_id, (UNCERTAIN,), "uncertain", refused)
            if msg is None:
                continue
            OutboxMessage.update(
                status=SENT, sent_at=ctx.clock.now(), last_error=f"confirmed delivered by {ctx.actor}"
            ).where((OutboxMessage.id == msg_id) & (OutboxMessage.status == UNCERTAIN)).execute()
            inv = Invoice.get_or_none(Invoice.id == msg.invoice_id) if msg.invoice_id else None
            write_audit(ctx, "mail_confirmed", inv, outbox=msg_id, message_id=msg.message_id)
            done.append(msg_id)
    return done, refused
