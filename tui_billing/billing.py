"""The calculation: period data of an account -> charge lines, taxes, total.

`calculate` is pure and is the only code that computes invoice amounts; the
bill run, reissue and the demo generator all call it.

Rounding: every line (charge amount, discount, tax) is rounded half-up to the
currency's minor unit on its own; totals are exact sums of rounded lines, so
total = charges − discounts + taxes + corrections holds to the cent.

Manual corrections (adjust) are net amounts, taxed like the charges: each tax
is a share of charges − discounts + corrections (README, *Adjust*).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from .money import ZERO, quantize

if TYPE_CHECKING:
    from .store.models import Account, Invoice

HUNDRED = Decimal(100)

# Subscription statuses that are charged their recurring fee for a period
# they overlap; the others (ordered, failed installs, deleted…) are not.
BILLABLE_SUBSCRIPTION_STATUSES = frozenset(
    {
        "active",
        "delivered",
        "graced",
        "renewing",
        "renewal_failed",
        "updating",
        "updating_failed",
        "stopping",
        "stopping_failed",
        "waiting_for_manual_approve",
        "blocked",
    }
)


@dataclass(frozen=True)
class Usage:
    """xDRs of one service in the period, summed."""

    service: str
    quantity: Decimal
    amount: Decimal
    records: int = 0
    days: int = 0  # days of the period the records cover
    duplicates: int = 0  # records repeating another's time, quantity and amount
    duplicate_amount: Decimal = ZERO


@dataclass(frozen=True)
class Recurring:
    subscription_id: int | None
    name: str
    service: str
    fee: Decimal


@dataclass(frozen=True)
class DiscountRule:
    percent: Decimal
    service: str | None = None  # None: every service
    description: str = ""


@dataclass(frozen=True)
class TaxRate:
    name: str
    percent: Decimal  # negative: a refund
    description: str = ""


@dataclass(frozen=True)
class PeriodData:
    currency: str
    period_from: dt.date
    period_to: dt.date
    usage: tuple[Usage, ...] = ()
    recurring: tuple[Recurring, ...] = ()
    discounts: tuple[DiscountRule, ...] = ()
    taxes: tuple[TaxRate, ...] = ()


@dataclass(frozen=True)
class Charge:
    position: int
    description: str
    service: str
    quantity: Decimal
    discount: Decimal
    amount: Decimal  # before discount
    subscription_id: int | None = None
    records: int = 0  # usage lines: Usage.records, .days, .duplicates, .duplicate_amount
    days: int = 0
    duplicates: int = 0
    duplicate_amount: Decimal = ZERO


@dataclass(frozen=True)
class Tax:
    position: int
    name: str
    description: str
    amount: Decimal


@dataclass
class Calculation:
    charges: list[Charge] = field(default_factory=list)
    taxes: list[Tax] = field(default_factory=list)
    subtotal: Decimal = ZERO
    discount_total: Decimal = ZERO
    tax_total: Decimal = ZERO

    def total(self, corrections: Decimal = ZERO) -> Decimal:
        return self.subtotal - self.discount_total + self.tax_total + corrections

    def totals(self, corrections: Decimal = ZERO) -> dict[str, Decimal]:
        """The invoice columns this calculation sets."""
        total = self.total(corrections)
        return {
            "subtotal": self.subtotal,
            "discount_total": self.discount_total,
            "tax_total": self.tax_total,
            "correction_total": corrections,
            "total": total,
            "outstanding": total,
        }


def _discount_for(service: str, rules: tuple[DiscountRule, ...]) -> DiscountRule | None:
    """The most specific rule: one for this service beats one for all."""
    specific = [r for r in rules if r.service == service]
    general = [r for r in rules if r.service is None]
    found = specific or general
    return found[0] if found else None


def calculate(data: PeriodData, corrections: Decimal = ZERO) -> Calculation:
    """The invoice's lines; `corrections` (net, signed) join the taxable base."""
    cur = data.currency
    calc = Calculation()
    lines: list[tuple[str, str, Decimal, Decimal, int | None, Usage | None]] = []
    for item in sorted(data.recurring, key=lambda r: (r.name, r.subscription_id or 0)):
        lines.append((f"{item.name} — monthly fee", item.service, Decimal(1), item.fee, item.subscription_id, None))
    for used in sorted(data.usage, key=lambda u: u.service):
        lines.append((f"{used.service} usage", used.service, used.quantity, used.amount, None, used))
    for position, (description, service, quantity, raw, sub_id, use) in enumerate(lines, 1):
        amount = quantize(raw, cur)
        rule = _discount_for(service, data.discounts)
        discount = quantize(amount * rule.percent / HUNDRED, cur) if rule and amount > 0 else ZERO
        evidence = (use.records, use.days, use.duplicates, use.duplicate_amount) if use else ()
        calc.charges.append(
            Charge(
                position, description, service, quantity.quantize(Decimal("0.001")), discount, amount, sub_id, *evidence
            )
        )
        calc.subtotal += amount
        calc.discount_total += discount
    calc.taxes = taxes_on(calc.subtotal - calc.discount_total + corrections, data.taxes, cur)
    calc.tax_total = sum((t.amount for t in calc.taxes), ZERO)
    return calc


def taxes_on(base: Decimal, rates: tuple[TaxRate, ...], currency: str) -> list[Tax]:
    """One tax line per rate on the taxable base, each rounded on its own."""
    return [
        Tax(
            position,
            rate.name,
            rate.description or f"{rate.percent.normalize():f} % of {quantize(base, currency)}",
            quantize(base * rate.percent / HUNDRED, currency),
        )
        for position, rate in enumerate(rates, 1)
    ]


# --------------------------------------------------------------------------
# Store side: load an account's period data, rewrite an invoice's lines.


