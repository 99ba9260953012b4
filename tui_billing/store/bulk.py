"""Fast set-based inserts for large loads (demo data, xDR import).

Rows are tuples already converted to database values (see `dbv`); the
fastest path per driver is used: sqlite3 executemany, psycopg2 execute_values.
"""

from __future__ import annotations

from .models import database


def dbv(field, value):
    """A Python value as the column stores it (e.g. Decimal -> scaled int)."""
    return field.db_value(value)


def insert_rows(model, columns: list[str], rows: list[tuple]) -> None:
    if not rows:
        return
    db = database.obj
    table = model._meta.table_name
    cols = ", ".join(f'"{model._meta.fields[c].column_name}"' for c in columns)
    if db.param == "?":
        sql = f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join("?" * len(columns))})'
        db.connection().executemany(sql, rows)
    else:
        from psycopg2.extras import execute_values

        with db.cursor() as cursor:
            execute_values(cursor, f'INSERT INTO "{table}" ({cols}) VALUES %s', rows, page_size=2000)


def update_rows(model, columns: list[str], rows: list[tuple]) -> None:
    """UPDATE many rows by id: each row is (value for each column..., id),
    already converted to database values."""
    if not rows:
        return
    db = database.obj
    table = model._meta.table_name
    p = db.param
    sets = ", ".join(f'"{model._meta.fields[c].column_name}" = {p}' for c in columns)
    sql = f'UPDATE "{table}" SET {sets} WHERE "id" = {p}'
    if p == "?":
        db.connection().executemany(sql, rows)
    else:
        from psycopg2.extras import execute_batch

        with db.cursor() as cursor:
            execute_batch(cursor, sql, rows, page_size=500)


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
