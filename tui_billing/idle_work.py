"""What the console does while the admin reads, never while keys come: build
the finder (F3) and run Python's full garbage collections.

Python collects cyclic garbage in three generations; a full collection walks
every object alive and, in the console, every Strip and cache Textual threw
away meanwhile: 40-100 ms at a time, whenever it came, so a next page took up
to 0.17 s. Once the first page is shown the objects the start made (modules,
styles, screens) are frozen out of the collections (gc.freeze: they live as
long as the console) and the automatic full collection is left off; one runs
after a second without a key, and at least every FULL_EVERY seconds. The
young generations stay automatic (a few ms each). `stop` puts it all back
(a test's console is collected like any object).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

IDLE = 1.0  # seconds without a key: the admin reads
FULL_EVERY = 60.0  # a full collection at least this often, keys or not
_NEVER = 1 << 30  # gc threshold for full collections: not automatic


class IdleWork:
    def __init__(self, app: Any, prepare: Callable[[], None]) -> None:
        self.app = app
        self.prepare = prepare  # builds what F3 shows, once (a no-op after)
        self.last_key = 0.0  # time.monotonic() of the last key
        self.last_full = time.monotonic()
        self.keys_since_full = False
        self.saved: tuple[int, int, int] | None = None  # the thresholds before start()

    def key(self) -> None:
        self.last_key = time.monotonic()
        self.keys_since_full = True

    def start(self) -> None:
        if self.saved is not None:
            return
        gc.freeze()
        self.saved = gc.get_threshold()
        gc.set_threshold(self.saved[0], self.saved[1], _NEVER)
        self.app.set_interval(IDLE / 2, self.tick)

    def stop(self) -> None:
        if self.saved is None:
            return
        gc.set_threshold(*self.saved)
        gc.unfreeze()
        self.saved = None

    def tick(self) -> None:
        now = time.monotonic()
        overdue = now - self.last_full >= FULL_EVERY
        if now - self.last_key < IDLE and not overdue:
            return
        if self.keys_since_full or overdue:
            gc.collect()
            self.last_full, self.keys_since_full = now, False
        if now - self.last_key >= IDLE:
            self.prepare()
