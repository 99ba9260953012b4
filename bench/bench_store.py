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

from peewee import SqliteDatabase, fn  # noqa: E402

from tui_billing import statuses as S  # noqa: E402
from tui_billing import workflow as W  # noqa: E402
from tui_billing.config import Clock, zone  # noqa: E402
from tui_billing.risk import FLAGGED  # noqa: E402
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


def captured(fn) -> list[tuple[str, tuple]]:
    """The SQL statements (with parameters) that one call of fn runs."""
    db = database.obj
    seen: list[tuple[str, tuple]] = []
    original = db.execute_sql

    def recording(sql, params=None, *args, **kwargs):
        seen.append((sql, tuple(params or ())))
        return original(sql, params, *args, **kwargs)

    db.execute_sql = recording
    try:
        fn()
    finally:
        del db.execute_sql  # back to the class's method
    return seen


def versus(name: str, fn, repeat: int = 5) -> None:
    """Time fn, then the very statements it ran on the raw driver cursor
    (rows fetched as tuples): the ratio is what the store layer adds."""
    statements = captured(fn)
    ours = timed(fn, repeat)
    raw = timed(lambda: [raw_cursor_sql(sql, params) for sql, params in statements], repeat)
    line(name, ours, raw)


def bench_finder(clock):
    f = Q.make_filters(status="paid", account_type="business")
    first = Q.page(f, limit=100)
    key = Q.key_of(first[-1], "issue_date")
    versus("finder first page (status+account type)", lambda: Q.page(f, limit=100))
    versus("finder next page (keyset)", lambda: Q.page(f, after=key, limit=100))
    deep = key
    for _ in range(50):  # 50 pages further down: keyset pages cost the same anywhere
        deep = Q.key_of(Q.page(f, after=deep, limit=100)[-1], "issue_date")
    versus("finder page 52 (keyset)", lambda: Q.page(f, after=deep, limit=100))
    # For reference: the obvious SQL (account type on the joined row), which
    # SQLite plans badly; the store's SQL reads each row's account instead.
    naive = (
        "SELECT t1.* FROM invoice t1 JOIN account t2 ON t1.account_id = t2.id "
        "WHERE t1.status IN (?) AND t2.account_type = ? "
    )
    issue = key.value.isoformat() if database.obj.param == "?" else key.value
    naive_next = timed(
        lambda: raw_cursor_sql(
            naive + "AND (t1.issue_date < ? OR (t1.issue_date = ? AND t1.id < ?)) "
            "ORDER BY t1.issue_date DESC, t1.id DESC LIMIT 100",
            ("paid", "business", issue, issue, key.id),
        )
    )
    print(f"{'  the naive join SQL for that page, raw':<44} {ms(naive_next)}")
    bench_search()
    queue = Q.make_filters(status=[S.UNDER_REVIEW, S.REJECTED])
    versus("review queue first page (risk order)", lambda: Q.page(queue, sort="risk", limit=100))
    versus("counts per status (all invoices)", lambda: Q.counts_by_status(Q.Filters()), repeat=3)
    versus(
        "counts per status (under review)",
        lambda: Q.counts_by_status(Q.make_filters(status=S.UNDER_REVIEW, account_type="business")),
        repeat=3,
    )
    # Before issue 18 the counts line counted the invoices (as it still does under a text filter).
    recount = Q.base_query(Q.Filters(), Invoice.status, fn.COUNT(Invoice.id)).group_by(Invoice.status)
    versus("  the same counts recounted (before)", lambda: list(recount.tuples()), repeat=3)


