"""Fast set-based inserts for large loads (demo data, xDR import).

Rows are tuples already converted to database values (see `dbv`); the
fastest path per driver is used: sqlite3 executemany, psycopg2 execute_values.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from operator import itemgetter

from peewee import CharField, Field, ForeignKeyField, IntegerField

from .db import is_sqlite
from .fields import ScaledDecimalField
from .models import database

# A job writing thousands of rows (the bill run, the off-peak reissue), on
# SQLite: statement journals and sorts kept in memory, not in temporary
# files (an invoice INSERT journals every page its 14 indexes and triggers
# touch), and the WAL checkpointed every 20,000 pages (80 MB), not every
# 1,000: each checkpoint writes every page the WAL holds back into the file,
# the same hot index pages again each time (issue 18: most of the bytes).
SQLITE_HEAVY_WRITES = {"temp_store": "memory", "wal_autocheckpoint": 20_000}


@contextmanager
def heavy_writes() -> Iterator[None]:
    """SQLITE_HEAVY_WRITES on this connection for the block, then as they
    were (left alone inside a caller's transaction, where SQLite may refuse
    to change temp_store)."""
    db = database.obj
    if not is_sqlite(db) or db.in_transaction():
        yield
        return
    before = {name: db.execute_sql(f"PRAGMA {name}").fetchone()[0] for name in SQLITE_HEAVY_WRITES}
    for name, value in SQLITE_HEAVY_WRITES.items():
        db.execute_sql(f"PRAGMA {name} = {value}")
    try:
        yield
    finally:
        for name, value in before.items():
            db.execute_sql(f"PRAGMA {name} = {value}")


def dbv(field, value):
    """A Python value as the column stores it (e.g. Decimal -> scaled int)."""
    return field.db_value(value)


# Fields whose db_value of a value of this exact type is the value itself.
_SAME = {IntegerField.adapt: int, CharField.adapt: str}


def _db_column(field, values: list) -> list:
    """field.db_value of each value (None stays None)."""
    if isinstance(field, ScaledDecimalField):
        return field.db_values(values)
    plain = field.rel_field if isinstance(field, ForeignKeyField) else field
    same = _SAME.get(type(plain).adapt) if type(plain).db_value is Field.db_value else None
    if same is not None and set(map(type, values)) <= {same, type(None)}:
        return values
    convert = field.db_value
    return [None if v is None else convert(v) for v in values]


def db_rows(model, names: list[str], rows: list[tuple]) -> list[tuple]:
    """Rows of Python values (in the order of `names`) as the columns store
    them, converted a column at a time: a third of the time value by value
    takes (the bill run converts a dozen values a charge line)."""
    if not rows:
        return []
    fields = model._meta.fields
    columns = [_db_column(fields[name], list(map(itemgetter(k), rows))) for k, name in enumerate(names)]
    return list(zip(*columns))


def insert_rows(model, columns: list[str], rows: list[tuple], *, ignore_existing: bool = False) -> None:
    """ignore_existing: a row whose unique key is taken already is left out
    (ON CONFLICT DO NOTHING), the others are inserted."""
    if not rows:
        return
    db = database.obj
    table = model._meta.table_name
    cols = ", ".join(f'"{model._meta.fields[c].column_name}"' for c in columns)
    tail = " ON CONFLICT DO NOTHING" if ignore_existing else ""
    if db.param == "?":
        # Many rows per statement, not executemany's statement per row: the
        # search index's FTS5 tables flush their pending trigrams at the end
        # of every statement that writes them (through invoice's and
        # account's triggers), and a flush costs more the bigger the index:
        # 10,000 invoices took 122 s a statement each at 700,000 invoices,
        # 2.4 s 500 a statement.
        connection = db.connection()
        per = max(1, min(500, _variable_limit(connection) // len(columns)))
        one = f"({', '.join('?' * len(columns))})"
        for start in range(0, len(rows), per):
            part = rows[start : start + per]
            connection.execute(
                f'INSERT INTO "{table}" ({cols}) VALUES {", ".join([one] * len(part))}{tail}',
                [value for row in part for value in row],
            )
    else:
        from psycopg2.extras import execute_values

        with db.cursor() as cursor:
            execute_values(cursor, f'INSERT INTO "{table}" ({cols}) VALUES %s{tail}', rows, page_size=2000)


def _variable_limit(connection) -> int:
    """How many ? one SQLite statement may hold (999 before SQLite 3.32)."""
    try:
        return int(connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    except (AttributeError, sqlite3.Error):  # Python before 3.11
        return 999


def insert_models(model, rows: list[dict], *, ignore_existing: bool = False) -> None:
    """Rows given as {field name: Python value}, the same names in each, in
    one insert_rows: the columns Model.create would write (the fields given,
    the others at their defaults; those without one left to the database)."""
    if not rows:
        return
    meta = model._meta
    names = list(rows[0])
    defaults = [name for name in meta.get_default_dict() if name not in rows[0]]

    def default_values() -> tuple:  # a callable default is called for each row, as by Model.create
        values = meta.get_default_dict()
        return tuple(values[name] for name in defaults)

    fixed = None if meta._default_callable_list else default_values()
    get = itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
    insert_rows(
        model,
        names + defaults,
        db_rows(
            model,
            names + defaults,
            [get(row) + (fixed if fixed is not None else default_values()) for row in rows],
        ),
        ignore_existing=ignore_existing,
    )


def update_rows(model, columns: list[str], rows: list[tuple]) -> None:
    """UPDATE many rows by id: each row is (value for each column..., id),
    already converted to database values."""
    if not rows:
        return
    db = database.obj
    table = model._meta.table_name
    names = [model._meta.fields[c].column_name for c in columns]
    if db.param == "?":
        sets = ", ".join(f'"{n}" = ?' for n in names)
        db.connection().executemany(f'UPDATE "{table}" SET {sets} WHERE "id" = ?', rows)
        return
    # PostgreSQL: one UPDATE ... FROM (VALUES ...) per page, not a statement
    # per row: each statement runs invoice's statement triggers (the counts)
    # and a round of planning, which cost more than the row itself.
    from psycopg2.extras import execute_values

    types = _pg_column_types(db, table)
    listed = ", ".join(f'"{n}"' for n in [*names, "id"])
    template = "(" + ", ".join(f"%s::{types[n]}" for n in [*names, "id"]) + ")"
    sets = ", ".join(f'"{n}" = v."{n}"' for n in names)
    with db.cursor() as cursor:
        execute_values(
            cursor,
            f'UPDATE "{table}" AS t SET {sets} FROM (VALUES %s) AS v ({listed}) WHERE t."id" = v."id"',
            rows,
            template=template,
            page_size=500,
        )


_pg_types: dict[tuple[int, str], dict[str, str]] = {}


def _pg_column_types(db, table: str) -> dict[str, str]:
    """{column: its SQL type} of a PostgreSQL table (the VALUES of update_rows
    are cast to them: a NULL or a text literal has no type of its own there)."""
    key = (id(db), table)
    if key not in _pg_types:
        cursor = db.execute_sql(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [f'"{table}"'],
        )
        _pg_types[key] = dict(cursor.fetchall())
    return _pg_types[key]


def next_id(model) -> int:
    from peewee import fn

    return (model.select(fn.MAX(model.id)).scalar() or 0) + 1


def sync_sequence(model) -> None:
    """After inserts with explicit ids, move PostgreSQL's serial past them."""
    db = database.obj
    if db.param == "?":
        return
    table = model._meta.table_name
    db.execute_sql(
        f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), COALESCE((SELECT MAX(id) FROM \"{table}\"), 1))"
    )
