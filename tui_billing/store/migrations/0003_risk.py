"""Risk review: flags and score on invoices; revision snapshots for the diff."""

from peewee import *

from tui_billing.store.fields import MoneyField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("invoice", "risk_score", IntegerField(default=0)),
        migrator.add_column("invoice", "risk_flags", TextField(default="")),
    )
    # The risk-ordered queue: score high to low, then the nearest deadline.
    db.execute_sql(
        'CREATE INDEX "invoice_status_risk_order" ON "invoice" ("status", "risk_score" DESC, "review_deadline", "id")'
    )
    db.execute_sql('CREATE INDEX "invoice_risk_order" ON "invoice" ("risk_score" DESC, "review_deadline", "id")')

    class Invoice(Model):
        class Meta:
            database = db
            table_name = "invoice"

    class InvoiceSnapshot(Model):
        invoice = ForeignKeyField(Invoice, on_delete="CASCADE")
        revision = IntegerField()
        taken_at = DateTimeField()
        action = CharField(max_length=40)
        subtotal = MoneyField(default=0)
        discount_total = MoneyField(default=0)
        tax_total = MoneyField(default=0)
        correction_total = MoneyField(default=0)
        total = MoneyField(default=0)
        lines = TextField(default="")

        class Meta:
            database = db
            table_name = "invoice_snapshot"
            indexes = ((("invoice", "revision"), True),)

    db.create_tables([InvoiceSnapshot])


def down(migrator, db):
    migrator.migrate(migrator.drop_table("invoice_snapshot"))
    db.execute_sql('DROP INDEX "invoice_risk_order"')
    db.execute_sql('DROP INDEX "invoice_status_risk_order"')
    migrator.migrate(
        migrator.drop_column("invoice", "risk_flags"),
        migrator.drop_column("invoice", "risk_score"),
    )
