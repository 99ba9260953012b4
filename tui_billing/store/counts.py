"""Invoice counts per status x account type x customer class, kept up to date
by the database itself (issue 18), so that the counts line of the queue and the
finder costs a lookup, not a count of a million rows.

Triggers on `invoice` (and on `account`, whose type the counts are split by)
change `invoice_count` in the same transaction as the change that moves an
invoice: every transition, import, bill run, demo and raw SQL alike, with no
code path able to forget it.

- SQLite (one writer at a time): one row per (status, account type, class),
  its `n` moved by row triggers.
- PostgreSQL (many writers at once): rows are only ever added -- a statement
  trigger adds, per statement, what it changed per group (+n, -n) -- so two
  admins never wait on, or deadlock over, the same counter row; the job loop
  folds them back into one row per group (`compact`).  A count is the SUM of
  its group's rows on both backends.

`check` compares them with a recount (`tui-billing counts --check`, the race
suite); `rebuild` makes them from a recount.  Migration 0011 installs them;
a later migration that rebuilds a table (SQLite drops its triggers then) is
followed by `repair`.
"""

from __future__ import annotations

import logging

from peewee import Database, SqliteDatabase

from .models import database

log = logging.getLogger("tui_billing.store")

TABLE = "invoice_count"
COMPACT_ABOVE = 1000  # PostgreSQL: rows before the job loop folds them

_RECOUNT = (
    'SELECT i."status", a."account_type", i."customer_class_id", COUNT(*) FROM "invoice" i '
    'JOIN "account" a ON a."id" = i."account_id" GROUP BY 1, 2, 3'
)

# SQLite: row triggers, one counter row per group.
_TYPE_OF = 'SELECT "account_type" FROM "account" WHERE "id" = {side}."account_id"'
_PLUS = (
    f'INSERT INTO "{TABLE}" ("status", "account_type", "customer_class_id", "n") '
    f'VALUES (new."status", ({_TYPE_OF.format(side="new")}), new."customer_class_id", 1) '
    'ON CONFLICT ("status", "account_type", "customer_class_id") DO UPDATE SET "n" = "n" + 1;'
)
_MINUS = (
    f'UPDATE "{TABLE}" SET "n" = "n" - 1 WHERE "status" = old."status" '
    f'AND "account_type" = ({_TYPE_OF.format(side="old")}) AND "customer_class_id" = old."customer_class_id";'
)
SQLITE_TRIGGERS = {
    "invoice_count_insert": f'AFTER INSERT ON "invoice" BEGIN {_PLUS} END',
    "invoice_count_delete": f'AFTER DELETE ON "invoice" BEGIN {_MINUS} END',
    "invoice_count_update": (
        'AFTER UPDATE OF "status", "account_id", "customer_class_id" ON "invoice" '
        'WHEN old."status" IS NOT new."status" OR old."account_id" IS NOT new."account_id" '
        f'OR old."customer_class_id" IS NOT new."customer_class_id" BEGIN {_MINUS} {_PLUS} END'
    ),
    # An account's type changed: its invoices move to the other type's groups.
    "invoice_count_account_type": (
        'AFTER UPDATE OF "account_type" ON "account" WHEN old."account_type" IS NOT new."account_type" BEGIN '
        f'UPDATE "{TABLE}" SET "n" = "n" - (SELECT COUNT(*) FROM "invoice" i WHERE i."account_id" = new."id" '
        f'AND i."status" = "{TABLE}"."status" AND i."customer_class_id" = "{TABLE}"."customer_class_id") '
        'WHERE "account_type" = old."account_type"; '
        f'INSERT INTO "{TABLE}" ("status", "account_type", "customer_class_id", "n") '
        'SELECT i."status", new."account_type", i."customer_class_id", COUNT(*) FROM "invoice" i '
        'WHERE i."account_id" = new."id" GROUP BY 1, 3 '
        'ON CONFLICT ("status", "account_type", "customer_class_id") DO UPDATE SET "n" = "n" + excluded."n"; '
        "END"
    ),
}

