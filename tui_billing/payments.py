"""Payments of an issued invoice (seed 001, issue 17): the guarded transitions.

A payment is created when the invoice is sent (workflow.mark_invoice_sent:
paid from the balance, or waiting for payment).  After that it moves by:

- a gateway's or bank's file (`import_payments`, payments_file.py reads it):
  one line = one outcome of one payment, `record_outcome`;
- an operator's manual receipt (`mark_receipt`): completed -> receipt
  creating -> receipt sent;
- the expiry job (`expire_payment`): waiting past its due date -> expired,
  and the invoice Unpaid -> Overdue.

Money arrives with the outcomes completed and receipt_creating (a payment
whose method needs a manual receipt).  It pays the invoice's outstanding
amount first: the invoice becomes Paid when it is covered, stays Unpaid (or
Overdue) with the rest outstanding -- a new payment waits for that rest --
when it is not, and what exceeds the outstanding amount goes to the
account's balance (where the dispatch job takes it from for the next
invoice).  A payment in Processing accepts no operation (seed 001), only the
gateway's own result.

Every transition locks the invoice row first, then reads its payments (the
same order as the dispatch and expiry jobs: no deadlock between them), checks
the state it moves from and who may do it, and writes an audit event on the
invoice: who, when, the payment, its status before and after, the money.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal

from . import access
from . import statuses as S
from .audit import write_audit
from .context import Ctx
from .errors import FieldError, NotFound, Refused
from .money import ZERO, format_money
from .store.locking import for_update, lock_invoice
from .store.models import Account, Invoice, Payment, PaymentEvent, database
from .store.settings import reserve

WAITING = "waiting_for_payment"
EXPIRED = "expired"
PROCESSING = "processing"
COMPLETED = "completed"
CANCELLED = "cancelled"
RECEIPT_CREATING = "receipt_creating"
RECEIPT_SENT = "receipt_sent"
PAID_FROM_BALANCE = "paid_from_balance"

OPEN = (WAITING, PROCESSING, EXPIRED)  # money still expected
MONEY_IN = (COMPLETED, RECEIPT_CREATING)  # outcomes that bring the money
# outcome a file may report -> the statuses it may move a payment from
FILE_MOVES: dict[str, tuple[str, ...]] = {
    PROCESSING: (WAITING, EXPIRED),
    WAITING: (PROCESSING,),  # the gateway gave up: waiting again
    COMPLETED: OPEN,  # an expired payment paid late is still paid
    RECEIPT_CREATING: OPEN,  # paid by a method that needs a manual receipt
    CANCELLED: OPEN,
}
NOT_FROM_FILE = {
    EXPIRED: "is set by the expiry job when a payment's due date passes",
    PAID_FROM_BALANCE: "is set by the dispatch job when the account's balance pays the invoice",
    RECEIPT_SENT: "is marked by an operator once the receipt is sent (tui-billing payments receipt PAYMENT --sent)",
}
# manual receipts: step -> the status it moves from
RECEIPT_MOVES = {RECEIPT_CREATING: COMPLETED, RECEIPT_SENT: RECEIPT_CREATING}
NUMBER_PREFIX = "PMT-"


class PaymentError(FieldError):
    """A line or a request that cannot apply; names the field."""


def name_of(pay: Payment) -> str:
    """Its number; a payment stored before numbering (none after migration 0009): its id."""
    return pay.number or str(pay.id)


def label(status: str) -> str:
    return S.label(S.PAYMENT_STATUSES, status)


def new_payment(
    ctx: Ctx,
    inv: Invoice,
    status: str,
    amount: Decimal,
    *,
    paid_at: dt.datetime | None = None,
    due_date: dt.date | None = None,
) -> Payment:
    """A payment of `inv`, numbered from the `payment` sequence (in the caller's transaction);
    due when the invoice is unless `due_date` says otherwise."""
    number = f"{NUMBER_PREFIX}{reserve('payment'):08d}"
    pay: Payment = Payment.create(
        invoice=inv.id,
        number=number,
        description=f"Payment {number}",  # seed 001: the description, with its number in the platform
        created_at=ctx.clock.now(),
        due_date=due_date or inv.due_date,
        status=status,
        amount=amount,
        paid_at=paid_at,
    )
    return pay


# --------------------------------------------------------------------------
# One line of a payments file


@dataclass(frozen=True)
class PaymentLine:
    """One line of a payments file, read (payments_file.read_lines)."""

    line: int
    reference: str  # a payment number or an invoice number
    amount: Decimal
    currency: str
    time: dt.datetime  # naive UTC
    outcome: str

    @property
    def fingerprint(self) -> str:
        """What makes the line the same line when it comes again."""
        key = "|".join(
            (self.reference, str(self.amount.normalize()), self.currency, self.time.isoformat(), self.outcome)
        )
        return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class Outcome:
    """What one line did."""

    line: int
    invoice: str
    payment: str
    before: str | None  # the payment's status before; None: a payment created by the line
    after: str
    already: bool = False  # imported before: nothing changed
    applied: Decimal = ZERO  # money that paid the invoice's outstanding amount
    to_balance: Decimal = ZERO  # money beyond it: the account's balance
    outstanding: Decimal = ZERO  # the invoice's outstanding amount after
    invoice_status: str = ""
    rest_payment: str | None = None  # partial: the new payment waiting for the rest

    def as_dict(self) -> dict:
        return {
            "line": self.line,
            "invoice": self.invoice,
            "payment": self.payment,
            "before": self.before,
            "after": self.after,
            "already_imported": self.already,
            "applied": str(self.applied),
            "to_balance": str(self.to_balance),
            "outstanding": str(self.outstanding),
            "invoice_status": self.invoice_status,
            "rest_payment": self.rest_payment,
        }


def _target(reference: str) -> tuple[int, int | None]:
    """(invoice id, payment id or None) a reference names; PaymentError when neither exists."""
    pay = Payment.select(Payment.id, Payment.invoice).where(Payment.number == reference).first()
    if pay is not None:
        return pay.invoice_id, pay.id
    inv_id = Invoice.select(Invoice.id).where(Invoice.number == reference).scalar()
    if inv_id is None:
        raise PaymentError("reference", f"no payment and no invoice is numbered {reference!r}")
    return inv_id, None


def record_outcome(ctx: Ctx, line: PaymentLine, source: str) -> Outcome:
    """Apply one line: a guarded, audited transition of one payment (in a savepoint of the file's transaction).

    A line whose fingerprint was applied before changes nothing (`already`)."""
    if line.outcome in NOT_FROM_FILE:
        raise PaymentError("outcome", f"{line.outcome} {NOT_FROM_FILE[line.outcome]}; a file cannot report it")
    inv_id, pay_id = _target(line.reference)
    with database.atomic():
        inv = lock_invoice(inv_id)
        access.require(ctx, "payments", inv.number)
        done = PaymentEvent.select(PaymentEvent.payment_id).where(PaymentEvent.fingerprint == line.fingerprint)
        done_id = done.scalar()
        if done_id is not None:
            number = Payment.select(Payment.number).where(Payment.id == done_id).scalar() or ""
            status = Payment.select(Payment.status).where(Payment.id == done_id).scalar() or ""
            return Outcome(line.line, inv.number, number, status, status, already=True, invoice_status=inv.status)
        if inv.status not in S.SENT_STATUSES:
            raise PaymentError(
                "reference",
                f"{inv.number} is {S.label(S.INVOICE_STATUSES, inv.status).lower()}: "
                "it has no payment until it is sent",
            )
        if line.currency != inv.currency:
            raise PaymentError("currency", f"{line.currency} is not the currency of {inv.number} ({inv.currency})")
        pay = _payment_of(inv, pay_id, line)
        if pay is not None and pay.status not in FILE_MOVES[line.outcome]:
            raise PaymentError(
                "outcome",
                f"{pay.number} is {label(pay.status).lower()}: it cannot become {label(line.outcome).lower()}",
            )
        if line.outcome in MONEY_IN:
            out = _money_in(ctx, inv, pay, line)
        else:
            out = _status_only(ctx, inv, pay, line)
        PaymentEvent.create(
            fingerprint=line.fingerprint,
            payment_id=Payment.select(Payment.id).where(Payment.number == out.payment).scalar(),
            outcome=line.outcome,
            amount=line.amount,
            at=line.time,
            imported_at=ctx.clock.now(),
            actor=ctx.actor,
            source=source[:300],
        )
    return out


def _payment_of(inv: Invoice, pay_id: int | None, line: PaymentLine) -> Payment | None:
    """The payment the line moves: the one it names, or the invoice's open one
    (the newest); None: money for an invoice with no open payment (a new payment records it)."""
    if pay_id is not None:
        pay: Payment | None = for_update(Payment.select().where(Payment.id == pay_id)).first()
        return pay
    query = Payment.select().where((Payment.invoice == inv.id) & Payment.status.in_(OPEN)).order_by(Payment.id.desc())
    found: Payment | None = for_update(query).first()
    if found is None and line.outcome not in MONEY_IN:
        raise PaymentError("reference", f"{inv.number} has no payment waiting: name the payment's number")
    return found


def _set_payment(pay: Payment, **changes) -> None:
    n = Payment.update(**changes).where((Payment.id == pay.id) & (Payment.status == pay.status)).execute()
    if n != 1:  # only possible without the invoice's lock; never lose a change silently
        raise Refused(name_of(pay), "was changed by someone else meanwhile; look again")
    for key, value in changes.items():
        setattr(pay, key, value)


def _status_only(ctx: Ctx, inv: Invoice, pay: Payment | None, line: PaymentLine) -> Outcome:
    assert pay is not None  # _payment_of: only money may come without an open payment
    before = pay.status
    _set_payment(pay, status=line.outcome)
    state = (inv.status, inv.total)
    write_audit(
        ctx,
        "payment",
        inv,
        state,
        state,
        payment=pay.number,
        payment_before=before,
        payment_after=line.outcome,
        amount=str(line.amount),
        at=line.time.isoformat(),
    )
    return Outcome(line.line, inv.number, name_of(pay), before, line.outcome, invoice_status=inv.status)


def _money_in(ctx: Ctx, inv: Invoice, pay: Payment | None, line: PaymentLine) -> Outcome:
    """The money of a completed payment: the outstanding amount first, the rest to the balance."""
    amount = line.amount
    outstanding = max(inv.outstanding, ZERO)
    applied = min(amount, outstanding)
    extra = amount - applied
    left = outstanding - applied
    before_status = pay.status if pay is not None else None
    if pay is None:
        pay = new_payment(ctx, inv, line.outcome, amount, paid_at=line.time)
    else:
        _set_payment(pay, status=line.outcome, amount=amount, paid_at=line.time)
    rest = None
    if left > 0:  # partial: a payment waits for the rest, due when the first was
        rest = new_payment(ctx, inv, WAITING, left, due_date=pay.due_date)
    if extra > 0:
        Account.update(balance=Account.balance + extra).where(Account.id == inv.account_id).execute()
    before = (inv.status, inv.total)
    status = S.PAID if left == 0 else inv.status
    n = (
        Invoice.update(outstanding=left, status=status)
        .where((Invoice.id == inv.id) & (Invoice.status == inv.status) & (Invoice.revision == inv.revision))
        .execute()
    )
    if n != 1:
        raise Refused(inv.number, "was changed by someone else meanwhile; look again")
    inv.outstanding, inv.status = left, status
    write_audit(
        ctx,
        "payment",
        inv,
        before,
        (inv.status, inv.total),
        payment=pay.number,
        payment_before=before_status,
        payment_after=line.outcome,
        amount=str(amount),
        applied=str(applied),
        to_balance=str(extra),
        outstanding_before=str(outstanding),
        outstanding_after=str(left),
        rest_payment=rest.number if rest else None,
        at=line.time.isoformat(),
    )
    return Outcome(
        line.line,
        inv.number,
        name_of(pay),
        before_status,
        line.outcome,
        applied=applied,
        to_balance=extra,
        outstanding=left,
        invoice_status=status,
        rest_payment=rest.number if rest else None,
    )


# --------------------------------------------------------------------------
# Manual receipts (seed 001: "a manager manually prepares a receipt")


def find_payment(ref: str | int) -> Payment:
    """By number ("PMT-00000042") or id; NotFound names the reference."""
    text = str(ref).strip()
    query = Payment.select()
    pay: Payment | None = (
        query.where(Payment.id == int(text)).first()
        if text.isdigit() and len(text) < 19
        else query.where(Payment.number == text).first()
    )
    if pay is None:
        raise NotFound(text, "is not a payment number")
    return pay


def receipt_refusal(status: str, step: str) -> str | None:
    """Why `step` (receipt_creating, receipt_sent) cannot apply to a payment in `status`; None: it can."""
    if status == PROCESSING:
        return "is processing: no operation is available until the gateway finishes"
    if status != RECEIPT_MOVES[step]:
        return (
            f"is {label(status).lower()}: only a {label(RECEIPT_MOVES[step]).lower()} payment "
            f"can become {label(step).lower()}"
        )
    return None


def mark_receipt(ctx: Ctx, ref: str | int, step: str) -> Payment:
    """completed -> receipt_creating -> receipt_sent, by an operator."""
    if step not in RECEIPT_MOVES:
        raise PaymentError("step", f"{step!r} is not a receipt step: receipt_creating or receipt_sent")
    found = find_payment(ref)
    with database.atomic():
        inv = lock_invoice(found.invoice_id)
        access.require(ctx, "payments", name_of(found))
        pay: Payment = for_update(Payment.select().where(Payment.id == found.id)).get()
        refusal = receipt_refusal(pay.status, step)
        if refusal:
            raise Refused(name_of(pay), refusal)
        before = pay.status
        _set_payment(pay, status=step)
        state = (inv.status, inv.total)
        write_audit(ctx, step, inv, state, state, payment=pay.number, payment_before=before, payment_after=step)
    return pay


# --------------------------------------------------------------------------
# Expiry (the job loop)


def expire_payment(ctx: Ctx, payment_id: int) -> Payment | None:
    """waiting_for_payment past its due date -> expired; its invoice Unpaid -> Overdue.
    None: it no longer qualifies (paid, moved, not yet due)."""
    inv_id = Payment.select(Payment.invoice).where(Payment.id == payment_id).scalar()
    if inv_id is None:
        return None
    with database.atomic():
        access.require(ctx, "jobs")
        inv = lock_invoice(inv_id)
        pay: Payment | None = for_update(Payment.select().where(Payment.id == payment_id)).first()
        today = ctx.clock.today()
        if pay is None or pay.status != WAITING or not pay.due_date or pay.due_date >= today:
            return None
        _set_payment(pay, status=EXPIRED)
        before = (inv.status, inv.total)
        if inv.status == S.UNPAID:
            n = Invoice.update(status=S.OVERDUE).where((Invoice.id == inv.id) & (Invoice.status == S.UNPAID)).execute()
            if n == 1:
                inv.status = S.OVERDUE
        write_audit(ctx, "expire_payment", inv, before, (inv.status, inv.total), payment=pay.id, due_date=pay.due_date)
    return pay


@dataclass
class ImportSummary:
    """Counts of a payments import, by what the lines did."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def applied(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.already]

    @property
    def already(self) -> int:
        return sum(1 for o in self.outcomes if o.already)

    @property
    def paid(self) -> list[str]:
        """Invoices the file made Paid."""
        return sorted({o.invoice for o in self.applied if o.invoice_status == S.PAID and o.applied > 0})

    @property
    def to_balance(self) -> Decimal:
        return sum((o.to_balance for o in self.applied), ZERO)

    def money_words(self, currency_of: dict[str, str]) -> list[str]:
        """One line per partial or over-payment: '… 40.00 EUR still owed', '… 5.00 EUR to the balance'."""
        out = []
        for o in self.applied:
            cur = currency_of.get(o.invoice, "")
            if o.rest_payment:
                out.append(
                    f"{o.invoice}: {format_money(o.outstanding, cur)} still owed ({o.rest_payment} waits for it)"
                )
            if o.to_balance > 0:
                out.append(f"{o.invoice}: {format_money(o.to_balance, cur)} beyond the amount owed, to the balance")
        return out
