"""Everything about one invoice: the header and each table of seed 001."""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import statuses as S
from ..revisions import RevisionDiff, since_review
from ..risk import Flag, parse_flags
from .models import (
    Account, AuditEvent, ChargeLine, Correction, CustomerClass, Invoice, Payment,
    Subscription, TaxLine,
)


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

    @property
    def risk_score(self) -> int:
        return self.invoice.risk_score or 0

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
        return ("Payments appear once the invoice is approved and sent: it is "
                f"{S.label(S.INVOICE_STATUSES, inv.status).lower()}.")


def load_detail(ref: int | str) -> InvoiceDetail:
    query = (Invoice.select(Invoice, Account, CustomerClass)
             .join(Account, on=(Invoice.account == Account.id)).switch(Invoice)
             .join(CustomerClass, on=(Invoice.customer_class == CustomerClass.id)))
    inv = query.where((Invoice.id == ref) if isinstance(ref, int) else (Invoice.number == ref)).first()
    if inv is None:
        from ..workflow import NotFound
        raise NotFound(str(ref), "does not exist")
    charges = list(ChargeLine.select().where(ChargeLine.invoice == inv.id).order_by(ChargeLine.position))
    sub_ids = sorted({c.subscription_id for c in charges if c.subscription_id})
    subscriptions = list(Subscription.select().where(Subscription.id.in_(sub_ids)).order_by(Subscription.id)) if sub_ids else []
    corrections = list(Correction.select().where(Correction.invoice == inv.id).order_by(Correction.position))
    taxes = list(TaxLine.select().where(TaxLine.invoice == inv.id).order_by(TaxLine.position))
    return InvoiceDetail(
        invoice=inv,
        charges=charges,
        subscriptions=subscriptions,
        payments=list(Payment.select().where(Payment.invoice == inv.id).order_by(Payment.id)),
        corrections=corrections,
        taxes=taxes,
        audit=list(AuditEvent.select().where(AuditEvent.invoice == inv.id).order_by(AuditEvent.id)),
        flags=parse_flags(inv.risk_flags),
        changes=since_review(inv, charges, taxes, corrections),
    )
