"""Payments that move an invoice to Paid, and the ERP hand-off (issue 17).

- payment.number: the payment's number in the platform ("PMT-00000042"),
  what a gateway's or bank's file names; existing payments are numbered by
  their id and the `payment` sequence continues after the largest.
  payment.paid_at: when the money arrived (a completed payment).
- payment_event: one row per applied line of a payments file, keyed by the
  line's fingerprint (reference, amount, currency, time, outcome), so that a
  file imported twice, or by two operators at once, is applied once.
- invoice.erp_reference / erp_date / erp_confirmed_at: what the ERP sent back
  (with the existing external_total and external_currency).

Nullable columns only: SQLite adds them without rebuilding the tables.
"""

from peewee import CharField, DateField, DateTimeField, IntegerField, Model

from tui_billing.store.fields import MoneyField

BATCH = 1000


def up(migrator, db):
    class PaymentEvent(Model):
        fingerprint = CharField(max_length=64, unique=True)
        payment_id = IntegerField(index=True)
        outcome = CharField(max_length=32)
        amount = MoneyField()
        at = DateTimeField()
        imported_at = DateTimeField()
        actor = CharField(max_length=64)
        source = CharField(max_length=300)  # "FILE.csv:LINE"

        class Meta:
            database = db
            table_name = "payment_event"

    db.create_tables([PaymentEvent])
    migrator.migrate(
        migrator.add_column("payment", "number", CharField(max_length=32, null=True)),
        migrator.add_column("payment", "paid_at", DateTimeField(null=True)),
        migrator.add_column("invoice", "erp_reference", CharField(max_length=64, null=True)),
        migrator.add_column("invoice", "erp_date", DateField(null=True)),
        migrator.add_column("invoice", "erp_confirmed_at", DateTimeField(null=True)),
    )
    p = db.param
    # Existing payments: numbered by their id ('PMT-' + 8 digits), as new ones are by the sequence.
    db.execute_sql(
        'UPDATE "payment" SET "number" = \'PMT-\' || '
        + ("substr('00000000' || \"id\", -8, 8)" if p == "?" else "lpad(\"id\"::text, 8, '0')")
        + ' WHERE "number" IS NULL'
    )
    db.execute_sql('CREATE UNIQUE INDEX "payment_number" ON "payment" ("number")')
    top = db.execute_sql('SELECT MAX("id") FROM "payment"').fetchone()[0] or 0
    db.execute_sql(f'DELETE FROM "sequence" WHERE "name" = {p}', ("payment",))
    db.execute_sql(f'INSERT INTO "sequence" ("name", "value") VALUES ({p}, {p})', ("payment", top))


def down(migrator, db):
    db.execute_sql('DROP INDEX "payment_number"')
    migrator.migrate(
        migrator.drop_column("invoice", "erp_confirmed_at"),
        migrator.drop_column("invoice", "erp_date"),
        migrator.drop_column("invoice", "erp_reference"),
        migrator.drop_column("payment", "paid_at"),
        migrator.drop_column("payment", "number"),
    )
    db.execute_sql('DROP TABLE "payment_event"')
