"""Reading the audit trail (issue 16): the `audit` command and the console's
audit screen list events with the same filters — actor, action, invoice and
a time range — newest first, in keyset pages by id."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from ..clock import parse_now
from ..errors import ConfigError, FieldError
from ..text import typed
from .models import AuditEvent, Invoice, tuple_rows

PAGE = 500


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None  # the person: "alice" matches "alice" and "alice (db billing)"
    action: str | None = None  # approve, adjust, user_add, ...
    invoice: str | None = None  # an invoice number
    since: dt.datetime | None = None  # naive UTC, inclusive
    until: dt.datetime | None = None  # naive UTC, exclusive


class AuditFilterError(FieldError):
    pass


def _time(clock, text: str | None, field: str, end: bool) -> dt.datetime | None:
    """from/to: an ISO date-time (offset as given, else the billing zone), or
    a date: its first moment (from) or the first moment after it (to)."""
    raw = (text or "").strip()
    if not raw:
        return None
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw) + dt.timedelta(days=1 if end else 0)
            raw = day.isoformat() + "T00:00"
        return parse_now(raw, clock.tz)
    except (ValueError, ConfigError):
        raise AuditFilterError(
            field, f"{text!r} is not an ISO 8601 date or date-time like 2026-12-01 or 2026-12-01T09:30"
        ) from None


def parse_filter(
    clock,
    *,
    actor: str | None = None,
    action: str | None = None,
    invoice: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> AuditFilter:
    """The filters as typed (the `audit` command and the console's audit
    screen read them here): FieldError naming the one at fault."""
    start, end = _time(clock, since, "from", False), _time(clock, until, "to", True)
    if start and end and end <= start:
        raise AuditFilterError("to", "is not after from")
    return AuditFilter(
        actor=typed("actor", actor, max_len=64, required=False) or None,
        action=typed("action", action, max_len=40, required=False) or None,
        invoice=typed("invoice", invoice, max_len=64, required=False) or None,
        since=start,
        until=end,
    )


def _query(f: AuditFilter):
    q = AuditEvent.select()
    if f.actor:
        q = q.where((AuditEvent.actor == f.actor) | AuditEvent.actor.startswith(f"{f.actor} (db "))
    if f.action:
        q = q.where(AuditEvent.action == f.action)
    if f.invoice:
        inv_id = Invoice.select(Invoice.id).where(Invoice.number == f.invoice).scalar()
        q = q.where(
            (AuditEvent.number == f.invoice) | (AuditEvent.invoice == inv_id)
            if inv_id
            else AuditEvent.number == f.invoice
        )
    if f.since:
        q = q.where(AuditEvent.at >= f.since)
    if f.until:
        q = q.where(AuditEvent.at < f.until)
    return q


def page(f: AuditFilter, limit: int = 100, before_id: int | None = None) -> list[AuditEvent]:
    """Up to `limit` events, newest first, older than `before_id` if given."""
    q = _query(f)
    if before_id is not None:
        q = q.where(AuditEvent.id < before_id)
    return list(q.order_by(AuditEvent.id.desc()).limit(limit))


def count(f: AuditFilter) -> int:
    return _query(f).count()


def every(f: AuditFilter) -> Iterator[AuditEvent]:
    """Every matching event, newest first, streamed in pages."""
    before = None
    while True:
        rows = page(f, PAGE, before)
        yield from rows
        if len(rows) < PAGE:
            return
        before = rows[-1].id


def actions() -> list[str]:
    """The actions the trail holds, for the filters' choices."""
    return [
        a for (a,) in tuple_rows(AuditEvent.select(AuditEvent.action).distinct().order_by(AuditEvent.action).tuples())
    ]
