"""Open the store from one URL and keep its schema current.

`sqlite:///path` (the default, WAL mode) or `postgresql://user@host/db`.
Schema changes are numbered scripts in store/migrations, applied with
playhouse.migrations; opening a store applies any that are pending.
"""
from __future__ import annotations

import os
from pathlib import Path

from peewee import Database, SqliteDatabase
from playhouse import db_url
from playhouse.migrations import Runner

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
    """The store cannot be opened or used; the message says why."""


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
        path = Path(url[len("sqlite:///"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        # IMMEDIATE: a writer takes the lock when its transaction begins, so
        # two racing transitions queue instead of failing on lock upgrade.
        db = SqliteDatabase(str(path), pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE")
        _add_functions(db)
    elif url.startswith(("postgres://", "postgresql://")):
        try:
            # jit off: every query here is short (a page, a batch), and the
            # planner's cost for "first 100 of a million" makes PostgreSQL
            # JIT-compile it: 20 ms of compiling for 2 ms of work.
            db = db_url.connect(url, options="-c jit=off")
        except Exception as exc:  # driver missing, bad URL
            raise StoreError(f"--db: cannot open {url}: {exc}") from exc
    elif url.startswith("sqlite:"):
        db = db_url.connect(url, pragmas=SQLITE_PRAGMAS)
        _add_functions(db)
    else:
        raise StoreError(f"--db: {url!r} is not a sqlite:/// or postgresql:// URL")
    database.initialize(db)
    try:
        db.connect(reuse_if_open=True)
    except Exception as exc:
        raise StoreError(f"--db: cannot open {url}: {exc}") from exc
    if migrate:
        apply_migrations(db)
    return db


def _lower(text):
    return None if text is None else str(text).lower()


def _add_functions(db: SqliteDatabase) -> None:
    """SQL functions SQLite lacks, on every connection: tb_lower(text) is
    Unicode lower case for searches (SQLite's LOWER() is ASCII only)."""
    db.register_function(_lower, "tb_lower", 1, deterministic=True)


def is_sqlite(db: Database | None = None) -> bool:
    db = db or database.obj
    return isinstance(db, SqliteDatabase)


def apply_migrations(db: Database | None = None) -> list[str]:
    """Apply pending schema migrations; return the names applied."""
    db = db or database.obj
    runner = Runner(db, str(MIGRATIONS_DIR))
    applied = runner.up()
    if applied:
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
