"""Small explicit rows for tests that need exact numbers (no randomness)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from tui_billing import statuses as S
from tui_billing.store.models import Account, ChargeLine, CustomerClass, Invoice, TaxLine

_seq = iter(range(1, 10**9))


def customer_class(name="Enterprise", send_mode="after_review", hold_days=5, net_days=26):
    cls, _ = CustomerClass.get_or_create(
        name=name, defaults=dict(send_mode=send_mode, hold_days=hold_days, net_days=net_days)
    )
    return cls


def account(
    name="Zoë Łukasiewicz",
    currency="EUR",
    cls=None,
    balance=Decimal("0"),
    account_type="business",
    payment_model="postpay",
    email=None,
):
    cls = cls or customer_class()
    return Account.create(
        name=name,
        email=email or f"a{next(_seq)}@example.com",
        account_type=account_type,
        customer_class=cls,
        currency=currency,
        balance=balance,
        payment_model=payment_model,
    )


def invoice(
    status=S.UNDER_REVIEW,
    total=Decimal("100.00"),
    acc=None,
    kind="regular",
    generated=dt.datetime(2026, 11, 18, 9, 0),
    number=None,
    with_tax=False,
    **extra,
):
    acc = acc or account()
    cls = CustomerClass.get_by_id(acc.customer_class_id)
    issued = generated.date()
    fields = dict(
        number=number or f"INV-2026-{next(_seq):06d}",
        account=acc,
        customer_class=cls,
        kind=kind,
        payment_model=acc.payment_model,
        status=status,
        currency=acc.currency,
        period_from=dt.date(2026, 10, 1),
        period_to=dt.date(2026, 10, 31),
        generated_at=generated,
        issue_date=issued,
        due_date=issued + dt.timedelta(days=cls.net_days),
        review_deadline=(
            generated + dt.timedelta(days=cls.hold_days) if status in (S.UNDER_REVIEW, S.REJECTED) else None
        ),
        subtotal=total,
        total=total,
        outstanding=total,
    )
    fields.update(extra)
    inv = Invoice.create(**fields)
    ChargeLine.create(
        invoice=inv,
        position=1,
        description="Business Fibre 1 Gbit/s — monthly fee",
        service="Internet",
        quantity=Decimal("1"),
        amount=total,
    )
    if with_tax:
        TaxLine.create(invoice=inv, position=1, name="VAT", description="20 %", amount=Decimal("0"))
    return inv
