"""Two admins and the job loop racing on the same invoices: exactly one wins."""

from __future__ import annotations

import multiprocessing as mp
import threading
from decimal import Decimal

from tui_billing import statuses as S
from tui_billing import workflow as W
from tui_billing.store.models import AuditEvent, Correction, Invoice

from . import factories as F


def _approver(url: str, ids: list[int], actor: str, auto: bool, queue) -> None:
    import datetime as dt

    from tui_billing.clock import Clock, zone
    from tui_billing.store import db

    db.connect(url)
    ctx = W.Ctx(clock=Clock(tz=zone("UTC"), fixed=dt.datetime(2026, 12, 31)), actor=actor)
    done = []
    if auto:  # the job itself: small set-based batches interleave with the admins
        while batch := W.auto_approve_due(ctx, limit=7).done:
            done += batch
    else:
        for start in range(0, len(ids), 7):  # small chunks interleave the processes
            done += W.approve_many(ctx, ids[start : start + 7]).done
    queue.put((actor, done))


def test_two_processes_and_auto_approve_race_exactly_one_winner(store_url):
    invs = [F.invoice() for _ in range(120)]
    ids = [i.id for i in invs]
    mp_ctx = mp.get_context("spawn")
    queue = mp_ctx.Queue()
    procs = [
        mp_ctx.Process(target=_approver, args=(store_url, ids, "alice", False, queue)),
        mp_ctx.Process(target=_approver, args=(store_url, list(reversed(ids)), "bob", False, queue)),
        mp_ctx.Process(target=_approver, args=(store_url, ids[::2] + ids[1::2], "job", True, queue)),
    ]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    winners = results["alice"] + results["bob"] + results["job"]
    assert sorted(winners) == sorted(i.number for i in invs)  # each approved once, by one of them
    assert Invoice.select().where(Invoice.status == S.APPROVED).count() == 120
    events = AuditEvent.select().where(AuditEvent.action.in_(["approve", "auto_approve"])).count()
    assert events == 120


def test_threads_adjusting_one_invoice_lose_no_correction(store_url, ctx):
    inv = F.invoice(total=Decimal("1000.00"))
    errors = []

    def worker(n: int) -> None:
        try:
            for k in range(10):
                kind = "credit" if (n + k) % 2 else "charge"
                W.adjust(W.Ctx(clock=ctx.clock, actor=f"admin{n}"), inv.id, kind, Decimal("1.25"), f"t{n}-{k}")
        except Exception as exc:  # noqa: BLE001 - collected and asserted
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = Invoice.get_by_id(inv.id)
    rows = list(Correction.select().where(Correction.invoice == inv.id))
    assert len(rows) == 40
    assert sorted(c.position for c in rows) == list(range(1, 41))
    assert got.total == Decimal("1000.00") + sum(c.amount for c in rows)
    assert got.revision == 41


def test_approve_and_adjust_race_one_wins(store_url, ctx):
    """An adjust and an approve of the same invoice: never both applied to a stale state."""
    invs = [F.invoice() for _ in range(30)]
    outcomes = {}

    def approve():
        outcomes["approve"] = W.approve_many(ctx, [i.id for i in invs])

    def adjust():
        res = W.BulkResult()
        for i in invs:
            try:
                W.adjust(ctx, i.id, "charge", Decimal("5"), "late fee")
                res.done.append(i.number)
            except W.Refused as exc:
                res.failed.append((i.number, exc.reason))
        outcomes["adjust"] = res

    threads = [threading.Thread(target=approve), threading.Thread(target=adjust)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in invs:
        got = Invoice.get_by_id(i.id)
        assert got.status == S.APPROVED  # approve refuses nothing that is under review
        adjusted = i.number in outcomes["adjust"].done
        assert got.total == (Decimal("105") if adjusted else Decimal("100"))
        # An adjusted invoice was approved at the adjusted revision.
        assert got.reviewed_revision == got.revision
