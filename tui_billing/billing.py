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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .money import ZERO, quantize

if TYPE_CHECKING:
    from .store.models import Account, Invoice

HUNDRED = Decimal(100)
_IN_CHUNK = 500  # ids per IN (...) list

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
    return load_period_data_many([account], period_from, period_to)[account.id]


def load_period_data_many(
    accounts: Sequence[Account], period_from: dt.date, period_to: dt.date
) -> dict[int, PeriodData]:
    """The period data of each account (by id): one query per kind of data
    for all of them, so a bill run's chunk costs a handful of queries, not a
    handful per account.  Raw SQL on purpose (as risk_store's): peewee costs
    more to build a chunk's IN list and rows than the database to run them."""
    from .store.models import Discount, Subscription, TaxRule, Xdr, database

    db = database.obj
    p = db.param
    ids = sorted({a.id for a in accounts})
    of_accounts = f"account_id IN ({', '.join([p] * len(ids))})"
    start, end = period_bounds_utc(period_from, period_to)
    in_period = f"{of_accounts} AND time >= {p} AND time < {p}"
    args = [*ids, Xdr.time.db_value(start), Xdr.time.db_value(end)]
    money, qty = Xdr.amount.python_value, Xdr.quantity.python_value
    # Risk evidence: how many (UTC) days the records cover, and records
    # repeating another's time, quantity and amount under a different id.
    repeats: dict[tuple[int, str], tuple[int, Decimal]] = {}
    for acc_id, service, n, amount in db.execute_sql(
        f"SELECT account_id, service, COUNT(id), amount FROM xdr WHERE {in_period} "
        "GROUP BY account_id, service, time, quantity, amount HAVING COUNT(id) > 1",
        args,
    ):
        count, total = repeats.get((acc_id, service), (0, ZERO))
        repeats[(acc_id, service)] = (count + n - 1, total + (n - 1) * money(amount))
    usage: dict[int, list[Usage]] = {i: [] for i in ids}
    for acc_id, service, quantity, amount, records, days in db.execute_sql(
        "SELECT account_id, service, SUM(quantity), SUM(amount), COUNT(id), COUNT(DISTINCT date(time)) "
        f"FROM xdr WHERE {in_period} GROUP BY account_id, service ORDER BY account_id, service",
        args,
    ):
        usage[acc_id].append(
            Usage(
                service,
                qty(quantity or 0),
                money(amount or 0),
                records,
                days,
                *repeats.get((acc_id, service), (0, ZERO)),
            )
        )
    billable = sorted(BILLABLE_SUBSCRIPTION_STATUSES)
    recurring: dict[int, list[Recurring]] = {i: [] for i in ids}
    for sub_id, acc_id, name, service, fee in db.execute_sql(
        f"SELECT id, account_id, name, service, fee FROM subscription WHERE {of_accounts} "
        f"AND status IN ({', '.join([p] * len(billable))}) "
        f"AND (active_from IS NULL OR active_from <= {p}) AND (active_to IS NULL OR active_to >= {p}) ORDER BY id",
        [*ids, *billable, Subscription.active_from.db_value(period_to), Subscription.active_to.db_value(period_from)],
    ):
        recurring[acc_id].append(Recurring(sub_id, name, service, Subscription.fee.python_value(fee)))
    discounts: dict[int, list[DiscountRule]] = {i: [] for i in ids}
    for acc_id, percent, service, description in db.execute_sql(
        f"SELECT account_id, percent, service, description FROM discount WHERE {of_accounts} ORDER BY id", ids
    ):
        discounts[acc_id].append(DiscountRule(Discount.percent.python_value(percent), service, description))
    rules = db.execute_sql(
        f"SELECT account_id, customer_class_id, name, percent, description FROM tax_rule "
        f"WHERE {of_accounts} OR account_id IS NULL ORDER BY id",
        ids,
    ).fetchall()
    return {
        a.id: PeriodData(
            a.currency,
            period_from,
            period_to,
            tuple(usage[a.id]),
            tuple(recurring[a.id]),
            tuple(discounts[a.id]),
            tuple(
                TaxRate(name, TaxRule.percent.python_value(percent), description)
                for acc_id, class_id, name, percent, description in rules
                if acc_id == a.id or (acc_id is None and class_id in (a.customer_class_id, None))
            ),
        )
        for a in accounts
    }


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
    write_lines_many({invoice_id: calc})


def write_lines_many(calcs: Mapping[int, Calculation], *, new: bool = False) -> None:
    """Each invoice's (by id) charge and tax lines replaced by its
    calculation's: one DELETE and one INSERT per table for all of them
    (new: invoices just created, no lines to delete)."""
    from .store.models import ChargeLine

    _replace_lines(
        ChargeLine,
        [] if new else list(calcs),
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
            for invoice_id, calc in calcs.items()
            for c in calc.charges
        ],
    )
    write_taxes_many({i: calc.taxes for i, calc in calcs.items()}, new=new)


def write_taxes(invoice_id: int, taxes: list[Tax]) -> None:
    write_taxes_many({invoice_id: taxes})


def write_taxes_many(taxes: Mapping[int, list[Tax]], *, new: bool = False) -> None:
    from .store.models import TaxLine

    _replace_lines(
        TaxLine,
        [] if new else list(taxes),
        [
            {
                "invoice": invoice_id,
                "position": t.position,
                "name": t.name,
                "description": t.description,
                "amount": t.amount,
            }
            for invoice_id, lines in taxes.items()
            for t in lines
        ],
    )


def _replace_lines(model: Any, invoice_ids: list[int], rows: list[dict[str, Any]]) -> None:
    """The lines (`model`) of these invoices deleted, then `rows` inserted in one statement."""
    from .store.bulk import insert_models
    from .store.models import ids_in

    for start in range(0, len(invoice_ids), _IN_CHUNK):
        model.delete().where(ids_in(model.invoice, invoice_ids[start : start + _IN_CHUNK])).execute()
    insert_models(model, rows)


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
