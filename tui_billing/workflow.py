"""Guarded transitions of an invoice: the only code that changes its status.

Each transition (Lago-style: one named unit per transition) runs in one
transaction, applies only from the states it allows, and writes an audit
event with who, when, what and the status and total before and after.

Race safety: the invoice row is locked before it is read (SQLite: the
IMMEDIATE transaction holds the database's write lock; PostgreSQL: SELECT …
FOR UPDATE) and every UPDATE repeats the expected status and revision in its
WHERE clause, so of two admins or an admin and the job loop exactly one wins
and the other gets a clear refusal.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import access, billing, documents, payments, revisions, risk
from . import statuses as S
from .audit import AUDIT_COLUMNS as AUDIT_COLUMNS  # re-exported
from .audit import audit_row as audit_row
from .audit import insert_audits as insert_audits
from .audit import insert_audits_of
from .audit import write_audit as write_audit
from .clock import Clock, zone
from .context import BulkResult as BulkResult  # re-exported: they live in context.py
from .context import Ctx as Ctx
from .context import Progress as Progress
from .errors import FieldError as FieldError  # re-exported
from .errors import NotAllowed as NotAllowed
from .errors import NotFound as NotFound
from .errors import Refused as Refused
from .four_eyes import FourEyes
from .money import MAX_ADJUSTMENT, ZERO, MoneyError, format_money, parse_amount, quantize
from .offpeak import next_window_start
from .store import risk_store
from .store.locking import find_invoice, for_update, lock_invoice
from .store.models import Account, Correction, CustomerClass, Invoice, InvoicePdf, database, tuple_rows
from .store.settings import load_settings
from .text import TextError
from .text import typed as typed_text

if TYPE_CHECKING:
    from .config import StoreSettings

CHUNK = 500  # ids per transaction in bulk transitions


class BadInput(FieldError):
    """Input that is wrong whatever the invoice's state; names the field."""


# --------------------------------------------------------------------------
# Helpers


def _save_guarded(inv: Invoice, expected_status: str, expected_revision: int, **changes: Any) -> None:
    n = (
        Invoice.update(**changes)
        .where((Invoice.id == inv.id) & (Invoice.status == expected_status) & (Invoice.revision == expected_revision))
        .execute()
    )
    if n != 1:  # only possible without a row lock; never silently lose a change
        raise Refused(inv.number, "was changed by someone else meanwhile; look again")
    for key, value in changes.items():
        setattr(inv, key, value)


def _state(inv: Invoice) -> tuple[str, Decimal]:
    return (inv.status, inv.total)


def _made_by(ctx: Ctx, inv: Any) -> dict[str, Any]:
    """The columns a change of the invoice's lines sets (four-eyes): a first
    approval was of the revision before, so it is cleared; the person making
    the change may not approve the result (the job loop completing a reissue
    a person asked for leaves that person named)."""
    made: dict[str, Any] = {"first_approved_by": None, "first_approved_at": None}
    if not ctx.system:
        made["changed_by"] = ctx.user
    return made


def _cleared(first_by: str | None) -> dict[str, str]:
    """Audit detail: whose first approval a change cleared."""
    return {"cleared_first_approval": first_by} if first_by else {}


APPROVE_REFUSALS = {
    S.REJECTED: "is rejected: reissue it before approving it",
    S.APPROVED: "is already approved",
    S.UNPAID: "was already sent (unpaid): it cannot be approved again",
    S.PAID: "was already sent (paid): it cannot be approved again",
    S.OVERDUE: "was already sent (overdue): it cannot be approved again",
    S.OPEN: "is open: a postpay invoice is issued when its period closes",
}
CHANGE_REFUSALS = {
    S.REJECTED: "is rejected: wait for its reissue (or reissue it now) first",
    S.APPROVED: "is approved: an approved invoice can no longer be changed",
    S.UNPAID: "was already sent: a sent invoice can no longer be changed",
    S.PAID: "was already sent: a sent invoice can no longer be changed",
    S.OVERDUE: "was already sent: a sent invoice can no longer be changed",
    S.OPEN: "is open: its period has not closed yet",
}


def _refusal(status: str, table: dict[str, str]) -> str:
    """The sentence (after the number) refusing a transition from `status`."""
    return table.get(status, f"is {status}")


# --------------------------------------------------------------------------
# Issue: generated -> UNDER_REVIEW (after_review, regular) or APPROVED.


def issue_fields(ctx: Ctx, cls: CustomerClass, kind: str) -> dict[str, Any]:
    """Status, dates and deadline for an invoice generated now."""
    now = ctx.clock.now()
    issued = ctx.clock.today()
    reviewed = kind == "regular" and cls.send_mode == "after_review"
    fields = {
        "generated_at": now,
        "issue_date": issued,
        "due_date": issued + dt.timedelta(days=cls.net_days),
        "status": S.UNDER_REVIEW if reviewed else S.APPROVED,
        "review_deadline": now + dt.timedelta(days=cls.hold_days) if reviewed else None,
    }
    if not reviewed:
        fields.update(approved_at=now, approved_by="auto:send-immediately")
    return fields


def close_postpay(ctx: Ctx, ref: str | int) -> Invoice:
    """OPEN postpay invoice -> recalculated from its period's usage, closed and
    issued (under review or approved), in one transaction.

    Corrections are kept; the draft PDFs of the open invoice are dropped (the
    issued invoice's PDF is rendered on first use).
    """
    with database.atomic():
        inv = lock_invoice(ref)
        access.require(ctx, "import", inv.number)  # the bill run (a person) or the job loop
        if inv.status != S.OPEN:
            raise Refused(inv.number, f"is {S.label(S.INVOICE_STATUSES, inv.status).lower()}, not open")
        cls = CustomerClass.get_by_id(inv.customer_class_id)
        before = _state(inv)
        changes: dict[str, Any] = billing.recalculate(inv)
        changes.update(issue_fields(ctx, cls, inv.kind))
        changes["closed_at"] = ctx.clock.now()
        _save_guarded(inv, S.OPEN, inv.revision, **changes)
        InvoicePdf.delete().where(InvoicePdf.invoice == inv.id).execute()
        _assess(inv)  # issued now: risk flags of what the admins will review
        write_audit(ctx, "close", inv, before, _state(inv), review_deadline=inv.review_deadline, due_date=inv.due_date)
    return inv


