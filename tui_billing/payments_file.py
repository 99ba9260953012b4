"""A gateway's or bank's payments file -> payment transitions (issue 17).

File format (UTF-8; the header rules of every import, csv_input):

    reference,amount,currency,time,outcome

- reference: a payment number ("PMT-00000042") or an invoice number (then
  the invoice's open payment, or a new one for money it did not wait for).
- amount: what the line reports, in `currency`; greater than zero, read by
  money.parse_amount (the one parser of amounts: "1,5" is refused, not guessed).
- currency: the invoice's currency (three letters).
- time: ISO 8601, as in the xDR import (no offset: the billing time zone);
  not more than a day ahead of the clock (a mistyped year is caught).
- outcome: the status the payment moves to, one of seed 001's payment
  statuses a gateway reports: processing, waiting_for_payment, completed,
  receipt_creating (paid, a manual receipt to make), cancelled.

Atomic: if any line is bad, nothing is written and every bad line is named
with its field.  Lines apply in the order of their time (the file's order for
equal times), each one guarded transition (payments.record_outcome).  A line
imported before -- the same reference, amount, currency, time and outcome --
changes nothing, so importing a file twice, or two operators importing it at
once, applies it once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from . import access, payments
from . import statuses as S
from .context import Ctx
from .csv_input import BadField, FileImport, time_parser
from .money import MoneyError, parse_amount
from .store.models import Invoice, tuple_rows
from .text import TextError, check_stored

COLUMNS = ("reference", "amount", "currency", "time", "outcome")
MAX_AMOUNT = Decimal(10**12)
_CURRENCY = re.compile(r"[A-Z]{3}")
FUTURE_SLACK_DAYS = 1


@dataclass
class PaymentImportResult(FileImport):
    summary: payments.ImportSummary = field(default_factory=payments.ImportSummary)

    def as_dict(self) -> dict:
        s = self.summary
        ok = self.committed
        return {
            "file": str(self.path),
            "rows": self.rows,
            "applied": len(s.applied) if ok else 0,
            "already_imported": s.already if ok else 0,
            "rejected": len(self.errors),
            "errors": [e.as_dict() for e in self.errors],
            "paid": s.paid if ok else [],
            "to_balance": str(s.to_balance) if ok else "0",
            "lines": [o.as_dict() for o in s.outcomes] if ok else [],
        }


def _line(line, reference, amount, currency, when, outcome, *, parse_time, now) -> payments.PaymentLine:
    reference = reference.strip()
    if not reference:
        raise BadField("reference", "is empty")
    try:
        check_stored("reference", reference, max_len=64)
    except TextError as exc:
        raise BadField(exc.field, exc.reason) from None
    cur = currency.strip().upper()
    if not _CURRENCY.fullmatch(cur):
        raise BadField("currency", f"{currency!r} is not a currency code like EUR" if currency else "is empty")
    try:
        value = parse_amount(amount, cur, maximum=MAX_AMOUNT)
    except MoneyError as exc:
        raise BadField("amount", exc.reason) from None
    moment = parse_time(when.strip())
    if (moment - now).days >= FUTURE_SLACK_DAYS:
        raise BadField("time", f"{when.strip()!r} is in the future")
    name = outcome.strip().lower()
    if name not in S.PAYMENT_STATUSES:
        raise BadField("outcome", f"{outcome!r} is not a payment status: one of {', '.join(payments.FILE_MOVES)}")
    if name in payments.NOT_FROM_FILE:
        raise BadField("outcome", f"{name} {payments.NOT_FROM_FILE[name]}; a file cannot report it")
    return payments.PaymentLine(line, reference, value, cur, moment, name)


def import_payments(ctx: Ctx, path: str | Path) -> PaymentImportResult:
    """Read and apply a payments file: all of it, or nothing (see the module docstring).

    Raises csv_input.ImportFileError when the file itself is unusable, and
    NotAllowed when the acting person may not record payments (nothing written)."""
    path = Path(path)
    access.require(ctx, "payments", path.name)
    result = PaymentImportResult(path)
    parse_time, now = time_parser(ctx.clock.tz), ctx.clock.now()  # naive UTC, like the times read
    lines = result.read(
        COLUMNS,
        lambda line, *fields: _line(line, *fields, parse_time=parse_time, now=now),
        key=lambda item: item.fingerprint,
        repeat="repeats line {first} (the same payment line twice)",
    )
    if result.committed:
        lines.sort(key=lambda item: (item.time, item.line))  # a gateway's file is not always in order
        outcomes = result.apply(
            lines,
            lambda item: payments.record_outcome(ctx, item, f"{path.name}:{item.line}"),
            line_of=lambda item: item.line,
            field_name="reference",
        )
        result.summary.outcomes.extend(outcomes)
    return result


def currencies(numbers: list[str]) -> dict[str, str]:
    """Invoice number -> currency, for the words of a result."""
    if not numbers:
        return {}
    return dict(
        tuple_rows(Invoice.select(Invoice.number, Invoice.currency).where(Invoice.number.in_(numbers)).tuples())
    )
