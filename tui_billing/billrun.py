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
from types import SimpleNamespace

from peewee import fn

from . import access, billing, recalc, risk, workflow
from . import statuses as S
from .audit import audit_row, insert_audits
from .context import Ctx
from .store import risk_store
from .store.bulk import heavy_writes, insert_models
from .store.models import Account, Invoice, database, ids_in, tuple_rows
from .store.settings import format_number, load_settings, reserve
from .workflow import BadInput

CHUNK = 200
# What billing an account reads of it.
_ACCOUNT_COLUMNS = (
    Account.id,
    Account.name,
    Account.currency,
    Account.customer_class.alias("customer_class_id"),
    Account.payment_model,
)

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
    workers: int | None = None,
) -> BillRunResult:
    """workers: processes for the risk assessment (risk_store.assessor; None:
    as many as pay, 0 or 1: none)."""
    access.require(ctx, "import")
    result = BillRunResult(period_from, period_to)
    # The accounts there are now, read a chunk at a time (memory stays flat
    # whatever their number); one added during the run waits for the next.
    last = Account.select(fn.MAX(Account.id)).scalar() or 0
    total = Account.select().where(Account.id <= last).count()
    done = 0

    def accounts_after(after: int) -> list[int]:
        return [
            a
            for (a,) in tuple_rows(
                Account.select(Account.id)
                .where((Account.id > after) & (Account.id <= last))
                .order_by(Account.id)
                .limit(chunk)
                .tuples()
            )
        ]

    with heavy_writes(), risk_store.assessor(-(-total // chunk), workers) as assess:
        run = _Run(ctx, result, load_settings().number_format, include_empty, assess)
        ids = accounts_after(0)
        while ids:
            following = accounts_after(ids[-1])
            if following:  # their histories read by the risk worker while this chunk is worked
                assess.ahead(following, period_from)
            _run_chunk(run, ids)
            ids, done = following, done + len(ids)
            if progress:
                progress(done, total)
    return result


@dataclass
class _Run:
    ctx: Ctx
    result: BillRunResult
    number_format: str
    include_empty: bool
    assess: risk_store.Assessor
    classes: recalc.Classes = field(default_factory=recalc.Classes)


def _run_chunk(run: _Run, ids: list[int]) -> None:
    result = run.result
    p_from, p_to = result.period_from, result.period_to
    to_close: list[tuple[int, int]] = []  # (account, open invoice)
    with database.atomic():
        # Take the invoice-number row's lock first: concurrent bill runs (or
        # other issuers) queue here, then see each other's invoices below.
        reserve("invoice", 0)
        existing: dict[int, list[tuple[int, str]]] = {}
        for acc_id, inv_id, status in tuple_rows(
            Invoice.select(Invoice.account, Invoice.id, Invoice.status)
            .where(
                ids_in(Invoice.account, ids)
                & (Invoice.kind == "regular")
                & (Invoice.period_from <= p_to)
                & (Invoice.period_to >= p_from)
            )
            .order_by(Invoice.id)
            .tuples()
        ):
            existing.setdefault(acc_id, []).append((inv_id, status))
        # As named tuples: building a model per account cost more than reading it.
        accounts = {a.id: a for a in Account.select(*_ACCOUNT_COLUMNS).where(ids_in(Account.id, ids)).namedtuples()}
        fresh: list[Account] = []
        for acc_id in ids:
            account = accounts.get(acc_id)
            if account is None:
                continue  # deleted meanwhile
            invoices = existing.get(acc_id)
            if invoices:
                open_ones = [i for i, status in invoices if status == S.OPEN]
                if open_ones and len(open_ones) == len(invoices):
                    to_close.extend((acc_id, i) for i in open_ones)
                else:
                    result.skipped_existing += 1
                continue
            fresh.append(account)
        pending: list[tuple[Account, billing.Calculation]] = []
        for account, calc in _calculate(fresh, p_from, p_to, result) if fresh else ():
            if not calc.charges and not run.include_empty:
                result.skipped_empty += 1
                continue
            pending.append((account, calc))
        if pending:
            _create(run, pending)
        _close(run, to_close)


def _calculate(
    accounts: list[Account], p_from: dt.date, p_to: dt.date, result: BillRunResult
) -> list[tuple[Account, billing.Calculation]]:
    """Each account's calculation for the period, its data read for all at
    once; an account whose data or calculation fails is reported, the others
    go on."""
    try:
        data = billing.load_period_data_many(accounts, p_from, p_to)
    except Exception:  # one bad account's data: read each on its own, to name it
        data = {}
    out = []
    for account in accounts:
        try:
            period = data.get(account.id) or billing.load_period_data(account, p_from, p_to)
            out.append((account, billing.calculate(period)))
        except Exception as exc:  # one bad account never blocks the run
            result.failed.append((f"account {account.id} ({account.name})", f"calculation failed: {exc}"))
    return out


def _create(run: _Run, pending: list[tuple[Account, billing.Calculation]]) -> None:
    """The chunk's new invoices, numbered in one reservation, written with
    one statement per table: invoices, their charge and tax lines, audit
    events; their risk assessed meanwhile (risk_store.assessor)."""
    ctx, result = run.ctx, run.result
    p_from, p_to = result.period_from, result.period_to
    first = reserve("invoice", len(pending))
    subs = risk_store.load_subscriptions(c.subscription_id for _, calc in pending for c in calc.charges)
    assessing = run.assess(
        [(a.id, risk.InvoiceFacts.from_calc(a.currency, p_from, p_to, calc, subs)) for a, calc in pending]
    )
    risk_now = assessing.ready  # else assessed in the worker while the rows are written, saved after
    issue_date = ctx.clock.today()
    numbers = [format_number(run.number_format, seq, issue_date) for seq in range(first, first + len(pending))]
    # A changed number_format can give a number that exists already
    # (A1{seq} then A{seq}): that account fails, the rest are created.
    taken = {n for (n,) in tuple_rows(Invoice.select(Invoice.number).where(Invoice.number.in_(numbers)).tuples())}
    rows: list[dict] = []
    made: list[tuple[int, billing.Calculation]] = []  # (index in pending, calculation) of each row
    for k, (number, (account, calc)) in enumerate(zip(numbers, pending)):
        if number in taken:
            result.failed.append(
                (
                    f"account {account.id} ({account.name})",
                    f"invoice number {number} already exists: check number_format",
                )
            )
            continue
        cls = run.classes[account.customer_class_id]
        # Every row the same columns (one INSERT, ids in account order): not
        # approved yet is what leaving the approval out writes.
        fields = {"approved_at": None, "approved_by": None} | workflow.issue_fields(ctx, cls, "regular")
        rows.append(
            dict(
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
                **(assessing.result()[k] if risk_now else {}),
                **fields,
                **calc.totals(),
            )
        )
        made.append((k, calc))
    if not rows:
        return
    insert_models(Invoice, rows)
    ids = _ids_of(rows)
    billing.write_lines_many({i: calc for i, (_, calc) in zip(ids, made)}, new=True)
    insert_audits(
        [
            audit_row(
                ctx,
                "generate",
                SimpleNamespace(id=i, number=row["number"]),
                None,
                (row["status"], row["total"]),
                period=f"{p_from:%Y-%m}",
                revision=1,
                charges=len(calc.charges),
            )
            for i, row, (_, calc) in zip(ids, rows, made)
        ]
    )
    if not risk_now:
        risks = assessing.result()
        recalc.save({i: risks[k] for i, (k, _) in zip(ids, made)})
    for i, row in zip(ids, rows):
        result.created.append(i)
        result.count(row["status"])


def _ids_of(rows: list[dict]) -> list[int]:
    """The ids of the invoices just inserted, in the order of their rows."""
    by_number = dict(
        tuple_rows(
            Invoice.select(Invoice.number, Invoice.id).where(Invoice.number.in_([r["number"] for r in rows])).tuples()
        )
    )
    return [by_number[row["number"]] for row in rows]


def _close(run: _Run, to_close: list[tuple[int, int]]) -> None:
    """The chunk's open postpay invoices, closed in its transaction; an
    account with several is closed in rounds (recalc.rounds)."""
    result = run.result
    account_of = {inv_id: acc_id for acc_id, inv_id in to_close}
    for k, ids in enumerate(recalc.rounds(account_of, account_of.__getitem__)):
        # A later round's history holds this transaction's writes, which a worker would not see.
        outcome = recalc.close_postpay_many(run.ctx, ids, run.assess if k == 0 else recalc.assess_here, run.classes)
        for inv in outcome.closed:
            result.closed.append(inv.id)
            result.count(inv.status)
        result.skipped_existing += len(outcome.refused)  # closed by someone else meanwhile
        result.failed.extend((inv.number, reason) for inv, reason in outcome.failed)


def close_open_invoice(ctx: Ctx, inv_id: int) -> Invoice:
    """An OPEN postpay invoice: recalculated from its usage, closed and issued
    (workflow.close_postpay does all three in one guarded transaction)."""
    return workflow.close_postpay(ctx, inv_id)
