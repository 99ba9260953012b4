"""The risk review's settings: how the store's risk_* settings, its
reporting currency and its currency rates are read (RiskSettings.parse), and
the score from which an invoice is flagged (FLAGGED).

Read by the review (risk.py) and by the store-wide settings' validation
(config.py) alike: one reading.  Pure, and below both: imports nothing of
tui_billing but money and errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from .errors import FieldError
from .money import ZERO

HUNDRED = Decimal(100)

# A flagged invoice's score is at least FLAGGED (a person must look at it);
# below it, unflagged invoices are ordered by their distance from expected.
FLAGGED = 1000


class RiskSettingsError(FieldError):
    """A risk setting that cannot be read; `.field` is the setting's key."""


def _decimal(
    name: str, text: str | Decimal, *, low: Decimal, low_ok: bool, high: Decimal | None = None, what: str = ""
) -> Decimal:
    """`what`: the part of the setting read ("USD: " of currency_rates), before the value."""
    try:
        value = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        raise RiskSettingsError(name, f"{what}{text!r} is not a number") from None
    if not value.is_finite() or (value < low if low_ok else value <= low) or (high is not None and value > high):
        bound = f"{'at least' if low_ok else 'greater than'} {low}" + (f" and at most {high}" if high else "")
        raise RiskSettingsError(name, f"{what}{text!r} must be {bound}")
    return value


_CURRENCY = re.compile(r"[A-Z]{3}")


def parse_rates(text: str, reporting: str = "EUR") -> tuple[tuple[str, Decimal], ...]:
    """'USD=0.92 GBP=1.17' (commas or spaces between) -> sorted pairs."""
    rates: dict[str, Decimal] = {}
    for item in text.replace(",", " ").split():
        code, sep, value = item.partition("=")
        code = code.strip().upper()
        if not sep or not _CURRENCY.fullmatch(code):
            raise RiskSettingsError("currency_rates", f"{item!r} is not like USD=0.92")
        if code in rates:
            raise RiskSettingsError("currency_rates", f"{code} is given twice")
        rates[code] = _decimal("currency_rates", value, low=ZERO, low_ok=False, high=Decimal(10**9), what=f"{code}: ")
    rates.pop(reporting, None)
    return tuple(sorted(rates.items()))


# Units of the reporting currency (EUR) per unit; `currency_rates` setting.
DEFAULT_RATES = "USD=0.92 GBP=1.17 PLN=0.23 CHF=1.05 JPY=0.0062 SEK=0.088 NOK=0.086 DKK=0.134"


@dataclass(frozen=True)
class RiskSettings:
    correction_share: Decimal = Decimal("0.25")  # of the usual total (and of this invoice's charges)
    tax_tolerance: Decimal = Decimal(2)  # percentage points from the usual tax share
    reporting_currency: str = "EUR"
    rates: tuple[tuple[str, Decimal], ...] = parse_rates(DEFAULT_RATES)  # reporting currency per unit
    hold_score: int = FLAGGED  # the job loop holds flagged invoices scored at least this
    history: int = 6  # earlier invoices compared with
    # ERP hand-off (issue 17): an external total further than this from the
    # invoice's total is flagged; an amount in the reporting currency, or a
    # percentage of the total (erp_tolerance "0.5%").
    erp_tolerance: Decimal = Decimal("0.01")
    erp_tolerance_percent: bool = False

    @classmethod
    def parse(
        cls,
        *,
        risk_correction_share: str = "0.25",
        risk_tax_tolerance: str = "2",
        reporting_currency: str = "EUR",
        currency_rates: str = DEFAULT_RATES,
        risk_hold_score: str = str(FLAGGED),
        erp_tolerance: str = "0.01",
    ) -> "RiskSettings":
        reporting = reporting_currency.strip().upper()
        if not _CURRENCY.fullmatch(reporting):
            raise RiskSettingsError("reporting_currency", f"{reporting_currency!r} is not a currency code like EUR")
        try:
            hold = int(str(risk_hold_score).strip())
        except ValueError:
            raise RiskSettingsError("risk_hold_score", f"{risk_hold_score!r} is not a whole number") from None
        if hold < 1:
            raise RiskSettingsError("risk_hold_score", f"{risk_hold_score!r} must be at least 1")
        tolerance = str(erp_tolerance).strip()
        percent = tolerance.endswith("%")
        return cls(
            _decimal("risk_correction_share", risk_correction_share, low=ZERO, low_ok=False, high=Decimal(100)),
            _decimal("risk_tax_tolerance", risk_tax_tolerance, low=ZERO, low_ok=True, high=HUNDRED),
            reporting,
            parse_rates(currency_rates, reporting),
            hold,
            erp_tolerance=_decimal(
                "erp_tolerance",
                tolerance.removesuffix("%").strip(),
                low=ZERO,
                low_ok=True,
                high=HUNDRED if percent else Decimal(10**9),
            ),
            erp_tolerance_percent=percent,
        )

    def erp_allowance(self, total_reporting: Decimal) -> Decimal:
        """How far an ERP's total may be from the invoice's, in the reporting currency."""
        if self.erp_tolerance_percent:
            return abs(total_reporting) * self.erp_tolerance / HUNDRED
        return self.erp_tolerance

    def to_reporting(self, amount: Decimal, currency: str) -> Decimal:
        """`amount` in the reporting currency; a currency without a rate
        counts one for one (README: keep the rates of every currency billed)."""
        if currency == self.reporting_currency:
            return amount
        return amount * dict(self.rates).get(currency, Decimal(1))


DEFAULT_SETTINGS = RiskSettings()
