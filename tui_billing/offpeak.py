"""The off-peak window (default 01:00–05:00 local time) for heavy reissues."""
from __future__ import annotations

import datetime as dt

from .config import Clock


def in_window(local: dt.datetime, start: dt.time, end: dt.time) -> bool:
    t = local.time()
    if start <= end:
        return start <= t < end
    return t >= start or t < end  # window crosses midnight, e.g. 22:00–04:00


def next_window_start(clock: Clock, start: dt.time, end: dt.time) -> dt.datetime:
    """When the nearest window opens (now, if it is open), as naive UTC."""
    local = clock.local()
    if in_window(local, start, end):
        return clock.now()
    candidate = local.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    if candidate <= local:
        candidate += dt.timedelta(days=1)
    return clock.to_utc(candidate)
