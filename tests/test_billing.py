"""The calculation (billing.py): golden cases computed by hand, and properties.

Rounding rule under test: every line (charge amount, discount, tax) is rounded
on its own, half-up (half away from zero) to the currency's minor unit;
totals are exact sums of rounded lines.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui_billing.billing import (
    Calculation,
    DiscountRule,
    PeriodData,
    Recurring,
    TaxRate,
    Usage,
    calculate,
)
from tui_billing.money import quantum

OCT = (dt.date(2026, 10, 1), dt.date(2026, 10, 31))


def period(currency, usage=(), recurring=(), discounts=(), taxes=()):
    return PeriodData(currency, *OCT, tuple(usage), tuple(recurring), tuple(discounts), tuple(taxes))


def lines(calc: Calculation):
    return [(c.position, c.description, c.quantity, c.amount, c.discount) for c in calc.charges]


# --------------------------------------------------------------------------
# Golden cases


def test_eur_discounts_tax_and_refund():
    calc = calculate(
        period(
            "EUR",
            usage=[Usage("Voice calls", D("1234.5"), D("14.8140")), Usage("SMS", D("3"), D("0.125"))],
            recurring=[Recurring(7, "Fibre 1 Gbit/s", "Internet", D("89.00"))],
            discounts=[DiscountRule(D("10"), "Voice calls", "Voice promo"), DiscountRule(D("5"), None, "Loyalty")],
            taxes=[TaxRate("VAT", D("20"), "VAT 20 %"), TaxRate("Fee refund", D("-1.5"), "overpaid")],
        )
    )
    # Recurring first (by name), then usage by service name.
    assert lines(calc) == [
        (1, "Fibre 1 Gbit/s — monthly fee", D("1.000"), D("89.00"), D("4.45")),  # 5 % of 89.00
        (2, "SMS usage", D("3.000"), D("0.13"), D("0.01")),  # 0.125 -> 0.13; 5 % = 0.0065 -> 0.01
        (3, "Voice calls usage", D("1234.500"), D("14.81"), D("1.48")),  # 10 % (specific rule) of 14.81 = 1.481
    ]
    assert calc.charges[0].subscription_id == 7 and calc.charges[2].subscription_id is None
    assert calc.subtotal == D("103.94")
    assert calc.discount_total == D("5.94")
    # base 98.00: VAT 19.60; refund -1.5 % = -1.47 (deducted)
    assert [(t.position, t.name, t.amount) for t in calc.taxes] == [
        (1, "VAT", D("19.60")),
        (2, "Fee refund", D("-1.47")),
    ]
    assert calc.tax_total == D("18.13")
    assert calc.total() == D("116.13")
    totals = calc.totals(D("-10.00"))
    assert totals == {
        "subtotal": D("103.94"),
        "discount_total": D("5.94"),
        "tax_total": D("18.13"),
        "correction_total": D("-10.00"),
        "total": D("106.13"),
        "outstanding": D("106.13"),
    }


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("2.675", "2.68"),  # float(2.675) rounds to 2.67: proves no float on the way
        ("1.005", "1.01"),
        ("0.125", "0.13"),  # half-even would give 0.12
        ("0.0050", "0.01"),
        ("0.0049", "0.00"),
        ("10.4449", "10.44"),
        ("-0.125", "-0.13"),  # half away from zero for a credit record
    ],
)
def test_each_line_rounds_half_up_to_the_cent(raw, expected):
    calc = calculate(period("EUR", usage=[Usage("Voice calls", D("1"), D(raw))]))
    assert calc.charges[0].amount == D(expected)
    assert str(calc.charges[0].amount) == expected
    assert calc.total() == D(expected)


def test_lines_round_on_their_own_not_the_sum():
    # Three lines of 0.005 each: 0.01 + 0.01 + 0.01 = 0.03 (the sum 0.015 would round to 0.02).
    calc = calculate(period("EUR", usage=[Usage(s, D("1"), D("0.005")) for s in ("A", "B", "C")]))
    assert [c.amount for c in calc.charges] == [D("0.01")] * 3
    assert calc.total() == D("0.03")


def test_negative_tax_is_a_refund_rounded_half_away_from_zero():
    calc = calculate(period("EUR", usage=[Usage("Data", D("1"), D("0.50"))], taxes=[TaxRate("Refund", D("-25"))]))
    assert calc.taxes[0].amount == D("-0.13")  # -0.125
    assert calc.tax_total == D("-0.13")
    assert calc.total() == D("0.37")  # deducted from the charges
    assert calc.taxes[0].description == "-25 % of 0.50"


def test_tax_description_is_plain_not_scientific():
    calc = calculate(period("EUR", usage=[Usage("Data", D("1"), D("100"))], taxes=[TaxRate("VAT", D("20"))]))
    assert calc.taxes[0].description == "20 % of 100.00"
    assert calc.taxes[0].amount == D("20.00")


def test_jpy_has_no_minor_unit():
    calc = calculate(
        period(
            "JPY",
            usage=[Usage("Voice calls", D("10"), D("1234.5")), Usage("SMS", D("2"), D("99.4999"))],
            recurring=[Recurring(1, "SIP Trunk", "Voice calls", D("13350"))],
            discounts=[DiscountRule(D("15"))],
            taxes=[TaxRate("VAT", D("10"))],
        )
    )
    assert lines(calc) == [
        (1, "SIP Trunk — monthly fee", D("1.000"), D("13350"), D("2003")),  # 2002.5 -> 2003
        (2, "SMS usage", D("2.000"), D("99"), D("15")),  # 99.4999 -> 99; 14.85 -> 15
        (3, "Voice calls usage", D("10.000"), D("1235"), D("185")),  # 1234.5 -> 1235; 185.25 -> 185
    ]
    assert (calc.subtotal, calc.discount_total) == (D("14684"), D("2203"))
    assert calc.taxes[0].amount == D("1248")  # 10 % of 12481 = 1248.1
    assert calc.total() == D("13729")
    assert all(c.amount.as_tuple().exponent == 0 for c in calc.charges)


def test_bhd_has_three_decimals():
    calc = calculate(
        period(
            "BHD",
            usage=[Usage("Data", D("1.5"), D("12.3455")), Usage("Voice", D("0.001"), D("0.0005"))],
            taxes=[TaxRate("VAT", D("5"))],
        )
    )
    assert [c.amount for c in calc.charges] == [D("12.346"), D("0.001")]
    assert calc.subtotal == D("12.347")
    assert calc.taxes[0].amount == D("0.617")  # 0.61735
    assert calc.total() == D("12.964")
    assert str(calc.total()) == "12.964"


def test_multi_currency_same_usage_rounds_per_currency():
    usage = [Usage("Data", D("1"), D("10.5005")), Usage("Voice", D("1"), D("0.4999"))]
    results = {
        cur: calculate(period(cur, usage=usage, taxes=[TaxRate("VAT", D("7.5"))]))
        for cur in ("EUR", "JPY", "BHD", "KWD", "XYZ")
    }
    assert [c.amount for c in results["EUR"].charges] == [D("10.50"), D("0.50")]
    assert [c.amount for c in results["JPY"].charges] == [D("11"), D("0")]
    assert [c.amount for c in results["BHD"].charges] == [D("10.501"), D("0.500")]
    assert [c.amount for c in results["KWD"].charges] == [D("10.501"), D("0.500")]
    assert [c.amount for c in results["XYZ"].charges] == [D("10.50"), D("0.50")]  # unknown: 2 decimals
    assert results["EUR"].total() == D("11.83")  # 11.00 + (0.825 -> 0.83)
    assert results["JPY"].total() == D("12")  # 11 + 0.825 -> 1
    assert results["BHD"].total() == D("11.826")  # 11.001 + 0.825075 -> 0.825


def test_discount_rule_for_a_service_beats_the_general_one_and_credits_get_none():
    calc = calculate(
        period(
            "EUR",
            usage=[
                Usage("Voice", D("1"), D("100")),
                Usage("Data", D("1"), D("100")),
                Usage("Refunds", D("0"), D("-20")),
            ],
            discounts=[DiscountRule(D("5")), DiscountRule(D("50"), "Voice")],
        )
    )
    by_service = {c.service: c.discount for c in calc.charges}
    assert by_service == {"Voice": D("50.00"), "Data": D("5.00"), "Refunds": D("0")}
    assert calc.total() == D("125.00")  # 180 - 55


def test_empty_period_is_zero():
    calc = calculate(period("EUR", taxes=[TaxRate("VAT", D("20"))]))
    assert calc.charges == []
    assert calc.total() == D("0")
    assert calc.taxes[0].amount == D("0.00")


# --------------------------------------------------------------------------
# Property: total = charges − discounts + taxes + corrections, exactly.

CURRENCIES = ["EUR", "USD", "JPY", "BHD", "KWD", "CHF"]


def decimals(places: int, lo: int, hi: int):
    return st.integers(lo, hi).map(lambda n: D(n).scaleb(-places))


@st.composite
def period_data(draw):
    cur = draw(st.sampled_from(CURRENCIES))
    services = ["Voice", "SMS", "Data", "Internet", "Support"]
    usage = draw(
        st.lists(
            st.builds(Usage, st.sampled_from(services), decimals(3, 0, 10**9), decimals(4, -(10**7), 10**10)),
            max_size=6,
            unique_by=lambda u: u.service,
        )
    )
    recurring = draw(
        st.lists(
            st.builds(
                Recurring,
                st.integers(1, 1000),
                st.sampled_from(["A", "B", "C"]),
                st.sampled_from(services),
                decimals(2, 0, 10**7),
            ),
            max_size=4,
        )
    )
    discounts = draw(
        st.lists(
            st.builds(DiscountRule, decimals(3, 0, 100_000), st.one_of(st.none(), st.sampled_from(services))),
            max_size=3,
        )
    )
    taxes = draw(
        st.lists(
            st.builds(TaxRate, st.sampled_from(["VAT", "Fee", "Refund"]), decimals(3, -30_000, 30_000)), max_size=3
        )
    )
    return period(cur, usage, recurring, discounts, taxes)


def half_up(x: D, q: D) -> D:
    """Half away from zero, by integer arithmetic (independent of Decimal's rounding modes)."""
    units = x / q  # exact: x has at most 4 places, q >= 0.001
    n = int(abs(units) + D("0.5"))  # int() truncates toward zero
    return (n if units >= 0 else -n) * q


def _is_quantized(value, cur) -> bool:
    return isinstance(value, D) and value == value.quantize(quantum(cur))


@settings(max_examples=300, deadline=None)
@given(data=period_data(), corrections=st.lists(st.integers(-(10**6), 10**6), max_size=3))
def test_total_is_exact_sum_of_rounded_lines(data, corrections):
    cur = data.currency
    q = quantum(cur)
    correction = sum((D(c) * q for c in corrections), D(0))
    calc = calculate(data)

    charges = sum((c.amount for c in calc.charges), D(0))
    discounts = sum((c.discount for c in calc.charges), D(0))
    taxes = sum((t.amount for t in calc.taxes), D(0))
    assert (calc.subtotal, calc.discount_total, calc.tax_total) == (charges, discounts, taxes)
    totals = calc.totals(correction)
    assert totals["total"] == charges - discounts + taxes + correction
    assert totals["outstanding"] == totals["total"]
    assert all(isinstance(v, D) for v in totals.values())
    assert _is_quantized(totals["total"], cur)

    half = q / 2
    assert len(calc.charges) == len(data.usage) + len(data.recurring)
    for charge in calc.charges:
        assert _is_quantized(charge.amount, cur) and _is_quantized(charge.discount, cur)
        assert charge.quantity == charge.quantity.quantize(D("0.001"))
    for use in data.usage:
        line = next(c for c in calc.charges if c.description == f"{use.service} usage")
        assert line.amount == half_up(use.amount, q)
        assert abs(line.amount - use.amount) <= half
    base = charges - discounts
    assert len(calc.taxes) == len(data.taxes)
    for tax, rate in zip(calc.taxes, data.taxes):
        assert _is_quantized(tax.amount, cur)
        assert abs(tax.amount - base * rate.percent / 100) <= half


@settings(max_examples=100, deadline=None)
@given(data=period_data())
def test_calculation_is_deterministic_and_order_independent(data):
    shuffled = PeriodData(
        data.currency,
        data.period_from,
        data.period_to,
        tuple(reversed(data.usage)),
        data.recurring,
        data.discounts,
        data.taxes,
    )
    a, b = calculate(data), calculate(shuffled)
    assert [(c.service, c.amount, c.discount) for c in a.charges if c.subscription_id is None] == [
        (c.service, c.amount, c.discount) for c in b.charges if c.subscription_id is None
    ]
    assert a.total() == b.total()
