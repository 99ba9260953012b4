"""Peewee models: every entity of DESIGN.md "Domain".

Amounts are MoneyField (exact scaled integers); times are naive UTC;
dates (issue, due, period) are calendar dates in the billing time zone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from peewee import (
    SQL,
    AutoField,
    BlobField,
    CharField,
    DatabaseProxy,
    DateField,
    DateTimeField,
    Expression,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)

from .fields import MoneyField, QuantityField

database = DatabaseProxy()


def tuple_rows(query: Any) -> Iterator[tuple[Any, ...]]:
    """The rows of `query.tuples()`, typed as the tuples they are (peewee's
    stubs type `.tuples()` as the query itself, whose rows are models)."""
    return iter(query)


def dict_rows(query: Any) -> Iterator[dict[str, Any]]:
    """The rows of `query.dicts()`, typed as the dicts they are (as tuple_rows)."""
    return iter(query)


def ids_in(field: Any, ids: Iterable[int]) -> Expression:
    """`field IN (ids)` with the ids written into the SQL as integers: built
    value by value, peewee spends more on a chunk's IN list of 200 ids than
    the database on the query (the bill run builds a dozen a chunk)."""
    listed = ", ".join(str(int(i)) for i in ids)
    return field.in_(SQL(f"({listed})")) if listed else field.in_([])


if TYPE_CHECKING:
    _T = TypeVar("_T")

    class _ObjectId(Generic[_T]):
        """For the type checker: the `<name>_id` a ForeignKeyField adds (peewee's
        ObjectIdAccessor), the field on the class, the raw id on a row."""

        @overload
        def __get__(self, instance: None, owner: Any) -> ForeignKeyField[Any]: ...
        @overload
        def __get__(self, instance: object, owner: Any) -> _T: ...
        def __get__(self, instance: object, owner: Any) -> Any: ...
        def __set__(self, instance: object, value: _T) -> None: ...


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Setting(BaseModel):
    """Store-wide settings shared by every admin (number format, off-peak…)."""

    key = CharField(primary_key=True, max_length=64)
    value = TextField()


class Sequence(BaseModel):
    """Counters for invoice and payment numbers, bumped inside transactions."""

    name = CharField(primary_key=True, max_length=64)
    value = IntegerField(default=0)


class CustomerClass(BaseModel):
    id = AutoField()
    name = CharField(unique=True, max_length=120)
    send_mode = CharField(max_length=20, default="immediately")  # statuses.SEND_MODES
    hold_days = IntegerField(default=0)
    net_days = IntegerField(default=30)
    billing_period = CharField(max_length=20, default="monthly")


class Account(BaseModel):
    id = AutoField()
    name = CharField(max_length=200, index=True)
    email = CharField(max_length=254)
    account_type = CharField(max_length=20, index=True)  # statuses.ACCOUNT_TYPES
    customer_class = ForeignKeyField(CustomerClass, backref="accounts", index=True)
    customer_class_id: _ObjectId[int]
    currency = CharField(max_length=3)
    balance = MoneyField(default=0)
    payment_model = CharField(max_length=10, default="postpay")
    address = TextField(default="")
    # fold(name) + " " + fold(email): what the customer search matches any part
    # of (accent- and case-insensitive, the same SQL LIKE on every backend).
    # Filled by save() and, for bulk inserts, by search_text_of().
    search_text = TextField(default="")

    @staticmethod
    def search_text_of(name: str | None, email: str | None) -> str:
        from ..text import fold

        return f"{fold(name)} {fold(email)}"

    def save(self, *args, **kwargs):
        self.search_text = self.search_text_of(self.name, self.email)
        only = kwargs.get("only")
        if only is not None:  # save(only=[Account.name]) writes the folded copy too
            names = {getattr(f, "name", f) for f in only}
            if names & {"name", "email"} and "search_text" not in names:
                kwargs["only"] = [*only, Account.search_text]
        return super().save(*args, **kwargs)


class Subscription(BaseModel):
    id = AutoField()
    account = ForeignKeyField(Account, backref="subscriptions", index=True)
    name = CharField(max_length=200)
    service = CharField(max_length=60)
    status = CharField(max_length=32)  # statuses.SUBSCRIPTION_STATUSES
    fee = MoneyField(default=0)  # recurring fee per billing period
    active_from = DateField(null=True)
    active_to = DateField(null=True)


class Discount(BaseModel):
    id = AutoField()
    account = ForeignKeyField(Account, backref="discounts", index=True)
    service = CharField(max_length=60, null=True)  # None: every service
    percent = QuantityField()  # e.g. 10.000 = 10 %
    description = CharField(max_length=200, default="")


class TaxRule(BaseModel):
    id = AutoField()
    customer_class = ForeignKeyField(CustomerClass, null=True, backref="tax_rules")
    account = ForeignKeyField(Account, null=True, backref="tax_rules")
    name = CharField(max_length=60)
    description = CharField(max_length=200, default="")
    percent = QuantityField()  # negative: a refund


class Xdr(BaseModel):
    id = AutoField()
    xdr_id = CharField(unique=True, max_length=64)  # the source system's id
    account = ForeignKeyField(Account, backref="xdrs")
    service = CharField(max_length=60)
    time = DateTimeField()
    quantity = QuantityField()
    amount = MoneyField()

    class Meta:
        indexes = ((("account", "time"), False),)


class Invoice(BaseModel):
    id = AutoField()
    number = CharField(unique=True, max_length=64)
    account = ForeignKeyField(Account, backref="invoices")
    account_id: _ObjectId[int]
    customer_class = ForeignKeyField(CustomerClass)  # the class it was issued under
    customer_class_id: _ObjectId[int]
    kind = CharField(max_length=20, default="regular")
    payment_model = CharField(max_length=10, default="postpay")
    status = CharField(max_length=20)
    currency = CharField(max_length=3)
    period_from = DateField()
    period_to = DateField()
    generated_at = DateTimeField(null=True)  # null while a postpay invoice is open
    issue_date = DateField()  # open postpay: the planned closing day
    due_date = DateField(null=True)
    review_deadline = DateTimeField(null=True)
    subtotal = MoneyField(default=0)  # sum of charge amounts
    discount_total = MoneyField(default=0)
    tax_total = MoneyField(default=0)
    correction_total = MoneyField(default=0)
    total = MoneyField(default=0)
    outstanding = MoneyField(default=0)
    external_total = MoneyField(null=True)
    external_currency = CharField(max_length=3, null=True)
    approved_at = DateTimeField(null=True)
    approved_by = CharField(max_length=64, null=True)
    closed_at = DateTimeField(null=True)
    revision = IntegerField(default=1)
    reviewed_revision = IntegerField(null=True)  # revision last approved/seen
    reissue_mode = CharField(max_length=10, null=True)
    reissue_requested_at = DateTimeField(null=True)
    reissue_after = DateTimeField(null=True)
    sent_at = DateTimeField(null=True)
    sent_revision = IntegerField(null=True)
    notified_at = DateTimeField(null=True)  # admins told it waits for review
    claimed_by = CharField(max_length=64, null=True)  # job-loop row claim
    claimed_until = DateTimeField(null=True)
    risk_score = IntegerField(default=0)  # risk review: sum of the flags' weights (risk.py)
    risk_flags = TextField(default="")  # JSON list of {code, reason}; "" when none
    expected_total = MoneyField(null=True)  # what the account's history predicts; None: no history
    risk_at_stake = MoneyField(null=True)  # money wrong if the suspicion is right, reporting currency
    held_at = DateTimeField(null=True)  # flagged: held by the job loop at the end of the hold
    # Four-eyes (issue 16, migration 0008): the first of two approvals of the
    # current revision, and the person who made it (adjust, reissue request).
    first_approved_by = CharField(max_length=64, null=True)
    first_approved_at = DateTimeField(null=True)
    changed_by = CharField(max_length=64, null=True)
    # ERP hand-off (issue 17, migration 0009): what the ERP sent back with the
    # external total; erp_confirmed_at None: not yet confirmed (erp export lists it).
    erp_reference = CharField(max_length=64, null=True)
    erp_date = DateField(null=True)
    erp_confirmed_at = DateTimeField(null=True)

    class Meta:
        indexes = (
            (("status", "review_deadline"), False),
            (("status", "issue_date", "id"), False),
            (("issue_date", "id"), False),
            (("account", "issue_date"), False),
            (("customer_class", "status"), False),
            (("status", "reissue_after"), False),
            (("total", "id"), False),
            (("period_from",), False),  # risk review: the period's population (risk_store.population)
        )


# The risk-ordered queue (queries.page sort="risk"): score high to low, then
# the nearest deadline, then id — per status, and over every status.
Invoice.add_index(
    Invoice.index(
        Invoice.status, Invoice.risk_score.desc(), Invoice.review_deadline, Invoice.id, name="invoice_status_risk_order"
    )
)
Invoice.add_index(
    Invoice.index(Invoice.risk_score.desc(), Invoice.review_deadline, Invoice.id, name="invoice_risk_order")
)


class ChargeLine(BaseModel):
    id = AutoField()
    invoice = ForeignKeyField(Invoice, backref="charges", on_delete="CASCADE", index=True)
    position = IntegerField()
    description = CharField(max_length=300)
    service = CharField(max_length=60, default="")
    subscription = ForeignKeyField(Subscription, null=True)
    subscription_id: _ObjectId[int | None]
    quantity = QuantityField(default=0)
    discount = MoneyField(default=0)
    amount = MoneyField(default=0)  # before discount
    # Usage lines: the xDRs behind the line, the days of the period they
    # cover, and records that repeat another's time, quantity and amount
    # under a different id (risk review: completeness and duplicates).
    records = IntegerField(default=0)
    days = IntegerField(default=0)
    duplicates = IntegerField(default=0)
    duplicate_amount = MoneyField(default=0)


class TaxLine(BaseModel):
    id = AutoField()
    invoice = ForeignKeyField(Invoice, backref="taxes", on_delete="CASCADE", index=True)
    position = IntegerField()
    name = CharField(max_length=60)
    description = CharField(max_length=200, default="")
    amount = MoneyField()  # negative: a refund


class Correction(BaseModel):
    id = AutoField()
    invoice = ForeignKeyField(Invoice, backref="corrections", on_delete="CASCADE", index=True)
    position = IntegerField()
    kind = CharField(max_length=20)  # statuses.CORRECTION_KINDS
    description = CharField(max_length=300)
    amount = MoneyField()  # signed: negative reduces the debt (▼)
    created_by = CharField(max_length=64)
    approved_at = DateTimeField(null=True)
    revision = IntegerField()  # the invoice revision this correction made


class Payment(BaseModel):
    id = AutoField()
    invoice = ForeignKeyField(Invoice, backref="payments", on_delete="CASCADE", index=True)
    invoice_id: _ObjectId[int]
    # "PMT-00000042": its number in the platform (sequence "payment"), what a
    # gateway's or bank's file names (migration 0009).
    number = CharField(max_length=32, unique=True, null=True)
    description = CharField(max_length=200)
    created_at = DateTimeField()
    due_date = DateField(null=True)
    status = CharField(max_length=32)  # statuses.PAYMENT_STATUSES
    amount = MoneyField()
    paid_at = DateTimeField(null=True)  # when the money arrived

    class Meta:
        indexes = ((("status", "due_date"), False),)


class PaymentEvent(BaseModel):
    """One applied line of a payments file, keyed by its fingerprint: a line
    imported again (the same file twice, two operators at once) is applied once."""

    id = AutoField()
    fingerprint = CharField(max_length=64, unique=True)
    payment_id = IntegerField(index=True)
    outcome = CharField(max_length=32)
    amount = MoneyField()
    at = DateTimeField()  # the time the file gives
    imported_at = DateTimeField()
    actor = CharField(max_length=64)
    source = CharField(max_length=300)  # "FILE.csv:LINE"


class InvoicePdf(BaseModel):
    """Rendered PDFs: the current revision and the one last sent, no more."""

    id = AutoField()
    invoice = ForeignKeyField(Invoice, backref="pdfs", on_delete="CASCADE")
    revision = IntegerField()
    data = BlobField()
    created_at = DateTimeField()
    note = TextField(null=True)  # the draft note it was rendered with ("" = final); migration 0004

    class Meta:
        indexes = ((("invoice", "revision"), True),)


class AuditEvent(BaseModel):
    id = AutoField()
    at = DateTimeField(index=True)
    actor = CharField(max_length=64)
    role = CharField(max_length=20, null=True)  # the actor's role then; None: single-admin mode, job loop
    action = CharField(max_length=40)
    invoice = ForeignKeyField(Invoice, null=True, backref="audit", on_delete="SET NULL", index=True)
    number = CharField(max_length=64, null=True)
    before_status = CharField(max_length=20, null=True)
    after_status = CharField(max_length=20, null=True)
    before_total = MoneyField(null=True)
    after_total = MoneyField(null=True)
    detail = TextField(default="")


class OutboxMessage(BaseModel):
    """Mail waiting to go out: at most one per (invoice, revision, kind)."""

    id = AutoField()
    kind = CharField(max_length=20)  # invoice | digest
    invoice = ForeignKeyField(Invoice, null=True, backref="outbox", on_delete="CASCADE")
    invoice_id: _ObjectId[int | None]
    revision = IntegerField(default=0)
    message_id = CharField(unique=True, max_length=200)
    recipient = CharField(max_length=254)
    subject = CharField(max_length=300)
    body = TextField(default="")
    status = CharField(max_length=12, default="queued")  # queued|sending|uncertain|sent|failed
    attempts = IntegerField(default=0)  # claims so far (also the claim's fencing token)
    refusals = IntegerField(default=0)  # temporary refusals by the server: [mail] max_attempts counts these
    next_attempt_at = DateTimeField(null=True)
    last_error = TextField(default="")  # the last attempt's error (a claim never overwrites it)
    created_at = DateTimeField()
    sent_at = DateTimeField(null=True)
    # The claim of a row in "sending" (mail/delivery.py), cleared when it leaves
    # that state: the sender (a job loop's holder) and the end of its lease.
    claimed_by = CharField(max_length=200, null=True)
    claimed_until = DateTimeField(null=True)

    class Meta:
        indexes = (
            (("kind", "invoice", "revision"), True),
            (("status", "next_attempt_at"), False),
        )


class AppUser(BaseModel):
    """A person who may use the store, by OS user name, and their role
    (roles.ROLES).  None at all: single-admin mode (issue 16)."""

    name = CharField(primary_key=True, max_length=64)
    role = CharField(max_length=20)
    added_at = DateTimeField()
    added_by = CharField(max_length=64)

    class Meta:
        table_name = "app_user"


class JobLock(BaseModel):
    """Heartbeat of a running job loop (one per name on SQLite)."""

    name = CharField(primary_key=True, max_length=64)
    holder = CharField(max_length=200)
    heartbeat_at = DateTimeField()


class InvoiceSnapshot(BaseModel):
    """An invoice's lines and totals as they were at one revision (revisions.py):
    taken before an adjust or reissue changes them, so the detail screen can
    show what changed since the revision last reviewed."""

    id = AutoField()
    invoice = ForeignKeyField(Invoice, backref="snapshots", on_delete="CASCADE")
    revision = IntegerField()
    taken_at = DateTimeField()
    action = CharField(max_length=40)  # the change about to be made: adjust | reissue | ...
    subtotal = MoneyField(default=0)
    discount_total = MoneyField(default=0)
    tax_total = MoneyField(default=0)
    correction_total = MoneyField(default=0)
    total = MoneyField(default=0)
    lines = TextField(default="")  # JSON: {"charges": [...], "taxes": [...], "corrections": [...]}

    class Meta:
        indexes = ((("invoice", "revision"), True),)


ALL_MODELS = [
    Setting,
    Sequence,
    CustomerClass,
    Account,
    Subscription,
    Discount,
    TaxRule,
    Xdr,
    Invoice,
    ChargeLine,
    TaxLine,
    Correction,
    Payment,
    PaymentEvent,
    InvoicePdf,
    AuditEvent,
    OutboxMessage,
    JobLock,
    InvoiceSnapshot,
    AppUser,
]
