"""billing.py against a real store: load_period_data, write_lines, recalculate."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

from tui_billing import billing
from tui_billing.store.models import (
    Account,
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

OCT_FROM, OCT_TO = dt.date(2026, 10, 1), dt.date(2026, 10, 31)


def _account(currency="EUR"):
    cls = CustomerClass.create(name="Enterprise", send_mode="after_review", hold_days=5, net_days=26)
    return Account.create(
        name="Müller & Söhne GmbH",
        email="billing@mueller.example",
        account_type="business",
        customer_class=cls,
        currency=currency,
    )


def _xdr(account, xid, service, when, qty, amount):
    Xdr.create(xdr_id=xid, account=account, service=service, time=when, quantity=D(qty), amount=D(amount))


def test_load_period_data_sums_usage_and_picks_rules(store_url):
    acc = _account()
    other = Account.create(
        name="Other", email="o@x.example", account_type="business", customer_class=acc.customer_class, currency="EUR"
    )
    _xdr(acc, "1", "Voice calls", dt.datetime(2026, 10, 1, 0, 0), "10.5", "0.1234")
    _xdr(acc, "2", "Voice calls", dt.datetime(2026, 10, 31, 23, 59, 59), "0.5", "0.0001")
    _xdr(acc, "3", "SMS", dt.datetime(2026, 10, 15, 12), "3", "0.135")
    _xdr(acc, "4", "SMS", dt.datetime(2026, 11, 1, 0, 0), "99", "99")  # next period
    _xdr(acc, "5", "SMS", dt.datetime(2026, 9, 30, 23, 59, 59), "99", "99")  # previous period
    _xdr(other, "6", "SMS", dt.datetime(2026, 10, 15), "99", "99")  # another account
    Subscription.create(
        account=acc, name="Fibre", service="Internet", status="active", fee=D("89"), active_from=dt.date(2026, 1, 1)
    )
    Subscription.create(
        account=acc,
        name="Old plan",
        service="Internet",
        status="active",
        fee=D("5"),
        active_from=dt.date(2025, 1, 1),
        active_to=dt.date(2026, 9, 30),
    )
    Subscription.create(account=acc, name="Ordered", service="Internet", status="ordered", fee=D("7"))
    Subscription.create(account=acc, name="Graced", service="Internet", status="graced", fee=D("1"))
    Discount.create(account=acc, service="SMS", percent=D("10"), description="SMS promo")
    TaxRule.create(customer_class=acc.customer_class, name="VAT", percent=D("20"))
    TaxRule.create(account=acc, name="Refund", percent=D("-1.5"))
    TaxRule.create(account=other, name="Not mine", percent=D("3"))

    data = billing.load_period_data(acc, OCT_FROM, OCT_TO)
    assert data.currency == "EUR"
    assert sorted(data.usage, key=lambda u: u.service) == [
        billing.Usage("SMS", D("3.000"), D("0.1350"), 1, 1),
        billing.Usage("Voice calls", D("11.000"), D("0.1235"), 2, 2),
    ]
    assert sorted((r.name, r.fee) for r in data.recurring) == [("Fibre", D("89")), ("Graced", D("1"))]
    assert [(d.percent, d.service) for d in data.discounts] == [(D("10"), "SMS")]
    assert [(t.name, t.percent) for t in data.taxes] == [("VAT", D("20")), ("Refund", D("-1.5"))]

    calc = billing.calculate(data)
    assert [(c.service, c.records, c.days) for c in calc.charges if c.subscription_id is None] == [
        ("SMS", 1, 1),
        ("Voice calls", 2, 2),
    ]
    # Fibre 89.00, Graced 1.00, SMS 0.14 (disc 0.01), Voice 0.12 -> 90.26 - 0.01 = 90.25
    assert calc.subtotal == D("90.26") and calc.discount_total == D("0.01")
    assert [t.amount for t in calc.taxes] == [D("18.05"), D("-1.35")]  # 18.05; -1.35375
    assert calc.total() == D("106.95")


def test_period_boundaries_follow_the_billing_time_zone(store_url):
    save_setting("timezone", "Europe/Warsaw")  # UTC+2 in October, UTC+1 from 25 October
    acc = _account()
    _xdr(acc, "in-first", "Data", dt.datetime(2026, 9, 30, 22, 30), "1", "1")  # 1 Oct 00:30 local
    _xdr(acc, "out-before", "Data", dt.datetime(2026, 9, 30, 21, 30), "1", "10")  # 30 Sep 23:30 local
    _xdr(acc, "in-last", "Data", dt.datetime(2026, 10, 31, 22, 59), "1", "100")  # 31 Oct 23:59 local
    _xdr(acc, "out-after", "Data", dt.datetime(2026, 10, 31, 23, 0), "1", "1000")  # 1 Nov 00:00 local
    data = billing.load_period_data(acc, OCT_FROM, OCT_TO)
    assert data.usage == (billing.Usage("Data", D("2.000"), D("101.0000"), 2, 2),)
    assert billing.period_bounds_utc(OCT_FROM, OCT_TO) == (dt.datetime(2026, 9, 30, 22), dt.datetime(2026, 10, 31, 23))


def _invoice(acc, **kw):
    fields = dict(
        number="INV-1",
        account=acc,
        customer_class=acc.customer_class,
        status="under_review",
        currency=acc.currency,
        period_from=OCT_FROM,
        period_to=OCT_TO,
        issue_date=dt.date(2026, 11, 1),
    )
    fields.update(kw)
    return Invoice.create(**fields)


def test_write_lines_replaces_lines_and_recalculate_keeps_corrections(store_url):
    acc = _account("JPY")
    _xdr(acc, "a", "Voice", dt.datetime(2026, 10, 3), "100", "1234.5")
    TaxRule.create(account=acc, name="VAT", percent=D("10"))
    inv = _invoice(acc, correction_total=D("-500"))
    ChargeLine.create(invoice=inv, position=1, description="stale", amount=D("1"))
    TaxLine.create(invoice=inv, position=1, name="stale", amount=D("1"))

    totals = billing.recalculate(inv)
    # The corrections are net and taxed too: 10 % of (1235 - 500) = 73.5 -> 74.
    assert totals == {
        "subtotal": D("1235"),
        "discount_total": D("0"),
        "tax_total": D("74"),
        "correction_total": D("-500"),
        "total": D("809"),
        "outstanding": D("809"),
    }
    rows = list(ChargeLine.select().where(ChargeLine.invoice == inv.id))
    assert [(r.position, r.description, r.quantity, r.amount) for r in rows] == [
        (1, "Voice usage", D("100"), D("1235"))
    ]
    assert [(t.name, t.amount) for t in TaxLine.select().where(TaxLine.invoice == inv.id)] == [("VAT", D("74"))]

    _xdr(acc, "b", "SMS", dt.datetime(2026, 10, 4), "1", "10")
    totals = billing.recalculate(inv)
    assert totals["subtotal"] == D("1245") and totals["tax_total"] == D("75")  # 74.5 -> 75
    assert totals["total"] == D("820")
    assert ChargeLine.select().where(ChargeLine.invoice == inv.id).count() == 2


def test_usage_evidence_counts_days_and_records_repeated_under_other_ids(store_url):
    """Risk evidence from the xDRs: the days the records cover, and records
    with the same account, service, time, quantity and amount under another id."""
    acc = _account()
    noon = dt.datetime(2026, 10, 5, 12)
    _xdr(acc, "a1", "Voice calls", noon, "10", "1.25")
    _xdr(acc, "a2", "Voice calls", noon, "10", "1.25")  # re-sent: same everything, new id
    _xdr(acc, "a3", "Voice calls", noon, "10", "1.25")  # and again
    _xdr(acc, "a4", "Voice calls", noon, "11", "1.25")  # near miss: another quantity
    _xdr(acc, "a5", "Voice calls", dt.datetime(2026, 10, 5, 12, 0, 1), "10", "1.25")  # another second
    _xdr(acc, "a6", "Voice calls", dt.datetime(2026, 10, 20, 9), "1", "0.10")
    _xdr(acc, "s1", "SMS", noon, "10", "1.25")  # another service: not a repeat
    data = billing.load_period_data(acc, OCT_FROM, OCT_TO)
    voice = next(u for u in data.usage if u.service == "Voice calls")
    assert (voice.records, voice.days, voice.duplicates, voice.duplicate_amount) == (6, 2, 2, D("2.50"))
    sms = next(u for u in data.usage if u.service == "SMS")
    assert (sms.records, sms.days, sms.duplicates) == (1, 1, 0)
