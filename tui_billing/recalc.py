"""Recalculating many invoices in one transaction: the bill run closing the
open postpay invoices of a chunk of accounts (close_postpay_many) and the
off-peak reissue of a claimed batch (Reissues).

They are workflow.close_postpay and workflow.complete_reissue for a batch:
the same guards (the rows locked, each invoice's status checked), the same
rows written (charge and tax lines, the invoice's totals, status and dates,
the snapshot a reissue keeps first, the risk assessment, one audit event
each), but each read and each write is one statement for the whole batch.
One transaction per invoice, as those take, cost the bill run twenty
statements and a commit of every page it touched per invoice (issue 18:
164 invoices/s, 21 GB written to close 65,186 open invoices).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from . import access, billing, revisions, risk, workflow
from . import statuses as S
from .audit import audit_row, insert_audits
from .context import Ctx
from .errors import NotFound, Refused
from .store import risk_store
from .store.bulk import db_rows, update_rows
from .store.locking import for_update
from .store.models import Account, Correction, CustomerClass, Invoice, InvoicePdf, dict_rows, ids_in, tuple_rows

CHUNK = 500  # ids per IN (...) list

# What closing and reissuing read of an invoice (a whole row is 50 columns).
_COLUMNS = (
    Invoice.id,
    Invoice.number,
    Invoice.account.alias("account_id"),
    Invoice.customer_class.alias("customer_class_id"),
    Invoice.kind,
    Invoice.status,
    Invoice.currency,
    Invoice.period_from,
    Invoice.period_to,
    Invoice.subtotal,
    Invoice.discount_total,
    Invoice.tax_total,
    Invoice.correction_total,
    Invoice.total,
    Invoice.external_total,
    Invoice.external_currency,
    Invoice.revision,
    Invoice.reviewed_revision,
    Invoice.reissue_mode,
)
# What billing.load_period_data_many reads of an account.
_ACCOUNT_COLUMNS = (Account.id, Account.currency, Account.customer_class.alias("customer_class_id"))


class Row(SimpleNamespace):
    """An invoice as `locked` reads it: its _COLUMNS as attributes, named as
    on a model (account_id, customer_class_id), changed by setting them.
    Not a model: building one per row cost the bill run more than reading it."""


def locked(ids: Sequence[int]) -> dict[int, Row]:
    """The invoices (by id, _COLUMNS), their rows locked for this transaction
    (as lock_invoice: PostgreSQL FOR UPDATE, SQLite the transaction's write lock)."""
    out: dict[int, Row] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start : start + CHUNK])
        query = for_update(Invoice.select(*_COLUMNS).where(ids_in(Invoice.id, chunk)))
        out.update((row["id"], Row(**row)) for row in dict_rows(query.dicts()))
    return out


def calculations(invoices: Iterable[Row], data: PeriodData | None = None) -> dict[int, billing.Calculation | Exception]:
    """Each invoice (by id) recalculated from its period's usage, corrections
    kept: billing.recalculate's numbers, nothing written.  An invoice whose
    calculation failed gets the exception instead.  `data`: period_data of
    these invoices (or more), read already."""
    invoices = list(invoices)
    data = data if data is not None else period_data(invoices)
    out: dict[int, billing.Calculation | Exception] = {}
    for inv in invoices:
        try:
            out[inv.id] = billing.calculate(data[inv.period_from, inv.period_to][inv.account_id], inv.correction_total)
        except Exception as exc:  # one bad invoice never blocks the batch
            out[inv.id] = exc
    return out


PeriodData = dict[tuple[dt.date, dt.date], dict[int, billing.PeriodData]]  # (period) -> account -> its data


def period_data(invoices: Iterable[Row]) -> PeriodData:
    """The usage and rules of each invoice's account and period, read for
    all of them at once (a handful of queries per period)."""
    by_period: dict[tuple[dt.date, dt.date], set[int]] = {}
    for inv in invoices:
        by_period.setdefault((inv.period_from, inv.period_to), set()).add(inv.account_id)
    out: PeriodData = {}
    for (p_from, p_to), account_ids in by_period.items():
        ids = sorted(account_ids)
        accounts = [
            a
            for start in range(0, len(ids), CHUNK)
            for a in Account.select(*_ACCOUNT_COLUMNS)
            .where(ids_in(Account.id, ids[start : start + CHUNK]))
            .namedtuples()
        ]
        out[p_from, p_to] = billing.load_period_data_many(accounts, p_from, p_to)
    return out