# --------------------------------------------------------------------------
# Approve: UNDER_REVIEW -> APPROVED (admin, one or many, or auto at deadline).
#
# A flagged invoice (risk.is_flagged(risk_score)) leaves only with a person:
# an admin approves it only by accepting its flags (include_flagged; the
# audit event records who accepted which flags at which revision), and the
# job holds it at the end of its hold instead of approving it (unless the
# store setting auto_approve_flagged is on).


def flag_dicts(flags: Iterable[risk.Flag]) -> list[dict[str, str]]:
    """Flags as the audit trail and --json show them: code, reason, at_stake."""
    return [f.as_dict() for f in flags]


def flagged_reason(flags: Sequence[risk.Flag], score: int | None = None) -> str:
    """The refusal of a flagged invoice approved without accepting its flags."""
    names = risk.compact(flags) if flags else f"risk score {score or 0}"
    return f"is flagged ({names}): check it, then approve with --include-flagged"


def approve(ctx: Ctx, ref: str | int, include_flagged: bool = False) -> Invoice:
    result = approve_many(ctx, [ref], include_flagged=include_flagged)
    if result.failed:
        number, reason = result.failed[0]
        raise NotFound(number, reason) if reason == "does not exist" else Refused(number, reason)
    return find_invoice(ref)


@dataclass
class ApproveResult(BulkResult):
    # (number, flags) of each flagged invoice approved with its flags accepted
    accepted: list[tuple[str, list[risk.Flag]]] = field(default_factory=list)
    # numbers given their first of two approvals: they wait for a second approver
    waiting: list[str] = field(default_factory=list)

    def merge(self, other: BulkResult) -> None:
        super().merge(other)
        self.accepted.extend(getattr(other, "accepted", ()))
        self.waiting.extend(getattr(other, "waiting", ()))


def four_eyes_rules(settings: StoreSettings | None = None) -> FourEyes:
    """The four-eyes rules in force now (read in the approving transaction)."""
    settings = settings if settings is not None else load_settings()
    return FourEyes(access.team_mode(), settings.second_approval_above, settings.risk)


def _what(refs: Sequence[str | int]) -> str:
    """The object of a refusal sentence: the invoice, or how many."""
    return number_of(refs[0]) if len(refs) == 1 else f"{len(refs):,} invoices"


def _four_eyes_refusal(ctx: Ctx, inv: Invoice | _Row, rules: FourEyes) -> str | None:
    """Why this person may not approve this revision (the sentence after
    its number), or None."""
    if not rules.team:
        return None
    if inv.changed_by and inv.changed_by == ctx.user:
        return (
            f"was changed by {ctx.user} (revision {inv.revision}): "
            "a revision is approved by someone other than the person who made it"
        )
    if rules.needs_two(inv.total, inv.currency) and inv.first_approved_by == ctx.user:
        return f"already has {ctx.user}'s approval (1 of 2): a second approver must approve it"
    return None


def approve_many(
    ctx: Ctx, refs: Sequence[str | int], progress: Progress | None = None, include_flagged: bool = False
) -> ApproveResult:
    """Approve each invoice that is under review; report every one that is not.

    A flagged invoice is refused (flagged_reason) unless include_flagged: then
    the person approving it accepts its flags, and its audit event says so
    (detail: accepted_flags, revision).  Checked under the row lock, whatever
    a preview said before.

    Works in chunks of CHUNK invoices, one transaction each: the chunk's rows
    are locked, the ones under review are approved with one guarded UPDATE,
    and one audit event per approved invoice is written in the same
    transaction.  The issue date never changes.

    Four-eyes (team mode): nobody approves a revision they made; an invoice
    at or above second_approval_above gets a first approval (`approve_first`
    event, result.waiting) and is approved by the next, different, approver.
    """
    result = ApproveResult()
    refs = list(refs)
    for start in range(0, len(refs), CHUNK):
        chunk = refs[start : start + CHUNK]
        with database.atomic():
            access.require(ctx, "approve", _what(refs))  # in each transaction: a role may change meanwhile
            result.merge(_approve_chunk(ctx, chunk, include_flagged, four_eyes_rules()))
        if progress:
            progress(min(start + CHUNK, len(refs)), len(refs))
    return result


@dataclass
class _Row:
    """The columns a bulk approval needs, read without building models."""

    id: int
    number: str
    status: str
    total: Decimal
    revision: int
    currency: str = ""
    risk_score: int = 0
    risk_flags: str = ""
    first_approved_by: str | None = None
    first_approved_at: dt.datetime | None = None
    changed_by: str | None = None

    @property
    def flagged(self) -> bool:
        return risk.is_flagged(self.risk_score)

    @property
    def flags(self) -> list[risk.Flag]:
        return risk.parse_flags(self.risk_flags)


