"""bill-run --period YYYY-MM: one invoice per account, postpay closing, idempotent."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal as D

import pytest

from tui_billing import billrun
from tui_billing import statuses as S
from tui_billing.clock import Clock, zone
from tui_billing.store.models import (
    Account,
    AuditEvent,
    ChargeLine,
    CustomerClass,
    Discount,
    Invoice,
    Subscription,
    TaxLine,
    TaxRule,
    Xdr,
)
from tui_billing.store.settings import save_setting
from tui_billing.workflow import Ctx

NOW = "2026-11-05T09:00"
OCT_FROM, OCT_TO = dt.date(2026, 10, 1), dt.date(2026, 10, 31)


def xdr(acc, xid, service, when, qty, amount):
    Xdr.create(xdr_id=xid, account=acc, service=service, time=when, quantity=D(qty), amount=D(amount))


@pytest.fixture
def world(store_url):
    """Five accounts, one per case of the bill run."""
    ent = CustomerClass.create(name="Enterprise", send_mode="after_review", hold_days=5, net_days=26)
    small = CustomerClass.create(name="Small Business", send_mode="immediately", hold_days=0, net_days=14)
    TaxRule.create(customer_class=ent, name="VAT", description="VAT 20 %", percent=D("20"))

    def account(name, cls, currency="EUR", model="postpay"):
        return Account.create(
            name=name,
            email=f"{name.lower()}@example.com",
            account_type="business",
            customer_class=cls,
            currency=currency,
            payment_model=model,
        )

    a = account("Alpha", ent)  # usage + subscription + discount + VAT: new invoice, under review
    xdr(a, "a1", "Voice calls", dt.datetime(2026, 10, 2, 8), "100.5", "10.1234")
    xdr(a, "a2", "Voice calls", dt.datetime(2026, 10, 31, 23, 59), "50", "5.0050")
    xdr(a, "a3", "SMS", dt.datetime(2026, 10, 9), "3", "0.125")
    xdr(a, "a4", "SMS", dt.datetime(2026, 11, 1), "1", "50")  # November: not in this run
    Subscription.create(
        account=a,
        name="Fibre 1 Gbit/s",
        service="Internet",
        status="active",
        fee=D("89.00"),
        active_from=dt.date(2026, 1, 1),
    )
    Discount.create(account=a, service="Voice calls", percent=D("10"), description="Voice promo")

    b = account("Bravo", small, currency="JPY", model="prepay")  # prepay, immediately: approved
    xdr(b, "b1", "Mobile data", dt.datetime(2026, 10, 15), "12.5", "1234.5")

    c = account("Charlie", ent)  # has an OPEN postpay invoice for October: recalculated and closed
    xdr(c, "c1", "Voice calls", dt.datetime(2026, 10, 20), "10", "20")
    open_inv = Invoice.create(
        number="INV-2026-OPEN-1",
        account=c,
        customer_class=ent,
        status=S.OPEN,
        currency="EUR",
        period_from=OCT_FROM,
        period_to=OCT_TO,
        issue_date=dt.date(2026, 11, 2),
    )

    d = account("Delta", small)  # already invoiced for October: skipped
    xdr(d, "d1", "Voice calls", dt.datetime(2026, 10, 20), "10", "20")
    done = Invoice.create(
        number="INV-2026-OLD-1",
        account=d,
        customer_class=small,
        status=S.PAID,
        currency="EUR",
        period_from=OCT_FROM,
        period_to=OCT_TO,
        issue_date=dt.date(2026, 11, 1),
        total=D("20"),
    )

    e = account("Echo", small)  # nothing to bill: skipped
    return {"a": a, "b": b, "c": c, "d": d, "e": e, "open": open_inv, "done": done}


def invoice_of(acc) -> Invoice:
    return Invoice.get(Invoice.account == acc.id)


def test_bill_run_creates_closes_and_skips(cli, world):
    code, out, err = cli("--now", NOW, "bill-run", "--period", "2026-10", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert {
        k: doc[k]
        for k in (
            "created",
            "closed",
            "under_review",
            "approved",
            "skipped",
            "already_invoiced",
            "nothing_to_bill",
            "failed",
        )
    } == {
        "created": 2,
        "closed": 1,
        "under_review": 2,
        "approved": 1,
        "skipped": 2,
        "already_invoiced": 1,
        "nothing_to_bill": 1,
        "failed": 0,
    }
    assert doc["period"] == "2026-10"
    by_account = {i["account"]: i for i in doc["invoices"]}
    assert set(by_account) == {"Alpha", "Bravo", "Charlie"}

    # Alpha: Fibre 89.00; SMS 0.125 -> 0.13; Voice 15.1284 -> 15.13, 10 % off = 1.51;
    # base 102.75, VAT 20.55, total 123.30.  Under review (after_review class).
    a = invoice_of(world["a"])
    assert a.number == "INV-2026-000001"
    assert (a.status, a.kind, a.payment_model, a.currency) == (S.UNDER_REVIEW, "regular", "postpay", "EUR")
    assert (a.period_from, a.period_to) == (OCT_FROM, OCT_TO)
    assert (a.subtotal, a.discount_total, a.tax_total, a.correction_total) == (
        D("104.26"),
        D("1.51"),
        D("20.55"),
        D("0"),
    )
    assert (a.total, a.outstanding) == (D("123.30"), D("123.30"))
    assert a.issue_date == dt.date(2026, 11, 5)  # the run's date (--now)
    assert a.due_date == dt.date(2026, 12, 1)  # + Net 26
    assert a.generated_at == dt.datetime(2026, 11, 5, 9)
    assert a.review_deadline == dt.datetime(2026, 11, 10, 9)  # + 5 hold days
    assert a.closed_at == a.generated_at and a.approved_at is None and a.revision == 1
    charges = [
        (c.position, c.description, c.quantity, c.discount, c.amount)
        for c in ChargeLine.select().where(ChargeLine.invoice == a.id).order_by(ChargeLine.position)
    ]
    assert charges == [
        (1, "Fibre 1 Gbit/s — monthly fee", D("1"), D("0"), D("89.00")),
        (2, "SMS usage", D("3"), D("0"), D("0.13")),
        (3, "Voice calls usage", D("150.5"), D("1.51"), D("15.13")),
    ]
    assert [(t.name, t.amount) for t in TaxLine.select().where(TaxLine.invoice == a.id)] == [("VAT", D("20.55"))]
    assert by_account["Alpha"]["total"] == "123.30" and by_account["Alpha"]["status"] == "under_review"

    # Bravo: prepay, class "immediately": approved at once; JPY has no decimals.
    b = invoice_of(world["b"])
    assert b.number == "INV-2026-000002"
    assert (b.status, b.payment_model, b.total) == (S.APPROVED, "prepay", D("1235"))
    assert b.due_date == dt.date(2026, 11, 19) and b.review_deadline is None
    assert b.approved_at == dt.datetime(2026, 11, 5, 9) and b.closed_at is None
    assert by_account["Bravo"]["total"] == "1235"

    # Charlie: the open invoice was recalculated (20.00 + VAT 4.00) and closed + issued.
    c = Invoice.get_by_id(world["open"].id)
    assert c.number == "INV-2026-OPEN-1"
    assert (c.status, c.total, c.tax_total) == (S.UNDER_REVIEW, D("24.00"), D("4.00"))
    assert c.closed_at == dt.datetime(2026, 11, 5, 9) and c.issue_date == dt.date(2026, 11, 5)
    assert c.due_date == dt.date(2026, 12, 1)
    assert ChargeLine.select().where(ChargeLine.invoice == c.id).count() == 1

    # Delta untouched, Echo has no invoice.
    assert Invoice.select().where(Invoice.account == world["d"].id).count() == 1
    assert Invoice.get_by_id(world["done"].id).status == S.PAID
    assert not Invoice.select().where(Invoice.account == world["e"].id).exists()

    generate = list(AuditEvent.select().where(AuditEvent.action == "generate").order_by(AuditEvent.id))
    assert [(g.number, g.after_status, g.after_total, g.before_status) for g in generate] == [
        ("INV-2026-000001", S.UNDER_REVIEW, D("123.30"), None),
        ("INV-2026-000002", S.APPROVED, D("1235"), None),
    ]
    assert {g.actor for g in generate} == {generate[0].actor} and generate[0].at == dt.datetime(2026, 11, 5, 9)
    closing = [
        (e.action, e.before_status, e.after_status, e.before_total, e.after_total)
        for e in AuditEvent.select().where(AuditEvent.invoice == c.id).order_by(AuditEvent.id)
    ]
    # One guarded transition: recalculated, closed and issued together.
    assert closing == [("close", S.OPEN, S.UNDER_REVIEW, D("0"), D("24.00"))]


def test_running_twice_creates_nothing_new(cli, world):
    assert cli("--now", NOW, "bill-run", "--period", "2026-10")[0] == 0
    invoices = {i.id: (i.number, i.status, i.total) for i in Invoice.select()}
    audits = AuditEvent.select().count()
    code, out, err = cli("--now", "2026-11-06T09:00", "bill-run", "--period", "2026-10")
    assert code == 0, err
    assert out.strip() == (
        "bill run 2026-10: created 0, closed 0 open postpay, under review 0, approved 0, "
        "skipped 5 (4 already invoiced, 1 nothing to bill)"
    )
    assert {i.id: (i.number, i.status, i.total) for i in Invoice.select()} == invoices
    assert AuditEvent.select().count() == audits


def test_text_summary(cli, world):
    code, out, err = cli("--now", NOW, "bill-run", "--period", "2026-10")
    assert code == 0
    assert out.strip() == (
        "bill run 2026-10: created 2, closed 1 open postpay, under review 2, approved 1, "
        "skipped 2 (1 already invoiced, 1 nothing to bill)"
    )
    assert err == ""  # no progress bar when piped


@pytest.mark.parametrize(
    "period, words",
    [
        ("2026-13", "month 13 does not exist"),
        ("2026-00", "month 0 does not exist"),
        ("2026-1", "is not a month like 2026-10"),
        ("26-10", "is not a month like 2026-10"),
        ("October", "is not a month like 2026-10"),
        ("2026-10-01", "is not a month like 2026-10"),
        ("2026-11", "2026-11 has not ended yet (it ends 2026-11-30"),
        ("2027-01", "has not ended yet"),
    ],
)
def test_bad_period_exits_2_naming_the_field(cli, world, period, words):
    before = Invoice.select().count()
    code, out, err = cli("--now", NOW, "bill-run", "--period", period, "--json")
    assert code == 2
    assert "error: period: " in err and words in err
    assert json.loads(out)["error"]["field"] == "period"
    assert Invoice.select().count() == before
    assert not AuditEvent.select().where(AuditEvent.action == "generate").exists()


def test_period_ends_on_its_last_day_in_the_billing_zone(cli, world):
    # 31 October 23:30 UTC is still October in UTC: the period has not ended.
    code, _, err = cli("--now", "2026-10-31T23:30:00+00:00", "bill-run", "--period", "2026-10")
    assert code == 2 and "has not ended yet" in err
    save_setting("timezone", "Europe/Warsaw")  # ... but it is 1 November 00:30 in Warsaw
    code, out, err = cli("--now", "2026-10-31T23:30:00+00:00", "bill-run", "--period", "2026-10")
    assert code == 0, err
    assert invoice_of(world["a"]).issue_date == dt.date(2026, 11, 1)


def test_include_empty_and_number_format(cli, world):
    save_setting("number_format", "B{year}{month:02d}-{seq:04d}")
    code, out, err = cli("--now", NOW, "bill-run", "--period", "2026-10", "--include-empty", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["created"], doc["nothing_to_bill"]) == (3, 0)
    e = invoice_of(world["e"])
    assert (e.total, e.status) == (D("0"), S.APPROVED)
    assert ChargeLine.select().where(ChargeLine.invoice == e.id).count() == 0
    assert sorted(i["number"] for i in doc["invoices"] if i["number"].startswith("B")) == [
        "B202611-0001",
        "B202611-0002",
        "B202611-0003",
    ]


def test_chunks_give_the_same_gapless_numbers(store_url, world):
    ctx = Ctx(clock=Clock(tz=zone("UTC"), fixed=dt.datetime(2026, 11, 5, 9)), actor="cron")
    seen = []
    result = billrun.bill_run(
        ctx, OCT_FROM, OCT_TO, include_empty=True, chunk=1, progress=lambda done, total: seen.append((done, total))
    )
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert (len(result.created), len(result.closed), result.skipped_existing, result.skipped_empty) == (3, 1, 1, 0)
    numbers = sorted(Invoice.get_by_id(i).number for i in result.created)
    assert numbers == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003"]
    assert result.statuses == {S.UNDER_REVIEW: 2, S.APPROVED: 2}


def test_parse_period():
    today = dt.date(2026, 11, 5)
    assert billrun.parse_period("2026-10", today) == (OCT_FROM, OCT_TO)
    assert billrun.parse_period("2024-02", today) == (dt.date(2024, 2, 1), dt.date(2024, 2, 29))
    assert billrun.parse_period(" 2025-12 ", today) == (dt.date(2025, 12, 1), dt.date(2025, 12, 31))
    with pytest.raises(billrun.BadInput) as exc:
        billrun.parse_period("2026-11", dt.date(2026, 11, 30))
    assert exc.value.field == "period"
    assert billrun.parse_period("2026-11", dt.date(2026, 12, 1))[1] == dt.date(2026, 11, 30)


def test_bill_run_on_the_demo_store_closes_every_open_invoice(cli, demo_store):
    open_before = {i.id for i in Invoice.select().where(Invoice.status == S.OPEN)}
    assert open_before
    count = Invoice.select().count()
    code, out, err = cli("--now", "2026-12-02T06:00", "bill-run", "--period", "2026-11", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["closed"] == len(open_before) and doc["failed"] == 0
    assert not Invoice.select().where(Invoice.status == S.OPEN).exists()
    assert Invoice.select().count() == count + doc["created"]
    for inv in Invoice.select().where(Invoice.id.in_(list(open_before))):
        assert inv.status in (S.UNDER_REVIEW, S.APPROVED)
        lines = list(ChargeLine.select().where(ChargeLine.invoice == inv.id))
        taxes = list(TaxLine.select().where(TaxLine.invoice == inv.id))
        assert inv.subtotal == sum((c.amount for c in lines), D(0))
        assert inv.total == (
            inv.subtotal
            - sum((c.discount for c in lines), D(0))
            + sum((t.amount for t in taxes), D(0))
            + inv.correction_total
        )

    # December: every account with something to bill gets a new invoice with a new, unique number.
    code, out, err = cli("--now", "2027-01-03T06:00", "bill-run", "--period", "2026-12", "--json")
    assert code == 0, err
    doc = json.loads(out)
    accounts = Account.select().count()
    assert doc["created"] + doc["nothing_to_bill"] == accounts and doc["created"] > 0
    numbers = [i["number"] for i in doc["invoices"]]
    assert len(set(numbers)) == len(numbers) and all(n.startswith("INV-2027-") for n in numbers)
    assert {i["issue_date"] for i in doc["invoices"]} == {"2027-01-03"}


def test_a_number_that_exists_fails_that_account_only(cli, world):
    """A number_format changed back and forth can give an existing number: that
    account is reported, the others are invoiced, the run does not abort."""
    save_setting("number_format", "INV-2026-{seq:06d}")
    Invoice.create(
        number="INV-2026-000002",
        account=world["e"],
        customer_class=world["e"].customer_class_id,
        status=S.PAID,
        currency="EUR",
        period_from=dt.date(2026, 9, 1),
        period_to=dt.date(2026, 9, 30),
        issue_date=dt.date(2026, 10, 1),
    )
    code, out, err = cli("--now", NOW, "bill-run", "--period", "2026-10", "--json")
    assert code == 1
    doc = json.loads(out)
    assert (doc["created"], doc["failed"]) == (1, 1)  # Alpha created; Bravo would get 000002
    [failure] = doc["failures"]
    assert "INV-2026-000002 already exists" in failure["reason"]
