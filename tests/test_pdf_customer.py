"""The customer's PDF (issue 13): only what a customer should read, in words a
customer understands.  Real documents rendered and read back with pypdf."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

from tui_billing import pdf

from .test_pdf import flat, make_doc

D = Decimal

# Words of the store and the console that mean nothing (or the wrong thing)
# to a customer: internal statuses, seed 001's console columns, class names.
INTERNAL = (
    "Revision",
    "Approved at",
    "Current Debt Changed",
    "under_review",
    "under review",
    "rejected",
    "Rejected",
    "pending",
    "Postpay",
    "postpay",
    "Prepay ",
    "prepay",
    "▼",
    "▲",
    "ChargeRow",
    "CorrectionRow",
    "InvoiceDocument",
    "status_note",
    "None",
)


def text(doc: pdf.InvoiceDocument) -> str:
    return flat(pdf.pdf_text(pdf.render_invoice(doc)))


def usage_doc(**changes) -> pdf.InvoiceDocument:
    charges = (
        pdf.ChargeRow(1, "SIP Trunk 30 channels — monthly fee", D(1), D(0), D("149.00"), unit="month"),
        pdf.ChargeRow(2, "Mobile data usage", D("12636.25"), D("1263.63"), D("24008.88"), unit="GB"),
        pdf.ChargeRow(3, "SMS usage", D("35328"), D(0), D("1589.76"), unit="msg"),
        pdf.ChargeRow(4, "Toll-free inbound usage", D("8172.375"), D(0), D("171.62"), unit="min"),
        pdf.ChargeRow(5, "Porting fee", D(2), D(0), D("30.00")),  # no unit: a bare number
    )
    subtotal = sum(c.amount for c in charges)
    discount = sum(c.discount for c in charges)
    doc = make_doc(1, taxes=(), charges=charges, subtotal=subtotal, discount_total=discount, total=subtotal - discount)
    return dataclasses.replace(doc, **changes) if changes else doc


def test_no_internal_field_or_status_on_a_draft_with_corrections():
    doc = make_doc(3, revision=4, payment_model="postpay", status_note="DRAFT — under review, not yet issued")
    joined = text(doc)
    for word in INTERNAL:
        assert word not in joined, word
    assert "DRAFT — not yet issued" in joined  # the draft is still marked as one
    # corrections read as credits and charges with a plain signed amount
    assert "Adjustments # Description Type Amount" in joined
    assert "1 Goodwill credit Credit -12.00" in joined and "2 Late fee Charge 12.00" in joined
    assert "Billing Postpaid" in joined


def test_a_rejected_or_open_draft_does_not_say_so():
    for note in ("DRAFT — rejected, not yet issued", "DRAFT — open, not yet issued"):
        joined = text(make_doc(2, status_note=note))
        assert "rejected" not in joined.lower() and " open" not in joined.lower(), note
        assert "DRAFT — not yet issued" in joined


def test_an_issued_invoice_never_shows_when_corrections_were_approved():
    doc = make_doc(2, revision=2)
    assert doc.corrections[0].approved_at == datetime(2026, 3, 2, 9, 15, tzinfo=UTC)
    joined = text(doc)
    assert "Approved at" not in joined and "2026-03-02" not in joined and "09:15" not in joined
    assert "Revision" not in joined and "DRAFT" not in joined


def test_prepay_reads_prepaid():
    assert "Billing Prepaid" in text(make_doc(1, payment_model="prepay"))


def test_usage_quantities_carry_their_unit_and_stay_aligned():
    doc = usage_doc()
    data = pdf.render_invoice(doc)
    joined = flat(pdf.pdf_text(data))
    for row in (
        "1 SIP Trunk 30 channels — monthly fee 1 month — 149.00",
        "2 Mobile data usage 12,636.25 GB 1,263.63 24,008.88",
        "3 SMS usage 35,328 msg — 1,589.76",
        "4 Toll-free inbound usage 8,172.375 min — 171.62",
        "5 Porting fee 2 — 30.00",
    ):
        assert row in joined, row
    assert "…" not in joined  # no unit cut short
    # Where the characters are on the page (pdfium): the units share one left
    # edge, each starts after its number, and the Discount column after them.
    import pypdfium2

    page = pypdfium2.PdfDocument(data)[0].get_textpage()
    chars = page.get_text_range(0, page.count_chars())

    def box(row: str, needle: str) -> tuple[float, float, float, float]:
        start = chars.index(needle, chars.index(row) + len(row))
        return page.get_charbox(start), page.get_charbox(start + len(needle) - 1)

    rows = {
        "monthly fee": ("1", "month"),
        "Mobile data usage": ("12,636.25", "GB"),
        "SMS usage": ("35,328", "msg"),
        "Toll-free inbound usage": ("8,172.375", "min"),
    }
    unit_left = [box(row, unit)[0][0] for row, (_, unit) in rows.items()]
    assert max(unit_left) - min(unit_left) < 0.5, unit_left
    dots = [box("Mobile data usage", "12,636.")[1][0], box("Toll-free inbound usage", "8,172.")[1][0]]
    assert abs(dots[0] - dots[1]) < 0.5, dots  # decimal points still line up
    for row, (number, unit) in rows.items():
        number_right = box(row, number)[1][2]
        unit_box = box(row, unit)
        assert number_right < unit_box[0][0], row
        assert unit_box[1][2] < box(row, "—" if row != "Mobile data usage" else "1,263.63")[0][0], row


def test_a_zero_invoice_says_there_is_nothing_to_pay():
    doc = make_doc(1, taxes=(), corrections=(), charges=(), subtotal=D(0), discount_total=D(0), total=D(0))
    joined = text(doc)
    assert "please pay by" not in joined and "2026-04-27" not in joined
    assert "Nothing to pay: this invoice totals € 0.00." in joined
    assert "Due date Nothing to pay" in joined
    # a cent is something to pay
    joined = text(dataclasses.replace(doc, total=D("0.01")))
    assert "please pay by 2026-04-27, quoting invoice INV-2026-000123." in joined
    assert "Due date 2026-04-27" in joined and "Nothing to pay" not in joined and "credit of" not in joined


def test_a_negative_total_is_a_credit():
    refund = pdf.TaxRow(1, "VAT refund", "Over-charged VAT in February", D("-180.00"))
    doc = make_doc(
        1,
        taxes=(refund,),
        corrections=(),
        subtotal=D("10.50"),
        discount_total=D(0),
        tax_total=D("-180.00"),
        total=D("-169.50"),
    )
    joined = text(doc)
    assert "please pay by" not in joined and "-169.50" not in joined
    assert "Credit (EUR) € 169.50" in joined
    assert "This invoice is a credit of € 169.50 in your favour: there is nothing to pay." in joined
    assert "Due date Nothing to pay" in joined
