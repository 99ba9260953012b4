"""How invoices look outside the console: JSON documents and plain text.

The JSON keys are a contract (DESIGN.md): scripts depend on them.
"""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from . import statuses as S
from .config import Clock
from .money import format_amount, format_debt_change, format_money


def iso_time(clock: Clock, moment: dt.datetime | None) -> str | None:
    """A stored naive-UTC time as ISO 8601 with the billing zone's offset."""
    if moment is None:
        return None
    return moment.replace(tzinfo=dt.timezone.utc).astimezone(clock.tz).isoformat()


def amount_str(value: Decimal | None, currency: str) -> str | None:
    if value is None:
        return None
    from .money import quantize
    return str(quantize(value, currency))


def invoice_dict(inv, clock: Clock, *, erp: bool = False) -> dict:
    account = inv.account
    cls = inv.customer_class
    issued = inv.status != S.OPEN
    data = {
        "id": inv.id,
        "number": inv.number,
        "account": account.name,
        "account_type": account.account_type,
        "customer_class": cls.name,
        "kind": inv.kind,
        "payment_model": inv.payment_model,
        "status": inv.status,
        "total": amount_str(inv.total, inv.currency),
        "outstanding": amount_str(inv.outstanding, inv.currency),
        "currency": inv.currency,
        "period_from": inv.period_from.isoformat(),
        "period_to": inv.period_to.isoformat(),
        "issue_date": inv.issue_date.isoformat() if issued else None,
        "due_date": inv.due_date.isoformat() if (issued and inv.due_date) else None,
        "review_deadline": iso_time(clock, inv.review_deadline),
        "revision": inv.revision,
        "approved_at": iso_time(clock, inv.approved_at),
        "reissue": ({"mode": inv.reissue_mode, "after": iso_time(clock, inv.reissue_after)}
                    if inv.status == S.REJECTED else None),
    }
    if erp:
        data["external_total"] = amount_str(inv.external_total, inv.external_currency or inv.currency)
        data["external_currency"] = inv.external_currency
    return data


def dumps(doc) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2, default=str)


def status_text(inv) -> str:
    return S.label(S.INVOICE_STATUSES, inv.status)


def table(rows: list[list[str]], headers: list[str], right: set[int] = frozenset()) -> str:
    """A plain aligned text table for terminals and pipes."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def fmt(row):
        return "  ".join((c.rjust(widths[i]) if i in right else c.ljust(widths[i]))
                         for i, c in enumerate(row)).rstrip()

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


__all__ = ["invoice_dict", "dumps", "table", "format_amount", "format_money", "format_debt_change", "iso_time"]
