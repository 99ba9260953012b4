"""Customer classes: send mode, hold-for-review days, Net days, and the warning
of seed 000 — with review on, Net days must include the hold days so the
customer keeps the same time to pay (Net 21 + 5 hold days -> Net 26)."""

from __future__ import annotations

import json

from . import access
from .audit import write_audit
from .errors import FieldError
from .statuses import SEND_MODES
from .store.models import AuditEvent, CustomerClass, database, tuple_rows
from .text import TextError, typed

MAX_DAYS = 365
NAME_MAX = CustomerClass.name.max_length  # 120: the column's width, checked before SQLite or PostgreSQL sees it


class ClassError(FieldError):
    """A class's name, send mode or days refused; `.field` is the CLI's flag name."""


def net_days_warning(send_mode: str, hold_days: int, net_days: int) -> str | None:
    """The warning for a class on its own, or None: Net days no longer than
    the hold leave the customer no time to pay at all.  (What Net should be
    when a change shortens the customer's time: change_warning.)"""
    if send_mode != "after_review" or hold_days <= 0:
        return None
    if net_days <= hold_days:
        return (
            f"Net {net_days} days does not include the {hold_days} hold-for-review days: "
            f"customers would have {max(net_days - hold_days, 0)} days to pay; "
            f"extend Net days by {hold_days} (e.g. Net 21 + {hold_days} = Net {21 + hold_days})"
        )
    return None


def days_to_pay(send_mode: str, hold_days: int, net_days: int) -> int:
    """Days the customer has to pay once the invoice reaches them: the Net
    term counts from the issue date, and review holds the invoice first."""
    return net_days - (hold_days if send_mode == "after_review" else 0)


def change_warning(before: tuple[str, int, int] | None, after: tuple[str, int, int]) -> str | None:
    """The warning for changing a class from `before` to `after` (send mode,
    hold days, Net days): review switched on or its hold lengthened must not
    shorten the customer's time to pay — seed 000: Net 21 with 5 hold days
    becomes Net 26.  Falls back to the check of the class on its own."""
    send_mode, hold_days, net_days = after
    if before is not None and send_mode == "after_review":
        kept = days_to_pay(*before)
        if 0 < kept and days_to_pay(*after) < kept:  # (a class already without time to pay: below)
            return (
                f"review holds invoices {hold_days} days: to keep Net {kept} for the customer, "
                f"set Net {kept + hold_days} days (now Net {net_days})"
            )
    return net_days_warning(send_mode, hold_days, net_days)


def clean_name(name: str | None) -> str:
    """A class name as an admin typed it: white space collapsed, no control
    characters, at most NAME_MAX characters (text.typed); ClassError if not.
    The same answer on SQLite and PostgreSQL: nothing reaches the store unchecked."""
    try:
        return typed("name", name, max_len=NAME_MAX)
    except TextError as exc:
        raise ClassError(exc.field, exc.reason) from None


def validate(send_mode: str, hold_days: int, net_days: int) -> None:
    if send_mode not in SEND_MODES:
        raise ClassError("send-mode", f"{send_mode!r} is not immediately or after_review")
    if not 0 <= hold_days <= MAX_DAYS:
        raise ClassError("hold-days", f"must be between 0 and {MAX_DAYS}")
    if send_mode == "after_review" and hold_days == 0:
        raise ClassError("hold-days", "review needs at least 1 hold day (or send immediately)")
    if not 0 <= net_days <= MAX_DAYS:
        raise ClassError("net-days", f"must be between 0 and {MAX_DAYS}")


def save_class(ctx, name: str, *, send_mode=None, hold_days=None, net_days=None, create=False) -> str | None:
    """Change (or create) a class in one audited transaction; return a warning or None."""
    name = clean_name(name)
    for field, days in (("hold-days", hold_days), ("net-days", net_days)):
        if days is not None and not 0 <= days <= MAX_DAYS:
            raise ClassError(field, f"must be between 0 and {MAX_DAYS}")
    with database.atomic():
        access.require(ctx, "classes", name)
        cls = CustomerClass.get_or_none(CustomerClass.name == name)
        if cls is None and not create:
            raise ClassError("name", f"no customer class named {name!r} (use --create)")
        before = None if cls is None else (cls.send_mode, cls.hold_days, cls.net_days)
        cls = cls or CustomerClass(name=name)
        cls.send_mode = send_mode if send_mode is not None else cls.send_mode or "immediately"
        cls.hold_days = hold_days if hold_days is not None else (cls.hold_days or 0)
        cls.net_days = net_days if net_days is not None else (cls.net_days if cls.net_days is not None else 30)
        validate(cls.send_mode, cls.hold_days, cls.net_days)
        cls.save()
        write_audit(
            ctx,
            "class_change",
            None,
            None,
            None,
            customer_class=name,
            before=before,
            after=(cls.send_mode, cls.hold_days, cls.net_days),
        )
    return change_warning(before, (cls.send_mode, cls.hold_days, cls.net_days))


def _last_changes(names: list[str]) -> dict[str, tuple[tuple, tuple]]:
    """(before, after) of each class's last audited change."""
    found: dict[str, tuple[tuple, tuple]] = {}
    wanted = set(names)
    # invoice IS NULL: found by that column's index, however long the audit log.
    query = (
        AuditEvent.select(AuditEvent.detail)
        .where(AuditEvent.invoice.is_null() & (AuditEvent.action == "class_change"))
        .order_by(AuditEvent.id.desc())
    )
    for (detail,) in tuple_rows(query.tuples()):
        try:
            doc = json.loads(detail or "{}")
        except ValueError:
            continue
        name = doc.get("customer_class")
        if name in wanted and name not in found and doc.get("before") and doc.get("after"):
            found[name] = (tuple(doc["before"]), tuple(doc["after"]))
            if len(found) == len(wanted):
                break
    return found


def class_rows(name: str | None = None) -> list[dict]:
    """Every class (or one) with its warning.  The warning of a change stays
    for as long as the class keeps the values that change gave it (across
    restarts: it is read from the audit log), then the class's own check."""
    query = CustomerClass.select().order_by(CustomerClass.name)
    if name:
        query = query.where(CustomerClass.name == clean_name(name))
    classes = list(query)
    changes = _last_changes([c.name for c in classes])
    rows = []
    for c in classes:
        now = (c.send_mode, c.hold_days, c.net_days)
        before, after = changes.get(c.name, (None, None))
        warning = change_warning(before, now) if after == now else net_days_warning(*now)
        rows.append(
            {
                "name": c.name,
                "send_mode": c.send_mode,
                "hold_days": c.hold_days,
                "net_days": c.net_days,
                "billing_period": c.billing_period,
                "warning": warning,
            }
        )
    return rows