def bench_search():
    """The finder's text search (issue 18: from an index, not a scan): a first
    page that matches some invoices, many, and none, by customer and by number."""
    middle = Invoice.select(Invoice.number).order_by(Invoice.id).offset(Invoice.select().count() // 2).limit(1).scalar()
    searches = [
        ("customer ōsaka (some)", {"customer": "ōsaka"}),
        ("customer billing (all)", {"customer": "billing"}),
        ("customer zzqx (none)", {"customer": "zzqx"}),
        (f"number {middle[-6:]} (one or two)", {"number": middle[-6:]}),
        (f"number {middle[4:8]} (a year)", {"number": middle[4:8]}),
        ("number zzqx (none)", {"number": "zzqx"}),
    ]
    for name, filters in searches:
        f = Q.make_filters(**filters)
        versus(f"search first page: {name}", lambda f=f: Q.page(f, limit=100))


def _stage(n: int, deadline: dt.datetime) -> list[int]:
    """Put n paid invoices back under review (the bench's own working set)."""
    # Unflagged ones: a flagged invoice would be held for a person, not approved.
    ids = [
        r[0]
        for r in raw_cursor_sql(
            "SELECT id FROM invoice WHERE status = ? AND COALESCE(risk_score, 0) < ? ORDER BY id LIMIT ?",
            ("paid", FLAGGED, n),
        )
    ]
    for start in range(0, len(ids), 5000):
        (
            Invoice.update(status=S.UNDER_REVIEW, review_deadline=deadline, approved_at=None)
            .where(Invoice.id.in_(ids[start : start + 5000]))
            .execute()
        )
    return ids


def _restore(ids: list[int]) -> None:
    for start in range(0, len(ids), 5000):
        Invoice.update(status=S.PAID).where(Invoice.id.in_(ids[start : start + 5000])).execute()
    AuditEvent.delete().where(
        AuditEvent.action.in_(["approve", "auto_approve"]) & (AuditEvent.actor == "bench")
    ).execute()


def bench_bulk_approve(clock, n: int):
    ctx = W.Ctx(clock=clock, actor="bench")
    with database.atomic():
        ids = _stage(n, clock.now() + dt.timedelta(days=3))
    t = time.perf_counter()
    # include_flagged: the ~1 % flagged among them are approved too (their
    # acceptance audited), so every staged invoice takes the same path.
    result = W.approve_many(ctx, ids, include_flagged=True)
    ours = time.perf_counter() - t
    assert len(result.done) == len(ids), result.failed[:3]
    _restore(ids)
    # Raw: the same SELECT, UPDATE and audit rows with executemany, in chunks of the same size.
    with database.atomic():
        _stage(n, clock.now() + dt.timedelta(days=3))
    now = clock.now()
    t = time.perf_counter()
    db = database.obj
    p = db.param
    conn = db.connection()
    cur = conn.cursor()
    lock = " FOR UPDATE" if db.for_update else ""
    many = cur.executemany
    if not isinstance(db, SqliteDatabase):
        # psycopg2's executemany sends one statement per row; execute_batch is
        # how the raw driver does it fast (500 statements a round trip).
        from psycopg2.extras import execute_batch

        def many(sql, rows):
            execute_batch(cur, sql, rows, page_size=W.CHUNK)

    for start in range(0, len(ids), W.CHUNK):
        chunk = ids[start : start + W.CHUNK]
        with database.atomic():
            # The same work: read (and lock) the rows, update them, one audit
            # row each with number, totals and revision.
            cur.execute(
                f"SELECT id, number, total, revision FROM invoice WHERE id IN "
                f"({', '.join([p] * len(chunk))}) AND status = {p} ORDER BY id{lock}",
                (*chunk, S.UNDER_REVIEW),
            )
            rows = cur.fetchall()
            many(
                f"UPDATE invoice SET status = {p}, approved_at = {p}, approved_by = {p}, "
                f"reviewed_revision = revision WHERE id = {p} AND status = {p}",
                [(S.APPROVED, now, "bench", r[0], S.UNDER_REVIEW) for r in rows],
            )
            many(
                f"INSERT INTO audit_event (at, actor, action, invoice_id, number, before_status, "
                f"before_total, after_status, after_total, detail) "
                f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})",
                [
                    (
                        now,
                        "bench",
                        "approve",
                        i,
                        num,
                        S.UNDER_REVIEW,
                        total,
                        S.APPROVED,
                        total,
                        f'{{"revision": {rev}}}',
                    )
                    for i, num, total, rev in rows
                ],
            )
    raw = time.perf_counter() - t
    _restore(ids)
    line(f"bulk approve {len(ids):,} with audit rows", ours, raw)
    print(f"{'':<44} ours {len(ids) / ours:,.0f} invoices/s")


