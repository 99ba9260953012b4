"""Benchmark `import-xdrs`: a generated CSV of N rows into a fresh SQLite store.

    python bench/bench_import.py [--rows 1000000] [--accounts 2000] [--keep DIR]

Prints rows/s, total seconds, peak RSS, and the ratio against a raw
sqlite3 executemany of the same rows into the same schema (the floor any
import can reach): once for the insert alone (rows already in memory) and
once for csv-read + insert without any validation.
Target (issue 3): 1,000,000 rows in <= 60 s.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import random
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TZ", "UTC")

SERVICES = ["Voice calls", "SMS", "Mobile data", "Toll-free inbound", "Cloud PBX seats"]


def generate(path: Path, rows: int, accounts: list[tuple[int, str]], seed: int = 1) -> None:
    rng = random.Random(seed)
    start = dt.datetime(2026, 10, 1)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["xdr_id", "account", "service", "time", "quantity", "amount"])
        for i in range(rows):
            acc_id, email = accounts[rng.randrange(len(accounts))]
            account = email if i % 10 == 0 else acc_id  # a tenth by email
            when = start + dt.timedelta(seconds=rng.randrange(31 * 86400))
            qty = f"{rng.randrange(1, 3_600_000) / 1000:.3f}"
            amount = f"{rng.randrange(1, 500_000) / 10000:.4f}"
            w.writerow([f"sw1-{i:09d}", account, SERVICES[i % 5], when.isoformat(), qty, amount])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def make_store(url: str, n_accounts: int) -> list[tuple[int, str]]:
    from tui_billing.store import db
    from tui_billing.store.bulk import insert_rows
    from tui_billing.store.models import Account, CustomerClass, database
    from tui_billing.store.settings import ensure_defaults

    db.connect(url)
    ensure_defaults()
    with database.atomic():
        cls = CustomerClass.create(name="Bench", send_mode="immediately", net_days=30)
        insert_rows(
            Account,
            [
                "id",
                "name",
                "email",
                "account_type",
                "customer_class",
                "currency",
                "balance",
                "payment_model",
                "address",
                "search_text",
            ],
            [
                (
                    i,
                    f"Account {i}",
                    f"acc{i}@bench.example",
                    "business",
                    cls.id,
                    "EUR",
                    0,
                    "postpay",
                    "",
                    Account.search_text_of(f"Account {i}", f"acc{i}@bench.example"),
                )
                for i in range(1, n_accounts + 1)
            ],
        )
    return [(i, f"acc{i}@bench.example") for i in range(1, n_accounts + 1)]


def raw_baseline(csv_path: Path, directory: Path, template: Path) -> tuple[float, float]:
    """(insert only, csv read + insert) seconds with plain sqlite3.

    Into copies of the same fresh store (same table, indexes, accounts,
    pragmas, foreign keys on), one transaction, batches of 10,000.
    """
    results = []
    sql = 'INSERT INTO "xdr" ("xdr_id", "account_id", "service", "time", "quantity", "amount") VALUES (?,?,?,?,?,?)'
    email_to_id = {}

    def rows_from_csv():
        with open(csv_path, encoding="utf-8", newline="") as f:
            r = csv.reader(f)
            next(r)
            for xid, acc, service, when, qty, amount in r:
                account = int(acc) if acc.isdigit() else email_to_id.get(acc) or int(acc[3 : acc.index("@")])
                yield (
                    xid,
                    account,
                    service,
                    when.replace("T", " "),
                    int(qty.replace(".", "")),
                    int(amount.replace(".", "")),
                )

    for with_csv in (False, True):
        path = directory / f"raw{int(with_csv)}.db"
        shutil.copy(template, path)
        con = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=wal", "synchronous=normal", "foreign_keys=1", "cache_size=-32000"):
            con.execute(f"PRAGMA {pragma}")
        if with_csv:
            t0 = time.perf_counter()
            con.execute("BEGIN")
            batch = []
            for row in rows_from_csv():
                batch.append(row)
                if len(batch) >= 10_000:
                    con.executemany(sql, batch)
                    batch = []
            con.executemany(sql, batch)
            con.execute("COMMIT")
        else:
            rows = list(rows_from_csv())
            t0 = time.perf_counter()
            con.execute("BEGIN")
            for i in range(0, len(rows), 10_000):
                con.executemany(sql, rows[i : i + 10_000])
            con.execute("COMMIT")
            del rows
        results.append(time.perf_counter() - t0)
        con.close()
    return results[0], results[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep the files")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw sqlite3 baseline")
    args = ap.parse_args(argv)

    directory = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-import-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        db_path = directory / "store.db"
        for p in directory.glob("*.db*"):
            p.unlink()
        url = f"sqlite:///{db_path}"
        accounts = make_store(url, args.accounts)
        from tui_billing.store import db

        db.close()  # checkpoints the WAL: the file is the whole fresh store
        template = directory / "template.db"
        shutil.copy(db_path, template)
        db.connect(url)
        csv_path = directory / "xdrs.csv"
        t0 = time.perf_counter()
        generate(csv_path, args.rows, accounts)
        gen_s = time.perf_counter() - t0
        size_mb = csv_path.stat().st_size / 1e6
        print(f"generated {args.rows:,} rows ({size_mb:,.1f} MB) in {gen_s:.1f} s; RSS so far {peak_rss_mb():.0f} MB")

        from tui_billing import xdr_import
        from tui_billing.store.models import Xdr

        rss_before = peak_rss_mb()
        t0 = time.perf_counter()
        result = xdr_import.import_xdrs(csv_path)
        secs = time.perf_counter() - t0
        assert result.committed and result.imported == args.rows, result.as_dict()
        assert Xdr.select().count() == args.rows
        t1 = time.perf_counter()
        again = xdr_import.import_xdrs(csv_path)
        secs_again = time.perf_counter() - t1
        assert again.imported == 0 and again.existing == args.rows
        db.close()
        rss = peak_rss_mb()
        print(
            f"import:    {args.rows:,} rows in {secs:.2f} s = {args.rows / secs:,.0f} rows/s "
            f"(target: 1,000,000 in <= 60 s)"
        )
        print(f"re-import: {secs_again:.2f} s (all {again.existing:,} already in the store, nothing added)")
        print(f"peak RSS:  {rss:.0f} MB (before import {rss_before:.0f} MB)")
        if not args.no_raw:
            raw_insert, raw_csv = raw_baseline(csv_path, directory, template)
            print(f"raw sqlite3 executemany, rows in memory: {raw_insert:.2f} s -> import is {secs / raw_insert:.1f}x")
            print(f"raw csv.reader + executemany, no checks: {raw_csv:.2f} s -> import is {secs / raw_csv:.1f}x")
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
