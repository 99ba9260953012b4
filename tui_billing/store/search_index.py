"""The index behind the finder's text search (issue 18).

The customer filter matches any part of the account's folded name and email
(`account.search_text`, see text.fold), the number filter any part of the
invoice number: LIKE '%…%', which no B-tree serves.  These indexes do:

- SQLite: two FTS5 tables with the trigram tokenizer (SQLite 3.34 and later),
  `account_search` over account.search_text and `invoice_number_search` over
  invoice.number.  External content: they keep the trigrams, not a copy of the
  text.  Triggers on account and invoice keep them in step, so every writer
  (the app, the demo, bill runs, raw SQL) keeps them right.  A phrase of the
  typed text finds the rows that contain it (its trigrams at consecutive
  places); queries.py then checks those candidates with the very LIKE the scan
  used, so the results are exactly the scan's.  Fewer than 3 characters make
  no trigram: such a search scans, as before.
- PostgreSQL: pg_trgm GIN indexes on account.search_text and invoice.number.
  The queries stay as they were (LIKE, ILIKE); the planner uses the indexes.

Migration 0010 builds them, for existing stores and new ones alike (a new
store is made by applying every migration).  Where they cannot be made
(SQLite without FTS5 or older than 3.34; PostgreSQL without the pg_trgm
extension or without the right to create it) the migration still succeeds,
a log line says so, and search scans as before.
"""

from __future__ import annotations

import logging
import weakref

from peewee import SQL, Database, EnclosedNodeList, NodeList, SqliteDatabase

from .models import database

log = logging.getLogger("tui_billing.store")

ACCOUNT_FTS = "account_search"  # over account.search_text
NUMBER_FTS = "invoice_number_search"  # over invoice.number
MIN_CHARS = 3  # the trigram tokenizer finds nothing shorter
FTS_MODULE, TOKENIZER = "fts5", "trigram"  # names, so that tests can ask for missing ones

# (FTS table, content table, column): rowid = the content table's id.
_FTS_TABLES = ((ACCOUNT_FTS, "account", "search_text"), (NUMBER_FTS, "invoice", "number"))


def _triggers(fts: str, table: str, column: str) -> dict[str, str]:
    """The triggers that keep `fts` in step with `table`, by name.  An external
    content table is told what to forget with the old values ('delete')."""
    add = f'INSERT INTO "{fts}" (rowid, "{column}") VALUES (new.id, new."{column}");'
    forget = f'INSERT INTO "{fts}" ("{fts}", rowid, "{column}") VALUES (\'delete\', old.id, old."{column}");'
    return {
        f"{fts}_insert": f'AFTER INSERT ON "{table}" BEGIN {add} END',
        f"{fts}_delete": f'AFTER DELETE ON "{table}" BEGIN {forget} END',
        # Only when the text (or the id) changes: an invoice is updated often, its number never.
        f"{fts}_update": (
            f'AFTER UPDATE OF id, "{column}" ON "{table}" '
            f'WHEN old.id IS NOT new.id OR old."{column}" IS NOT new."{column}" BEGIN {forget} {add} END'
        ),
    }


TRIGGERS = {name: sql for spec in _FTS_TABLES for name, sql in _triggers(*spec).items()}


def install(db: Database) -> bool:
    """Build the search index of this store (migration 0010); False, with a log
    line, where it cannot be built (the store then searches by scanning).
    Runs inside the caller's transaction, in a savepoint of its own."""
    try:
        with db.atomic():
            if isinstance(db, SqliteDatabase):
                for fts, table, column in _FTS_TABLES:
                    db.execute_sql(
                        f'CREATE VIRTUAL TABLE IF NOT EXISTS "{fts}" USING {FTS_MODULE}("{column}", '
                        f"content='{table}', content_rowid='id', columnsize=0, tokenize='{TOKENIZER}')"
                    )
                _make_triggers(db)
            else:
                db.execute_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                db.execute_sql(
                    'CREATE INDEX IF NOT EXISTS "account_search_text_trgm" ON "account" '
                    'USING gin ("search_text" gin_trgm_ops)'
                )
                db.execute_sql(
                    'CREATE INDEX IF NOT EXISTS "invoice_number_trgm" ON "invoice" USING gin ("number" gin_trgm_ops)'
                )
    except Exception as exc:  # noqa: BLE001 - any refusal leaves the store searchable by scanning
        what = (
            "SQLite's FTS5 with the trigram tokenizer (SQLite 3.34 or later)"
            if isinstance(db, SqliteDatabase)
            else "the pg_trgm extension (CREATE EXTENSION pg_trgm, by a role allowed to)"
        )
        log.warning(
            "search index not built: %s is not available (%s); customer and number search scan instead",
            what,
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
        )
        _ready.pop(db, None)
        return False
    _ready.pop(db, None)
    return True


