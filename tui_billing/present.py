"""How invoices look outside the console: JSON documents and plain text.

The JSON keys are a contract (DESIGN.md): scripts depend on them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import statuses as S
from .clock import Clock
from .money import format_amount, format_debt_change, format_money, quantize
from .risk import is_flagged, parse_flags
from .text import shown


def iso_time(clock: Clock, moment: dt.datetime | None) -> str | None:
    """A stored naive-UTC time as ISO 8601 with the billing zone's offset."""
    if moment is None:
        return None
    return moment.replace(tzinfo=dt.UTC).astimezone(clock.tz).isoformat()


def amount_str(value: Decimal | None, currency: str) -> str | None:
    if value is None:
        return None
    return str(quantize(value, currency))


def approvals(inv, rules=None) -> dict:
    """Four-eyes: how many approvals the invoice needs and who gave them
    (`rules`: four_eyes.FourEyes in force; None: read from what is stored).

    {"needed": 2, "given": [{"by": "alice", "at": <naive UTC>}], "text": "1 of 2 approvals"}"""
    first_by = getattr(inv, "first_approved_by", None)
    needed = (
        2
        if first_by or (rules is not None and inv.status == S.UNDER_REVIEW and rules.needs_two(inv.total, inv.currency))
        else 1
    )
    given = []
    if first_by:
        given.append({"by": first_by, "at": inv.first_approved_at})
    if inv.approved_at is not None and inv.status not in (S.UNDER_REVIEW, S.REJECTED, S.OPEN):
        given.append({"by": inv.approved_by, "at": inv.approved_at})
    return {"needed": needed, "given": given, "text": f"{len(given)} of {needed} approvals"}


def approvals_words(inv, clock: Clock, rules=None) -> str | None:
    """ "1 of 2 approvals: alice 2026-12-02 10:00; waits for a second approver",
    as the detail header and `show` say it; None when one approval is enough."""
    a = approvals(inv, rules)
    if a["needed"] < 2:
        return None
    given = ", ".join(f"{g['by']} {clock.local(g['at']):%Y-%m-%d %H:%M}" for g in a["given"] if g["at"])
    text = a["text"] + (f": {given}" if given else "")
    if inv.status == S.UNDER_REVIEW:
        text += "; waits for a second approver" if a["given"] else "; needs two approvers"
    return text


def days_overdue(inv, today: dt.date) -> int:
    """Days since the due date of an invoice still owed after it (Unpaid or
    Overdue, outstanding above zero); 0 otherwise (collections)."""
    due = getattr(inv, "due_date", None)
    if inv.status not in (S.UNPAID, S.OVERDUE) or due is None or due >= today or inv.outstanding <= 0:
        return 0
    return (today - due).days


def invoice_dict(inv, clock: Clock, *, erp: bool = False, reporting: str | None = None, rules=None) -> dict:
    """`reporting`: the store's reporting_currency (risk_at_stake is in it);
    None: read from the store when an invoice has money at stake.  `rules`:
    the four-eyes rules in force (workflow.four_eyes_rules), for "approvals"."""
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
        "reissue": (
            {"mode": inv.reissue_mode, "after": iso_time(clock, inv.reissue_after)}
            if inv.status == S.REJECTED
            else None
        ),
        "risk_score": score,
        "flagged": is_flagged(score),
        "flags": [f.as_dict() for f in parse_flags(getattr(inv, "risk_flags", ""))],
        # what the account's history predicts (invoice currency; null: no history)
        "expected_total": amount_str(getattr(inv, "expected_total", None), inv.currency),
        # the money wrong if the flags are right, in the reporting currency
        "risk_at_stake": amount_str(at_stake, reporting or "") if at_stake is not None else None,
        "risk_at_stake_currency": reporting if at_stake is not None else None,
        # held for a person: the job loop did not auto-approve it at the end of its hold
        "held": held_at is not None and inv.status == S.UNDER_REVIEW,
        "held_at": iso_time(clock, held_at),
        "approvals": {
            **(a := approvals(inv, rules)),
            "given": [{"by": g["by"], "at": iso_time(clock, g["at"])} for g in a["given"]],
        },
        "changed_by": getattr(inv, "changed_by", None),  # made the current revision: may not approve it
        "days_overdue": days_overdue(inv, clock.today()),  # collections: 0 unless owed past the due date
    }
    if erp:
        data["external_total"] = amount_str(inv.external_total, inv.external_currency or inv.currency)
        data["external_currency"] = inv.external_currency
        # seed 001: the Approval date, shown when the ERP integration is on and the invoice is approved
        data["approval_date"] = clock.local(inv.approved_at).date().isoformat() if inv.approved_at else None
        data["erp_reference"] = getattr(inv, "erp_reference", None)
        erp_date = getattr(inv, "erp_date", None)
        data["erp_date"] = erp_date.isoformat() if erp_date else None
    return data


