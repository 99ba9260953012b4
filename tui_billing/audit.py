"""The audit trail: one event per change, written in the changing transaction.

Who (ctx.actor, and ctx.role: their role as access.require found it), when (ctx.clock), what (action), the invoice's status and
total before and after, and the details as JSON.  write_audit for one event,
audit_row + insert_audits for the thousands of a bulk transition.
"""

from __future__ import annotations

import json
from operator import itemgetter

from .context import Ctx
from .store.bulk import db_rows, insert_rows
from .store.models import AuditEvent

AUDIT_COLUMNS = (
    "at",
    "actor",
    "role",
    "action",
    "invoice",
    "number",
    "before_status",
    "before_total",
    "after_status",
    "after_total",
    "detail",
)


def audit_row(ctx: Ctx, action: str, inv, before: tuple | None, after: tuple | None, /, **detail) -> dict:
    """One event as a row (AUDIT_COLUMNS).  `inv`: anything with .id and
    .number (an Invoice, a bulk row), or None; before/after: (status, total)."""
    return {
        "at": ctx.clock.now(),
        "actor": ctx.actor,
        "role": ctx.role,
        "action": action,
        "invoice": inv.id if inv else None,
        "number": inv.number if inv else None,
        "before_status": before[0] if before else None,
        "before_total": before[1] if before else None,
        "after_status": after[0] if after else None,
        "after_total": after[1] if after else None,
        "detail": json.dumps(detail, default=str, ensure_ascii=False) if detail else "",
    }


def write_audit(ctx: Ctx, action: str, inv=None, before=None, after=None, /, **detail) -> None:
    AuditEvent.insert(audit_row(ctx, action, inv, before, after, **detail)).execute()


def insert_audits_of(ctx: Ctx, action: str, ids: list[int], before_status: str, after_status: str) -> None:
    """One event per invoice of `ids`, set-based: one INSERT … SELECT from the
    invoice rows themselves (their number, total and revision, as the job just
    left them), for the thousands of an auto-approve tick.  Detail:
    {"revision": N}, as audit_row writes it."""
    if not ids:
        return
    from .store.models import Invoice, database

    db = database.obj
    p = db.param
    at = AuditEvent.at.db_value(ctx.clock.now())
    # The ids as one parameter: a JSON array read by json_each (SQLite), an array (PostgreSQL).
    chosen, ids_arg = ("IN (SELECT value FROM json_each(?))", json.dumps(ids)) if p == "?" else ("= ANY(%s)", list(ids))
    db.execute_sql(
        f'INSERT INTO "{AuditEvent._meta.table_name}" ({", ".join(AUDIT_COLUMNS[:3])}, action, invoice_id, number, '
        "before_status, before_total, after_status, after_total, detail) "
        f"SELECT {p}, {p}, {p}, {p}, id, number, {p}, total, {p}, total, "
        f"'{{\"revision\": ' || revision || '}}' FROM \"{Invoice._meta.table_name}\" WHERE id {chosen} ORDER BY id",
        [at, ctx.actor, ctx.role, action, before_status, after_status, ids_arg],
    )


def insert_audits(rows: list[dict]) -> None:
    """Many audit events in one executemany (bulk transitions write thousands)."""
    columns = list(AUDIT_COLUMNS)
    insert_rows(AuditEvent, columns, db_rows(AuditEvent, columns, list(map(itemgetter(*columns), rows))))