def bench_auto_approve(clock, n: int):
    ctx = W.Ctx(clock=clock, actor="bench")
    with database.atomic():
        ids = _stage(n, clock.now() - dt.timedelta(minutes=1))
    # The job itself, as the loop runs it (batches of jobs.review.AUTO_APPROVE_BATCH; set-based with
    # SKIP LOCKED claims on PostgreSQL, guarded bulk approve on SQLite).
    from tui_billing import jobs

    t = time.perf_counter()
    result = jobs.auto_approve_due(ctx)
    ours = time.perf_counter() - t
    _restore(ids)
    assert result.done == len(ids), (result.done, len(ids))
    with database.atomic():
        _stage(n, clock.now() - dt.timedelta(minutes=1))
    p = database.obj.param
    t = time.perf_counter()
    with database.atomic():
        # The same rows and columns the job writes: the invoice's approval
        # fields, and an audit row with its number, totals and revision.
        database.obj.execute_sql(
            f"INSERT INTO audit_event (at, actor, action, invoice_id, number, before_status, before_total, "
            f"after_status, after_total, detail) "
            f"SELECT {p}, {p}, {p}, id, number, status, total, {p}, total, "
            f"'{{\"revision\": ' || revision || '}}' FROM invoice WHERE status = {p} AND review_deadline <= {p}",
            (clock.now(), "bench", "auto_approve", S.APPROVED, S.UNDER_REVIEW, clock.now()),
        )
        database.obj.execute_sql(
            f"UPDATE invoice SET status = {p}, approved_at = {p}, approved_by = {p}, "
            f"reviewed_revision = revision WHERE status = {p} AND review_deadline <= {p}",
            (S.APPROVED, clock.now(), "bench", S.UNDER_REVIEW, clock.now()),
        )
    raw = time.perf_counter() - t
    _restore(ids)
    line(f"auto-approve tick, {len(ids):,} due", ours, raw)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--invoices", type=int, default=1_000_000)
    ap.add_argument("--approve", type=int, default=100_000)
    ap.add_argument("--due", type=int, default=10_000)
    ap.add_argument(
        "--team",
        action="store_true",
        help="team mode (issue 16): the bench's actor is an admin of a store with users and "
        "second_approval_above is set (above every total): every approval checks the role "
        "and the four-eyes rules",
    )
    ap.add_argument("--finder-only", action="store_true", help="only the finder's pages, counts and searches")
    args = ap.parse_args()
    store_db.connect(args.db, migrate=False)
    t = time.perf_counter()
    applied = store_db.apply_migrations()
    if applied:  # an existing store brought up to date: what the upgrade costs
        print(f"migrations {', '.join(applied)} applied in {time.perf_counter() - t:.1f} s")
    fixed = dt.datetime(2026, 11, 20, 10, 0)
    # The bench's "now" precedes every real review deadline of the store, so
    # the auto-approve tick approves exactly the invoices it staged.
    first_deadline = (
        Invoice.select(Invoice.review_deadline)
        .where(Invoice.status == S.UNDER_REVIEW)
        .order_by(Invoice.review_deadline)
        .limit(1)
        .scalar()
    )
    if first_deadline is not None and first_deadline <= fixed:
        fixed = first_deadline - dt.timedelta(hours=1)
    clock = Clock(tz=zone("UTC"), fixed=fixed)
    from tui_billing import demo
    from tui_billing.store.settings import ensure_defaults

    ensure_defaults()
    if demo.is_empty():
        t = time.perf_counter()
        demo.build(W.Ctx(clock=clock, actor="bench"), invoices=args.invoices, seed=1)
        print(f"demo store of {args.invoices:,} invoices built in {time.perf_counter() - t:.1f} s")
        # Again, now that the store has invoices: the tick must find only the ones it stages.
        first_deadline = (
            Invoice.select(Invoice.review_deadline)
            .where(Invoice.status == S.UNDER_REVIEW)
            .order_by(Invoice.review_deadline)
            .limit(1)
            .scalar()
        )
        if first_deadline is not None and first_deadline <= fixed:
            clock = Clock(tz=zone("UTC"), fixed=first_deadline - dt.timedelta(hours=1))
    if args.team:
        from tui_billing import access
        from tui_billing.store.settings import save_setting

        if not access.team_mode():
            access.add_user(W.Ctx(clock=clock, actor="bench"), "bench", "admin")
        save_setting("second_approval_above", "999999999")
        print("team mode: the role and the four-eyes rules are checked on every approval")
    total = Invoice.select().count()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"backend {type(database.obj).__name__}; {total:,} invoices"
    )
    bench_finder(clock)
    if not args.finder_only:
        bench_bulk_approve(clock, args.approve)
        bench_auto_approve(clock, args.due)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
