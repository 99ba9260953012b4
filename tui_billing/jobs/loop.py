"""The job loop: every job on its own interval (schedule).

SQLite: one loop per store (LoopLock; a second one is refused or waits).
PostgreSQL: any number of loops, on any hosts (LoopRegistration); every job
claims the rows it works on, so the loops split the work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .. import config_file, mail
from ..config_file import JobsConfig
from ..context import Ctx
from ..errors import ConfigError
from .base import JobLog, JobResult, release_all_claims, release_dead_claims, shared_store
from .counts import fold_counts
from .dispatch import deliver_outbox, dispatch_approved
from .lock import Heartbeat, LoopBusy, LoopLock, LoopRegistration, loop_lock
from .postpay import close_postpay, expire_payments
from .review import auto_approve_due, notify_admins, reissue_offpeak

# [jobs] is read and checked by config_file.py (one schema, one loader): the loop
# reads the typed JobsConfig.  The defaults and the job names live there too.
DEFAULT_INTERVAL = config_file.DEFAULT_INTERVAL  # seconds: "within minutes of approval"
DEFAULT_SLICE = config_file.DEFAULT_SLICE  # seconds one job may run before the others get their turn (loop mode)


@dataclass(frozen=True)
class JobSpec:
    name: str
    fn: Callable[..., JobResult]
    help: str


# In the order one pass runs them: what one job produces, the next consumes
# in the same pass (a closed postpay invoice of an "immediately" class is
# approved, then dispatched, then its email delivered).
JOBS: dict[str, JobSpec] = {
    s.name: s
    for s in (
        JobSpec("close_postpay", close_postpay, "close open postpay invoices on day 2 of the next period"),
        JobSpec("auto_approve", auto_approve_due, "approve invoices whose hold for review ran out"),
        JobSpec("reissue_offpeak", reissue_offpeak, "complete reissues in the off-peak window"),
        JobSpec("dispatch_approved", dispatch_approved, "queue the email of approved invoices and mark them sent"),
        JobSpec("expire_payments", expire_payments, "expire payments past their due date (invoice overdue)"),
        JobSpec("notify_admins", notify_admins, "email admins a digest of invoices newly waiting for review"),
        JobSpec("deliver_outbox", deliver_outbox, "send queued emails (retries with backoff)"),
        JobSpec("fold_counts", fold_counts, "fold the invoice counts' added rows (PostgreSQL)"),
    )
}


if tuple(JOBS) != config_file.JOB_NAMES:  # the [jobs] keys the schema accepts are these jobs, in this order
    raise RuntimeError(f"config_file.JOB_NAMES {config_file.JOB_NAMES} differ from the jobs {tuple(JOBS)}")


def jobs_config(config_jobs: JobsConfig | Mapping | None) -> JobsConfig:
    """The typed [jobs] section; a plain table (tests, embedding callers) is read by the same schema."""
    return config_jobs if isinstance(config_jobs, JobsConfig) else JobsConfig.from_mapping(config_jobs)


def intervals(config_jobs: JobsConfig | Mapping | None) -> dict[str, float | None]:
    """Seconds between runs per job ([jobs] table); None: the job is off (0 or "off")."""
    return dict(jobs_config(config_jobs).intervals)


def run_slice(config_jobs: JobsConfig | Mapping | None) -> float:
    """[jobs] max_run_seconds: how long one run of a job may take in loop mode
    before it stops between items and lets the other jobs run (it continues
    right after them).  Keeps mail flowing while a large batch is dispatched."""
    return jobs_config(config_jobs).max_run_seconds


def console_mode(config_jobs: JobsConfig | Mapping | None) -> str:
    """[jobs] console: does the console run the job loop itself?

    "auto" (default): when no other loop is alive on the store (checked at
    start and on every status poll); "on": always (SQLite: waits for the other
    loop to stop, like --jobs); "off": never (like --no-jobs)."""
    return jobs_config(config_jobs).console


class _Slice:
    """A job's stop signal: the loop's halt, or its time slice ran out."""

    def __init__(self, halt: "_Halt", seconds: float | None):
        self.halt = halt
        self.deadline = None if seconds is None else time.monotonic() + seconds

    @property
    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def is_set(self) -> bool:
        return self.halt.is_set() or self.expired

    def wait(self, timeout: float) -> bool:
        return self.halt.wait(timeout) or self.expired


class _Halt:
    """Stop when the caller says so or when the loop lost its lock."""

    def __init__(self, *events: threading.Event):
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)

    def wait(self, timeout: float) -> bool:
        step = 0.2
        waited = 0.0
        while not self.is_set() and waited < timeout:
            self.events[0].wait(min(step, timeout - waited))
            waited += step
        return self.is_set()


@dataclass
class LoopSummary:
    runs: int = 0
    done: int = 0
    failed: int = 0
    errors: int = 0  # a job that raised
    lost_lock: bool = False
    stopped: bool = False

    @property
    def ok(self) -> bool:
        return not (self.failed or self.errors or self.lost_lock)


class Runner:
    """Runs one job with its own actor ("job:<name>") and logs what happened."""

    def __init__(
        self,
        env,
        halt: _Halt,
        log: JobLog,
        transport,
        policy,
        *,
        holder: str | None = None,
        shared: bool = False,
        slice_seconds: float | None = None,
    ):
        self.env, self.halt, self.log = env, halt, log
        self.transport, self.policy = transport, policy
        self.holder, self.shared, self.slice_seconds = holder, shared, slice_seconds
        self.summary = LoopSummary()
        self.unfinished: list[str] = []  # jobs whose slice ran out with work left

    def run(self, name: str) -> None:
        if self.halt.is_set():
            return
        spec = JOBS[name]
        ctx = Ctx(clock=self.env.ctx.clock, actor=f"job:{name}")
        stop = _Slice(self.halt, self.slice_seconds)
        kwargs = {"stop": stop, "log": self.log}
        if name == "deliver_outbox":
            kwargs.update(transport=self.transport, policy=self.policy, holder=self.holder)
        self.summary.runs += 1
        try:
            if name == "deliver_outbox" and self.shared:
                # Several loops: messages a dead loop left "sending" go back to
                # the queue (its lease ran out, or its process is gone).
                requeued = mail.recover_interrupted(now=ctx.clock.now())
                if requeued:
                    self.log(name, action="requeued", messages=requeued, reason="sender gone or lease expired")
            result = spec.fn(ctx, **kwargs)
        except Exception as exc:  # the loop survives any one job's failure
            self.summary.errors += 1
            self.log(name, action="error", reason=f"{type(exc).__name__}: {exc}")
            return
        self.summary.done += result.done
        self.summary.failed += result.failed
        if stop.expired and not self.halt.is_set() and name not in self.unfinished:
            self.unfinished.append(name)

    def take_unfinished(self) -> list[str]:
        names, self.unfinished = self.unfinished, []
        return names


def run_loop(
    env,
    stop_event: threading.Event,
    *,
    once: bool = False,
    wait: bool = True,
    only: list[str] | None = None,
    log: JobLog | Callable[[str], None] | None = None,
    heartbeat_every: float | None = None,
    on_pass: Callable[[], None] | None = None,
) -> LoopSummary:
    """The job loop, headless (`tui-billing jobs run`) or in the console.

    Runs every job once at start, then each on its interval, until
    `stop_event` is set; the item in hand is finished first.  `once` runs
    every job once and returns (cron).  Only one loop runs per store: with
    `wait` (the console's default) it waits for the running one to stop;
    without, LoopBusy is raised.  `log` is a JobLog, or a callable that
    receives each line (the console's log panel); default: stderr.
    Every finished pass is recorded beside the lock (status.loop_status shows
    it) and then `on_pass` is called (the console refreshes its header).
    """
    if not isinstance(log, JobLog):
        log = JobLog(env.ctx.clock, write=log) if callable(log) else JobLog(env.ctx.clock)
    config = env.config  # config_file.Config: every [jobs] and [mail] value was checked when it was loaded
    every = intervals(config.jobs)
    names = [n for n in JOBS if (only is None or n in only) and every[n] is not None]
    if only:
        unknown = [n for n in only if n not in JOBS]
        if unknown:
            raise ConfigError("--job", f"{unknown[0]!r} is not a job; known: {', '.join(JOBS)}")
    slice_seconds: float | None = run_slice(config.jobs)
    if once:
        slice_seconds = None  # --once: every job runs to the end of its work
    transport = mail.transport_from_config(config.mail)
    policy = mail.RetryPolicy.from_config(config.mail)

    lost = threading.Event()
    halt = _Halt(stop_event, lost)
    shared = shared_store()
    lock = loop_lock(shared)
    summary = LoopSummary()
    if not lock.acquire(wait=wait, stop=stop_event, on_wait=lambda exc: log("loop", action="waiting", reason=str(exc))):
        summary.stopped = True
        return summary
    beat = Heartbeat(lock, lost, log, **({"every": heartbeat_every} if heartbeat_every else {}))
    beat.start()
    runner = Runner(env, halt, log, transport, policy, holder=lock.holder, shared=shared, slice_seconds=slice_seconds)
    try:
        if lock.took_over:
            log("loop", action="took_over", previous=lock.took_over)
        for previous in getattr(lock, "reaped", ()):
            log("loop", action="removed_dead_loop", previous=previous)
        if shared:
            # Other loops may be running: only what dead ones left behind.
            requeued = mail.recover_interrupted(now=env.ctx.clock.now())
            released = release_dead_claims()
        else:
            # SQLite: we hold the store's only loop lock, no other sender runs.
            requeued = mail.recover_interrupted(exclusive=True, now=env.ctx.clock.now())
            released = release_all_claims()
        log(
            "loop",
            action="started",
            mode="once" if once else "loop",
            holder=lock.holder,
            store="shared" if shared else "exclusive",
            transport=transport.describe(),
            jobs=",".join(names),
            requeued=requeued or None,
            released_claims=released or None,
        )
        for name in names:  # the first pass: everything, in order
            runner.run(name)
        if not once and not runner.unfinished:
            _note_pass(lock, halt, log, on_pass)
        if not once:
            import schedule

            scheduler = schedule.Scheduler()
            for name in names:
                scheduler.every(every[name]).seconds.do(runner.run, name)  # type: ignore[arg-type]  # float seconds; on: not None
            ran = bool(runner.unfinished)  # jobs ran since the last pass was noted
            while not halt.is_set():
                before = runner.summary.runs
                scheduler.run_pending()
                again = runner.take_unfinished()
                for name in again:  # work left when its slice ran out: continue now
                    runner.run(name)
                ran = ran or runner.summary.runs != before
                if again:
                    continue
                if ran:  # every due job ran to the end: a pass (the console shows when)
                    _note_pass(lock, halt, log, on_pass)
                    ran = False
                idle = scheduler.idle_seconds
                halt.wait(min(max(idle if idle is not None else 1.0, 0.05), 1.0))
    finally:
        summary = runner.summary
        summary.lost_lock = lost.is_set()
        summary.stopped = stop_event.is_set()
        beat.stop()
        try:
            lock.release()
        except Exception as exc:  # the database went away: the heartbeat goes stale
            log("loop", action="release_failed", reason=f"{type(exc).__name__}: {exc}")
        log(
            "loop",
            action="lock_lost" if summary.lost_lock else "stopped" if summary.stopped else "finished",
            done=summary.done,
            failed=summary.failed,
            errors=summary.errors or None,
        )
    return summary


def _note_pass(lock, halt: _Halt, log: JobLog, on_pass: Callable[[], None] | None = None) -> None:
    """Record the end of a pass beside the lock; never stops the loop."""
    if halt.is_set():
        return
    try:
        lock.note_pass()
    except Exception as exc:  # a busy database: the next pass records it
        log("loop", action="pass_note_failed", reason=f"{type(exc).__name__}: {exc}")
        return
    if on_pass is not None:
        try:
            on_pass()
        except Exception:  # the console went away: not the loop's business
            pass


__all__ = [
    "JOBS",
    "LoopBusy",
    "LoopLock",
    "LoopRegistration",
    "LoopSummary",
    "run_loop",
    "intervals",
    "run_slice",
    "console_mode",
    "DEFAULT_INTERVAL",
    "DEFAULT_SLICE",
]
