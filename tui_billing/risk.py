"""Risk review: evidence that an invoice may be wrong, money at stake, a score.

Review exists so that a large customer is never billed wrongly (seed 000).
Like a revenue-assurance analyst, review checks each service against the
account's own history (its last `RiskSettings.history` (6) issued regular
invoices): quantity, price per unit, how complete the usage feed is,
duplicate-looking records, each recurring fee, each discount's share, the
taxes and manual corrections; and the price per unit against other accounts
billed for the same service in the period.  "Usual" is always a median with
its spread (the median absolute deviation), so one odd month moves nothing.

Each flag names one suspicion with figures a person checks in ten seconds
("Voice calls quantity 12,400 is 3.1x its usual 4,000 (median of 6
invoices)") and the money that is wrong if the suspicion is right.  The
score orders the review queue by that money:

- flagged: FLAGGED (1000) + the flags' weights + 100 x log10(1 + money at
  stake in the reporting currency): a doubled multi-million invoice outranks
  a 10 EUR oddity, and every flagged invoice outranks every unflagged one;
- unflagged: 100 x log10(1 + distance of the total from the expected total),
  capped below FLAGGED: the quiet part of the queue is ordered by how far
  each invoice is from what its history predicts.

This module is pure: facts in, an Assessment out — no store access, so the
bill run, the workflow and the demo generator all call the same `evaluate`.
Loading facts from the store lives in store/risk_store.py.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from . import statuses as S
from .billing import BILLABLE_SUBSCRIPTION_STATUSES, Calculation
from .money import ZERO, format_amount, format_money, quantize
from .risk_settings import (  # noqa: F401 - re-exported: the settings are read by config too
    DEFAULT_RATES,
    DEFAULT_SETTINGS,
    FLAGGED,
    RiskSettings,
    RiskSettingsError,
    parse_rates,
)

HUNDRED = Decimal(100)
CENT = Decimal("0.01")


def is_flagged(score: int | None) -> bool:
    return (score or 0) >= FLAGGED


# code -> weight in the score: how strong the evidence is on its own.
WEIGHTS: dict[str, int] = {
    "negative_total": 50,
    "erp_mismatch": 50,
    "duplicate_usage": 45,
    "unit_price": 45,
    "inactive_subscription": 40,
    "fee_change": 40,
    "discount_change": 35,
    "usage_quantity": 35,
    "usage_gap": 35,
    "total_spike": 35,
    "large_correction": 35,
    "zero_total": 30,
    "peer_price": 30,
    "total_drop": 30,
    "missing_usage": 30,
    "tax_ratio": 25,
    "new_service": 15,
}
# code -> a word or two for a compact column.
SHORT: dict[str, str] = {
    "negative_total": "negative",
    "erp_mismatch": "ERP total",
    "duplicate_usage": "duplicates",
    "unit_price": "unit price",
    "inactive_subscription": "inactive sub",
    "fee_change": "fee",
    "discount_change": "discount",
    "usage_quantity": "quantity",
    "usage_gap": "usage gap",
    "total_spike": "spike",
    "large_correction": "correction",
    "zero_total": "zero",
    "peer_price": "peer price",
    "total_drop": "drop",
    "missing_usage": "no usage",
    "tax_ratio": "tax",
    "new_service": "new service",
}
# code -> what it means, for help texts and the README.
TITLES: dict[str, str] = {
    "negative_total": "Total below zero",
    "erp_mismatch": "The ERP's total for the invoice differs from its total by more than erp_tolerance",
    "duplicate_usage": "Usage records that repeat another's time, quantity and amount under a different id",
    "unit_price": "A service's price per unit unlike the account's usual",
    "inactive_subscription": "Fee for a subscription not active in the period",
    "fee_change": "A recurring fee unlike the same subscription's fee on earlier invoices",
    "discount_change": "A discount's share of its charge unlike the account's usual",
    "usage_quantity": "A service's quantity far from the account's usual",
    "usage_gap": "Usage covering fewer days or records than usual: a feed that stopped part-way",
    "total_spike": "Total far above the account's usual",
    "large_correction": "A manual correction large for this account",
    "zero_total": "Total is zero",
    "peer_price": "A service's price per unit far from other accounts' in the period",
    "total_drop": "Total far below the account's usual",
    "missing_usage": "No usage of a service the account normally uses",
    "tax_ratio": "Tax share of the charges unlike the account's usual",
    "new_service": "A service billed for the first time",
}

# Subscriptions that ended (as opposed to never started): charging their fee
# is right for a period they were still active in (active_to on or after it).
ENDED_SUBSCRIPTION_STATUSES = frozenset({"stopped", "deleted", "deleting", "deletion_failed"})

USAGE_SUFFIX = " usage"  # billing.calculate: usage lines read "<service> usage"

# How far is unusual.  A value is unusual when it is Z robust standard
# deviations from the median (spread = 1.4826 x MAD, but never below a share
# of the median: six equal months do not make a 1 % change suspicious),
# beyond a ratio of the median, and beyond the account's own range (_unusual).  Month-to-month usage that varies by a
# quarter stays well inside; a 1.5x feed or rating error on a steady
# account, a tariff off by 15 %, do not.
Z = Decimal(3)
QUANTITY_RATIO, QUANTITY_FLOOR = Decimal("1.45"), Decimal("0.10")
TOTAL_RATIO, TOTAL_FLOOR = Decimal("1.45"), Decimal("0.10")
DOWN_RATIO = Decimal("1.6")  # a fall: to 62.5 % of the usual or less
PRICE_RATIO, PRICE_FLOOR, PRICE_MARGIN = Decimal("1.15"), Decimal("0.03"), Decimal("1.05")
PEER_RATIO = Decimal(2)  # other accounts may have negotiated their own tariff
PEER_MIN = 5  # lines of other accounts needed for a peer price
FEE_TOLERANCE = Decimal("0.05")  # a recurring fee moved by more than 5 %
DISCOUNT_TOLERANCE = Decimal("0.03")  # a discount's share moved by 3 points
GAP_SHARE, GAP_MIN_DAYS = Decimal("0.6"), 4  # days covered below 60 % of usual
RECORDS_SHARE, RECORDS_MIN = Decimal("0.5"), 6
DUPLICATE_SHARE = Decimal("0.005")  # of the line's records (busy feeds repeat by chance)
CORRECTION_PEER_FACTOR = 2  # x the store's 95th percentile of recent corrections
CORRECTION_HISTORY_FACTOR = 3  # x the account's largest earlier correction


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
    quantity: Decimal = ZERO
    records: int = 0  # usage: the xDRs behind the line (0: not known)
    days: int = 0  # usage: days of the period those records cover
    duplicates: int = 0  # usage: records repeating another's time, quantity and amount
    duplicate_amount: Decimal = ZERO
    # A usage line (from xDRs), not a recurring fee; set once (read in every check).
    usage: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "usage", self.subscription_id is None and self.description.endswith(USAGE_SUFFIX))

    @property
    def net(self) -> Decimal:
        return self.amount - self.discount

    @property
    def unit_price(self) -> Decimal | None:
        return self.amount / self.quantity if self.quantity > 0 else None

    @property
    def discount_share(self) -> Decimal | None:
        return self.discount / self.amount if self.amount > 0 else None


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
    # What the ERP sent back (issue 17); None: not confirmed by an ERP.
    external_total: Decimal | None = None
    external_currency: str | None = None

    @property
    def net(self) -> Decimal:
        """Charges after discounts, before taxes and corrections."""
        return self.subtotal - self.discount_total

    @property
    def taxable(self) -> Decimal:
        """The base of its taxes: corrections are taxed like charges."""
        return self.net + self.correction_total

    @property
    def before_corrections(self) -> Decimal:
        """The total without the corrections and the tax they brought."""
        if not self.correction_total:
            return self.total
        share = self.tax_total / self.taxable if self.taxable else ZERO
        return quantize(self.net * (1 + share), self.currency)

    @classmethod
    def from_calc(
        cls,
        currency: str,
        period_from: dt.date,
        period_to: dt.date,
        calc: Calculation,
        subscriptions: Mapping[int, SubscriptionFact] | None,
        corrections: Sequence[Decimal] = (),
    ) -> "InvoiceFacts":
        """Facts of an invoice about to be written from a calculation."""
        correction_total = sum(corrections, ZERO)
        return cls(
            currency,
            period_from,
            period_to,
            calc.total(correction_total),
            calc.subtotal,
            calc.discount_total,
            calc.tax_total,
            correction_total,
            tuple(
                ChargeFact(
                    c.service,
                    c.description,
                    c.amount,
                    c.discount,
                    c.subscription_id,
                    c.quantity,
                    c.records,
                    c.days,
                    c.duplicates,
                    c.duplicate_amount,
                )
                for c in calc.charges
            ),
            tuple(corrections),
            subscriptions,
        )


@dataclass(frozen=True)
class PastInvoice:
    """What assessment needs of one earlier invoice of the same account."""

    period_from: dt.date
    total: Decimal
    net: Decimal  # charges after discounts
    tax_total: Decimal
    charges: tuple[ChargeFact, ...] = ()
    corrections: tuple[Decimal, ...] = ()

    @classmethod
    def of(cls, facts: InvoiceFacts) -> "PastInvoice":
        return cls(facts.period_from, facts.total, facts.net, facts.tax_total, facts.charges, facts.corrections)

    @property
    def services(self) -> frozenset[str]:
        return frozenset(c.service for c in self.charges if c.service)

    @property
    def taxable(self) -> Decimal:
        return self.net + sum(self.corrections, ZERO)

    def usage_line(self, service: str) -> ChargeFact | None:
        for c in self.charges:
            if c.usage and c.service == service and c.amount != 0:
                return c
        return None


@dataclass(frozen=True)
class Population:
    """What other accounts look like, for comparisons beyond one account's
    history (store/risk_store.population)."""

    # (currency, service) -> (median price per unit, lines) in the period
    unit_prices: Mapping[tuple[str, str], tuple[Decimal, int]] = field(default_factory=dict)
    # The 95th percentile of the store's recent manual corrections, in the
    # reporting currency; None: too few to say.
    typical_correction: Decimal | None = None


NO_POPULATION = Population()


# --------------------------------------------------------------------------
# Flags out


@dataclass(frozen=True)
class Flag:
    code: str
    reason: str
    at_stake: Decimal = ZERO  # in the invoice's currency: wrong if the suspicion is right

    @property
    def weight(self) -> int:
        return WEIGHTS.get(self.code, 10)

    @property
    def short(self) -> str:
        return SHORT.get(self.code, self.code.replace("_", " "))

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "reason": self.reason, "at_stake": str(self.at_stake)}


@dataclass(frozen=True)
class Assessment:
    flags: list[Flag]
    expected: Decimal | None  # the total the account's history predicts (invoice currency)
    at_stake: Decimal  # reporting currency
    score: int

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


def score(flags: Sequence[Flag]) -> int:
    """The part of the score the flags' evidence gives (without the money)."""
    return sum(f.weight for f in flags)