def risk_items(invoices: Sequence[Row], calcs: dict[int, billing.Calculation]) -> risk_store.Items:
    """What assessing each invoice once its new calculation is written takes
    (risk_store.assess_new): the facts risk_store.load_facts would read back,
    from the calculation, its corrections and the ERP's total."""
    ids = [inv.id for inv in invoices]
    corrections: dict[int, list[Decimal]] = {i: [] for i in ids}
    for start in range(0, len(ids), CHUNK):
        for inv_id, amount in tuple_rows(
            Correction.select(Correction.invoice, Correction.amount)
            .where(ids_in(Correction.invoice, ids[start : start + CHUNK]))
            .order_by(Correction.invoice, Correction.position)
            .tuples()
        ):
            corrections[inv_id].append(amount)
    subs = risk_store.load_subscriptions(c.subscription_id for calc in calcs.values() for c in calc.charges)
    items = []
    for inv in invoices:
        calc = calcs[inv.id]
        facts = risk.InvoiceFacts.from_calc(
            inv.currency, inv.period_from, inv.period_to, calc, subs, corrections[inv.id]
        )
        known = (calc.total(inv.correction_total), inv.correction_total, inv.external_total, inv.external_currency)
        if known != (facts.total, facts.correction_total, facts.external_total, facts.external_currency):
            facts = replace(
                facts,
                total=known[0],
                correction_total=known[1],
                external_total=known[2],
                external_currency=known[3],
            )  # as load_facts reads them: the invoice's columns
        items.append((inv.account_id, facts))
    return items


def assess_here(items: risk_store.Items) -> risk_store.Assessing:
    """Assessed in this process, at once (risk_store.assessor's fallback)."""
    return risk_store.Assessing(risk_store.assess_new(items))


Assess = Callable[[risk_store.Items], risk_store.Assessing]  # risk_store.assessor's


def rounds(ids: Iterable[int], account_of: Callable[[int], int]) -> list[list[int]]:
    """`ids` in rounds, in order, each holding at most one invoice per
    account: a second one is assessed after the first is written, with it
    in its history (as one at a time would be)."""
    out: list[list[int]] = []
    seen: dict[int, int] = {}
    for inv_id in ids:
        k = seen[account_of(inv_id)] = seen.get(account_of(inv_id), -1) + 1
        if k == len(out):
            out.append([])
        out[k].append(inv_id)
    return out


def save(changes: dict[int, dict[str, Any]]) -> None:
    """UPDATE each invoice (by id) with its changes ({field: Python value}):
    one executemany per set of fields changed."""
    Changes(changes).save()


class Changes:
    """Invoice rows to UPDATE, by id ({field: Python value}), converted to
    database values when given; `save` adds the risk columns of an
    assessment still under way (converted then: the rest was meanwhile)."""

    def __init__(self, changes: dict[int, dict[str, Any]]) -> None:
        by_fields: dict[tuple[str, ...], list[tuple]] = {}
        for inv_id, change in changes.items():
            by_fields.setdefault(tuple(change), []).append((*change.values(), inv_id))
        self.rows = {names: db_rows(Invoice, [*names, "id"], rows) for names, rows in by_fields.items()}

    def save(self, invoices: Sequence[Row] = (), assessing: risk_store.Assessing | None = None) -> None:
        """The UPDATEs, one executemany per set of fields; with the risk
        columns of `assessing` (one per invoice of `invoices`, set onto them too)."""
        risk: dict[int, tuple] = {}
        if assessing is not None:
            for inv, columns in zip(invoices, assessing.result()):
                _apply(inv, columns)
                risk[inv.id] = tuple(columns[name] for name in risk_store.STORED_COLUMNS)
        extra = list(risk_store.STORED_COLUMNS) if risk else []
        for names, rows in self.rows.items():
            if risk:
                converted = db_rows(Invoice, extra, [risk[row[-1]] for row in rows])
                rows = [row[:-1] + more + row[-1:] for row, more in zip(rows, converted)]
            update_rows(Invoice, [*names, *extra], rows)