def _read_rows(refs: list[str | int], lock: bool) -> dict[str | int, _Row]:
    """{id: row} | {number: row} of the invoices named (ids or numbers).

    Raw SQL on purpose: this is the hot path of bulk approve (100,000s of
    rows); building peewee nodes for 500-id IN lists cost more than the
    database work.
    """
    db = database.obj
    numbers = [r for r in refs if not isinstance(r, int)]
    ids = [r for r in refs if isinstance(r, int)]
    if numbers:
        ids += [i for (i,) in tuple_rows(Invoice.select(Invoice.id).where(Invoice.number.in_(numbers)).tuples())]
    rows: list[_Row] = []
    if ids:
        marks = ", ".join([db.param] * len(ids))
        suffix = " FOR UPDATE" if lock and db.for_update else ""
        cursor = db.execute_sql(
            "SELECT id, number, status, total, revision, currency, risk_score, risk_flags, "
            "first_approved_by, first_approved_at, changed_by FROM invoice "
            f"WHERE id IN ({marks}) ORDER BY id{suffix}",
            ids,
        )  # one lock order: no deadlocks
        at: Callable[[Any], dt.datetime | None] = Invoice.first_approved_at.python_value
        rows = [
            _Row(i, n, st, Invoice.total.python_value(t), rev, cur, score or 0, flags or "", by, at(when), chg)
            for i, n, st, t, rev, cur, score, flags, by, when, chg in cursor
        ]
    return {r.id: r for r in rows} | {r.number: r for r in rows}


def _approve_chunk(
    ctx: Ctx, refs: list[str | int], include_flagged: bool = False, rules: FourEyes = FourEyes(False, None)
) -> ApproveResult:
    # (The auto-approve job is one set-based UPDATE: auto_approve_due.)
    result = ApproveResult()
    db = database.obj
    by_ref = _read_rows(refs, lock=True)
    now = ctx.clock.now()
    winners: dict[int, _Row] = {}
    firsts: dict[int, _Row] = {}  # four-eyes: given their first approval here
    accepted: dict[int, list[risk.Flag]] = {}
    for ref in refs:
        inv = by_ref.get(ref)
        if inv is None:
            result.failed.append((str(ref), "does not exist"))
        elif inv.id in winners or inv.id in firsts:
            continue  # named twice
        elif inv.status != S.UNDER_REVIEW:
            result.failed.append((inv.number, _refusal(inv.status, APPROVE_REFUSALS)))
        elif inv.flagged and not include_flagged:
            result.failed.append((inv.number, flagged_reason(inv.flags, inv.risk_score)))
        elif (refusal := _four_eyes_refusal(ctx, inv, rules)) is not None:
            result.failed.append((inv.number, refusal))
        else:
            if rules.needs_two(inv.total, inv.currency) and not inv.first_approved_by:
                firsts[inv.id] = inv
            else:
                winners[inv.id] = inv
            if inv.flagged:
                accepted[inv.id] = inv.flags
    if accepted:
        access.require(ctx, "accept_flags", _what([by_ref[i].number for i in accepted]))
    if firsts:
        _first_approvals(ctx, firsts, accepted, rules)
        result.waiting.extend(f.number for f in firsts.values())
    if winners:
        p = db.param
        _update_locked(
            f"status = {p}, approved_at = {p}, approved_by = {p}, reviewed_revision = revision",
            [S.APPROVED, Invoice.approved_at.db_value(now), ctx.actor],
            list(winners),
        )
        audits = []
        for w in winners.values():
            extra = _acceptance(w, accepted)
            if w.first_approved_by:  # the second of two approvals
                extra["first_approval"] = {"by": w.first_approved_by, "at": w.first_approved_at}
                extra["second_approval_above"] = str(rules.threshold)
            audits.append(
                audit_row(
                    ctx, "approve", w, (S.UNDER_REVIEW, w.total), (S.APPROVED, w.total), revision=w.revision, **extra
                )
            )
        insert_audits(audits)
        result.done.extend(w.number for w in winners.values())
        result.accepted.extend((winners[i].number, flags) for i, flags in accepted.items() if i in winners)
    return result


def _update_locked(assignments: str, args: list[Any], ids: list[int], guard: str = "") -> None:
    """One guarded UPDATE of invoices under review whose rows this transaction
    has locked (approve, first approvals); every one must change.

    COALESCE keeps planners on the primary key: with the bare column, SQLite
    without fresh statistics walks the status index instead."""
    p = database.obj.param
    cursor = database.obj.execute_sql(
        f"UPDATE invoice SET {assignments} "
        f"WHERE id IN ({', '.join([p] * len(ids))}) AND COALESCE(status, '') = {p}{guard}",
        [*args, *ids, S.UNDER_REVIEW],
    )
    if cursor.rowcount != len(ids):  # impossible under the locks held
        raise RuntimeError("approve: rows changed under a held lock")


def _acceptance(row: _Row, accepted: dict[int, list[risk.Flag]]) -> dict[str, Any]:
    """Audit detail of an approval that accepted flags: who accepted which flags (at the event's revision)."""
    if row.id not in accepted:
        return {}
    return {"accepted_flags": flag_dicts(accepted[row.id]), "risk_score": row.risk_score}


def _first_approvals(ctx: Ctx, firsts: dict[int, _Row], accepted: dict[int, list[risk.Flag]], rules: FourEyes) -> None:
    """The first of two approvals: recorded on the invoice (which stays under
    review) and in an `approve_first` event, under the locks held."""
    p = database.obj.param
    now = ctx.clock.now()
    _update_locked(
        f"first_approved_by = {p}, first_approved_at = {p}",
        [ctx.user, Invoice.first_approved_at.db_value(now)],
        list(firsts),
        " AND first_approved_by IS NULL",
    )
    insert_audits(
        [
            audit_row(
                ctx,
                "approve_first",
                f,
                (S.UNDER_REVIEW, f.total),
                (S.UNDER_REVIEW, f.total),
                revision=f.revision,
                approvals="1 of 2",
                second_approval_above=str(rules.threshold),
                **_acceptance(f, accepted),
            )
            for f in firsts.values()
        ]
    )


@dataclass(frozen=True)
class FlaggedInvoice:
    """A flagged invoice of a preview: approved only by accepting `flags`."""

    id: int
    number: str
    flags: tuple[risk.Flag, ...]
    total: Decimal
    currency: str
    revision: int
    risk_score: int

    @property
    def reason(self) -> str:
        return flagged_reason(self.flags, self.risk_score)