def money_points(amount: Decimal) -> int:
    """100 per tenfold: 10 -> 104, 1,000 -> 300, 1,000,000 -> 600."""
    return int(round(100 * math.log10(1 + float(abs(amount)))))


def dumps_flags(flags: Sequence[Flag]) -> str:
    """The stored form (Invoice.risk_flags): a JSON list of {code, reason, at_stake}."""
    return json.dumps([f.as_dict() for f in flags], ensure_ascii=False) if flags else ""


def parse_flags(text: str | None) -> list[Flag]:
    if not text:
        return []
    try:
        items = json.loads(text)
    except ValueError:
        return []
    out = []
    for i in items:
        if not isinstance(i, dict):
            continue
        try:
            at_stake = Decimal(str(i.get("at_stake", "0")))
        except InvalidOperation:
            at_stake = ZERO
        out.append(Flag(str(i.get("code", "")), str(i.get("reason", "")), at_stake))
    return out


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
    return f"{words[0][: max(width - 3, 1)]}+{len(words) - 1}" if len(words) > 1 else words[0][:width]


# --------------------------------------------------------------------------
# Statistics and wording


def median(values: Sequence[Decimal]) -> Decimal:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


@dataclass(frozen=True)
class _Usual:
    median: Decimal
    n: int
    ratio: Decimal  # value / median

    @property
    def up(self) -> bool:
        return self.ratio >= 1


