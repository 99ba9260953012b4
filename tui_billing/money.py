"""Money: Decimal everywhere, quantised to the currency's minor unit.

Amounts never pass through float.  The store keeps every amount as an
integer count of 1/10,000ths (see store/fields.py), which holds any
currency's minor unit exactly.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal

from .errors import FieldError

# ISO 4217 minor units for the currencies we bill in; anything else: 2.
MINOR_UNITS = {
    "JPY": 0,
    "KRW": 0,
    "CLP": 0,
    "ISK": 0,
    "HUF": 2,
    "VND": 0,
    "BHD": 3,
    "KWD": 3,
    "OMR": 3,
    "JOD": 3,
    "TND": 3,
}
SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "PLN": "zł", "CHF": "CHF"}

# Largest amount a single adjustment may carry: a sanity bound, not a policy.
MAX_ADJUSTMENT = Decimal("10000000")
ZERO = Decimal("0")


class MoneyError(FieldError):
    """An amount that cannot be accepted: `.reason` says why; `.field` is "amount"."""


# What a person may type: ASCII digits, one optional '-' and '.'.  Decimal()
# alone would also take '1E+3', 'Infinity' and Arabic-Indic or full-width digits.
_TYPED_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def parse_typed_number(raw: str) -> Decimal:
    """A plain decimal typed by a person, or MoneyError('... is not a number')."""
    text = (raw or "").strip()
    if not _TYPED_NUMBER.fullmatch(text):
        raise MoneyError("amount", f"{text!r} is not a number (digits, optionally '.' and decimals)")
    return Decimal(text)


def minor_units(currency: str) -> int:
    return MINOR_UNITS.get(currency.upper(), 2)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round half-up to the currency's minor unit (the documented rounding)."""
    if isinstance(amount, float):  # a float here is a bug upstream
        raise TypeError("money must be Decimal, not float")
    return Decimal(amount).quantize(quantum(currency), rounding=ROUND_HALF_UP)


# Commas only as correct thousands grouping: "1,234.50", "12,345".
_GROUPED = re.compile(r"-?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]*)?")
_HOW = "(a point for decimals, commas only between thousands)"


def _comma_refusal(text: str, currency: str) -> str | None:
    """Why a typed amount with commas or grouping points is refused, or None.

    Refused is anything a reader from a decimal-comma country would read
    differently: never guess, say what to type instead.
    """
    if "," not in text:
        if re.fullmatch(r"-?[0-9]{1,3}(?:\.[0-9]{3}){2,}", text):  # 1.234.567
            return f"{text!r} looks like points between thousands; type {text.replace('.', '')} {_HOW}"
        return None
    if (
        re.fullmatch(r"-?[0-9]{1,3}(?:\.[0-9]{3})+,[0-9]+", text)  # 1.234,50
        or re.fullmatch(r"-?[0-9]+,(?:[0-9]{1,2}|[0-9]{4,})", text)
    ):  # 1,5  12,50  1,2345
        plain = text.replace(".", "").replace(",", ".")
        return f"{text!r} looks like a decimal comma; type {plain} {_HOW}"
    if not _GROUPED.fullmatch(text):
        return f"{text!r} has a comma elsewhere than between thousands; type it {_HOW}"
    if "." not in text and text.count(",") == 1 and minor_units(currency) >= 3:  # 1,234 BHD
        plain = text.replace(",", "")
        return (
            f"{text!r} could be {plain} or {text.replace(',', '.')} {currency}; "
            f"type {plain} or {text.replace(',', '.')} {_HOW}"
        )
    return None


def parse_amount(
    text: str, currency: str, *, maximum: Decimal = MAX_ADJUSTMENT, signed: bool = False, field: str = "amount"
) -> Decimal:
    """Parse a positive amount typed by a person; raise MoneyError saying why.

    The one parser of typed amounts: the console's adjust dialog and the
    CLI's --credit/--charge both call it, so one input has one meaning.
    Accepts "12", "12.5", "1,234.50" (commas only as thousands grouping);
    refuses "1,5", "12,50", "1.234,50" rather than guess.
    `signed`: zero and negative amounts too (an ERP's total); `field`: the name errors give.
    """
    raw = (text or "").strip()
    if not raw:
        raise MoneyError(field, "is required")
    refusal = _comma_refusal(raw, currency)
    if refusal:
        raise MoneyError(field, refusal)
    try:
        value = parse_typed_number(raw.replace(",", ""))
    except MoneyError:
        raise MoneyError(field, f"{raw!r} is not a number") from None
    if value <= 0 and not signed:
        raise MoneyError(field, "must be greater than zero")
    places = minor_units(currency)
    if -int(value.as_tuple().exponent) > places and value != value.quantize(quantum(currency)):
        raise MoneyError(field, f"{currency} amounts have at most {places} decimal places")
    if abs(value) > maximum:
        raise MoneyError(field, f"must not exceed {format_amount(maximum, currency)}")
    return quantize(value, currency)


def format_amount(amount: Decimal, currency: str) -> str:
    """'1,234.50' — grouped, at the currency's minor unit, no symbol."""
    places = minor_units(currency)
    return f"{quantize(amount, currency):,.{places}f}"


def format_money(amount: Decimal, currency: str) -> str:
    """'1,234.50 EUR' — what admins read in tables and messages."""
    return f"{format_amount(amount, currency)} {currency}"


def format_debt_change(amount: Decimal, currency: str) -> str:
    """Seed 001 'Current Debt Changed': ▼ -x for a credit, ▲ x for a charge."""
    if amount < 0:
        return f"▼ -{format_amount(-amount, currency)}"
    return f"▲ {format_amount(amount, currency)}"