@dataclass
class ApprovePreview:
    """What approving these invoices would do now (advisory: approve_many
    checks everything again under the row locks)."""

    ready: list[str] = field(default_factory=list)  # numbers approved as they are
    flagged: list[FlaggedInvoice] = field(default_factory=list)  # approved only with acceptance
    refused: list[tuple[str, str]] = field(default_factory=list)  # (number, reason)
    refused_by_status: dict[str, int] = field(default_factory=dict)  # status ("" gone) -> how many
    ready_ids: list[int] = field(default_factory=list)
    ready_totals: dict[str, Decimal] = field(default_factory=dict)  # currency -> sum
    flagged_totals: dict[str, Decimal] = field(default_factory=dict)
    # four-eyes: of ready and flagged, the numbers this approval leaves at
    # "1 of 2 approvals", waiting for a second approver
    second_needed: list[str] = field(default_factory=list)

    @property
    def flagged_ids(self) -> list[int]:
        return [f.id for f in self.flagged]

    def all_ready(self, include_flagged: bool = False) -> bool:
        """Would every invoice named be approved?"""
        return not self.refused and (include_flagged or not self.flagged)


def preview_approve(refs: Iterable[str | int], ctx: Ctx | None = None) -> ApprovePreview:
    """Sort the invoices named (ids or numbers) into ready, flagged and
    refused, in the order given; writes nothing, locks nothing.  With the
    approver's `ctx`, the four-eyes rules apply too (refusals, second_needed)."""
    out = ApprovePreview()
    refs = list(refs)
    seen: set[int] = set()
    rules = FourEyes(False, None)
    if ctx is not None:
        access.require(ctx, "approve", _what(refs) if refs else "")
        rules = four_eyes_rules()
    for start in range(0, len(refs), CHUNK):
        chunk = refs[start : start + CHUNK]
        by_ref = _read_rows(chunk, lock=False)
        for ref in chunk:
            inv = by_ref.get(ref)
            if inv is None:
                out.refused.append((str(ref), "does not exist"))
                out.refused_by_status[""] = out.refused_by_status.get("", 0) + 1
            elif inv.id in seen:
                continue
            elif inv.status != S.UNDER_REVIEW:
                seen.add(inv.id)
                out.refused.append((inv.number, _refusal(inv.status, APPROVE_REFUSALS)))
                out.refused_by_status[inv.status] = out.refused_by_status.get(inv.status, 0) + 1
            elif ctx is not None and (refusal := _four_eyes_refusal(ctx, inv, rules)) is not None:
                seen.add(inv.id)
                out.refused.append((inv.number, refusal))
                # not a status: "four_eyes" counts those this person may not approve (a revision of theirs, …)
                out.refused_by_status["four_eyes"] = out.refused_by_status.get("four_eyes", 0) + 1
            elif inv.flagged:
                seen.add(inv.id)
                out.flagged.append(
                    FlaggedInvoice(
                        inv.id, inv.number, tuple(inv.flags), inv.total, inv.currency, inv.revision, inv.risk_score
                    )
                )
                out.flagged_totals[inv.currency] = out.flagged_totals.get(inv.currency, Decimal(0)) + inv.total
                if rules.needs_two(inv.total, inv.currency) and not inv.first_approved_by:
                    out.second_needed.append(inv.number)
            else:
                seen.add(inv.id)
                out.ready.append(inv.number)
                out.ready_ids.append(inv.id)
                out.ready_totals[inv.currency] = out.ready_totals.get(inv.currency, Decimal(0)) + inv.total
                if rules.needs_two(inv.total, inv.currency) and not inv.first_approved_by:
                    out.second_needed.append(inv.number)
    return out


def hold_score(settings: StoreSettings | None = None) -> int:
    """The store setting risk_hold_score: at the end of its hold an invoice
    scoring at least this is held for a person."""
    return (settings if settings is not None else load_settings()).risk.hold_score


@dataclass
class AutoApproveResult(BulkResult):
    # (number, flags) of each invoice held for a person in this call
    held: list[tuple[str, list[risk.Flag]]] = field(default_factory=list)


def _update_due(
    now: dt.datetime, limit: int, sets: str, set_args: list[Any], where: str, where_args: list[Any], returning: str
) -> Any:
    """UPDATE invoice SET `sets` on at most `limit` invoices under review whose
    review deadline passed and that match `where` (" AND …"), the earliest
    deadlines first, `where` checked again on each row it updates; RETURNING
    `returning`.  On PostgreSQL the rows are claimed FOR UPDATE SKIP LOCKED.

    The rows are chosen once, in a materialized CTE.  Written as `id IN
    (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`, PostgreSQL may run the
    subquery again for every row it scans (on a small table: a sequential
    scan and a subplan), each run skipping the rows the statement already
    updated, so that a batch of 2 took all 7 invoices due."""
    db = database.obj
    p = db.param
    skip_locked = " FOR UPDATE SKIP LOCKED" if db.for_update else ""
    return db.execute_sql(
        f"WITH due AS MATERIALIZED (SELECT id FROM invoice WHERE status = {p} AND review_deadline <= {p}{where} "
        f"ORDER BY review_deadline, id LIMIT {int(limit)}{skip_locked}) "
        f"UPDATE invoice SET {sets} WHERE id IN (SELECT id FROM due) AND COALESCE(status, '') = {p}{where} "
        f"RETURNING {returning}",
        [S.UNDER_REVIEW, Invoice.review_deadline.db_value(now), *where_args, *set_args, S.UNDER_REVIEW, *where_args],
    )