def _unusual(
    value: Decimal,
    history: Sequence[Decimal],
    *,
    ratio: Decimal,
    floor: Decimal,
    margin: Decimal = Decimal("1.2"),
    minimum: int = 3,
    down: Decimal | None = None,
) -> _Usual | None:
    """The value against the history; None when usual (or when there is too
    little history to say).  Unusual is all three: Z robust deviations from
    the median, beyond `ratio` of it, and beyond the range the account has
    shown (one odd month left out when there are five or more) by `margin`
    — so a month-to-month swing the account has had before is never news.
    `down`: the ratio for a fall (a usage that varies by a quarter falls
    1.44x from a high median but rises only 1.36x from a low one)."""
    if len(history) < minimum:
        return None
    med = median(history)
    if med <= 0:
        return None
    mad = median([abs(v - med) for v in history])
    spread = max(Decimal("1.4826") * mad, floor * med)
    if abs(value - med) < Z * spread:
        return None
    ordered = sorted(history)
    if len(ordered) >= 5:
        ordered = ordered[1:-1]
    r = value / med
    if value > med and r >= ratio and value > ordered[-1] * margin:
        return _Usual(med, len(history), r)
    if value < med and (r <= 0 or 1 / r >= (down or ratio)) and value * margin < ordered[0]:
        return _Usual(med, len(history), r)
    return None


