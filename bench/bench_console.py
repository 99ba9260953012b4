"""Console performance on a big store: start to first screen painted, next
page from key to paint, peak RSS.

    python bench/bench_console.py [N] [--db URL] [--pages K]

N invoices (default 100000) in a demo store made once under
$TMPDIR/tui-billing-bench-N.db (reused on later runs), or an existing store
given with --db (e.g. one made by `tui-billing demo --invoices 1000000 --db ...`).

Each measurement runs the real console (tui_billing.app.BillingApp, opened
the way `tui-billing` opens it) in a fresh Python process, headless at 80x24:

- start: from spawning the process (interpreter, imports, opening the store)
  until the review queue's first page is on screen (rows in the table and a
  refresh cycle done);
- next page: from the key (End: the cursor jumps to the last loaded row,
  which asks for the next page) to the next keyset page appended and
  repainted, in the queue and in the finder (all invoices by issue date);
- the finder's first page after F3, from the key to the page painted: as an
  admin meets it (the console built the finder while the queue was read, after
  a second without keys), and in one more run with F3 pressed at once after
  the start, before the finder is built;
- peak RSS of that process (resource.getrusage ru_maxrss).

Targets (DESIGN, at 1M): start <= 1.5 s, next page <= 100 ms, RSS <= 150 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"start_ms": 1500, "next_page_ms": 100, "rss_mb": 150, "f3_ms": 150}


def ensure_store(n: int, url: str | None) -> str:
    if url:
        return url
    path = Path(tempfile.gettempdir()) / f"tui-billing-bench-{n}.db"
    url = f"sqlite:///{path}"
    if path.exists():
        return url
    print(f"creating a demo store of {n:,} invoices at {path} (once; reused later)…", flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tui_billing", "demo", "--invoices", str(n), "--db", url], check=True)
    print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)
    return url


# ---------------------------------------------------------------------------
# The child: one console run, measured from inside.


def child(url: str, pages: int, spawned: float, f3_at_once: bool = False) -> None:
    import asyncio
    import resource

    from textual import events

    from tui_billing.cli import build_parser
    from tui_billing.commands import common
    from tui_billing.screens.invoice_list import InvoiceListScreen

    # Instrumentation: note when a page shown by the console has been painted
    # (the refresh after the rows were added to the table).
    painted: dict[str, float] = {}

    def hook(name):
        original = getattr(InvoiceListScreen, name)

        def wrapper(self, *args):
            original(self, *args)
            self.call_after_refresh(lambda: painted.__setitem__(name, time.perf_counter()))

        setattr(InvoiceListScreen, name, wrapper)

    hook("_show_first")
    hook("_show_more")

    args = build_parser().parse_args(["--db", url])
    out: dict = {}

    async def wait_for(name: str, timeout: float = 60.0) -> float:
        end = time.perf_counter() + timeout
        while name not in painted:
            if time.perf_counter() > end:
                raise TimeoutError(name)
            await asyncio.sleep(0.0005)
        return painted.pop(name)

    with common.open_env(args) as env:
        from tui_billing.app import BillingApp
        from tui_billing.widgets.invoice_table import InvoiceTable

        app = BillingApp(env)

        async def next_pages(pilot) -> list[float]:
            screen = pilot.app.screen
            table = screen.query_one(InvoiceTable)
            table.focus()
            await pilot.pause()
            times = []
            for _ in range(pages):
                if not screen.has_more:
                    break
                painted.pop("_show_more", None)
                t0 = time.perf_counter()
                pilot.app._driver.send_message(events.Key("end", None))  # as a terminal would
                times.append((await wait_for("_show_more") - t0) * 1000)
                await pilot.pause()
            return times

        async def auto_pilot(pilot) -> None:
            done = await wait_for("_show_first")
            out["start_ms"] = (time.time() - (time.perf_counter() - done) - spawned) * 1000
            if f3_at_once:
                t0 = time.perf_counter()
                await pilot.press("f3")
                out["finder_first_page_ms"] = (await wait_for("_show_first") - t0) * 1000
                pilot.app.exit()
                return
            out["queue_next_page_ms"] = await next_pages(pilot)
            end = time.perf_counter() + 10
            while "finder" not in pilot.app._screen_stacks and time.perf_counter() < end:
                await asyncio.sleep(0.05)  # the admin reads the queue: the console builds the finder
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            out["finder_built"] = "finder" in pilot.app._screen_stacks
            t0 = time.perf_counter()
            await pilot.press("f3")
            out["finder_first_page_ms"] = (await wait_for("_show_first") - t0) * 1000
            out["finder_next_page_ms"] = await next_pages(pilot)
            out["finder_rows_loaded"] = pilot.app.screen.query_one(InvoiceTable).row_count
            await pilot.app.workers.wait_for_complete()
            pilot.app.exit()

        app.run(headless=True, size=(80, 24), auto_pilot=auto_pilot)
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


# ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=100_000, help="invoices in the demo store")
    parser.add_argument("--db", help="an existing store URL (skips creating one)")
    parser.add_argument("--pages", type=int, default=10, help="next pages measured per list")
    parser.add_argument("--runs", type=int, default=3, help="console starts measured")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--spawned", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--f3-at-once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.db, args.pages, args.spawned, args.f3_at_once)
        return 0

    url = ensure_store(args.n, args.db)
    from tui_billing.store import db as store_db
    from tui_billing.store.models import Invoice

    store_db.connect(url)
    total = Invoice.select().count()
    store_db.close()
    env = dict(os.environ, TERM=os.environ.get("TERM", "xterm-256color"))
    load_before = os.getloadavg()[0]
    results = []
    for run in range(args.runs + 1):
        spawned = time.time()
        at_once = ["--f3-at-once"] if run == args.runs else []  # the last run: F3 before the finder is built
        proc = subprocess.run(
            [sys.executable, __file__, "--child", "--db", url, "--pages", str(args.pages), "--spawned", repr(spawned)]
            + at_once,
            capture_output=True,
            text=True,
            env=env,
        )
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            return 1
        results.append(json.loads(line[7:]))
    at_once = results.pop()

    def pages(key):
        return [t for r in results for t in r[key]]

    start = [r["start_ms"] for r in results]
    nxt = pages("queue_next_page_ms") + pages("finder_next_page_ms")
    rss = max(r["rss_mb"] for r in results)
    print(
        f"store: {url} ({total:,} invoices); {os.cpu_count()} CPUs, load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after (figures grow with other load)"
    )
    print(
        f"console start to first screen painted: median {statistics.median(start):.0f} ms "
        f"(runs: {', '.join(f'{s:.0f}' for s in start)}; target <= {TARGETS['start_ms']} ms)"
    )
    f3 = [r["finder_first_page_ms"] for r in results]
    print(
        f"finder first page after F3, key to paint: median {statistics.median(f3):.0f} ms "
        f"(runs: {', '.join(f'{t:.0f}' for t in f3)}; finder built while the queue was read: "
        f"{sum(r['finder_built'] for r in results)} of {len(results)} runs; target <= {TARGETS['f3_ms']} ms); "
        f"F3 pressed at once after the start: {at_once['finder_first_page_ms']:.0f} ms"
    )
    if nxt:
        print(
            f"next page, key to paint: median {statistics.median(nxt):.1f} ms, "
            f"max {max(nxt):.1f} ms over {len(nxt)} pages "
            f"(queue median {statistics.median(pages('queue_next_page_ms') or [0]):.1f} ms, "
            f"finder median {statistics.median(pages('finder_next_page_ms') or [0]):.1f} ms; "
            f"target <= {TARGETS['next_page_ms']} ms)"
        )
    print(f"peak RSS: {rss:.0f} MB (target <= {TARGETS['rss_mb']} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