def auto_approve_due(ctx: Ctx, limit: int = 10_000, *, hold: bool = True) -> AutoApproveResult:
    """The job: approve up to `limit` invoices whose hold expired; rejected
    ones wait; flagged ones are held for a person.

    One set-based guarded UPDATE: its WHERE clause is the guard (under review,
    deadline passed, and — unless the store setting auto_approve_flagged is
    on — a risk score below risk_hold_score and never held), RETURNING says
    which rows it took, and their audit events are written in the same
    transaction.  On PostgreSQL the candidates are claimed with FOR UPDATE
    SKIP LOCKED, so several job loops split the due invoices between them and
    never approve one twice.

    A due invoice scoring at least risk_hold_score is held instead (a second
    set-based UPDATE, same guard style): held_at set once, by the first tick
    that holds it, with a `hold` audit event naming its flags; it stays under
    review until a person approves it (accepting its flags), even if an
    adjust or reissue clears its flags later.  Its notified_at is cleared so
    that the next admin digest lists it as held.

    Four-eyes (team mode, second_approval_above set): an invoice that needs
    two approvals is never auto-approved, whatever its score and even with
    one approval given: it is held and escalated like a flagged one.

    hold=False: approve only. The job (jobs.auto_approve_due) holds in its
    first batch and again only after a batch held `limit`: looking for
    invoices to hold reads every due invoice left, each batch.
    """
    now = ctx.clock.now()
    db = database.obj
    p = db.param
    settings = load_settings()
    flagged_too = settings.auto_approve_flagged
    threshold = hold_score(settings)
    result = AutoApproveResult()
    with database.atomic():
        access.require(ctx, "jobs")
        rules = four_eyes_rules(settings)
        two_sql, two_args = rules.sql(p) if rules.active else ("", [])
        if flagged_too:
            guard, args = "", []
        else:
            # COALESCE: keeps the planner on (status, review_deadline), not the risk-order index.
            guard, args = f" AND COALESCE(risk_score, 0) < {p} AND held_at IS NULL", [threshold]
        if two_sql:
            guard, args = f"{guard} AND NOT ({two_sql})", [*args, *two_args]
        cursor = _update_due(
            now,
            limit,
            f"status = {p}, approved_at = {p}, approved_by = {p}, reviewed_revision = revision",
            [S.APPROVED, Invoice.approved_at.db_value(now), ctx.actor],
            guard,
            args,
            "id, number, total, revision, risk_score, risk_flags",
        )
        rows = [
            _Row(i, n, S.APPROVED, Invoice.total.python_value(t), rev, risk_score=score or 0, risk_flags=flags or "")
            for i, n, t, rev, score, flags in cursor
        ]
        # Unflagged: their events set-based, from the rows just approved (thousands a tick);
        # flagged ones (auto_approve_flagged on) name their flags, row by row.
        insert_audits_of(ctx, "auto_approve", [r.id for r in rows if not r.flagged], S.UNDER_REVIEW, S.APPROVED)
        insert_audits(
            [
                audit_row(
                    ctx,
                    "auto_approve",
                    r,
                    (S.UNDER_REVIEW, r.total),
                    (S.APPROVED, r.total),
                    revision=r.revision,
                    flags=flag_dicts(r.flags),
                    risk_score=r.risk_score,
                    auto_approve_flagged="on",
                )
                for r in rows
                if r.flagged
            ]
        )
        held: list[_Row] = []
        reasons: list[str] = []
        hold_args: list[Any] = []
        if not flagged_too:
            reasons.append(f"risk_score >= {p}")
            hold_args.append(threshold)
        if two_sql:
            reasons.append(two_sql)
            hold_args += two_args
        if reasons and hold:
            held_sql = f" AND ({' OR '.join(reasons)}) AND held_at IS NULL"
            cursor = _update_due(
                now,
                limit,
                f"held_at = {p}, notified_at = NULL",
                [Invoice.held_at.db_value(now)],
                held_sql,
                hold_args,
                "id, number, total, revision, risk_score, risk_flags, currency, first_approved_by",
            )
            held = [
                _Row(
                    i,
                    n,
                    S.UNDER_REVIEW,
                    Invoice.total.python_value(t),
                    rev,
                    cur,
                    risk_score=score or 0,
                    risk_flags=flags or "",
                    first_approved_by=first,
                )
                for i, n, t, rev, score, flags, cur, first in cursor
            ]
            audits = []
            for r in held:
                why: dict[str, Any] = {}
                if r.risk_score >= threshold and not flagged_too:
                    why.update(flags=flag_dicts(r.flags), risk_score=r.risk_score, hold_score=threshold)
                if rules.needs_two(r.total, r.currency):
                    why.update(
                        second_approval_above=str(rules.threshold), approvals=f"{1 if r.first_approved_by else 0} of 2"
                    )
                audits.append(
                    audit_row(
                        ctx, "hold", r, (S.UNDER_REVIEW, r.total), (S.UNDER_REVIEW, r.total), revision=r.revision, **why
                    )
                )
            insert_audits(audits)
    result.done = [r.number for r in rows]
    result.held = [(r.number, r.flags) for r in held]
    return result


def held_count() -> int:
    """Invoices under review that the job loop held for a person (flagged)."""
    return Invoice.select().where((Invoice.status == S.UNDER_REVIEW) & Invoice.held_at.is_null(False)).count()


def overdue_count() -> int:
    """Invoices sent and owed past their due date (collections; the queue's counts line)."""
    return Invoice.select().where(Invoice.status == S.OVERDUE).count()


# --------------------------------------------------------------------------
# Adjust: one manual credit or charge; stays UNDER_REVIEW, number kept.

ADJUST_KINDS = {"credit": "manual_credit", "charge": "manual_charge"}


def validate_adjustment(
    kind: str, amount: Decimal, description: str, currency: str | None = None
) -> tuple[str, Decimal, str]:
    if kind not in ADJUST_KINDS:
        raise BadInput("kind", f"{kind!r} is not credit or charge")
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise BadInput("amount", f"{amount!r} is not a number")
    if amount <= 0:
        raise BadInput("amount", "must be greater than zero (choose credit or charge for the sign)")
    if amount > MAX_ADJUSTMENT:
        raise BadInput("amount", f"must not exceed {MAX_ADJUSTMENT:,}")
    if currency and quantize(amount, currency) != amount:
        raise BadInput(
            "amount",
            f"{currency} amounts have at most "
            f"{-int(quantize(Decimal(1), currency).as_tuple().exponent)} decimal places",
        )
    try:
        text = typed_text("description", description, max_len=300)
    except TextError as exc:
        raise BadInput(exc.field, exc.reason) from None
    return ADJUST_KINDS[kind], amount, text


