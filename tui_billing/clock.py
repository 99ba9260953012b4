"""The clock: naive UTC in the store, shown in the billing time zone; --now
fixes it for a whole command.

Imports nothing of tui_billing but errors.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError


def system_zone_name() -> str:
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        return name
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    return "UTC"


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or system_zone_name())
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("timezone", f"{name!r} is not a known time zone") from None


NOW_YEARS = (1970, 9000)  # --now: far enough from year 9999 that due dates and deadlines still fit


def parse_now(text: str, tz: ZoneInfo) -> dt.datetime:
    """--now ISO 8601: with an offset as given, without one in the billing zone."""
    raw = (text or "").strip()
    if not raw:
        raise ConfigError("--now", "is empty; give an ISO 8601 date-time like 2026-03-01T10:00")
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError("--now", f"{text!r} is not an ISO 8601 date-time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    try:
        utc = value.astimezone(dt.UTC).replace(tzinfo=None)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not NOW_YEARS[0] <= utc.year <= NOW_YEARS[1]:
        raise ConfigError("--now", f"{text!r} is out of range (years {NOW_YEARS[0]} to {NOW_YEARS[1]})")
    return utc


@dataclass
class Clock:
    """What time it is for this command: fixed by --now, else the real clock."""

    tz: ZoneInfo = field(default_factory=lambda: zone(""))
    fixed: dt.datetime | None = None  # naive UTC

    def now(self) -> dt.datetime:
        if self.fixed is not None:
            return self.fixed
        return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)

    def local(self, moment: dt.datetime | None = None) -> dt.datetime:
        """A stored (naive UTC) time as local wall-clock time, naive."""
        moment = self.now() if moment is None else moment
        return moment.replace(tzinfo=dt.UTC).astimezone(self.tz).replace(tzinfo=None)

    def to_utc(self, local: dt.datetime) -> dt.datetime:
        return local.replace(tzinfo=self.tz).astimezone(dt.UTC).replace(tzinfo=None)

    def today(self) -> dt.date:
        return self.local().date()
