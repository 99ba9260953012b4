"""The heavy jobs (issue 18): the bill run and the off-peak reissue.

    python bench/bench_billrun.py [--accounts 100000] [--reissue 10000] [--xdrs 100]
                                  [--dir /tmp/bench-billrun] [--cases close,create,reissue] [--no-raw]
                                  [--pg postgresql://postgres@127.0.0.1:5432/postgres [--pg-only]]

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
lines) and writes (invoice rows with their risk columns, charge and tax
lines, audit rows; snapshots for the reissue) in transactions of the same
size, with the arithmetic done on integers and risk scores spread as an
assessment's are, not assessed (_raw_risk): the floor any implementation
can reach; the ratio is what tui-billing adds (Decimal money, the risk
engine, the ORM).
Targets: bill run >= 1,000 invoices/s; reissue of 10,000 x 100 xDRs <= 2 min;
both within 2x of raw; peak RSS <= 200 MB whatever the size.

With --pg URL the same cases are measured on PostgreSQL too, after SQLite:
the templates are databases on that server (bench_billrun_demo_<accounts>,
bench_billrun_create_<accounts>, bench_billrun_reissue_<invoices>x<xdrs>;
built by the same code through tui_billing's store, kept between runs; drop
them to rebuild), each run on a fresh `CREATE DATABASE bench_billrun_work
TEMPLATE ...`, dropped after.  "raw" is then psycopg2 doing the same reads and
writes (execute_values / execute_batch, as tui_billing.store.bulk on
PostgreSQL; the rows the job locks locked with FOR UPDATE).  Bytes written
are the server's, so not reported; CPU is the job's process plus, on a local
server, its backend's ("server"; not the risk worker's backend).
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

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
    """Peak RSS, MB.  This process's from /proc/self/status VmHWM: Linux keeps
    ru_maxrss across fork and exec, so a job's process reported the bench's
    own peak (390 MB after it built a template) whatever the job used."""
    if who == resource.RUSAGE_SELF:
        try:
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
        except (OSError, StopIteration):
            pass
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _backend_cpu(pid: int | None) -> float | None:
    """CPU seconds of a local PostgreSQL backend (/proc/<pid>/stat: utime, stime)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_pid(connection, url: str) -> int | None:
    """The pid of a psycopg2 connection's server backend, when the server runs
    on this machine (else None: its CPU is not measured)."""
    if urlsplit(url).hostname not in (None, "", "localhost", "127.0.0.1", "::1"):
        return None
    pid = connection.get_backend_pid()
    try:
        with open(f"/proc/{pid}/comm") as f:
            return pid if f.read().startswith("postgres") else None
    except OSError:
        return None


def measured(fn, backend: int | None = None) -> dict:
    """Run fn(); its seconds, count (what fn returns), bytes written and peak RSS;
    on PostgreSQL the CPU of the server's `backend` (a local pid) too."""
    before, cpu, children = io_now(), time.process_time(), _cpu(resource.RUSAGE_CHILDREN)
    server = _backend_cpu(backend)
    t = time.perf_counter()
    count = fn()
    seconds = time.perf_counter() - t
    after, cpu = io_now(), time.process_time() - cpu
    server = None if server is None else _backend_cpu(backend) - server
    return {
        "seconds": seconds,
        "cpu": cpu,
        "worker_cpu": _cpu(resource.RUSAGE_CHILDREN) - children,  # the risk worker's, once it has ended
        "count": count,
        "write_mb": (after["write_bytes"] - before["write_bytes"]) / 1e6,
        "wchar_mb": (after["wchar"] - before["wchar"]) / 1e6,
        "rss_mb": peak_rss_mb(),
        "worker_rss_mb": peak_rss_mb(resource.RUSAGE_CHILDREN),  # the risk worker's, once it has ended
        "server_cpu": server,
    }


# --------------------------------------------------------------------------
# Building the stores (once per size, cached)

