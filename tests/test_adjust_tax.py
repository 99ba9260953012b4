"""A manual charge or credit is net and taxed like the invoice's charges (README, *Adjust*)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tui_billing import workflow as W
from tui_billing.store.models import AuditEvent, Invoice, TaxLine, TaxRule

from . import factories as F


def taxed_invoice(percent="20", net="100.00"):
    """An invoice of `net` charges with one VAT line of `percent` % (the class's rule)."""
    cls = F.customer_class(name=f"Taxed {percent}")
    TaxRule.create(customer_class=cls, name="VAT", percent=D(percent), description="")
    acc = F.account(cls=cls)
    tax = (D(net) * D(percent) / 100).quantize(D("0.01"))
    inv = F.invoice(acc=acc, total=D(net) + tax, subtotal=D(net), tax_total=tax)
    TaxLine.create(invoice=inv, position=1, name="VAT", description=f"{percent} % of {net}", amount=tax)
    return inv


def taxes(inv):
    return [(t.name, t.description, t.amount) for t in TaxLine.select().where(TaxLine.invoice == inv.id)]


def test_a_manual_charge_is_taxed_like_the_charges_and_the_preview_says_so(store_url, ctx):
    inv = taxed_invoice()  # 100.00 + 20.00 VAT = 120.00
    p = W.preview_adjust(inv.number, "charge", "40")
    assert (p.correction, p.tax, p.after, p.change) == (D("40.00"), D("8.00"), D("168.00"), D("48.00"))
    W.adjust(ctx, inv.number, "charge", D("40"), "On-site support visit (4 h)")
    got = Invoice.get_by_id(inv.id)
    # What the preview promised is what is booked.
    assert (got.total, got.outstanding, got.tax_total, got.correction_total) == (
        D("168.00"),
        D("168.00"),
        D("28.00"),
        D("40.00"),
    )
    assert got.total == got.subtotal - got.discount_total + got.tax_total + got.correction_total
    assert taxes(inv) == [("VAT", "20 % of 140.00", D("28.00"))]
    (ev,) = AuditEvent.select().where((AuditEvent.invoice == inv.id) & (AuditEvent.action == "adjust"))
    assert '"tax": "8.00"' in ev.detail and ev.after_total == D("168.00")


def test_a_credit_lowers_the_tax_too_and_a_credit_past_zero_counts_its_tax(store_url, ctx):
    inv = taxed_invoice()
    p = W.preview_adjust(inv.number, "credit", "10")
    assert (p.correction, p.tax, p.after) == (D("-10.00"), D("-2.00"), D("108.00"))
    # 100.00 is the whole net: 0.00 after tax, allowed; 100.01 would be negative.
    assert W.preview_adjust(inv.number, "credit", "100").after == D("0.00")
    refused = W.preview_adjust(inv.number, "credit", "100.01")
    assert refused.field == "amount" and "negative" in refused.reason
    W.adjust(ctx, inv.number, "credit", D("10"), "Goodwill credit for outage 12 May")
    assert Invoice.get_by_id(inv.id).total == D("108.00")
    assert taxes(inv) == [("VAT", "20 % of 90.00", D("18.00"))]


def test_an_account_without_tax_rules_gets_no_tax_on_its_corrections(store_url, ctx):
    inv = F.invoice()  # 100.00, no tax rule anywhere
    p = W.preview_adjust(inv.number, "charge", "40")
    assert (p.tax, p.after) == (D("0.00"), D("140.00"))
    W.adjust(ctx, inv.number, "charge", D("40"), "Porting fee")
    assert Invoice.get_by_id(inv.id).total == D("140.00") and taxes(inv) == []


@pytest.mark.parametrize("text", ["\x1b[2J\x1b[31mAPPROVED BY CFO\x1b[0m", "\u200b\u200b", "a\u202eb", " \t "])
def test_descriptions_with_control_or_only_invisible_characters_are_refused(store_url, ctx, text):
    inv = taxed_invoice()
    p = W.preview_adjust(inv.number, "charge", "1", description=text)
    assert p.field == "description" and not p.applies
    with pytest.raises(W.BadInput) as exc:
        W.adjust(ctx, inv.number, "charge", D("1"), text)
    assert exc.value.field == "description"
    assert Invoice.get_by_id(inv.id).revision == inv.revision


def test_adjust_dry_run_shows_net_tax_and_new_total_like_the_dialog(store_url, cli):
    import json

    inv = taxed_invoice()
    code, out, _ = cli("adjust", inv.number, "--charge", "40", "--description", "On-site work", "--dry-run")
    assert code == 0 and "120.00 EUR → 168.00 EUR (▲ 40.00 net, tax 8.00)" in out
    code, out, _ = cli("adjust", inv.number, "--charge", "40", "--description", "On-site work", "--dry-run", "--json")
    doc = json.loads(out)
    assert (doc["correction"], doc["tax"], doc["total_after"]) == ("40.00", "8.00", "168.00")
    assert Invoice.get_by_id(inv.id).total == D("120.00")
