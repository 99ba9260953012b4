"""Many invoices' PDFs at once, on every core (issue 18.3).

``RenderPool`` turns ``InvoiceDocument`` s into PDF bytes in worker
processes and hands them back in the order they came, each beside the
caller's tag (an invoice, say).  Documents go out as plain picklable
values and bytes come back: every database write stays with the caller,
in its order.

- Workers start with *spawn*: a fresh interpreter that shares nothing with
  the caller (its open store connection, the console's threads).  Starting
  one costs about a second of CPU (it imports fpdf2 and parses the fonts),
  so the pool starts only for ``POOL_MIN`` documents or more (expected, or
  asked for in its life); fewer, or ``workers=1``, are rendered in the
  caller's process, as before.
- A worker gets documents once it is up; until then the caller renders
  them itself, so a batch never waits for the workers to start.  (With a
  core to spare it goes on rendering; else it only waits and collects.)
- Nothing stops the batch: an exception while rendering a document is that
  document's result.  A worker that dies (killed, out of memory) breaks the
  pool; the documents then in flight are rendered again one at a time in a
  fresh pool, and one that kills that one too is reported failed.  When no
  worker can be started at all, everything is rendered here.
- Workers ignore SIGINT and SIGTERM (the caller finishes its item in hand,
  then shuts the pool down) and exit when the caller's process is gone.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from . import render as _render_module
from .model import InvoiceDocument
from .render import FALLBACK, render_invoice, rendering_path, use_fallback

POOL_MIN = 256  # documents before workers pay for their start (README, Performance)
# Documents per worker task: ~150 ms of work.  Each task costs the caller
# about 1.3 ms (pickling, the pool's threads, waking up); 8 a task cost it
# 0.17 ms a document, 4% of rendering one, 32 cost 0.04 ms.
CHUNK = 32
AHEAD = 2  # tasks taken in ahead of the caller per worker (pull mode)
QUEUED = 2  # tasks handed to each ready worker at a time: one in hand, one next
MAX_RESTARTS = 8  # pools broken by dying workers before the rest is rendered here

T = TypeVar("T")
Result = bytes | Exception | None  # None: nothing was to be rendered (the caller's doc was None)

log = logging.getLogger(__name__)


def default_workers() -> int:
    """One per core ([jobs] workers says otherwise: documents.render_pool)."""
    return os.cpu_count() or 1


class RenderFailed(Exception):
    """A worker's failure that could not travel back as itself (not picklable), or a worker that died."""


@dataclass
class _Task:
    tags: list[Any] = field(default_factory=list)
    docs: list[InvoiceDocument | None] = field(default_factory=list)
    future: Any = None  # the worker's, once handed over
    results: list[Result] | None = None  # one per doc, once rendered
    isolate: bool = False  # in flight when a worker died: one document per task now

    @property
    def count(self) -> int:
        return sum(doc is not None for doc in self.docs)

    def to_render(self) -> list[InvoiceDocument]:
        return [doc for doc in self.docs if doc is not None]

    def merge(self, rendered: list[Result]) -> list[Result]:
        """The rendered results put back beside the docs that had nothing to render."""
        it = iter(rendered)
        return [None if doc is None else next(it) for doc in self.docs]


