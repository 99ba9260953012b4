"""Revision snapshots and the diff "since the revision last reviewed".

An adjust or a reissue changes an invoice under review; the admin who looked
at it before needs to see what changed — per charge line and in total — not
re-read the whole invoice.

- A snapshot holds an invoice's charge lines, tax lines, corrections and
  totals as they were at one revision.  `take` is called inside the adjust
  and reissue transactions *before* the change, keyed by (invoice, revision),
  so the first change of a freshly generated invoice snapshots the revision
  as generated.  Generation itself writes no snapshot: the invoice's lines
  are that snapshot until something changes them (keeps the bill run and the
  demo fast).
- The revision last reviewed (the diff's baseline) is the earliest snapshot
  kept since the last review mark: approval (and `mark_reviewed`) set
  `Invoice.reviewed_revision` to the current revision; snapshots older than
  it are dropped.  For an invoice under review that was never marked, that
  is the revision as generated (or as issued when its postpay period
  closed): what every admin saw when it entered the queue.  An approved
  invoice cannot change any more, so it has no diff.
- `diff` is pure: lines are matched by (service, description) — several
  lines with the same key are paired exact matches first, then in order —
  and reported as added, removed or changed (quantity, discount or amount),
  with the change in total, subtotal, discounts, taxes and corrections.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .errors import Refused
from .money import ZERO

_IN_CHUNK = 500  # invoices per IN (...) list

if TYPE_CHECKING:
    from .context import Ctx
    from .store.models import Invoice

# --------------------------------------------------------------------------
# Pure part


@dataclass(frozen=True)
class LineState:
    """One line of a revision: a charge (service set) or a tax/correction (service '')."""

    description: str
    amount: Decimal
    service: str = ""
    quantity: Decimal | None = None
    discount: Decimal = ZERO

    @property
    def key(self) -> tuple[str, str]:
        return (self.service, self.description)

    @property
    def net(self) -> Decimal:
        return self.amount - self.discount

    def as_dict(self) -> dict:
        d: dict[str, str | None] = {"description": self.description, "amount": str(self.amount)}
        if self.service or self.quantity is not None:
            d.update(
                service=self.service,
                quantity=None if self.quantity is None else str(self.quantity),
                discount=str(self.discount),
            )
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LineState":
        q = d.get("quantity")
        return cls(
            d["description"],
            Decimal(d["amount"]),
            d.get("service", "") or "",
            None if q is None else Decimal(q),
            Decimal(d.get("discount", "0")),
        )


@dataclass(frozen=True)
class Snapshot:
    revision: int
    charges: tuple[LineState, ...]
    taxes: tuple[LineState, ...] = ()  # description = tax name
    corrections: tuple[LineState, ...] = ()
    subtotal: Decimal = ZERO
    discount_total: Decimal = ZERO
    tax_total: Decimal = ZERO
    correction_total: Decimal = ZERO
    total: Decimal = ZERO

    def lines_json(self) -> str:
        return json.dumps(
            {
                "charges": [c.as_dict() for c in self.charges],
                "taxes": [t.as_dict() for t in self.taxes],
                "corrections": [c.as_dict() for c in self.corrections],
            },
            ensure_ascii=False,
        )


@dataclass(frozen=True)
class LineChange:
    change: str  # added | removed | changed
    before: LineState | None
    after: LineState | None

    @property
    def line(self) -> LineState:
        return self.after or self.before  # type: ignore[return-value]

    @property
    def description(self) -> str:
        return self.line.description

    @property
    def service(self) -> str:
        return self.line.service

    @property
    def delta(self) -> Decimal:
        """Change of the line's net amount (after discount)."""
        return (self.after.net if self.after else ZERO) - (self.before.net if self.before else ZERO)

    @property
    def fields(self) -> tuple[str, ...]:
        """What differs on a changed line: quantity, discount, amount."""
        if not (self.before and self.after):
            return ()
        return tuple(
            name
            for name in ("quantity", "discount", "amount")
            if getattr(self.before, name) != getattr(self.after, name)
        )


