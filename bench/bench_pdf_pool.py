"""PDF rendering on every core (issue 18.3): one process against the worker pool.

    python bench/bench_pdf_pool.py [--count 10000] [--workers N] [--rounds 3] [--dispatch 2000]

render    --count 30-line invoices (bench_pdf.sample, 8 customers):
            single  render_invoice in this process, one after the other
            pool    tui_billing.pdf.RenderPool(workers).render(...), as
                    dispatch, download and bulk reissue use it: the workers'
                    start-up included (the caller renders while they start)
dispatch  with --dispatch N: N approved invoices of 30 lines in a temporary
          SQLite store, jobs.dispatch_approved with workers=1, then with the
          pool (a fresh copy of the store each run): PDFs stored, emails
          queued, invoices marked sent, every write in this process.

Wall-clock seconds (the pool's work is in other processes), best of
--rounds; single and pool runs alternate.  On a shared machine another
process's load costs the pool (two cores) more than the single run (one):
each run says how many cores other processes used meanwhile (Linux), and
--wait S waits up to S seconds for idle cores before each run.  Prints
invoices/s, the ratio pool/single (of the best of each, and each round's
own: the machine's speed can drift between rounds) and the CPU per invoice
of each.
The goal (issue 18.3): 10,000 invoices at >= 1.8x the single rate on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_pdf import sample  # noqa: E402

from tui_billing import pdf  # noqa: E402


def cpu() -> float:
    """CPU seconds of this process and of its children that ended (the pool's workers, once closed)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def machine_busy() -> float | None:
    """CPU seconds every process on the machine used so far (Linux /proc/stat; None elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_quiet(limit: float) -> float:
    """Wait (at most `limit` s) until the other processes leave the cores idle: a shared
    machine's load would count against the pool only.  Returns the cores others used last."""
    others = 0.0
    deadline = time.monotonic() + limit
    while True:
        busy, own = machine_busy(), cpu()
        time.sleep(1.0)
        if busy is None:
            return 0.0
        others = max(0.0, (machine_busy() or 0) - busy - (cpu() - own))
        if others < 0.15 or time.monotonic() > deadline:
            return others


class Others:
    """How many cores other processes used while a measurement ran."""

    def __enter__(self):
        self.start, self.own, self.t = machine_busy(), cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        end = machine_busy()
        took = time.perf_counter() - self.t
        used = 0.0 if end is None or self.start is None else end - self.start - (cpu() - self.own)
        self.cores = max(0.0, used) / max(took, 1e-9)


def render_single(docs: list[pdf.InvoiceDocument], count: int) -> tuple[float, float]:
    start, used = time.perf_counter(), cpu()
    for i in range(count):
        pdf.render_invoice(docs[i % len(docs)])
    return time.perf_counter() - start, cpu() - used


def render_pool(docs: list[pdf.InvoiceDocument], count: int, workers: int) -> tuple[float, float, dict[int, int]]:
    start, used = time.perf_counter(), cpu()
    with pdf.RenderPool(workers, expected=count) as pool:
        for _, data in pool.render((i, docs[i % len(docs)]) for i in range(count)):
            assert isinstance(data, bytes), data
    return time.perf_counter() - start, cpu() - used, dict(pool.pids)


# -- dispatch ---------------------------------------------------------------------


def make_store(path: Path, n: int) -> None:
    """N approved invoices of 30 charge lines each, one account each."""
    from tui_billing import statuses as S
    from tui_billing.store import db as store_db
    from tui_billing.store.models import Account, ChargeLine, CustomerClass, Invoice, database
    from tui_billing.store.settings import ensure_defaults

    store_db.connect(f"sqlite:///{path}")
    ensure_defaults()
    day = dt.date(2026, 11, 1)
    with database.atomic():
        cls = CustomerClass.create(name="Direct", send_mode="immediately", hold_days=0, net_days=14)
        for i in range(n):
            acc = Account.create(
                name=sample(1, i).customer.name + f" {i}",
                email=f"billing+{i}@example.com",
                account_type="business",
                customer_class=cls,
                currency="EUR",
                balance=Decimal("5000") if i % 3 == 0 else Decimal(0),
                payment_model="postpay",
                address="Königstraße 1\n70173 Stuttgart",
            )
            doc = sample(30, i)
            inv = Invoice.create(
                number=f"INV-2026-{i + 1:06d}",
                account=acc,
                customer_class=cls,
                kind="regular",
                payment_model="postpay",
                status=S.APPROVED,
                currency="EUR",
                period_from=dt.date(2026, 10, 1),
                period_to=dt.date(2026, 10, 31),
                generated_at=dt.datetime(2026, 11, 1, 3),
                issue_date=day,
                due_date=day + dt.timedelta(days=14),
                subtotal=doc.subtotal,
                total=doc.subtotal,
                outstanding=doc.subtotal,
                approved_at=dt.datetime(2026, 11, 19, 9),
            )
            ChargeLine.insert_many(
                [
                    dict(
                        invoice=inv,
                        position=c.position,
                        description=c.description,
                        service="Cloud",
                        quantity=c.quantity,
                        discount=c.discount,
                        amount=c.amount,
                    )
                    for c in doc.charges
                ]
            ).execute()
    store_db.close()


def dispatch(base: Path, work: Path, workers: int) -> float:
    from tui_billing import jobs
    from tui_billing.clock import Clock, zone
    from tui_billing.context import Ctx
    from tui_billing.store import db as store_db

    shutil.copy(base, work)
    store_db.connect(f"sqlite:///{work}")
    try:
        ctx = Ctx(clock=Clock(tz=zone("UTC"), fixed=dt.datetime(2026, 11, 20, 10)), actor="job:dispatch")
        start = time.perf_counter()
        res = jobs.dispatch_approved(ctx, workers=workers)
        took = time.perf_counter() - start
        assert res.failed == 0 and res.done > 0, res
    finally:
        store_db.close()
    return took


# -- main ---------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10_000, help="invoices rendered per run (default 10000)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pool size (default: one per core)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each, the best kept (default 3)")
    ap.add_argument("--dispatch", type=int, default=0, help="also dispatch this many approved invoices")
    ap.add_argument(
        "--wait", type=float, default=0.0, help="seconds to wait for idle cores before each run (shared machines)"
    )
    args = ap.parse_args(argv)
    docs = [sample(30, seq) for seq in range(8)]
    pdf.render_invoice(docs[0])  # fonts parsed: the single run starts warm, the pool's workers do not
    print(f"cores {os.cpu_count()}, workers {args.workers}, {args.count} invoices, best of {args.rounds}", flush=True)
    if args.count:
        render_both(docs, args)
    if args.dispatch:
        dispatch_both(args)
    return 0


def render_both(docs: list[pdf.InvoiceDocument], args) -> None:
    singles, pools, cpus = [], [], []
    for n in range(args.rounds):
        wait_quiet(args.wait)
        with Others() as one:
            took, used = render_single(docs, args.count)
        singles.append(took)
        cpus.append(("single", used))
        wait_quiet(args.wait)
        with Others() as many:
            took, used, pids = render_pool(docs, args.count, args.workers)
        pools.append(took)
        cpus.append(("pool", used))
        here = pids.get(os.getpid(), 0)
        print(
            f"  round {n + 1}: single {args.count / singles[-1]:7.1f}/s  pool {args.count / took:7.1f}/s"
            f"  ({singles[-1] / took:.2f}x)"
            f"  (this process rendered {here} while the workers started; other processes used"
            f" {one.cores:.2f} / {many.cores:.2f} cores meanwhile)",
            flush=True,
        )
    single, pool = args.count / min(singles), args.count / min(pools)
    print(f"render single: {single:8.1f} invoices/s  ({min(singles):.1f} s)")
    print(f"render pool:   {pool:8.1f} invoices/s  ({min(pools):.1f} s, {args.workers} workers)")
    print(f"ratio pool/single: {pool / single:.2f}")
    # Each round's own ratio: the machine's speed drifts between rounds, and best
    # of each can come from different minutes.
    paired = sorted(s / p for s, p in zip(singles, pools))
    print(f"ratio of each round: {paired[0]:.2f}-{paired[-1]:.2f}, median {statistics.median(paired):.2f}")
    # CPU per invoice, whatever else ran on the machine: what the pool costs beyond the rendering.
    per = {k: min(u for kind, u in cpus if kind == k) * 1000 / args.count for k in ("single", "pool")}
    print(
        f"CPU per invoice: single {per['single']:.2f} ms, pool {per['pool']:.2f} ms (all processes, start-up included)"
    )


def dispatch_both(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base, work = Path(tmp) / "base.db", Path(tmp) / "work.db"
        make_store(base, args.dispatch)
        one, many = [], []
        for _ in range(args.rounds):
            wait_quiet(args.wait)
            with Others() as alone:
                one.append(dispatch(base, work, 1))
            wait_quiet(args.wait)
            with Others() as pooled:
                many.append(dispatch(base, work, args.workers))
            print(
                f"  dispatch: one process {one[-1]:.1f} s, pool {many[-1]:.1f} s (other processes used"
                f" {alone.cores:.2f} / {pooled.cores:.2f} cores meanwhile)",
                flush=True,
            )
        d1, dn = args.dispatch / min(one), args.dispatch / min(many)
        print(f"dispatch one process: {d1:8.1f} invoices/s  ({min(one):.1f} s)")
        print(f"dispatch pool:        {dn:8.1f} invoices/s  ({min(many):.1f} s)")
        print(f"ratio pool/one: {dn / d1:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