def _drop_pdfs(ids: Sequence[int]) -> None:
    for start in range(0, len(ids), CHUNK):
        InvoicePdf.delete().where(ids_in(InvoicePdf.invoice, ids[start : start + CHUNK])).execute()


def _apply(inv: Row, change: dict[str, Any]) -> None:
    for key, value in change.items():
        setattr(inv, key, value)


class Classes(dict):
    """Customer classes by id, each read once: a job (the bill run, the
    off-peak reissue) keeps one for its whole run and issues with the
    classes as they were when it first met them (a read each took 1 ms, five
    a chunk)."""

    def __missing__(self, key: int) -> CustomerClass:
        cls = self[key] = CustomerClass.get_by_id(key)
        return cls


# --------------------------------------------------------------------------
# Close: OPEN postpay -> recalculated, closed and issued (the bill run).


@dataclass
class Closed:
    closed: list[Row] = field(default_factory=list)  # after: under review or approved
    refused: list[Refused] = field(default_factory=list)  # no longer open (or gone)
    failed: list[tuple[Row, str]] = field(default_factory=list)  # calculation failed


def close_postpay_many(
    ctx: Ctx, ids: Sequence[int], assess: Assess = assess_here, classes: Classes | None = None
) -> Closed:
    """workflow.close_postpay for each invoice, in the caller's transaction.

    At most one invoice per account (see `rounds`): an account's history
    (the risk assessment's baseline) must include an earlier one closed
    before."""
    out = Closed()
    invoices = locked(ids)
    for inv_id in ids:
        inv = invoices.get(inv_id)
        if inv is None:
            out.refused.append(NotFound(str(inv_id), "does not exist"))
        elif inv.status != S.OPEN:
            out.refused.append(Refused(inv.number, f"is {S.label(S.INVOICE_STATUSES, inv.status).lower()}, not open"))
    opened = [invoices[i] for i in ids if i in invoices and invoices[i].status == S.OPEN]
    calcs: dict[int, billing.Calculation] = {}
    classes = classes if classes is not None else Classes()
    changes: dict[int, dict[str, Any]] = {}
    audits = []
    # Issued now: the flags the admins will review, saved with the rest (or
    # after it, when assessed in a worker meanwhile: asked first, so that it
    # works while the rows are made and written; in parts, so that it starts
    # on the first while the next is calculated).
    data = period_data(opened)
    parts: list[risk_store.Assessing] = []
    half = -(-len(opened) // 2)
    for start in range(0, len(opened), half or 1):
        results = calculations(opened[start : start + half], data)
        closing = []
        for inv in opened[start : start + half]:
            calc = results[inv.id]
            if isinstance(calc, Exception):
                out.failed.append((inv, f"calculation failed: {calc}"))
            else:
                calcs[inv.id] = calc
                closing.append(inv)
        if closing:
            parts.append(assess(risk_items(closing, {inv.id: calcs[inv.id] for inv in closing})))
            out.closed.extend(closing)
    if not calcs:
        return out
    assessing = risk_store.Joined(parts)
    for inv in out.closed:
        calc = calcs[inv.id]
        before = (inv.status, inv.total)
        change: dict[str, Any] = calc.totals(inv.correction_total)
        change.update(workflow.issue_fields(ctx, classes[inv.customer_class_id], inv.kind))
        change["closed_at"] = ctx.clock.now()
        changes[inv.id] = change
        _apply(inv, change)
        audits.append(
            audit_row(
                ctx,
                "close",
                inv,
                before,
                (inv.status, inv.total),
                review_deadline=inv.review_deadline,
                due_date=inv.due_date,
            )
        )
    billing.write_lines_many(calcs)
    _drop_pdfs(list(changes))  # drafts of the open invoice; the issued one's is rendered on first use
    insert_audits(audits)
    # Last and once, with the risk columns (a second UPDATE for them moved each
    # row in both risk indexes again); the worker assesses while the rows
    # above are written and these converted.
    Changes(changes).save(out.closed, assessing)
    return out


# --------------------------------------------------------------------------
# Reissue: REJECTED -> UNDER_REVIEW with amounts recalculated (the off-peak job).


class Reissues:
    """workflow.complete_reissue for a batch of invoices, in the caller's
    transaction: `complete` those to reissue (each checked and recalculated
    as it is named: the job stops between any two), then `write` them all.

    The PDF of the new revision is not rendered here (complete_reissue
    renders it after its commit): rendering thousands at night would hold
    the job for minutes and store megabytes nobody may open; it is rendered
    on first use (documents.current_pdf), and the drafts of the rejected
    revision are dropped."""

    def __init__(self, ctx: Ctx, ids: Sequence[int], assess: Assess = assess_here, classes: Classes | None = None):
        access.require(ctx, "reissue", f"{len(ids)} invoices")  # a person (reissue now) or the job loop
        self.ctx = ctx
        self.invoices = locked(ids)
        self.calcs = calculations(i for i in self.invoices.values() if i.status == S.REJECTED)
        self.classes = classes if classes is not None else Classes()
        self.assess = assess
        # id -> (the revision before, changes, calculation)
        self.done: dict[int, tuple[SimpleNamespace, dict[str, Any], billing.Calculation]] = {}

    def mode(self, inv_id: int) -> str | None:
        inv = self.invoices.get(inv_id)
        return inv.reissue_mode if inv is not None else None

    def complete(self, inv_id: int) -> Row:
        """The invoice as it will be written (Refused: not rejected, or gone;
        the calculation's exception if it failed)."""
        inv = self.invoices.get(inv_id)
        if inv is None:
            raise NotFound(str(inv_id), "does not exist")
        if inv.status != S.REJECTED:  # completed already in this batch: under review now
            raise Refused(
                inv.number,
                f"is {S.label(S.INVOICE_STATUSES, inv.status).lower()}: only a rejected invoice awaits reissue",
            )
        calc = self.calcs[inv_id]
        if isinstance(calc, Exception):
            raise calc
        before = SimpleNamespace(**vars(inv))  # its snapshot is kept before the lines change
        change: dict[str, Any] = {
            "status": S.UNDER_REVIEW,
            "revision": inv.revision + 1,
            "reissue_mode": None,
            "reissue_after": None,
            # The hold restarts: admins get the full review period again.
            "review_deadline": self.ctx.clock.now() + dt.timedelta(days=self.classes[inv.customer_class_id].hold_days),
            "notified_at": None,
            **calc.totals(inv.correction_total),
            **workflow._made_by(self.ctx, inv),  # the four-eyes rule of a change of lines
        }
        _apply(inv, change)
        self.done[inv_id] = (before, change, calc)
        return inv

    def write(self) -> None:
        """Write every invoice completed: snapshots, lines, invoice rows, audit
        events, risk assessment (complete_reissue's order); in rounds of one
        invoice per account."""
        for k, ids in enumerate(rounds(self.done, lambda i: self.invoices[i].account_id)):
            # A later round's history holds this transaction's writes, which a worker would not see.
            self._write(ids, self.assess if k == 0 else assess_here)

    def _write(self, ids: list[int], assess: Assess) -> None:
        invoices = [self.invoices[i] for i in ids]
        calcs = {i: self.done[i][2] for i in ids}
        changes = {i: self.done[i][1] for i in ids}
        assessing = assess(risk_items(invoices, calcs))
        revisions.take_many(self.ctx, [self.done[i][0] for i in ids], "reissue")
        billing.write_lines_many(calcs)
        insert_audits(
            [
                audit_row(
                    self.ctx,
                    "reissue",
                    inv,
                    (self.done[inv.id][0].status, self.done[inv.id][0].total),
                    (inv.status, inv.total),
                    revision=inv.revision,
                )
                for inv in invoices
            ]
        )
        _drop_pdfs(ids)
        Changes(changes).save(invoices, assessing)  # last and once, with the risk columns (as close_postpay_many)