def _times(u: _Usual) -> str:
    if u.ratio <= 0:
        return "none"
    if u.up:
        return f"{_ratio(u.ratio)}"
    return f"{_ratio(1 / u.ratio)} below"


def _ratio(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}x"


def _pct(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)} %"


def _qty(value: Decimal) -> str:
    """12,400 / 3.25 — grouped, no trailing zeros, at most 3 decimals."""
    text = f"{value.quantize(Decimal('0.001'), rounding=ROUND_HALF_UP):,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _price(value: Decimal, cur: str) -> str:
    """A price per unit: 4 decimals, trailing zeros dropped down to the currency's."""
    text = f"{value.quantize(Decimal('0.0001'), rounding=ROUND_HALF_UP):,f}"
    keep = len(format_amount(Decimal(0), cur).partition(".")[2])
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    frac = frac + "0" * (keep - len(frac)) if len(frac) < keep else frac
    return f"{whole}.{frac} {cur}" if frac else f"{whole} {cur}"


def _of(n: int) -> str:
    return "the last invoice" if n == 1 else f"median of {n} invoices"


def _last(n: int) -> str:
    return "the last invoice" if n == 1 else f"the last {n} invoices"


def _join(items: list[str], most: int = 2) -> str:
    if len(items) <= most:
        return "; ".join(items)
    return "; ".join(items[:most]) + f"; and {len(items) - most} more"


def _kind(amount: Decimal) -> str:
    return "credit" if amount < 0 else "charge"


class _Flags:
    """Collects findings; one flag per code (findings of one code, on several
    services, are joined and their money added)."""

    def __init__(self, cur: str):
        self.cur = cur
        self.found: dict[str, list[tuple[str, Decimal]]] = {}

    def add(self, code: str, reason: str, at_stake: Decimal) -> None:
        self.found.setdefault(code, []).append((reason, abs(at_stake)))

    def flags(self) -> list[Flag]:
        out = []
        for code, items in self.found.items():
            items.sort(key=lambda i: -i[1])  # the most money first
            out.append(Flag(code, _join([r for r, _ in items]), quantize(sum((a for _, a in items), ZERO), self.cur)))
        out.sort(key=lambda f: (-f.weight, f.code))
        return out


# --------------------------------------------------------------------------
# The assessment