@dataclass(frozen=True)
class RevisionDiff:
    from_revision: int
    to_revision: int
    charges: tuple[LineChange, ...]
    taxes: tuple[LineChange, ...]
    corrections: tuple[LineChange, ...]
    totals: dict[str, tuple[Decimal, Decimal]]  # name -> (before, after) for total, subtotal, …

    @property
    def total_before(self) -> Decimal:
        return self.totals["total"][0]

    @property
    def total_after(self) -> Decimal:
        return self.totals["total"][1]

    @property
    def total_delta(self) -> Decimal:
        return self.total_after - self.total_before

    @property
    def changed(self) -> bool:
        return bool(self.charges or self.taxes or self.corrections or self.total_delta)


TOTAL_NAMES = ("subtotal", "discount_total", "tax_total", "correction_total", "total")


def _pair(before: Sequence[LineState], after: Sequence[LineState], key) -> list[LineChange]:
    """Match lines by key: identical ones first, then in order; the rest are
    added or removed.  Unchanged lines are left out."""
    groups_b: dict = {}
    groups_a: dict = {}
    order: list = []
    for line in before:
        k = key(line)
        if k not in groups_b and k not in groups_a:
            order.append(k)
        groups_b.setdefault(k, []).append(line)
    for line in after:
        k = key(line)
        if k not in groups_b and k not in groups_a:
            order.append(k)
        groups_a.setdefault(k, []).append(line)
    out: list[LineChange] = []
    for k in order:
        b = list(groups_b.get(k, []))
        a = list(groups_a.get(k, []))
        for line in list(a):
            if line in b:
                b.remove(line)
                a.remove(line)
        for old, new in zip(b, a):
            out.append(LineChange("changed", old, new))
        out.extend(LineChange("removed", old, None) for old in b[len(a) :])
        out.extend(LineChange("added", None, new) for new in a[len(b) :])
    return out


def diff(before: Snapshot, after: Snapshot) -> RevisionDiff:
    return RevisionDiff(
        before.revision,
        after.revision,
        tuple(_pair(before.charges, after.charges, lambda line: line.key)),
        # Tax descriptions quote their base ("20 % of 1,234.00"): match by name.
        tuple(_pair(before.taxes, after.taxes, lambda line: line.description)),
        tuple(_pair(before.corrections, after.corrections, lambda line: (line.description, line.amount))),
        {name: (getattr(before, name), getattr(after, name)) for name in TOTAL_NAMES},
    )


# --------------------------------------------------------------------------
# Store part


def current(
    inv, charges: Iterable | None = None, taxes: Iterable | None = None, corrections: Iterable | None = None
) -> Snapshot:
    """The invoice as it is now (lines given, e.g. already loaded, or read)."""
    from .store.models import ChargeLine, Correction, TaxLine

    if charges is None:
        charges = ChargeLine.select().where(ChargeLine.invoice == inv.id).order_by(ChargeLine.position)
    if taxes is None:
        taxes = TaxLine.select().where(TaxLine.invoice == inv.id).order_by(TaxLine.position)
    if corrections is None:
        corrections = Correction.select().where(Correction.invoice == inv.id).order_by(Correction.position)
    return Snapshot(
        inv.revision,
        tuple(LineState(c.description, c.amount, c.service or "", c.quantity, c.discount) for c in charges),
        tuple(LineState(t.name, t.amount) for t in taxes),
        tuple(LineState(c.description, c.amount) for c in corrections),
        inv.subtotal,
        inv.discount_total,
        inv.tax_total,
        inv.correction_total,
        inv.total,
    )


def _from_row(row) -> Snapshot:
    data = json.loads(row.lines or "{}")
    return Snapshot(
        row.revision,
        tuple(LineState.from_dict(d) for d in data.get("charges", [])),
        tuple(LineState.from_dict(d) for d in data.get("taxes", [])),
        tuple(LineState.from_dict(d) for d in data.get("corrections", [])),
        row.subtotal,
        row.discount_total,
        row.tax_total,
        row.correction_total,
        row.total,
    )


def take(ctx, inv, action: str) -> None:
    """Keep the invoice's current revision before `action` changes it.

    Call inside the changing transaction, with the invoice row locked.  A
    snapshot of this revision that already exists is kept (the first one
    wins); snapshots older than the revision last reviewed are dropped.
    """
    take_many(ctx, [inv], action)