def uninstall(db: Database) -> None:
    """Drop the search index (migration 0010 down); the pg_trgm extension stays."""
    if isinstance(db, SqliteDatabase):
        for name in TRIGGERS:
            db.execute_sql(f'DROP TRIGGER IF EXISTS "{name}"')
        for fts, _, _ in _FTS_TABLES:
            db.execute_sql(f'DROP TABLE IF EXISTS "{fts}"')
    else:
        db.execute_sql('DROP INDEX IF EXISTS "account_search_text_trgm"')
        db.execute_sql('DROP INDEX IF EXISTS "invoice_number_trgm"')
    _ready.pop(db, None)


def _make_triggers(db: Database) -> None:
    """(Re)create the triggers and fill the FTS tables from their content tables."""
    for name, body in TRIGGERS.items():
        db.execute_sql(f'DROP TRIGGER IF EXISTS "{name}"')
        db.execute_sql(f'CREATE TRIGGER "{name}" {body}')
    for fts, _, _ in _FTS_TABLES:
        db.execute_sql(f'INSERT INTO "{fts}" ("{fts}") VALUES (\'rebuild\')')


def repair(db: Database) -> bool:
    """After migrations: a migration that rebuilds account or invoice (SQLite's
    way to change a column) drops their triggers, and the index would fall
    behind.  Put them back and rebuild the index; True if it was needed."""
    if not isinstance(db, SqliteDatabase):
        return False
    names = _schema_names(db)
    if not {fts for fts, _, _ in _FTS_TABLES} <= names or set(TRIGGERS) <= names:
        return False
    log.warning("search index triggers were missing (a table was rebuilt): recreated, index rebuilt")
    with db.atomic():
        _make_triggers(db)
    _ready.pop(db, None)
    return True


def _schema_names(db: Database) -> set[str]:
    wanted = [fts for fts, _, _ in _FTS_TABLES] + list(TRIGGERS)
    marks = ", ".join("?" * len(wanted))
    return {row[0] for row in db.execute_sql(f"SELECT name FROM sqlite_master WHERE name IN ({marks})", wanted)}


# Per open store: is the SQLite index there and usable?  Asked once per
# Database object (each `connect` makes one), then remembered.
_ready: weakref.WeakKeyDictionary[Database, bool] = weakref.WeakKeyDictionary()


def fts_ready(db: Database) -> bool:
    """True when this SQLite store has its FTS tables and every trigger, and
    this SQLite can read them (FTS5 compiled in); False on PostgreSQL."""
    if not isinstance(db, SqliteDatabase):
        return False
    ready = _ready.get(db)
    if ready is None:
        ready = (set(TRIGGERS) | {fts for fts, _, _ in _FTS_TABLES}) <= _schema_names(db)
        if ready:
            try:
                db.execute_sql(f'SELECT rowid FROM "{ACCOUNT_FTS}"(\'"abc"\') LIMIT 0')
            except Exception as exc:  # noqa: BLE001 - "no such module: fts5": a store moved to another SQLite
                log.warning("search index unreadable here (%s): customer and number search scan instead", exc)
                ready = False
        _ready[db] = ready
    return ready


def phrase(text: str) -> str:
    """`text` as one FTS5 phrase: its characters taken literally, in order."""
    return '"' + text.replace('"', '""') + '"'


def usable(text: str) -> bool:
    """Can the index answer a search for `text` here (SQLite)?"""
    return len(text) >= MIN_CHARS and fts_ready(database.obj)


def candidates(fts: str, text: str) -> NodeList | None:
    """The rowids of the rows whose text contains `text` (by the trigram index,
    possibly a few more where the tokenizer folds case more widely than LIKE:
    the caller keeps its LIKE), as a parenthesised sub-query; None when the
    index cannot answer (no index here, or under MIN_CHARS characters)."""
    if not usable(text):
        return None
    return EnclosedNodeList([SQL(f'SELECT rowid FROM "{fts}"(?)', [phrase(text)])])
