"""Risk review: flags that say why an invoice may be wrong, and a score.

Review exists so that a large customer is never billed wrongly; a queue of
thousands of invoices sorted by deadline hides the few that matter.  Each
flag names one suspicion with a short reason a person understands
("total 12,400.00 EUR is 9.8x the last 3 invoices' average 1,265.10"); the
score is the sum of the flags' weights and orders the review queue.

This module is pure: facts in (the dataclasses below), flags out — no store
access, so the bill run, workflow hooks and the demo generator (which builds
a million invoices in memory) all call the same `assess`.  Loading facts from
the store lives in store/risk_store.py.

History: the same account's last `RiskSettings.history` (3) earlier regular
invoices that were issued (not open), newest first, by period.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from . import statuses as S
from .billing import BILLABLE_SUBSCRIPTION_STATUSES
from .money import ZERO, format_amount, format_money

HUNDRED = Decimal(100)

# A flagged invoice's score is at least FLAGGED (a person must look at it);
# below it, unflagged invoices are ordered by their distance from expected.
FLAGGED = 1000


def is_flagged(score: int | None) -> bool:
    return (score or 0) >= FLAGGED

# code -> weight in the score.  Wrong money going out (a spike, a negative
# total, a fee for a subscription that was not running) weighs most.
WEIGHTS: dict[str, int] = {
    "negative_total": 50,
    "total_spike": 40,
    "inactive_subscription": 40,
    "zero_total": 30,
    "total_drop": 25,
    "large_correction": 25,
    "missing_usage": 20,
    "tax_ratio": 20,
    "new_service": 10,
}
# code -> a word or two for a compact column.
SHORT: dict[str, str] = {
    "negative_total": "negative",
    "total_spike": "spike",
    "inactive_subscription": "inactive sub",
    "zero_total": "zero",
    "total_drop": "drop",
    "large_correction": "correction",
    "missing_usage": "no usage",
    "tax_ratio": "tax",
    "new_service": "new service",
}
# code -> what it means, for help texts and the README.
TITLES: dict[str, str] = {
    "negative_total": "Total below zero",
    "total_spike": "Total far above the account's recent invoices",
    "inactive_subscription": "Fee for a subscription not active in the period",
    "zero_total": "Total is zero",
    "total_drop": "Total far below the account's recent invoices",
    "large_correction": "Correction larger than the allowed share of the total",
    "missing_usage": "No usage for an account that normally has usage",
    "tax_ratio": "Tax share of the charges unlike the account's usual",
    "new_service": "A service billed for the first time",
}

# Subscriptions that ended (as opposed to never started): charging their fee
# is right for a period they were still active in (active_to on or after it).
ENDED_SUBSCRIPTION_STATUSES = frozenset({"stopped", "deleted", "deleting", "deletion_failed"})

USAGE_SUFFIX = " usage"  # billing.calculate: usage lines read "<service> usage"


# --------------------------------------------------------------------------
# Facts in

@dataclass(frozen=True)
class ChargeFact:
    """One charge line as review sees it."""
    service: str
    description: str
    amount: Decimal  # before discount
    discount: Decimal = ZERO
    subscription_id: int | None = None

    @property
    def usage(self) -> bool:
        """A usage line (from xDRs), not a recurring fee."""
        return self.subscription_id is None and self.description.endswith(USAGE_SUFFIX)

    @property
    def net(self) -> Decimal:
        return self.amount - self.discount


@dataclass(frozen=True)
class SubscriptionFact:
    id: int
    name: str
    status: str
    active_from: dt.date | None = None
    active_to: dt.date | None = None


@dataclass(frozen=True)
class InvoiceFacts:
    """The invoice being assessed (its current revision)."""
    currency: str
    period_from: dt.date
    period_to: dt.date
    total: Decimal
    subtotal: Decimal = ZERO
    discount_total: Decimal = ZERO
    tax_total: Decimal = ZERO
    correction_total: Decimal = ZERO
    charges: tuple[ChargeFact, ...] = ()
    corrections: tuple[Decimal, ...] = ()  # signed amounts of its corrections
    # The subscriptions its fee lines charge, by id; None: not known (the
    # inactive-subscription check is skipped).  A charged id missing from a
    # given mapping means the subscription no longer exists.
    subscriptions: Mapping[int, SubscriptionFact] | None = None

    @property
    def net(self) -> Decimal:
        """Charges after discounts, before taxes and corrections."""
        return self.subtotal - self.discount_total


@dataclass(frozen=True)
class PastInvoice:
    """What assessment needs of one earlier invoice of the same account."""
    period_from: dt.date
    total: Decimal
    net: Decimal  # charges after discounts
    tax_total: Decimal
    usage: Decimal  # usage charges, after discounts
    has_usage: bool
    services: frozenset[str]

    @classmethod
    def of(cls, facts: InvoiceFacts) -> "PastInvoice":
        usage = [c for c in facts.charges if c.usage]
        return cls(facts.period_from, facts.total, facts.net, facts.tax_total,
                   sum((c.net for c in usage), ZERO), any(c.amount != 0 for c in usage),
                   frozenset(c.service for c in facts.charges if c.service))


class RiskSettingsError(ValueError):
    pass


def _decimal(name: str, text: str | Decimal, *, low: Decimal, low_ok: bool, high: Decimal | None = None) -> Decimal:
    try:
        value = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        raise RiskSettingsError(f"{name}: {text!r} is not a number") from None
    if not value.is_finite() or (value < low if low_ok else value <= low) or (high is not None and value > high):
        bound = f"{'at least' if low_ok else 'greater than'} {low}" + (f" and at most {high}" if high else "")
        raise RiskSettingsError(f"{name}: {text!r} must be {bound}")
    return value


@dataclass(frozen=True)
class RiskSettings:
    total_factor: Decimal = Decimal(3)  # total_spike above avg*f, total_drop below avg/f
    correction_share: Decimal = Decimal("0.25")  # of the total before corrections
    tax_tolerance: Decimal = Decimal(2)  # percentage points from the usual tax share
    history: int = 3  # earlier invoices compared with

    @classmethod
    def parse(cls, factor: str, share: str, tolerance: str) -> "RiskSettings":
        return cls(_decimal("risk_total_factor", factor, low=Decimal(1), low_ok=False, high=Decimal(1000)),
                   _decimal("risk_correction_share", share, low=ZERO, low_ok=False, high=Decimal(100)),
                   _decimal("risk_tax_tolerance", tolerance, low=ZERO, low_ok=True, high=HUNDRED))


DEFAULT_SETTINGS = RiskSettings()


# --------------------------------------------------------------------------
# Flags out

@dataclass(frozen=True)
class Flag:
    code: str
    reason: str

    @property
    def weight(self) -> int:
        return WEIGHTS.get(self.code, 10)

    @property
    def short(self) -> str:
        return SHORT.get(self.code, self.code.replace("_", " "))

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "reason": self.reason}


def score(flags: Sequence[Flag]) -> int:
    return sum(f.weight for f in flags)


def dumps_flags(flags: Sequence[Flag]) -> str:
    """The stored form (Invoice.risk_flags): a JSON list of {code, reason}."""
    return json.dumps([f.as_dict() for f in flags], ensure_ascii=False) if flags else ""


def parse_flags(text: str | None) -> list[Flag]:
    if not text:
        return []
    try:
        items = json.loads(text)
    except ValueError:
        return []
    return [Flag(str(i.get("code", "")), str(i.get("reason", ""))) for i in items if isinstance(i, dict)]


def compact(flags: Sequence[Flag], width: int | None = None) -> str:
    """'spike, tax' — for a narrow column; '+N' when it does not fit."""
    words = [f.short for f in flags]
    text = ", ".join(words)
    if width is None or len(text) <= width:
        return text
    for keep in range(len(words) - 1, 0, -1):
        text = ", ".join(words[:keep]) + f" +{len(words) - keep}"
        if len(text) <= width:
            return text
    return f"{words[0][:max(width - 3, 1)]}+{len(words) - 1}" if len(words) > 1 else words[0][:width]


def _ratio(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}x"


def _pct(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)} %"


def _last(n: int) -> str:
    return "the last invoice" if n == 1 else f"the last {n} invoices"


def _basis(n: int, average: Decimal, cur: str) -> str:
    if n == 1:
        return f"the last invoice's {format_amount(average, cur)}"
    return f"the last {n} invoices' average {format_amount(average, cur)}"


def assess(inv: InvoiceFacts, history: Sequence[PastInvoice],
           settings: RiskSettings = DEFAULT_SETTINGS) -> list[Flag]:
    """Every flag that applies to `inv`, heaviest first.

    `history`: the account's earlier issued regular invoices, newest first;
    only the first `settings.history` are used.
    """
    cur = inv.currency
    past = list(history)[:settings.history]
    n = len(past)
    flags: list[Flag] = []
    total = inv.total
    average = sum((p.total for p in past), ZERO) / n if n else None

    # Totals: sign first, then distance from the account's recent invoices.
    if total < 0:
        flags.append(Flag("negative_total", f"total is negative: {format_money(total, cur)}"))
    elif total == 0:
        tail = f"; {_last(n)} averaged {format_amount(average, cur)}" if average and average > 0 else ""
        flags.append(Flag("zero_total", f"total is {format_money(total, cur)}{tail}"))
    elif average is not None and average > 0:
        factor = settings.total_factor
        if total > average * factor:
            flags.append(Flag("total_spike", f"total {format_money(total, cur)} is "
                                             f"{_ratio(total / average)} {_basis(n, average, cur)}"))
        elif total * factor < average:
            flags.append(Flag("total_drop", f"total {format_money(total, cur)} is "
                                            f"{_ratio(average / total)} below {_basis(n, average, cur)}"))

    # Usage: the account normally has usage (at least 2 of the compared
    # invoices, and most of them) and this one has none.
    with_usage = [p for p in past if p.has_usage]
    if len(with_usage) >= 2 and 2 * len(with_usage) > n and not any(
            c.usage and c.amount != 0 for c in inv.charges):
        usual = sum((p.usage for p in with_usage), ZERO) / len(with_usage)
        who = (f"{_last(n)} all had usage" if len(with_usage) == n
               else f"{len(with_usage)} of {_last(n)} had usage")
        flags.append(Flag("missing_usage", f"no usage charged; {who} (average {format_money(usual, cur)})"))

    # Fees for subscriptions that were not active in the period.
    if inv.subscriptions is not None:
        problems = []
        seen: set[int] = set()
        for c in inv.charges:
            if c.subscription_id is None or c.subscription_id in seen:
                continue
            seen.add(c.subscription_id)
            why = inactive_reason(inv.subscriptions.get(c.subscription_id), inv.period_from, inv.period_to)
            if why:
                sub = inv.subscriptions.get(c.subscription_id)
                name = sub.name if sub else c.description.split(" — ")[0]
                problems.append(f"{name} (subscription {c.subscription_id}) charged "
                                f"{format_money(c.net, cur)} but {why}")
        if problems:
            flags.append(Flag("inactive_subscription", _join(problems)))

    # Tax share of the net charges against the account's usual share (the
    # median of the compared invoices: one odd month does not move it).
    net = inv.net
    taxed = [p for p in past if p.net > 0]
    if net > 0 and taxed:
        share = inv.tax_total * HUNDRED / net
        usual = _median([p.tax_total * HUNDRED / p.net for p in taxed])
        if abs(share - usual) > settings.tax_tolerance:
            flags.append(Flag("tax_ratio", f"tax is {_pct(share)} of the net charges "
                                           f"{format_amount(net, cur)}; usually {_pct(usual)}"))

    # Services never billed on the compared invoices.
    if past:
        known = frozenset().union(*(p.services for p in past))
        new: dict[str, Decimal] = {}
        for c in inv.charges:
            if c.service and c.service not in known and c.amount != 0:
                new[c.service] = new.get(c.service, ZERO) + c.net
        if new:
            items = ", ".join(f"{s} ({format_money(a, cur)})" for s, a in sorted(new.items()))
            flags.append(Flag("new_service", f"first time billed: {items}; not on {_last(n)}"))

    # Corrections: one, or all of them together, against the charges.
    if inv.corrections:
        base = total - inv.correction_total
        limit = settings.correction_share
        biggest = max(inv.corrections, key=abs)
        limit_text = f"limit {_pct(limit * HUNDRED)}"
        if base <= 0:
            flags.append(Flag("large_correction", f"{_kind(biggest)} of {format_money(abs(biggest), cur)} on an "
                                                  f"invoice whose charges total {format_money(base, cur)}"))
        else:
            one = abs(biggest) / base
            together = abs(inv.correction_total) / base
            if one > limit:
                flags.append(Flag("large_correction", f"{_kind(biggest)} of {format_money(abs(biggest), cur)} is "
                                  f"{_pct(one * HUNDRED)} of the total before corrections "
                                  f"{format_amount(base, cur)} ({limit_text})"))
            elif len(inv.corrections) > 1 and together > limit:
                flags.append(Flag("large_correction", f"{len(inv.corrections)} corrections of "
                                  f"{format_money(inv.correction_total, cur)} together are "
                                  f"{_pct(together * HUNDRED)} of the total before corrections "
                                  f"{format_amount(base, cur)} ({limit_text})"))

    flags.sort(key=lambda f: (-f.weight, f.code))
    return flags


def _median(values: list[Decimal]) -> Decimal:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _kind(amount: Decimal) -> str:
    return "credit" if amount < 0 else "charge"


def _join(items: list[str], most: int = 2) -> str:
    if len(items) <= most:
        return "; ".join(items)
    return "; ".join(items[:most]) + f"; and {len(items) - most} more"


def inactive_reason(sub: SubscriptionFact | None, period_from: dt.date, period_to: dt.date) -> str | None:
    """Why a subscription was not active in the period, or None if it was."""
    if sub is None:
        return "it no longer exists"
    if sub.active_from and sub.active_from > period_to:
        return f"it starts {sub.active_from.isoformat()}, after the period"
    if sub.active_to and sub.active_to < period_from:
        return f"it ended {sub.active_to.isoformat()}, before the period"
    if sub.status in BILLABLE_SUBSCRIPTION_STATUSES:
        return None
    if sub.status in ENDED_SUBSCRIPTION_STATUSES and sub.active_to and sub.active_to >= period_from:
        return None  # ended during or after the period: it ran in it
    return f"it is {S.label(S.SUBSCRIPTION_STATUSES, sub.status).lower()}"


def assess_scored(inv: InvoiceFacts, history: Sequence[PastInvoice],
                  settings: RiskSettings = DEFAULT_SETTINGS) -> tuple[int, list[Flag]]:
    flags = assess(inv, history, settings)
    return score(flags), flags


__all__ = [
    "WEIGHTS", "SHORT", "TITLES", "ChargeFact", "SubscriptionFact", "InvoiceFacts", "PastInvoice",
    "RiskSettings", "RiskSettingsError", "DEFAULT_SETTINGS", "Flag", "assess", "assess_scored", "score",
    "dumps_flags", "parse_flags", "compact", "inactive_reason",
]
