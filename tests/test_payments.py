"""Payments that move an invoice to Paid (issue 17): a gateway's or bank's file,
manual receipts, partial and over-payments to the cent, idempotent and
race-safe imports -- on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
from decimal import Decimal

import pytest

from tests import factories as F
from tui_billing import payments, payments_file
from tui_billing import statuses as S
from tui_billing import workflow as W
from tui_billing.csv_input import ImportFileError
from tui_billing.errors import NotAllowed, Refused
from tui_billing.store.models import Account, AuditEvent, Invoice, Payment, PaymentEvent

HEADER = "reference,amount,currency,time,outcome\n"


def sent(ctx, total="100.00", balance="0", currency="EUR") -> Invoice:
    """An invoice sent and waiting for its payment (UNPAID)."""
    acc = F.account(balance=Decimal(balance), currency=currency)
    inv = F.invoice(status=S.APPROVED, total=Decimal(total), acc=acc, approved_at=dt.datetime(2026, 11, 18, 10))
    return W.mark_invoice_sent(ctx, inv.id, 1)


def waiting(inv) -> Payment:
    return Payment.get((Payment.invoice == inv.id) & (Payment.status == payments.WAITING))


def reload(inv) -> Invoice:
    return Invoice.get_by_id(inv.id)


def balance(inv) -> Decimal:
    return Account.get_by_id(inv.account_id).balance


def write(tmp_path, *lines: str, name="pay.csv", header=HEADER):
    path = tmp_path / name
    path.write_text(header + "".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def snapshot():
    """Everything a payments import may write."""
    return (
        list(Payment.select().order_by(Payment.id).tuples()),
        list(Invoice.select(Invoice.id, Invoice.status, Invoice.outstanding).order_by(Invoice.id).tuples()),
        list(Account.select(Account.id, Account.balance).order_by(Account.id).tuples()),
        PaymentEvent.select().count(),
        AuditEvent.select().count(),
    )


def test_a_sent_invoice_gets_a_numbered_payment(store_url, ctx):
    inv = sent(ctx)
    pay = waiting(inv)
    assert pay.number.startswith("PMT-") and len(pay.number) == 12
    assert pay.description == f"Payment {pay.number}"
    other = waiting(sent(ctx))
    assert int(other.number[4:]) == int(pay.number[4:]) + 1  # the payment sequence


def test_completed_payment_pays_the_invoice(store_url, ctx, tmp_path):
    inv = sent(ctx, "123.45")
    pay = waiting(inv)
    result = payments_file.import_payments(
        ctx, write(tmp_path, f"{pay.number},123.45,EUR,2026-11-19T08:00:00Z,completed")
    )
    assert result.committed, result.errors
    assert result.summary.paid == [inv.number]
    inv = reload(inv)
    assert (inv.status, inv.outstanding) == (S.PAID, Decimal("0"))
    pay = Payment.get_by_id(pay.id)
    assert (pay.status, pay.amount, pay.paid_at) == ("completed", Decimal("123.45"), dt.datetime(2026, 11, 19, 8))
    event = AuditEvent.get((AuditEvent.invoice == inv.id) & (AuditEvent.action == "payment"))
    assert (event.before_status, event.after_status, event.actor) == (S.UNPAID, S.PAID, "alice")
    assert '"applied": "123.45"' in event.detail and pay.number in event.detail


def test_partial_payment_leaves_the_rest_outstanding_to_the_cent(store_url, ctx, tmp_path):
    inv = sent(ctx, "100.00")
    first = waiting(inv)
    res = payments_file.import_payments(ctx, write(tmp_path, f"{inv.number},33.33,EUR,2026-11-19T08:00:00,completed"))
    assert res.committed, res.errors
    inv = reload(inv)
    assert (inv.status, inv.outstanding) == (S.UNPAID, Decimal("66.67"))
    rest = waiting(inv)
    assert rest.id != first.id and rest.amount == Decimal("66.67") and rest.due_date == first.due_date
    assert Payment.get_by_id(first.id).amount == Decimal("33.33")
    assert res.summary.applied[0].rest_payment == rest.number
    # The rest, by its payment number: paid.
    res = payments_file.import_payments(
        ctx, write(tmp_path, f"{rest.number},66.67,EUR,2026-11-19T09:00:00,completed", name="b.csv")
    )
    assert res.committed, res.errors
    inv = reload(inv)
    assert (inv.status, inv.outstanding) == (S.PAID, Decimal("0"))
    assert balance(inv) == Decimal("0")
    paid = [p.amount for p in Payment.select().where(Payment.invoice == inv.id)]
    assert sum(paid) == Decimal("100.00")


def test_overpayment_goes_to_the_balance(store_url, ctx, tmp_path):
    inv = sent(ctx, "80.10")
    res = payments_file.import_payments(
        ctx, write(tmp_path, f"{waiting(inv).number},100.00,EUR,2026-11-19T08:00:00,completed")
    )
    assert res.committed, res.errors
    assert reload(inv).status == S.PAID
    assert balance(inv) == Decimal("19.90")
    assert res.summary.to_balance == Decimal("19.90")
    # The balance pays the account's next invoice when it is sent (the dispatch job).
    nxt = F.invoice(status=S.APPROVED, total=Decimal("19.90"), acc=Account.get_by_id(inv.account_id))
    assert W.mark_invoice_sent(ctx, nxt.id, 1).status == S.PAID
    assert balance(inv) == Decimal("0")


def test_money_for_a_paid_invoice_goes_to_the_balance(store_url, ctx, tmp_path):
    inv = sent(ctx, "50.00")
    path = write(tmp_path, f"{inv.number},50.00,EUR,2026-11-19T08:00:00,completed")
    assert payments_file.import_payments(ctx, path).committed
    again = write(tmp_path, f"{inv.number},50.00,EUR,2026-11-19T10:00:00,completed", name="twice.csv")
    res = payments_file.import_payments(ctx, again)  # paid twice by the customer: a new payment, to the balance
    assert res.committed, res.errors
    assert balance(inv) == Decimal("50.00")
    assert Payment.select().where((Payment.invoice == inv.id) & (Payment.status == "completed")).count() == 2


def test_reimporting_the_same_file_changes_nothing(store_url, ctx, tmp_path):
    a, b = sent(ctx, "10.00"), sent(ctx, "20.00")
    path = write(
        tmp_path,
        f"{waiting(a).number},10.00,EUR,2026-11-19T08:00:00,processing",
        f"{waiting(a).number},10.00,EUR,2026-11-19T08:05:00,completed",
        f"{b.number},5.00,EUR,2026-11-19T08:00:00,completed",
    )
    first = payments_file.import_payments(ctx, path)
    assert first.committed and len(first.summary.applied) == 3
    before = snapshot()
    again = payments_file.import_payments(ctx, path)
    assert again.committed and again.summary.already == 3 and not again.summary.applied
    assert snapshot() == before


def test_lines_apply_in_time_order(store_url, ctx, tmp_path):
    inv = sent(ctx, "10.00")
    number = waiting(inv).number
    path = write(
        tmp_path,
        f"{number},10.00,EUR,2026-11-19T08:05:00,completed",
        f"{number},10.00,EUR,2026-11-19T08:00:00,processing",
    )
    res = payments_file.import_payments(ctx, path)
    assert res.committed, res.errors
    assert [(o.before, o.after) for o in res.summary.outcomes] == [
        ("waiting_for_payment", "processing"),
        ("processing", "completed"),
    ]


def test_a_bad_file_is_refused_whole_naming_each_line(store_url, ctx, tmp_path):
    good, other = sent(ctx, "10.00"), sent(ctx, "10.00")
    F.invoice(status=S.UNDER_REVIEW, number="INV-REVIEW-1")
    usd = sent(ctx, "10.00", currency="USD")
    before = snapshot()
    path = write(
        tmp_path,
        f"{waiting(good).number},10.00,EUR,2026-11-19T08:00:00,completed",  # good: rolled back too
        "PMT-99999999,10.00,EUR,2026-11-19T08:00:00,completed",  # 3: no such payment
        f"{other.number},1,5,EUR,2026-11-19T08:00:00,completed",  # 4: six fields
        f'{other.number},"1,5",EUR,2026-11-19T08:00:00,completed',  # 5: decimal comma
        f"{other.number},10.00,EUR,yesterday,completed",  # 6: time
        f"{other.number},10.00,EUR,2026-11-19T08:00:00,paid",  # 7: outcome
        f"{other.number},10.00,EUR,2026-11-19T08:00:00,expired",  # 8: the job's
        f"{usd.number},10.00,EUR,2026-11-19T08:00:00,completed",  # 9: currency
        "INV-REVIEW-1,10.00,EUR,2026-11-19T08:00:00,completed",  # 10: not sent
        f"{other.number},10.00,EUR,2027-11-19T08:00:00,completed",  # 11: future
        f"{other.number},0,EUR,2026-11-19T08:00:00,completed",  # 12: zero
        f"{waiting(good).number},10.00,EUR,2026-11-19T08:00:00,completed",  # 13: repeats line 2
        f"{other.number},10.00,EUR,2026-11-19T08:00:00,receipt_sent",  # 14: an operator's
    )
    res = payments_file.import_payments(ctx, path)
    assert not res.committed
    by_line = {e.line: (e.field, e.reason) for e in res.errors}
    assert set(by_line) == {4, 5, 6, 7, 8, 11, 12, 13, 14}  # read errors first: the store is not touched
    assert by_line[4][0] == "row" and "6 fields" in by_line[4][1]
    assert by_line[5][0] == "amount" and "1,5" in by_line[5][1]
    assert by_line[6][0] == "time"
    assert by_line[7][0] == "outcome" and "paid" in by_line[7][1]
    assert by_line[8][0] == "outcome" and "expiry job" in by_line[8][1]
    assert by_line[11] == ("time", "'2027-11-19T08:00:00' is in the future")
    assert by_line[12][0] == "amount"
    assert by_line[13] == ("row", "repeats line 2 (the same payment line twice)")
    assert by_line[14][0] == "outcome" and "operator" in by_line[14][1]
    assert snapshot() == before
    # Read errors fixed: the lines the store refuses are named too, and still nothing is written.
    path = write(
        tmp_path,
        f"{waiting(good).number},10.00,EUR,2026-11-19T08:00:00,completed",
        "PMT-99999999,10.00,EUR,2026-11-19T08:00:00,completed",
        f"{usd.number},10.00,EUR,2026-11-19T08:00:00,completed",
        "INV-REVIEW-1,10.00,EUR,2026-11-19T08:00:00,completed",
        name="second.csv",
    )
    res = payments_file.import_payments(ctx, path)
    by_line = {e.line: (e.field, e.reason) for e in res.errors}
    assert by_line == {
        3: ("reference", "no payment and no invoice is numbered 'PMT-99999999'"),
        4: ("currency", f"EUR is not the currency of {usd.number} (USD)"),
        5: ("reference", "INV-REVIEW-1 is under review: it has no payment until it is sent"),
    }
    assert snapshot() == before


def test_file_level_errors(store_url, ctx, tmp_path):
    with pytest.raises(ImportFileError, match="does not exist"):
        payments_file.import_payments(ctx, tmp_path / "missing.csv")
    with pytest.raises(ImportFileError, match="unknown column"):
        payments_file.import_payments(ctx, write(tmp_path, header="reference,amount,currency,time,outcome,note\n"))
    path = write(tmp_path, header="Outcome, TIME ,currency,amount,reference\n", name="order.csv")
    inv = sent(ctx, "10.00")
    path.write_text(path.read_text() + f"completed,2026-11-19T08:00:00,EUR,10.00,{inv.number}\n")
    assert payments_file.import_payments(ctx, path).committed  # any column order, case and spaces ignored
    assert reload(inv).status == S.PAID


def test_a_transition_that_does_not_apply_is_named(store_url, ctx, tmp_path):
    inv = sent(ctx, "10.00")
    number = waiting(inv).number
    assert payments_file.import_payments(
        ctx, write(tmp_path, f"{number},10.00,EUR,2026-11-19T08:00:00,cancelled")
    ).committed
    res = payments_file.import_payments(
        ctx, write(tmp_path, f"{number},10.00,EUR,2026-11-19T09:00:00,processing", name="b.csv")
    )
    assert [(e.line, e.field, e.reason) for e in res.errors] == [
        (2, "outcome", f"{number} is cancelled: it cannot become processing")
    ]
    # A cancelled payment leaves the invoice owed; money named by the invoice still pays it.
    assert reload(inv).status == S.UNPAID
    res = payments_file.import_payments(
        ctx, write(tmp_path, f"{inv.number},10.00,EUR,2026-11-19T10:00:00,completed", name="c.csv")
    )
    assert res.committed and reload(inv).status == S.PAID


def test_an_expired_payment_paid_late_pays_the_overdue_invoice(store_url, ctx, tmp_path):
    inv = sent(ctx, "42.00")
    pay = waiting(inv)
    late = W.Ctx(
        clock=type(ctx.clock)(
            tz=ctx.clock.tz, fixed=dt.datetime.combine(pay.due_date, dt.time(9)) + dt.timedelta(days=3)
        ),
        actor="job:expire",
    )
    assert payments.expire_payment(late, pay.id) is not None
    assert reload(inv).status == S.OVERDUE
    res = payments_file.import_payments(
        late, write(tmp_path, f"{pay.number},42.00,EUR,{pay.due_date + dt.timedelta(days=2)}T12:00:00,completed")
    )
    assert res.committed, res.errors
    assert reload(inv).status == S.PAID


def test_manual_receipts(store_url, ctx, tmp_path):
    inv = sent(ctx, "10.00")
    pay = waiting(inv)
    with pytest.raises(Refused, match="only a completed payment can become receipt creating"):
        payments.mark_receipt(ctx, pay.number, "receipt_creating")
    payments_file.import_payments(ctx, write(tmp_path, f"{pay.number},10.00,EUR,2026-11-19T08:00:00,processing"))
    with pytest.raises(Refused, match="is processing: no operation is available"):
        payments.mark_receipt(ctx, pay.number, "receipt_creating")  # seed 001
    payments_file.import_payments(
        ctx, write(tmp_path, f"{pay.number},10.00,EUR,2026-11-19T08:05:00,completed", name="b.csv")
    )
    with pytest.raises(Refused, match="only a receipt creating payment can become receipt sent"):
        payments.mark_receipt(ctx, pay.number, "receipt_sent")
    assert payments.mark_receipt(ctx, pay.number, "receipt_creating").status == "receipt_creating"
    assert payments.mark_receipt(ctx, str(pay.id), "receipt_sent").status == "receipt_sent"
    actions = [e.action for e in AuditEvent.select().where(AuditEvent.invoice == inv.id).order_by(AuditEvent.id)]
    assert actions[-2:] == ["receipt_creating", "receipt_sent"]
    assert reload(inv).status == S.PAID  # receipts move no money


def test_a_payment_paid_by_a_receipt_method(store_url, ctx, tmp_path):
    """receipt_creating from a gateway: paid, a manual receipt to make."""
    inv = sent(ctx, "10.00")
    pay = waiting(inv)
    res = payments_file.import_payments(
        ctx, write(tmp_path, f"{pay.number},10.00,EUR,2026-11-19T08:00:00,receipt_creating")
    )
    assert res.committed, res.errors
    assert reload(inv).status == S.PAID
    assert payments.mark_receipt(ctx, pay.number, "receipt_sent").status == "receipt_sent"


def test_roles_refuse_a_viewer(store_url, ctx, tmp_path):
    from tui_billing import access

    inv = sent(ctx, "10.00")
    access.add_user(W.Ctx(clock=ctx.clock, actor="root"), "root", "admin")
    access.add_user(W.Ctx(clock=ctx.clock, actor="root"), "vic", "viewer")
    access.add_user(W.Ctx(clock=ctx.clock, actor="root"), "olga", "operator")
    path = write(tmp_path, f"{waiting(inv).number},10.00,EUR,2026-11-19T08:00:00,completed")
    before = snapshot()
    with pytest.raises(NotAllowed, match="vic may not record payments or receipts"):
        payments_file.import_payments(W.Ctx(clock=ctx.clock, actor="vic"), path)
    assert snapshot() == before
    assert payments_file.import_payments(W.Ctx(clock=ctx.clock, actor="olga"), path).committed
    assert AuditEvent.get(AuditEvent.action == "payment").role == "operator"


def _import_in_process(url: str, path: str, queue) -> None:
    from tui_billing.context import Ctx
    from tui_billing.store import db as store_db

    store_db.connect(url)
    try:
        res = payments_file.import_payments(Ctx(actor="racer"), path)
        queue.put((len(res.summary.applied), res.summary.already, [str(e) for e in res.errors]))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        queue.put((-1, -1, [repr(exc)]))
    finally:
        store_db.close()


@pytest.mark.slow
def test_two_imports_racing_apply_each_line_once(store_url, ctx, tmp_path):
    invs = [sent(ctx, "10.00") for _ in range(20)]
    lines = [f"{waiting(i).number},10.00,EUR,2026-11-19T08:00:00,completed" for i in invs]
    path = write(tmp_path, *lines)
    spawn = mp.get_context("spawn")
    queue = spawn.Queue()
    procs = [spawn.Process(target=_import_in_process, args=(store_url, str(path), queue)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
    assert all(errors == [] for _, _, errors in results), results
    assert sum(applied for applied, _, _ in results) == 20
    assert sum(already for _, already, _ in results) == 40
    assert PaymentEvent.select().count() == 20
    assert AuditEvent.select().where(AuditEvent.action == "payment").count() == 20
    for inv in invs:
        inv = reload(inv)
        assert (inv.status, inv.outstanding) == (S.PAID, Decimal("0"))
        assert balance(inv) == Decimal("0")


def test_migration_0009_numbers_existing_payments(bare_url, ctx):
    from playhouse.migrations import Runner

    from tui_billing.store import db as store_db
    from tui_billing.store.models import Sequence

    db = store_db.connect(bare_url, migrate=False)
    Runner(db, str(store_db.MIGRATIONS_DIR)).up(target="0008_roles")  # a store of the last release
    inv = F.invoice(status=S.UNPAID, acc=F.account())
    for i in range(3):  # inserted as the last release did: no number column yet
        Payment.insert(
            invoice=inv.id, description=f"old {i}", created_at=dt.datetime(2026, 11, 1), status="expired", amount=1
        ).execute()
    assert "0009_payments_erp" in store_db.apply_migrations(db)
    numbers = [p.number for p in Payment.select().order_by(Payment.id)]
    assert numbers == [f"PMT-{p.id:08d}" for p in Payment.select().order_by(Payment.id)]
    assert Sequence.get_by_id("payment").value == max(p.id for p in Payment.select())
    store_db.close()
    store_db.connect(bare_url)
    assert store_db.pending_migrations() == []
    # The next payment continues after them.
    fresh = W.mark_invoice_sent(ctx, F.invoice(status=S.APPROVED, acc=F.account()).id, 1)
    assert waiting(fresh).number == f"PMT-{max(p.id for p in Payment.select()):08d}"


def test_find_by_payment_status_and_days_overdue(cli, ctx, tmp_path):
    late, fine = sent(ctx, "30.00"), sent(ctx, "20.00")
    due = waiting(late).due_date
    expiry = W.Ctx(
        clock=type(ctx.clock)(tz=ctx.clock.tz, fixed=dt.datetime.combine(due, dt.time(9)) + dt.timedelta(days=4)),
        actor="job:x",
    )
    payments.expire_payment(expiry, waiting(late).id)
    when = (dt.datetime.combine(due, dt.time(9)) + dt.timedelta(days=4)).isoformat()
    code, out, err = cli("find", "--payment-status", "expired", "--json", "--now", when)
    assert code == 0, err
    found = json.loads(out)["invoices"]
    assert [i["number"] for i in found] == [late.number]
    assert (found[0]["status"], found[0]["outstanding"], found[0]["days_overdue"]) == ("overdue", "30.00", 4)
    code, out, _ = cli("find", "--payment-status", "Waiting for payment", "--json", "--now", when)
    assert [i["number"] for i in json.loads(out)["invoices"]] == [fine.number]
    # Past due but not yet expired by the job: Unpaid, and owed 4 days all the same.
    assert json.loads(out)["invoices"][0]["days_overdue"] == 4
    code, _, err = cli("find", "--payment-status", "bounced")
    assert code == 2 and "payment-status: 'bounced' is not one of" in err
