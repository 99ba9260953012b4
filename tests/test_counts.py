"""The invoice counts the database keeps (issue 18): equal to a recount after
every kind of change, on SQLite and PostgreSQL; used by the counts line; kept
right by concurrent writers; rebuilt after a migration drops their triggers."""

from __future__ import annotations

import multiprocessing as mp
from decimal import Decimal

import pytest

from tests import factories as F
from tui_billing import statuses as S
from tui_billing import workflow
from tui_billing.store import counts
from tui_billing.store import db as store_db
from tui_billing.store import queries as Q
from tui_billing.store.models import Account, Invoice, Payment, database


def recount(**where) -> dict[str, int]:
    query = Invoice.select(Invoice.status, Invoice.id).join(Account)
    if "account_type" in where:
        query = query.where(Account.account_type == where["account_type"])
    out: dict[str, int] = {}
    for row in query:
        out[row.status] = out.get(row.status, 0) + 1
    return out


def test_every_kind_of_change_keeps_them_equal_to_a_recount(store_url, ctx):
    assert counts.by_status() == {} and counts.check() == []
    home = F.account(account_type="residential")
    shop = F.account(account_type="business", cls=F.customer_class("SMB", send_mode="after_review"))
    invs = [F.invoice(acc=home if i % 2 else shop) for i in range(8)]  # ORM inserts
    assert counts.by_status() == {S.UNDER_REVIEW: 8} and counts.check() == []
    workflow.approve(ctx, invs[0].id)  # one transition
    workflow.approve_many(ctx, [i.id for i in invs[1:4]])  # a bulk one
    workflow.adjust(ctx, invs[4].id, "credit", Decimal("1.00"), "goodwill")  # no status change
    workflow.request_reissue(ctx, invs[5].id, "off_peak")
    workflow.mark_invoice_sent(ctx, invs[0].id, 1)
    Invoice.update(risk_score=5).where(Invoice.id == invs[6].id).execute()  # an update that moves nothing
    Invoice.delete().where(Invoice.id == invs[7].id).execute()
    database.execute_sql(  # raw SQL, as another writer would
        "INSERT INTO invoice (number, account_id, customer_class_id, kind, payment_model, status, currency, "
        "period_from, period_to, issue_date, subtotal, discount_total, tax_total, correction_total, total, "
        "outstanding, revision, risk_score, risk_flags) VALUES ('RAW-1', %d, %d, 'regular', 'postpay', 'open', "
        "'EUR', '2026-10-01', '2026-10-31', '2026-11-02', 0, 0, 0, 0, 0, 0, 1, 0, '')"
        % (home.id, home.customer_class_id)
    )
    assert counts.check() == []
    assert counts.by_status() == recount()
    assert counts.by_status("residential") == recount(account_type="residential")
    # An account that changes type takes its invoices' counts with it.
    Account.update(account_type="wholesale").where(Account.id == home.id).execute()
    assert counts.check() == []
    assert counts.by_status("residential") == {}
    assert counts.by_status("wholesale") == recount(account_type="wholesale")


def test_the_counts_line_reads_them(store_url, ctx):
    cls = F.customer_class("Gold")
    acc = F.account(account_type="reseller", cls=cls)
    for _ in range(3):
        F.invoice(acc=acc)
    F.invoice(status=S.PAID, acc=F.account(account_type="business"))
    full = Q.counts_by_status(Q.make_filters())
    assert (full[S.UNDER_REVIEW], full[S.PAID], full[S.OPEN]) == (3, 1, 0)
    assert Q.counts_by_status(Q.make_filters(account_type="reseller", customer_class="Gold"))[S.UNDER_REVIEW] == 3
    assert Q.counts_by_status(Q.make_filters(account_type="business"))[S.UNDER_REVIEW] == 0
    # The table is what is read: a count put wrong on purpose shows (so the test can fail).
    database.execute_sql("UPDATE invoice_count SET n = n + 100 WHERE status = 'paid'")
    assert Q.counts_by_status(Q.make_filters())[S.PAID] == 101
    assert counts.check() == [((S.PAID, "business", F.account().customer_class_id), 101, 1)]
    # Other filters count (a text search cannot be kept in advance).
    assert Q.counts_by_status(Q.make_filters(number="INV"))[S.PAID] == 1
    counts.rebuild()
    assert counts.check() == [] and Q.counts_by_status(Q.make_filters())[S.PAID] == 1


