"""The ERP hand-off (seed 001, issue 17): postpay invoices managed by a third-party ERP.

With the store setting `erp_integration` on:

- export: the issued (approved, or approved and sent) postpay invoices the
  ERP has not confirmed yet, with their lines (charges, taxes, corrections);
- import: what the ERP sends back, one line per invoice,

      number,external_total,external_currency,erp_reference,erp_date

  (the header rules of every import, csv_input).  Atomic: one bad line and
  nothing is written, every bad line named with its field.  Each line is one
  guarded, audited transition (`confirm`): it applies to an issued postpay
  invoice only, stores the External total and the ERP's reference and date,
  and re-assesses the invoice's risk, so that an external total further from
  the invoice's total than `erp_tolerance` (after the currency rates in
  settings) raises the `erp_mismatch` flag with the two amounts.  A line that
  repeats what is stored changes nothing: importing a file twice is harmless.
  A line with other values for a confirmed invoice replaces them (the ERP
  corrected its invoice); the audit event keeps both.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from . import access
from . import statuses as S
from .audit import write_audit
from .context import Ctx
from .csv_input import BadField, FileImport
from .errors import FieldError, Refused
from .money import MoneyError, parse_amount, quantize
from .store import risk_store
from .store.locking import lock_invoice
from .store.models import Account, ChargeLine, Correction, Invoice, TaxLine, database
from .text import TextError, check_stored

IMPORT_COLUMNS = ("number", "external_total", "external_currency", "erp_reference", "erp_date")
EXPORT_COLUMNS = (
    "number",
    "account",
    "account_id",
    "period_from",
    "period_to",
    "total",
    "currency",
    "approval_date",
    "line_kind",
    "line_no",
    "description",
    "quantity",
    "discount",
    "amount",
)
ISSUED = (S.APPROVED, *S.SENT_STATUSES)  # approved: the ERP manages it from its approval on
MAX_TOTAL = Decimal(10**12)
_CURRENCY = re.compile(r"[A-Z]{3}")


class ErpError(FieldError):
    pass


def require_on(settings) -> None:
    """The ERP hand-off exists only with erp_integration on (seed 001: "if … activated")."""
    if not settings.erp_integration:
        raise ErpError(
            "erp_integration",
            "is off: the ERP hand-off is not active (turn it on: tui-billing settings erp_integration on)",
        )


# --------------------------------------------------------------------------
# Export


def pending(period: tuple[dt.date, dt.date] | None = None):
    """Issued postpay invoices the ERP has not confirmed, oldest first."""
    query = (
        Invoice.select(Invoice, Account)
        .join(Account)
        .where(
            (Invoice.payment_model == "postpay")
            & Invoice.status.in_(ISSUED)
            & Invoice.approved_at.is_null(False)
            & Invoice.erp_confirmed_at.is_null()
        )
    )
    if period is not None:
        query = query.where((Invoice.period_from >= period[0]) & (Invoice.period_from <= period[1]))
    return query.order_by(Invoice.id)


def _lines(inv: Invoice) -> list[dict[str, Any]]:
    cur = inv.currency
    out: list[dict[str, Any]] = []
    for c in ChargeLine.select().where(ChargeLine.invoice == inv.id).order_by(ChargeLine.position):
        out.append(
            {
                "kind": "charge",
                "no": c.position,
                "description": c.description,
                "quantity": str(c.quantity),
                "discount": str(quantize(c.discount, cur)),
                "amount": str(quantize(c.amount, cur)),
            }
        )
    for t in TaxLine.select().where(TaxLine.invoice == inv.id).order_by(TaxLine.position):
        out.append({"kind": "tax", "no": t.position, "description": t.name, "quantity": None, "discount": None})
        out[-1]["amount"] = str(quantize(t.amount, cur))
    for k in Correction.select().where(Correction.invoice == inv.id).order_by(Correction.position):
        out.append({"kind": "correction", "no": k.position, "description": k.description, "quantity": None})
        out[-1].update(discount=None, amount=str(quantize(k.amount, cur)))
    return out


def export_documents(ctx: Ctx, period: tuple[dt.date, dt.date] | None = None) -> Iterator[dict[str, Any]]:
    """One document per pending invoice: what the ERP needs to make its own."""
    access.require(ctx, "erp")
    for inv in pending(period):
        yield {
            "number": inv.number,
            "account": inv.account.name,
            "account_id": inv.account_id,
            "period_from": inv.period_from.isoformat(),
            "period_to": inv.period_to.isoformat(),
            "total": str(quantize(inv.total, inv.currency)),
            "currency": inv.currency,
            "approval_date": ctx.clock.local(inv.approved_at).date().isoformat() if inv.approved_at else None,
            "lines": _lines(inv),
        }


def csv_rows(doc: dict[str, Any]) -> Iterator[list[Any]]:
    """EXPORT_COLUMNS rows of one document: one per line (an invoice without lines: one row)."""
    head = [doc[c] for c in EXPORT_COLUMNS[:8]]
    for line in doc["lines"] or [None]:
        if line is None:
            yield head + [""] * 6
        else:
            yield (
                head
                + [line["kind"], line["no"], line["description"]]
                + ["" if line[k] is None else line[k] for k in ("quantity", "discount", "amount")]
            )


# --------------------------------------------------------------------------
# Import


@dataclass(frozen=True)
class ErpLine:
    line: int
    number: str
    external_total: Decimal
    external_currency: str
    erp_reference: str
    erp_date: dt.date


@dataclass
class ErpOutcome:
    line: int
    number: str
    change: str  # "confirmed", "updated", "unchanged"
    mismatch: str | None = None  # the erp_mismatch flag's reason

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "number": self.number, "change": self.change, "mismatch": self.mismatch}


@dataclass
class ErpImportResult(FileImport):
    outcomes: list[ErpOutcome] = field(default_factory=list)

    def count(self, change: str) -> int:
        return sum(1 for o in self.outcomes if o.change == change)

    @property
    def mismatches(self) -> list[ErpOutcome]:
        return [o for o in self.outcomes if o.mismatch]

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "rows": self.rows,
            "confirmed": self.count("confirmed"),
            "updated": self.count("updated"),
            "unchanged": self.count("unchanged"),
            "rejected": len(self.errors),
            "errors": [e.as_dict() for e in self.errors],
            "mismatches": [o.as_dict() for o in self.mismatches],
        }


def _read_line(line: int, number: str, total: str, currency: str, reference: str, when: str) -> ErpLine:
    number = number.strip()
    if not number:
        raise BadField("number", "is empty")
    cur = currency.strip().upper()
    if not _CURRENCY.fullmatch(cur):
        raise BadField("external_currency", f"{currency!r} is not a currency code like EUR" if currency else "is empty")
    try:
        value = parse_amount(total, cur, maximum=MAX_TOTAL, signed=True, field="external_total")
    except MoneyError as exc:
        raise BadField("external_total", exc.reason) from None
    reference = reference.strip()
    try:
        check_stored("erp_reference", reference, max_len=64)
    except TextError as exc:
        raise BadField(exc.field, exc.reason) from None
    if not reference:
        raise BadField("erp_reference", "is empty")
    try:
        day = dt.date.fromisoformat(when.strip())
    except ValueError:
        reason = f"{when.strip()!r} is not a date like 2026-03-01" if when.strip() else "is empty"
        raise BadField("erp_date", reason) from None
    return ErpLine(line, number, value, cur, reference, day)


def confirm(ctx: Ctx, item: ErpLine) -> ErpOutcome:
    """One line of the ERP's file: a guarded, audited transition of one issued postpay invoice."""
    with database.atomic():
        inv = lock_invoice(item.number)
        access.require(ctx, "erp", inv.number)
        if inv.payment_model != "postpay":
            raise ErpError("number", f"{inv.number} is a prepay invoice: the ERP manages postpay invoices")
        if inv.status not in ISSUED or inv.approved_at is None:
            words = S.label(S.INVOICE_STATUSES, inv.status).lower()
            raise ErpError("number", f"{inv.number} is {words}: the ERP confirms an invoice once it is approved")
        new = {
            "external_total": item.external_total,
            "external_currency": item.external_currency,
            "erp_reference": item.erp_reference,
            "erp_date": item.erp_date,
        }
        old = {key: getattr(inv, key) for key in new}
        if inv.erp_confirmed_at is not None and old == new:
            return ErpOutcome(item.line, inv.number, "unchanged")
        change = "confirmed" if inv.erp_confirmed_at is None else "updated"
        n = (
            Invoice.update(**new, erp_confirmed_at=ctx.clock.now())
            .where((Invoice.id == inv.id) & (Invoice.status == inv.status) & (Invoice.revision == inv.revision))
            .execute()
        )
        if n != 1:
            raise Refused(inv.number, "was changed by someone else meanwhile; look again")
        for key, value in new.items():
            setattr(inv, key, value)
        _, flags = risk_store.assess_invoice(inv)
        mismatch = next((f.reason for f in flags if f.code == "erp_mismatch"), None)
        state = (inv.status, inv.total)
        write_audit(
            ctx,
            "erp_confirm",
            inv,
            state,
            state,
            change=change,
            before={k: (str(v) if v is not None else None) for k, v in old.items()},
            after={k: str(v) for k, v in new.items()},
            mismatch=mismatch,
        )
    return ErpOutcome(item.line, inv.number, change, mismatch)


def import_confirmations(ctx: Ctx, path: str | Path) -> ErpImportResult:
    """Read and apply the ERP's file: all of it or nothing (see the module docstring)."""
    path = Path(path)
    access.require(ctx, "erp", path.name)
    result = ErpImportResult(path)
    items = result.read(IMPORT_COLUMNS, _read_line, key=lambda item: item.number, repeat="{key} is on line {first} too")
    if result.committed:
        result.outcomes = result.apply(
            items, lambda item: confirm(ctx, item), line_of=lambda item: item.line, field_name="number"
        )
    return result
