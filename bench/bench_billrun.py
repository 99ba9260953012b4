"""The heavy jobs (issue 18): the bill run and the off-peak reissue.

    python bench/bench_billrun.py [--accounts 100000] [--reissue 10000] [--xdrs 100]
                                  [--dir /tmp/bench-billrun] [--cases close,create,reissue] [--no-raw]

Stores are demo data (tui_billing.demo: 13 months per account, the newest
one open for postpay accounts, xDRs stored behind the open and reviewed
invoices), built once per size and kept under --dir:

- close:   `bill-run` of the demo's open month on the demo store as built:
           every postpay account's OPEN invoice is recalculated, closed and
           issued; prepay accounts already have theirs (skipped).  This is
           the issue's 6 min 37 s / 21 GB case.
- create:  the same store with that month's invoices deleted (xDRs kept):
           the bill run creates one invoice per account.
- reissue: a demo store of --reissue accounts whose previous month's
           invoices are all rejected for an off-peak reissue, each with
           --xdrs xDRs; the job the loop runs in the window
           (jobs.reissue_offpeak) reissues them.

Each job runs in a fresh process on a fresh copy of its store and reports
seconds, invoices/s, bytes written (/proc/self/io: write_bytes, what reached
the block layer, as GNU time's "File system outputs"; wchar, what was handed
to write()), and the process's peak RSS.  "raw" is plain sqlite3 doing the
same reads (the period's usage per account and service, repeats,
subscriptions, discounts, tax rules, the accounts' recent invoices and their
lines) and writes (invoice rows, charge and tax lines, audit rows; snapshots
for the reissue) in transactions of the same size, with the arithmetic done
on integers: the floor any implementation can reach; the ratio is what
tui-billing adds (Decimal money, the risk engine, the ORM).
Targets: bill run >= 1,000 invoices/s; reissue of 10,000 x 100 xDRs <= 2 min;
both within 2x of raw; peak RSS <= 200 MB whatever the size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TZ", "UTC")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BUILT_AT = dt.datetime(2026, 12, 20, 10, 0)  # the demo's "now": December 2026 is the open month
PERIOD = (dt.date(2026, 12, 1), dt.date(2026, 12, 31))
RUN_AT = dt.datetime(2027, 1, 2, 6, 0)  # the bill run, after the period ended
PREVIOUS = (dt.date(2026, 11, 1), dt.date(2026, 11, 30))  # reissued: the month under review
REISSUE_AT = dt.datetime(2026, 12, 21, 2, 0)  # inside the default off-peak window (01:00-05:00)
MONTHS = 13  # demo.build: months per account


# --------------------------------------------------------------------------
# Measuring a job (in the child process)


def io_now() -> dict[str, int]:
    with open("/proc/self/io") as f:
        return {k: int(v) for k, v in (line.split(":") for line in f)}


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def measured(fn) -> dict:
    """Run fn(); its seconds, count (what fn returns), bytes written and peak RSS."""
    before, cpu, children = io_now(), time.process_time(), _cpu(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    count = fn()
    seconds = time.perf_counter() - t
    after, cpu = io_now(), time.process_time() - cpu
    return {
        "seconds": seconds,
        "cpu": cpu,
        "worker_cpu": _cpu(resource.RUSAGE_CHILDREN) - children,  # the risk worker's, once it has ended
        "count": count,
        "write_mb": (after["write_bytes"] - before["write_bytes"]) / 1e6,
        "wchar_mb": (after["wchar"] - before["wchar"]) / 1e6,
        "rss_mb": peak_rss_mb(),
        "worker_rss_mb": peak_rss_mb(resource.RUSAGE_CHILDREN),  # the risk worker's, once it has ended
    }


# --------------------------------------------------------------------------
# Building the stores (once per size, cached)


def _open(path: Path):
    from tui_billing.store import db
    from tui_billing.store.settings import ensure_defaults

    db.connect(f"sqlite:///{path}")
    ensure_defaults()


def _close() -> None:
    from tui_billing.store import db

    db.close()  # checkpoints the WAL: the file is the whole store


def build_demo(path: Path, accounts: int) -> None:
    from tui_billing import demo
    from tui_billing.clock import Clock, zone
    from tui_billing.context import Ctx

    _open(path)
    from tui_billing.store.models import database

    # A store of millions of rows: with the default 32 MB page cache every
    # index insert re-reads its pages (hours for 100,000 accounts).
    for pragma in ("cache_size = -3000000", "temp_store = memory", "synchronous = off", "wal_autocheckpoint = 100000"):
        database.execute_sql(f"PRAGMA {pragma}")
    t = time.perf_counter()
    stats = demo.build(Ctx(clock=Clock(tz=zone("UTC"), fixed=BUILT_AT), actor="bench"), invoices=accounts * MONTHS)
    _close()
    print(
        f"  demo store of {stats['accounts']:,} accounts, {stats['invoices']:,} invoices built in "
        f"{time.perf_counter() - t:.0f} s",
        flush=True,
    )


_INVOICE_CHILDREN = (
    "charge_line",
    "tax_line",
    "correction",
    "payment",
    "invoice_pdf",
    "invoice_snapshot",
    "outbox_message",
)


def without_period(source: Path, path: Path) -> None:
    """A copy of `source` without the invoices of PERIOD (their xDRs kept)."""
    shutil.copy(source, path)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("PRAGMA cache_size=-2000000")  # the whole store: deletes and updates across every index
    con.execute("BEGIN")
    con.execute("CREATE TEMP TABLE gone AS SELECT id FROM invoice WHERE period_from = ?", (PERIOD[0].isoformat(),))
    for table in _INVOICE_CHILDREN:
        con.execute(f"DELETE FROM {table} WHERE invoice_id IN (SELECT id FROM gone)")
    con.execute("DELETE FROM audit_event WHERE invoice_id IN (SELECT id FROM gone)")
    con.execute("DELETE FROM invoice WHERE id IN (SELECT id FROM gone)")
    con.execute("COMMIT")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def with_rejected(source: Path, path: Path, xdrs: int) -> None:
    """A copy of `source` whose PREVIOUS-month invoices are all rejected for
    an off-peak reissue, each with `xdrs` xDRs over its usage lines' services
    (quantity and amount split evenly: the reissue recalculates about the
    same lines)."""
    from tui_billing import statuses as S

    shutil.copy(source, path)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("PRAGMA cache_size=-2000000")  # the whole store: deletes and updates across every index
    con.execute("BEGIN")
    start, end = PREVIOUS[0].isoformat(), (PREVIOUS[1] + dt.timedelta(days=1)).isoformat()
    con.execute("DELETE FROM xdr WHERE time >= ? AND time < ?", (start, end))
    rows = con.execute(
        "SELECT i.id, i.account_id, l.service, l.quantity, l.amount FROM invoice i "
        "JOIN charge_line l ON l.invoice_id = i.id AND l.subscription_id IS NULL "
        "WHERE i.period_from = ? ORDER BY i.id, l.position",
        (start,),
    ).fetchall()
    lines: dict[int, list[tuple]] = {}
    for inv_id, acc_id, service, qty, amount in rows:
        lines.setdefault(inv_id, []).append((acc_id, service, qty, amount))
    batch = []
    seconds = 30 * 86400
    for inv_id, usage in lines.items():
        for k in range(xdrs):
            acc_id, service, qty, amount = usage[k % len(usage)]
            share = (xdrs - k % len(usage) + len(usage) - 1) // len(usage)  # records of this line
            when = dt.datetime(2026, 11, 1) + dt.timedelta(seconds=k * seconds // xdrs + 3600)
            batch.append((f"rx-{inv_id}-{k}", acc_id, service, when.isoformat(" "), qty // share, amount // share))
        if len(batch) >= 100_000:
            con.executemany(
                "INSERT INTO xdr (xdr_id, account_id, service, time, quantity, amount) VALUES (?,?,?,?,?,?)", batch
            )
            batch = []
    con.executemany("INSERT INTO xdr (xdr_id, account_id, service, time, quantity, amount) VALUES (?,?,?,?,?,?)", batch)
    con.execute(
        "UPDATE invoice SET status = ?, reissue_mode = 'off_peak', reissue_requested_at = ?, reissue_after = ?, "
        "review_deadline = COALESCE(review_deadline, ?) WHERE period_from = ?",
        (
            S.REJECTED,
            (REISSUE_AT - dt.timedelta(hours=10)).isoformat(" "),
            REISSUE_AT.replace(hour=1).isoformat(" "),
            (REISSUE_AT + dt.timedelta(days=3)).isoformat(" "),
            start,
        ),
    )
    con.execute("COMMIT")
    con.execute("ANALYZE")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def templates(directory: Path, accounts: int, reissue: int, xdrs: int, cases: list[str]) -> dict[str, Path]:
    """The template store of each case, built when missing."""
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}

    def demo_store(n: int) -> Path:
        path = directory / f"demo-{n}.db"
        if not path.exists():
            print(f"building the demo store of {n:,} accounts (once, kept in {directory})", flush=True)
            tmp = path.with_suffix(".building")
            for p in directory.glob(tmp.name + "*"):
                p.unlink()
            _child("build", tmp, accounts=n)
            tmp.rename(path)
        return path

    if "close" in cases:
        out["close"] = demo_store(accounts)
    if "create" in cases:
        path = directory / f"create-{accounts}.db"
        if not path.exists():
            without_period(demo_store(accounts), path)
        out["create"] = path
    if "reissue" in cases:
        path = directory / f"reissue-{reissue}x{xdrs}.db"
        if not path.exists():
            with_rejected(demo_store(reissue), path, xdrs)
        out["reissue"] = path
    return out


# --------------------------------------------------------------------------
# The jobs, as tui-billing runs them


def run_bill_run(path: Path) -> dict:
    from tui_billing import billrun
    from tui_billing.clock import Clock, zone
    from tui_billing.context import Ctx

    _open(path)
    ctx = Ctx(clock=Clock(tz=zone("UTC"), fixed=RUN_AT), actor="bench")

    def job():
        result = billrun.bill_run(ctx, *PERIOD)
        assert not result.failed, result.failed[:3]
        return len(result.created) + len(result.closed)

    out = measured(job)
    _close()
    return out


def run_reissue(path: Path) -> dict:
    from tui_billing import jobs
    from tui_billing.clock import Clock, zone
    from tui_billing.context import Ctx

    _open(path)
    ctx = Ctx(clock=Clock(tz=zone("UTC"), fixed=REISSUE_AT), actor="job:reissue_offpeak")

    def job():
        result = jobs.reissue_offpeak(ctx)
        assert not result.failed, result
        return result.done

    out = measured(job)
    _close()
    return out


# --------------------------------------------------------------------------
# The same reads and writes on plain sqlite3 (integers, no risk engine)

from tui_billing.billing import BILLABLE_SUBSCRIPTION_STATUSES  # noqa: E402

RAW_CHUNK = 200  # accounts (bill run) or invoices (reissue) per transaction, as the jobs
BILLABLE = tuple(sorted(BILLABLE_SUBSCRIPTION_STATUSES))  # the domain's list: the same subscriptions are charged
MINOR = {"JPY": 0, "BHD": 3, "KWD": 3}


def _raw_open(path: Path) -> sqlite3.Connection:
    from tui_billing.store.bulk import SQLITE_HEAVY_WRITES

    con = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=wal", "synchronous=normal", "foreign_keys=1", "cache_size=-32000"):
        con.execute(f"PRAGMA {pragma}")
    for pragma, value in SQLITE_HEAVY_WRITES.items():  # as the jobs set them
        con.execute(f"PRAGMA {pragma}={value}")
    return con


def _round(units: int, currency: str) -> int:
    """Scaled money (1/10,000) rounded half-up to the currency's minor unit."""
    q = 10 ** (4 - MINOR.get(currency, 2))
    return (abs(units) + q // 2) // q * q * (1 if units >= 0 else -1)


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _raw_period_data(con, ids: list[int], p_from: dt.date, p_to: dt.date) -> dict:
    """The period's usage (and repeats), subscriptions, discounts and tax
    rules of these accounts: the reads of billing.load_period_data_many."""
    start, end = p_from.isoformat(), (p_to + dt.timedelta(days=1)).isoformat()
    m = _marks(len(ids))
    where = f"account_id IN ({m}) AND time >= ? AND time < ?"
    repeats = {}
    for acc, service, n, amount in con.execute(
        f"SELECT account_id, service, COUNT(id), amount FROM xdr WHERE {where} "
        "GROUP BY account_id, service, time, quantity, amount HAVING COUNT(id) > 1",
        (*ids, start, end),
    ):
        c, a = repeats.get((acc, service), (0, 0))
        repeats[(acc, service)] = (c + n - 1, a + (n - 1) * amount)
    usage: dict[int, list] = {i: [] for i in ids}
    for acc, service, qty, amount, n, days in con.execute(
        f"SELECT account_id, service, SUM(quantity), SUM(amount), COUNT(id), COUNT(DISTINCT date(time)) FROM xdr "
        f"WHERE {where} GROUP BY account_id, service ORDER BY account_id, service",
        (*ids, start, end),
    ):
        usage[acc].append((service, qty, amount, n, days, *repeats.get((acc, service), (0, 0))))
    subs: dict[int, list] = {i: [] for i in ids}
    for sub_id, acc, name, service, fee in con.execute(
        f"SELECT id, account_id, name, service, fee FROM subscription WHERE account_id IN ({m}) "
        f"AND status IN ({_marks(len(BILLABLE))}) AND (active_from IS NULL OR active_from <= ?) "
        "AND (active_to IS NULL OR active_to >= ?) ORDER BY id",
        (*ids, *BILLABLE, p_to.isoformat(), p_from.isoformat()),
    ):
        subs[acc].append((sub_id, name, service, fee))
    discounts: dict[int, list] = {i: [] for i in ids}
    for acc, service, percent in con.execute(
        f"SELECT account_id, service, percent FROM discount WHERE account_id IN ({m}) ORDER BY id", ids
    ):
        discounts[acc].append((service, percent))
    rules = con.execute(
        f"SELECT account_id, customer_class_id, name, percent FROM tax_rule WHERE account_id IN ({m}) "
        "OR account_id IS NULL ORDER BY id",
        ids,
    ).fetchall()
    return {"usage": usage, "subs": subs, "discounts": discounts, "rules": rules}


def _raw_history(con, ids: list[int], before: dt.date) -> None:
    """What the risk assessment reads: each account's last 6 issued invoices,
    their charge lines and corrections, the charged subscriptions."""
    rows = con.execute(
        "SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY account_id ORDER BY period_from DESC, id DESC) rn "
        f"FROM invoice WHERE account_id IN ({_marks(len(ids))}) AND kind = 'regular' AND status <> 'open' "
        "AND period_from < ?) WHERE rn <= 6",
        (*ids, before.isoformat()),
    ).fetchall()
    past = [r[0] for r in rows]
    for start in range(0, len(past), 500):
        chunk = past[start : start + 500]
        con.execute(
            "SELECT invoice_id, service, description, amount, discount, subscription_id, quantity, records, days, "
            f"duplicates, duplicate_amount FROM charge_line WHERE invoice_id IN ({_marks(len(chunk))}) "
            "ORDER BY invoice_id, position",
            chunk,
        ).fetchall()
        con.execute(
            f"SELECT invoice_id, amount FROM correction WHERE invoice_id IN ({_marks(len(chunk))})", chunk
        ).fetchall()


def _raw_calculate(acc: int, cls: int, currency: str, data: dict, corrections: int = 0) -> tuple[list, list, dict]:
    """Charge lines, tax lines and totals in integers (the same rounding)."""
    charges = []
    for sub_id, name, service, fee in sorted(data["subs"][acc], key=lambda s: (s[1], s[0])):
        charges.append((f"{name} — monthly fee", service, sub_id, 1000, _round(fee, currency), 0, 0, 0, 0))
    for service, qty, amount, n, days, dups, dup_amount in data["usage"][acc]:
        charges.append((f"{service} usage", service, None, qty, _round(amount, currency), n, days, dups, dup_amount))
    rules = {s: p for s, p in data["discounts"][acc]}
    lines, subtotal, discounts = [], 0, 0
    for pos, (desc, service, sub_id, qty, amount, n, days, dups, dup_amount) in enumerate(charges, 1):
        percent = rules.get(service, rules.get(None, 0))
        discount = _round(amount * percent // 100_000, currency) if amount > 0 else 0
        lines.append((pos, desc, service, sub_id, qty, discount, amount, n, days, dups, dup_amount))
        subtotal += amount
        discounts += discount
    base = subtotal - discounts + corrections
    taxes = [
        (pos, name, f"{percent / 1000:g} % of {base / 10000:.2f}", _round(base * percent // 100_000, currency))
        for pos, (r_acc, r_cls, name, percent) in enumerate(
            (r for r in data["rules"] if r[0] == acc or (r[0] is None and r[1] in (cls, None))), 1
        )
    ]
    tax = sum(t[3] for t in taxes)
    total = base + tax
    return lines, taxes, {"subtotal": subtotal, "discount_total": discounts, "tax_total": tax, "total": total}


def _raw_write_lines(con, lines: dict[int, list], taxes: dict[int, list]) -> None:
    ids = list(lines)
    con.execute(f"DELETE FROM charge_line WHERE invoice_id IN ({_marks(len(ids))})", ids)
    con.execute(f"DELETE FROM tax_line WHERE invoice_id IN ({_marks(len(ids))})", ids)
    con.executemany(
        "INSERT INTO charge_line (invoice_id, position, description, service, subscription_id, quantity, discount, "
        "amount, records, days, duplicates, duplicate_amount) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [(i, *line) for i, ls in lines.items() for line in ls],
    )
    con.executemany(
        "INSERT INTO tax_line (invoice_id, position, name, description, amount) VALUES (?,?,?,?,?)",
        [(i, *t) for i, ts in taxes.items() for t in ts],
    )


def _raw_audits(con, rows: list[tuple]) -> None:
    con.executemany(
        "INSERT INTO audit_event (at, actor, role, action, invoice_id, number, before_status, before_total, "
        "after_status, after_total, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )


def raw_bill_run(path: Path) -> dict:
    """The bill run's reads and writes, a chunk of accounts per transaction:
    new invoices for accounts without one, open ones closed."""
    con = _raw_open(path)
    p_from, p_to = PERIOD
    now, today = RUN_AT.isoformat(" "), RUN_AT.date()
    classes = {
        i: (mode, hold, net)
        for i, mode, hold, net in con.execute("SELECT id, send_mode, hold_days, net_days FROM customer_class")
    }

    def job() -> int:
        count, after = 0, 0
        while ids := [
            r[0] for r in con.execute("SELECT id FROM account WHERE id > ? ORDER BY id LIMIT ?", (after, RAW_CHUNK))
        ]:
            after = ids[-1]
            con.execute("BEGIN IMMEDIATE")
            con.execute("UPDATE sequence SET value = value + 0 WHERE name = 'invoice'")
            existing: dict[int, list] = {}
            for acc, inv_id, status, corr, number in con.execute(
                f"SELECT account_id, id, status, correction_total, number FROM invoice "
                f"WHERE account_id IN ({_marks(len(ids))}) AND kind = 'regular' AND period_from <= ? AND period_to >= ?",
                (*ids, p_to.isoformat(), p_from.isoformat()),
            ):
                existing.setdefault(acc, []).append((inv_id, status, corr, number))
            accounts = con.execute(
                f"SELECT id, customer_class_id, currency, payment_model FROM account WHERE id IN ({_marks(len(ids))})",
                ids,
            ).fetchall()
            data = _raw_period_data(con, ids, p_from, p_to)
            _raw_history(con, ids, p_from)
            new, closing = [], []
            for acc, cls, currency, model in accounts:
                if acc not in existing:
                    calc = _raw_calculate(acc, cls, currency, data)
                    if calc[0]:  # nothing to bill: skipped
                        new.append((acc, cls, currency, model, calc))
                elif all(e[1] == "open" for e in existing[acc]):
                    for inv_id, _, corr, number in existing[acc]:
                        closing.append((inv_id, number, cls, _raw_calculate(acc, cls, currency, data, corr)))
            count += _raw_create(con, new, classes, now, today) + _raw_close(con, closing, classes, now, today)
            con.execute("COMMIT")
        return count

    out = measured(job)
    con.close()
    return out


def _issue(classes: dict, cls: int, today: dt.date) -> tuple:
    mode, hold, net = classes[cls]
    reviewed = mode == "after_review"
    deadline = (RUN_AT + dt.timedelta(days=hold)).isoformat(" ") if reviewed else None
    return ("under_review" if reviewed else "approved"), deadline, (today + dt.timedelta(days=net)).isoformat()


def _raw_create(con, new: list, classes: dict, now: str, today: dt.date) -> int:
    if not new:
        return 0
    (last,) = con.execute(
        "UPDATE sequence SET value = value + ? WHERE name = 'invoice' RETURNING value", (len(new),)
    ).fetchone()
    rows, numbers = [], []
    for k, (acc, cls, currency, model, (_, _, totals)) in enumerate(new):
        number = f"INV-{today.year}-{last - len(new) + 1 + k:06d}"
        numbers.append(number)
        status, deadline, due = _issue(classes, cls, today)
        rows.append(
            (
                number,
                acc,
                cls,
                "regular",
                model,
                status,
                currency,
                PERIOD[0].isoformat(),
                PERIOD[1].isoformat(),
                now,
                today.isoformat(),
                due,
                deadline,
                totals["subtotal"],
                totals["discount_total"],
                totals["tax_total"],
                0,
                totals["total"],
                totals["total"],
                now if model == "postpay" else None,
                1,
                0,
                "",
                None,
                None,
            )
        )
    con.executemany(
        "INSERT INTO invoice (number, account_id, customer_class_id, kind, payment_model, status, currency, "
        "period_from, period_to, generated_at, issue_date, due_date, review_deadline, subtotal, discount_total, "
        "tax_total, correction_total, total, outstanding, closed_at, revision, risk_score, risk_flags, "
        f"expected_total, risk_at_stake) VALUES ({_marks(25)})",
        rows,
    )
    ids = dict(con.execute(f"SELECT number, id FROM invoice WHERE number IN ({_marks(len(numbers))})", numbers))
    lines = {ids[n]: calc[0] for n, (*_, calc) in zip(numbers, new)}
    taxes = {ids[n]: calc[1] for n, (*_, calc) in zip(numbers, new)}
    _raw_write_lines(con, lines, taxes)
    _raw_audits(
        con,
        [
            (
                now,
                "bench",
                None,
                "generate",
                ids[r[0]],
                r[0],
                None,
                None,
                r[5],
                r[17],
                json.dumps({"period": "2026-12", "revision": 1, "charges": len(lines[ids[r[0]]])}),
            )
            for r in rows
        ],
    )
    return len(rows)


def _raw_close(con, closing: list, classes: dict, now: str, today: dt.date) -> int:
    if not closing:
        return 0
    ids = [c[0] for c in closing]
    before = {
        i: (s, t)
        for i, s, t in con.execute(f"SELECT id, status, total FROM invoice WHERE id IN ({_marks(len(ids))})", ids)
    }
    _raw_write_lines(con, {c[0]: c[3][0] for c in closing}, {c[0]: c[3][1] for c in closing})
    updates, audits = [], []
    for inv_id, number, cls, (_, _, totals) in closing:
        status, deadline, due = _issue(classes, cls, today)
        total = totals["total"]
        updates.append(
            (
                totals["subtotal"],
                totals["discount_total"],
                totals["tax_total"],
                total,
                total,
                now,
                today.isoformat(),
                due,
                status,
                deadline,
                now,
                0,
                "",
                None,
                None,
                inv_id,
            )
        )
        audits.append(
            (
                now,
                "bench",
                None,
                "close",
                inv_id,
                number,
                *before[inv_id],
                status,
                total,
                json.dumps({"review_deadline": deadline, "due_date": due}),
            )
        )
    con.executemany(
        "UPDATE invoice SET subtotal = ?, discount_total = ?, tax_total = ?, total = ?, outstanding = ?, "
        "generated_at = ?, issue_date = ?, due_date = ?, status = ?, review_deadline = ?, closed_at = ?, "
        "risk_score = ?, risk_flags = ?, expected_total = ?, risk_at_stake = ? WHERE id = ?",
        updates,
    )
    con.execute(f"DELETE FROM invoice_pdf WHERE invoice_id IN ({_marks(len(ids))})", ids)
    _raw_audits(con, audits)
    return len(closing)


def raw_reissue(path: Path) -> dict:
    """The off-peak reissue's reads and writes, a batch of invoices per
    transaction: claimed, snapshot kept, recalculated, back under review."""
    con = _raw_open(path)
    now = REISSUE_AT.isoformat(" ")
    holds = dict(con.execute("SELECT id, hold_days FROM customer_class"))

    def job() -> int:
        count = 0
        while True:
            con.execute("BEGIN IMMEDIATE")
            ids = [
                r[0]
                for r in con.execute(
                    "SELECT id FROM invoice WHERE status = 'rejected' AND reissue_after <= ? "
                    "AND (claimed_by IS NULL OR claimed_until < ?) ORDER BY reissue_after, id LIMIT ?",
                    (now, now, RAW_CHUNK),
                )
            ]
            if ids:
                con.execute(
                    f"UPDATE invoice SET claimed_by = 'raw', claimed_until = ? WHERE id IN ({_marks(len(ids))})",
                    (now, *ids),
                )
            con.execute("COMMIT")
            if not ids:
                return count
            m = _marks(len(ids))
            con.execute("BEGIN IMMEDIATE")
            invoices = con.execute(
                "SELECT id, number, account_id, customer_class_id, currency, period_from, period_to, revision, "
                f"status, total, subtotal, discount_total, tax_total, correction_total FROM invoice WHERE id IN ({m})",
                ids,
            ).fetchall()
            lines = {i: [] for i in ids}
            for row in con.execute(
                f"SELECT * FROM charge_line WHERE invoice_id IN ({m}) ORDER BY invoice_id, position", ids
            ):
                lines[row[1]].append(row)
            taxes = {i: [] for i in ids}
            for row in con.execute(
                f"SELECT * FROM tax_line WHERE invoice_id IN ({m}) ORDER BY invoice_id, position", ids
            ):
                taxes[row[1]].append(row)
            con.execute(f"SELECT * FROM correction WHERE invoice_id IN ({m})", ids).fetchall()
            acc_ids = sorted({r[2] for r in invoices})
            data = _raw_period_data(con, acc_ids, *PREVIOUS)
            _raw_history(con, acc_ids, PREVIOUS[0])
            snaps, new_lines, new_taxes, updates, audits = [], {}, {}, [], []
            for inv_id, number, acc, cls, currency, _, _, rev, status, total, sub, disc, tax, corr in invoices:
                snaps.append(
                    (
                        inv_id,
                        rev,
                        now,
                        "reissue",
                        sub,
                        disc,
                        tax,
                        corr,
                        total,
                        json.dumps(
                            {
                                "charges": [
                                    {
                                        "description": r[3],
                                        "amount": r[8],
                                        "service": r[4],
                                        "quantity": r[6],
                                        "discount": r[7],
                                    }
                                    for r in lines[inv_id]
                                ],
                                "taxes": [{"description": r[3], "amount": r[5]} for r in taxes[inv_id]],
                                "corrections": [],
                            }
                        ),
                    )
                )
                ls, ts, totals = _raw_calculate(acc, cls, currency, data, corr)
                new_lines[inv_id], new_taxes[inv_id] = ls, ts
                deadline = (REISSUE_AT + dt.timedelta(days=holds[cls])).isoformat(" ")
                updates.append(
                    (
                        "under_review",
                        rev + 1,
                        deadline,
                        totals["subtotal"],
                        totals["discount_total"],
                        totals["tax_total"],
                        corr,
                        totals["total"],
                        totals["total"],
                        0,
                        "",
                        None,
                        None,
                        inv_id,
                    )
                )
                audits.append(
                    (
                        now,
                        "job:reissue_offpeak",
                        None,
                        "reissue",
                        inv_id,
                        number,
                        status,
                        total,
                        "under_review",
                        totals["total"],
                        json.dumps({"revision": rev + 1}),
                    )
                )
            con.executemany(
                "INSERT OR IGNORE INTO invoice_snapshot (invoice_id, revision, taken_at, action, subtotal, "
                "discount_total, tax_total, correction_total, total, lines) VALUES (?,?,?,?,?,?,?,?,?,?)",
                snaps,
            )
            _raw_write_lines(con, new_lines, new_taxes)
            con.executemany(
                "UPDATE invoice SET status = ?, revision = ?, reissue_mode = NULL, reissue_after = NULL, "
                "review_deadline = ?, notified_at = NULL, subtotal = ?, discount_total = ?, tax_total = ?, "
                "correction_total = ?, total = ?, outstanding = ?, first_approved_by = NULL, "
                "first_approved_at = NULL, risk_score = ?, risk_flags = ?, expected_total = ?, risk_at_stake = ? "
                "WHERE id = ?",
                updates,
            )
            _raw_audits(con, audits)
            con.execute(f"DELETE FROM invoice_pdf WHERE invoice_id IN ({m})", ids)
            con.execute(f"UPDATE invoice SET claimed_by = NULL, claimed_until = NULL WHERE id IN ({m})", ids)
            con.execute("COMMIT")
            count += len(ids)

    out = measured(job)
    con.close()
    return out


# --------------------------------------------------------------------------
# Driving: one fresh process per job, on a fresh copy


def _child(what: str, path: Path, **kw) -> dict:
    args = [sys.executable, __file__, "--child", what, "--db", str(path)]
    for key, value in kw.items():
        args += [f"--{key}", str(value)]
    proc = subprocess.run(args, stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"{what} failed (exit {proc.returncode})")
    lines = proc.stdout.strip().splitlines() or ["{}"]
    for line in lines if not lines[-1].startswith("{") else lines[:-1]:
        print(line, flush=True)
    return json.loads(lines[-1]) if lines[-1].startswith("{") else {}


def fresh_copy(template: Path, directory: Path) -> Path:
    work = directory / "work.db"
    for p in directory.glob("work.db*"):
        p.unlink()
    shutil.copy(template, work)
    return work


def _line(who: str, r: dict) -> str:
    rate = r["count"] / r["seconds"] if r["seconds"] else 0
    return (
        f"{who}: {r['count']:>9,} invoices in {r['seconds']:7.1f} s (CPU {r['cpu']:6.1f} s"
        + (f" + worker {r['worker_cpu']:.1f} s" if r.get("worker_cpu") else "")
        + f") = {rate:7,.0f}/s; "
        f"written {r['write_mb']:7,.0f} MB (write() {r['wchar_mb']:7,.0f} MB); peak RSS {r['rss_mb']:4.0f} MB"
        + (f" (worker {r['worker_rss_mb']:.0f} MB)" if r.get("worker_rss_mb") else "")
    )


def report(name: str, ours: dict, raw: dict | None) -> None:
    print(f"{name:<8} {_line('ours', ours)}")
    if raw:
        print(f"{'':<8} {_line('raw ', raw)}")
        print(
            f"{'':<8} ours/raw: {ours['seconds'] / raw['seconds']:.2f}x time, {ours['cpu'] / raw['cpu']:.2f}x CPU, "
            f"{ours['write_mb'] / max(raw['write_mb'], 0.001):.2f}x bytes written",
            flush=True,
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--accounts", type=int, default=100_000, help="accounts of the bill run's store")
    ap.add_argument("--reissue", type=int, default=10_000, help="invoices rejected for the off-peak reissue")
    ap.add_argument("--xdrs", type=int, default=100, help="xDRs per reissued invoice")
    ap.add_argument("--dir", default="/tmp/bench-billrun", help="where the template stores are kept")
    ap.add_argument("--cases", default="close,create,reissue")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw sqlite3 baselines")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    directory = Path(args.dir)
    stores = templates(directory, args.accounts, args.reissue, args.xdrs, cases)
    print(f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} cores", flush=True)
    for case in cases:
        ours = _child(case, fresh_copy(stores[case], directory))
        raw = None if args.no_raw else _child(f"raw-{case}", fresh_copy(stores[case], directory))
        report(case, ours, raw)
    for p in directory.glob("work.db*"):
        p.unlink()
    return 0


def child_main(args) -> int:
    path = Path(args.db)
    if args.child == "build":
        build_demo(path, args.accounts)
        return 0
    jobs = {
        "close": run_bill_run,
        "create": run_bill_run,
        "reissue": run_reissue,
        "raw-close": raw_bill_run,
        "raw-create": raw_bill_run,
        "raw-reissue": raw_reissue,
    }
    print(json.dumps(jobs[args.child](path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