def _scaled(value: int | Decimal | None) -> Decimal:
    from .store.fields import MONEY_SCALE

    return Decimal(int(value or 0)).scaleb(-MONEY_SCALE)


def period_bounds_utc(
    period_from: dt.date, period_to: dt.date, tz: dt.tzinfo | None = None
) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a period as naive UTC, the way xDR times are stored.

    Period dates are calendar days in the billing time zone (store setting
    `timezone`), so the period starts at local midnight of `period_from` and
    ends at local midnight after `period_to`.
    """
    if tz is None:
        from .store.settings import load_settings

        tz = load_settings().tz

    def utc(day: dt.date) -> dt.datetime:
        local = dt.datetime.combine(day, dt.time.min).replace(tzinfo=tz)
        return local.astimezone(dt.UTC).replace(tzinfo=None)

    return utc(period_from), utc(period_to + dt.timedelta(days=1))


def load_period_data(account: Account, period_from: dt.date, period_to: dt.date) -> PeriodData:
    from peewee import SQL, NodeList, fn

    from .store.fields import QUANTITY_SCALE
    from .store.models import Discount, Subscription, Xdr, tuple_rows

    start, end = period_bounds_utc(period_from, period_to)
    in_period = (Xdr.account == account.id) & (Xdr.time >= start) & (Xdr.time < end)
    # Risk evidence: how many (UTC) days the records cover, and records
    # repeating another's time, quantity and amount under a different id.
    day = NodeList((SQL("DISTINCT"), fn.date(Xdr.time)))
    repeats: dict[str, tuple[int, Decimal]] = {}
    for service, n, amount in tuple_rows(
        Xdr.select(Xdr.service, fn.COUNT(Xdr.id), Xdr.amount)
        .where(in_period)
        .group_by(Xdr.service, Xdr.time, Xdr.quantity, Xdr.amount)
        .having(fn.COUNT(Xdr.id) > 1)
        .tuples()
    ):
        count, money = repeats.get(service, (0, ZERO))
        repeats[service] = (count + n - 1, money + (n - 1) * amount)  # amount: converted by its field
    usage = tuple(
        Usage(
            row[0],
            Decimal(int(row[1] or 0)).scaleb(-QUANTITY_SCALE),
            _scaled(row[2]),
            row[3],
            row[4],
            *repeats.get(row[0], (0, ZERO)),
        )
        for row in tuple_rows(
            Xdr.select(Xdr.service, fn.SUM(Xdr.quantity), fn.SUM(Xdr.amount), fn.COUNT(Xdr.id), fn.COUNT(day))
            .where(in_period)
            .group_by(Xdr.service)
            .tuples()
        )
    )
    recurring = tuple(
        Recurring(s.id, s.name, s.service, s.fee)
        for s in Subscription.select().where(
            (Subscription.account == account.id)
            & Subscription.status.in_(sorted(BILLABLE_SUBSCRIPTION_STATUSES))
            & ((Subscription.active_from.is_null()) | (Subscription.active_from <= period_to))
            & ((Subscription.active_to.is_null()) | (Subscription.active_to >= period_from))
        )
    )
    discounts = tuple(
        DiscountRule(d.percent, d.service, d.description)
        for d in Discount.select().where(Discount.account == account.id).order_by(Discount.id)
    )
    return PeriodData(account.currency, period_from, period_to, usage, recurring, discounts, load_tax_rates(account))


def load_tax_rates(account: Account) -> tuple[TaxRate, ...]:
    """The account's tax rules: its own, its class's, and the store-wide ones."""
    from .store.models import TaxRule

    return tuple(
        TaxRate(t.name, t.percent, t.description)
        for t in TaxRule.select()
        .where(
            (TaxRule.account == account.id)
            | ((TaxRule.account.is_null()) & (TaxRule.customer_class == account.customer_class_id))
            | ((TaxRule.account.is_null()) & (TaxRule.customer_class.is_null()))
        )
        .order_by(TaxRule.id)
    )


def write_lines(invoice_id: int, calc: Calculation) -> None:
    from .store.models import ChargeLine

    ChargeLine.delete().where(ChargeLine.invoice == invoice_id).execute()
    if calc.charges:
        ChargeLine.insert_many(
            [
                {
                    "invoice": invoice_id,
                    "position": c.position,
                    "description": c.description,
                    "service": c.service,
                    "subscription": c.subscription_id,
                    "quantity": c.quantity,
                    "discount": c.discount,
                    "amount": c.amount,
                    "records": c.records,
                    "days": c.days,
                    "duplicates": c.duplicates,
                    "duplicate_amount": c.duplicate_amount,
                }
                for c in calc.charges
            ]
        ).execute()
    write_taxes(invoice_id, calc.taxes)


def write_taxes(invoice_id: int, taxes: list[Tax]) -> None:
    from .store.models import TaxLine

    TaxLine.delete().where(TaxLine.invoice == invoice_id).execute()
    if taxes:
        TaxLine.insert_many(
            [
                {
                    "invoice": invoice_id,
                    "position": t.position,
                    "name": t.name,
                    "description": t.description,
                    "amount": t.amount,
                }
                for t in taxes
            ]
        ).execute()


def recalculate(inv: Invoice) -> dict[str, Decimal]:
    """Recompute an invoice from current xDRs and subscriptions.

    Charge and tax lines are rewritten; corrections made by adjust are kept
    and stay in the total.  Returns the invoice columns to update.
    """
    from .store.models import Account

    account = Account.get_by_id(inv.account_id)
    calc = calculate(load_period_data(account, inv.period_from, inv.period_to), inv.correction_total)
    write_lines(inv.id, calc)
    return calc.totals(inv.correction_total)
