"""The bill run's closing and the off-peak reissue work a batch at a time
(issue 18): what they write is what one transition at a time writes
(workflow.close_postpay, workflow.complete_reissue), with the risk assessed
in this process or in the worker (risk_store.assessor)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tui_billing import billrun, jobs, workflow
from tui_billing import statuses as S
from tui_billing.clock import Clock, zone
from tui_billing.store import risk_store
from tui_billing.store.models import (
    AuditEvent,
    ChargeLine,
    Invoice,
    InvoicePdf,
    InvoiceSnapshot,
    TaxLine,
    Xdr,
    database,
    tuple_rows,
)
from tui_billing.workflow import Ctx

CLOSED_AT = dt.datetime(2026, 12, 2, 6, 0)  # the demo's open month (November) has ended
REISSUED_AT = dt.datetime(2026, 11, 21, 2, 0)  # inside the off-peak window after the demo's now


def _ctx(moment: dt.datetime, actor: str) -> Ctx:
    return Ctx(clock=Clock(tz=zone("UTC"), fixed=moment), actor=actor)


def _written(ids: list[int], since: int) -> dict:
    """Per invoice: its row, lines, taxes, snapshots, PDFs and the audit events after `since`."""

    def rows(model, inv_id, where=True):
        query = model.select().where((model.invoice == inv_id) & where).order_by(model.id)
        return [{k: v for k, v in r.items() if k != "id"} for r in query.dicts()]

    out = {}
    for inv in Invoice.select().where(Invoice.id.in_(ids)).dicts():
        inv_id = inv["id"]
        inv.pop("claimed_by"), inv.pop("claimed_until")  # the job's lease
        out[inv_id] = (
            inv,
            rows(ChargeLine, inv_id),
            rows(TaxLine, inv_id),
            rows(InvoiceSnapshot, inv_id),
            InvoicePdf.select().where(InvoicePdf.invoice == inv_id).count(),
            rows(AuditEvent, inv_id, AuditEvent.id > since),
        )
    return out


def _one_at_a_time(transition, ctx: Ctx, ids: list[int]) -> dict:
    """What `transition(ctx, id)` writes for each invoice in turn; undone after."""
    since = AuditEvent.select(AuditEvent.id).order_by(AuditEvent.id.desc()).scalar() or 0
    with database.atomic() as txn:
        for inv_id in ids:
            transition(ctx, inv_id)
        written = _written(ids, since)
        txn.rollback()
    return written


@pytest.fixture(params=["here", "worker"])
def where(request, store_url, monkeypatch):
    """The risk assessed in this process, or in the worker (its own connection)."""
    if request.param == "here":
        return 0
    monkeypatch.setattr(risk_store, "ASSESSOR_MIN_CHUNKS", 1)
    started = risk_store._InWorker.__init__

    def up(self, pool):  # the worker up before the first chunk: every chunk goes to it
        started(self, pool)
        self.up.result()

    monkeypatch.setattr(risk_store._InWorker, "__init__", up)
    return 2


def test_the_bill_run_closes_open_invoices_as_close_postpay_does(demo_store, where):
    ctx = _ctx(CLOSED_AT, "alice")
    ids = [i for (i,) in tuple_rows(Invoice.select(Invoice.id).where(Invoice.status == S.OPEN).tuples())]
    assert len(ids) > 5
    expected = _one_at_a_time(workflow.close_postpay, ctx, ids)
    since = AuditEvent.select(AuditEvent.id).order_by(AuditEvent.id.desc()).scalar()
    result = billrun.bill_run(ctx, dt.date(2026, 11, 1), dt.date(2026, 11, 30), chunk=5, workers=where)
    assert sorted(result.closed) == sorted(ids) and not result.failed
    assert _written(ids, since) == expected
    assert {v[0]["status"] for v in expected.values()} == {S.UNDER_REVIEW, S.APPROVED}


def test_the_offpeak_job_reissues_as_complete_reissue_does(demo_store, where):
    alice = _ctx(dt.datetime(2026, 11, 20, 14, 0), "alice")
    under_review = [
        i for (i,) in tuple_rows(Invoice.select(Invoice.id).where(Invoice.status == S.UNDER_REVIEW).tuples())
    ]
    for inv_id in under_review[:8]:
        workflow.request_reissue(alice, inv_id, "off_peak")
    ids = [
        i
        for (i,) in tuple_rows(
            Invoice.select(Invoice.id)
            .where((Invoice.status == S.REJECTED) & (Invoice.reissue_after <= REISSUED_AT))
            .tuples()
        )
    ]
    assert len(ids) >= 8
    job = _ctx(REISSUED_AT, "job:reissue_offpeak")
    expected = _one_at_a_time(workflow.complete_reissue, job, ids)
    since = AuditEvent.select(AuditEvent.id).order_by(AuditEvent.id.desc()).scalar()
    done = jobs.reissue_offpeak(job, batch=3)
    assert (done.done, done.failed, done.skipped) == (len(ids), 0, 0)
    assert _written(ids, since) == expected
    assert {Invoice.get_by_id(i).status for i in ids} == {S.UNDER_REVIEW}


def _created(numbers_from: int) -> dict:
    """The invoices created since invoice id `numbers_from`, by number: row, lines, taxes, audit events."""

    def rows(model, inv_id):
        query = model.select().where(model.invoice == inv_id).order_by(model.id)
        return [{k: v for k, v in r.items() if k not in ("id", "invoice")} for r in query.dicts()]

    return {
        inv.pop("number"): (
            {k: v for k, v in inv.items() if k != "id"},
            rows(ChargeLine, inv["id"]),
            rows(TaxLine, inv["id"]),
            rows(AuditEvent, inv["id"]),
        )
        for inv in Invoice.select().where(Invoice.id > numbers_from).dicts()
    }


def test_the_bill_run_creates_the_same_invoices_wherever_risk_is_assessed(demo_store, where):
    ctx = _ctx(dt.datetime(2027, 1, 3, 6, 0), "alice")
    december = (dt.date(2026, 12, 1), dt.date(2026, 12, 31))
    top = Invoice.select(Invoice.id).order_by(Invoice.id.desc()).scalar()
    with database.atomic() as txn:  # inside a transaction: assessed here, as the reference
        billrun.bill_run(ctx, *december, chunk=5, workers=0)
        expected = _created(top)
        txn.rollback()
    result = billrun.bill_run(ctx, *december, chunk=5, workers=where)
    assert len(result.created) == len(expected) > 10 and not result.failed
    assert _created(top) == expected


def test_two_invoices_of_one_account_are_reissued_as_one_after_the_other(demo_store, where):
    """The later one's risk history holds the earlier one as reissued
    (recalc.rounds): its new service is not new any more."""
    alice = _ctx(dt.datetime(2026, 11, 20, 14, 0), "alice")
    by_account: dict[int, list[int]] = {}
    for inv_id, acc_id in tuple_rows(
        Invoice.select(Invoice.id, Invoice.account)
        .where(Invoice.status == S.UNDER_REVIEW)
        .order_by(Invoice.id)
        .tuples()
    ):
        by_account.setdefault(acc_id, []).append(inv_id)
    pairs = [ids[:2] for ids in by_account.values() if len(ids) > 1]
    assert pairs
    ids = [i for pair in pairs for i in pair]
    for inv_id in ids:
        workflow.request_reissue(alice, inv_id, "off_peak")
    for pair in pairs:  # a service new to the account, found late in both periods
        for inv in map(Invoice.get_by_id, pair):
            Xdr.create(
                xdr_id=f"late-{inv.id}",
                account=inv.account_id,
                service="Satellite data",
                time=dt.datetime.combine(inv.period_from, dt.time(12)),
                quantity=Decimal("50"),
                amount=Decimal("400"),
            )
    job = _ctx(REISSUED_AT, "job:reissue_offpeak")
    ids = [
        i
        for (i,) in tuple_rows(
            Invoice.select(Invoice.id)
            .where((Invoice.status == S.REJECTED) & (Invoice.reissue_after <= REISSUED_AT))
            .order_by(Invoice.reissue_after, Invoice.id)
            .tuples()
        )
    ]
    expected = _one_at_a_time(workflow.complete_reissue, job, ids)
    since = AuditEvent.select(AuditEvent.id).order_by(AuditEvent.id.desc()).scalar()
    assert jobs.reissue_offpeak(job).done == len(ids)
    assert _written(ids, since) == expected


def test_histories_read_ahead_are_what_assessing_would_read(demo_store, monkeypatch):
    """The bill run's worker reads the next chunk's histories while the main
    process works the one before (risk_store.assessor's `ahead`): assessing
    with them gives the columns reading them then gives, and reads nothing."""
    issued = list(Invoice.select().where(Invoice.status == S.UNDER_REVIEW).order_by(Invoice.id).limit(12))
    period = issued[0].period_from
    issued = [inv for inv in issued if inv.period_from == period]
    assert len(issued) > 3
    items = [(inv.account_id, risk_store.load_facts(inv)) for inv in issued]
    cfg = risk_store.settings()
    expected = risk_store.assess_new(items, cfg)
    assert any(row["risk_flags"] for row in expected) or any(row["expected_total"] for row in expected)
    monkeypatch.setattr(risk_store, "_ahead", [])
    risk_store._read_ahead([acc for acc, _ in items], period, cfg.history)
    with monkeypatch.context() as m:
        m.setattr(risk_store, "load_histories", lambda *a: pytest.fail(f"read again: {a}"))
        assert risk_store.assess_new(items, cfg, known=risk_store._known) == expected
    # One account not read ahead: its history alone is read.
    risk_store._ahead[-1][1].pop(items[0][0])
    assert risk_store.assess_new(items, cfg, known=risk_store._known) == expected
    # Only the newest reads are kept (memory stays flat over a long run).
    for month in range(1, risk_store.AHEAD_KEPT + 1):
        risk_store._read_ahead([items[0][0]], dt.date(2020, month, 1), cfg.history)
    assert risk_store._known(period, cfg.history) == {}
    assert len(risk_store._ahead) == risk_store.AHEAD_KEPT


def test_the_next_chunks_histories_are_read_after_every_part_of_this_one(demo_store, monkeypatch):
    """A chunk is given to the risk worker in parts (it starts on the first
    while the next is calculated); the next chunk's histories, which the
    worker reads in turn, are asked for only once the chunk's result is:
    read between two parts, they held the second up.  The parts' columns,
    joined, are the chunk's."""
    from concurrent.futures import Future

    calls: list[str] = []

    class InTurn:  # a worker that runs each task as it is given, here
        def submit(self, fn, *args):
            calls.append(fn.__name__)
            future: Future = Future()
            future.set_result(fn(*args))
            return future

    issued = list(Invoice.select().where(Invoice.status == S.UNDER_REVIEW).order_by(Invoice.id).limit(12))
    period = issued[0].period_from
    items = [(inv.account_id, risk_store.load_facts(inv)) for inv in issued if inv.period_from == period]
    assert len(items) > 3
    monkeypatch.setattr(risk_store, "_ahead", [])
    assessor = risk_store._InWorker(InTurn())
    assessor.ahead([acc for acc, _ in items], period)
    parts = [assessor(items[:2]), assessor(items[2:])]
    assert calls == ["getpid", "_assess_in_worker", "_assess_in_worker"]
    joined = risk_store.Joined(parts).result()
    assert calls[3:] == ["_read_ahead"]
    assert joined == risk_store.assess_new(items, risk_store.settings())


def test_the_offpeak_job_has_a_batchs_histories_read_while_it_is_calculated(demo_store, monkeypatch):
    """The risk worker reads a claimed batch's histories at once, while this
    process calculates and writes the batch; assessing it then reads none."""
    from concurrent.futures import Future

    calls: list[tuple[str, int]] = []  # (task, histories it read)
    reads: list[list[int]] = []

    class InTurn:  # a worker that runs each task as it is given, here
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def submit(self, fn, *args):
            before = len(reads)
            future: Future = Future()
            future.set_result(fn(*args))
            calls.append((fn.__name__, len(reads) - before))
            return future

    load_histories = risk_store.load_histories
    monkeypatch.setattr(
        risk_store, "load_histories", lambda ids, *a: reads.append(sorted(ids)) or load_histories(ids, *a)
    )
    monkeypatch.setattr(risk_store, "_worker_pool", lambda workers, store: InTurn())
    monkeypatch.setattr(risk_store, "ASSESSOR_MIN_CHUNKS", 1)
    monkeypatch.setattr(risk_store, "_ahead", [])
    alice = _ctx(dt.datetime(2026, 11, 20, 14, 0), "alice")
    for (inv_id,) in tuple_rows(
        Invoice.select(Invoice.id).where(Invoice.status == S.UNDER_REVIEW).order_by(Invoice.id).limit(6).tuples()
    ):
        workflow.request_reissue(alice, inv_id, "off_peak")
    done = jobs.reissue_offpeak(_ctx(REISSUED_AT, "job:reissue_offpeak"), batch=3)
    assert done.done >= 6 and not done.failed
    tasks = [name for name, _ in calls]
    assert tasks.count("_assess_in_worker") == -(-done.done // 3)
    for k, (name, read) in enumerate(calls):
        if name == "_assess_in_worker":
            assert read == 0, calls  # the batch's histories were there
            assert tasks[k - 1] == "_read_ahead", calls  # read for this batch, before it