@dataclass(frozen=True)
class AdjustBasis:
    """What previewing an adjustment needs of the invoice, read once (the
    console previews every key typed without a store read)."""

    id: int
    number: str
    currency: str
    status: str
    total: Decimal
    taxable: Decimal  # charges − discounts + corrections: the base of its taxes
    tax_total: Decimal
    rates: tuple[billing.TaxRate, ...]  # of the account, in order


def adjust_basis(ref: str | int | Invoice) -> AdjustBasis:
    """The basis of an invoice given as id, number or the Invoice read."""
    inv = ref if isinstance(ref, Invoice) else find_invoice(getattr(ref, "id", ref))
    rates = billing.load_tax_rates(Account.get_by_id(inv.account_id))
    return AdjustBasis(
        inv.id,
        inv.number,
        inv.currency,
        inv.status,
        inv.total,
        inv.subtotal - inv.discount_total + inv.correction_total,
        inv.tax_total,
        rates,
    )


def _taxes_after(basis: AdjustBasis, signed: Decimal) -> list[billing.Tax]:
    """The invoice's tax lines once a net correction `signed` joins the base."""
    return billing.taxes_on(basis.taxable + signed, basis.rates, basis.currency)


@dataclass(frozen=True)
class AdjustPreview:
    """What adjusting an invoice would do now (advisory: adjust checks it all
    again under the row lock).  A refusal is `reason`, with `field` naming
    the input at fault (bad input) or None (the invoice's state).

    A manual charge or credit is a net amount taxed like the invoice's
    charges: `correction` is the net (signed), `tax` the change in tax, and
    `after` = `before` + `correction` + `tax`."""

    invoice_id: int
    number: str
    currency: str
    kind: str
    amount: Decimal | None  # as read, at the currency's minor unit
    before: Decimal  # the total now
    correction: Decimal | None = None  # net, signed: -x for a credit, x for a charge
    tax: Decimal | None = None  # the change in tax the correction brings
    after: Decimal | None = None  # the new total
    reason: str | None = None
    field: str | None = None

    @property
    def applies(self) -> bool:
        return self.reason is None

    @property
    def change(self) -> Decimal | None:
        """The change in the total (correction and its tax)."""
        return None if self.after is None else self.after - self.before


def preview_adjust(
    ref: str | int | Invoice | AdjustBasis,
    kind: str,
    amount: Decimal | str,
    description: str | None = None,
    ctx: Ctx | None = None,
) -> AdjustPreview:
    """The outcome of adjust(ref, kind, amount, description), writing nothing.

    ref: an id or number, the Invoice read, or its AdjustBasis (no store
    read: the console passes it on every key typed).  NotFound if there is none.
    amount: a Decimal, or the text a person typed (read by money.parse_amount,
    the one parser of typed amounts).  Checks run in adjust's order.
    """
    basis = ref if isinstance(ref, AdjustBasis) else adjust_basis(ref)
    if ctx is not None:  # the person's role first: NotAllowed, as adjust would say
        access.require(ctx, "adjust", basis.number)
    out: dict[str, Any] = dict(
        invoice_id=basis.id, number=basis.number, currency=basis.currency, kind=kind, amount=None, before=basis.total
    )
    try:
        if kind not in ADJUST_KINDS:
            raise BadInput("kind", f"{kind!r} is not credit or charge")
        if isinstance(amount, str):
            try:
                amount = parse_amount(amount, basis.currency)
            except MoneyError as exc:
                raise BadInput(exc.field, exc.reason) from None
        validate_adjustment(kind, amount, "-" if description is None else description, basis.currency)
        amount = quantize(amount, basis.currency)
        out["amount"] = amount
        if basis.status != S.UNDER_REVIEW:
            return AdjustPreview(**out, reason=_refusal(basis.status, CHANGE_REFUSALS))
        signed = -amount if kind == "credit" else amount
        tax = quantize(sum((t.amount for t in _taxes_after(basis, signed)), ZERO) - basis.tax_total, basis.currency)
        after = quantize(basis.total + signed + tax, basis.currency)
        if after < 0:  # that is a credit note, not an adjustment
            raise BadInput(
                "amount",
                f"a credit of {format_money(amount, basis.currency)} would make "
                f"{basis.number}'s total negative ({format_money(after, basis.currency)})",
            )
    except BadInput as exc:
        return AdjustPreview(**out, reason=exc.reason, field=exc.field)
    return AdjustPreview(**out, correction=signed, tax=tax, after=after)


