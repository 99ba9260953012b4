"""The invoice as the PDF shows it: plain, frozen dataclasses.

Callers (documents.py) describe an invoice with these and get PDF bytes back
from ``render_invoice``; nothing here knows the store or the console.  Some
fields are internal and never printed (they say so below): the PDF is the
customer's document.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal


@dataclass(frozen=True)
class Party:
    name: str
    lines: tuple[str, ...] = ()  # address / email lines


@dataclass(frozen=True)
class ChargeRow:
    position: int
    description: str
    quantity: Decimal
    discount: Decimal
    amount: Decimal
    unit: str = ""  # of the quantity, printed after it: "min", "GB", "month"; "" = a bare number


@dataclass(frozen=True)
class TaxRow:
    position: int
    name: str
    description: str
    amount: Decimal  # negative = refund


@dataclass(frozen=True)
class CorrectionRow:
    position: int
    description: str
    amount: Decimal  # negative = credit
    approved_at: datetime | None  # the console's "Approved at"; never printed (internal)


@dataclass(frozen=True)
class InvoiceDocument:
    number: str
    currency: str
    seller: Party
    customer: Party
    issue_date: date
    due_date: date | None
    period_from: date
    period_to: date
    payment_terms: str  # e.g. "Net 26 days"
    charges: tuple[ChargeRow, ...]
    taxes: tuple[TaxRow, ...]
    corrections: tuple[CorrectionRow, ...]
    subtotal: Decimal  # sum of charge amounts
    discount_total: Decimal
    tax_total: Decimal
    correction_total: Decimal
    total: Decimal
    revision: int = 1  # internal: not printed (a customer never sees revisions)
    payment_model: str = "postpay"
    # Non-empty = a draft (not yet issued): its first word is the watermark
    # ("DRAFT") and the line under the number says the draft is not yet
    # issued.  The rest of the note (it may name internal statuses such as
    # "under review") is not printed.
    status_note: str = ""