Store = Path | str  # a SQLite file, or a PostgreSQL URL


def is_pg(store: Store) -> bool:
    return str(store).startswith(("postgresql://", "postgres://"))


def _open(store: Store):
    from tui_billing.store import db
    from tui_billing.store.settings import ensure_defaults

    db.connect(str(store) if is_pg(store) else f"sqlite:///{store}")
    ensure_defaults()


def _close() -> None:
    from tui_billing.store import db

    db.close()  # checkpoints the WAL: the file is the whole store


def build_demo(store: Store, accounts: int) -> None:
    from tui_billing import demo
    from tui_billing.clock import Clock, zone
    from tui_billing.context import Ctx

    _open(store)
    from tui_billing.store.models import database

    # A store of millions of rows: with the default 32 MB page cache every
    # index insert re-reads its pages (hours for 100,000 accounts).
    for pragma in ("cache_size = -3000000", "temp_store = memory", "synchronous = off", "wal_autocheckpoint = 100000"):
        if not is_pg(store):  # PostgreSQL: as the server is set up
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


def _edit(store: Store):
    """A connection to change a template with: sqlite3 (the whole store in its
    page cache: deletes and updates across every index), or _Pg."""
    if is_pg(store):
        return _Pg(str(store))
    con = sqlite3.connect(store, isolation_level=None)
    con.execute("PRAGMA journal_mode=wal")
    con.execute("PRAGMA cache_size=-2000000")
    return con


def _edited(con) -> None:
    if isinstance(con, _Pg):
        con.execute("VACUUM ANALYZE")  # as autovacuum would leave it
    else:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


def without_period(store: Store) -> None:
    """Delete the invoices of PERIOD from a copy of the demo store (their xDRs kept)."""
    con = _edit(store)
    con.execute("BEGIN")
    con.execute("CREATE TEMP TABLE gone AS SELECT id FROM invoice WHERE period_from = ?", (PERIOD[0].isoformat(),))
    for table in _INVOICE_CHILDREN:
        con.execute(f"DELETE FROM {table} WHERE invoice_id IN (SELECT id FROM gone)")
    con.execute("DELETE FROM audit_event WHERE invoice_id IN (SELECT id FROM gone)")
    con.execute("DELETE FROM invoice WHERE id IN (SELECT id FROM gone)")
    con.execute("COMMIT")
    _edited(con)


def with_rejected(store: Store, xdrs: int) -> None:
    """Reject all the PREVIOUS-month invoices of a copy of a demo store for
    an off-peak reissue, each with `xdrs` xDRs over its usage lines' services
    (quantity and amount split evenly: the reissue recalculates about the
    same lines)."""
    from tui_billing import statuses as S

    con = _edit(store)
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
    _edited(con)