def adjust(ctx: Ctx, ref: str | int, kind: str, amount: Decimal, description: str) -> Invoice:
    """Apply one manual credit (kind='credit') or charge ('charge'), net,
    with the tax it brings under the account's tax rules."""
    correction_kind, amount, text = validate_adjustment(kind, amount, description)
    with database.atomic():
        inv = lock_invoice(ref)
        access.require(ctx, "adjust", inv.number)
        basis = adjust_basis(inv)
        outcome = preview_adjust(basis, kind, amount, text)  # the rules the console and dry run show
        if outcome.field:
            raise BadInput(outcome.field, outcome.reason or "")
        if outcome.reason:
            raise Refused(inv.number, outcome.reason)
        signed, tax = outcome.correction, outcome.tax
        assert signed is not None and tax is not None  # a preview that applies has them
        before, first = _state(inv), inv.first_approved_by
        position = (
            Correction.select(Correction.position)
            .where(Correction.invoice == inv.id)
            .order_by(Correction.position.desc())
            .scalar()
            or 0
        ) + 1
        revision = inv.revision
        revisions.take(ctx, inv, "adjust")  # the lines as they were, for the diff
        _save_guarded(
            inv,
            S.UNDER_REVIEW,
            revision,
            total=outcome.after,
            outstanding=inv.outstanding + outcome.change,
            correction_total=inv.correction_total + signed,
            tax_total=inv.tax_total + tax,
            revision=revision + 1,
            **_made_by(ctx, inv),
        )
        billing.write_taxes(inv.id, _taxes_after(basis, signed))
        Correction.create(
            invoice=inv.id,
            position=position,
            kind=correction_kind,
            description=text,
            amount=signed,
            created_by=ctx.actor,
            approved_at=ctx.clock.now(),
            revision=inv.revision,
        )
        write_audit(
            ctx,
            "adjust",
            inv,
            before,
            _state(inv),
            kind=correction_kind,
            amount=str(signed),
            tax=str(tax),
            description=text,
            revision=inv.revision,
            **_cleared(first),
        )
        _assess(inv)
    _after_change(inv)
    return inv


# --------------------------------------------------------------------------
# Reissue: request (now / off-peak) -> REJECTED; complete -> UNDER_REVIEW.

REISSUE_MANY = 20  # more at once than this: the off-peak window is recommended (seed 000)


def _check_reissue_mode(mode: str) -> None:
    if mode not in S.REISSUE_MODES:
        raise BadInput("mode", f"{mode!r} is not now or off_peak")


def reissue_refusal(inv: Invoice) -> str | None:
    """Why this invoice cannot be reissued (the sentence after its number), or None."""
    if inv.status not in (S.UNDER_REVIEW, S.REJECTED):
        table = CHANGE_REFUSALS | {S.APPROVED: APPROVE_REFUSALS[S.APPROVED] + ": it can no longer be reissued"}
        return _refusal(inv.status, table)
    if inv.kind != "regular":
        return "is not a regular invoice: only regular invoices are reviewed"
    return None


def request_reissue(ctx: Ctx, ref: str | int, mode: str) -> Invoice:
    """Mark for reissue: REJECTED until the recalculation is done.

    From UNDER_REVIEW, or from REJECTED to change the mode (e.g. an admin
    who cannot wait for the night asks for "now").
    """
    _check_reissue_mode(mode)
    with database.atomic():
        inv = lock_invoice(ref)
        access.require(ctx, "reissue", inv.number)
        refusal = reissue_refusal(inv)
        if refusal:
            raise Refused(inv.number, refusal)
        before, first = _state(inv), inv.first_approved_by
        if mode == "now":
            after = ctx.clock.now()
        else:
            start, end = load_settings().offpeak
            after = next_window_start(ctx.clock, start, end)
        _save_guarded(
            inv,
            inv.status,
            inv.revision,
            status=S.REJECTED,
            reissue_mode=mode,
            reissue_requested_at=ctx.clock.now(),
            reissue_after=after,
            **_made_by(ctx, inv),
        )
        write_audit(ctx, "request_reissue", inv, before, _state(inv), mode=mode, reissue_after=after, **_cleared(first))
    return inv


def complete_reissue(ctx: Ctx, ref: str | int) -> Invoice:
    """REJECTED -> UNDER_REVIEW with amounts recalculated, corrections kept."""
    with database.atomic():
        inv = lock_invoice(ref)
        access.require(ctx, "reissue", inv.number)  # a person (reissue now) or the job loop (off-peak)
        if inv.status != S.REJECTED:
            raise Refused(
                inv.number,
                f"is {S.label(S.INVOICE_STATUSES, inv.status).lower()}: only a rejected invoice awaits reissue",
            )
        before = _state(inv)
        revision = inv.revision
        revisions.take(ctx, inv, "reissue")  # the lines as they were, for the diff
        totals = billing.recalculate(inv)  # rewrites charge and tax lines
        cls = CustomerClass.get_by_id(inv.customer_class_id)
        # The hold restarts: admins get the full review period again.
        deadline = ctx.clock.now() + dt.timedelta(days=cls.hold_days)
        _save_guarded(
            inv,
            S.REJECTED,
            revision,
            status=S.UNDER_REVIEW,
            revision=revision + 1,
            reissue_mode=None,
            reissue_after=None,
            review_deadline=deadline,
            notified_at=None,
            **totals,
            **_made_by(ctx, inv),
        )
        write_audit(ctx, "reissue", inv, before, _state(inv), revision=inv.revision)
        _assess(inv)
    _after_change(inv)
    return inv


@documents.pdfs_together()  # the PDFs of the reissued invoices: rendered in worker processes, kept in order
def reissue_many(ctx: Ctx, refs: Iterable[str | int], mode: str, progress: Progress | None = None) -> BulkResult:
    """Request reissue of each; with mode 'now' complete it at once too."""
    result = BulkResult()
    refs = list(refs)
    if refs:  # one refusal for all (NotAllowed), not one per invoice
        access.require(ctx, "reissue", _what(refs))
    for i, ref in enumerate(refs, 1):
        inv = None
        try:
            inv = request_reissue(ctx, ref, mode)
            if mode == "now":
                complete_reissue(ctx, inv.id)
            result.done.append(inv.number)
        except (Refused, BadInput) as exc:
            result.failed.append((getattr(exc, "number", "") or str(ref), getattr(exc, "reason", str(exc))))
        except Exception as exc:  # one bad invoice never blocks the batch
            reason = f"{type(exc).__name__}: {exc}"
            if inv is not None:  # requested, but the recalculation failed: it stays rejected
                reason = f"reissue requested, but the recalculation failed ({reason}); the job loop retries it"
            result.failed.append((inv.number if inv is not None else number_of(ref), reason))
        if progress:
            progress(i, len(refs))
    return result


