"""Risk flags from the store: load an invoice's facts and its account's
history, assess them with the pure `risk.assess`, save score and flags.

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
from ..billing import Calculation
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


def load_facts(inv: Invoice) -> risk.InvoiceFacts:
    """The invoice's current revision: totals, charge lines, corrections and
    the subscriptions its fee lines charge."""
    charges = tuple(
        risk.ChargeFact(service or "", description, amount, discount, sub_id)
        for service, description, amount, discount, sub_id in ChargeLine.select(
            ChargeLine.service, ChargeLine.description, ChargeLine.amount, ChargeLine.discount,
            ChargeLine.subscription).where(ChargeLine.invoice == inv.id).order_by(ChargeLine.position).tuples())
    corrections = tuple(a for (a,) in Correction.select(Correction.amount).where(
        Correction.invoice == inv.id).order_by(Correction.position).tuples())
    subs = load_subscriptions(c.subscription_id for c in charges if c.subscription_id)
    return risk.InvoiceFacts(
        inv.currency, inv.period_from, inv.period_to, inv.total, inv.subtotal, inv.discount_total,
        inv.tax_total, inv.correction_total, charges, corrections, subs)


def facts_from_calc(currency: str, period_from: dt.date, period_to: dt.date, calc: Calculation,
                    subscriptions: dict[int, risk.SubscriptionFact] | None,
                    corrections: Sequence[Decimal] = ()) -> risk.InvoiceFacts:
    """Facts of an invoice about to be written from a calculation."""
    correction_total = sum(corrections, ZERO)
    return risk.InvoiceFacts(
        currency, period_from, period_to, calc.total(correction_total), calc.subtotal, calc.discount_total,
        calc.tax_total, correction_total,
        tuple(risk.ChargeFact(c.service, c.description, c.amount, c.discount, c.subscription_id)
              for c in calc.charges),
        tuple(corrections), subscriptions)


def load_histories(account_ids: Iterable[int], before: dt.date,
                   n: int = risk.DEFAULT_SETTINGS.history) -> dict[int, list[risk.PastInvoice]]:
    """Per account: its last `n` issued (not open) regular invoices whose
    period starts before `before`, newest first."""
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
    inv_ids = [r[0] for r in rows]
    for start in range(0, len(inv_ids), CHUNK):
        for inv_id, service, description, amount, discount, sub_id in ChargeLine.select(
                ChargeLine.invoice, ChargeLine.service, ChargeLine.description, ChargeLine.amount,
                ChargeLine.discount, ChargeLine.subscription).where(
                ChargeLine.invoice.in_(inv_ids[start:start + CHUNK])).tuples():
            lines.setdefault(inv_id, []).append(risk.ChargeFact(service or "", description, amount, discount, sub_id))
    for inv_id, acc_id, period_from, total, subtotal, discount_total, tax_total in rows:
        charges = lines.get(inv_id, [])
        usage = [c for c in charges if c.usage]
        out[acc_id].append(risk.PastInvoice(
            day(period_from), money(total), money(subtotal) - money(discount_total), money(tax_total),
            sum((c.net for c in usage), ZERO), any(c.amount != 0 for c in usage),
            frozenset(c.service for c in charges if c.service)))
    return out


# --------------------------------------------------------------------------
# Assess and save

def assess_invoice(inv: Invoice, cfg: risk.RiskSettings | None = None, *, save: bool = True
                   ) -> tuple[int, list[risk.Flag]]:
    """Flags of the invoice's current revision; saved on its row (call inside
    the transaction that changed it).  Open invoices are drafts: no flags."""
    if inv.status == S.OPEN:
        score, flags = 0, []
    else:
        cfg = cfg or settings()
        history = load_histories([inv.account_id], inv.period_from, cfg.history)[inv.account_id]
        score, flags = risk.assess_scored(load_facts(inv), history, cfg)
    if save:
        text = risk.dumps_flags(flags)
        Invoice.update(risk_score=score, risk_flags=text).where(Invoice.id == inv.id).execute()
        inv.risk_score, inv.risk_flags = score, text
    return score, flags


def assess_many(ids: Sequence[int], progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Recompute and save flags of these invoices (after an upgrade, or a
    change of the risk settings).  Chunks of CHUNK, one transaction each."""
    cfg = settings()
    counts = {"assessed": 0, "flagged": 0}
    ids = list(ids)
    for start in range(0, len(ids), CHUNK):
        with database.atomic():
            for inv in Invoice.select().where(Invoice.id.in_(ids[start:start + CHUNK])).order_by(Invoice.id):
                score, _ = assess_invoice(inv, cfg)
                counts["assessed"] += 1
                counts["flagged"] += score > 0
        if progress:
            progress(min(start + CHUNK, len(ids)), len(ids))
    return counts


def flags_of(inv) -> list[risk.Flag]:
    """The stored flags of an Invoice or a results-page row."""
    return risk.parse_flags(getattr(inv, "risk_flags", "") or "")
