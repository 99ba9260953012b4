"""The ERP hand-off (issue 17): export of issued postpay invoices, import of the
ERP's external totals (atomic, idempotent, line and field named), and the
erp_mismatch flag with both amounts -- on SQLite and PostgreSQL; and the whole
road of a postpay invoice from Open to Paid through the CLI alone."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pytest

from tests import factories as F
from tui_billing import erp
from tui_billing import statuses as S
from tui_billing.store.models import AuditEvent, Invoice
from tui_billing.store.settings import save_setting

HEADER = "number,external_total,external_currency,erp_reference,erp_date\n"


@pytest.fixture
def erp_on(store_url):
    save_setting("erp_integration", "on")
    return store_url


def issued(total="100.00", currency="EUR", status=S.UNPAID, **extra) -> Invoice:
    acc = F.account(currency=currency)
    return F.invoice(status=status, total=Decimal(total), acc=acc, approved_at=dt.datetime(2026, 11, 18, 10), **extra)


def write(tmp_path, *lines: str, name="erp.csv"):
    path = tmp_path / name
    path.write_text(HEADER + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def reload(inv) -> Invoice:
    return Invoice.get_by_id(inv.id)


def state():
    return (
        list(
            Invoice.select(
                Invoice.id, Invoice.external_total, Invoice.erp_reference, Invoice.risk_flags, Invoice.erp_confirmed_at
            )
            .order_by(Invoice.id)
            .tuples()
        ),
        AuditEvent.select().count(),
    )


def test_export_lists_issued_postpay_invoices_not_yet_confirmed(erp_on, ctx):
    a = issued("100.00", with_tax=True)
    b = issued("50.00", status=S.APPROVED)
    F.invoice(status=S.UNDER_REVIEW)  # not approved yet
    F.invoice(status=S.UNPAID, acc=F.account(payment_model="prepay"), approved_at=dt.datetime(2026, 11, 18))
    done = issued("70.00", erp_confirmed_at=dt.datetime(2026, 11, 19))
    docs = list(erp.export_documents(ctx))
    assert [d["number"] for d in docs] == [a.number, b.number]
    assert done.number not in [d["number"] for d in docs]
    assert docs[0]["total"] == "100.00" and docs[0]["approval_date"] == "2026-11-18"
    assert [line["kind"] for line in docs[0]["lines"]] == ["charge", "tax"]
    rows = list(erp.csv_rows(docs[0]))
    assert len(rows) == 2 and rows[0][:8] == [
        a.number,
        a.account.name,
        a.account_id,
        "2026-10-01",
        "2026-10-31",
        "100.00",
        "EUR",
        "2026-11-18",
    ]
    assert list(erp.export_documents(ctx, (dt.date(2026, 9, 1), dt.date(2026, 9, 30)))) == []


def test_import_confirms_and_is_idempotent(erp_on, ctx, tmp_path):
    inv = issued("100.00")
    path = write(tmp_path, f"{inv.number},100.00,EUR,ERP-1,2026-11-19")
    res = erp.import_confirmations(ctx, path)
    assert res.committed and res.count("confirmed") == 1 and not res.mismatches
    inv = reload(inv)
    assert (inv.external_total, inv.external_currency, inv.erp_reference, inv.erp_date) == (
        Decimal("100.00"),
        "EUR",
        "ERP-1",
        dt.date(2026, 11, 19),
    )
    assert inv.erp_confirmed_at == ctx.clock.now()
    assert list(erp.export_documents(ctx)) == []  # confirmed: no longer exported
    before = state()
    again = erp.import_confirmations(ctx, path)
    assert again.committed and again.count("unchanged") == 1
    assert state() == before
    event = AuditEvent.get(AuditEvent.action == "erp_confirm")
    assert json.loads(event.detail)["after"]["erp_reference"] == "ERP-1"


def test_a_mismatch_raises_a_flag_with_both_amounts(erp_on, ctx, tmp_path):
    eur = issued("100.00")
    usd = issued("100.00", currency="USD")
    same = issued("200.00", currency="USD")
    # Compared in EUR with the default rates (USD=0.92, GBP=1.17).
    path = write(
        tmp_path,
        f"{eur.number},112.50,EUR,ERP-1,2026-11-19",
        f"{usd.number},100.00,USD,ERP-2,2026-11-19",
        f"{same.number},157.27,GBP,ERP-3,2026-11-19",
    )
    res = erp.import_confirmations(ctx, path)
    assert res.committed, res.errors
    assert [o.number for o in res.mismatches] == [eur.number]
    flags = json.loads(reload(eur).risk_flags)
    flag = next(f for f in flags if f["code"] == "erp_mismatch")
    assert flag["reason"] == (
        "ERP total 112.50 EUR differs from the invoice's 100.00 EUR by 12.50 EUR (tolerance 0.01 EUR)"
    )
    assert flag["at_stake"] == "12.50"
    assert reload(eur).risk_score >= 1000
    assert "erp_mismatch" not in (reload(usd).risk_flags or "")
    # 157.27 GBP x 1.17 = 184.0059 EUR against 200 USD x 0.92 = 184.00 EUR: 0.0059 apart, within 0.01.
    assert "erp_mismatch" not in (reload(same).risk_flags or "")
    # In another currency the flag says what the ERP's total is worth in the reporting currency.
    save_setting("erp_tolerance", "0.001")
    res = erp.import_confirmations(ctx, write(tmp_path, f"{same.number},157.27,GBP,ERP-3b,2026-11-20", name="b.csv"))
    assert res.count("updated") == 1
    flag = next(f for f in json.loads(reload(same).risk_flags) if f["code"] == "erp_mismatch")
    assert "ERP total 157.27 GBP (184.01 EUR)" in flag["reason"] and "200.00 USD" in flag["reason"]
    # A percentage tolerance.
    save_setting("erp_tolerance", "15%")
    erp.import_confirmations(ctx, write(tmp_path, f"{eur.number},112.50,EUR,ERP-1c,2026-11-21", name="c.csv"))
    assert "erp_mismatch" not in (reload(eur).risk_flags or "")


def test_a_bad_file_is_refused_whole(erp_on, ctx, tmp_path):
    good = issued("10.00")
    review = F.invoice(status=S.UNDER_REVIEW)
    prepay = F.invoice(status=S.UNPAID, acc=F.account(payment_model="prepay"), approved_at=dt.datetime(2026, 11, 18))
    before = state()
    path = write(
        tmp_path,
        f"{good.number},10.00,EUR,ERP-1,2026-11-19",
        f'{good.number},"1,5",EUR,ERP-1,2026-11-19',  # 3: decimal comma, and the number twice
        "INV-NOPE,10.00,EUR,ERP-2,2026-11-19",  # 4: found at apply time
        f"{review.number},10.00,EURO,ERP-3,2026-11-19",  # 5: currency
        f"{review.number},10.00,EUR,,2026-11-19",  # 6: reference
        f"{review.number},10.00,EUR,ERP-4,19.11.2026",  # 7: date
    )
    res = erp.import_confirmations(ctx, path)
    assert {(e.line, e.field) for e in res.errors} == {
        (3, "external_total"),
        (5, "external_currency"),
        (6, "erp_reference"),
        (7, "erp_date"),
    }
    assert state() == before
    path = write(
        tmp_path,
        f"{good.number},10.00,EUR,ERP-1,2026-11-19",
        "INV-NOPE,10.00,EUR,ERP-2,2026-11-19",
        f"{review.number},10.00,EUR,ERP-3,2026-11-19",
        f"{prepay.number},10.00,EUR,ERP-4,2026-11-19",
        name="b.csv",
    )
    res = erp.import_confirmations(ctx, path)
    assert [(e.line, e.field, e.reason) for e in res.errors] == [
        (3, "number", "INV-NOPE does not exist"),
        (4, "number", f"{review.number} is under review: the ERP confirms an invoice once it is approved"),
        (5, "number", f"{prepay.number} is a prepay invoice: the ERP manages postpay invoices"),
    ]
    assert state() == before
    path = write(
        tmp_path, f"{good.number},10.00,EUR,ERP-1,2026-11-19", f"{good.number},11.00,EUR,ERP-1,2026-11-19", name="c.csv"
    )
    res = erp.import_confirmations(ctx, path)
    assert [(e.line, e.field, e.reason) for e in res.errors] == [(3, "row", f"{good.number} is on line 2 too")]
    assert state() == before


def test_the_cli_refuses_while_the_integration_is_off(cli, tmp_path):
    code, out, err = cli("erp", "export")
    assert code == 2 and "erp_integration: is off" in err and out == ""
    code, _, err = cli("erp", "import", str(write(tmp_path, "INV-1,1.00,EUR,E,2026-11-19")))
    assert code == 2 and "erp_integration" in err


# --------------------------------------------------------------------------
# The road of one postpay invoice, CLI only (README: "After the invoice is issued").


def test_a_postpay_invoice_from_open_to_paid_with_the_cli(cli, tmp_path):
    from tui_billing.store.models import Payment

    cls = F.customer_class("Postpay review", send_mode="after_review", hold_days=2, net_days=30)
    acc = F.account(name="Harbour Freight", cls=cls)
    opened = F.invoice(
        status=S.OPEN,
        acc=acc,
        total=Decimal("0"),
        number="INV-2026-900001",
        generated=dt.datetime(2026, 11, 2, 3, 0),
        generated_at=None,
        issue_date=dt.date(2026, 11, 2),
        due_date=None,
        period_from=dt.date(2026, 10, 1),
        period_to=dt.date(2026, 10, 31),
        review_deadline=None,
    )
    xdrs = tmp_path / "usage.csv"
    xdrs.write_text(
        "xdr_id,account,service,time,quantity,amount\n"
        f"x1,{acc.id},Voice calls,2026-10-05T10:00:00,120,60.00\n"
        f"x2,{acc.id},Voice calls,2026-10-20T10:00:00,80,40.00\n"
    )
    now = ["--now", "2026-11-02T09:00"]
    assert cli("import-xdrs", str(xdrs))[0] == 0
    code, out, err = cli("bill-run", "--period", "2026-10", *now, "--json")
    assert code == 0, err
    assert json.loads(out)["closed"] == 1
    inv = Invoice.get_by_id(opened.id)
    assert inv.status == S.UNDER_REVIEW and inv.total == Decimal("100.00")
    assert cli("approve", inv.number, "--include-flagged", *now)[0] == 0
    code, _, err = cli("jobs", "run", "--once", *now)  # the dispatch job sends it: Unpaid, a payment waits
    assert code == 0, err
    shown = json.loads(cli("show", inv.number, "--json")[1])
    assert shown["status"] == "unpaid" and shown["outstanding"] == "100.00"
    payment = shown["payments"][0]
    assert payment["status"] == "waiting_for_payment" and payment["number"].startswith("PMT-")

    assert cli("settings", "erp_integration", "on")[0] == 0
    code, out, _ = cli("erp", "export", "--period", "2026-10", *now)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["number"] for r in rows] == [inv.number] and rows[0]["total"] == "100.00"
    assert rows[0]["approval_date"] == "2026-11-02"
    back = tmp_path / "from-erp.csv"
    back.write_text(HEADER + f"{inv.number},100.00,EUR,SAP-4711,2026-11-03\n")
    code, out, err = cli("erp", "import", str(back), *now, "--json")
    assert code == 0 and json.loads(out)["confirmed"] == 1, err
    shown = json.loads(cli("show", inv.number, "--json")[1])
    assert (shown["external_total"], shown["erp_reference"], shown["approval_date"]) == (
        "100.00",
        "SAP-4711",
        "2026-11-02",
    )

    bank = tmp_path / "bank.csv"
    bank.write_text(
        f"reference,amount,currency,time,outcome\n{payment['number']},60.00,EUR,2026-11-20T10:00:00,completed\n"
    )
    code, out, err = cli("payments", "import", str(bank), "--now", "2026-11-21T09:00")
    assert code == 0, err
    assert "40.00 EUR still owed" in out
    shown = json.loads(cli("show", inv.number, "--json")[1])
    assert (shown["status"], shown["outstanding"]) == ("unpaid", "40.00")
    # Past the due date: overdue, and the collections view says by how much and how long.
    code, _, err = cli("jobs", "run", "--once", "--now", "2026-12-05T09:00")
    assert code == 0, err
    found = json.loads(cli("find", "--status", "overdue", "--json", "--now", "2026-12-05T09:00")[1])["invoices"]
    mine = next(i for i in found if i["number"] == inv.number)
    assert (mine["outstanding"], mine["days_overdue"]) == ("40.00", 3)
    rest = Payment.get((Payment.invoice == inv.id) & (Payment.status == "expired"))
    bank.write_text(f"reference,amount,currency,time,outcome\n{inv.number},40.00,EUR,2026-12-05T08:00:00,completed\n")
    code, out, err = cli("payments", "import", str(bank), "--now", "2026-12-05T09:00", "--json")
    assert code == 0, err
    assert json.loads(out)["paid"] == [inv.number]
    assert rest.number in out  # the expired rest was the invoice's open payment
    shown = json.loads(cli("show", inv.number, "--json")[1])
    assert (shown["status"], shown["outstanding"], shown["days_overdue"]) == ("paid", "0.00", 0)
    code, out, _ = cli("payments", "receipt", rest.number, "--creating")
    assert code == 0 and "receipt creating" in out
    code, out, _ = cli("payments", "receipt", rest.number, "--sent", "--json")
    assert code == 0 and json.loads(out)["status"] == "receipt_sent"
    code, _, err = cli("payments", "receipt", rest.number, "--sent")
    assert code == 1 and "is receipt sent" in err
    code, _, err = cli("payments", "receipt", "PMT-NOPE", "--sent")
    assert code == 2 and "payment" in err
