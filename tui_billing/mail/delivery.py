"""Delivery: the state machine that hands queued rows to a transport, exactly
once where the transport allows it, and recovers rows a crash left behind.

Delivery states (`OutboxMessage.status`):

    queued ──claim──► sending ──(SMTP: just before the final ".")──► uncertain ──reply 250──► sent
       ▲                 │                                              │
       └── retry (backoff) ◄── connection/4xx error, or a crash while "sending"
                                              failed ◄── 5xx, bad address, too many attempts
                                          uncertain ◄── crash or lost connection after the "."

Exactly-once, precisely:

- Maildir: exactly once.  A message's file name is derived from its
  Message-ID and is created with link(2), which refuses to overwrite, so a
  retry after a crash finds the file (in new/ or cur/) instead of writing a
  second one.
- SMTP: a server delivers a message only after it has received the final
  "<CRLF>.<CRLF>" of DATA.  Everything up to that point is retried freely (a
  crash leaves the row "sending"; a loop puts it back in the queue once its
  sender is known to be dead or its lease ran out — see recover_interrupted —
  and the server has discarded the half-sent transaction).  Just before the final
  dot the row is committed as "uncertain"; after the server's reply it is
  committed as "sent" (or back to queued/failed if the server refused it).  A
  crash or a dropped connection between those two commits leaves the row
  "uncertain": it is NOT resent automatically (at-most-once for that one
  message) and `tui-billing outbox --failed` lists it for an operator, who can
  check the server's log for its Message-ID and `--mark-sent` or `--retry` it.
  In practice the server almost always did get it: the only way to lose the
  message is a crash in the microseconds between the "uncertain" commit and
  writing three bytes to the socket.

Claims and leases: a row in "sending" names its sender in `claimed_by` (the
job loop's holder "host|pid|start|random|pidns") and the end of its lease in
`claimed_until` (real UTC clock, SEND_LEASE after the claim); both are cleared
when the row leaves "sending".  recover_interrupted() puts a row back in the
queue only when its sender is known to be dead or its lease ran out; even
then `attempts`, the claim's fencing token, keeps a sender that was merely
slow from completing: every move out of "sending" or "uncertain" names the
token it was claimed with (ClaimLost before the final ".").  The claim does
not touch `last_error` (the previous attempt's error stays readable) nor
`next_attempt_at` (when the row fell due).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from email.policy import SMTP as SMTP_POLICY

from ..store.models import Invoice, OutboxMessage, database
from .addresses import AddressError
from .compose import build_message
from .config import RetryPolicy
from .states import FAILED, QUEUED, SENDING, SENT, UNCERTAIN, ClaimLost, DeliveryError, Uncertain


@dataclass
class DeliveryResult:
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    uncertain: list[int] = field(default_factory=list)
    skipped: int = 0
    stopped_early: bool = False


def _log_fields(msg: OutboxMessage) -> dict:
    number = None
    if msg.invoice_id:
        number = Invoice.select(Invoice.number).where(Invoice.id == msg.invoice_id).scalar()
    return {"invoice": number, "message": msg.message_id, "kind": msg.kind, "outbox": msg.id}


SEND_LEASE = dt.timedelta(minutes=5)  # how long a claim lasts (claimed_until)
# Before migration 0007 the claim was written into the row's own fields:
# `last_error` held CLAIM_MARK + the sender and `next_attempt_at` the end of
# the lease.  The migration moves claims of that form into the new columns; a
# loop of an older version still running against the store (PostgreSQL,
# during an upgrade) keeps writing them, so recovery still reads them.
CLAIM_MARK = "sending, claimed by "


def sender_id() -> str:
    """This process as a sender (the same form as a job loop's holder)."""
    from ..jobs.lock import make_holder

    global _SENDER
    if _SENDER is None or _SENDER[0] != os.getpid():
        _SENDER = (os.getpid(), make_holder())
    return _SENDER[1]


_SENDER: tuple[int, str] | None = None


def _real_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def _claim(msg_id: int, now: dt.datetime, holder: str | None = None) -> int | None:
    """queued -> sending, attempts + 1, sender and lease recorded; returns the
    new attempts (the claim token).  The conditional UPDATE is the claim: of
    several loops exactly one moves the row.  The row's last_error (the
    previous attempt's) and next_attempt_at are left as they were."""
    holder = holder or sender_id()
    with database.atomic():
        n = (
            OutboxMessage.update(
                status=SENDING,
                attempts=OutboxMessage.attempts + 1,
                claimed_by=holder[:200],
                claimed_until=_real_now() + SEND_LEASE,
            )
            .where(
                (OutboxMessage.id == msg_id) & (OutboxMessage.status == QUEUED) & (OutboxMessage.next_attempt_at <= now)
            )
            .execute()
        )
        if n != 1:
            return None
        return OutboxMessage.select(OutboxMessage.attempts).where(OutboxMessage.id == msg_id).scalar()


def _move(msg_id: int, token: int, from_status: tuple[str, ...], **changes) -> bool:
    """Apply `changes` if the row is still in `from_status` under the claim
    `token`; every move ends the claim (no row leaves "sending" claimed)."""
    n = (
        OutboxMessage.update(claimed_by=None, claimed_until=None, **changes)
        .where((OutboxMessage.id == msg_id) & (OutboxMessage.attempts == token) & OutboxMessage.status.in_(from_status))
        .execute()
    )
    return n == 1


def deliver_due(
    ctx,
    transport,
    *,
    policy: RetryPolicy | None = None,
    limit: int = 200,
    stop=None,
    log: Callable[..., None] | None = None,
    job: str = "deliver_outbox",
    holder: str | None = None,
) -> DeliveryResult:
    """Send queued messages whose next attempt is due (next_attempt_at <= now).

    Several senders (job loops on a PostgreSQL store) may run this at once:
    each message is claimed (queued -> sending) by exactly one of them.
    `holder` names this sender on its claims (default: this process)."""
    from ..store.settings import load_settings

    policy = policy or RetryPolicy()
    log = log or (lambda *a, **k: None)
    result = DeliveryResult()
    settings = load_settings()
    now = ctx.clock.now()
    ids = [
        r.id
        for r in OutboxMessage.select(OutboxMessage.id)
        .where((OutboxMessage.status == QUEUED) & (OutboxMessage.next_attempt_at <= now))
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    ]
    try:
        for msg_id in ids:
            if stop is not None and stop.is_set():
                result.stopped_early = True
                break
            now = ctx.clock.now()
            token = _claim(msg_id, now, holder)
            if token is None:
                result.skipped += 1  # someone else took it, or it is no longer due
                continue
            msg = OutboxMessage.get_by_id(msg_id)
            fields = _log_fields(msg)
            try:
                message, sender, rcpt = build_message(msg, settings)
                data = message.as_bytes(policy=SMTP_POLICY)
                outcome = transport.deliver(
                    msg.message_id, sender, rcpt, data, functools.partial(_point_of_no_return, msg_id, token)
                )
            except ClaimLost:
                result.skipped += 1
                log(job, **fields, action="skipped", reason="claimed by another sender")
                continue
            except Uncertain as exc:
                _move(msg_id, token, (UNCERTAIN,), last_error=f"uncertain: {exc}"[:2000])
                result.uncertain.append(msg_id)
                log(job, **fields, action="uncertain", to=msg.recipient, reason=str(exc))
                continue
            except (AddressError, DeliveryError) as exc:
                permanent = isinstance(exc, AddressError) or exc.permanent
                reason = f"invalid address: {exc}" if isinstance(exc, AddressError) else exc.reason
                # The server being down says nothing about this message: it is
                # retried (at the capped backoff) however long the outage lasts,
                # never failed for it.  max_attempts counts the server's answers.
                outage = isinstance(exc, DeliveryError) and exc.connection and not permanent
                refusals = msg.refusals + (0 if outage else 1)
                # From "uncertain" too: a refusal after the final "." is a definite answer.
                if permanent or refusals >= policy.max_attempts:
                    _move(
                        msg_id, token, (SENDING, UNCERTAIN), status=FAILED, last_error=reason[:2000], refusals=refusals
                    )
                    result.failed.append(msg_id)
                    log(job, **fields, action="failed", attempts=token, to=msg.recipient, reason=reason)
                else:
                    later = ctx.clock.now() + policy.delay(token)
                    _move(
                        msg_id,
                        token,
                        (SENDING, UNCERTAIN),
                        status=QUEUED,
                        next_attempt_at=later,
                        last_error=reason[:2000],
                        refusals=refusals,
                    )
                    result.retrying.append(msg_id)
                    log(
                        job,
                        **fields,
                        action="retry",
                        attempts=token,
                        next_attempt=later.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        reason=reason,
                    )
                if isinstance(exc, DeliveryError) and exc.connection:
                    result.stopped_early = True  # the server is down: the rest waits for the next run
                    break
                continue
            except Exception as exc:  # a bug or a broken PDF: retry later, never lose the row
                reason = f"{type(exc).__name__}: {exc}"
                later = ctx.clock.now() + policy.delay(token)
                refusals = msg.refusals + 1
                status = FAILED if refusals >= policy.max_attempts else QUEUED
                _move(
                    msg_id,
                    token,
                    (SENDING,),
                    status=status,
                    next_attempt_at=later,
                    last_error=reason[:2000],
                    refusals=refusals,
                )
                (result.failed if status == FAILED else result.retrying).append(msg_id)
                log(job, **fields, action="failed" if status == FAILED else "retry", attempts=token, reason=reason)
                continue
            done = _move(msg_id, token, (SENDING, UNCERTAIN), status=SENT, sent_at=ctx.clock.now(), last_error="")
            if done:
                result.sent.append(msg_id)
                log(job, **fields, action="sent", to=msg.recipient, via=transport.name, reply=outcome)
            else:
                log(job, **fields, action="uncertain", reason="delivered, but the outbox row was changed meanwhile")
    finally:
        transport.close()
    return result


def _point_of_no_return(msg_id: int, token: int) -> None:
    """Commit 'uncertain' before the final "." (autocommit: one statement)."""
    if not _move(
        msg_id,
        token,
        (SENDING,),
        status=UNCERTAIN,
        last_error="uncertain: interrupted after the message was handed to the SMTP server",
    ):
        raise ClaimLost()


def _claim_of(msg: OutboxMessage) -> tuple[str | None, dt.datetime | None]:
    """(sender, end of lease) of a "sending" row; (None, None) when not recorded.

    A claim made by a version before migration 0007 is in last_error
    (CLAIM_MARK + sender) and next_attempt_at (the lease).  This version
    never writes CLAIM_MARK and leaving "sending" always rewrote last_error,
    so a "sending" row whose last_error starts with it was claimed by such a
    version (its claimed_by, never cleared by that version, may be stale)."""
    if msg.status != SENDING:
        return None, None
    text = msg.last_error or ""
    if text.startswith(CLAIM_MARK):
        holder = text[len(CLAIM_MARK) :].splitlines()[0] if len(text) > len(CLAIM_MARK) else None
        return holder, msg.next_attempt_at
    return msg.claimed_by, msg.claimed_until


def claim_holder(msg: OutboxMessage) -> str | None:
    """Who claimed a "sending" row (None: not recorded, e.g. an older version)."""
    return _claim_of(msg)[0]


def interrupted_reason(msg: OutboxMessage, now: dt.datetime | None = None) -> str | None:
    """Why a "sending" row may go back to the queue, or None while its sender
    may still be working on it."""
    from ..jobs.lock import Holder

    holder, until = _claim_of(msg)
    if holder is None:
        return "sender not recorded"
    if Holder.parse(holder).dead():
        return "sender is gone"
    if until is None or until < (now or _real_now()):
        return "lease expired"
    return None


def recover_interrupted(*, exclusive: bool = False, now: dt.datetime | None = None) -> int:
    """After a crash: rows left 'sending' were never handed over (SMTP: no
    final "."; Maildir: delivery is idempotent), so they go back to the queue,
    due at once (at `now`, the caller's clock; default: when it was queued).

    exclusive=True (a SQLite job loop holding the store's only loop lock: no
    other sender can run) requeues every 'sending' row.  Otherwise (several
    loops on PostgreSQL) only rows whose sender is dead (a process of this
    host that no longer exists), whose sender is not recorded, or whose lease
    (SEND_LEASE) ran out; a row another live loop is sending is left alone.
    Each row moves with a guarded UPDATE (same status and attempts), so a
    sender that finishes meanwhile wins; a slow sender whose row was requeued
    and claimed again finds its token stale and stops before the final ".".
    """
    moved = 0
    rows = list(
        OutboxMessage.select(
            OutboxMessage.id,
            OutboxMessage.status,
            OutboxMessage.attempts,
            OutboxMessage.claimed_by,
            OutboxMessage.claimed_until,
            OutboxMessage.next_attempt_at,
            OutboxMessage.last_error,
            OutboxMessage.created_at,
        ).where(OutboxMessage.status == SENDING)
    )
    for msg in rows:
        reason = "the job loop holds the store" if exclusive else interrupted_reason(msg)
        if reason is None:
            continue
        moved += (
            OutboxMessage.update(
                status=QUEUED,
                next_attempt_at=now or msg.created_at,
                claimed_by=None,
                claimed_until=None,
                last_error=f"requeued after an interrupted delivery ({reason})",
            )
            .where(
                (OutboxMessage.id == msg.id)
                & (OutboxMessage.status == SENDING)
                & (OutboxMessage.attempts == msg.attempts)
            )
            .execute()
        )
    return moved
