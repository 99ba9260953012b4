"""Invoice PDF rendering speed, one process, one core.

    python bench/bench_pdf.py [--count 300]

Prints invoices per CPU-second (best of 3 rounds of N; fallback: best of 3
rounds of N/30; naive: one round of N/30) and ms/invoice for:
  ours      tui_billing.pdf.render_invoice, 30 charge lines, Unicode font,
            on the path it takes here (the fast path unless fpdf2 differs from
            the version it was tested with, or TUI_BILLING_PDF_FALLBACK=1)
  fallback  the same, forced through fpdf2's public API (pdf/fpdf_public.py):
            what an untested fpdf2 upgrade would cost
  bare      the same text drawn with bare fpdf2 core-font cell() calls
            (Helvetica, no table(), non-Latin-1 characters replaced)
  naive     fpdf2 used naively: add_font() per document + table()
and the rate for a 500-line invoice and the size of a 30-line PDF.
A quick look: --count 30 (about ten seconds).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fpdf import FPDF  # noqa: E402

from tui_billing import pdf  # noqa: E402
from tui_billing.money import format_amount, format_debt_change  # noqa: E402

CUSTOMERS = ["Zoë Łukasiewicz", "Ōsaka Trading KK", "Müller & Söhne GmbH", "Ærøskøbing Fiskeri ApS"]


def sample(lines: int = 30, seq: int = 0) -> pdf.InvoiceDocument:
    charges = tuple(
        pdf.ChargeRow(
            i,
            f"{['Cloud storage', 'Support hours', 'Licence seat', 'API calls (€ metered)'][i % 4]}"
            f" — {CUSTOMERS[(i + seq) % 4]} project #{i}",
            Decimal(i % 7 + 1) / Decimal(4),
            Decimal("1.50") if i % 5 == 0 else Decimal(0),
            Decimal(100 + i) + Decimal("0.25"),
        )
        for i in range(1, lines + 1)
    )
    subtotal = sum(c.amount for c in charges)
    discount = sum(c.discount for c in charges)
    taxes = (
        pdf.TaxRow(1, "VAT 19 %", "Umsatzsteuer", Decimal("57.00")),
        pdf.TaxRow(2, "Refund", "Over-charged VAT March", Decimal("-3.10")),
    )
    corrections = (
        pdf.CorrectionRow(1, "Goodwill credit ▼", Decimal("-12.00"), datetime(2026, 3, 2, 10, 30)),
        pdf.CorrectionRow(2, "Late fee ▲", Decimal("12.00"), None),
    )
    tax = sum(t.amount for t in taxes)
    corr = sum(c.amount for c in corrections)
    return pdf.InvoiceDocument(
        number=f"INV-2026-{seq:06d}",
        currency="EUR",
        seller=pdf.Party("Müller & Söhne GmbH", ("Königstraße 1", "70173 Stuttgart", "billing@mueller.example")),
        customer=pdf.Party(CUSTOMERS[seq % 4], ("1-2-3 Umeda, Kita-ku", "Ōsaka 530-0001", "ap@osaka.example")),
        issue_date=date(2026, 4, 1),
        due_date=date(2026, 4, 27),
        period_from=date(2026, 3, 1),
        period_to=date(2026, 3, 31),
        payment_terms="Net 26 days",
        charges=charges,
        taxes=taxes,
        corrections=corrections,
        subtotal=subtotal,
        discount_total=discount,
        tax_total=tax,
        correction_total=corr,
        total=subtotal - discount + tax + corr,
    )


def _rows(doc: pdf.InvoiceDocument) -> list[list[str]]:
    cur = doc.currency
    rows = [
        [str(c.position), c.description, str(c.quantity), format_amount(c.discount, cur), format_amount(c.amount, cur)]
        for c in doc.charges
    ]
    rows += [[str(t.position), t.name, t.description, format_amount(t.amount, cur)] for t in doc.taxes]
    rows += [
        [str(c.position), c.description, format_debt_change(c.amount, cur), str(c.approved_at)] for c in doc.corrections
    ]
    return rows


def _head(doc: pdf.InvoiceDocument) -> list[str]:
    return [
        doc.seller.name,
        *doc.seller.lines,
        "INVOICE",
        doc.number,
        doc.customer.name,
        *doc.customer.lines,
        *(
            f"{k}: {v}"
            for k, v in (
                ("Issue", doc.issue_date),
                ("Due", doc.due_date),
                ("Period", f"{doc.period_from} - {doc.period_to}"),
                ("Terms", doc.payment_terms),
                ("Currency", doc.currency),
            )
        ),
        "Charges",
        "#",
        "Description",
        "Quantity",
        "Discount",
        "Amount",
        "Taxes",
        "#",
        "Tax",
        "Description",
        "Type",
        "Amount",
        "Corrections",
        "#",
        "Description",
        "Current Debt Changed",
        "Approved at",
        *(
            f"{k} {v}"
            for k, v in (
                ("Charges", doc.subtotal),
                ("Discounts", doc.discount_total),
                ("Taxes", doc.tax_total),
                ("Corrections", doc.correction_total),
                ("Total", doc.total),
            )
        ),
        f"Payment terms: {doc.payment_terms}",
        "Page 1 of 1",
    ]


def bare(doc: pdf.InvoiceDocument) -> bytes:
    """Same text volume with Helvetica and cell(): the floor fpdf2 offers."""

    def latin(s: str) -> str:
        return s.encode("latin-1", "replace").decode("latin-1")

    p = FPDF(unit="mm", format="A4")
    p.set_auto_page_break(True, 20)
    p.add_page()
    p.set_font("helvetica", size=8)
    for s in _head(doc):
        p.cell(90, 4, latin(s), new_x="LMARGIN", new_y="NEXT")
    widths = (10, 98, 22, 24, 28)
    for row in _rows(doc):
        for w, s in zip(widths, row):
            p.cell(w, 5.4, latin(s)[:60], align="R" if w != 98 else "L")
        p.ln()
    p.set_creation_date(datetime(2026, 4, 1))
    return bytes(p.output())


def naive(doc: pdf.InvoiceDocument) -> bytes:
    """add_font() per document and table(): what fpdf2's docs suggest."""
    p = FPDF(unit="mm", format="A4")
    p.add_font("dejavu", "", pdf.FONT_DIR / "DejaVuSans.ttf")
    p.add_font("dejavu", "B", pdf.FONT_DIR / "DejaVuSans-Bold.ttf")
    p.add_page()
    p.set_font("dejavu", size=8)
    for s in _head(doc)[:14]:
        p.cell(90, 4, s, new_x="LMARGIN", new_y="NEXT")
    with p.table(col_widths=(10, 98, 22, 24, 28), text_align=("RIGHT", "LEFT", "RIGHT", "RIGHT", "RIGHT")) as t:
        t.row(("#", "Description", "Quantity", "Discount", "Amount"))
        for row in _rows(doc):
            t.row(row + [""] * (5 - len(row)))
    p.set_creation_date(datetime(2026, 4, 1))
    return bytes(p.output())


