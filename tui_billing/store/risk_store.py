"""Risk flags from the store: load an invoice's facts and its account's
history (and the period's population), assess them with the pure
`risk.evaluate`, save score, flags, expected total and money at stake.

History lookups are set-based: one windowed query for the last N issued
regular invoices of any number of accounts (the bill run asks for a whole
chunk at once), one query for their charge lines.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal

from .. import risk
from .. import statuses as S
from ..money import ZERO
from .models import ChargeLine, Correction, Invoice, Subscription, database

CHUNK = 500


def settings() -> risk.RiskSettings:
    from .settings import load_settings

    return load_settings().risk


# --------------------------------------------------------------------------
# Loading facts

def load_subscriptions(ids: Iterable[int]) -> dict[int, risk.SubscriptionFact]:
    ids = sorted({i for i in ids if i})
    out: dict[int, risk.SubscriptionFact] = {}
    for start in range(0, len(ids), CHUNK):
        for s in Subscription.select(Subscription.id, Subscription.name, Subscription.status,
                                     Subscription.active_from, Subscription.active_to).where(
                Subscription.id.in_(ids[start:start + CHUNK])):
            out[s.id] = risk.SubscriptionFact(s.id, s.name, s.status, s.active_from, s.active_to)
    return out


_LINE_COLUMNS = (ChargeLine.service, ChargeLine.description, ChargeLine.amount, ChargeLine.discount,
                 ChargeLine.subscription, ChargeLine.quantity, ChargeLine.records, ChargeLine.days,
                 ChargeLine.duplicates, ChargeLine.duplicate_amount)


def _charge(row) -> risk.ChargeFact:
    service, description, amount, discount, sub_id, quantity, records, days, dups, dup_amount = row
    return risk.ChargeFact(service or "", description, amount, discount, sub_id, quantity or ZERO,
                           records or 0, days or 0, dups or 0, dup_amount or ZERO)


def load_facts(inv: Invoice) -> risk.InvoiceFacts:
    """The invoice's current revision: totals, charge lines, corrections and
    the subscriptions its fee lines charge."""
    return _load_many_facts([inv])[inv.id]


facts_from_calc = risk.InvoiceFacts.from_calc


def load_histories(account_ids: Iterable[int], before: dt.date,
                   n: int = risk.DEFAULT_SETTINGS.history) -> dict[int, list[risk.PastInvoice]]:
    """Per account: its last `n` issued (not open) regular invoices whose
    period starts before `before`, newest first, with their lines and
    corrections."""
    ids = sorted(set(account_ids))
    out: dict[int, list[risk.PastInvoice]] = {a: [] for a in ids}
    if not ids:
        return out
    db = database.obj
    p = db.param
    rows: list[tuple] = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        cursor = db.execute_sql(
            "SELECT id, account_id, period_from, total, subtotal, discount_total, tax_total FROM ("
            "SELECT id, account_id, period_from, total, subtotal, discount_total, tax_total, "
            "ROW_NUMBER() OVER (PARTITION BY account_id ORDER BY period_from DESC, id DESC) AS rn "
            f"FROM invoice WHERE account_id IN ({', '.join([p] * len(chunk))}) AND kind = {p} "
            f"AND status <> {p} AND period_from < {p}) h WHERE rn <= {int(n)} "
            "ORDER BY account_id, period_from DESC, id DESC",
            [*chunk, "regular", S.OPEN, Invoice.period_from.db_value(before)])
        rows.extend(cursor.fetchall())
    money = Invoice.total.python_value
    day = Invoice.period_from.python_value
    lines: dict[int, list[risk.ChargeFact]] = {}
    corrections: dict[int, list[Decimal]] = {}
    inv_ids = [r[0] for r in rows]
    for start in range(0, len(inv_ids), CHUNK):
        chunk = inv_ids[start:start + CHUNK]
        for inv_id, *row in ChargeLine.select(ChargeLine.invoice, *_LINE_COLUMNS).where(
                ChargeLine.invoice.in_(chunk)).order_by(ChargeLine.invoice, ChargeLine.position).tuples():
            lines.setdefault(inv_id, []).append(_charge(row))
        for inv_id, amount in Correction.select(Correction.invoice, Correction.amount).where(
                Correction.invoice.in_(chunk)).tuples():
            corrections.setdefault(inv_id, []).append(amount)
    for inv_id, acc_id, period_from, total, subtotal, discount_total, tax_total in rows:
        out[acc_id].append(risk.PastInvoice(
            day(period_from), money(total), money(subtotal) - money(discount_total), money(tax_total),
            tuple(lines.get(inv_id, ())), tuple(corrections.get(inv_id, ()))))
    return out


# --------------------------------------------------------------------------
# The population: other accounts' prices per unit, the store's corrections.
# One scan per period, kept for POPULATION_TTL seconds per process: an
# adjust in the console must not rescan the period.

POPULATION_TTL = 300.0
POPULATION_SAMPLE = 50_000  # usage lines read per period (a median needs no more)
_population_cache: dict[tuple, tuple[float, risk.Population]] = {}


def forget_population() -> None:
    _population_cache.clear()


def population(period_from: dt.date, cfg: risk.RiskSettings | None = None) -> risk.Population:
    import time

    db = database.obj
    key = (type(db).__name__, str(getattr(db, "database", "")), period_from, cfg)
    hit = _population_cache.get(key)
    now = time.monotonic()
    if hit and now - hit[0] < POPULATION_TTL:
        return hit[1]
    cfg = cfg or settings()
    prices: dict[tuple[str, str], list[Decimal]] = {}
    query = (ChargeLine.select(Invoice.currency, ChargeLine.service, ChargeLine.amount, ChargeLine.quantity)
             .join(Invoice, on=(ChargeLine.invoice == Invoice.id))
             .where((Invoice.period_from == period_from) & (Invoice.kind == "regular")
                    & ChargeLine.subscription.is_null() & (ChargeLine.quantity > 0))
             .limit(POPULATION_SAMPLE))
    for currency, service, amount, quantity in query.tuples():
        prices.setdefault((currency, service or ""), []).append(amount / quantity)
    unit_prices = {k: (risk.median(v), len(v)) for k, v in prices.items()}
    recent = [cfg.to_reporting(abs(amount), currency) for amount, currency in (
        Correction.select(Correction.amount, Invoice.currency)
        .join(Invoice, on=(Correction.invoice == Invoice.id))
        .where(Correction.kind.in_(["manual_credit", "manual_charge"]))
        .order_by(Correction.id.desc()).limit(2000).tuples())]
    typical = None
    if len(recent) >= 20:
        recent.sort()
        typical = recent[int(len(recent) * 0.95)].quantize(Decimal("0.01"))
    result = risk.Population(unit_prices, typical)
    _population_cache[key] = (now, result)
    return result


# --------------------------------------------------------------------------
# Assess and save

def stored(result: risk.Assessment, currency: str) -> dict:
    """The invoice columns an assessment sets."""
    return {"risk_score": result.score, "risk_flags": risk.dumps_flags(result.flags),
            "expected_total": result.expected, "risk_at_stake": result.at_stake}


def assess_invoice(inv: Invoice, cfg: risk.RiskSettings | None = None, *, save: bool = True
                   ) -> tuple[int, list[risk.Flag]]:
    """Flags of the invoice's current revision; saved on its row (call inside
    the transaction that changed it).  Open invoices are drafts: no flags."""
    if inv.status == S.OPEN:
        result = risk.Assessment([], None, ZERO, 0)
    else:
        cfg = cfg or settings()
        history = load_histories([inv.account_id], inv.period_from, cfg.history)[inv.account_id]
        result = risk.evaluate(load_facts(inv), history, cfg, population(inv.period_from, cfg))
    if save:
        columns = stored(result, inv.currency)
        Invoice.update(**columns).where(Invoice.id == inv.id).execute()
        for key, value in columns.items():
            setattr(inv, key, value)
    return result.score, result.flags


def assess_many(ids: Sequence[int], progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Recompute and save flags of these invoices (after an upgrade, or a
    change of the risk settings).  Chunks of CHUNK, one transaction each:
    one history query, one line query and one update batch per chunk."""
    cfg = settings()
    counts = {"assessed": 0, "flagged": 0}
    ids = list(ids)
    for start in range(0, len(ids), CHUNK):
        with database.atomic():
            invoices = list(Invoice.select().where(Invoice.id.in_(ids[start:start + CHUNK])).order_by(Invoice.id))
            facts = _load_many_facts([i for i in invoices if i.status != S.OPEN])
            by_period: dict[dt.date, list[Invoice]] = {}
            for inv in invoices:
                by_period.setdefault(inv.period_from, []).append(inv)
            for period_from, group in by_period.items():
                histories = load_histories([i.account_id for i in group], period_from, cfg.history)
                pop = population(period_from, cfg)
                for inv in group:
                    if inv.status == S.OPEN:
                        result = risk.Assessment([], None, ZERO, 0)
                    else:
                        result = risk.evaluate(facts[inv.id], histories[inv.account_id], cfg, pop)
                    Invoice.update(**stored(result, inv.currency)).where(Invoice.id == inv.id).execute()
                    counts["assessed"] += 1
                    counts["flagged"] += result.flagged
        if progress:
            progress(min(start + CHUNK, len(ids)), len(ids))
    return counts