@dataclass
class ReissuePreview:
    """What reissuing these invoices in `mode` would do now (advisory:
    reissue_many checks each again under its row lock)."""

    mode: str
    now: list[str] = field(default_factory=list)  # recalculated at once, back under review
    queued: list[str] = field(default_factory=list)  # rejected until the off-peak window opens
    window_opens: dt.datetime | None = None  # naive UTC, when any are queued
    refused: list[tuple[str, str]] = field(default_factory=list)  # (number, reason)
    refused_by_status: dict[str, int] = field(default_factory=dict)  # status ("" gone) -> how many
    ids: list[int] = field(default_factory=list)  # those that would be reissued

    @property
    def all_apply(self) -> bool:
        return not self.refused

    @property
    def recommend_offpeak(self) -> bool:
        return len(self.ids) > REISSUE_MANY


def preview_reissue(
    refs: Iterable[str | int], mode: str, clock: Clock | None = None, ctx: Ctx | None = None
) -> ReissuePreview:
    """Sort the invoices named (ids or numbers) into reissued now, queued for
    the off-peak window (and when it opens) and refused, in the order given;
    writes nothing, locks nothing.  clock: the command's (default: the real
    clock in the billing zone)."""
    _check_reissue_mode(mode)
    out = ReissuePreview(mode)
    refs = list(refs)
    if ctx is not None and refs:  # the person's role first: NotAllowed, as reissue would say
        access.require(ctx, "reissue", _what(refs))
    seen: set[int] = set()
    for start in range(0, len(refs), CHUNK):
        chunk = refs[start : start + CHUNK]
        ids = [r for r in chunk if isinstance(r, int)]
        numbers = [r for r in chunk if not isinstance(r, int)]
        rows = Invoice.select(Invoice.id, Invoice.number, Invoice.status, Invoice.kind).where(
            Invoice.id.in_(ids) | Invoice.number.in_(numbers)
        )
        by_ref = {r.id: r for r in rows} | {r.number: r for r in rows}
        for ref in chunk:
            inv = by_ref.get(ref)
            if inv is None:
                out.refused.append((str(ref), "does not exist"))
                out.refused_by_status[""] = out.refused_by_status.get("", 0) + 1
                continue
            if inv.id in seen:
                continue
            seen.add(inv.id)
            refusal = reissue_refusal(inv)
            if refusal:
                out.refused.append((inv.number, refusal))
                out.refused_by_status[inv.status] = out.refused_by_status.get(inv.status, 0) + 1
            else:
                out.ids.append(inv.id)
                (out.now if mode == "now" else out.queued).append(inv.number)
    if out.queued:  # the moment request_reissue would set
        settings = load_settings()
        clock = clock or Clock(tz=zone(settings["timezone"]))
        out.window_opens = next_window_start(clock, *settings.offpeak)
    return out


def number_of(ref: str | int) -> str:
    """The invoice's number for messages (a number given stays as given)."""
    if isinstance(ref, int):
        return Invoice.select(Invoice.number).where(Invoice.id == ref).scalar() or str(ref)
    return str(ref)


def due_for_offpeak_reissue(ctx: Ctx, limit: int = 200) -> list[int]:
    now = ctx.clock.now()
    query = (
        Invoice.select(Invoice.id)
        .where((Invoice.status == S.REJECTED) & (Invoice.reissue_after <= now))
        .order_by(Invoice.reissue_after, Invoice.id)
        .limit(limit)
    )
    return [r.id for r in query]


# --------------------------------------------------------------------------
# Dispatch: APPROVED -> UNPAID / PAID (payment created; payments.py moves it on).


def mark_invoice_sent(ctx: Ctx, ref: str | int, revision: int) -> Invoice:
    """APPROVED -> PAID (balance covers it) or UNPAID (a payment to wait for)."""
    with database.atomic():
        inv = lock_invoice(ref)
        access.require(ctx, "jobs", inv.number)
        if inv.status != S.APPROVED:
            raise Refused(inv.number, f"is {inv.status}, not approved")
        if inv.revision != revision:
            raise Refused(inv.number, f"changed to revision {inv.revision} after revision {revision} was queued")
        account = for_update(Account.select().where(Account.id == inv.account_id)).get()
        before = _state(inv)
        now = ctx.clock.now()
        covered = inv.outstanding <= 0 or account.balance >= inv.outstanding
        if covered:
            Account.update(balance=Account.balance - max(inv.outstanding, Decimal(0))).where(
                Account.id == account.id
            ).execute()
            payments.new_payment(ctx, inv, payments.PAID_FROM_BALANCE, inv.outstanding, paid_at=now)
            status, outstanding = S.PAID, Decimal(0)
        else:
            payments.new_payment(ctx, inv, payments.WAITING, inv.outstanding)
            status, outstanding = S.UNPAID, inv.outstanding
        _save_guarded(
            inv, S.APPROVED, revision, status=status, outstanding=outstanding, sent_at=now, sent_revision=revision
        )
        write_audit(ctx, "send", inv, before, _state(inv), revision=revision)
    return inv


def _assess(inv: Invoice) -> None:
    """Risk flags and score of the invoice's new revision (same transaction)."""
    risk_store.assess_invoice(inv)


def _after_change(inv: Invoice) -> None:
    """Render the PDF of the new revision, after the commit.

    Rendering inside the transaction would hold the store's write lock (on
    SQLite, for every admin) while fpdf2 works.  The change is already
    committed, so a failed render does not undo it: the PDF of a revision is
    rendered on demand when it is missing (documents.current_pdf).
    """
    if database.in_transaction():
        return  # a caller's transaction: its PDF is rendered on first use
    if documents.defer_pdf(inv):
        return  # a bulk change (documents.pdfs_together): rendered in worker processes
    try:
        documents.store_pdf(inv)
    except Exception as exc:  # noqa: BLE001 - committed; the next reader renders it
        logging.getLogger(__name__).warning("PDF of %s revision %s not rendered: %s", inv.number, inv.revision, exc)
