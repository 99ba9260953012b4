"""The demo store looks like a store that has been used: histories, corrections, payments."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from decimal import Decimal

from tui_billing import demo
from tui_billing import statuses as S
from tui_billing.money import quantize
from tui_billing.store.models import AuditEvent, Correction, Invoice, Payment, TaxLine


def test_the_demo_store_looks_used(store_url, ctx, monkeypatch):
    # Batches of 100: the batch reset between flushes is exercised many times.
    monkeypatch.setattr(demo, "BATCH", 100)
    demo.build(ctx, invoices=600, seed=4, quiet=True)
    every_issued_demo_invoice_has_its_audit_history(ctx)
    closed_postpay_invoices_have_corrections_taxed_like_their_charges(ctx)
    overdue_invoices_have_an_expired_payment_and_no_unpaid_one_is_past_due(ctx)
    off_peak_reissues_wait_for_the_window_in_every_batch(ctx)


def every_issued_demo_invoice_has_its_audit_history(ctx):
    actions = defaultdict(list)
    for inv_id, action in (
        AuditEvent.select(AuditEvent.invoice, AuditEvent.action)
        .where(AuditEvent.invoice.is_null(False))
        .order_by(AuditEvent.at, AuditEvent.id)
        .tuples()
    ):
        actions[inv_id].append(action)
    sent = list(Invoice.select().where(Invoice.status.in_(list(S.SENT_STATUSES))))
    assert sent
    for inv in sent:
        got = actions[inv.id]
        assert got[0] in ("generate", "close") and "send" in got, (inv.number, got)
        if inv.approved_by != "auto:send-immediately":
            assert {"approve", "auto_approve"} & set(got), (inv.number, got)
        if inv.status == S.OVERDUE:
            assert got[-1] == "expire_payment"
    for inv in Invoice.select().where(Invoice.status == S.UNDER_REVIEW):
        assert actions[inv.id][0] in ("generate", "close")
    adjusted = {c.invoice_id for c in Correction.select()}
    assert all("adjust" in actions[i] for i in adjusted)
    assert not any(inv.approved_by == "demo" for inv in Invoice.select())


def closed_postpay_invoices_have_corrections_taxed_like_their_charges(ctx):
    closed = [
        inv
        for inv in Invoice.select().where(
            (Invoice.payment_model == "postpay") & Invoice.status.in_(list(S.SENT_STATUSES))
        )
        if Correction.select().where(Correction.invoice == inv.id).exists()
    ]
    assert closed, "no closed postpay invoice with corrections"
    for inv in closed:
        assert inv.total == inv.subtotal - inv.discount_total + inv.tax_total + inv.correction_total
        base = inv.subtotal - inv.discount_total + inv.correction_total
        for tax in TaxLine.select().where(TaxLine.invoice == inv.id):
            percent = Decimal(re.search(r"(-?[\d.]+) %", tax.description).group(1))
            assert tax.amount == quantize(base * percent / 100, inv.currency), (inv.number, tax.description)


def overdue_invoices_have_an_expired_payment_and_no_unpaid_one_is_past_due(ctx):
    today = ctx.clock.today()
    payments = {p.invoice_id: p.status for p in Payment.select()}
    overdue = list(Invoice.select().where(Invoice.status == S.OVERDUE))
    assert overdue and all(payments[i.id] == "expired" for i in overdue)
    for inv in Invoice.select().where(Invoice.status == S.UNPAID):
        assert inv.due_date >= today, inv.number
        assert payments[inv.id] in ("waiting_for_payment", "processing", "receipt_creating")


def off_peak_reissues_wait_for_the_window_in_every_batch(ctx):
    rejected = list(Invoice.select().where(Invoice.status == S.REJECTED))
    assert rejected
    now = ctx.clock.now()
    for inv in rejected:
        if inv.reissue_mode == "off_peak":
            assert inv.reissue_after > now and inv.reissue_after.time() == dt.time(1, 0), inv.number
        else:
            assert inv.reissue_after <= now
    assert Decimal(0) <= sum((i.total for i in rejected), Decimal(0))