def evaluate(
    inv: InvoiceFacts,
    history: Sequence[PastInvoice],
    settings: RiskSettings = DEFAULT_SETTINGS,
    population: Population = NO_POPULATION,
) -> Assessment:
    """Every flag that applies to `inv` (heaviest first), the expected total,
    the money at stake and the score.

    `history`: the account's earlier issued regular invoices, newest first;
    only the first `settings.history` are used.
    """
    cur = inv.currency
    past = list(history)[: settings.history]
    found = _Flags(cur)
    expected_net = _check_lines(inv, past, population, found)
    expected = _expected_total(inv, past, expected_net)
    _check_totals(inv, past, expected, found)
    _check_subscriptions(inv, found)
    _check_tax(inv, past, settings, found)
    _check_corrections(inv, past, settings, population, found)
    _check_erp(inv, settings, found)
    flags = found.flags()
    if flags:
        stake = max(f.at_stake for f in flags)
    else:
        stake = abs(inv.total - expected) if expected is not None else ZERO
    stake_rep = settings.to_reporting(stake, cur).quantize(CENT, rounding=ROUND_HALF_UP)
    points = money_points(stake_rep)
    total_score = FLAGGED + min(score(flags), 300) + points if flags else min(points, FLAGGED - 1)
    return Assessment(flags, expected, stake_rep, total_score)


def _check_lines(inv: InvoiceFacts, past: list[PastInvoice], population: Population, found: _Flags) -> Decimal:
    """Per service and per fee against the account's history; returns the
    net charges the history predicts for this invoice."""
    cur = inv.currency
    expected_net = ZERO
    seen_services: set[str] = set()
    seen_subs: set[int] = set()
    for c in inv.charges:
        if c.usage:
            seen_services.add(c.service)
            expected_net += _check_usage(inv, c, past, population, found)
        elif c.subscription_id is not None:
            expected_net += _check_fee(inv, c, past, found, twice=c.subscription_id in seen_subs)
            seen_subs.add(c.subscription_id)
        else:
            expected_net += c.net

    # Services the account normally uses (most of the compared invoices, at
    # least two) and that this invoice does not charge.
    n = len(past)
    usual_services: dict[str, list[ChargeFact]] = {}
    for p in past:
        for c in p.charges:
            if c.usage and c.amount != 0:
                usual_services.setdefault(c.service, []).append(c)
    for service, lines in sorted(usual_services.items()):
        if service in seen_services and any(c.amount != 0 for c in inv.charges if c.usage and c.service == service):
            continue
        if len(lines) >= 2 and 2 * len(lines) > n:
            usual = median([c.net for c in lines])
            expected_net += usual
            who = f"all {_last(n)}" if len(lines) == n else f"{len(lines)} of {_last(n)}"
            found.add(
                "missing_usage",
                f"no {service} usage charged; it was on {who} (usually {format_money(usual, cur)})",
                usual,
            )

    # Services never billed on the compared invoices.
    if past:
        known = frozenset().union(*(p.services for p in past))
        for c in inv.charges:
            if c.service and c.service not in known and c.amount != 0:
                found.add(
                    "new_service",
                    f"{c.service} ({format_money(c.net, cur)}) billed for the first time; not on {_last(n)}",
                    c.net,
                )
    return expected_net


