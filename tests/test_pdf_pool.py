"""Every core for rendering (issue 18.3): PDFs rendered in worker processes,
the same bytes as in this process, every write here and in order; a
failure (an exception, a worker that dies) stays with its invoice.

Real worker processes (spawn) and real stores; a pool is forced on small
batches with a low POOL_MIN, and `caller_renders=False` keeps this process
from rendering, so what the workers did is seen."""

from __future__ import annotations

import dataclasses
import os
from decimal import Decimal
from pathlib import Path

import pytest

from tui_billing import documents, jobs, pdf, workflow
from tui_billing import statuses as S
from tui_billing.pdf import pool as pdf_pool
from tui_billing.store.models import Invoice, InvoicePdf, OutboxMessage

from . import factories as F
from .test_jobs_support import NOW, ctx_at, make_approved
from .test_pdf import NAMES, make_doc


def docs(n: int) -> list[pdf.InvoiceDocument]:
    return [make_doc(3 + i % 5, number=f"INV-P-{i:04d}", customer=NAMES[i % 4]) for i in range(n)]


class _Exit:
    """Unpickled in a worker, it ends that process: a worker killed mid-batch."""

    def __reduce__(self):
        return (os._exit, (3,))


def killer(doc: pdf.InvoiceDocument) -> pdf.InvoiceDocument:
    return dataclasses.replace(doc, number=_Exit())  # type: ignore[arg-type]


def workers_only(n: int = 2, **kw) -> pdf.RenderPool:
    return pdf.RenderPool(n, pool_min=1, caller_renders=False, **kw)


# -- the pool ---------------------------------------------------------------------


def test_workers_render_the_same_bytes_in_order():
    batch = docs(24)
    expected = [pdf.render_invoice(d) for d in batch]
    with workers_only() as pool:
        got = list(pool.render((d.number, d) for d in batch))
    assert [tag for tag, _ in got] == [d.number for d in batch]
    assert [data for _, data in got] == expected
    assert os.getpid() not in pool.pids and sum(pool.pids.values()) == 24  # all of them in workers


def test_a_small_batch_never_starts_a_process():
    batch = docs(3)
    with pdf.RenderPool(4) as pool:  # the default POOL_MIN
        assert [d for _, d in pool.render((None, d) for d in batch)] == [pdf.render_invoice(d) for d in batch]
        assert pool._executor is None and dict(pool.pids) == {os.getpid(): 3}
    with pdf.RenderPool(4, expected=3) as pool:  # known to be few: rendered as they come
        pool.submit("a", batch[0])
        assert [tag for tag, _ in pool.ready()] == ["a"]
        assert pool._executor is None


def test_while_workers_start_the_caller_renders(monkeypatch):
    batch = docs(pdf_pool.CHUNK * 3)
    with pdf.RenderPool(2, expected=len(batch)) as pool:
        assert [d for _, d in pool.render((None, d) for d in batch)] == [pdf.render_invoice(d) for d in batch]
    assert pool.pids[os.getpid()] > 0  # it did not wait a second for the workers to start


def test_when_no_worker_can_start_everything_is_rendered_here(monkeypatch):
    """A machine that cannot start the workers (limits, a sandbox, a script
    without the __main__ guard spawn needs): the batch is rendered in this
    process, whole and in order.  Giving up with a task half filled once
    stopped the batch with an IndexError (found by hand, a bench script)."""
    import concurrent.futures

    class NoProcesses:
        def __init__(self, **_):
            pass

        def submit(self, fn, *args):
            future: concurrent.futures.Future = concurrent.futures.Future()
            future.set_exception(OSError("cannot start a process here"))
            return future

        def shutdown(self, wait=True):
            pass

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", NoProcesses)
    batch = docs(pdf_pool.CHUNK * 2 + 3)
    with pdf.RenderPool(2, pool_min=1) as pool:
        got = list(pool.render((d.number, d) for d in batch))
    assert [tag for tag, _ in got] == [d.number for d in batch]
    assert [data for _, data in got] == [pdf.render_invoice(d) for d in batch]
    assert dict(pool.pids) == {os.getpid(): len(batch)}


def test_an_exception_in_a_worker_is_that_documents_result():
    batch = docs(12)
    bad = {3, 8}
    for i in bad:
        batch[i] = dataclasses.replace(batch[i], issue_date=None)  # type: ignore[arg-type]
    with workers_only() as pool:
        got = [data for _, data in pool.render((i, d) for i, d in enumerate(batch))]
    assert os.getpid() not in pool.pids
    assert [i for i, data in enumerate(got) if isinstance(data, Exception)] == sorted(bad)
    assert all(got[i] == pdf.render_invoice(batch[i]) for i in range(12) if i not in bad)