def _load_many_facts(invoices: list[Invoice]) -> dict[int, risk.InvoiceFacts]:
    """load_facts for many invoices: one query each for lines, corrections, subscriptions."""
    ids = [i.id for i in invoices]
    lines: dict[int, list[risk.ChargeFact]] = {}
    corrections: dict[int, list[Decimal]] = {}
    if ids:
        for inv_id, *row in ChargeLine.select(ChargeLine.invoice, *_LINE_COLUMNS).where(
                ChargeLine.invoice.in_(ids)).order_by(ChargeLine.invoice, ChargeLine.position).tuples():
            lines.setdefault(inv_id, []).append(_charge(row))
        for inv_id, amount in Correction.select(Correction.invoice, Correction.amount).where(
                Correction.invoice.in_(ids)).order_by(Correction.invoice, Correction.position).tuples():
            corrections.setdefault(inv_id, []).append(amount)
    subs = load_subscriptions(c.subscription_id for v in lines.values() for c in v if c.subscription_id)
    return {inv.id: risk.InvoiceFacts(
        inv.currency, inv.period_from, inv.period_to, inv.total, inv.subtotal, inv.discount_total,
        inv.tax_total, inv.correction_total, tuple(lines.get(inv.id, ())), tuple(corrections.get(inv.id, ())),
        subs) for inv in invoices}


def flags_of(inv) -> list[risk.Flag]:
    """The stored flags of an Invoice or a results-page row."""
    return risk.parse_flags(getattr(inv, "risk_flags", "") or "")