def csv_cell(value) -> str:
    """A text cell of a CSV file (account, class names come from imports): control
    characters made visible (text.shown, as on every face), and one that
    starts like a formula (= + - @) gets a leading apostrophe, so a
    spreadsheet shows it and never evaluates it (CSV injection)."""
    text = shown(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def changes_dict(diff, currency: str) -> dict | None:
    """A revision diff (revisions.RevisionDiff) as JSON: lines and totals."""
    if diff is None:
        return None

    def line(state):
        if state is None:
            return None
        d = {"description": state.description, "amount": amount_str(state.amount, currency)}
        if state.service or state.quantity is not None:
            d.update(
                service=state.service,
                discount=amount_str(state.discount, currency),
                quantity=None if state.quantity is None else str(state.quantity),
            )
        return d

    def changes(items):
        return [
            {
                "change": c.change,
                "description": c.description,
                "service": c.service or None,
                "fields": list(c.fields),
                "before": line(c.before),
                "after": line(c.after),
                "delta": amount_str(c.delta, currency),
            }
            for c in items
        ]

    return {
        "from_revision": diff.from_revision,
        "to_revision": diff.to_revision,
        "charges": changes(diff.charges),
        "taxes": changes(diff.taxes),
        "corrections": changes(diff.corrections),
        "totals": {
            name: {
                "before": amount_str(b, currency),
                "after": amount_str(a, currency),
                "delta": amount_str(a - b, currency),
            }
            for name, (b, a) in diff.totals.items()
        },
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
            name = (
                c.description
                if not c.service or c.description.startswith(c.service)
                else f"{c.description} [{c.service}]"
            )
            rows.append([what, name, before, after, signed_amount(c.delta, currency)])
    if rows:
        out.append(table(rows, ["Change", "Line", "Before", "After", "Delta"], right={2, 3, 4}))
    else:
        out.append("No line changed.")
    t_before, t_after = diff.totals["total"]
    out.append(
        f"Total {format_money(t_before, currency)} -> {format_money(t_after, currency)} "
        f"({signed_amount(t_after - t_before, currency)})"
    )
    return out


def flags_text(flags) -> list[str]:
    return [f"{f.code:<22} {shown(f.reason)}" for f in flags]


# JSON escapes C0 controls (ESC is \u001b) but, with ensure_ascii=False, prints
# DEL, the C1 controls (U+009B is a one-byte CSI), bidi overrides and line
# separators raw: they are escaped here too, so a JSON document piped to a
# terminal never drives it.  (Lone surrogates: escaped, never a print error.)
_NON_ASCII = re.compile(r"[^\x00-\x7e]")
_UNSAFE = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def _json_escape(match: re.Match) -> str:
    ch = match.group(0)
    if unicodedata.category(ch) not in _UNSAFE:
        return ch
    code = ord(ch)
    if code > 0xFFFF:  # a UTF-16 pair, as JSON spells astral characters
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def dumps(doc) -> str:
    """One JSON document: readable non-ASCII text, every control character escaped."""
    return _NON_ASCII.sub(_json_escape, json.dumps(doc, ensure_ascii=False, indent=2, default=str))


def terminal_text(text: object) -> str:
    """Text for a terminal: each line through text.shown (ESC, CR, bidi
    overrides made visible); the line breaks between lines are kept."""
    text = str(text)
    if text.isprintable():  # the common case, at C speed (find --all streams a million lines)
        return text
    text = "\n".join(line if line.isprintable() else shown(line) for line in text.split("\n"))
    # Lone surrogates (bytes of a non-UTF-8 argument echoed back) as \udcff, never an encoding error.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def status_text(inv) -> str:
    return S.label(S.INVOICE_STATUSES, inv.status)


def issue_date_words(inv) -> str:
    """The issue date, or when an open postpay invoice closes (and is issued)."""
    return inv.issue_date.isoformat() if inv.status != S.OPEN else f"— (closes {inv.issue_date})"


# --------------------------------------------------------------------------
# Seed 001's tables of one invoice, as cells: `show` prints them, the
# detail screen puts them in its tabs.  One wording, one place.


@dataclass(frozen=True)
class Cell:
    text: str
    right: bool = False
    tone: str = ""  # "down" / "up": a ▼ credit / ▲ charge (the console colours them)


@dataclass(frozen=True)
class TableView:
    key: str  # charges, subscriptions, payments, corrections, taxes
    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    note: str | None = None  # instead of rows: why there are none yet (payments before closing)

    def text(self) -> str:
        """The table as `show` prints it."""
        if self.note is not None:
            return shown(self.note)
        right = {i for row in self.rows[:1] for i, c in enumerate(row) if c.right}
        return table([[c.text for c in row] for row in self.rows], list(self.headers), right)


def _n(value) -> Cell:
    return Cell(str(value), right=True)


def detail_tables(d, clock: Clock) -> list[TableView]:
    """Charges, Subscriptions, Payments (rows once the invoice is closed),
    Corrections, and Taxes (only when it has one: seed 001) of a loaded detail."""
    cur = d.invoice.currency
    views = [
        TableView(
            "charges",
            "Charges",
            ("#", "Description", "Quantity", "Discount", "Amount"),
            tuple(
                (
                    _n(c.position),
                    Cell(c.description),
                    _n(f"{c.quantity:,.3f}"),
                    _n(format_amount(c.discount, cur)),
                    _n(format_amount(c.amount, cur)),
                )
                for c in d.charges
            ),
        ),
        TableView(
            "subscriptions",
            "Subscriptions",
            ("ID", "Name", "Status"),
            tuple((_n(s.id), Cell(s.name), Cell(S.label(S.SUBSCRIPTION_STATUSES, s.status))) for s in d.subscriptions),
        ),
        TableView(
            "payments",
            "Payments",
            ("ID", "Description", "Created at", "Due date", "Status", "Amount"),
            tuple(
                (
                    _n(p.id),
                    Cell(p.description),
                    Cell(_local(clock, p.created_at, "%Y-%m-%d")),
                    Cell(p.due_date.isoformat() if p.due_date else "—"),
                    Cell(S.label(S.PAYMENT_STATUSES, p.status)),
                    _n(format_amount(p.amount, cur)),
                )
                for p in d.payments
            )
            if d.closed
            else (),
            note=None if d.closed else d.payments_note,
        ),
        TableView(
            "corrections",
            "Corrections",
            ("#", "Description", "Current Debt Changed", "Approved at"),
            tuple(
                (
                    _n(c.position),
                    Cell(c.description),
                    Cell(format_debt_change(c.amount, cur), right=True, tone="down" if c.amount < 0 else "up"),
                    Cell(_local(clock, c.approved_at)),
                )
                for c in d.corrections
            ),
        ),
    ]
    if d.taxes:
        views.append(
            TableView(
                "taxes",
                "Taxes",
                ("#", "Name", "Description", "Amount"),
                tuple(
                    (_n(t.position), Cell(t.name), Cell(t.description), _n(format_amount(t.amount, cur)))
                    for t in d.taxes
                ),
            )
        )
    return views


def _local(clock: Clock, moment: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return clock.local(moment).strftime(fmt) if moment is not None else "—"


def table(rows: list[list[str]], headers: list[str], right: AbstractSet[int] = frozenset()) -> str:
    """A plain aligned text table for terminals and pipes; every cell is shown
    escaped (text.shown), so a stored line break cannot forge a row."""
    rows = [[shown(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def fmt(row):
        return "  ".join((c.rjust(widths[i]) if i in right else c.ljust(widths[i])) for i, c in enumerate(row)).rstrip()

    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


__all__ = ["invoice_dict", "dumps", "table", "format_amount", "format_money", "format_debt_change", "iso_time"]


def audit_dict(ev, clock: Clock) -> dict:
    """One audit event as `audit --json` and the console's audit screen give it;
    detail is the event's JSON text, as stored."""

    def total(value):
        if value is None:
            return None
        return str(value.quantize(Decimal("0.01")) if value == value.quantize(Decimal("0.01")) else value.normalize())

    return {
        "id": ev.id,
        "at": iso_time(clock, ev.at),
        "actor": ev.actor,
        "role": ev.role,
        "action": ev.action,
        "invoice": ev.number,
        "before_status": ev.before_status,
        "before_total": total(ev.before_total),
        "after_status": ev.after_status,
        "after_total": total(ev.after_total),
        "detail": ev.detail or "",
    }


def audit_change(event: dict[str, Any]) -> str:
    """An audit_dict's status change as the `audit` table and the audit screen show it ("" for none)."""
    if not (event["before_status"] or event["after_status"]):
        return ""
    return f"{event['before_status'] or '-'} → {event['after_status'] or '-'}"
