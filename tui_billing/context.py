"""Who acts and what time it is (Ctx), and what a bulk operation reports
(BulkResult): passed through every layer, from the faces down to the jobs.

Imports nothing of tui_billing but the clock.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from .clock import Clock


def os_user() -> str:
    """The real user of this process, for the audit log: the passwd name of
    its real uid, or the uid as text when it has no passwd entry (containers).

    Never $LOGNAME or $USER: those are the caller's to set, so
    `LOGNAME=cfo tui-billing approve …` must not approve as "cfo".
    """
    getuid = getattr(os, "getuid", None)
    if getuid is None:  # pragma: no cover - not POSIX
        return getpass.getuser()
    uid = getuid()
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


SYSTEM_PREFIX = "job:"  # the job loop's actors ("job:dispatch"); no passwd name holds a colon


@dataclass
class Ctx:
    """Who acts and what time it is, for one command or one job tick.

    `actor` is what the audit log names ("alice", "alice (db billing)",
    "job:dispatch"); `role` is the actor's role as last checked by
    access.require (None in single-admin mode and for the job loop), written
    beside the actor in every audit event."""

    clock: Clock = field(default_factory=Clock)
    actor: str = field(default_factory=os_user)
    role: str | None = None

    @property
    def user(self) -> str:
        """The person acting: the OS user, without the database login beside it."""
        return self.actor.split(" (db ", 1)[0]

    @property
    def system(self) -> bool:
        """The job loop: a named system actor, not a person."""
        return self.actor.startswith(SYSTEM_PREFIX)


@dataclass
class BulkResult:
    done: list[str] = field(default_factory=list)  # invoice numbers
    failed: list[tuple[str, str]] = field(default_factory=list)  # (number, reason)

    def merge(self, other: "BulkResult") -> None:
        self.done.extend(other.done)
        self.failed.extend(other.failed)

    @property
    def ok(self) -> bool:
        return not self.failed


Progress = Callable[[int, int], None]  # (done so far, total)