class SqliteStores:
    """The templates as files in a folder ("demo-300" is demo-300.db); a
    run's copy is work.db there."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def header(self) -> str:
        return f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} cores"

    def place(self, key: str) -> str:
        return str(self.directory)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.db"

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def building(self, key: str, source: str | None = None) -> Path:
        """Where template `key` is built (a copy of `source`, else nothing yet)."""
        tmp = self._path(key).with_suffix(".building")
        for p in self.directory.glob(tmp.name + "*"):
            p.unlink()
        if source is not None:
            shutil.copy(self._path(source), tmp)
        return tmp

    def built(self, key: str) -> None:
        tmp = self._path(key).with_suffix(".building")
        for suffix in ("-wal", "-shm", ""):  # no WAL left once the last connection closed
            if Path(f"{tmp}{suffix}").exists():
                Path(f"{tmp}{suffix}").rename(f"{self._path(key)}{suffix}")

    def fresh(self, key: str) -> Path:
        """A fresh copy of template `key` to run a job on."""
        self.cleanup()
        work = self.directory / "work.db"
        shutil.copy(self._path(key), work)
        return work

    def cleanup(self) -> None:
        for p in self.directory.glob("work.db*"):
            p.unlink()


class PgStores:
    """The templates as databases on a PostgreSQL server ("demo-300" is
    bench_billrun_demo_300); a run's copy is bench_billrun_work there."""

    WORK = "bench_billrun_work"

    def __init__(self, url: str):
        self.url = url
        where = urlsplit(url)
        self.server = f"{where.hostname or 'socket'}:{where.port or 5432}"
        con = self._connect()
        try:
            self.version, self.version_text = con.server_version, con.get_parameter_status("server_version")
        finally:
            con.close()

    def _connect(self):
        import psycopg2

        con = psycopg2.connect(self.url)
        con.autocommit = True
        return con

    def _sql(self, *statements: str, args: tuple = ()) -> list[tuple]:
        import psycopg2

        con = self._connect()
        try:
            with con.cursor() as cur:
                for statement in statements:
                    for attempt in range(10):
                        try:
                            cur.execute(statement, args or None)
                            break
                        except psycopg2.errors.ObjectInUse:  # CREATE DATABASE: autovacuum still on the template
                            if attempt == 9:
                                raise
                            time.sleep(1)
                return cur.fetchall() if cur.description else []
        finally:
            con.close()

    def header(self) -> str:
        return (
            f"PostgreSQL {self.version_text} at {self.server} (bytes written: the server's, n/a; "
            "server: the CPU of the job's backend)"
        )

    @staticmethod
    def _name(key: str) -> str:
        return "bench_billrun_" + key.replace("-", "_")

    def _url(self, name: str) -> str:
        return urlsplit(self.url)._replace(path=f"/{name}").geturl()

    def place(self, key: str) -> str:
        return f"database {self._name(key)} on {self.server}"

    def exists(self, key: str) -> bool:
        return bool(self._sql("SELECT 1 FROM pg_database WHERE datname = %s", args=(self._name(key),)))

    def _drop(self, name: str) -> str:
        return f'DROP DATABASE IF EXISTS "{name}"' + (" WITH (FORCE)" if self.version >= 130000 else "")

    def _create(self, name: str, template: str | None) -> str:
        if template is None:
            return f'CREATE DATABASE "{name}"'
        # FILE_COPY (a checkpoint, then the files copied): WAL_LOG, 15's
        # default, would put the whole template through the WAL, and the
        # checkpoint it calls for into the measured run.
        strategy = " STRATEGY = FILE_COPY" if self.version >= 150000 else ""
        return f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}'

    def building(self, key: str, source: str | None = None) -> str:
        tmp = self._name(key) + "_building"
        self._sql(self._drop(tmp), self._create(tmp, source and self._name(source)))
        return self._url(tmp)

    def built(self, key: str) -> None:
        self._sql(f'ALTER DATABASE "{self._name(key)}_building" RENAME TO "{self._name(key)}"')

    def fresh(self, key: str) -> str:
        self._sql(self._drop(self.WORK), self._create(self.WORK, self._name(key)))
        return self._url(self.WORK)

    def cleanup(self) -> None:
        self._sql(self._drop(self.WORK))


def templates(stores, accounts: int, reissue: int, xdrs: int, cases: list[str]) -> dict[str, str]:
    """The template (its key in `stores`) of each case, built when missing."""
    out: dict[str, str] = {}

    def demo_store(n: int) -> str:
        key = f"demo-{n}"
        if not stores.exists(key):
            print(f"building the demo store of {n:,} accounts (once, kept in {stores.place(key)})", flush=True)
            _child("build", stores.building(key), accounts=n)
            stores.built(key)
        return key

    if "close" in cases:
        out["close"] = demo_store(accounts)
    if "create" in cases:
        key = f"create-{accounts}"
        if not stores.exists(key):
            without_period(stores.building(key, demo_store(accounts)))
            stores.built(key)
        out["create"] = key
    if "reissue" in cases:
        key = f"reissue-{reissue}x{xdrs}"
        if not stores.exists(key):
            with_rejected(stores.building(key, demo_store(reissue)), xdrs)
            stores.built(key)
        out["reissue"] = key
    return out


