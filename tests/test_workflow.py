"""Every transition, allowed and refused, with the audit event it writes."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from tui_billing import payments
from tui_billing import statuses as S
from tui_billing import workflow as W
from tui_billing.store.models import AuditEvent, Correction, Invoice, Payment

from . import factories as F


def events(inv, action=None):
    q = AuditEvent.select().where(AuditEvent.invoice == inv.id)
    if action:
        q = q.where(AuditEvent.action == action)
    return list(q.order_by(AuditEvent.id))


def reload(inv):
    return Invoice.get_by_id(inv.id)


# -- approve -----------------------------------------------------------------


def test_approve_under_review_keeps_issue_date_and_writes_audit(store_url, ctx):
    inv = F.invoice()
    issued = inv.issue_date
    W.approve(ctx, inv.number)
    got = reload(inv)
    assert got.status == S.APPROVED
    assert got.issue_date == issued  # seed: generated March 1, approved March 3 -> issue date March 1
    assert got.approved_at == ctx.clock.now() and got.approved_by == "alice"
    (ev,) = events(inv, "approve")
    assert (ev.actor, ev.before_status, ev.after_status) == ("alice", S.UNDER_REVIEW, S.APPROVED)
    assert ev.before_total == ev.after_total == Decimal("100")


@pytest.mark.parametrize(
    "status,reason",
    [
        (S.REJECTED, "is rejected: reissue it before approving it"),
        (S.APPROVED, "is already approved"),
        (S.UNPAID, "was already sent"),
        (S.OPEN, "is open"),
    ],
)
def test_approve_refused_from_other_states(store_url, ctx, status, reason):
    inv = F.invoice(status=status, number="INV-2026-000123")
    with pytest.raises(W.Refused) as exc:
        W.approve(ctx, inv.number)
    assert str(exc.value).startswith("INV-2026-000123 " + reason)
    assert reload(inv).status == status
    assert events(inv) == []


def test_approve_many_goes_past_refused_and_reports_each(store_url, ctx):
    good = [F.invoice() for _ in range(3)]
    bad = F.invoice(status=S.REJECTED)
    result = W.approve_many(ctx, [good[0].id, bad.id, good[1].id, good[2].id])
    assert sorted(result.done) == sorted(i.number for i in good)
    assert result.failed == [(bad.number, W.APPROVE_REFUSALS[S.REJECTED])]
    assert all(reload(i).status == S.APPROVED for i in good)
    assert AuditEvent.select().where(AuditEvent.action == "approve").count() == 3


def test_approve_many_in_chunks_reports_progress(store_url, ctx, monkeypatch):
    monkeypatch.setattr(W, "CHUNK", 2)
    invs = [F.invoice() for _ in range(5)]
    seen = []
    result = W.approve_many(ctx, [i.id for i in invs], progress=lambda d, t: seen.append((d, t)))
    assert len(result.done) == 5 and seen == [(2, 5), (4, 5), (5, 5)]


# -- auto-approve ----------------------------------------------------------------


def test_auto_approve_at_deadline_not_a_minute_before(store_url, ctx):
    inv = F.invoice(generated=dt.datetime(2026, 11, 15, 10, 0))  # hold 5 days -> 20th 10:00
    rejected = F.invoice(status=S.REJECTED, generated=dt.datetime(2026, 11, 1, 10, 0))
    early = W.Ctx(clock=type(ctx.clock)(tz=ctx.clock.tz, fixed=dt.datetime(2026, 11, 20, 9, 59)), actor="job")
    assert W.auto_approve_due(early).done == []
    assert reload(inv).status == S.UNDER_REVIEW
    result = W.auto_approve_due(W.Ctx(clock=ctx.clock, actor="job:auto_approve"))
    assert result.done == [inv.number]
    assert reload(inv).status == S.APPROVED
    assert reload(rejected).status == S.REJECTED  # waits for its reissue
    (ev,) = events(inv, "auto_approve")
    assert ev.actor == "job:auto_approve"
    # Written set-based (audit.insert_audits_of): the same event audit_row writes.
    assert (ev.at, ev.number, ev.before_status, ev.after_status) == (
        ctx.clock.now(),
        inv.number,
        S.UNDER_REVIEW,
        S.APPROVED,
    )
    assert (ev.before_total, ev.after_total, ev.role) == (Decimal("100.00"), Decimal("100.00"), None)
    assert json.loads(ev.detail) == {"revision": 1} and ev.detail == json.dumps({"revision": 1})


# -- adjust ------------------------------------------------------------------------


def test_adjust_credit_and_charge(store_url, ctx):
    inv = F.invoice(total=Decimal("250.00"))
    number = inv.number
    W.adjust(ctx, inv.id, "credit", Decimal("20.50"), "Promotional credit")
    W.adjust(ctx, inv.id, "charge", Decimal("99.99"), "On-site support")
    got = reload(inv)
    assert got.number == number and got.status == S.UNDER_REVIEW
    assert got.total == Decimal("329.49") and got.outstanding == Decimal("329.49")
    assert got.correction_total == Decimal("79.49")
    assert got.revision == 3
    rows = list(Correction.select().where(Correction.invoice == inv.id).order_by(Correction.position))
    assert [(c.position, c.kind, c.amount) for c in rows] == [
        (1, "manual_credit", Decimal("-20.50")),
        (2, "manual_charge", Decimal("99.99")),
    ]
    ev = events(inv, "adjust")
    assert [(e.before_total, e.after_total) for e in ev] == [
        (Decimal("250"), Decimal("229.50")),
        (Decimal("229.50"), Decimal("329.49")),
    ]
    assert json.loads(ev[0].detail)["description"] == "Promotional credit"


@pytest.mark.parametrize("status", [S.REJECTED, S.APPROVED, S.PAID, S.OPEN])
def test_adjust_refused_outside_review(store_url, ctx, status):
    inv = F.invoice(status=status)
    with pytest.raises(W.Refused):
        W.adjust(ctx, inv.id, "credit", Decimal("1"), "x")
    assert Correction.select().count() == 0 and reload(inv).total == Decimal("100")


@pytest.mark.parametrize(
    "kind,amount,desc,field",
    [
        ("credit", Decimal("0"), "x", "amount"),
        ("credit", Decimal("-5"), "x", "amount"),
        ("charge", Decimal("1.001"), "x", "amount"),
        ("charge", Decimal("100000000"), "x", "amount"),
        ("charge", Decimal("5"), "   ", "description"),
        ("refund", Decimal("5"), "x", "kind"),
        ("credit", Decimal("100.01"), "x", "amount"),  # would make the total negative
    ],
)
def test_adjust_bad_input_names_the_field(store_url, ctx, kind, amount, desc, field):
    inv = F.invoice()
    with pytest.raises(W.BadInput) as exc:
        W.adjust(ctx, inv.id, kind, amount, desc)
    assert exc.value.field == field
    assert Correction.select().count() == 0 and reload(inv).revision == 1


def test_adjust_respects_currency_minor_units(store_url, ctx):
    yen = F.invoice(acc=F.account(currency="JPY"), total=Decimal("5000"))
    with pytest.raises(W.BadInput, match="JPY amounts have at most 0 decimal places"):
        W.adjust(ctx, yen.id, "charge", Decimal("1.5"), "x")
    W.adjust(ctx, yen.id, "charge", Decimal("150"), "porting fee")
    assert reload(yen).total == Decimal("5150")


# -- reissue ---------------------------------------------------------------------


def test_request_reissue_off_peak_waits_for_the_window(store_url, ctx):
    inv = F.invoice()
    W.request_reissue(ctx, inv.id, "off_peak")
    got = reload(inv)
    assert got.status == S.REJECTED and got.reissue_mode == "off_peak"
    assert got.reissue_after == dt.datetime(2026, 11, 21, 1, 0)  # next 01:00 (UTC zone in tests)
    (ev,) = events(inv, "request_reissue")
    assert (ev.before_status, ev.after_status) == (S.UNDER_REVIEW, S.REJECTED)
    assert W.due_for_offpeak_reissue(ctx) == []


def test_reissue_now_keeps_number_issue_date_and_corrections(store_url, ctx):
    inv = F.invoice(total=Decimal("100"))
    W.adjust(ctx, inv.id, "credit", Decimal("10"), "Goodwill")
    before = reload(inv)
    result = W.reissue_many(ctx, [inv.id], "now")
    assert result.done == [inv.number]
    got = reload(inv)
    assert got.status == S.UNDER_REVIEW
    assert (got.number, got.issue_date) == (before.number, before.issue_date)
    assert got.revision == before.revision + 1
    assert Correction.select().where(Correction.invoice == inv.id).count() == 1
    # Recalculated from the (empty) usage: only the correction remains.
    assert (
        got.correction_total == Decimal("-10") and got.total == got.subtotal - got.discount_total + got.tax_total - 10
    )
    assert [e.action for e in events(inv)] == ["adjust", "request_reissue", "reissue"]


def test_complete_reissue_only_from_rejected(store_url, ctx):
    inv = F.invoice()
    with pytest.raises(W.Refused, match="only a rejected invoice awaits reissue"):
        W.complete_reissue(ctx, inv.id)


def test_reissue_refused_for_sent_and_non_regular(store_url, ctx):
    sent = F.invoice(status=S.PAID)
    manual = F.invoice(kind="manual")
    result = W.reissue_many(ctx, [sent.id, manual.id], "off_peak")
    assert result.done == []
    assert [n for n, _ in result.failed] == [sent.number, manual.number]
    assert "only regular invoices" in result.failed[1][1]


# -- issue, close, send, expire -----------------------------------------------------


def test_issue_fields_by_send_mode(store_url, ctx):
    review = F.customer_class()
    fields = W.issue_fields(ctx, review, "regular")
    assert fields["status"] == S.UNDER_REVIEW
    assert fields["review_deadline"] == ctx.clock.now() + dt.timedelta(days=5)
    assert fields["due_date"] == ctx.clock.today() + dt.timedelta(days=26)
    # Only regular invoices are reviewed; immediate classes skip review.
    assert W.issue_fields(ctx, review, "manual")["status"] == S.APPROVED
    now_cls = F.customer_class("Residential", "immediately", 0, 30)
    assert W.issue_fields(ctx, now_cls, "regular")["status"] == S.APPROVED


def test_close_postpay_issues_through_review(store_url, ctx):
    inv = F.invoice(status=S.OPEN)
    W.close_postpay(ctx, inv.id)
    got = reload(inv)
    assert got.status == S.UNDER_REVIEW and got.closed_at == ctx.clock.now()
    assert got.issue_date == ctx.clock.today()
    with pytest.raises(W.Refused, match="not open"):
        W.close_postpay(ctx, inv.id)


def test_mark_invoice_sent_paid_from_balance_or_unpaid(store_url, ctx):
    rich = F.invoice(status=S.APPROVED, acc=F.account(balance=Decimal("500")), total=Decimal("120"))
    poor = F.invoice(status=S.APPROVED, acc=F.account(balance=Decimal("5")), total=Decimal("120"))
    W.mark_invoice_sent(ctx, rich.id, 1)
    W.mark_invoice_sent(ctx, poor.id, 1)
    assert reload(rich).status == S.PAID and reload(rich).outstanding == 0
    assert reload(poor).status == S.UNPAID
    assert Payment.get(Payment.invoice == rich.id).status == "paid_from_balance"
    assert Payment.get(Payment.invoice == poor.id).status == "waiting_for_payment"
    from tui_billing.store.models import Account

    assert Account.get_by_id(rich.account_id).balance == Decimal("380")
    with pytest.raises(W.Refused):
        W.mark_invoice_sent(ctx, rich.id, 1)  # never twice


def test_mark_invoice_sent_refuses_a_stale_revision(store_url, ctx):
    inv = F.invoice(status=S.APPROVED, revision=3)
    with pytest.raises(W.Refused, match="revision 3"):
        W.mark_invoice_sent(ctx, inv.id, 2)


def test_expire_payment_makes_invoice_overdue(store_url, ctx):
    inv = F.invoice(status=S.APPROVED, acc=F.account(balance=Decimal("0")))
    W.mark_invoice_sent(ctx, inv.id, 1)
    pay = Payment.get(Payment.invoice == inv.id)
    assert payments.expire_payment(ctx, pay.id) is None  # not due yet
    later = W.Ctx(
        clock=type(ctx.clock)(
            tz=ctx.clock.tz, fixed=dt.datetime.combine(pay.due_date + dt.timedelta(days=1), dt.time(9))
        ),
        actor="job",
    )
    assert payments.expire_payment(later, pay.id) is not None
    assert Payment.get_by_id(pay.id).status == "expired"
    assert reload(inv).status == S.OVERDUE
    assert events(inv, "expire_payment")


def test_a_class_change_warning_stays_while_the_class_keeps_those_values(store_url, ctx):
    """Seed 000: Net 21 + 5 hold days -> Net 26.  The warning is read from the
    audited change, so a restarted console (or the CLI) still shows it."""
    from tui_billing.customer_classes import class_rows, save_class

    save_class(ctx, "Wholesale", send_mode="immediately", hold_days=0, net_days=21, create=True)
    assert class_rows("Wholesale")[0]["warning"] is None
    warning = save_class(ctx, "Wholesale", send_mode="after_review", hold_days=5)
    assert warning and "set Net 26 days" in warning
    assert class_rows("Wholesale")[0]["warning"] == warning  # a fresh read, as after a restart
    save_class(ctx, "Wholesale", net_days=26)
    assert class_rows("Wholesale")[0]["warning"] is None
