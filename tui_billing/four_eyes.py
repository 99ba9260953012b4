"""Four-eyes approval (issue 16): invoices at or above the store setting
`second_approval_above` (an amount in the reporting currency) need two
approvals by two different people, and nobody approves a revision they made.

Pure: the threshold, converted once per currency with the risk review's
rates, and the rule both the Python checks and the job loop's set-based SQL
use, so they never disagree on an invoice at the edge.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .errors import ConfigError
from .money import MAX_ADJUSTMENT, MoneyError, parse_amount
from .risk_settings import RiskSettings

_SCALE = Decimal("0.0001")  # amounts are exact to 1/10,000 (store.fields.MONEY_SCALE)


def parse_threshold(value: str | None, currency: str = "EUR") -> Decimal | None:
    """The setting as typed: blank or "off" = no second approval; otherwise
    an amount in the reporting `currency`, read by money.parse_amount (the
    one parser of typed amounts: "10,000" yes, "1,5" no)."""
    text = (value or "").strip()
    if text.lower() in ("", "off"):
        return None
    try:
        return parse_amount(text, currency, maximum=MAX_ADJUSTMENT * 1000)
    except MoneyError as exc:
        raise ConfigError("second_approval_above", f"{exc.reason} (or off)") from None


@dataclass(frozen=True)
class FourEyes:
    """The rules in force for one transaction: `team` (any user exists:
    single-admin mode has one person, so no rule applies) and the threshold
    in the reporting currency (None: no invoice needs a second approval)."""

    team: bool
    threshold: Decimal | None
    risk: RiskSettings = field(default_factory=RiskSettings)

    @property
    def active(self) -> bool:
        return self.team and self.threshold is not None

    def min_total(self, currency: str) -> Decimal:
        """The smallest total in `currency` that needs two approvals, exact to
        the stored 1/10,000: total >= this  <=>  total in reporting >= threshold."""
        assert self.threshold is not None
        rate = (
            Decimal(1) if currency == self.risk.reporting_currency else dict(self.risk.rates).get(currency, Decimal(1))
        )
        with decimal.localcontext() as c:
            c.prec = 50
            return (self.threshold / rate).quantize(_SCALE, rounding=decimal.ROUND_CEILING)

    def needs_two(self, total: Decimal, currency: str) -> bool:
        return self.active and total >= self.min_total(currency)

    def sql(self, p: str, scale: int = 4) -> tuple[str, list[Any]]:
        """The same rule as a SQL condition on invoice(total, currency), total
        stored as an integer count of 10**-scale (MoneyField)."""
        known = [c for c, _ in self.risk.rates if c != self.risk.reporting_currency]
        cases = " ".join(f"WHEN {p} THEN {p}" for _ in known)
        args: list[Any] = []
        for code in known:
            args += [code, int(self.min_total(code).scaleb(scale))]
        args.append(int(self.min_total(self.risk.reporting_currency).scaleb(scale)))
        expr = f"CASE currency {cases} ELSE {p} END" if known else p
        return f"total >= {expr}", args