class RenderPool(Generic[T]):
    """Render documents in order: ``render(items)`` (pull: an iterable of
    (tag, document or None) in, (tag, bytes / exception / None) out), or
    ``submit`` + ``ready`` as work comes, then ``drain`` (push).

    ``expected``: how many documents are coming, when known: the pool starts
    at once if they are enough (``pool_min``, default POOL_MIN), and never
    if not; unknown: once ``pool_min`` were submitted.  ``render``: the
    function used in this process (tests patch ``pdf.render_invoice``;
    workers always use the real one).  ``caller_renders``: whether this
    process renders too rather than wait for a worker (default: while the
    workers start, and always with a core to spare; False: tests)."""

    def __init__(
        self,
        workers: int | None = None,
        *,
        render: Callable[[InvoiceDocument], bytes] | None = None,
        expected: int | None = None,
        pool_min: int | None = None,
        caller_renders: bool | None = None,
    ):
        self.workers = max(1, workers if workers is not None else default_workers())
        self.pool_min = pool_min = POOL_MIN if pool_min is None else pool_min
        self.expected = expected
        self._render = render or render_invoice
        self._tasks: deque[_Task] = deque()
        self._open: _Task | None = None
        self._executor: Any = None
        self._up: Any = None  # shared counter: workers of the current pool that are ready
        self._ping: Any = None  # the current pool's first task: fails if no worker can start
        # True: everything in this process (one worker, or fewer documents coming than pay for a pool)
        self._unusable = self.workers <= 1 or (expected is not None and expected < pool_min)
        # The caller renders too while it waits: always with a core to spare, else while workers start.
        self._caller_renders = caller_renders
        self._spare_core = (os.cpu_count() or 1) > self.workers
        self.seen = 0  # documents submitted
        self.restarts = 0
        self.pids: Counter[int] = Counter()  # process id -> documents it rendered

    def __enter__(self) -> RenderPool[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- push -----------------------------------------------------------------

    def submit(self, tag: T, doc: InvoiceDocument | None) -> None:
        """Queue a document (None: nothing to render, the tag just keeps its place)."""
        task = self._open or _Task()
        self._open = task
        task.tags.append(tag)
        task.docs.append(doc)
        if doc is not None:
            self.seen += 1
        if task.count >= (1 if self._unusable else CHUNK) or (doc is None and task.count == 0):
            self._close_open()

    def ready(self) -> Iterator[tuple[T, Result]]:
        """The results ready now, in order; never waits for a worker."""
        self._top_up()
        while self._tasks and self._settle(self._tasks[0], wait=False):
            yield from self._pop()

    def drain(self) -> Iterator[tuple[T, Result]]:
        """Every result still due, in order (waits, and renders here meanwhile)."""
        self._close_open()
        while self._tasks:
            self._settle(self._tasks[0], wait=True)
            yield from self._pop()

    # -- pull -----------------------------------------------------------------

    def render(self, items: Iterable[tuple[T, InvoiceDocument | None]]) -> Iterator[tuple[T, Result]]:
        """(tag, result) per item, in order.  Reads ``items`` only so far ahead
        as the workers need: the PDFs waiting to be taken stay few."""
        finished = False
        try:
            for tag, doc in items:
                self.submit(tag, doc)
                yield from self.ready()
                while self._outstanding() > self._window():
                    if not self._tasks:  # the pool was given up with a task still filling: render it now
                        self._close_open()
                    self._settle(self._tasks[0], wait=True)
                    yield from self._pop()
            yield from self.drain()
            finished = True
        finally:
            if not finished:  # the caller stopped early: its leftovers must not reach the next render
                self._tasks.clear()
                self._open = None

    def close(self) -> None:
        """Stop the workers once their task in hand (or their start) is done;
        what is still queued here is dropped.  (Not leaving them to finish
        alone: a worker still starting needs the pool's semaphores.)"""
        self._drop_pool(wait=True)
        self._tasks.clear()
        self._open = None

    # -- inside -----------------------------------------------------------------
    # A task is rendered (results), in a worker (future), or waiting: for a
    # worker to be up (the caller renders it if it comes first), or `isolate`
    # after a worker died.  Below POOL_MIN the caller renders each as it
    # comes, as it did before there was a pool.  No
    # future is ever cancelled: Python 3.11's pool hangs when a worker dies
    # while a cancelled future is queued (it stops failing the others).

    def _window(self) -> int:
        """Documents taken in ahead of the caller: enough to keep the workers busy."""
        return 0 if self._unusable else self.workers * AHEAD * CHUNK

    def _outstanding(self) -> int:
        return sum(t.count for t in self._tasks) + (self._open.count if self._open else 0)

    def _close_open(self) -> None:
        task, self._open = self._open, None
        if task is None:
            return
        if not task.count:
            task.results = task.merge([])
        self._tasks.append(task)
        self._top_up()

    def _waiting(self) -> Iterator[_Task]:
        return (t for t in self._tasks if t.results is None and t.future is None and not t.isolate)

    def _in_flight(self) -> list[Any]:
        return [t.future for t in self._tasks if t.results is None and t.future is not None and not t.future.done()]

    def _ready_workers(self) -> int:
        return self._up.value if self._up is not None else 0

    def _pool_due(self) -> bool:
        return not self._unusable and (self.expected is not None or self.seen >= self.pool_min)

    def _top_up(self) -> None:
        """Hand waiting tasks, in order, to the workers that are up (QUEUED each)."""
        if not self._pool_due() or self._pool() is None:
            return
        if self._ping.done() and self._ping.exception() is not None and not self._ready_workers():
            self._give_up(self._ping.exception())  # not one worker could start: the machine's trouble
            return
        room = QUEUED * self._ready_workers() - len(self._in_flight())
        for task in self._waiting():
            if room <= 0 or not self._send(task):
                return
            room -= 1

    def _settle(self, head: _Task, *, wait: bool) -> bool:
        """Get the head task's results; without `wait`, only if that needs no waiting."""
        while head.results is None:
            if head.isolate:
                head.results = self._one_by_one(head)
            elif head.future is not None:
                if head.future.done():
                    self._collect(head)
                elif not wait:
                    return False
                elif not self._steal():
                    self._wait_any()
            elif self._unusable or not self._pool_due() or self._caller_renders is not False:
                head.results = self._here(head.docs)  # a small batch, or no worker up yet: here
            elif wait:
                self._wait_any()
            else:
                return False
        return True

    def _steal(self) -> bool:
        """Rather than wait, render here the first task no worker has, while
        workers are starting (or with a core to spare)."""
        if self._caller_renders is None:
            if not self._spare_core and self._ready_workers() >= self.workers:
                return False
        elif not self._caller_renders:
            return False
        task = next(self._waiting(), None)
        if task is None:
            return False
        task.results = self._here(task.docs)
        return True

    def _wait_any(self) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait

        flying = self._in_flight()
        if flying:
            wait(flying, timeout=0.05, return_when=FIRST_COMPLETED)  # timeout: a worker may come up meanwhile
        else:
            time.sleep(0.01)  # no worker up yet (the caller does not render)
        self._top_up()

    def _send(self, task: _Task) -> bool:
        from concurrent.futures.process import BrokenProcessPool

        try:
            task.future = self._executor.submit(_render_chunk, task.to_render())
        except BrokenProcessPool:  # a worker died while idle: what it had goes one by one
            self._broken()
            return False
        except Exception as exc:  # cannot start a process at all (limits, sandbox)
            self._give_up(exc)
            return False
        return True

    def _collect(self, task: _Task) -> None:
        from concurrent.futures.process import BrokenProcessPool

        try:
            pid, rendered = task.future.result()
        except BrokenProcessPool:
            self._broken()  # this task and the others in flight: one by one
            return
        except Exception:  # the task could not travel (a document that does not pickle): here
            task.future = None
            task.results = self._here(task.docs)
            return
        task.results = task.merge(rendered)
        self.pids[pid] += len(rendered)

    def _pop(self) -> Iterator[tuple[T, Result]]:
        task = self._tasks.popleft()
        assert task.results is not None
        yield from zip(task.tags, task.results)

    def _pool(self) -> Any:
        """The worker pool, started on first use (None: it cannot be)."""
        if self._executor is None and not self._unusable:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            try:
                # spawn, not fork: a forked child would share the caller's store connection and threads.
                context = multiprocessing.get_context("spawn")
                self._up = context.Value("i", 0)
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=context,
                    initializer=_worker_start,
                    initargs=(rendering_path() == FALLBACK, os.getpid(), self._up),
                )
                # One ping per worker: the pool starts a process per task it cannot hand to an idle one.
                self._ping = [self._executor.submit(os.getpid) for _ in range(self.workers)][0]
            except Exception as exc:
                self._give_up(exc)
        return self._executor

    def _drop_pool(self, wait: bool = False, *, kill: bool = False) -> None:
        executor, self._executor = self._executor, None
        self._up = self._ping = None
        if executor is None:
            return
        if kill:
            # A broken pool's manager thread stops the workers left with
            # SIGTERM, which they ignore, then waits for them: one blocked
            # handing back its PDFs (or waiting for work) would hold that
            # thread, and with it this process's exit, forever.
            for process in list((getattr(executor, "_processes", None) or {}).values()):
                process.kill()
        executor.shutdown(wait=wait)

    def _give_up(self, exc: BaseException) -> None:
        log.warning("PDF worker processes unavailable, rendering in this process: %s", exc)
        self._unusable = True
        self._drop_pool()
        for task in self._tasks:  # what the workers have not finished is rendered here
            if task.results is None and task.future is not None and not task.future.done():
                task.future = None

    def _broken(self) -> None:
        """A worker died and the pool with it, failing every task it had.
        Those finished before are kept; the others go one by one."""
        self._drop_pool(kill=True)
        for task in self._tasks:
            if task.results is None and task.future is not None:
                future, task.future = task.future, None
                if future.done() and future.exception() is None:
                    pid, rendered = future.result()
                    task.results = task.merge(rendered)
                    self.pids[pid] += len(rendered)
                else:
                    task.isolate = True
        self.restarts += 1
        if self.restarts >= MAX_RESTARTS:
            self._give_up(RuntimeError(f"PDF workers died {self.restarts} times"))

    def _one_by_one(self, task: _Task) -> list[Result]:
        """A task in flight when a worker died: each document alone in a
        fresh pool, so the one that kills a worker is found and reported."""
        from concurrent.futures.process import BrokenProcessPool

        out: list[Result] = []
        for doc in task.to_render():
            pool = self._working_pool()
            if pool is None:
                out += self._here([doc])
                continue
            try:
                pid, rendered = pool.submit(_render_chunk, [doc]).result()
            except BrokenProcessPool:
                self._broken()
                out.append(RenderFailed("the process rendering its PDF stopped (killed, or out of memory)"))
                continue
            except Exception:
                out += self._here([doc])
                continue
            self.pids[pid] += 1
            out += rendered
        task.isolate = False
        return task.merge(out)

    def _working_pool(self) -> Any:
        """A pool with a worker up: one that cannot even start its processes
        is the machine's trouble, not a document's, and is given up."""
        pool = self._pool()
        if pool is not None:
            try:
                self._ping.result()
            except Exception as exc:
                self._give_up(exc)
                return None
        return self._executor

    def _here(self, docs: list[InvoiceDocument | None]) -> list[Result]:
        out: list[Result] = []
        for doc in docs:
            if doc is None:
                out.append(None)
                continue
            try:
                out.append(self._render(doc))
            except Exception as exc:  # one bad document never stops the batch
                out.append(exc)
        self.pids[os.getpid()] += sum(doc is not None for doc in docs)
        return out


# -- in the worker processes ------------------------------------------------------


def _render_chunk(docs: list[InvoiceDocument]) -> tuple[int, list[Result]]:
    out: list[Result] = []
    for doc in docs:
        try:
            out.append(render_invoice(doc))
        except Exception as exc:  # the document's result, not the task's
            out.append(_portable(exc))
    return os.getpid(), out


def _portable(exc: Exception) -> Exception:
    """The exception itself if it survives pickling, else its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RenderFailed(f"{type(exc).__name__}: {exc}")


def _worker_start(fallback: bool, parent: int, up: Any) -> None:
    import signal
    import threading
    import warnings

    for sig in (signal.SIGINT, signal.SIGTERM):  # the caller stops us after its item in hand
        signal.signal(sig, signal.SIG_IGN)
    logging.getLogger("tui_billing").addHandler(logging.NullHandler())  # the caller logs; the console owns stderr
    warnings.simplefilter("ignore")
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    if fallback:
        use_fallback(True)
    _render_module._fonts()  # parsed before the worker says it is up
    with up.get_lock():
        up.value += 1


def _exit_with(parent: int) -> None:
    """A killed caller (SIGKILL) cannot shut the pool down: leave with it."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
