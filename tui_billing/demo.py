"""A believable, deterministic demo store (`tui-billing demo`).

Same seed + same --now -> the same data.  Invoices are built with the real
calculation (billing.calculate) from synthetic usage, so every total equals
the sum of its lines; the invoices under review and the open ones also have
the xDRs behind them stored, so a reissue or closing recalculates to the same
usage.
Written in batches with executemany: a million invoices fit in memory-flat
batches of BATCH invoices.

Risk review: each account's usage is stable month to month (within ±25 % of
its own level, at its own price per unit, from RECORDS records spread over
the period), so normal invoices raise no flags; about `anomalies` (0.4 %) of
the invoices that have three earlier ones get a planted anomaly (a spike, a
zero total, missing usage, a fee for an inactive subscription, a new service,
an unusual tax, a large correction).  Every invoice's flags are computed with
the same pure `risk.evaluate` as the bill run, from the account's history
kept in memory.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import sys
from collections import deque
from collections.abc import Iterable
from decimal import Decimal
from typing import NamedTuple

from . import risk
from . import statuses as S
from .billing import BILLABLE_SUBSCRIPTION_STATUSES as _BILLABLE
from .billing import DiscountRule, PeriodData, Recurring, TaxRate, Usage, calculate
from .money import quantize
from .offpeak import next_window_start
from .revisions import LineState, Snapshot
from .store.bulk import dbv, insert_rows, next_id, sync_sequence
from .store.models import (
    Account,
    AuditEvent,
    ChargeLine,
    Correction,
    CustomerClass,
    Discount,
    Invoice,
    InvoiceSnapshot,
    Payment,
    Subscription,
    TaxLine,
    TaxRule,
    Xdr,
    database,
)
from .store.settings import advance_sequence, format_number, load_settings, reserve, save_setting

BATCH = 5000
# Who the demo's audit trail says approved and corrected invoices.
ADMINS = ("anna.kowalska", "marek.nowak", "li.chen")
RECORDS = 10  # xDRs per service and period, spread evenly from the first day to the last


class ClassSpec(NamedTuple):
    name: str
    send_mode: str
    hold_days: int
    net_days: int


class Service(NamedTuple):
    name: str
    unit: str
    price: Decimal  # per unit (150 times this for a JPY account)


class Plan(NamedTuple):
    name: str
    service: str
    fee: str  # per period (150 times this for a JPY account)


CLASSES = [
    ClassSpec("Enterprise", "after_review", 5, 26),
    ClassSpec("Small Business", "immediately", 0, 14),
    ClassSpec("Residential", "immediately", 0, 30),
    ClassSpec("Pilot customers", "after_review", 3, 3),  # misconfigured on purpose: the warning shows
    ClassSpec("Wholesale", "after_review", 2, 17),
]
PEOPLE = [
    "Zoë Łukasiewicz",
    "José Núñez",
    "Björk Guðmundsdóttir",
    "Nguyễn Văn An",
    "Søren Østergaard",
    "Aïcha Benali",
    "Jürgen Groß",
    "Małgorzata Wójcik",
    "Chloé Lefèvre",
    "Ingrid Bergström",
    "Dmitri Ivanov",
    "Siobhán Ní Bhriain",
    "Ana Conceição",
    "Kenji Satō",
    "Priya Raghunathan",
]
COMPANIES = [
    "Ōsaka Trading KK",
    "Müller & Söhne GmbH",
    "Café Olé SARL",
    "Ångström Labs AB",
    "Dvořák Audio s.r.o.",
    "Northwind Logistics Ltd",
    "Fjällräven Outfitters",
    "Señor Frío S.L.",
    "Acme Widgets Inc",
    "Blue Harbour Shipping",
    "Kraków Data Sp. z o.o.",
    "Zürich Re Partners AG",
    "Tōkyō Cloud Works",
    "Bäckerei Schäfer",
    "Helios Solar Energy",
]
SUFFIXES = ["", " Holdings", " Group", " International", " Services", " Europe", " Nordic", " Labs"]
CURRENCIES = [("EUR", 50), ("USD", 20), ("GBP", 12), ("PLN", 8), ("JPY", 5), ("CHF", 5)]
SERVICES = [
    Service("Voice calls", "min", Decimal("0.012")),
    Service("SMS", "msg", Decimal("0.045")),
    Service("Mobile data", "GB", Decimal("1.90")),
    Service("Toll-free inbound", "min", Decimal("0.021")),
    Service("Cloud PBX seats", "seat", Decimal("6.50")),
]
PLANS = [
    Plan("Business Fibre 1 Gbit/s", "Internet", "89.00"),
    Plan("SIP Trunk 30 channels", "Voice calls", "149.00"),
    Plan("Mobile Fleet 50", "Mobile data", "450.00"),
    Plan("Static IP block /29", "Internet", "25.00"),
    Plan("24/7 Support Premium", "Support", "199.00"),
    Plan("Home Broadband 300", "Internet", "39.90"),
]
ACCOUNT_TYPES = [("business", 45), ("residential", 30), ("reseller", 15), ("wholesale", 10)]


# --------------------------------------------------------------------------
# The rows the demo writes, one named tuple per table: each field named (and
# ordered) as the column insert_rows fills, its value as the column stores it
# (store.bulk.dbv).  Plain tuples to the driver, read by name here.

Scaled = int  # an exact decimal as its column stores it: scaled to an integer (store.fields)


class AccountValues(NamedTuple):
    id: int
    name: str
    email: str
    account_type: str
    customer_class: int
    currency: str
    balance: Scaled
    payment_model: str
    address: str
    search_text: str


class SubscriptionValues(NamedTuple):
    id: int
    account: int
    name: str
    service: str
    status: str
    fee: Scaled
    active_from: dt.date


class InvoiceValues(NamedTuple):
    id: int
    number: str
    account: int
    customer_class: int
    kind: str
    payment_model: str
    status: str
    currency: str
    period_from: dt.date
    period_to: dt.date
    generated_at: dt.datetime | None
    issue_date: dt.date
    due_date: dt.date | None
    review_deadline: dt.datetime | None
    subtotal: Scaled
    discount_total: Scaled
    tax_total: Scaled
    correction_total: Scaled
    total: Scaled
    outstanding: Scaled
    external_total: Scaled | None
    external_currency: str | None
    erp_reference: str | None
    erp_date: dt.date | None
    erp_confirmed_at: dt.datetime | None
    approved_at: dt.datetime | None
    approved_by: str | None
    closed_at: dt.datetime | None
    revision: int
    reissue_mode: str | None
    reissue_requested_at: dt.datetime | None
    reissue_after: dt.datetime | None
    sent_at: dt.datetime | None
    sent_revision: int | None
    risk_score: int
    risk_flags: str
    expected_total: Scaled | None
    risk_at_stake: Scaled | None


class ChargeLineValues(NamedTuple):
    invoice: int
    position: int
    description: str
    service: str | None
    subscription: int | None
    quantity: Scaled
    discount: Scaled
    amount: Scaled
    records: int
    days: int
    duplicates: int
    duplicate_amount: Scaled


class TaxLineValues(NamedTuple):
    invoice: int
    position: int
    name: str
    description: str
    amount: Scaled


class CorrectionValues(NamedTuple):
    invoice: int
    position: int
    kind: str
    description: str
    amount: Scaled
    created_by: str
    approved_at: dt.datetime
    revision: int


class PaymentValues(NamedTuple):
    invoice: int
    number: str
    description: str
    created_at: dt.datetime | None
    due_date: dt.date
    status: str
    amount: Scaled
    paid_at: dt.datetime | None


class XdrValues(NamedTuple):
    xdr_id: str
    account: int
    service: str
    time: dt.datetime
    quantity: Scaled
    amount: Scaled


class AuditValues(NamedTuple):
    at: dt.datetime
    actor: str
    action: str
    invoice: int
    number: str
    before_status: str | None
    before_total: Scaled | None
    after_status: str | None
    after_total: Scaled
    detail: str


class SnapshotValues(NamedTuple):
    invoice: int
    revision: int
    taken_at: dt.datetime
    action: str
    subtotal: Scaled
    discount_total: Scaled
    tax_total: Scaled
    correction_total: Scaled
    total: Scaled
    lines: str


class _State(NamedTuple):
    """An invoice's status and total before or after an audited event."""

    status: str | None
    total: Decimal | None