# --------------------------------------------------------------------------
# The jobs, as tui-billing runs them


def _ours_backend(store: Store) -> int | None:
    from tui_billing.store.models import database

    return backend_pid(database.obj.connection(), str(store)) if is_pg(store) else None


def run_bill_run(store: Store) -> dict:
    from tui_billing import billrun
    from tui_billing.clock import Clock, zone
    from tui_billing.context import Ctx

    _open(store)
    ctx = Ctx(clock=Clock(tz=zone("UTC"), fixed=RUN_AT), actor="bench")

    def job():
        result = billrun.bill_run(ctx, *PERIOD)
        assert not result.failed, result.failed[:3]
        return len(result.created) + len(result.closed)

    out = measured(job, _ours_backend(store))
    _close()
    return out


def run_reissue(store: Store) -> dict:
    from tui_billing import jobs
    from tui_billing.clock import Clock, zone
    from tui_billing.context import Ctx

    _open(store)
    ctx = Ctx(clock=Clock(tz=zone("UTC"), fixed=REISSUE_AT), actor="job:reissue_offpeak")

    def job():
        result = jobs.reissue_offpeak(ctx)
        assert not result.failed, result
        return result.done

    out = measured(job, _ours_backend(store))
    _close()
    return out


# --------------------------------------------------------------------------
# The same reads and writes on plain sqlite3 or psycopg2 (integers, no risk engine)

from tui_billing.billing import BILLABLE_SUBSCRIPTION_STATUSES  # noqa: E402

RAW_CHUNK = 200  # accounts (bill run) or invoices (reissue) per transaction, as the jobs
BILLABLE = tuple(sorted(BILLABLE_SUBSCRIPTION_STATUSES))  # the domain's list: the same subscriptions are charged
MINOR = {"JPY": 0, "BHD": 3, "KWD": 3}


@functools.cache
def _pg_sql(sql: str, params: bool = True) -> str:
    """sqlite3's SQL as psycopg2's: ? placeholders, BEGIN IMMEDIATE, INSERT OR IGNORE."""
    if params:
        sql = sql.replace("%", "%%")
    if sql == "BEGIN IMMEDIATE":  # the locks are taken by the statements (FOR UPDATE, the UPDATEs)
        return "BEGIN"
    if sql.startswith("INSERT OR IGNORE "):
        sql = "INSERT " + sql[len("INSERT OR IGNORE ") :] + " ON CONFLICT DO NOTHING"
    return sql.replace("?", "%s")


class _Pg:
    """What the raw functions use of a sqlite3 connection (autocommit outside
    BEGIN ... COMMIT), over psycopg2; executemany as
    tui_billing.store.bulk on PostgreSQL: execute_values for INSERTs,
    execute_batch for UPDATEs."""

    for_update = " FOR UPDATE"  # appended to the SELECTs of rows the job locks

    def __init__(self, url: str):
        import psycopg2

        self.url = url
        self.connection = psycopg2.connect(url, options="-c jit=off")  # as tui_billing.store.db.connect
        self.connection.autocommit = True

    def execute(self, sql: str, params=()):
        cursor = self.connection.cursor()
        cursor.execute(_pg_sql(sql, bool(params)), params or None)
        return cursor

    def executemany(self, sql: str, rows: list) -> None:
        from psycopg2.extras import execute_batch, execute_values

        if not rows:
            return
        with self.connection.cursor() as cursor:
            if sql.startswith("INSERT"):
                template = re.sub(r"VALUES \([?, ]+\)", "VALUES ?", sql)
                execute_values(cursor, _pg_sql(template), rows, page_size=2000)
            else:
                execute_batch(cursor, _pg_sql(sql), rows, page_size=500)

    def close(self) -> None:
        self.connection.close()


