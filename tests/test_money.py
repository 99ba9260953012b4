"""Money stays exact: Decimal in, scaled integers in the store, Decimal out."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui_billing import money
from tui_billing import workflow as W
from tui_billing.store.fields import MoneyField
from tui_billing.store.models import Invoice

from . import factories as F

CURRENCIES = ["EUR", "USD", "JPY", "BHD", "GBP"]


@st.composite
def adjustments(draw):
    currency = draw(st.sampled_from(CURRENCIES))
    places = money.minor_units(currency)
    cents = st.integers(min_value=1, max_value=10**8)
    items = draw(st.lists(st.tuples(st.sampled_from(["credit", "charge"]), cents), min_size=1, max_size=8))
    return currency, [(k, Decimal(c).scaleb(-places)) for k, c in items]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=adjustments())
def test_adjust_totals_stay_exact(store_url, ctx, data):
    currency, items = data
    start = Decimal(10**7).scaleb(-money.minor_units(currency)) * 1000
    inv = F.invoice(acc=F.account(currency=currency), total=start)
    expected = start
    for kind, amount in items:
        try:
            W.adjust(ctx, inv.id, kind, amount, "prop")
        except W.BadInput:
            assert kind == "credit" and expected - amount < 0 or amount > money.MAX_ADJUSTMENT
            continue
        expected += -amount if kind == "credit" else amount
    got = Invoice.get_by_id(inv.id)
    assert got.total == expected and isinstance(got.total, Decimal)
    assert got.total == got.subtotal - got.discount_total + got.tax_total + got.correction_total
    # Stored as an integer count of 1/10,000ths: no float anywhere.
    (stored,) = Invoice._meta.database.execute_sql("select total from invoice where id = %d" % inv.id).fetchone()
    assert isinstance(stored, int) and stored == int(expected.scaleb(4))


def test_field_refuses_float_and_excess_precision():
    field = MoneyField()
    field.name = "total"
    with pytest.raises(TypeError):
        field.db_value(1.1)
    with pytest.raises(ValueError):
        field.db_value(Decimal("0.00001"))
    assert field.db_value(Decimal("12.3456")) == 123456
    assert field.python_value(123456) == Decimal("12.3456")


def test_bulk_rows_convert_as_each_value_would(store_url):
    """store.bulk.db_rows converts a column at a time, skipping the values a
    column stores as they are: every value comes out as its field's db_value,
    amounts refused alike, a foreign key given as a row too."""
    from tui_billing.store.bulk import db_rows
    from tui_billing.store.models import ChargeLine

    inv = F.invoice(acc=F.account(currency="EUR"), total=Decimal("1"))
    names = ["invoice", "position", "description", "quantity", "amount", "records", "days"]
    rows = [
        (inv.id, 1, "Voice", Decimal("1.5"), Decimal("12.3456"), 3, None),
        (inv, True, "Data", 2, Decimal("-0.01"), None, 4),  # a row, a bool, an int amount
        (inv.id, 3, 7, Decimal("0.125"), Decimal("1E+3"), 0, 30),  # a number as a text
    ]
    fields = [ChargeLine._meta.fields[n] for n in names]
    by_value = [tuple(None if v is None else f.db_value(v) for f, v in zip(fields, row)) for row in rows]
    assert db_rows(ChargeLine, names, rows) == by_value
    assert by_value[0][4] == 123456 and by_value[1][0] == inv.id and by_value[2][2] == "7"
    for bad, error in ((1.5, TypeError), (Decimal("0.00001"), ValueError)):
        with pytest.raises(error):
            db_rows(ChargeLine, ["amount"], [(Decimal(1),), (bad,)])


@pytest.mark.parametrize(
    "text,reason",
    [
        ("", "is required"),
        ("abc", "is not a number"),
        ("-1", "greater than zero"),
        ("0", "greater than zero"),
        ("1.001", "at most 2 decimal places"),
        ("100000000", "must not exceed"),
        ("inf", "is not a number"),
    ],
)
def test_parse_amount_reasons(text, reason):
    with pytest.raises(money.MoneyError, match=reason):
        money.parse_amount(text, "EUR")


def test_parse_and_format():
    assert money.parse_amount("1,234.5", "EUR") == Decimal("1234.50")
    assert money.format_money(Decimal("1234.5"), "EUR") == "1,234.50 EUR"
    assert money.format_money(Decimal("1234"), "JPY") == "1,234 JPY"
    assert money.format_debt_change(Decimal("-12"), "EUR") == "▼ -12.00"
    assert money.format_debt_change(Decimal("12"), "EUR") == "▲ 12.00"
    assert money.quantize(Decimal("0.125"), "EUR") == Decimal("0.13")  # half-up


# One parser for every typed amount (console and CLI).  Commas only as correct
# thousands grouping: an input a comma-decimal reader would read differently
# is refused, never guessed (issue 13: "1,5" became 15.00, "12,50" 1,250.00).
@pytest.mark.parametrize(
    "text,currency,value",
    [
        ("12", "EUR", "12.00"),
        ("12.5", "EUR", "12.50"),
        (" 12.50 ", "PLN", "12.50"),
        ("1,234.50", "EUR", "1234.50"),
        ("12,345", "EUR", "12345.00"),
        ("1,234,567.8", "EUR", "1234567.80"),
        ("1,234", "JPY", "1234"),
        (".5", "EUR", "0.50"),
        ("1,234.567", "BHD", "1234.567"),
    ],
)
def test_parse_amount_accepts_points_and_thousands_commas(text, currency, value):
    assert money.parse_amount(text, currency) == Decimal(value)


@pytest.mark.parametrize(
    "text,currency,reason",
    [
        (
            "1,5",
            "PLN",
            "'1,5' looks like a decimal comma; type 1.5 (a point for decimals, commas only between thousands)",
        ),
        ("12,50", "PLN", "'12,50' looks like a decimal comma; type 12.50"),
        ("1,23", "EUR", "'1,23' looks like a decimal comma; type 1.23"),
        ("1.234,50", "EUR", "'1.234,50' looks like a decimal comma; type 1234.50"),
        ("1,5", "JPY", "looks like a decimal comma"),
        ("12,34,567", "EUR", "commas only between thousands"),
        ("1,2345", "EUR", "commas only between thousands"),
        ("1,234,5", "EUR", "commas only between thousands"),
        (",5", "EUR", "commas only between thousands"),
        ("1,,234", "EUR", "commas only between thousands"),
        ("1,234", "BHD", "'1,234' could be 1234 or 1.234 BHD; type 1234 or 1.234"),
        ("1_000", "EUR", "is not a number"),
        ("1 234", "EUR", "is not a number"),
        ("1.234.567", "EUR", "looks like points between thousands; type 1234567"),
        ("1e3", "EUR", "is not a number"),
        ("+5", "EUR", "is not a number"),
        ("١٢", "EUR", "is not a number"),
    ],
)
def test_parse_amount_refuses_what_could_be_read_another_way(text, currency, reason):
    with pytest.raises(money.MoneyError) as exc:
        money.parse_amount(text, currency)
    assert reason in str(exc.value)
