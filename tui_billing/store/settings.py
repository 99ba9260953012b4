"""Read and write the store-wide settings and the number sequences."""

from __future__ import annotations

import datetime as dt

from ..config import DEFAULT_SETTINGS, StoreSettings, validate_setting
from .models import Sequence, Setting, database


def load_settings() -> StoreSettings:
    return StoreSettings({row.key: row.value for row in Setting.select()})


def save_setting(key: str, value: str) -> str:
    """Validate (config.validate_setting, against the other stored settings) and store."""
    value = validate_setting(key, value, load_settings())
    (
        Setting.insert(key=key, value=value)
        .on_conflict(conflict_target=[Setting.key], update={Setting.value: value})
        .execute()
    )
    return value


def ensure_defaults() -> StoreSettings:
    """Store the default of every setting the store lacks; return the settings.
    One read when none is missing (every command opens the store this way: no
    write per command)."""
    have = {row.key: row.value for row in Setting.select()}
    missing = [key for key in DEFAULT_SETTINGS if key not in have]
    for key in missing:
        Setting.insert(key=key, value=DEFAULT_SETTINGS[key]).on_conflict_ignore().execute()
    return load_settings() if missing else StoreSettings(have)


def reserve(name: str, count: int = 1) -> int:
    """Reserve `count` numbers of a sequence; return the first.

    Call inside a transaction: the UPDATE takes the row's write lock, so two
    admins (or loops) can never reserve the same numbers.
    """
    Sequence.insert(name=name, value=0).on_conflict_ignore().execute()
    Sequence.update(value=Sequence.value + count).where(Sequence.name == name).execute()
    last = Sequence.get_by_id(name).value
    return last - count + 1


def advance_sequence(name: str, at_least: int) -> None:
    """Move a sequence past numbers given out by other means (the demo's), never back."""
    Sequence.insert(name=name, value=0).on_conflict_ignore().execute()
    Sequence.update(value=at_least).where((Sequence.name == name) & (Sequence.value < at_least)).execute()


def format_number(fmt: str, seq: int, issued: dt.date) -> str:
    return fmt.format(year=issued.year, month=issued.month, seq=seq)


def next_invoice_numbers(fmt: str, issued: dt.date, count: int = 1) -> list[str]:
    with database.atomic():
        first = reserve("invoice", count)
    return [format_number(fmt, seq, issued) for seq in range(first, first + count)]
