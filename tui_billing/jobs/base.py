"""What every job shares: results, the log line format, stop checks, row claims."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..store.models import Invoice, database, ids_in, tuple_rows

Log = Callable[..., None]  # log(job, **fields)


@dataclass
class JobResult:
    done: int = 0
    failed: int = 0
    skipped: int = 0

    def merge(self, other: "JobResult") -> None:
        self.done += other.done
        self.failed += other.failed
        self.skipped += other.skipped


def null_log(job: str, **fields) -> None:
    pass


def stopped(stop) -> bool:
    return stop is not None and stop.is_set()


# --------------------------------------------------------------------------
# One greppable line per action:
#   2026-11-22T03:00:00Z job=auto_approve invoice=INV-2026-000123 action=approved

_PLAIN = re.compile(r"[A-Za-z0-9_.:/@<>+\-,()#]+")


def _value(value) -> str:
    if isinstance(value, dt.datetime):
        value = value.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = " ".join(str(value).split())  # never a line break inside a line
    if text and _PLAIN.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_line(at: dt.datetime, job: str, fields: dict) -> str:
    parts = [at.strftime("%Y-%m-%dT%H:%M:%SZ"), f"job={job}"]
    parts += [f"{key}={_value(value)}" for key, value in fields.items() if value is not None]
    return " ".join(parts)


class JobLog:
    """Writes format_line() lines to a stream (stderr) or hands them to `write`."""

    def __init__(self, clock, stream=None, write: Callable[[str], None] | None = None):
        self.clock = clock
        self.stream = stream
        self.write = write
        self._lock = threading.Lock()

    def __call__(self, job: str, **fields) -> None:
        line = format_line(self.clock.now(), job, fields)
        with self._lock:
            if self.write is not None:
                self.write(line)
                return
            stream = self.stream or sys.stderr
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass


# --------------------------------------------------------------------------
# Row claims: a job that takes a batch of invoices marks them with its name
# so a second caller (another loop on a PostgreSQL store) does not do the same
# (expensive) work meanwhile.  On PostgreSQL the batch is chosen with
# SELECT … FOR UPDATE SKIP LOCKED, so two loops claiming at the same moment
# take different rows instead of one of them finding "nothing to do".  The
# claim is a lease (CLAIM_LEASE): a loop that dies leaves claims that expire.
# Correctness never depends on it: every transition is guarded by itself.

CLAIM_LEASE = dt.timedelta(minutes=10)


def shared_store() -> bool:
    """True on PostgreSQL (row locks: several loops share the work), False on SQLite."""
    return bool(getattr(database.obj, "for_update", False))


def skip_locked(query):
    """`query` FOR UPDATE SKIP LOCKED where the database has row locks (PostgreSQL)."""
    return query.for_update(skip_locked=True) if shared_store() else query


def _pid_namespace() -> str:
    """Containers sharing a host name can still have separate pid spaces."""
    try:
        return os.readlink("/proc/self/ns/pid").replace("|", "_")
    except OSError:
        return ""


def _short_host() -> str:
    """This host in invoice claims: a readable start of its name and a hash of
    the whole name and the pid namespace.  Hosts whose long names share a
    start, hosts of one short name in different domains, and containers of
    one name with separate pid spaces must not pass for each other: a loop
    releases at its start the claims of this host's processes that are gone."""
    name = socket.gethostname()
    digest = hashlib.sha256(f"{name}|{_pid_namespace()}".encode()).hexdigest()[:8]
    return f"{name.split('.')[0][:12].replace(':', '_')}~{digest}"


def claimant(prefix: str = "") -> str:
    """ "<prefix><host>:<pid>:<random>" (prefix ends with ':')."""
    return f"{prefix}{_short_host()}:{os.getpid()}:{secrets.token_hex(4)}"[:64]


def real_now() -> dt.datetime:
    """Leases and heartbeats follow the real clock, never --now."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def claim_invoices(holder: str, cond, order, limit: int, exclude=()) -> list[int]:
    """Claim up to `limit` invoices matching `cond` that nobody else holds."""
    now = real_now()
    free = Invoice.claimed_by.is_null() | (Invoice.claimed_until < now) | (Invoice.claimed_by == holder)
    where = cond & free
    if exclude:
        where &= Invoice.id.not_in(list(exclude))
    with database.atomic():
        # PostgreSQL: rows another loop is claiming right now are skipped (it
        # gets them); once its claim commits they no longer match `free`.
        query = skip_locked(Invoice.select(Invoice.id).where(where).order_by(*order).limit(limit))
        ids = [i for (i,) in tuple_rows(query.tuples())]
        if not ids:
            return []
        (
            Invoice.update(claimed_by=holder, claimed_until=now + CLAIM_LEASE)
            .where(ids_in(Invoice.id, ids) & free)
            .execute()
        )
        mine = {
            i
            for (i,) in tuple_rows(
                Invoice.select(Invoice.id).where(ids_in(Invoice.id, ids) & (Invoice.claimed_by == holder)).tuples()
            )
        }
    return [i for i in ids if i in mine]


def release_invoices(holder: str, ids) -> None:
    ids = list(ids)
    for start in range(0, len(ids), 500):
        (
            Invoice.update(claimed_by=None, claimed_until=None)
            .where(ids_in(Invoice.id, ids[start : start + 500]) & (Invoice.claimed_by == holder))
            .execute()
        )


def release_all_claims() -> int:
    """At loop start on SQLite (the loop lock is held: no other loop runs):
    claims left by a dead loop."""
    return Invoice.update(claimed_by=None, claimed_until=None).where(Invoice.claimed_by.is_null(False)).execute()


def _claim_owner_dead(claim: str) -> bool:
    """A claim "<prefix>:<host>:<pid>:<random>" made by a process of this host that is gone."""
    parts = claim.split(":")
    if len(parts) < 4 or parts[-3] != _short_host() or not parts[-2].isdigit():
        return False
    try:
        os.kill(int(parts[-2]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def release_dead_claims() -> int:
    """At loop start on PostgreSQL (other loops may be running): only the
    claims of processes of this host that no longer exist.  Claims of loops
    elsewhere are left to expire (CLAIM_LEASE)."""
    holders = [
        c
        for (c,) in tuple_rows(
            Invoice.select(Invoice.claimed_by).distinct().where(Invoice.claimed_by.is_null(False)).tuples()
        )
    ]
    released = 0
    for claim in holders:
        if _claim_owner_dead(claim):
            released += Invoice.update(claimed_by=None, claimed_until=None).where(Invoice.claimed_by == claim).execute()
    return released