def _check_usage(
    inv: InvoiceFacts, c: ChargeFact, past: list[PastInvoice], population: Population, found: _Flags
) -> Decimal:
    cur = inv.currency
    s = c.service
    lines = [line for p in past if (line := p.usage_line(s)) is not None and line.quantity > 0]
    quantities = [line.quantity for line in lines]
    prices = [line.amount / line.quantity for line in lines]
    usual_price = median(prices) if len(prices) >= 2 else None
    usual_qty = median(quantities) if len(quantities) >= 3 else None
    shares = [line.discount / line.amount for line in lines if line.amount > 0]
    usual_share = median(shares) if len(shares) >= 2 else c.discount_share or ZERO
    price = c.unit_price

    # Quantity against the account's usual for this service.
    u = _unusual(c.quantity, quantities, ratio=QUANTITY_RATIO, floor=QUANTITY_FLOOR, down=DOWN_RATIO)
    if u is not None and c.quantity > 0:
        each = price if price is not None else (usual_price or ZERO)
        found.add(
            "usage_quantity",
            f"{s} quantity {_qty(c.quantity)} is {_times(u)} its usual {_qty(u.median)} ({_of(u.n)})",
            (c.quantity - u.median) * each,
        )

    # Price per unit against the account's usual, else against other accounts.
    if price is not None:
        u = _unusual(price, prices, ratio=PRICE_RATIO, floor=PRICE_FLOOR, margin=PRICE_MARGIN, minimum=2)
        if u is not None:
            found.add(
                "unit_price",
                f"{s} price per unit {_price(price, cur)} is {_times(u)} its usual "
                f"{_price(u.median, cur)} ({_of(u.n)})",
                c.amount - c.quantity * u.median,
            )
        elif usual_price is None:
            peer, lines_n = population.unit_prices.get((cur, s), (None, 0))
            if peer and lines_n >= PEER_MIN and peer > 0:
                r = price / peer
                if r >= PEER_RATIO or r <= 1 / PEER_RATIO:
                    u = _Usual(peer, lines_n, r)
                    found.add(
                        "peer_price",
                        f"{s} price per unit {_price(price, cur)} is {_times(u)} the "
                        f"{_price(peer, cur)} other accounts pay in the period "
                        f"(median of {lines_n} lines)",
                        c.amount - c.quantity * peer,
                    )

    # Completeness: records and the days they cover.
    known = [line for line in lines if line.records > 0]
    expected_amount = (usual_qty * usual_price) if usual_qty is not None and usual_price is not None else None
    if c.records > 0 and len(known) >= 3:
        usual_days = median([Decimal(line.days) for line in known])
        usual_records = median([Decimal(line.records) for line in known])
        few_days = usual_days >= GAP_MIN_DAYS and c.days <= usual_days * GAP_SHARE
        few_records = usual_records >= RECORDS_MIN and c.records <= usual_records * RECORDS_SHARE
        if few_days or few_records:
            short = max(expected_amount - c.amount, ZERO) if expected_amount is not None else ZERO
            found.add(
                "usage_gap",
                f"{s} usage covers {c.days} days from {c.records} records; usually "
                f"{_qty(usual_days)} days from {_qty(usual_records)} ({_of(len(known))}): "
                f"the feed may have stopped part-way",
                short,
            )

    # Duplicate-looking records.
    if c.duplicates > 0 and c.duplicates >= c.records * DUPLICATE_SHARE:
        found.add(
            "duplicate_usage",
            f"{s}: {c.duplicates:,} of {c.records:,} records repeat another record's "
            f"time, quantity and amount under a different id "
            f"({format_money(c.duplicate_amount, cur)})",
            c.duplicate_amount,
        )

    # Discount share against the usual share for this service.
    _check_discount(inv, c, shares, s, found)

    if expected_amount is None:
        return c.net
    return expected_amount * (1 - usual_share)


def _check_fee(inv: InvoiceFacts, c: ChargeFact, past: list[PastInvoice], found: _Flags, *, twice: bool) -> Decimal:
    cur = inv.currency
    name = c.description.split(" — ")[0]
    if twice:
        found.add("fee_change", f"{name} (subscription {c.subscription_id}) is charged twice on this invoice", c.net)
        return ZERO
    fees = [line for p in past for line in p.charges if line.subscription_id == c.subscription_id]
    shares = [line.discount / line.amount for line in fees if line.amount > 0]
    if not fees:
        return c.net
    usual = median([line.amount for line in fees])
    if usual > 0 and abs(c.amount - usual) > usual * FEE_TOLERANCE and abs(c.amount - usual) >= CENT:
        r = c.amount / usual
        how = f"{_ratio(r)}" if r >= 1 else (f"{_ratio(1 / r)} below" if r > 0 else "none of")
        found.add(
            "fee_change",
            f"{name} fee {format_money(c.amount, cur)} is {how} its usual "
            f"{format_amount(usual, cur)} (subscription {c.subscription_id}, "
            f"{_of(len(fees))})",
            c.amount - usual,
        )
    _check_discount(inv, c, shares, name, found)
    usual_share = median(shares) if len(shares) >= 2 else c.discount_share or ZERO
    return usual * (1 - usual_share)


