"""Customer and invoice-number search from an index (issue 18).

SQLite: FTS5 trigram tables over account.search_text and invoice.number, with
the triggers that keep them in step, filled from the rows already there.
PostgreSQL: the pg_trgm extension and GIN trigram indexes on the same columns.
A new store gets them the same way (every migration is applied to it).

Where the index cannot be built (no FTS5 / SQLite older than 3.34; pg_trgm not
installed or not allowed to this login) the migration still succeeds, logs why,
and search keeps scanning; the details are in tui_billing/store/search_index.py.
"""

from tui_billing.store import search_index


def up(migrator, db):
    search_index.install(db)


def down(migrator, db):
    search_index.uninstall(db)