def test_a_worker_that_dies_fails_its_document_only():
    batch = docs(16)
    batch[5] = killer(batch[5])
    with workers_only() as pool:
        got = [data for _, data in pool.render((i, d) for i, d in enumerate(batch))]
    assert isinstance(got[5], pdf.RenderFailed) and "stopped" in str(got[5])
    assert all(got[i] == pdf.render_invoice(batch[i]) for i in range(16) if i != 5)
    assert pool.restarts >= 1  # a fresh pool did the rest


def test_a_process_whose_worker_died_still_exits():
    """The broken pool's other worker (blocked handing back its PDFs, or
    waiting for work) ignores the SIGTERM Python's pool stops it with:
    unless killed, it held the caller's exit forever (a `download` that
    never returned after an out-of-memory kill)."""
    import subprocess
    import sys

    script = (
        "from tests.test_pdf_pool import docs, killer, workers_only\n"
        "batch = docs(16)\n"
        "batch[5] = killer(batch[5])\n"
        "with workers_only() as pool:\n"
        "    got = [data for _, data in pool.render(enumerate(batch))]\n"
        "print(type(got[5]).__name__, sum(isinstance(d, bytes) for d in got), flush=True)\n"
    )
    root = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the process did not exit: {exc.stdout!r}")
    assert (done.returncode, done.stdout.split()) == (0, ["RenderFailed", "15"]), done.stderr[-2000:]


def test_push_mode_keeps_the_order_and_drains_the_rest():
    batch = docs(10)
    with workers_only() as pool:
        out = []
        for i, d in enumerate(batch):
            pool.submit(i, d)
            out += pool.ready()
        out += pool.drain()
    assert [i for i, _ in out] == list(range(10))
    assert [data for _, data in out] == [pdf.render_invoice(d) for d in batch]


def test_the_config_key_sets_the_default(monkeypatch):
    from tui_billing.config_file import load

    monkeypatch.setenv("TUI_BILLING_JOBS_WORKERS", "3")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent")
    assert load(None).jobs.workers == 3
    monkeypatch.delenv("TUI_BILLING_JOBS_WORKERS")
    assert load(None).jobs.workers is None
    documents.set_workers(3)
    try:
        assert documents.render_pool().workers == 3
    finally:
        documents.set_workers(None)
    assert documents.render_pool().workers == (os.cpu_count() or 1)


# -- the three callers, on a real store -----------------------------------------


@pytest.fixture
def pooled(monkeypatch):
    """A pool for any batch of two or more, rendering in workers only; the pools made are kept."""
    made: list[pdf.RenderPool] = []

    def render_pool(workers=None, expected=None):
        made.append(pdf.RenderPool(2, expected=expected, pool_min=2, caller_renders=False))
        return made[-1]

    monkeypatch.setattr(documents, "render_pool", render_pool)
    return made


def unrenderable(monkeypatch, inv: Invoice) -> None:
    """This invoice's document is one the renderer refuses (in the worker)."""
    real = documents.build_document

    def build(one, settings=None):
        doc = real(one, settings)
        return dataclasses.replace(doc, issue_date=None) if one.id == inv.id else doc

    monkeypatch.setattr(documents, "build_document", build)


def stored(inv: Invoice) -> bytes:
    row = InvoicePdf.get((InvoicePdf.invoice == inv.id) & (InvoicePdf.revision == inv.revision))
    return bytes(row.data)


def in_process(inv: Invoice) -> bytes:
    return pdf.render_invoice(documents.build_document(inv))


def test_download_renders_in_workers_and_writes_in_order(store_url, tmp_path, pooled):
    invoices = [F.invoice(total=Decimal(10 + i)) for i in range(6)]
    documents.current_pdf(Invoice.get_by_id(invoices[2].id))  # one kept already: not rendered again
    ids = [i.id for i in invoices] + [10**9]
    result, files, merged = documents.download_many(ids, tmp_path / "out", tmp_path / "all.pdf")
    assert result.done == [i.number for i in invoices] and result.failed == [(str(10**9), "does not exist")]
    assert [f.name for f in files] == [pdf.safe_filename(i.number) for i in invoices]
    for inv, path in zip(invoices, files):
        fresh = Invoice.get_by_id(inv.id)
        assert path.read_bytes() == stored(fresh) == in_process(fresh)
    (pool,) = pooled
    assert sum(pool.pids.values()) == 5 and os.getpid() not in pool.pids
    assert merged is not None and pdf.pdf_text(merged.read_bytes()).count("INV-2026-") >= 6


