"""The bill run: one regular invoice per account for a billing period.

For every account, in account-id order, in chunks of CHUNK accounts (one
transaction each, so a crash leaves whole chunks and a re-run finishes the
rest):

- an account that already has a regular invoice whose period overlaps the
  run's period is skipped ("already invoiced") — running twice creates
  nothing new;
- an account whose OPEN (postpay) invoice covers the period gets that invoice
  recalculated from its usage and closed + issued (`workflow.close_postpay`)
  instead of a new one;
- otherwise the period's data is loaded and calculated with
  `billing.calculate(billing.load_period_data(...))`; an account with no
  charge at all (no usage, no billable subscription) is skipped ("nothing to
  bill") unless include_empty; the others get a new invoice, numbered from the
  configured format (the chunk's numbers reserved in one go, in the same
  transaction, so numbers have no gaps), issued today (the clock, honouring
  --now) with the class's send mode: under review with a deadline, or
  approved; due date = issue date + Net days.  One audit event ("generate")
  per invoice.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from . import access, billing, risk, workflow
from . import statuses as S
from .context import Ctx
from .errors import Refused
from .store import risk_store
from .store.models import Account, CustomerClass, Invoice, database, tuple_rows
from .store.settings import format_number, load_settings, reserve
from .workflow import BadInput

CHUNK = 200

_PERIOD = re.compile(r"([0-9]{4})-([0-9]{2})")


def parse_period(text: str, today: dt.date) -> tuple[dt.date, dt.date]:
    """'YYYY-MM' -> (first day, last day); the period must have ended by `today`."""
    raw = (text or "").strip()
    m = _PERIOD.fullmatch(raw)
    if not m:
        raise BadInput("period", f"{text!r} is not a month like 2026-10 (YYYY-MM)")
    year, month = int(m.group(1)), int(m.group(2))
    if not 1 <= month <= 12:
        raise BadInput("period", f"{text!r}: month {month} does not exist (01-12)")
    if year < 1900:
        raise BadInput("period", f"{text!r}: year {year} is out of range")
    first = dt.date(year, month, 1)
    last = dt.date(year, month, calendar.monthrange(year, month)[1])
    if last >= today:
        raise BadInput("period", f"{raw} has not ended yet (it ends {last.isoformat()}, today is {today.isoformat()})")
    return first, last


@dataclass
class BillRunResult:
    period_from: dt.date
    period_to: dt.date
    created: list[int] = field(default_factory=list)  # invoice ids
    closed: list[int] = field(default_factory=list)  # open postpay invoices closed and issued
    skipped_existing: int = 0
    skipped_empty: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (account or invoice, reason)
    statuses: dict[str, int] = field(default_factory=dict)  # over created + closed

    @property
    def skipped(self) -> int:
        return self.skipped_existing + self.skipped_empty

    def count(self, status: str) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1


def bill_run(
    ctx: Ctx,
    period_from: dt.date,
    period_to: dt.date,
    *,
    include_empty: bool = False,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = CHUNK,
) -> BillRunResult:
    access.require(ctx, "import")
    result = BillRunResult(period_from, period_to)
    account_ids = [a for (a,) in tuple_rows(Account.select(Account.id).order_by(Account.id).tuples())]
    classes: dict[int, CustomerClass] = {}
    fmt = load_settings().number_format
    total = len(account_ids)
    for start in range(0, total, chunk):
        ids = account_ids[start : start + chunk]
        to_close = _run_chunk(ctx, ids, result, classes, fmt, include_empty)
        for inv_id, label in to_close:
            try:
                inv = close_open_invoice(ctx, inv_id)
                result.closed.append(inv.id)
                result.count(inv.status)
            except Refused as exc:
                if (Invoice.select(Invoice.status).where(Invoice.id == inv_id).scalar()) != S.OPEN:
                    result.skipped_existing += 1  # closed by someone else meanwhile
                else:
                    result.failed.append((label, exc.reason))
        if progress:
            progress(min(start + chunk, total), total)
    return result


def _run_chunk(
    ctx: Ctx, ids: list[int], result: BillRunResult, classes: dict, fmt: str, include_empty: bool
) -> list[tuple[int, str]]:
    p_from, p_to = result.period_from, result.period_to
    to_close: list[tuple[int, str]] = []
    with database.atomic():
        # Take the invoice-number row's lock first: concurrent bill runs (or
        # other issuers) queue here, then see each other's invoices below.
        reserve("invoice", 0)
        existing: dict[int, list[tuple[int, str, str]]] = {}
        for acc_id, inv_id, status, number in tuple_rows(
            Invoice.select(Invoice.account, Invoice.id, Invoice.status, Invoice.number)
            .where(
                Invoice.account.in_(ids)
                & (Invoice.kind == "regular")
                & (Invoice.period_from <= p_to)
                & (Invoice.period_to >= p_from)
            )
            .order_by(Invoice.id)
            .tuples()
        ):
            existing.setdefault(acc_id, []).append((inv_id, status, number))
        accounts = {a.id: a for a in Account.select().where(Account.id.in_(ids))}
        pending: list[tuple[Account, billing.Calculation]] = []
        for acc_id in ids:
            account = accounts.get(acc_id)
            if account is None:
                continue  # deleted meanwhile
            invoices = existing.get(acc_id)
            if invoices:
                open_ones = [i for i in invoices if i[1] == S.OPEN]
                if open_ones and len(open_ones) == len(invoices):
                    to_close.extend((i[0], i[2]) for i in open_ones)
                else:
                    result.skipped_existing += 1
                continue
            try:
                calc = billing.calculate(billing.load_period_data(account, p_from, p_to))
            except Exception as exc:  # one bad account never blocks the run
                result.failed.append((f"account {account.id} ({account.name})", f"calculation failed: {exc}"))
                continue
            if not calc.charges and not include_empty:
                result.skipped_empty += 1
                continue
            pending.append((account, calc))
        if not pending:
            return to_close
        first = reserve("invoice", len(pending))
        risks = _assess(pending, p_from, p_to)
        issue_date = ctx.clock.today()
        numbers = [format_number(fmt, seq, issue_date) for seq in range(first, first + len(pending))]
        # A changed number_format can give a number that exists already
        # (A1{seq} then A{seq}): that account fails, the rest are created.
        taken = {n for (n,) in tuple_rows(Invoice.select(Invoice.number).where(Invoice.number.in_(numbers)).tuples())}
        for number, (account, calc), risk_columns in zip(numbers, pending, risks):
            if number in taken:
                result.failed.append(
                    (
                        f"account {account.id} ({account.name})",
                        f"invoice number {number} already exists: check number_format",
                    )
                )
                continue
            cls = classes.get(account.customer_class_id)
            if cls is None:
                cls = classes[account.customer_class_id] = CustomerClass.get_by_id(account.customer_class_id)
            fields = workflow.issue_fields(ctx, cls, "regular")
            inv = Invoice.create(
                number=number,
                account=account.id,
                customer_class=cls.id,
                kind="regular",
                payment_model=account.payment_model,
                currency=account.currency,
                period_from=p_from,
                period_to=p_to,
                closed_at=fields["generated_at"] if account.payment_model == "postpay" else None,
                revision=1,
                **risk_columns,
                **fields,
                **calc.totals(),
            )
            billing.write_lines(inv.id, calc)
            workflow.write_audit(
                ctx,
                "generate",
                inv,
                None,
                (inv.status, inv.total),
                period=f"{p_from:%Y-%m}",
                revision=1,
                charges=len(calc.charges),
            )
            result.created.append(inv.id)
            result.count(inv.status)
    return to_close


def _assess(pending: list[tuple[Account, billing.Calculation]], p_from: dt.date, p_to: dt.date) -> list[dict]:
    """Risk columns of each invoice about to be created: one history query
    and one subscription query for the whole chunk."""
    cfg = risk_store.settings()
    histories = risk_store.load_histories([a.id for a, _ in pending], p_from, cfg.history)
    subs = risk_store.load_subscriptions(c.subscription_id for _, calc in pending for c in calc.charges)
    pop = risk_store.population(p_from, cfg)
    out = []
    for account, calc in pending:
        facts = risk.InvoiceFacts.from_calc(account.currency, p_from, p_to, calc, subs)
        out.append(risk_store.stored(risk.evaluate(facts, histories[account.id], cfg, pop)))
    return out


def close_open_invoice(ctx: Ctx, inv_id: int) -> Invoice:
    """An OPEN postpay invoice: recalculated from its usage, closed and issued
    (workflow.close_postpay does all three in one guarded transaction)."""
    return workflow.close_postpay(ctx, inv_id)