def take_many(ctx, invoices: Sequence, action: str) -> None:
    """`take` for many invoices (the off-peak reissue's batch): their lines
    read with one query per kind, the snapshots written with one INSERT."""
    from .store.bulk import insert_models
    from .store.models import ChargeLine, Correction, InvoiceSnapshot, TaxLine, ids_in

    ids = [inv.id for inv in invoices]
    lines: dict[type, dict[int, list]] = {}
    models: tuple[Any, ...] = (ChargeLine, TaxLine, Correction)
    for model in models:
        by_invoice = lines[model] = {i: [] for i in ids}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            query = model.select().where(ids_in(model.invoice, chunk)).order_by(model.invoice, model.position)
            for row in query.namedtuples():  # the columns as a model has them, without building models
                by_invoice[row.invoice].append(row)
    now = ctx.clock.now()
    rows = []
    for inv in invoices:
        snap = current(inv, lines[ChargeLine][inv.id], lines[TaxLine][inv.id], lines[Correction][inv.id])
        rows.append(
            {
                "invoice": inv.id,
                "revision": inv.revision,
                "taken_at": now,
                "action": action,
                "subtotal": snap.subtotal,
                "discount_total": snap.discount_total,
                "tax_total": snap.tax_total,
                "correction_total": snap.correction_total,
                "total": snap.total,
                "lines": snap.lines_json(),
            }
        )
    insert_models(InvoiceSnapshot, rows, ignore_existing=True)
    for inv in invoices:
        if inv.reviewed_revision:
            InvoiceSnapshot.delete().where(
                (InvoiceSnapshot.invoice == inv.id) & (InvoiceSnapshot.revision < inv.reviewed_revision)
            ).execute()


def forget(inv) -> None:
    """Drop every snapshot (an open postpay invoice's drafts were never reviewed)."""
    from .store.models import InvoiceSnapshot

    InvoiceSnapshot.delete().where(InvoiceSnapshot.invoice == inv.id).execute()


def baseline(inv) -> Snapshot | None:
    """The revision last reviewed, if the invoice changed since; else None."""
    from .store.models import InvoiceSnapshot

    row = (
        InvoiceSnapshot.select()
        .where(
            (InvoiceSnapshot.invoice == inv.id)
            & (InvoiceSnapshot.revision < inv.revision)
            & (InvoiceSnapshot.revision >= (inv.reviewed_revision or 0))
        )
        .order_by(InvoiceSnapshot.revision)
        .first()
    )
    return _from_row(row) if row else None


def since_review(inv, charges=None, taxes=None, corrections=None) -> RevisionDiff | None:
    """What changed between the revision last reviewed and now; None when
    nothing did (no adjust or reissue since)."""
    base = baseline(inv)
    if base is None:
        return None
    return diff(base, current(inv, charges, taxes, corrections))


def mark_reviewed(ctx: Ctx, ref: str | int) -> Invoice:
    """An admin has seen the current revision: it becomes the baseline of the
    next diff.  Only for an invoice under review; writes an audit event."""
    from . import access
    from . import statuses as S
    from .audit import write_audit
    from .store.locking import lock_invoice
    from .store.models import Invoice, InvoiceSnapshot, database

    with database.atomic():
        inv = lock_invoice(ref)
        access.require(ctx, "review", inv.number)
        if inv.status != S.UNDER_REVIEW:
            raise Refused(inv.number, f"is {S.label(S.INVOICE_STATUSES, inv.status).lower()}, not under review")
        before = (inv.status, inv.total)
        Invoice.update(reviewed_revision=inv.revision).where(
            (Invoice.id == inv.id) & (Invoice.revision == inv.revision)
        ).execute()
        InvoiceSnapshot.delete().where(
            (InvoiceSnapshot.invoice == inv.id) & (InvoiceSnapshot.revision < inv.revision)
        ).execute()
        inv.reviewed_revision = inv.revision
        write_audit(ctx, "mark_reviewed", inv, before, before, revision=inv.revision)
    return inv