def test_download_reports_a_pdf_a_worker_could_not_render_and_does_the_rest(store_url, tmp_path, pooled, monkeypatch):
    invoices = [F.invoice() for _ in range(4)]
    unrenderable(monkeypatch, invoices[1])
    result, files, _ = documents.download_many([i.id for i in invoices], tmp_path)
    assert result.done == [invoices[i].number for i in (0, 2, 3)]
    assert [n for n, _ in result.failed] == [invoices[1].number]
    assert result.failed[0][1].startswith("PDF not written:")
    assert len(files) == 3 and os.getpid() not in pooled[0].pids


def test_dispatch_renders_in_workers_and_sends_each_once(store_url, pooled):
    invoices = make_approved(7)
    res = jobs.dispatch_approved(ctx_at(NOW), batch=3)
    assert (res.done, res.failed) == (7, 0)
    for inv in invoices:
        fresh = Invoice.get_by_id(inv.id)
        assert fresh.status in (S.PAID, S.UNPAID) and fresh.sent_revision == fresh.revision
        assert stored(fresh) == in_process(fresh)  # the final PDF: no DRAFT mark
        assert OutboxMessage.select().where(OutboxMessage.invoice == inv.id).count() == 1
    (pool,) = pooled
    assert sum(pool.pids.values()) == 7 and os.getpid() not in pool.pids


def test_dispatch_leaves_an_invoice_whose_pdf_fails_approved_and_sends_the_rest(store_url, pooled, monkeypatch):
    invoices = make_approved(4)
    unrenderable(monkeypatch, invoices[2])
    lines = []
    res = jobs.dispatch_approved(ctx_at(NOW), log=lambda *a, **kw: lines.append(kw))
    assert (res.done, res.failed) == (3, 1)
    assert Invoice.get_by_id(invoices[2].id).status == S.APPROVED  # no email, no payment: retried next pass
    assert not OutboxMessage.select().where(OutboxMessage.invoice == invoices[2].id).exists()
    assert [kw["action"] for kw in lines].count("failed") == 1
    assert os.getpid() not in pooled[0].pids


def test_bulk_reissue_renders_in_workers_after_each_commit(store_url, ctx, pooled):
    invoices = [F.invoice(total=Decimal(50 + i)) for i in range(5)]
    result = workflow.reissue_many(ctx, [i.id for i in invoices], "now")
    assert result.done == [i.number for i in invoices] and not result.failed
    for inv in invoices:
        fresh = Invoice.get_by_id(inv.id)
        assert fresh.revision == inv.revision + 1 and fresh.status == S.UNDER_REVIEW
        assert stored(fresh) == in_process(fresh)  # the new revision's draft
    (pool,) = pooled
    assert sum(pool.pids.values()) == 5 and os.getpid() not in pool.pids


# -- killed while the workers render --------------------------------------------


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found |= {int(c) for c in task.read_text().split()}
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_sigkill_while_the_pool_renders_never_sends_twice_nor_leaves_workers(store_url, tmp_path):
    """`jobs run` with its workers rendering, SIGKILLed 3 times at random
    moments: every invoice ends with one email and one payment, its final
    PDF stored, and no worker outlives its loop."""
    import random
    import signal
    import time
    from collections import Counter

    from tui_billing.store import db as store_db
    from tui_billing.store.models import Payment

    from .test_jobs_support import cli_env, run_cli, spawn, terminated

    count = pdf_pool.POOL_MIN + 44  # enough for the pool
    make_approved(count)
    store_db.close()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    env = cli_env(TUI_BILLING_SMTP_MAILDIR=str(tmp_path / "maildir"), TUI_BILLING_JOBS_WORKERS="2")
    args = ["--db", store_url, "--now", "2026-11-20T10:00:00Z", "jobs", "run", "--job", "dispatch_approved"]
    pooled = 0
    for _ in range(3):
        with terminated(spawn(args, env, tmp_path / "loop.log")) as proc:
            deadline = time.monotonic() + 30
            while len(_children(proc.pid)) < 3 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)  # the resource tracker and two workers
            workers = _children(proc.pid)
            pooled += len(workers) >= 3
            time.sleep(rng.uniform(0.0, 3.0))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL
        deadline = time.monotonic() + 5
        while any(_running(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_running(w) for w in workers), f"seed {seed}: a worker outlived its killed loop"
    assert pooled, "the workers never started"
    final = run_cli([*args, "--once"], env, timeout=300)
    assert final.returncode == 0, (seed, final.stderr[-2000:])
    store_db.connect(store_url)
    invoices = list(Invoice.select())
    assert len(invoices) == count and {i.status for i in invoices} <= {S.PAID, S.UNPAID}, seed
    outbox = Counter(m.invoice_id for m in OutboxMessage.select())
    assert outbox == Counter({i.id: 1 for i in invoices}), seed
    assert Counter(p.invoice_id for p in Payment.select()) == Counter({i.id: 1 for i in invoices}), seed
    for inv in invoices[:: max(1, count // 10)]:
        assert stored(inv) == in_process(inv), seed
