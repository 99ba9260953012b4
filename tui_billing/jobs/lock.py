"""Job loops and the store: who runs, with a heartbeat (JobLock rows).

SQLite (LoopLock): one job loop per store.  SQLite has no row locks, so two
loops could not split the work; the second one is refused (or waits).

PostgreSQL (LoopRegistration): several loops at once, on any hosts.  Each
registers its own JobLock row ("jobs:<random>") and refreshes it; the jobs
claim every item they work on (FOR UPDATE SKIP LOCKED, claimed_by leases,
queued -> sending), so the loops split the work and no item is done twice.

The holder is "host|pid|process start|random|pid namespace".  A second loop is refused
while the holder's heartbeat is fresh, unless the holder is a process on this
host that no longer exists (killed: no need to wait for the heartbeat to go
stale).  A heartbeat older than STALE_AFTER (a hung loop, or a loop on
another host that died) can be taken over.

Beside its lock row every loop keeps a "pass:<lock name>" row (same holder):
its heartbeat_at is when the loop last finished a pass (every due job run to
the end).  status.loop_status() reads both to say which loops are alive.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import threading
from dataclasses import dataclass

from peewee import fn

from ..store.models import JobLock, database
from .base import _pid_namespace, real_now, shared_store

LOCK_NAME = "jobs"
PASS_PREFIX = "pass:"  # "pass:jobs" (SQLite), "pass:jobs:<random>" (PostgreSQL): last pass finished
STALE_AFTER = dt.timedelta(minutes=2)
HEARTBEAT_EVERY = 15.0  # seconds


def _proc_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), or ''."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except OSError:
        return ""
    fields = data.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except OSError:
        return ""
    fields = data.rsplit(")", 1)[-1].split()
    return fields[0] if fields else ""


def _host() -> str:
    return socket.gethostname()


def make_holder() -> str:
    pid = os.getpid()
    return f"{_host()}|{pid}|{_proc_start(pid)}|{secrets.token_hex(6)}|{_pid_namespace()}"[:200]


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int | None
    start: str
    pidns: str = ""

    @classmethod
    def parse(cls, text: str) -> "Holder":
        parts = text.split("|")
        pid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        return cls(parts[0], pid, parts[2] if len(parts) > 2 else "", parts[4] if len(parts) > 4 else "")

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}" if self.pid else self.host

    def dead(self) -> bool:
        """True only when we can tell for sure: same host and pid space, process gone."""
        if self.host != _host() or not self.pid or self.pidns != _pid_namespace():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # someone else's live process
        if _proc_state(self.pid) in ("Z", "X"):
            return True  # killed, not yet reaped
        start = _proc_start(self.pid)
        return bool(self.start and start and start != self.start)  # pid reused


def _note_pass(name: str, holder: str) -> None:
    """Record that the loop holding `name` just finished a pass (one writer per name)."""
    now = real_now()
    row = PASS_PREFIX + name
    n = JobLock.update(holder=holder, heartbeat_at=now).where(JobLock.name == row).execute()
    if n == 0:
        JobLock.insert(name=row, holder=holder, heartbeat_at=now).on_conflict_ignore().execute()


class LoopBusy(Exception):
    def __init__(self, holder: str, heartbeat_at: dt.datetime):
        self.holder = Holder.parse(holder)
        self.heartbeat_at = heartbeat_at
        age = max(int((real_now() - heartbeat_at).total_seconds()), 0)
        super().__init__(
            f"another job loop is already running on this store ({self.holder.describe()}, "
            f"last heartbeat {age} s ago); stop it first, or use --wait to wait for it"
        )


class LoopLock:
    """SQLite: the one job loop of the store (a second one is refused or waits)."""

    exclusive = True

    def __init__(self, name: str = LOCK_NAME, stale_after: dt.timedelta = STALE_AFTER):
        self.name = name
        self.stale_after = stale_after
        self.holder = make_holder()
        self.held = False
        self.took_over: str | None = None  # the previous holder, when taken over

    def try_acquire(self) -> None:
        """Take the lock or raise LoopBusy."""
        now = real_now()
        with database.atomic():
            row = JobLock.get_or_none(JobLock.name == self.name)
            if row is None:
                JobLock.insert(name=self.name, holder=self.holder, heartbeat_at=now).on_conflict_ignore().execute()
            elif row.holder != self.holder:
                stale = row.heartbeat_at < now - self.stale_after
                if not (stale or Holder.parse(row.holder).dead()):
                    raise LoopBusy(row.holder, row.heartbeat_at)
                n = (
                    JobLock.update(holder=self.holder, heartbeat_at=now)
                    .where((JobLock.name == self.name) & (JobLock.holder == row.holder))
                    .execute()
                )
                if n == 1:
                    self.took_over = row.holder
            row = JobLock.get_or_none(JobLock.name == self.name)
            if row is None or row.holder != self.holder:
                raise LoopBusy(row.holder if row else "?", row.heartbeat_at if row else now)
        self.held = True

    def acquire(self, *, wait: bool = False, stop=None, on_wait=None, poll: float = 1.0) -> bool:
        """Take the lock; with wait, poll until it is free (False if stopped)."""
        told = False
        while True:
            try:
                self.try_acquire()
                return True
            except LoopBusy as exc:
                if not wait:
                    raise
                if not told and on_wait is not None:
                    on_wait(exc)
                    told = True
            if stop is not None:
                if stop.wait(poll):
                    return False
            else:  # pragma: no cover
                threading.Event().wait(poll)

    def heartbeat(self) -> bool:
        """Refresh the heartbeat; False if another loop took the lock over."""
        n = (
            JobLock.update(heartbeat_at=real_now())
            .where((JobLock.name == self.name) & (JobLock.holder == self.holder))
            .execute()
        )
        self.held = n == 1
        return self.held

    def note_pass(self) -> None:
        """A pass finished (shown by the console: "pass 2 min ago")."""
        if self.held:
            _note_pass(self.name, self.holder)

    def release(self) -> None:
        if self.held:
            with database.atomic():
                JobLock.delete().where((JobLock.name == self.name) & (JobLock.holder == self.holder)).execute()
                # The store's one pass row: ours, or left by a holder we took over from.
                JobLock.delete().where(JobLock.name == PASS_PREFIX + self.name).execute()
            self.held = False


class LoopRegistration:
    """PostgreSQL: one of several job loops sharing the store.

    Never refuses.  Registers its own JobLock row (name "jobs:<random>") and
    keeps it fresh; on start it removes the registrations of loops that are
    gone (a process of this host that no longer exists, or a heartbeat older
    than STALE_AFTER).  Only bookkeeping: what keeps two loops from doing the
    same item are the claims each job makes on its rows.
    """

    exclusive = False

    def __init__(self, stale_after: dt.timedelta = STALE_AFTER):
        self.stale_after = stale_after
        self.holder = make_holder()
        self.name = f"{LOCK_NAME}:{secrets.token_hex(8)}"
        self.held = False
        self.took_over: str | None = None  # the exclusive lock has no meaning here
        self.reaped: list[str] = []  # registrations of dead loops removed at start

    def try_acquire(self) -> None:
        now = real_now()
        with database.atomic():
            for row in JobLock.select().where(JobLock.name.startswith(LOCK_NAME + ":")):
                if row.heartbeat_at < now - self.stale_after or Holder.parse(row.holder).dead():
                    n = JobLock.delete().where((JobLock.name == row.name) & (JobLock.holder == row.holder)).execute()
                    if n:
                        self.reaped.append(row.holder)
            # Pass rows of loops whose registration is gone (reaped now or before).
            live = JobLock.select(JobLock.name).where(JobLock.name.startswith(LOCK_NAME + ":"))
            gone = fn.SUBSTR(JobLock.name, len(PASS_PREFIX) + 1).not_in(live)
            JobLock.delete().where(JobLock.name.startswith(PASS_PREFIX + LOCK_NAME + ":") & gone).execute()
            JobLock.insert(name=self.name, holder=self.holder, heartbeat_at=now).execute()
        self.held = True

    def acquire(self, *, wait: bool = False, stop=None, on_wait=None, poll: float = 1.0) -> bool:
        self.try_acquire()
        return True

    def heartbeat(self) -> bool:
        """Refresh the registration; re-register if another loop took this one
        for dead (it hung longer than STALE_AFTER).  Never lost: the items in
        hand are protected by their own claims."""
        now = real_now()
        n = (
            JobLock.update(heartbeat_at=now)
            .where((JobLock.name == self.name) & (JobLock.holder == self.holder))
            .execute()
        )
        if n != 1:
            JobLock.insert(name=self.name, holder=self.holder, heartbeat_at=now).on_conflict_ignore().execute()
        self.held = True
        return True

    def note_pass(self) -> None:
        """A pass finished (shown by the console: "pass 2 min ago")."""
        if self.held:
            _note_pass(self.name, self.holder)

    def release(self) -> None:
        if self.held:
            with database.atomic():
                JobLock.delete().where((JobLock.name == self.name) & (JobLock.holder == self.holder)).execute()
                JobLock.delete().where(JobLock.name == PASS_PREFIX + self.name).execute()
            self.held = False


def loop_lock(shared: bool | None = None) -> LoopLock | LoopRegistration:
    """The right guard for the store: LoopLock on SQLite, LoopRegistration on PostgreSQL."""
    if shared is None:
        shared = shared_store()
    return LoopRegistration() if shared else LoopLock()


def running_loops() -> list[tuple[Holder, dt.datetime]]:
    """Every registered loop (SQLite: at most one), oldest heartbeat first."""
    rows = (
        JobLock.select()
        .where((JobLock.name == LOCK_NAME) | JobLock.name.startswith(LOCK_NAME + ":"))
        .order_by(JobLock.heartbeat_at)
    )
    return [(Holder.parse(r.holder), r.heartbeat_at) for r in rows]


def current_holder(name: str = LOCK_NAME) -> tuple[Holder, dt.datetime] | None:
    row = JobLock.get_or_none(JobLock.name == name)
    return (Holder.parse(row.holder), row.heartbeat_at) if row else None


class Heartbeat(threading.Thread):
    """Refreshes the lock every HEARTBEAT_EVERY seconds; sets `lost` if taken over."""

    def __init__(
        self, lock: LoopLock | LoopRegistration, lost: threading.Event, log=None, every: float = HEARTBEAT_EVERY
    ):
        super().__init__(name="tui-billing-jobs-heartbeat", daemon=True)
        self.lock, self.lost, self.log, self.every = lock, lost, log, every
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.wait(self.every):
                try:
                    ok = self.lock.heartbeat()
                except Exception as exc:  # a busy database: try again next beat
                    if self.log:
                        self.log("loop", action="heartbeat_failed", reason=f"{type(exc).__name__}: {exc}")
                    continue
                if not ok:
                    self.lost.set()
                    if self.log:
                        self.log("loop", action="lock_lost", reason="another loop took the job lock over")
                    return
        finally:
            if database.obj is not None:
                try:
                    database.obj.close()  # this thread's connection
                except Exception:
                    pass

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=10)
