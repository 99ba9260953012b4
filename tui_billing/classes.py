"""Customer classes: send mode, hold-for-review days, Net days, and the warning
of seed 000 — with review on, Net days must include the hold days so the
customer keeps the same time to pay (Net 21 + 5 hold days -> Net 26)."""
from __future__ import annotations

from .statuses import SEND_MODES
from .store.models import CustomerClass, database

MAX_DAYS = 365


class ClassError(ValueError):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def net_days_warning(send_mode: str, hold_days: int, net_days: int) -> str | None:
    """The warning for a class on its own, or None: Net days no longer than
    the hold leave the customer no time to pay at all.  (What Net should be
    when a change shortens the customer's time: change_warning.)"""
    if send_mode != "after_review" or hold_days <= 0:
        return None
    if net_days <= hold_days:
        return (f"Net {net_days} days does not include the {hold_days} hold-for-review days: "
                f"customers would have {max(net_days - hold_days, 0)} days to pay; "
                f"extend Net days by {hold_days} (e.g. Net 21 + {hold_days} = Net {21 + hold_days})")
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
            return (f"review holds invoices {hold_days} days: to keep Net {kept} for the customer, "
                    f"set Net {kept + hold_days} days (now Net {net_days})")
    return net_days_warning(send_mode, hold_days, net_days)


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
    from .workflow import write_audit

    name = " ".join((name or "").split())
    if not name:
        raise ClassError("name", "is required")
    with database.atomic():
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
        write_audit(ctx, "class_change", None, None, None, customer_class=name, before=before,
                    after=(cls.send_mode, cls.hold_days, cls.net_days))
    return change_warning(before, (cls.send_mode, cls.hold_days, cls.net_days))


def class_rows(name: str | None = None) -> list[dict]:
    query = CustomerClass.select().order_by(CustomerClass.name)
    if name:
        query = query.where(CustomerClass.name == name)
    return [{"name": c.name, "send_mode": c.send_mode, "hold_days": c.hold_days, "net_days": c.net_days,
             "billing_period": c.billing_period,
             "warning": net_days_warning(c.send_mode, c.hold_days, c.net_days)} for c in query]