# PostgreSQL: statement triggers with transition tables add the net change per group.
# SECURITY DEFINER: a per-admin login (README: Roles) needs no right on the counts table.
_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION invoice_count_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO "{TABLE}" ("status", "account_type", "customer_class_id", "n")
    SELECT r."status", a."account_type", r."customer_class_id", COUNT(*)
    FROM new_rows r JOIN "account" a ON a."id" = r."account_id" GROUP BY 1, 2, 3;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO "{TABLE}" ("status", "account_type", "customer_class_id", "n")
    SELECT r."status", a."account_type", r."customer_class_id", -COUNT(*)
    FROM old_rows r JOIN "account" a ON a."id" = r."account_id" GROUP BY 1, 2, 3;
  ELSE  -- most updates move no invoice between groups: nothing is added then
    INSERT INTO "{TABLE}" ("status", "account_type", "customer_class_id", "n")
    SELECT g."status", g."account_type", g."customer_class_id", SUM(g."d") FROM (
      SELECT r."status", a."account_type", r."customer_class_id", 1 AS "d"
      FROM new_rows r JOIN "account" a ON a."id" = r."account_id"
      UNION ALL
      SELECT r."status", a."account_type", r."customer_class_id", -1
      FROM old_rows r JOIN "account" a ON a."id" = r."account_id"
    ) g GROUP BY 1, 2, 3 HAVING SUM(g."d") <> 0;
  END IF;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION invoice_count_account_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
  INSERT INTO "{TABLE}" ("status", "account_type", "customer_class_id", "n")
  SELECT i."status", g."account_type", i."customer_class_id", SUM(g."d") FROM (
    SELECT r."id", r."account_type", 1 AS "d" FROM new_rows r
    UNION ALL SELECT r."id", r."account_type", -1 FROM old_rows r
  ) g JOIN "invoice" i ON i."account_id" = g."id" GROUP BY 1, 2, 3 HAVING SUM(g."d") <> 0;
  RETURN NULL;
