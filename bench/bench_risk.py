"""Independent evaluation of the risk-ordered review queue (issue 12, part 4).

    python bench/bench_risk.py [--seeds 1,2,3] [--invoices 4000] [--errors 20] [--assess [N]] [--keep DIR]

Per seed: a fresh SQLite store in a temp directory, `demo.build(...,
anomalies=0)` (no demo anomalies: every invoice left alone is honest), then
bench/plant.py plants `--errors` errors of many kinds and sizes through the
real workflow (xDR import, adjust, reissue; direct writes only for upstream
data), then the queue (under review + rejected) is read in risk order with
queries.page(sort="risk") and scored:

- top 5 % cut = ceil(5 % of the queue);
- rank of a planted error = its place among the honest invoices: 1 + the
  honest invoices ahead of it in the queue.  It is what its place would be
  were it the only error, so the figure does not depend on how many errors
  are planted (20 plants in a queue of ~140 could not all fit in a cut of 8);
  recall = planted errors with rank <= cut.  The raw figure (planted errors
  among the first `cut` rows of the real queue) is printed beside it;
- false-positive rate = honest invoices in the queue that are flagged
  (risk.is_flagged; an engine without it: score > 0) / honest invoices in it.

Targets: recall >= 95 % on every seed; <= 3 % of honest invoices flagged;
`--assess N` (default 100,000 when given without N): risk_store.assess_many
over N demo invoices' ids in <= 60 s, against the raw driver replaying the
reads (SELECTs) assess_many ran on a sample.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TZ", "UTC")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(1, str(Path(__file__).resolve().parent))

import plant as P  # noqa: E402

from tui_billing import risk  # noqa: E402
from tui_billing import statuses as S  # noqa: E402
from tui_billing import workflow as W  # noqa: E402
from tui_billing.config import Clock, zone  # noqa: E402
from tui_billing.store import db as store_db  # noqa: E402
from tui_billing.store import queries as Q  # noqa: E402
from tui_billing.store.models import Invoice, database  # noqa: E402

NOW = dt.datetime(2026, 11, 20, 10, 0)  # naive UTC, as the other benches
QUEUE = (S.UNDER_REVIEW, S.REJECTED)
TARGET_RECALL, TARGET_FP, TARGET_ASSESS_S = 0.95, 0.03, 60.0


def ctx() -> W.Ctx:
    return W.Ctx(clock=Clock(tz=zone("UTC"), fixed=NOW), actor="bench")


if hasattr(risk, "is_flagged"):
    is_flagged, FLAG_RULE = risk.is_flagged, "risk.is_flagged"
else:  # an engine from before the flagged threshold

    def is_flagged(score):
        return (score or 0) > 0

    FLAG_RULE = "risk_score > 0 (this engine has no risk.is_flagged)"


def flag_codes(row) -> str:
    try:
        flags = risk.parse_flags(row.risk_flags)
    except Exception:  # noqa: BLE001 - an engine mid-rewrite: show the raw text
        return str(row.risk_flags or "")[:60]
    return ",".join(f.code for f in flags) or "none"


def open_store(directory: Path):
    from tui_billing.store.settings import ensure_defaults

    store_db.connect(f"sqlite:///{directory / 'store.db'}")
    ensure_defaults()


def read_queue() -> list:
    f = Q.Filters(statuses=QUEUE)
    rows, after = [], None
    while True:
        page = Q.page(f, sort="risk", after=after, limit=Q.MAX_LIMIT)
        rows += page
        if len(page) < Q.MAX_LIMIT:
            return rows
        after = Q.key_of(page[-1], "risk")


def pct(n: int, d: int) -> str:
    return f"{100 * n / d:5.1f} %" if d else "  n/a"


def run_seed(seed: int, invoices: int, errors: int, keep: Path | None) -> dict:
    from tui_billing import demo

    directory = (keep / f"seed{seed}") if keep else Path(tempfile.mkdtemp(prefix=f"bench-risk-{seed}-"))
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("store.db*"):
        old.unlink()
    try:
        open_store(directory)
        t0 = time.perf_counter()
        demo.build(ctx(), invoices=invoices, seed=seed, quiet=True, anomalies=0)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        plants = P.plant_errors(ctx(), errors, seed, workdir=directory / "plants")
        t_plant = time.perf_counter() - t0
        t0 = time.perf_counter()
        queue = read_queue()
        t_read = time.perf_counter() - t0
        store_db.close()
    finally:
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)

    planted = {p.invoice_id: p for p in plants}
    cut = math.ceil(0.05 * len(queue))
    honest_ahead = 0
    ranked = []  # (rank among honest, position in the queue, plant, row)
    honest = flagged_honest = 0
    for pos, row in enumerate(queue, 1):
        p = planted.get(row.id)
        if p is None:
            honest += 1
            honest_ahead += 1
            flagged_honest += bool(is_flagged(row.risk_score))
        else:
            ranked.append((honest_ahead + 1, pos, p, row))
    missing = [p for p in plants if p.invoice_id not in {r[2].invoice_id for r in ranked}]
    hits = sum(1 for rank, *_ in ranked if rank <= cut)
    raw_hits = sum(1 for _, pos, *_ in ranked if pos <= cut)
    statuses = {s: sum(1 for r in queue if r.status == s) for s in QUEUE}

    print(
        f"\nseed {seed}: {invoices:,} invoices; queue {len(queue):,} ({statuses[S.UNDER_REVIEW]:,} under review, "
        f"{statuses[S.REJECTED]:,} rejected); top 5 % = {cut}; {len(plants)} planted"
        f"   [build {t_build:.1f} s, plant {t_plant:.1f} s, read queue {t_read:.2f} s]"
    )
    print(
        f"  {'rank':>4} {'pos':>4}  {'kind':<12} {'size':>8} {'total':>8}  {'score':>5}  {'number':<16} "
        f"flags / what was planted"
    )
    for rank, pos, p, row in sorted(ranked, key=lambda r: r[1]):
        mark = " " if rank <= cut else "*"
        print(
            f" {mark}{rank:>4} {pos:>4}  {p.kind:<12} {P.size(p.factor):>8} {P.size(p.total_ratio):>8}  "
            f"{row.risk_score or 0:>5}  {p.number:<16} {flag_codes(row)}  ({p.detail})"
        )
    for p in missing:
        print(f"  ---- not in the queue: {p.kind} {p.number} ({p.detail})")
    print(
        f"  recall, rank among honest <= {cut}: {hits}/{len(plants)} = {pct(hits, len(plants))}"
        f"   (raw: planted in the first {cut} rows of the queue: {raw_hits}/{len(plants)})"
    )
    print(f"  honest invoices flagged: {flagged_honest}/{honest} = {pct(flagged_honest, honest)}")
    misses = [(rank, pos, p, row) for rank, pos, p, row in ranked if rank > cut]
    if misses:
        print(f"  misses ({len(misses)}):")
        for rank, _pos, p, row in misses:
            print(
                f"    {p.kind:<12} {P.size(p.factor):>8} (total {P.size(p.total_ratio)}) rank {rank:>4}  "
                f"{p.number}: score {row.risk_score or 0}, flags {flag_codes(row)}"
            )
    return {
        "seed": seed,
        "queue": len(queue),
        "cut": cut,
        "planted": len(plants),
        "hits": hits,
        "raw_hits": raw_hits,
        "honest": honest,
        "flagged_honest": flagged_honest,
        "kinds": [(p.kind, rank <= cut) for rank, _, p, _ in ranked],
        "seconds": t_build + t_plant + t_read,
    }


def bench_assess(n: int, keep: Path | None, sample: int = 5000) -> bool:
    from tui_billing import demo
    from tui_billing.store import risk_store

    directory = (keep / "assess") if keep else Path(tempfile.mkdtemp(prefix="bench-risk-assess-"))
    directory.mkdir(parents=True, exist_ok=True)
    try:
        path = directory / "store.db"
        fresh = not path.exists()
        open_store(directory)
        if fresh or Invoice.select().count() != n:
            t0 = time.perf_counter()
            demo.build(ctx(), invoices=n, seed=1, quiet=True)
            print(f"\nassess: demo store of {n:,} invoices built in {time.perf_counter() - t0:.1f} s")
        ids = [i for (i,) in Invoice.select(Invoice.id).order_by(Invoice.id).tuples()]
        t0 = time.perf_counter()
        counts = risk_store.assess_many(ids)
        secs = time.perf_counter() - t0
        ok = secs <= TARGET_ASSESS_S * len(ids) / 100_000
        print(
            f"assess_many: {len(ids):,} invoices in {secs:.1f} s = {len(ids) / secs:,.0f} invoices/s "
            f"({counts}); target 100,000 in <= {TARGET_ASSESS_S:.0f} s: {'PASS' if ok else 'FAIL'}"
        )
        # The same reads on the raw driver: the SELECTs assess_many runs for a
        # sample (history query, charge lines, corrections, subscriptions...).
        middle = max(len(ids) // 2 - sample // 2, 0)
        part = ids[middle : middle + sample]  # contiguous, as assess_many's chunks are in the full run
        statements: list[tuple[str, tuple]] = []
        db = database.obj
        original = db.execute_sql

        def recording(sql, params=None, *args, **kwargs):
            statements.append((sql, tuple(params or ())))
            return original(sql, params, *args, **kwargs)

        db.execute_sql = recording
        try:
            t0 = time.perf_counter()
            risk_store.assess_many(part)
            ours = time.perf_counter() - t0
        finally:
            del db.execute_sql
        reads = [(s, p) for s, p in statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]
        writes = [(s, p) for s, p in statements if s.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))]

        def replay(items):
            cur = db.cursor()
            t = time.perf_counter()
            for sql, params in items:
                cur.execute(sql, params)
                cur.fetchall()
            return time.perf_counter() - t

        raw = min(replay(reads), replay(reads))  # warm, like the sample run it follows
        try:
            with database.atomic() as txn:  # rolled back: the store is left as assess_many left it
                raw_all = replay(
                    [
                        st
                        for st in statements
                        if st[0].lstrip().upper().startswith(("SELECT", "WITH", "UPDATE", "INSERT", "DELETE"))
                    ]
                )
                txn.rollback()
        except Exception as exc:  # noqa: BLE001 - a write that cannot be replayed as is
            print(f"  (reads + writes not replayable: {type(exc).__name__}: {exc})")
            raw_all = float("nan")
        print(
            f"  sample of {len(part):,} (ids {part[0]}-{part[-1]}): assess_many {ours:.2f} s "
            f"({len(part) / ours:,.0f}/s, {len(statements):,} statements: {len(reads):,} reads, "
            f"{len(writes):,} writes)"
        )
        print(
            f"  the same reads on the raw driver {raw:.2f} s ({len(part) / raw:,.0f}/s) -> assess_many is "
            f"{ours / raw:.1f}x; reads + writes {raw_all:.2f} s -> {ours / raw_all:.1f}x"
        )
        store_db.close()
        return ok
    finally:
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--invoices", type=int, default=4000)
    ap.add_argument("--errors", type=int, default=20)
    ap.add_argument(
        "--assess",
        type=int,
        nargs="?",
        const=100_000,
        default=0,
        metavar="N",
        help="also time risk_store.assess_many over N demo invoices (default N 100,000)",
    )
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep the stores and plant CSVs")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    keep = Path(args.keep) if args.keep else None
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"flagged = {FLAG_RULE}; engine {Path(risk.__file__).resolve()}"
    )
    started = time.perf_counter()
    results = [run_seed(s, args.invoices, args.errors, keep) for s in seeds] if args.errors else []
    ok = True
    if results:
        planted = sum(r["planted"] for r in results)
        hits = sum(r["hits"] for r in results)
        honest = sum(r["honest"] for r in results)
        fp = sum(r["flagged_honest"] for r in results)
        worst = min(r["hits"] / r["planted"] if r["planted"] else 0 for r in results)
        print(
            f"\ntotal over seeds {','.join(map(str, seeds))}: recall {hits}/{planted} = {pct(hits, planted)} "
            f"(worst seed {100 * worst:.1f} %; raw {sum(r['raw_hits'] for r in results)}/{planted}); "
            f"honest flagged {fp}/{honest} = {pct(fp, honest)}"
        )
        by_kind: dict[str, list[bool]] = {}
        for r in results:
            for kind, hit in r["kinds"]:
                by_kind.setdefault(kind, []).append(hit)
        print("  recall by kind: " + ", ".join(f"{k} {sum(v)}/{len(v)}" for k, v in sorted(by_kind.items())))
        recall_ok = worst >= TARGET_RECALL
        fp_ok = honest > 0 and fp / honest <= TARGET_FP
        ok = recall_ok and fp_ok
        print(f"  recall >= {TARGET_RECALL:.0%} in the top 5 % on every seed: {'PASS' if recall_ok else 'FAIL'}")
        print(f"  honest invoices flagged <= {TARGET_FP:.0%}: {'PASS' if fp_ok else 'FAIL'}")
        print(f"  seeds took {time.perf_counter() - started:.1f} s")
    if args.assess:
        ok = bench_assess(args.assess, keep) and ok
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
