"""From stored invoice to PDF: build the document, keep the current revision's
PDF (and the one last sent to the customer), nothing older."""
from __future__ import annotations

import datetime as dt

from .store.models import (
    Account, ChargeLine, Correction, CustomerClass, Invoice, InvoicePdf, TaxLine, database,
)
from .store.settings import load_settings


def build_document(inv: Invoice):
    from . import pdf, statuses as S

    settings = load_settings()
    account = Account.get_by_id(inv.account_id)
    cls = CustomerClass.get_by_id(inv.customer_class_id)
    seller_lines = tuple(settings["seller_address"].splitlines())
    customer_lines = tuple(line for line in (account.address or "").splitlines() if line) + (account.email,)
    charges = tuple(pdf.ChargeRow(c.position, c.description, c.quantity, c.discount, c.amount)
                    for c in ChargeLine.select().where(ChargeLine.invoice == inv.id).order_by(ChargeLine.position))
    taxes = tuple(pdf.TaxRow(t.position, t.name, t.description, t.amount)
                  for t in TaxLine.select().where(TaxLine.invoice == inv.id).order_by(TaxLine.position))
    corrections = tuple(pdf.CorrectionRow(c.position, c.description, c.amount, c.approved_at)
                        for c in Correction.select().where(Correction.invoice == inv.id).order_by(Correction.position))
    note = ""
    if inv.status in (S.UNDER_REVIEW, S.REJECTED, S.OPEN):
        note = f"DRAFT — {S.label(S.INVOICE_STATUSES, inv.status).lower()}, not yet issued"
    return pdf.InvoiceDocument(
        number=inv.number, currency=inv.currency,
        seller=pdf.Party(settings["seller_name"], seller_lines),
        customer=pdf.Party(account.name, customer_lines),
        issue_date=inv.issue_date or inv.period_to, due_date=inv.due_date,
        period_from=inv.period_from, period_to=inv.period_to,
        payment_terms=f"Net {cls.net_days} days",
        charges=charges, taxes=taxes, corrections=corrections,
        subtotal=inv.subtotal, discount_total=inv.discount_total, tax_total=inv.tax_total,
        correction_total=inv.correction_total, total=inv.total,
        revision=inv.revision, payment_model=inv.payment_model, status_note=note)


def store_pdf(inv: Invoice, now: dt.datetime | None = None) -> bytes:
    """Render the current revision and keep it; prune all but current and sent."""
    from . import pdf

    data = pdf.render_invoice(build_document(inv))
    now = now or dt.datetime.utcnow().replace(microsecond=0)
    with database.atomic():
        (InvoicePdf.insert(invoice=inv.id, revision=inv.revision, data=data, created_at=now)
         .on_conflict(conflict_target=[InvoicePdf.invoice, InvoicePdf.revision],
                      update={InvoicePdf.data: data, InvoicePdf.created_at: now})
         .execute())
        keep = [inv.revision] + ([inv.sent_revision] if inv.sent_revision else [])
        InvoicePdf.delete().where((InvoicePdf.invoice == inv.id) & InvoicePdf.revision.not_in(keep)).execute()
    return data


def current_pdf(inv: Invoice) -> bytes:
    """The PDF of the invoice's current revision, rendered now if missing."""
    row = (InvoicePdf.select(InvoicePdf.data)
           .where((InvoicePdf.invoice == inv.id) & (InvoicePdf.revision == inv.revision)).first())
    if row is not None:
        return bytes(row.data)
    return store_pdf(inv)