def _lock(con, *, skip_locked: bool = False) -> str:
    """The clause that locks a SELECT's rows as the job does: FOR UPDATE on
    PostgreSQL (SKIP LOCKED: a claim); nothing on SQLite (BEGIN IMMEDIATE
    holds the database's write lock)."""
    clause = getattr(con, "for_update", "")
    return clause + " SKIP LOCKED" if clause and skip_locked else clause


def _raw_open(store: Store):
    from tui_billing.store.bulk import SQLITE_HEAVY_WRITES

    if is_pg(store):
        return _Pg(str(store))
    con = sqlite3.connect(store, isolation_level=None)
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
        # int(): PostgreSQL's SUM of a BIGINT is a NUMERIC (a Decimal)
        usage[acc].append((service, int(qty), int(amount), n, days, *repeats.get((acc, service), (0, 0))))
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
        "AND period_from < ?) AS recent WHERE rn <= 6",
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


def _raw_risk(key: int, total: int) -> tuple:
    """The risk columns raw writes (risk_score, risk_flags, expected_total,
    risk_at_stake): raw does not assess, but it writes what an assessment
    writes, scores spread as tui_billing's are (most between 0 and 550: a
    demo month's median is 253).  Scores of 0 for all, as raw wrote before,
    put every closed invoice at one end of the two risk-order indexes,
    where tui_billing's scatter theirs across them: 1.9x the bytes written,
    all of it the risk-index pages (49 MB against 32 MB closing 4,207
    invoices; 32 MB when tui_billing too writes 0)."""
    score = (key * 2654435761) % 2**32 % 550
    return score, "", total, score * 100


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


def raw_bill_run(store: Store) -> dict:
    """The bill run's reads and writes, a chunk of accounts per transaction:
    new invoices for accounts without one, open ones closed."""
    con = _raw_open(store)
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
                f"SELECT id, customer_class_id, currency, payment_model FROM account WHERE id IN ({_marks(len(ids))}) "
                "ORDER BY id",  # the numbers given in account order, as the bill run
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

    out = measured(job, backend_pid(con.connection, con.url) if isinstance(con, _Pg) else None)
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
                *_raw_risk(last - len(new) + 1 + k, totals["total"]),
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
        for i, s, t in con.execute(
            f"SELECT id, status, total FROM invoice WHERE id IN ({_marks(len(ids))}){_lock(con)}", ids
        )
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
                *_raw_risk(inv_id, total),
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


def raw_reissue(store: Store) -> dict:
    """The off-peak reissue's reads and writes, a batch of invoices per
    transaction: claimed, snapshot kept, recalculated, back under review."""
    con = _raw_open(store)
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
                    "AND (claimed_by IS NULL OR claimed_until < ?) ORDER BY reissue_after, id LIMIT ?"
                    + _lock(con, skip_locked=True),
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
                f"status, total, subtotal, discount_total, tax_total, correction_total FROM invoice WHERE id IN ({m})"
                + _lock(con),
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
                        *_raw_risk(inv_id, totals["total"]),
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

    out = measured(job, backend_pid(con.connection, con.url) if isinstance(con, _Pg) else None)
    con.close()
    return out


# --------------------------------------------------------------------------
# Driving: one fresh process per job, on a fresh copy


def _child(what: str, store: Store, **kw) -> dict:
    args = [sys.executable, __file__, "--child", what, "--db", str(store)]
    for key, value in kw.items():
        args += [f"--{key}", str(value)]
    proc = subprocess.run(args, stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"{what} failed (exit {proc.returncode})")
    lines = proc.stdout.strip().splitlines() or ["{}"]
    for line in lines if not lines[-1].startswith("{") else lines[:-1]:
        print(line, flush=True)
    return json.loads(lines[-1]) if lines[-1].startswith("{") else {}


