"""Risk review evidence (issue 12): per-line usage completeness and duplicate
counts, the expected total and the money at stake on each invoice, and when
the job loop held a flagged invoice instead of auto-approving it.  The old
`risk_total_factor` setting gives way to robust per-account statistics."""

from peewee import *

from tui_billing.store.fields import MoneyField

ZERO = SQL("DEFAULT 0")


def up(migrator, db):
    migrator.migrate(
        # DEFAULT 0 in the schema too: rows inserted by other writers (raw
        # SQL, an older tui-billing) that do not name the columns stay valid.
        migrator.add_column("charge_line", "records", IntegerField(default=0, constraints=[ZERO])),
        migrator.add_column("charge_line", "days", IntegerField(default=0, constraints=[ZERO])),
        migrator.add_column("charge_line", "duplicates", IntegerField(default=0, constraints=[ZERO])),
        migrator.add_column("charge_line", "duplicate_amount", MoneyField(default=0, constraints=[ZERO])),
        migrator.add_column("invoice", "expected_total", MoneyField(null=True)),
        migrator.add_column("invoice", "risk_at_stake", MoneyField(null=True)),
        migrator.add_column("invoice", "held_at", DateTimeField(null=True)),
    )
    db.execute_sql('CREATE INDEX "invoice_period_from" ON "invoice" ("period_from")')
    db.execute_sql("DELETE FROM setting WHERE key = 'risk_total_factor'")


def down(migrator, db):
    db.execute_sql('DROP INDEX "invoice_period_from"')
    migrator.migrate(
        migrator.drop_column("invoice", "held_at"),
        migrator.drop_column("invoice", "risk_at_stake"),
        migrator.drop_column("invoice", "expected_total"),
        migrator.drop_column("charge_line", "duplicate_amount"),
        migrator.drop_column("charge_line", "duplicates"),
        migrator.drop_column("charge_line", "days"),
        migrator.drop_column("charge_line", "records"),
    )