def test_the_cli_checks_and_rebuilds(cli):
    F.invoice()
    code, out, _ = cli("counts", "--check")
    assert code == 0 and "equal a recount" in out
    database.execute_sql("UPDATE invoice_count SET n = 7")
    code, _, err = cli("counts", "--check")
    assert code == 1 and "kept 7, counted 1" in err
    assert cli("counts", "--rebuild")[0] == 0
    code, out, _ = cli("counts", "--check", "--json")
    assert code == 0 and '"ok": true' in out


def test_a_demo_and_payments_keep_them(store_url, ctx, tmp_path):
    from tui_billing import demo, payments_file

    demo.build(ctx, invoices=400, seed=3, quiet=True)
    assert counts.check() == []
    unpaid = Invoice.select().where(Invoice.status == S.UNPAID).first()
    number = Payment.select(Payment.number).where(Payment.invoice == unpaid.id).scalar()
    path = tmp_path / "p.csv"
    path.write_text(
        "reference,amount,currency,time,outcome\n"
        f"{number},{unpaid.outstanding},{unpaid.currency},2026-11-19T08:00:00,completed\n"
    )
    assert payments_file.import_payments(ctx, path).committed
    assert Invoice.get_by_id(unpaid.id).status == S.PAID
    assert counts.check() == []


def test_a_migration_that_drops_the_triggers_is_repaired(store_url, ctx):
    F.invoice()
    db = database.obj
    for name in counts.SQLITE_TRIGGERS:  # what rebuilding the invoice table does on SQLite
        table = "account" if name.endswith("account_type") else "invoice"
        db.execute_sql(f'DROP TRIGGER "{name}"' + ("" if store_db.is_sqlite() else f' ON "{table}"'))
    F.invoice()  # not counted
    assert counts.check() != []
    counts.repair(db)
    assert counts.installed() and counts.check() == []
    F.invoice()
    assert counts.check() == []


def test_migration_0011_counts_an_existing_store(bare_url):
    from playhouse.migrations import Runner

    db = store_db.connect(bare_url, migrate=False)
    Runner(db, str(store_db.MIGRATIONS_DIR)).up(target="0010_search_index")
    for _ in range(3):
        F.invoice()
    assert "0011_invoice_counts" in store_db.apply_migrations(db)
    assert counts.by_status() == {S.UNDER_REVIEW: 3} and counts.check() == []


def _approve_all(url: str, ids: list[int], queue) -> None:
    from tui_billing.context import Ctx

    store_db.connect(url)
    try:
        r = workflow.approve_many(Ctx(actor="racer"), ids)
        queue.put(len(r.done))
    finally:
        store_db.close()


@pytest.mark.slow
def test_concurrent_bulk_changes_keep_them_and_fold(store_url, ctx):
    accs = [F.account(account_type=t) for t in ("business", "residential", "reseller")]
    invs = [F.invoice(acc=accs[i % 3]) for i in range(600)]
    ids = [i.id for i in invs]
    spawn = mp.get_context("spawn")
    queue = spawn.Queue()
    # Two writers over the same invoices in opposite orders: groups touched in every order.
    procs = [
        spawn.Process(target=_approve_all, args=(store_url, ids, queue)),
        spawn.Process(target=_approve_all, args=(store_url, ids[::-1], queue)),
    ]
    for p in procs:
        p.start()
    done = [queue.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
    assert sum(done) == 600
    assert counts.check() == []
    assert counts.by_status() == {S.APPROVED: 600}
    if not store_db.is_sqlite():
        rows = database.execute_sql("SELECT COUNT(*) FROM invoice_count").fetchone()[0]
        assert rows > 3  # added, not updated in place
        old = counts.COMPACT_ABOVE
        counts.COMPACT_ABOVE = 1
        try:
            assert counts.compact() > 0
        finally:
            counts.COMPACT_ABOVE = old
        assert database.execute_sql("SELECT COUNT(*) FROM invoice_count").fetchone()[0] == 3
        assert counts.check() == [] and counts.by_status() == {S.APPROVED: 600}


def test_the_job_loop_folds_them(store_url, ctx, monkeypatch):
    from tui_billing.jobs.counts import fold_counts

    for _ in range(5):
        workflow.approve(ctx, F.invoice().id)  # each adds rows on PostgreSQL
    monkeypatch.setattr(counts, "COMPACT_ABOVE", 1)
    result = fold_counts(ctx)
    assert result.done == (0 if store_db.is_sqlite() else 1)
    assert counts.check() == [] and counts.by_status() == {S.APPROVED: 5}
