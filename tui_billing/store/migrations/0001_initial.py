# Generated from a schema diff on 2026-11-22 01:47.
from peewee import *

from tui_billing.store.fields import MoneyField, QuantityField


def up(migrator, db):
    class CustomerClass(Model):
        name = CharField(unique=True, max_length=120)
        send_mode = CharField(max_length=20, default="immediately")
        hold_days = IntegerField(default=0)
        net_days = IntegerField(default=30)
        billing_period = CharField(max_length=20, default="monthly")

        class Meta:
            database = db
            table_name = "customer_class"

    db.create_tables([CustomerClass])

    class Account(Model):
        name = CharField(index=True, max_length=200)
        email = CharField(max_length=254)
        account_type = CharField(index=True, max_length=20)
        customer_class = ForeignKeyField(CustomerClass)
        currency = CharField(max_length=3)
        balance = MoneyField(default=0)
        payment_model = CharField(max_length=10, default="postpay")
        address = TextField(default="")

        class Meta:
            database = db
            table_name = "account"

    db.create_tables([Account])

    class Invoice(Model):
        number = CharField(unique=True, max_length=64)
        account = ForeignKeyField(Account)
        customer_class = ForeignKeyField(CustomerClass)
        kind = CharField(max_length=20, default="regular")
        payment_model = CharField(max_length=10, default="postpay")
        status = CharField(max_length=20)
        currency = CharField(max_length=3)
        period_from = DateField()
        period_to = DateField()
        generated_at = DateTimeField(null=True)
        issue_date = DateField()
        due_date = DateField(null=True)
        review_deadline = DateTimeField(null=True)
        subtotal = MoneyField(default=0)
        discount_total = MoneyField(default=0)
        tax_total = MoneyField(default=0)
        correction_total = MoneyField(default=0)
        total = MoneyField(default=0)
        outstanding = MoneyField(default=0)
        external_total = MoneyField(null=True)
        external_currency = CharField(null=True, max_length=3)
        approved_at = DateTimeField(null=True)
        approved_by = CharField(null=True, max_length=64)
        closed_at = DateTimeField(null=True)
        revision = IntegerField(default=1)
        reviewed_revision = IntegerField(null=True)
        reissue_mode = CharField(null=True, max_length=10)
        reissue_requested_at = DateTimeField(null=True)
        reissue_after = DateTimeField(null=True)
        sent_at = DateTimeField(null=True)
        sent_revision = IntegerField(null=True)
        notified_at = DateTimeField(null=True)
        claimed_by = CharField(null=True, max_length=64)
        claimed_until = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "invoice"
            indexes = (
                (("status", "review_deadline"), False),
                (("status", "issue_date", "id"), False),
                (("issue_date", "id"), False),
                (("account", "issue_date"), False),
                (("customer_class", "status"), False),
                (("status", "reissue_after"), False),
                (("total", "id"), False),
            )

    db.create_tables([Invoice])

    class AuditEvent(Model):
        at = DateTimeField(index=True)
        actor = CharField(max_length=64)
        action = CharField(max_length=40)
        invoice = ForeignKeyField(Invoice, null=True, on_delete="SET NULL")
        number = CharField(null=True, max_length=64)
        before_status = CharField(null=True, max_length=20)
        after_status = CharField(null=True, max_length=20)
        before_total = MoneyField(null=True)
        after_total = MoneyField(null=True)
        detail = TextField(default="")

        class Meta:
            database = db
            table_name = "audit_event"

    db.create_tables([AuditEvent])

    class Subscription(Model):
        account = ForeignKeyField(Account)
        name = CharField(max_length=200)
        service = CharField(max_length=60)
        status = CharField(max_length=32)
        fee = MoneyField(default=0)
        active_from = DateField(null=True)
        active_to = DateField(null=True)

        class Meta:
            database = db
            table_name = "subscription"

    db.create_tables([Subscription])

    class ChargeLine(Model):
        invoice = ForeignKeyField(Invoice, on_delete="CASCADE")
        position = IntegerField()
        description = CharField(max_length=300)
        service = CharField(max_length=60, default="")
        subscription = ForeignKeyField(Subscription, null=True)
        quantity = QuantityField(default=0)
        discount = MoneyField(default=0)
        amount = MoneyField(default=0)

        class Meta:
            database = db
            table_name = "charge_line"

    db.create_tables([ChargeLine])

    class Correction(Model):
        invoice = ForeignKeyField(Invoice, on_delete="CASCADE")
        position = IntegerField()
        kind = CharField(max_length=20)
        description = CharField(max_length=300)
        amount = MoneyField()
        created_by = CharField(max_length=64)
        approved_at = DateTimeField(null=True)
        revision = IntegerField()

        class Meta:
            database = db
            table_name = "correction"

    db.create_tables([Correction])

    class Discount(Model):
        account = ForeignKeyField(Account)
        service = CharField(null=True, max_length=60)
        percent = QuantityField()
        description = CharField(max_length=200, default="")

        class Meta:
            database = db
            table_name = "discount"

    db.create_tables([Discount])

    class InvoicePdf(Model):
        invoice = ForeignKeyField(Invoice, on_delete="CASCADE")
        revision = IntegerField()
        data = BlobField()
        created_at = DateTimeField()

        class Meta:
            database = db
            table_name = "invoice_pdf"
            indexes = ((("invoice", "revision"), True),)

    db.create_tables([InvoicePdf])

    class JobLock(Model):
        name = CharField(primary_key=True, max_length=64)
        holder = CharField(max_length=200)
        heartbeat_at = DateTimeField()

        class Meta:
            database = db
            table_name = "job_lock"

    db.create_tables([JobLock])

    class OutboxMessage(Model):
        kind = CharField(max_length=20)
        invoice = ForeignKeyField(Invoice, null=True, on_delete="CASCADE")
        revision = IntegerField(default=0)
        message_id = CharField(unique=True, max_length=200)
        recipient = CharField(max_length=254)
        subject = CharField(max_length=300)
        body = TextField(default="")
        status = CharField(max_length=12, default="queued")
        attempts = IntegerField(default=0)
        next_attempt_at = DateTimeField(null=True)
        last_error = TextField(default="")
        created_at = DateTimeField()
        sent_at = DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "outbox_message"
            indexes = ((("kind", "invoice", "revision"), True), (("status", "next_attempt_at"), False))

    db.create_tables([OutboxMessage])

    class Payment(Model):
        invoice = ForeignKeyField(Invoice, on_delete="CASCADE")
        description = CharField(max_length=200)
        created_at = DateTimeField()
        due_date = DateField(null=True)
        status = CharField(max_length=32)
        amount = MoneyField()

        class Meta:
            database = db
            table_name = "payment"
            indexes = ((("status", "due_date"), False),)

    db.create_tables([Payment])

    class Sequence(Model):
        name = CharField(primary_key=True, max_length=64)
        value = IntegerField(default=0)

        class Meta:
            database = db
            table_name = "sequence"

    db.create_tables([Sequence])

    class Setting(Model):
        key = CharField(primary_key=True, max_length=64)
        value = TextField()

        class Meta:
            database = db
            table_name = "setting"

    db.create_tables([Setting])

    class TaxLine(Model):
        invoice = ForeignKeyField(Invoice, on_delete="CASCADE")
        position = IntegerField()
        name = CharField(max_length=60)
        description = CharField(max_length=200, default="")
        amount = MoneyField()

        class Meta:
            database = db
            table_name = "tax_line"

    db.create_tables([TaxLine])

    class TaxRule(Model):
        customer_class = ForeignKeyField(CustomerClass, null=True)
        account = ForeignKeyField(Account, null=True)
        name = CharField(max_length=60)
        description = CharField(max_length=200, default="")
        percent = QuantityField()

        class Meta:
            database = db
            table_name = "tax_rule"

    db.create_tables([TaxRule])

    class Xdr(Model):
        xdr_id = CharField(unique=True, max_length=64)
        account = ForeignKeyField(Account)
        service = CharField(max_length=60)
        time = DateTimeField()
        quantity = QuantityField()
        amount = MoneyField()

        class Meta:
            database = db
            table_name = "xdr"
            indexes = ((("account", "time"), False),)

    db.create_tables([Xdr])


def down(migrator, db):
    migrator.migrate(migrator.drop_table("xdr"))
    migrator.migrate(migrator.drop_table("tax_rule"))
    migrator.migrate(migrator.drop_table("tax_line"))
    migrator.migrate(migrator.drop_table("setting"))
    migrator.migrate(migrator.drop_table("sequence"))
    migrator.migrate(migrator.drop_table("payment"))
    migrator.migrate(migrator.drop_table("outbox_message"))
    migrator.migrate(migrator.drop_table("job_lock"))
    migrator.migrate(migrator.drop_table("invoice_pdf"))
    migrator.migrate(migrator.drop_table("discount"))
    migrator.migrate(migrator.drop_table("correction"))
    migrator.migrate(migrator.drop_table("charge_line"))
    migrator.migrate(migrator.drop_table("subscription"))
    migrator.migrate(migrator.drop_table("audit_event"))
    migrator.migrate(migrator.drop_table("invoice"))
    migrator.migrate(migrator.drop_table("account"))
    migrator.migrate(migrator.drop_table("customer_class"))
