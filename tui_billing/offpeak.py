"""The off-peak window (default 01:00–05:00 local time) for heavy reissues.

One reading of the window's settings, `parse_window`, serves both the
`settings` command (which refuses what it cannot read) and the job loop
(which uses what it reads): a value the settings accept is a window the jobs
can open.
"""

from __future__ import annotations

import datetime as dt
import re

from .clock import Clock
from .errors import ConfigError

# "HH:MM" in the billing zone's wall-clock time: ASCII digits, no seconds, no
# offset ("01:00Z" or "01:00+05:00" would be an aware time that the job loop
# cannot compare with the local clock).
_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])", re.ASCII)


def parse_hhmm(name: str, text: str) -> dt.time:
    """One time of the window, 'HH:MM' (00:00–23:59), local to the billing zone."""
    value = (text or "").strip()
    m = _HHMM.fullmatch(value)
    if not m:
        raise ConfigError(
            name, f"{text!r} is not a time like 01:00 (HH:MM, 00:00 to 23:59, in the billing time zone; no offset)"
        )
    return dt.time(int(m.group(1)), int(m.group(2)))


def parse_window(start: str, end: str, *, changing: str = "offpeak_start") -> tuple[dt.time, dt.time]:
    """(start, end) of the window; refused when it could never open (start == end).
    `changing`: the setting being changed, named when the pair is refused."""
    s, e = parse_hhmm("offpeak_start", start), parse_hhmm("offpeak_end", end)
    if s == e:
        raise ConfigError(
            changing, f"the window {start.strip()}–{end.strip()} would never open (start and end are the same time)"
        )
    return s, e


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