def _check_discount(inv: InvoiceFacts, c: ChargeFact, shares: list[Decimal], what: str, found: _Flags) -> None:
    share = c.discount_share
    if share is None or len(shares) < 2:
        return
    usual = median(shares)
    if abs(share - usual) >= DISCOUNT_TOLERANCE:
        found.add(
            "discount_change",
            f"{what} discount is {_pct(share * HUNDRED)} of "
            f"{format_money(c.amount, inv.currency)}; usually {_pct(usual * HUNDRED)} "
            f"({_of(len(shares))})",
            (share - usual) * c.amount,
        )


def _expected_total(inv: InvoiceFacts, past: list[PastInvoice], expected_net: Decimal) -> Decimal | None:
    """What the history predicts before this invoice's manual corrections:
    each line at its usual quantity, price, fee and discount, services the
    account usually has included, taxed at the usual share."""
    if not past:
        return None
    taxed = [p for p in past if p.net > 0]
    if taxed:
        share = median([p.tax_total / p.net for p in taxed])
    else:
        share = inv.tax_total / inv.net if inv.net > 0 else ZERO
    return quantize(expected_net * (1 + share), inv.currency)


def _check_totals(inv: InvoiceFacts, past: list[PastInvoice], expected: Decimal | None, found: _Flags) -> None:
    cur = inv.currency
    total = inv.total
    totals = [p.total for p in past]
    usual = median(totals) if totals else None
    if total < 0:
        found.add(
            "negative_total",
            f"total is negative: {format_money(total, cur)}",
            (expected if expected and expected > 0 else ZERO) - total,
        )
    elif total == 0:
        tail = f"; usually {format_amount(usual, cur)} ({_of(len(totals))})" if usual and usual > 0 else ""
        found.add("zero_total", f"total is {format_money(total, cur)}{tail}", usual if usual and usual > 0 else ZERO)
    else:
        u = _unusual(total, totals, ratio=TOTAL_RATIO, floor=TOTAL_FLOOR, down=DOWN_RATIO)
        if u is not None:
            code = "total_spike" if u.up else "total_drop"
            found.add(
                code,
                f"total {format_money(total, cur)} is {_times(u)} its usual "
                f"{format_amount(u.median, cur)} ({_of(u.n)})",
                total - u.median,
            )


def _check_subscriptions(inv: InvoiceFacts, found: _Flags) -> None:
    """Fees for subscriptions that were not active in the period."""
    if inv.subscriptions is None:
        return
    seen: set[int] = set()
    for c in inv.charges:
        if c.subscription_id is None or c.subscription_id in seen:
            continue
        seen.add(c.subscription_id)
        sub = inv.subscriptions.get(c.subscription_id)
        why = inactive_reason(sub, inv.period_from, inv.period_to)
        if why:
            name = sub.name if sub else c.description.split(" — ")[0]
            found.add(
                "inactive_subscription",
                f"{name} (subscription {c.subscription_id}) charged {format_money(c.net, inv.currency)} but {why}",
                c.net,
            )


def _check_tax(inv: InvoiceFacts, past: list[PastInvoice], settings: RiskSettings, found: _Flags) -> None:
    """Tax share of the taxable base against the account's usual share."""
    net = inv.taxable
    taxed = [p for p in past if p.taxable > 0]
    if net <= 0 or not taxed:
        return
    share = inv.tax_total * HUNDRED / net
    usual = median([p.tax_total * HUNDRED / p.taxable for p in taxed])
    if abs(share - usual) > settings.tax_tolerance:
        base = "net charges and corrections" if inv.correction_total else "net charges"
        found.add(
            "tax_ratio",
            f"tax is {_pct(share)} of the {base} {format_amount(net, inv.currency)}; "
            f"usually {_pct(usual)} ({_of(len(taxed))})",
            (share - usual) * net / HUNDRED,
        )


