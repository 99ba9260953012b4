"""Reissue after an xDR import: per-service amounts change, corrections,
number and issue date stay, the revision goes up (seed 000, "Reissue")."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal as D

from tui_billing import statuses as S
from tui_billing import workflow
from tui_billing.clock import Clock, zone
from tui_billing.store.models import (
    Account,
    AuditEvent,
    ChargeLine,
    Correction,
    CustomerClass,
    Invoice,
    InvoicePdf,
    TaxLine,
    TaxRule,
)
from tui_billing.workflow import Ctx

HEADER = "xdr_id,account,service,time,quantity,amount\n"


def test_reissue_after_importing_xdrs_recalculates_and_keeps_corrections(cli, store_url, tmp_path):
    from tui_billing import pdf

    assert hasattr(pdf, "render_invoice")

    ent = CustomerClass.create(name="Enterprise", send_mode="after_review", hold_days=5, net_days=26)
    TaxRule.create(customer_class=ent, name="VAT", percent=D("20"))
    acc = Account.create(
        name="Ångström Labs AB",
        email="ap@angstrom.example",
        account_type="business",
        customer_class=ent,
        currency="EUR",
    )

    first = tmp_path / "oct.csv"
    first.write_text(
        HEADER + f"v1,{acc.id},Voice calls,2026-10-03T10:00:00,120,12.0000\n"
        f"s1,{acc.id},SMS,2026-10-04T10:00:00,10,0.4500\n",
        encoding="utf-8",
    )
    assert cli("import-xdrs", str(first))[0] == 0
    code, out, err = cli("--now", "2026-11-02T08:00", "bill-run", "--period", "2026-10", "--json")
    assert code == 0, err
    number = json.loads(out)["invoices"][0]["number"]
    inv = Invoice.get(Invoice.number == number)
    # Voice 12.00 + SMS 0.45 = 12.45; VAT 2.49; total 14.94
    assert (inv.status, inv.total, inv.revision) == (S.UNDER_REVIEW, D("14.94"), 1)

    ctx = Ctx(clock=Clock(tz=zone("UTC"), fixed=dt.datetime(2026, 11, 3, 9)), actor="alice")
    workflow.adjust(ctx, number, "credit", D("5.00"), "Goodwill credit for outage")
    inv = Invoice.get(Invoice.number == number)
    # A net credit, taxed like the charges: 12.45 - 5.00 = 7.45, VAT 1.49, total 8.94.
    assert (inv.total, inv.correction_total, inv.tax_total, inv.revision) == (D("8.94"), D("-5.00"), D("1.49"), 2)
    assert [t.description for t in TaxLine.select().where(TaxLine.invoice == inv.id)] == ["20 % of 7.45"]

    # More usage arrives for the same account and period (and one row already imported).
    late = tmp_path / "oct-late.csv"
    late.write_text(
        HEADER + f"v1,{acc.id},Voice calls,2026-10-03T10:00:00,120,12.0000\n"
        f"v2,{acc.id},Voice calls,2026-10-30T22:00:00,30.5,3.0050\n"
        f"d1,{acc.id},Mobile data,2026-10-15T12:00:00,2.5,4.7500\n"
        f"x1,{acc.id},Mobile data,2026-11-01T00:00:00,100,100\n",  # November: not billed
        encoding="utf-8",
    )
    code, out, err = cli("import-xdrs", str(late), "--json")
    assert code == 0, err
    assert (json.loads(out)["imported"], json.loads(out)["already_imported"]) == (3, 1)

    workflow.request_reissue(ctx, number, "now")
    assert Invoice.get(Invoice.number == number).status == S.REJECTED
    workflow.complete_reissue(ctx, Invoice.get(Invoice.number == number).id)

    after = Invoice.get(Invoice.number == number)
    amounts = {c.service: (c.quantity, c.amount) for c in ChargeLine.select().where(ChargeLine.invoice == after.id)}
    assert amounts == {
        "Voice calls": (D("150.5"), D("15.01")),  # 15.0050 -> 15.01
        "SMS": (D("10"), D("0.45")),
        "Mobile data": (D("2.5"), D("4.75")),
    }
    # 20.21 charges, corrections -5.00 kept: VAT 20 % of 15.21 = 3.042 -> 3.04, total 18.25
    assert (after.subtotal, after.tax_total) == (D("20.21"), D("3.04"))
    assert after.correction_total == D("-5.00")
    assert (after.total, after.outstanding) == (D("18.25"), D("18.25"))
    assert [(c.kind, c.amount, c.description) for c in Correction.select().where(Correction.invoice == after.id)] == [
        ("manual_credit", D("-5.00"), "Goodwill credit for outage")
    ]
    assert [t.amount for t in TaxLine.select().where(TaxLine.invoice == after.id)] == [D("3.04")]
    assert after.number == number and after.id == inv.id
    assert after.issue_date == dt.date(2026, 11, 2)  # kept from generation
    assert after.due_date == dt.date(2026, 11, 28)
    assert (after.status, after.revision) == (S.UNDER_REVIEW, 3)
    assert after.review_deadline == dt.datetime(2026, 11, 8, 9)  # the hold restarts
    assert InvoicePdf.select().where((InvoicePdf.invoice == after.id) & (InvoicePdf.revision == 3)).exists()
    actions = [a.action for a in AuditEvent.select().where(AuditEvent.invoice == after.id).order_by(AuditEvent.id)]
    assert actions == ["generate", "adjust", "request_reissue", "reissue"]
