"""Which job loops are alive on the open store (no Textual: the CLI may use it).

Read from the JobLock rows the loops keep (lock.py): the lock or
registration row (holder, heartbeat every 15 s) and the "pass:" row beside it
(when the loop last finished a pass).  A loop is alive when its heartbeat is
younger than STALE_AFTER and, on this host, its process still exists.

    loop_status()            -> LoopStatus (every registered loop, alive or not)
    LoopStatus.words(here)   "jobs: this console, pass 2 min ago" /
                             "jobs: billing-01:4711, pass just now" /
                             "no job loop: approved invoices wait"
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass

from ..store.models import JobLock
from .base import _pid_namespace, real_now
from .lock import LOCK_NAME, PASS_PREFIX, STALE_AFTER, Holder

NONE_WORDS = "no job loop: approved invoices wait"


@dataclass(frozen=True)
class LoopInfo:
    name: str  # the JobLock row: "jobs" (SQLite) or "jobs:<random>" (PostgreSQL)
    holder: Holder
    heartbeat_at: dt.datetime  # naive UTC, the real clock (never --now)
    last_pass_at: dt.datetime | None  # when it last finished a pass; None: first pass running
    alive: bool
    here: bool  # run by this process (the console asking)

    @property
    def where(self) -> str:
        """host:pid, as an operator types it into ssh and kill."""
        return f"{self.holder.host}:{self.holder.pid}" if self.holder.pid else self.holder.host


@dataclass(frozen=True)
class LoopStatus:
    loops: tuple[LoopInfo, ...]  # every registered loop, oldest heartbeat first
    checked_at: dt.datetime  # naive UTC, real clock

    @property
    def alive(self) -> tuple[LoopInfo, ...]:
        return tuple(loop for loop in self.loops if loop.alive)

    @property
    def running(self) -> bool:
        return bool(self.alive)

    @property
    def here(self) -> LoopInfo | None:
        """The loop this process runs, if it is alive."""
        return next((loop for loop in self.alive if loop.here), None)

    @property
    def others(self) -> tuple[LoopInfo, ...]:
        """Alive loops run by other processes (another console, `jobs run`, other hosts)."""
        return tuple(loop for loop in self.alive if not loop.here)

    @property
    def last_pass_at(self) -> dt.datetime | None:
        passes = [loop.last_pass_at for loop in self.alive if loop.last_pass_at]
        return max(passes) if passes else None

    def where(self, here: str = "this process") -> str:
        """Where the loops run: "this console", "billing-01:4711", "billing-01:4711 +2"."""
        alive = sorted(self.alive, key=lambda loop: not loop.here)  # ours first
        if not alive:
            return ""
        first = here if alive[0].here else alive[0].where
        return first + (f" +{len(alive) - 1}" if len(alive) > 1 else "")

    def words(self, here: str = "this process") -> str:
        """One short line for a header (fits 80 columns with a screen title)."""
        if not self.running:
            return NONE_WORDS
        last = self.last_pass_at
        when = f"pass {ago(self.checked_at - last)}" if last else "first pass running"
        return f"jobs: {self.where(here)}, {when}"


def ago(delta: dt.timedelta) -> str:
    """'just now', '2 min ago', '3 h ago', '2 d ago' (a pass is due every minute)."""
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def _is_here(holder: Holder) -> bool:
    return holder.host == socket.gethostname() and holder.pid == os.getpid() and holder.pidns == _pid_namespace()


def loop_status(now: dt.datetime | None = None) -> LoopStatus:
    """Every job loop registered on the open store, and whether it is alive.

    One query.  `now` is the real clock (heartbeats never follow --now)."""
    now = now or real_now()
    rows = list(
        JobLock.select().where(
            (JobLock.name == LOCK_NAME)
            | JobLock.name.startswith(LOCK_NAME + ":")
            | JobLock.name.startswith(PASS_PREFIX + LOCK_NAME)
        )
    )
    passes = {r.name[len(PASS_PREFIX) :]: r for r in rows if r.name.startswith(PASS_PREFIX)}
    loops = []
    for row in sorted((r for r in rows if not r.name.startswith(PASS_PREFIX)), key=lambda r: r.heartbeat_at):
        holder = Holder.parse(row.holder)
        done = passes.get(row.name)
        last_pass = done.heartbeat_at if done is not None and done.holder == row.holder else None
        alive = row.heartbeat_at >= now - STALE_AFTER and not holder.dead()
        loops.append(LoopInfo(row.name, holder, row.heartbeat_at, last_pass, alive, _is_here(holder)))
    return LoopStatus(tuple(loops), now)


__all__ = ["LoopInfo", "LoopStatus", "NONE_WORDS", "ago", "loop_status"]