def _insert(model, values: type[NamedTuple], rows: list) -> None:
    insert_rows(model, list(values._fields), rows)


def is_empty() -> bool:
    return not Invoice.select().exists() and not Account.select().exists()


def _weighted(rng: random.Random, items):
    return rng.choices([i for i, _ in items], weights=[w for _, w in items])[0]


def _month_start(day: dt.date, back: int) -> dt.date:
    y, m = divmod(day.year * 12 + day.month - 1 - back, 12)
    return dt.date(y, m + 1, 1)


def _month_end(start: dt.date) -> dt.date:
    return _month_start(start, -1) - dt.timedelta(days=1)


def build(
    ctx,
    *,
    invoices: int = 2000,
    seed: int = 1,
    quiet: bool = False,
    anomalies: float = 0.004,
    planted: list | None = None,
) -> dict[str, int]:
    """Fill the store; `planted` (if given) receives (invoice number, flag code)
    for every planted anomaly."""
    rng = random.Random(seed)
    # Separate streams: the seed's main stream (statuses, corrections…) is
    # the same whatever the usage levels and anomalies draw.
    usage_rng = random.Random(f"{seed}:usage")
    plant_rng = random.Random(f"{seed}:anomalies")
    progress = _Progress(invoices, quiet)
    today = ctx.clock.today()
    now = ctx.clock.now()
    months = 13  # 11 sent months, the period under review, the open month
    n_accounts = max(12, -(-invoices // months))

    with database.atomic():
        # The customer's PDF prints quantities with their unit.
        if not load_settings()["service_units"]:
            save_setting("service_units", "; ".join(f"{s.name}={s.unit}" for s in SERVICES))
        classes = _classes()
        accounts = _accounts(rng, n_accounts, classes)
        subs = _subscriptions(rng, accounts)
        discounts, taxes = _pricing(rng, accounts, classes)
    settings = load_settings()

    stats = {
        "invoices": 0,
        "accounts": len(accounts),
        "subscriptions": sum(len(v) for v in subs.values()),
        "xdrs": 0,
        "charge lines": 0,
        "payments": 0,
        "corrections": 0,
        "flagged": 0,
    }
    risk_cfg = settings.risk
    history: dict[int, deque] = {}
    sub_facts = {
        s["id"]: risk.SubscriptionFact(s["id"], s["name"], s["status"], s["active_from"])
        for v in subs.values()
        for s in v
    }
    # Plants go to invoices with three earlier ones, four times as often in
    # the two newest periods (where the review queue is): ~`anomalies` overall.
    plant_p = {True: 4 * anomalies, False: anomalies}
    inv_id = next_id(Invoice)
    with database.atomic():
        first_seq = reserve("invoice", invoices)
    # Oldest month first; the first `skip` slots are left out so exactly
    # `invoices` are made and the newest periods are always complete.
    skip = months * len(accounts) - invoices
    plan: Iterable[tuple[int, dict]] = ((back, acc) for back in range(months - 1, -1, -1) for acc in accounts)
    plan = itertools.islice(plan, skip, None)
    batch = _Batch(
        offpeak_at=next_window_start(ctx.clock, *settings.offpeak), tz=settings.tz, rng=random.Random(f"{seed}:history")
    )
    for i, (back, account) in enumerate(plan):
        period_from = _month_start(today, back)
        period_to = _month_end(period_from)
        cls = classes[account["class"]]
        status = _status_for(rng, back, cls, account)
        data = _period_data(rng, usage_rng, account, period_from, period_to, subs, discounts, taxes)
        past = history.setdefault(account["id"], deque(maxlen=risk_cfg.history))
        plant = None
        if status != S.OPEN and len(past) >= 3 and plant_rng.random() < plant_p[back <= 1]:
            data, plant = _plant(plant_rng, account, data, status, subs, past)
        calc = calculate(data)
        facts = batch.add_invoice(
            rng,
            inv_id,
            first_seq + i,
            settings.number_format,
            account,
            cls,
            status,
            period_from,
            period_to,
            data,
            calc,
            now,
            today,
            stats,
            back,
            past,
            risk_cfg,
            sub_facts,
            plant,
        )
        if facts is not None:  # issued: the next months compare with it
            past.appendleft(risk.PastInvoice.of(facts))
        if plant and planted is not None:
            planted.append((batch.last_number, plant))
        inv_id += 1
        if len(batch.invoices) >= BATCH:
            batch.flush(stats)
            progress(stats["invoices"])
    batch.flush(stats)
    progress(stats["invoices"])
    for model in (Invoice, ChargeLine, TaxLine, Correction, Payment, Xdr):
        sync_sequence(model)
    with database.atomic():  # payments made later are numbered after the demo's (PMT-<invoice id>)
        advance_sequence("payment", inv_id - 1)
    database.execute_sql("ANALYZE")  # fresh planner statistics after a bulk load
    with database.atomic():
        AuditEvent.create(
            at=now, actor=ctx.actor, action="demo", detail=json.dumps({"invoices": stats["invoices"], "seed": seed})
        )
    progress.done()
    return stats


class _Progress:
    def __init__(self, total: int, quiet: bool):
        self.total = total
        self.enabled = not quiet and sys.stderr.isatty()

    def __call__(self, done: int) -> None:
        if self.enabled:
            pct = done * 100 // max(self.total, 1)
            bar = "#" * (pct * 30 // 100)
            sys.stderr.write(f"\rdemo [{bar:<30}] {pct:3d}% {done:,}/{self.total:,} invoices")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _classes() -> list[dict]:
    out = []
    for spec in CLASSES:
        cls, _ = CustomerClass.get_or_create(
            name=spec.name,
            defaults={"send_mode": spec.send_mode, "hold_days": spec.hold_days, "net_days": spec.net_days},
        )
        out.append(
            {
                "id": cls.id,
                "name": spec.name,
                "send_mode": cls.send_mode,
                "hold_days": cls.hold_days,
                "net_days": cls.net_days,
            }
        )
    return out


def _accounts(rng: random.Random, n: int, classes: list[dict]) -> list[dict]:
    rows, out = [], []
    first = next_id(Account)
    for i in range(n):
        kind = _weighted(rng, ACCOUNT_TYPES)
        if kind == "residential":
            name = rng.choice(PEOPLE)
            cls_index = 2 if rng.random() < 0.9 else 3
        else:
            name = rng.choice(COMPANIES) + rng.choice(SUFFIXES)
            cls_index = {"business": rng.choice([0, 0, 1, 3]), "reseller": rng.choice([0, 1]), "wholesale": 4}[kind]
        if i >= len(PEOPLE) + len(COMPANIES):
            name = f"{name} #{i + 1}"
        elif i < len(COMPANIES):
            name = COMPANIES[i]
            kind, cls_index = ("business", 0) if i % 3 else ("reseller", 0)
        currency = "JPY" if name.startswith(("Ōsaka", "Tōkyō")) else _weighted(rng, CURRENCIES)
        slug = "".join(ch for ch in name.lower().encode("ascii", "ignore").decode() if ch.isalnum())[:20] or "customer"
        acc_id = first + i
        email = f"billing+{acc_id}@{slug}.example"
        balance = quantize(Decimal(rng.randint(0, 400_000)) / 100, currency) if rng.random() < 0.35 else Decimal(0)
        model = "prepay" if rng.random() < 0.15 else "postpay"
        address = f"{rng.randint(1, 220)} {rng.choice(['Market St', 'Rue de Rivoli', 'Hauptstraße', 'Ulica Długa', 'Kōen-dōri'])}\n{rng.choice(['Berlin', 'Paris', 'Kraków', 'Ōsaka', 'Zürich', 'London'])}"
        rows.append(
            AccountValues(
                id=acc_id,
                name=name,
                email=email,
                account_type=kind,
                customer_class=classes[cls_index]["id"],
                currency=currency,
                balance=dbv(Account.balance, balance),
                payment_model=model,
                address=address,
                search_text=Account.search_text_of(name, email),
            )
        )
        out.append(
            {
                "id": acc_id,
                "name": name,
                "currency": currency,
                "class": cls_index,
                "type": kind,
                "model": model,
                "balance": balance,
                "usage_scale": Decimal(rng.choice([1, 2, 5, 10, 50])),
                "usage_base": {},
                "services": rng.sample(range(len(SERVICES)), rng.randint(1, 3)),
            }
        )
    _insert(Account, AccountValues, rows)
    sync_sequence(Account)
    return out


def _subscriptions(rng: random.Random, accounts: list[dict]) -> dict[int, list[dict]]:
    statuses = list(S.SUBSCRIPTION_STATUSES)
    rows: list[SubscriptionValues] = []
    out: dict[int, list[dict]] = {}
    sub_id = next_id(Subscription)
    k = 0
    for acc in accounts:
        out[acc["id"]] = []
        for _ in range(rng.randint(1, 3)):
            plan = rng.choice(PLANS)
            # Mostly active; every status of seed 001 appears across the store.
            status = statuses[k % len(statuses)] if k < 3 * len(statuses) or rng.random() < 0.2 else "active"
            k += 1
            fee_d = quantize(Decimal(plan.fee) * (150 if acc["currency"] == "JPY" else 1), acc["currency"])
            row = SubscriptionValues(
                id=sub_id,
                account=acc["id"],
                name=plan.name,
                service=plan.service,
                status=status,
                fee=dbv(Subscription.fee, fee_d),
                active_from=dt.date(2024, 1 + rng.randint(0, 11), 1),
            )
            rows.append(row)
            out[acc["id"]].append(
                {
                    "id": sub_id,
                    "name": plan.name,
                    "service": plan.service,
                    "status": status,
                    "fee": fee_d,
                    "active_from": row.active_from,
                }
            )
            sub_id += 1
    _insert(Subscription, SubscriptionValues, rows)
    sync_sequence(Subscription)
    return out


def _pricing(rng, accounts, classes):
    vat = {}
    for cls in classes:
        if cls["name"] in ("Enterprise", "Small Business", "Residential"):
            rule = TaxRule.create(
                customer_class=cls["id"], name="VAT", description="Value added tax 20 %", percent=Decimal("20")
            )
            vat[cls["id"]] = [TaxRate(rule.name, rule.percent, rule.description)]
    taxes: dict[int, list[TaxRate]] = {}
    discounts: dict[int, list[DiscountRule]] = {}
    for acc in accounts:
        cls_id = classes[acc["class"]]["id"]
        taxes[acc["id"]] = list(vat.get(cls_id, []))
        if rng.random() < 0.1:
            rule = TaxRule.create(
                account=acc["id"],
                name="Regulatory fee refund",
                description="Universal service fee overpaid last year",
                percent=Decimal("-1.5"),
            )
            taxes[acc["id"]].append(TaxRate(rule.name, rule.percent, rule.description))
        if rng.random() < 0.25:
            service = rng.choice([None, SERVICES[acc["services"][0]].name])
            d = Discount.create(
                account=acc["id"],
                service=service,
                percent=Decimal(rng.choice([5, 10, 15])),
                description="Loyalty discount",
            )
            discounts[acc["id"]] = [DiscountRule(d.percent, d.service, d.description)]
    return discounts, taxes


def _status_for(rng: random.Random, back: int, cls: dict, account: dict) -> str:
    reviewed = cls["send_mode"] == "after_review"
    if back == 0:
        return S.OPEN if account["model"] == "postpay" else (S.UNDER_REVIEW if reviewed else S.APPROVED)
    if back == 1:
        if reviewed:
            return rng.choices([S.UNDER_REVIEW, S.REJECTED, S.APPROVED, S.UNPAID, S.PAID], weights=[55, 8, 7, 15, 15])[
                0
            ]
        return rng.choices([S.APPROVED, S.UNPAID, S.PAID], weights=[10, 50, 40])[0]
    return rng.choices([S.PAID, S.UNPAID, S.OVERDUE], weights=[85, 5, 10] if back > 2 else [60, 30, 10])[0]


def _period_data(rng, usage_rng, account, period_from, period_to, subs, discounts, taxes) -> PeriodData:
    usage = []
    for idx in account["services"]:
        service = SERVICES[idx]
        base = account["usage_base"].get(idx)
        if base is None:  # the account's own level for this service, drawn once
            base = account["usage_base"][idx] = (
                Decimal(usage_rng.randint(50, 5000)) * account["usage_scale"] / Decimal(usage_rng.choice([1, 4, 8]))
            )
        # Month to month within ±25 % of that level.  The two main-stream
        # draws are kept so the seed still gives the same statuses.
        rng.randint(50, 5000), rng.choice([1, 4, 8])
        qty = (base * Decimal(usage_rng.randint(75, 125)) / 100).quantize(Decimal("0.001"))
        amount = quantize(qty * service.price * (150 if account["currency"] == "JPY" else 1), account["currency"])
        usage.append(Usage(service.name, qty, amount, RECORDS, _days_covered(period_from, period_to)))
    recurring = [
        Recurring(s["id"], s["name"], s["service"], s["fee"]) for s in subs[account["id"]] if s["status"] in _BILLABLE
    ]
    return PeriodData(
        account["currency"],
        period_from,
        period_to,
        tuple(usage),
        tuple(recurring),
        tuple(discounts.get(account["id"], ())),
        tuple(taxes.get(account["id"], ())),
    )


def _record_days(period_from: dt.date, period_to: dt.date) -> list[dt.date]:
    """The days the RECORDS records of a service fall on: first to last day."""
    span = (period_to - period_from).days
    return [period_from + dt.timedelta(days=round(p * span / (RECORDS - 1))) for p in range(RECORDS)]


def _days_covered(period_from: dt.date, period_to: dt.date) -> int:
    return len(set(_record_days(period_from, period_to)))


def _snapshot_lines(calc) -> str:
    return Snapshot(
        1,
        tuple(LineState(c.description, c.amount, c.service, c.quantity, c.discount) for c in calc.charges),
        tuple(LineState(t.name, t.amount) for t in calc.taxes),
    ).lines_json()


PLANTS = (
    "total_spike",
    "zero_total",
    "missing_usage",
    "inactive_subscription",
    "new_service",
    "tax_ratio",
    "large_correction",
)


def _plant(rng: random.Random, account: dict, data: PeriodData, status: str, subs: dict, past) -> tuple:
    """One deliberate anomaly in this period's data: (data, expected flag code).
    Kinds that do not apply to the account are skipped for the next one."""
    from dataclasses import replace

    first = rng.randrange(len(PLANTS))
    cur = data.currency
    for kind in PLANTS[first:] + PLANTS[:first]:
        if kind == "total_spike":
            # A rating error: usage so large the total lands at 4-5x the average.
            with_usage, without = calculate(data).total(), calculate(replace(data, usage=())).total()
            usage_part = with_usage - without
            average = sum(p.total for p in past) / len(past)
            if usage_part <= 0 or average <= 0:
                continue
            k = (average * Decimal(rng.randint(40, 50)) / 10 - without) / usage_part
            if k <= 1:
                continue
            usage = tuple(
                replace(u, quantity=(u.quantity * k).quantize(Decimal("0.001")), amount=quantize(u.amount * k, cur))
                for u in data.usage
            )
            return replace(data, usage=usage), kind
        if kind == "zero_total":  # usage not rated, fees missing
            return replace(data, usage=tuple(replace(u, amount=Decimal(0)) for u in data.usage), recurring=()), kind
        if kind == "missing_usage":
            if sum(any(c.usage and c.amount != 0 for c in p.charges) for p in past) < 2 or not data.usage:
                continue
            return replace(data, usage=()), kind
        if kind == "inactive_subscription":
            idle = [s for s in subs[account["id"]] if s["status"] not in _BILLABLE]
            if not idle:
                continue
            s = rng.choice(idle)
            return replace(
                data, recurring=data.recurring + (Recurring(s["id"], s["name"], s["service"], s["fee"]),)
            ), kind
        if kind == "new_service":
            known = set().union(*(p.services for p in past))
            fresh = [svc for svc in SERVICES if svc.name not in known]
            if not fresh:
                continue
            service = rng.choice(fresh)
            # Modest (10-30 % of the usual total): the new service is the news, not the amount.
            average = sum(p.total for p in past) / len(past)
            amount = quantize(average * Decimal(rng.randint(10, 30)) / 100, cur)
            if amount <= 0:
                continue
            qty = (amount / (service.price * (150 if cur == "JPY" else 1))).quantize(Decimal("0.001"))
            return replace(
                data,
                usage=data.usage
                + (Usage(service.name, qty, amount, RECORDS, _days_covered(data.period_from, data.period_to)),),
            ), kind
        if kind == "tax_ratio":  # VAT dropped, or charged to an account without it
            if any(t.percent >= 5 for t in data.taxes):
                return replace(data, taxes=()), kind
            return replace(data, taxes=data.taxes + (TaxRate("VAT", Decimal(20), "Value added tax 20 %"),)), kind
        if kind == "large_correction":
            if status != S.UNDER_REVIEW or calculate(data).total() <= 0:
                continue
            return data, kind
    return data, None


class _Batch:
    def __init__(self, offpeak_at: dt.datetime | None = None, tz=dt.UTC, rng=None):
        # When the store's off-peak window next opens: off-peak reissue
        # requests wait for it (as workflow.request_reissue would set them).
        self.offpeak_at = offpeak_at
        self.tz = tz  # records fall in the working day, billing time zone
        # A stream of its own for who did what (audit) and the corrections of
        # closed postpay invoices: the main stream stays as it was.
        self.rng = rng or random.Random(0)
        self.invoices: list[InvoiceValues] = []
        self.charges: list[ChargeLineValues] = []
        self.taxes: list[TaxLineValues] = []
        self.corrections: list[CorrectionValues] = []
        self.payments: list[PaymentValues] = []
        self.xdrs: list[XdrValues] = []
        self.audits: list[AuditValues] = []
        self.snapshots: list[SnapshotValues] = []
        self.last_number = ""

    def add_invoice(
        self,
        rng,
        inv_id,
        seq,
        fmt,
        account,
        cls,
        status,
        period_from,
        period_to,
        data,
        calc,
        now,
        today,
        stats,
        back,
        history=(),
        risk_cfg=risk.DEFAULT_SETTINGS,
        sub_facts=None,
        plant=None,
    ) -> risk.InvoiceFacts | None:
        """Queue one invoice; return its risk facts (None for an open one)."""
        cur = account["currency"]
        close_day = period_to + dt.timedelta(days=2)  # seed 001: closed on the second day of the next period
        issue_date = close_day if status == S.OPEN else min(period_to + dt.timedelta(days=1), today)
        generated = dt.datetime.combine(issue_date, dt.time(3, 0)) if status != S.OPEN else None
        if generated and generated > now:
            generated = now
        review_deadline = None
        if status in (S.UNDER_REVIEW, S.REJECTED):
            # Spread deadlines from overdue-now to the full hold, so the queue shows urgency.
            review_deadline = now + dt.timedelta(hours=rng.randint(-6, cls["hold_days"] * 24))
            generated = review_deadline - dt.timedelta(days=cls["hold_days"])
            # Postpay is billed once its period ended, prepay from its first day:
            # never generated before that (soon after, deadlines bunch at the full hold).
            billed_from = period_to + dt.timedelta(days=1) if account["model"] == "postpay" else period_from
            earliest = min(dt.datetime.combine(billed_from, dt.time(3, 0)), now)
            if generated < earliest:
                generated = earliest
                review_deadline = generated + dt.timedelta(days=cls["hold_days"])
            issue_date = generated.date()
        past_due = status == S.UNPAID and issue_date + dt.timedelta(days=cls["net_days"]) < today
        if past_due:
            status = S.OVERDUE  # past its due date: the expiry job has run (payment expired)
        corrections = Decimal(0)
        signed_list: list[Decimal] = []
        revision = 1
        base = calc.total()
        made: list[tuple[Decimal, str, dt.datetime]] = []  # (signed, description, when)
        if status == S.UNDER_REVIEW and rng.random() < 0.12:
            made = self._routine_corrections(rng, cur, base, generated)
        elif (
            account["model"] == "postpay"
            and status in (S.APPROVED, *S.SENT_STATUSES)
            and generated
            and self.rng.random() < 0.1
        ):
            # Corrected during review, then closed and sent (seed 001's Corrections tab).
            made = self._routine_corrections(self.rng, cur, base, generated)
        if plant == "large_correction":
            assert generated is not None  # planted under review only (_plant)
            made.append((-quantize(base / 2, cur), "Goodwill credit: disputed roaming charges", generated))
        first_calc = calc
        for signed, desc, when in made:
            self._correction(inv_id, len(signed_list) + 1, signed, desc, when, revision + 1)
            signed_list.append(signed)
            corrections += signed
            revision += 1
        if made:  # corrections are net and taxed like the charges (billing.calculate)
            calc = calculate(data, corrections)
        total = calc.total(corrections)
        facts = None
        risk_score, risk_flags, expected, at_stake = 0, "", None, None
        if status != S.OPEN:  # an open invoice is a draft: assessed when it closes
            facts = risk.InvoiceFacts.from_calc(cur, period_from, period_to, calc, sub_facts, signed_list)
            result = risk.evaluate(facts, history, risk_cfg)
            risk_score, risk_flags = result.score, risk.dumps_flags(result.flags)
            expected, at_stake = result.expected, result.at_stake
            stats["flagged"] += result.flagged
        if signed_list:
            # The revision as generated, before its corrections: the detail
            # screen shows what the adjustments changed since.
            assert generated is not None  # corrected: generated, not open
            self.snapshots.append(
                SnapshotValues(
                    invoice=inv_id,
                    revision=1,
                    taken_at=generated,
                    action="adjust",
                    subtotal=dbv(Invoice.subtotal, first_calc.subtotal),
                    discount_total=dbv(Invoice.subtotal, first_calc.discount_total),
                    tax_total=dbv(Invoice.subtotal, first_calc.tax_total),
                    correction_total=0,
                    total=dbv(Invoice.subtotal, first_calc.total()),
                    lines=_snapshot_lines(first_calc),
                )
            )
        approved_at = (
            generated + dt.timedelta(days=rng.randint(0, max(cls["hold_days"], 1)))
            if status in (S.APPROVED, *S.SENT_STATUSES) and generated
            else None
        )
        if approved_at and approved_at > now:
            approved_at = now
        approver = None
        if approved_at:
            approver = (
                "auto:send-immediately"
                if cls["send_mode"] == "immediately"
                else "job:auto_approve"
                if self.rng.random() < 0.4
                else self.rng.choice(ADMINS)
            )
        sent = status in S.SENT_STATUSES
        erp_done = sent and back > 0 and account["model"] == "postpay"
        outstanding = Decimal(0) if status == S.PAID else total
        reissue = ("off_peak" if rng.random() < 0.7 else "now") if status == S.REJECTED else None
        reissue_after = (self.offpeak_at or now) if reissue == "off_peak" else (now if reissue else None)
        invoice = InvoiceValues(
            id=inv_id,
            number=format_number(fmt, seq, issue_date),
            account=account["id"],
            customer_class=cls["id"],
            kind="regular",
            payment_model=account["model"],
            status=status,
            currency=cur,
            period_from=period_from,
            period_to=period_to,
            generated_at=generated,
            issue_date=issue_date,
            due_date=issue_date + dt.timedelta(days=cls["net_days"]) if status != S.OPEN else None,
            review_deadline=review_deadline,
            subtotal=dbv(Invoice.subtotal, calc.subtotal),
            discount_total=dbv(Invoice.subtotal, calc.discount_total),
            tax_total=dbv(Invoice.subtotal, calc.tax_total),
            correction_total=dbv(Invoice.subtotal, corrections),
            total=dbv(Invoice.subtotal, total),
            outstanding=dbv(Invoice.subtotal, outstanding),
            # The ERP has confirmed the sent postpay invoices of earlier months;
            # the newest month's wait for `erp export` (when erp_integration is on).
            external_total=dbv(Invoice.subtotal, total) if erp_done else None,
            external_currency=cur if erp_done else None,
            erp_reference=f"ERP-{inv_id:08d}" if erp_done else None,
            erp_date=issue_date + dt.timedelta(days=1) if erp_done else None,
            erp_confirmed_at=generated + dt.timedelta(days=1) if erp_done and generated else None,
            approved_at=approved_at,
            approved_by=approver,
            closed_at=generated if account["model"] == "postpay" and status != S.OPEN else None,
            revision=revision,
            reissue_mode=reissue,
            reissue_requested_at=now - dt.timedelta(hours=1) if reissue else None,
            reissue_after=reissue_after,
            sent_at=approved_at if sent else None,
            sent_revision=revision if sent else None,
            risk_score=risk_score,
            risk_flags=risk_flags,
            expected_total=dbv(Invoice.subtotal, expected),
            risk_at_stake=dbv(Invoice.subtotal, at_stake),
        )
        self.invoices.append(invoice)
        self.last_number = invoice.number
        for c in calc.charges:
            self.charges.append(
                ChargeLineValues(
                    invoice=inv_id,
                    position=c.position,
                    description=c.description,
                    service=c.service,
                    subscription=c.subscription_id,
                    quantity=dbv(ChargeLine.quantity, c.quantity),
                    discount=dbv(ChargeLine.discount, c.discount),
                    amount=dbv(ChargeLine.amount, c.amount),
                    records=c.records,
                    days=c.days,
                    duplicates=c.duplicates,
                    duplicate_amount=dbv(ChargeLine.amount, c.duplicate_amount),
                )
            )
        for t in calc.taxes:
            self.taxes.append(
                TaxLineValues(
                    invoice=inv_id,
                    position=t.position,
                    name=t.name,
                    description=t.description,
                    amount=dbv(TaxLine.amount, t.amount),
                )
            )
        if sent:
            self._payment(rng, invoice, status, total, issue_date, approved_at, cls, account, past_due)
        if generated:
            self._history(
                inv_id,
                self.last_number,
                account,
                status,
                first_calc.total(),
                total,
                generated,
                made,
                approved_at,
                approver,
                issue_date + dt.timedelta(days=cls["net_days"]),
                now,
            )
        if status in (S.UNDER_REVIEW, S.REJECTED, S.OPEN):
            # Open ones too: closing them (bill run) recalculates the same usage.
            self._xdrs(rng, inv_id, account, data, period_from)
        return facts

    def _routine_corrections(self, rng, cur, base, generated) -> list[tuple[Decimal, str, dt.datetime]]:
        """One or two small manual credits or charges, made during review."""
        made = []
        running = base
        for k in range(rng.randint(1, 2)):
            credit = rng.random() < 0.6
            amount = quantize(Decimal(rng.randint(500, 25_000)) / 100 * (150 if cur == "JPY" else 1), cur)
            # A routine correction stays small next to the invoice (4-12 %
            # of it at most); large ones are planted anomalies.
            cap = Decimal(4 + int(amount * 100) % 9) / 100
            amount = min(amount, quantize(base * cap, cur))
            if credit and running - amount < 0:
                credit = False
            desc = (
                rng.choice(
                    [
                        "Promotional credit: spring campaign",
                        "Goodwill credit for outage 12 May",
                        "On-site support visit (4 h)",
                        "Porting fee",
                        "Service credit per SLA",
                    ]
                )
                if credit
                else rng.choice(
                    [
                        "On-site support visit (4 h)",
                        "Hardware replacement",
                        "Porting fee",
                        "Professional services: PBX set-up",
                    ]
                )
            )
            if amount <= 0:
                continue
            signed = -amount if credit else amount
            running += signed
            made.append((signed, desc, generated + dt.timedelta(hours=2 + 3 * k)))
        return made

    def _correction(self, inv_id, pos, signed, desc, at, revision):
        self.corrections.append(
            CorrectionValues(
                invoice=inv_id,
                position=pos,
                kind="manual_credit" if signed < 0 else "manual_charge",
                description=desc,
                amount=dbv(Correction.amount, signed),
                created_by=self.rng.choice(ADMINS),
                approved_at=at,
                revision=revision,
            )
        )

    def _history(
        self, inv_id, number, account, status, first_total, total, generated, made, approved_at, approver, due, now
    ):
        """The audit events the invoice's life so far would have written."""

        def event(at, actor, action, before: _State, after: _State, **detail):
            self.audits.append(
                AuditValues(
                    at=at,
                    actor=actor,
                    action=action,
                    invoice=inv_id,
                    number=number,
                    before_status=before.status,
                    before_total=dbv(Invoice.subtotal, before.total),
                    after_status=after.status,
                    after_total=dbv(Invoice.subtotal, after.total),
                    detail=json.dumps(detail),
                )
            )

        reviewed = status not in (S.APPROVED, *S.SENT_STATUSES) or approver != "auto:send-immediately"
        first = S.UNDER_REVIEW if reviewed else S.APPROVED
        if account["model"] == "postpay":
            event(generated, "job:close_postpay", "close", _State(S.OPEN, first_total), _State(first, first_total))
        else:
            event(generated, "bill-run", "generate", _State(None, None), _State(first, first_total), revision=1)
        running = first_total
        for k, (signed, desc, when) in enumerate(made, 2):
            after = total if k == len(made) + 1 else running + signed
            event(
                when,
                self.corrections[-len(made) + k - 2].created_by,
                "adjust",
                _State(S.UNDER_REVIEW, running),
                _State(S.UNDER_REVIEW, after),
                kind="manual_credit" if signed < 0 else "manual_charge",
                amount=str(signed),
                description=desc,
                revision=k,
            )
            running = after
        if status == S.REJECTED:
            event(
                now - dt.timedelta(hours=1),
                self.rng.choice(ADMINS),
                "request_reissue",
                _State(S.UNDER_REVIEW, total),
                _State(S.REJECTED, total),
            )
        if approved_at and reviewed:
            action = "auto_approve" if approver.startswith("job:") else "approve"
            event(approved_at, approver, action, _State(S.UNDER_REVIEW, total), _State(S.APPROVED, total))
        if approved_at and status in S.SENT_STATUSES:
            sent_to = S.PAID if status == S.PAID else S.UNPAID
            event(
                approved_at + dt.timedelta(minutes=3),
                "job:dispatch_approved",
                "send",
                _State(S.APPROVED, total),
                _State(sent_to, total),
                revision=1 + len(made),
            )
            if status == S.OVERDUE:
                event(
                    dt.datetime.combine(due + dt.timedelta(days=1), dt.time(2, 0)),
                    "job:expire_payments",
                    "expire_payment",
                    _State(S.UNPAID, total),
                    _State(S.OVERDUE, total),
                )

    def _payment(self, rng, invoice, status, total, issue_date, created, cls, account, past_due=False):
        due = issue_date + dt.timedelta(days=cls["net_days"])
        inv_id = invoice.id
        number = f"PMT-{inv_id:08d}"  # one payment per invoice: numbered by it
        if past_due:
            rng.random()  # the draw it made as unpaid: the rest of the seed's stream stays as it was
        if status == S.PAID:
            pstatus = (
                "paid_from_balance"
                if rng.random() < 0.3
                # money in; some by a method that needs a manual receipt (made, or being made)
                else rng.choices(["completed", "receipt_creating", "receipt_sent"], weights=[80, 10, 10])[0]
            )
        elif status == S.UNPAID:
            # Not yet due (past due it is overdue): waiting, or on its way (one draw, as before).
            pstatus = rng.choices(["waiting_for_payment", "processing"], weights=[95, 5])[0]
        else:
            pstatus = "expired"
        self.payments.append(
            PaymentValues(
                invoice=inv_id,
                number=number,
                description=f"Payment {number}",  # seed 001: the description, with its number
                created_at=created,
                due_date=due,
                status=pstatus,
                amount=dbv(Payment.amount, total),
                paid_at=created if status == S.PAID else None,
            )
        )

    def _xdrs(self, rng, inv_id, account, data: PeriodData, period_from):
        # The usage behind the invoice: RECORDS records spread over the
        # period, summing to it exactly.
        days = _record_days(period_from, data.period_to)
        for use in data.usage:
            q_left, a_left = use.quantity, use.amount
            for p, day in enumerate(days):
                if p < RECORDS - 1:
                    q = (use.quantity / RECORDS).quantize(Decimal("0.001"))
                    a = quantize(use.amount / RECORDS, account["currency"])
                else:
                    q, a = q_left, a_left
                q_left -= q
                a_left -= a
                when = (
                    (dt.datetime.combine(day, dt.time(8)) + dt.timedelta(minutes=inv_id % 600))
                    .replace(tzinfo=self.tz)
                    .astimezone(dt.UTC)
                    .replace(tzinfo=None)
                )
                self.xdrs.append(
                    XdrValues(
                        xdr_id=f"demo-{inv_id}-{use.service[:8].replace(' ', '')}-{p}",
                        account=account["id"],
                        service=use.service,
                        time=when,
                        quantity=dbv(Xdr.quantity, q),
                        amount=dbv(Xdr.amount, a),
                    )
                )

    def flush(self, stats):
        if not self.invoices:
            return
        with database.atomic():
            _insert(Invoice, InvoiceValues, self.invoices)
            _insert(ChargeLine, ChargeLineValues, self.charges)
            _insert(TaxLine, TaxLineValues, self.taxes)
            _insert(Correction, CorrectionValues, self.corrections)
            _insert(Payment, PaymentValues, self.payments)
            _insert(Xdr, XdrValues, self.xdrs)
            _insert(AuditEvent, AuditValues, self.audits)
            _insert(InvoiceSnapshot, SnapshotValues, self.snapshots)
        stats["invoices"] += len(self.invoices)
        stats["charge lines"] += len(self.charges)
        stats["payments"] += len(self.payments)
        stats["corrections"] += len(self.corrections)
        stats["xdrs"] += len(self.xdrs)
        self.__init__(self.offpeak_at, self.tz, self.rng)