def fallback(doc: pdf.InvoiceDocument) -> bytes:
    """render_invoice forced through fpdf2's public API."""
    pdf.use_fallback(True)
    try:
        return pdf.render_invoice(doc)
    finally:
        pdf.use_fallback(False)


def rate(fn, docs, count: int, rounds: int = 3) -> float:
    """Documents per CPU-second of this (single-threaded) process: best of
    ``rounds`` rounds of ``count`` renders.  CPU time and the best round keep
    other processes on the machine from skewing the figures."""
    fn(docs[0])  # warm-up: font parsing etc. happen once per process
    best = 0.0
    for _ in range(rounds):
        start = time.process_time()
        for i in range(count):
            fn(docs[i % len(docs)])
        best = max(best, count / max(time.process_time() - start, 1e-9))
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=300, help="invoices to render per measurement (default 300)")
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    count = max(1, args.count)
    docs = [sample(30, seq) for seq in range(8)]  # different names -> different glyph sets
    path = pdf.rendering_path()
    ours = rate(pdf.render_invoice, docs, count)
    public = rate(fallback, docs, max(3, count // 30))
    base = rate(bare, docs, count)
    slow = rate(naive, docs, max(3, count // 30), rounds=1)
    big = [sample(500, 1)]
    big_rate = rate(pdf.render_invoice, big, max(3, count // 20))
    pages = pdf.pdf_text(pdf.render_invoice(big[0])).count("Page ")
    size = len(pdf.render_invoice(docs[0]))
    print(f"ours  (30 lines, DejaVu Sans):   {ours:8.1f} invoices/s  {1000 / ours:7.2f} ms/invoice  ({path} path)")
    print(f"fallback (30 lines, public API):  {public:8.1f} invoices/s  {1000 / public:7.2f} ms/invoice")
    print(f"bare  (30 lines, Helvetica cell): {base:8.1f} invoices/s  {1000 / base:7.2f} ms/invoice")
    print(f"ratio ours/bare:                  {ours / base:8.2f}")
    print(f"naive (add_font per doc + table): {slow:8.1f} invoices/s  {1000 / slow:7.2f} ms/invoice")
    print(f"ours  (500 lines, {pages} pages):     {big_rate:8.1f} invoices/s  {1000 / big_rate:7.2f} ms/invoice")
    print(f"size  (30 lines):                 {size:8d} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
