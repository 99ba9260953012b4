"""Everything about one invoice: the header and each table of seed 001, and
the account's recent totals (with a flagged service's amounts) for a chart."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal

from peewee import fn

from .. import statuses as S
from ..errors import NotFound
from ..revisions import RevisionDiff, since_review
from ..risk import Flag, is_flagged, parse_flags
from .fields import MONEY_SCALE
from .models import (
    Account,
    AuditEvent,
    ChargeLine,
    Correction,
    CustomerClass,
    Invoice,
    Payment,
    Subscription,
    TaxLine,
    tuple_rows,
)

HISTORY = 12  # the account's regular invoices in the detail's chart, this one the last


@dataclass(frozen=True)
class HistoryPoint:
    """One of the account's regular invoices, for the detail's chart."""

    invoice_id: int
    number: str
    period_from: dt.date
    total: Decimal
    service: Decimal | None = None  # net charges of InvoiceDetail.history_service (None: none charted)


@dataclass
class InvoiceDetail:
    invoice: Invoice
    charges: list[ChargeLine]
    subscriptions: list[Subscription]
    payments: list[Payment]
    corrections: list[Correction]
    taxes: list[TaxLine]
    audit: list[AuditEvent]
    # Risk review: the flags with their reasons (heaviest first), and what
    # changed since the revision last reviewed (None: nothing changed).
    flags: list[Flag] = field(default_factory=list)
    changes: RevisionDiff | None = None
    # The account's last HISTORY regular invoices up to this one, oldest
    # first (this one last), in its currency; and the service a flag names,
    # whose amounts HistoryPoint.service holds (None: no flag names one).
    history: list[HistoryPoint] = field(default_factory=list)
    history_service: str | None = None

    @property
    def risk_score(self) -> int:
        return self.invoice.risk_score or 0

    @property
    def flagged(self) -> bool:
        return is_flagged(self.invoice.risk_score)

    @property
    def held(self) -> bool:
        """The job loop held it for a person at the end of its hold (flagged)."""
        return self.invoice.held_at is not None and self.invoice.status == S.UNDER_REVIEW

    @property
    def closed(self) -> bool:
        """Seed 001: payments are shown only once the invoice is Closed."""
        return self.invoice.status in S.SENT_STATUSES

    @property
    def payments_note(self) -> str:
        inv = self.invoice
        if self.closed:
            return ""
        if inv.status == S.OPEN:
            return f"Payments appear once the invoice is closed (on {inv.issue_date:%Y-%m-%d})."
        return (
            "Payments appear once the invoice is approved and sent: it is "
            f"{S.label(S.INVOICE_STATUSES, inv.status).lower()}."
        )


def load_detail(ref: int | str, *, history: bool = True) -> InvoiceDetail:
    """Call in a worker.  `history`: also the chart's (two queries)."""
    query = (
        Invoice.select(Invoice, Account, CustomerClass)
        .join(Account, on=(Invoice.account == Account.id))
        .switch(Invoice)
        .join(CustomerClass, on=(Invoice.customer_class == CustomerClass.id))
    )
    inv = query.where((Invoice.id == ref) if isinstance(ref, int) else (Invoice.number == ref)).first()
    if inv is None:
        raise NotFound(str(ref), "does not exist")
    charges = list(ChargeLine.select().where(ChargeLine.invoice == inv.id).order_by(ChargeLine.position))
    sub_ids = sorted({c.subscription_id for c in charges if c.subscription_id})
    subscriptions = (
        list(Subscription.select().where(Subscription.id.in_(sub_ids)).order_by(Subscription.id)) if sub_ids else []
    )
    corrections = list(Correction.select().where(Correction.invoice == inv.id).order_by(Correction.position))
    taxes = list(TaxLine.select().where(TaxLine.invoice == inv.id).order_by(TaxLine.position))
    flags = parse_flags(inv.risk_flags)
    points, service = load_history(inv, flags, charges) if history else ([], None)
    return InvoiceDetail(
        invoice=inv,
        charges=charges,
        subscriptions=subscriptions,
        payments=list(Payment.select().where(Payment.invoice == inv.id).order_by(Payment.id)),
        corrections=corrections,
        taxes=taxes,
        audit=list(AuditEvent.select().where(AuditEvent.invoice == inv.id).order_by(AuditEvent.id)),
        flags=flags,
        changes=since_review(inv, charges, taxes, corrections),
        history=points,
        history_service=service,
    )


def load_history(inv: Invoice, flags: list[Flag], charges: list[ChargeLine]) -> tuple[list[HistoryPoint], str | None]:
    """The account's last HISTORY regular invoices up to `inv` (by period;
    open ones left out but `inv`), oldest first, in `inv`'s currency: one
    query.  When a flag names a service billed on them, that service's net
    charges on each: one more."""
    if inv.kind != "regular":
        return [], None
    earlier = (Invoice.period_from < inv.period_from) | (
        (Invoice.period_from == inv.period_from) & (Invoice.id <= inv.id)
    )
    rows = list(
        tuple_rows(
            Invoice.select(Invoice.id, Invoice.number, Invoice.period_from, Invoice.total)
            .where(
                (Invoice.account == inv.account_id)
                & (Invoice.kind == "regular")
                & (Invoice.currency == inv.currency)
                & earlier
                & ((Invoice.status != S.OPEN) | (Invoice.id == inv.id))
            )
            .order_by(Invoice.period_from.desc(), Invoice.id.desc())
            .limit(HISTORY)
            .tuples()
        )
    )
    rows.reverse()
    if not flags or len(rows) < 2:
        return [HistoryPoint(*row) for row in rows], None
    net = fn.SUM(ChargeLine.amount - ChargeLine.discount)
    amounts: dict[str, dict[int, Decimal]] = {}
    for invoice_id, name, value in tuple_rows(
        ChargeLine.select(ChargeLine.invoice, ChargeLine.service, net)
        .where(ChargeLine.invoice.in_([r[0] for r in rows]) & (ChargeLine.service != ""))
        .group_by(ChargeLine.invoice, ChargeLine.service)
        .tuples()
    ):
        amounts.setdefault(name, {})[invoice_id] = Decimal(int(value or 0)).scaleb(-MONEY_SCALE)
    service = named_service(flags, amounts, charges)
    by_invoice = amounts.get(service, {}) if service else {}
    return [
        HistoryPoint(i, number, period_from, total, service=by_invoice.get(i, Decimal(0)) if service else None)
        for i, number, period_from, total in rows
    ], service


def named_service(flags: list[Flag], services, charges: list[ChargeLine]) -> str | None:
    """The first service (heaviest flag first) a flag's reason names: by its
    name ("Voice calls quantity 12,400 is 3.1x ..."), or by a subscription of
    this invoice's fee lines ("Mobile Fleet 50 (subscription 158) ...")."""
    by_subscription = {c.subscription_id: c.service for c in charges if c.subscription_id and c.service}
    names = sorted(services, key=len, reverse=True)  # "Voice calls international" before "Voice calls"
    for flag in flags:
        for name in names:
            if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", flag.reason):
                return name
        for sub_id, name in by_subscription.items():
            if f"(subscription {sub_id})" in flag.reason and name in services:
                return name
    return None