def _check_corrections(
    inv: InvoiceFacts, past: list[PastInvoice], settings: RiskSettings, population: Population, found: _Flags
) -> None:
    """Manual corrections by their absolute size: against the account's usual
    total, its earlier corrections, the store's usual corrections, and (as
    before) against this invoice's charges."""
    if not inv.corrections:
        return
    cur = inv.currency
    limit = settings.correction_share
    base = inv.before_corrections
    usual_total = median([p.total for p in past]) if past else None
    earlier = [abs(a) for p in past for a in p.corrections if a]
    reasons: list[str] = []
    stake = ZERO
    for amount in sorted(inv.corrections, key=abs, reverse=True):
        size = abs(amount)
        what = f"{_kind(amount)} of {format_money(size, cur)}"
        why = None
        if usual_total is not None and usual_total > 0 and size > usual_total * limit:
            why = (
                f"{what} is {_pct(size * HUNDRED / usual_total)} of the account's usual total "
                f"{format_amount(usual_total, cur)} (limit {_pct(limit * HUNDRED)})"
            )
        elif (
            earlier
            and size > CORRECTION_HISTORY_FACTOR * max(earlier)
            and (usual_total is None or size > usual_total * limit / 5)
        ):
            why = (
                f"{what} is {_ratio(size / max(earlier))} the account's largest earlier correction "
                f"{format_amount(max(earlier), cur)}"
            )
        elif population.typical_correction and settings.to_reporting(size, cur) > (
            CORRECTION_PEER_FACTOR * population.typical_correction
        ):
            rep = settings.reporting_currency
            why = (
                f"{what} is {_ratio(settings.to_reporting(size, cur) / population.typical_correction)} "
                f"the store's usual largest corrections ({format_money(population.typical_correction, rep)}, "
                f"95th percentile)"
            )
        elif base <= 0:
            why = f"{what} on an invoice whose charges total {format_money(base, cur)}"
        elif size / base > limit:
            why = (
                f"{what} is {_pct(size * HUNDRED / base)} of the total before corrections "
                f"{format_amount(base, cur)} (limit {_pct(limit * HUNDRED)})"
            )
        if why:
            reasons.append(why)
            stake += size
    if not reasons and len(inv.corrections) > 1 and base > 0:
        together = abs(inv.correction_total) / base
        if together > limit:
            reasons.append(
                f"{len(inv.corrections)} corrections of {format_money(inv.correction_total, cur)} "
                f"together are {_pct(together * HUNDRED)} of the total before corrections "
                f"{format_amount(base, cur)} (limit {_pct(limit * HUNDRED)})"
            )
            stake = abs(inv.correction_total)
    if reasons:
        found.add("large_correction", _join(reasons), stake)


def _check_erp(inv: InvoiceFacts, settings: RiskSettings, found: _Flags) -> None:
    """The ERP's total against the invoice's, both in the reporting currency (the rates in settings)."""
    if inv.external_total is None:
        return
    ext_cur = inv.external_currency or inv.currency
    rep = settings.reporting_currency
    ours = settings.to_reporting(inv.total, inv.currency)
    theirs = settings.to_reporting(inv.external_total, ext_cur)
    gap = abs(theirs - ours)
    allowed = settings.erp_allowance(ours)
    if gap <= allowed:
        return
    rate = settings.to_reporting(Decimal(1), inv.currency)
    gap_words = format_money(quantize(gap, rep), rep)
    converted = "" if ext_cur == inv.currency else f" ({format_money(quantize(theirs, rep), rep)})"
    limit = f"{settings.erp_tolerance}%" if settings.erp_tolerance_percent else format_money(allowed, rep)
    found.add(
        "erp_mismatch",
        f"ERP total {format_money(inv.external_total, ext_cur)}{converted} differs from the invoice's "
        f"{format_money(inv.total, inv.currency)} by {gap_words} (tolerance {limit})",
        gap / rate if rate else gap,
    )


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


__all__ = [
    "FLAGGED",
    "is_flagged",
    "WEIGHTS",
    "SHORT",
    "TITLES",
    "ChargeFact",
    "SubscriptionFact",
    "InvoiceFacts",
    "PastInvoice",
    "Population",
    "NO_POPULATION",
    "RiskSettings",
    "RiskSettingsError",
    "DEFAULT_SETTINGS",
    "Flag",
    "Assessment",
    "evaluate",
    "score",
    "money_points",
    "dumps_flags",
    "parse_flags",
    "compact",
    "inactive_reason",
    "parse_rates",
    "median",
]