def _line(who: str, r: dict) -> str:
    rate = r["count"] / r["seconds"] if r["seconds"] else 0
    written = (
        "written n/a"  # the server writes
        if r.get("postgresql")
        else f"written {r['write_mb']:7,.0f} MB (write() {r['wchar_mb']:7,.0f} MB)"
    )
    return (
        f"{who}: {r['count']:>9,} invoices in {r['seconds']:7.1f} s (CPU {r['cpu']:6.1f} s"
        + (f" + worker {r['worker_cpu']:.1f} s" if r.get("worker_cpu") else "")
        + (f" + server {r['server_cpu']:.1f} s" if r.get("server_cpu") is not None else "")
        + f") = {rate:7,.0f}/s; "
        f"{written}; peak RSS {r['rss_mb']:4.0f} MB"
        + (f" (worker {r['worker_rss_mb']:.0f} MB)" if r.get("worker_rss_mb") else "")
    )


def report(name: str, ours: dict, raw: dict | None) -> None:
    print(f"{name:<8} {_line('ours', ours)}")
    if raw:
        print(f"{'':<8} {_line('raw ', raw)}")
        if ours.get("postgresql"):
            extra = (
                f", {ours['server_cpu'] / max(raw['server_cpu'], 0.01):.2f}x server CPU"
                if ours.get("server_cpu") is not None and raw.get("server_cpu") is not None
                else ""
            )
        else:
            extra = f", {ours['write_mb'] / max(raw['write_mb'], 0.001):.2f}x bytes written"
        print(
            f"{'':<8} ours/raw: {ours['seconds'] / raw['seconds']:.2f}x time, {ours['cpu'] / raw['cpu']:.2f}x CPU"
            + extra,
            flush=True,
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--accounts", type=int, default=100_000, help="accounts of the bill run's store")
    ap.add_argument("--reissue", type=int, default=10_000, help="invoices rejected for the off-peak reissue")
    ap.add_argument("--xdrs", type=int, default=100, help="xDRs per reissued invoice")
    ap.add_argument("--dir", default="/tmp/bench-billrun", help="where the template stores are kept")
    ap.add_argument("--cases", default="close,create,reissue")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw baselines (sqlite3; psycopg2 with --pg)")
    ap.add_argument(
        "--pg",
        metavar="URL",
        help="also measure on PostgreSQL: a server URL such as postgresql://postgres@127.0.0.1:5432/postgres "
        "(a login that may create databases); the template databases (bench_billrun_*) are made and kept there",
    )
    ap.add_argument("--pg-only", action="store_true", help="with --pg: measure PostgreSQL only, not SQLite first")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child_main(args)
    if args.pg and not is_pg(args.pg):
        ap.error(f"--pg: {args.pg!r} is not a postgresql:// URL")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.pg_only and not args.pg:
        ap.error("--pg-only needs --pg URL")
    backends = ([] if args.pg_only else [SqliteStores(Path(args.dir))]) + ([PgStores(args.pg)] if args.pg else [])
    for stores in backends:
        keys = templates(stores, args.accounts, args.reissue, args.xdrs, cases)
        print(stores.header(), flush=True)
        try:
            for case in cases:
                ours = _child(case, stores.fresh(keys[case]))
                raw = None if args.no_raw else _child(f"raw-{case}", stores.fresh(keys[case]))
                report(case, ours, raw)
        finally:
            stores.cleanup()
    return 0


def child_main(args) -> int:
    store: Store = args.db if is_pg(args.db) else Path(args.db)
    if args.child == "build":
        build_demo(store, args.accounts)
        return 0
    jobs = {
        "close": run_bill_run,
        "create": run_bill_run,
        "reissue": run_reissue,
        "raw-close": raw_bill_run,
        "raw-create": raw_bill_run,
        "raw-reissue": raw_reissue,
    }
    print(json.dumps(jobs[args.child](store) | {"postgresql": is_pg(store)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
