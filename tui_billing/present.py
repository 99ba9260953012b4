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
from .risk import is_flagged, parse_flags


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


def invoice_dict(inv, clock: Clock, *, erp: bool = False, reporting: str | None = None) -> dict:
    """`reporting`: the store's reporting_currency (risk_at_stake is in it);
    None: read from the store when an invoice has money at stake."""
    account = inv.account
    cls = inv.customer_class
    issued = inv.status != S.OPEN
    score = getattr(inv, "risk_score", 0) or 0
    at_stake = getattr(inv, "risk_at_stake", None)
    if at_stake is not None and reporting is None:
        from .store.settings import load_settings
        reporting = load_settings()["reporting_currency"]
    held_at = getattr(inv, "held_at", None)
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
        "risk_score": score,
        "flagged": is_flagged(score),
        "flags": [f.as_dict() for f in parse_flags(getattr(inv, "risk_flags", ""))],
        # what the account's history predicts (invoice currency; null: no history)
        "expected_total": amount_str(getattr(inv, "expected_total", None), inv.currency),
        # the money wrong if the flags are right, in the reporting currency
        "risk_at_stake": amount_str(at_stake, reporting) if at_stake is not None else None,
        "risk_at_stake_currency": reporting if at_stake is not None else None,
        # held for a person: the job loop did not auto-approve it at the end of its hold
        "held": held_at is not None and inv.status == S.UNDER_REVIEW,
        "held_at": iso_time(clock, held_at),
    }
    if erp:
        data["external_total"] = amount_str(inv.external_total, inv.external_currency or inv.currency)
        data["external_currency"] = inv.external_currency
    return data


def changes_dict(diff, currency: str) -> dict | None:
    """A revision diff (revisions.RevisionDiff) as JSON: lines and totals."""
    if diff is None:
        return None

    def line(state):
        if state is None:
            return None
        d = {"description": state.description, "amount": amount_str(state.amount, currency)}
        if state.service or state.quantity is not None:
            d.update(service=state.service, discount=amount_str(state.discount, currency),
                     quantity=None if state.quantity is None else str(state.quantity))
        return d

    def changes(items):
        return [{"change": c.change, "description": c.description, "service": c.service or None,
                 "fields": list(c.fields), "before": line(c.before), "after": line(c.after),
                 "delta": amount_str(c.delta, currency)} for c in items]

    return {
        "from_revision": diff.from_revision, "to_revision": diff.to_revision,
        "charges": changes(diff.charges), "taxes": changes(diff.taxes), "corrections": changes(diff.corrections),
        "totals": {name: {"before": amount_str(b, currency), "after": amount_str(a, currency),
                          "delta": amount_str(a - b, currency)} for name, (b, a) in diff.totals.items()},
    }


def signed_amount(value: Decimal, currency: str) -> str:
    """'+12.00' / '-3.50' / '0.00' — a change, always with its sign."""
    text = format_amount(abs(value), currency)
    return f"+{text}" if value > 0 else (f"-{text}" if value < 0 else text)


def changes_text(diff, currency: str) -> list[str]:
    """Plain-text lines of a revision diff (show, and anything that prints one)."""
    if diff is None:
        return []
    out = [f"Changes since revision {diff.from_revision} (last reviewed) -> revision {diff.to_revision}"]
    rows = []
    for section, items in (("charge", diff.charges), ("tax", diff.taxes), ("correction", diff.corrections)):
        for c in items:
            before = format_amount(c.before.net, currency) if c.before else "—"
            after = format_amount(c.after.net, currency) if c.after else "—"
            what = c.change + (f" ({', '.join(c.fields)})" if c.fields else "")
            if section != "charge":
                what = f"{section} {what}"
            name = c.description if not c.service or c.description.startswith(c.service) else \
                f"{c.description} [{c.service}]"
            rows.append([what, name, before, after, signed_amount(c.delta, currency)])
    if rows:
        out.append(table(rows, ["Change", "Line", "Before", "After", "Delta"], right={2, 3, 4}))
    else:
        out.append("No line changed.")
    t_before, t_after = diff.totals["total"]
    out.append(f"Total {format_money(t_before, currency)} -> {format_money(t_after, currency)} "
               f"({signed_amount(t_after - t_before, currency)})")
    return out


def flags_text(flags) -> list[str]:
    return [f"{f.code:<22} {f.reason}" for f in flags]


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
