"""Open the store from one URL and keep its schema current.

`sqlite:///path` (the default, WAL mode) or `postgresql://user@host/db`.
A new SQLite store and the folders made for it are the owner's only (0600,
0700); see create_private_sqlite.
Schema changes are numbered scripts in store/migrations, applied with
playhouse.migrations; opening a store applies any that are pending.
"""

from __future__ import annotations

import os
from pathlib import Path

from peewee import Database, SqliteDatabase
from playhouse import db_url
from playhouse.migrations import Runner

from ..safefile import create_exclusive, make_dirs
from . import counts, search_index
from .models import database

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": 30_000,
    "cache_size": -32_000,  # 32 MB page cache
}


class StoreError(Exception):
    """The store (--db) cannot be opened or used; `.reason` says why."""

    def __init__(self, reason: str):
        super().__init__(f"--db: {reason}")
        self.reason = reason


def default_url() -> str:
    env = os.environ.get("TUI_BILLING_DB")
    if env:
        return env
    from platformdirs import user_data_dir

    directory = Path(user_data_dir("tui-billing", appauthor=False))
    return f"sqlite:///{directory / 'tui-billing.db'}"


def connect(url: str | None = None, *, migrate: bool = True) -> Database:
    """Bind the models to the store at `url` and bring its schema up to date."""
    url = url or default_url()
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///") :])
        create_private_sqlite(path)
        # IMMEDIATE: a writer takes the lock when its transaction begins, so
        # two racing transitions queue instead of failing on lock upgrade.
        db = SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE")
    elif url.startswith(("postgres://", "postgresql://")):
        try:
            # jit off: every query here is short (a page, a batch), and the
            # planner's cost for "first 100 of a million" makes PostgreSQL
            # JIT-compile it: 20 ms of compiling for 2 ms of work.
            db = db_url.connect(url, options="-c jit=off")
        except Exception as exc:  # driver missing, bad URL
            raise StoreError(f"cannot open {url}: {exc}") from exc
    elif url.startswith("sqlite:"):
        db = db_url.connect(url, pragmas=SQLITE_PRAGMAS)
    else:
        raise StoreError(f"{url!r} is not a sqlite:/// or postgresql:// URL")
    database.initialize(db)
    try:
        db.connect(reuse_if_open=True)
    except Exception as exc:
        raise StoreError(f"cannot open {url}: {exc}") from exc
    if migrate:
        apply_migrations(db)
    return db


def create_private_sqlite(path: Path) -> bool:
    """A new SQLite store is for its owner only: missing folders 0700, the file
    0600 (created here, empty, before SQLite opens it; SQLite gives its -wal
    and -shm files the database file's mode).  An existing store, and existing
    folders, keep the modes their owner set (say 0660 for a group on purpose).
    Returns True if the file was created now."""
    if not path.name:
        return False
    try:
        make_dirs(path.parent)
    except OSError as exc:
        raise StoreError(f"cannot create the folder {path.parent}: {exc.strerror or exc}") from exc
    try:
        os.close(create_exclusive(path))
    except FileExistsError:
        return False  # there already (or a link someone put there: SQLite opens what it names)
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror or exc}") from exc
    return True


def is_sqlite(db: Database | None = None) -> bool:
    db = db or database.obj
    return isinstance(db, SqliteDatabase)


def apply_migrations(db: Database | None = None) -> list[str]:
    """Apply pending schema migrations; return the names applied."""
    db = db or database.obj
    runner = Runner(db, str(MIGRATIONS_DIR))
    # Read first: Runner.up() begins with CREATE TABLE IF NOT EXISTS, which a
    # PostgreSQL login without CREATE on the schema (a per-admin login,
    # README: Roles and approvals) may not run even when nothing is pending.
    if all(m.applied for m in runner.status() if m.path is not None):
        return []
    sqlite = is_sqlite(db)
    if sqlite:
        # SQLite changes a column by rebuilding the table (copy, drop, rename the
        # copy).  Triggers of other tables name it (the counts', store/counts.py):
        # with today's rename rules SQLite refuses the rename while it is gone.
        # The legacy rule renames without looking; repair() below puts back the
        # triggers the drop took with it.
        db.execute_sql("PRAGMA legacy_alter_table = ON")
    try:
        applied = runner.up()
    finally:
        if sqlite:
            db.execute_sql("PRAGMA legacy_alter_table = OFF")
    if applied:
        # A migration that rebuilt account or invoice dropped the search index's
        # triggers and the counts' (SQLite's ALTER path).
        search_index.repair(db)
        counts.repair(db)
        # A migration that rebuilds a table (SQLite's ALTER path) drops its
        # planner statistics; without them a finder page sorts the whole table.
        db.execute_sql("ANALYZE")
    return applied


def pending_migrations(db: Database | None = None) -> list[str]:
    db = db or database.obj
    runner = Runner(db, str(MIGRATIONS_DIR))
    return [m.name for m in runner.status() if not m.applied]


def close() -> None:
    if database.obj is not None and not database.obj.is_closed():
        database.obj.close()
