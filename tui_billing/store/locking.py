"""Reading an invoice to change it: the row lock every transition takes first.

SQLite: the IMMEDIATE transaction already holds the database's write lock;
PostgreSQL: SELECT … FOR UPDATE locks the row.  Call inside the changing
transaction (workflow, revisions).
"""

from __future__ import annotations

from typing import TypeVar

from peewee import Model, ModelSelect

from ..errors import NotFound
from .models import Invoice, database

_M = TypeVar("_M", bound=Model)


def for_update(query: ModelSelect[_M]) -> ModelSelect[_M]:
    """SELECT … FOR UPDATE where the database has row locks (PostgreSQL)."""
    return query.for_update() if database.obj.for_update else query


def _by_ref(ref: str | int) -> ModelSelect[Invoice]:
    query = Invoice.select()
    return query.where(Invoice.id == ref) if isinstance(ref, int) else query.where(Invoice.number == ref)


def find_invoice(ref: str | int) -> Invoice:
    """By id or number; NotFound names the reference."""
    inv: Invoice | None = _by_ref(ref).first()
    if inv is None:
        raise NotFound(str(ref), "does not exist")
    return inv


def lock_invoice(ref: str | int) -> Invoice:
    """By id or number, its row locked for this transaction; NotFound names the reference."""
    inv: Invoice | None = for_update(_by_ref(ref)).first()
    if inv is None:
        raise NotFound(str(ref), "does not exist")
    return inv