END $$;
"""
PG_TRIGGERS = {
    "invoice_count_insert": (
        'AFTER INSERT ON "invoice" REFERENCING NEW TABLE AS new_rows '
        "FOR EACH STATEMENT EXECUTE FUNCTION invoice_count_changed()"
    ),
    "invoice_count_update": (
        'AFTER UPDATE ON "invoice" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
        "FOR EACH STATEMENT EXECUTE FUNCTION invoice_count_changed()"
    ),
    "invoice_count_delete": (
        'AFTER DELETE ON "invoice" REFERENCING OLD TABLE AS old_rows '
        "FOR EACH STATEMENT EXECUTE FUNCTION invoice_count_changed()"
    ),
    "invoice_count_account_type": (
        'AFTER UPDATE ON "account" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
        "FOR EACH STATEMENT EXECUTE FUNCTION invoice_count_account_changed()"
    ),
}


def _sqlite(db: Database) -> bool:
    return isinstance(db, SqliteDatabase)


def install(db: Database) -> None:
    """The table, its triggers and counts from a recount (migration 0011), in one transaction."""
    with db.atomic():
        unique = ', UNIQUE ("status", "account_type", "customer_class_id")' if _sqlite(db) else ""
        db.execute_sql(
            f'CREATE TABLE IF NOT EXISTS "{TABLE}" ("status" VARCHAR(20) NOT NULL, '
            f'"account_type" VARCHAR(20) NOT NULL, "customer_class_id" INTEGER NOT NULL, '
            f'"n" BIGINT NOT NULL{unique})'
        )
        _make_triggers(db)
        rebuild(db)


def uninstall(db: Database) -> None:
    for name in SQLITE_TRIGGERS:
        table = "account" if name.endswith("account_type") else "invoice"
        db.execute_sql(f'DROP TRIGGER IF EXISTS "{name}"' + ("" if _sqlite(db) else f' ON "{table}"'))
    if not _sqlite(db):
        db.execute_sql("DROP FUNCTION IF EXISTS invoice_count_changed(), invoice_count_account_changed()")
    db.execute_sql(f'DROP TABLE IF EXISTS "{TABLE}"')


def _make_triggers(db: Database) -> None:
    if _sqlite(db):
        for name, body in SQLITE_TRIGGERS.items():
            db.execute_sql(f'CREATE TRIGGER IF NOT EXISTS "{name}" {body}')
        return
    db.execute_sql(_PG_FUNCTION)
    for name, body in PG_TRIGGERS.items():
        table = "account" if name.endswith("account_type") else "invoice"
        db.execute_sql(f'DROP TRIGGER IF EXISTS "{name}" ON "{table}"')
        db.execute_sql(f'CREATE TRIGGER "{name}" {body}')


def installed(db: Database | None = None) -> bool:
    db = db or database.obj
    if _sqlite(db):
        sql, args = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE ?", ["invoice_count_%"]
    else:
        sql, args = "SELECT COUNT(*) FROM pg_trigger WHERE tgname LIKE %s", ["invoice_count_%"]
    return db.execute_sql(sql, args).fetchone()[0] == len(SQLITE_TRIGGERS)


def repair(db: Database) -> None:
    """After migrations: a table rebuilt by one (SQLite's ALTER path) lost its
    triggers; the counts are made again from a recount with them back."""
    exists = db.table_exists(TABLE)
    if exists and not installed(db):
        log.warning("invoice counts: triggers missing after a migration; rebuilt from a recount")
        install(db)


def rebuild(db: Database | None = None) -> None:
    """The counts from a recount (inside the caller's transaction when there is one)."""
    db = db or database.obj
    with db.atomic():
        if not _sqlite(db):  # no writer may add a row between the recount and the delete
            db.execute_sql(f'LOCK TABLE "invoice", "{TABLE}" IN SHARE ROW EXCLUSIVE MODE')
        db.execute_sql(f'DELETE FROM "{TABLE}"')
        db.execute_sql(f'INSERT INTO "{TABLE}" ("status", "account_type", "customer_class_id", "n") {_RECOUNT}')


def by_status(account_type: str | None = None, class_id: int | None = None) -> dict[str, int]:
    """{status: invoices}, optionally of one account type and one class: a lookup."""
    db = database.obj
    p = db.param
    where: list[str] = []
    args: list[object] = []
    if account_type is not None:
        where.append(f'"account_type" = {p}')
        args.append(account_type)
    if class_id is not None:
        where.append(f'"customer_class_id" = {p}')
        args.append(class_id)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = db.execute_sql(f'SELECT "status", SUM("n") FROM "{TABLE}"{clause} GROUP BY "status"', args)
    return {status: int(n) for status, n in rows if n}


def _grouped(rows) -> dict[tuple[str, str, int], int]:
    out: dict[tuple[str, str, int], int] = {}
    for status, account_type, class_id, n in rows:
        key = (status, account_type, int(class_id))
        out[key] = out.get(key, 0) + int(n)
    return {k: v for k, v in out.items() if v}


def check() -> list[tuple[tuple[str, str, int], int, int]]:
    """Groups whose maintained count differs from a recount: (group, kept, counted)."""
    db = database.obj
    with db.atomic():  # one snapshot (PostgreSQL) / the write lock (SQLite) for both reads
        if not _sqlite(db):
            db.execute_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        kept = _grouped(db.execute_sql(f'SELECT "status", "account_type", "customer_class_id", "n" FROM "{TABLE}"'))
        counted = _grouped(db.execute_sql(_RECOUNT))
    return [
        (k, kept.get(k, 0), counted.get(k, 0))
        for k in sorted(kept.keys() | counted.keys())
        if kept.get(k, 0) != counted.get(k, 0)
    ]


def compact() -> int:
    """PostgreSQL: fold the added rows into one per group when there are many
    (the job loop, each tick); rows other writers add meanwhile stay beside
    them.  Returns the rows folded (0: nothing to do; SQLite: always 0)."""
    db = database.obj
    if _sqlite(db):
        return 0
    many = db.execute_sql(f'SELECT 1 FROM "{TABLE}" OFFSET {COMPACT_ABOVE} LIMIT 1').fetchone()
    if many is None:
        return 0
    with db.atomic():
        cursor = db.execute_sql(
            f'WITH gone AS (DELETE FROM "{TABLE}" RETURNING "status", "account_type", "customer_class_id", "n") '
            f'INSERT INTO "{TABLE}" ("status", "account_type", "customer_class_id", "n") '
            'SELECT "status", "account_type", "customer_class_id", SUM("n") FROM gone GROUP BY 1, 2, 3 '
            'HAVING SUM("n") <> 0'
        )
        return cursor.rowcount
