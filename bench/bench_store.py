"""Store at scale: finder pages, counts, bulk approve, auto-approve tick.

Prints figures and the ratio against the raw driver doing the same SQL in
the same run.  Usage:

    python bench/bench_store.py --db sqlite:////tmp/million.db [--invoices 1000000]
    python bench/bench_store.py --db postgresql://postgres@127.0.0.1:5432/bench

The store is filled with `tui-billing demo` data when empty.  Bulk approve and
the auto-approve tick change the store: they work on copies of invoices made
for the purpose (status reset inside a transaction that is rolled back for
the raw runs), so the bench can be run again on the same store.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tui_billing import statuses as S  # noqa: E402
from tui_billing import workflow as W  # noqa: E402
from tui_billing.config import Clock, zone  # noqa: E402
from tui_billing.store import db as store_db  # noqa: E402
from tui_billing.store import queries as Q  # noqa: E402
from tui_billing.store.models import AuditEvent, Invoice, database  # noqa: E402


def timed(fn, repeat=5):
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def raw_cursor_sql(sql: str, params: tuple):
    db = database.obj
    if db.param != "?":
        sql = sql.replace("?", "%s")
    cur = db.cursor()
    cur.execute(sql, params)
    return cur.fetchall()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def line(name, ours, raw):
    print(f"{name:<44} ours {ms(ours)}   raw {ms(raw)}   ratio {ours / raw if raw else float('nan'):5.2f}x")


def bench_finder(clock):
    global COLS
    f = Q.make_filters(status="paid", account_type="business")
    first = Q.page(f, limit=100)
    ours_first = timed(lambda: Q.page(f, limit=100))
    key = Q.key_of(first[-1], "issue_date")
    ours_next = timed(lambda: Q.page(f, after=key, limit=100))
    cols = COLS = ("t1.id, t1.number, t1.account_id, t1.customer_class_id, t1.kind, t1.payment_model, t1.status, "
            "t1.currency, t1.period_from, t1.period_to, t1.issue_date, t1.due_date, t1.review_deadline, "
            "t1.total, t1.outstanding, t1.external_total, t1.external_currency, t1.approved_at, t1.revision, "
            "t1.reissue_mode, t1.reissue_after, t2.id, t2.name, t2.account_type, t3.id, t3.name")
    base = (f'SELECT {cols} FROM invoice t1 JOIN account t2 ON t1.account_id = t2.id '
            'JOIN customer_class t3 ON t1.customer_class_id = t3.id '
            "WHERE t1.status IN (?) AND t2.account_type = ? ")
    raw_first = timed(lambda: raw_cursor_sql(base + "ORDER BY t1.issue_date DESC, t1.id DESC LIMIT 100",
                                             ("paid", "business")))
    issue = key.value.isoformat()
    raw_next = timed(lambda: raw_cursor_sql(
        base + "AND (t1.issue_date < ? OR (t1.issue_date = ? AND t1.id < ?)) "
               "ORDER BY t1.issue_date DESC, t1.id DESC LIMIT 100", ("paid", "business", issue, issue, key.id)))
    line("finder first page (status+account type)", ours_first, raw_first)
    line("finder next page (keyset)", ours_next, raw_next)
    f2 = Q.make_filters(customer="ōsaka")
    Q.page(f2, limit=100)
    ours_text = timed(lambda: Q.page(f2, limit=100), repeat=3)
    like = "LOWER(t2.name) LIKE ?" if database.obj.param == "?" else "t2.name ILIKE ?"
    raw_text = timed(lambda: raw_cursor_sql(
        f'SELECT {COLS} FROM invoice t1 JOIN account t2 ON t1.account_id = t2.id '
        f'JOIN customer_class t3 ON t1.customer_class_id = t3.id WHERE {like} '
        'ORDER BY t1.issue_date DESC, t1.id DESC LIMIT 100', ("%ōsaka%",)), repeat=3)
    line("finder first page (customer text)", ours_text, raw_text)
    ours_counts = timed(lambda: Q.counts_by_status(Q.Filters()), repeat=3)
    raw_counts = timed(lambda: raw_cursor_sql(
        "SELECT t1.status, COUNT(t1.id) FROM invoice t1 JOIN account t2 ON t1.account_id = t2.id "
        "JOIN customer_class t3 ON t1.customer_class_id = t3.id GROUP BY t1.status", ()), repeat=3)
    line("counts per status (all invoices)", ours_counts, raw_counts)


def _stage(n: int, deadline: dt.datetime) -> list[int]:
    """Put n paid invoices back under review (the bench's own working set)."""
    ids = [r[0] for r in raw_cursor_sql("SELECT id FROM invoice WHERE status = ? ORDER BY id LIMIT ?",
                                         ("paid", n))]
    for start in range(0, len(ids), 5000):
        (Invoice.update(status=S.UNDER_REVIEW, review_deadline=deadline, approved_at=None)
         .where(Invoice.id.in_(ids[start:start + 5000])).execute())
    return ids


def _restore(ids: list[int]) -> None:
    for start in range(0, len(ids), 5000):
        Invoice.update(status=S.PAID).where(Invoice.id.in_(ids[start:start + 5000])).execute()
    AuditEvent.delete().where(AuditEvent.action.in_(["approve", "auto_approve"]) & (AuditEvent.actor == "bench")).execute()


def bench_bulk_approve(clock, n: int):
    ctx = W.Ctx(clock=clock, actor="bench")
    with database.atomic():
        ids = _stage(n, clock.now() + dt.timedelta(days=3))
    t = time.perf_counter()
    result = W.approve_many(ctx, ids)
    ours = time.perf_counter() - t
    assert len(result.done) == len(ids), result.failed[:3]
    _restore(ids)
    # Raw: the same UPDATE and audit rows with executemany, in chunks of the same size.
    with database.atomic():
        _stage(n, clock.now() + dt.timedelta(days=3))
    now = clock.now()
    t = time.perf_counter()
    db = database.obj
    p = db.param
    conn = db.connection()
    cur = conn.cursor()
    for start in range(0, len(ids), W.CHUNK):
        chunk = ids[start:start + W.CHUNK]
        with database.atomic():
            cur.executemany(f"UPDATE invoice SET status = {p}, approved_at = {p}, approved_by = {p} "
                            f"WHERE id = {p} AND status = {p}",
                            [(S.APPROVED, now, "bench", i, S.UNDER_REVIEW) for i in chunk])
            cur.executemany(f"INSERT INTO audit_event (at, actor, action, invoice_id, before_status, after_status, "
                            f"detail) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})",
                            [(now, "bench", "approve", i, S.UNDER_REVIEW, S.APPROVED, "") for i in chunk])
    raw = time.perf_counter() - t
    _restore(ids)
    line(f"bulk approve {len(ids):,} with audit rows", ours, raw)
    print(f"{'':<44} ours {len(ids) / ours:,.0f} invoices/s")


def bench_auto_approve(clock, n: int):
    ctx = W.Ctx(clock=clock, actor="bench")
    with database.atomic():
        ids = _stage(n, clock.now() - dt.timedelta(minutes=1))
    t = time.perf_counter()
    result = W.auto_approve_due(ctx, limit=n)
    ours = time.perf_counter() - t
    _restore(ids)
    assert len(result.done) >= len(ids) * 0.99, (len(result.done), len(ids))
    with database.atomic():
        _stage(n, clock.now() - dt.timedelta(minutes=1))
    p = database.obj.param
    t = time.perf_counter()
    with database.atomic():
        database.obj.execute_sql(
            f"INSERT INTO audit_event (at, actor, action, invoice_id, before_status, after_status, detail) "
            f"SELECT {p}, {p}, {p}, id, status, {p}, {p} FROM invoice WHERE status = {p} AND review_deadline <= {p}",
            (clock.now(), "bench", "auto_approve", S.APPROVED, "", S.UNDER_REVIEW, clock.now()))
        database.obj.execute_sql(
            f"UPDATE invoice SET status = {p}, approved_at = {p} WHERE status = {p} AND review_deadline <= {p}",
            (S.APPROVED, clock.now(), S.UNDER_REVIEW, clock.now()))
    raw = time.perf_counter() - t
    _restore(ids)
    line(f"auto-approve tick, {len(ids):,} due", ours, raw)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--invoices", type=int, default=1_000_000)
    ap.add_argument("--approve", type=int, default=100_000)
    ap.add_argument("--due", type=int, default=10_000)
    args = ap.parse_args()
    store_db.connect(args.db)
    clock = Clock(tz=zone("UTC"), fixed=dt.datetime(2026, 11, 20, 10, 0))
    from tui_billing.store import demo
    from tui_billing.store.settings import ensure_defaults

    ensure_defaults()
    if demo.is_empty():
        t = time.perf_counter()
        demo.build(W.Ctx(clock=clock, actor="bench"), invoices=args.invoices, seed=1)
        print(f"demo store of {args.invoices:,} invoices built in {time.perf_counter() - t:.1f} s")
    total = Invoice.select().count()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"backend {type(database.obj).__name__}; {total:,} invoices")
    bench_finder(clock)
    bench_bulk_approve(clock, args.approve)
    bench_auto_approve(clock, args.due)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
