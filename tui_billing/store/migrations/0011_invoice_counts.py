"""Invoice counts kept by the database (issue 18): the table `invoice_count`,
the triggers that move it with every change of an invoice, and its first
counts from a recount.  Details: tui_billing/store/counts.py."""

from tui_billing.store import counts


def up(migrator, db):
    counts.install(db)


def down(migrator, db):
    counts.uninstall(db)
