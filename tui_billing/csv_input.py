"""CSV files handed over by another system: the rules every import shares.

The xDR import, the ERP's confirmations and a gateway's or bank's payments
file read their files the same way, so one file is refused for the same
reasons whichever command reads it:

- UTF-8 (a byte-order mark is accepted); a line with bytes that are not
  UTF-8 is refused naming that line.
- The first non-blank line is the header: exactly the import's column names,
  in any order, case and surrounding spaces ignored.  An unknown column is
  refused, so a column the import would silently drop never goes unnoticed.
- Blank lines are ignored; every other line must have as many fields as the
  header.

Errors name the line and the field (`RowError`); a file that cannot be read
at all raises `ImportFileError` (nothing written).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from .errors import FieldError, NotAllowed, Refused

T = TypeVar("T")
R = TypeVar("R")


class ImportFileError(Exception):
    """The file as a whole cannot be imported (missing, empty, bad header)."""

    def __init__(self, field_name: str, reason: str):
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


class BadField(Exception):
    """One field of one row is wrong (raised while a row is read, caught per row)."""

    def __init__(self, field_name: str, reason: str):
        self.field = field_name
        self.reason = reason


@dataclass
class RowError:
    line: int
    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "reason": self.reason}

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.reason}"


def open_input(path: Path) -> tuple[IO[bytes], int]:
    """The file opened for reading, and its size; ImportFileError naming why not."""
    try:
        size = path.stat().st_size
        return open(path, "rb"), size
    except FileNotFoundError:
        raise ImportFileError("file", f"{path} does not exist") from None
    except IsADirectoryError:
        raise ImportFileError("file", f"{path} is a directory") from None
    except OSError as exc:
        raise ImportFileError("file", f"{path}: {exc.strerror or exc}") from None


def decoded_lines(handle: IO[bytes], bad_lines: set[int]) -> Iterator[str]:
    """Binary lines decoded one by one, so a bad byte names its line (added to `bad_lines`)."""
    n = 0
    for raw in handle:
        n += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad_lines.add(n)
            text = raw.decode("utf-8", "replace")
        if n == 1 and text.startswith("\ufeff"):
            text = text[1:]
        yield text


def header_order(header: list[str], columns: tuple[str, ...]) -> list[int]:
    """For each of `columns`, its index in the file's header; ImportFileError when the header is not exactly them."""
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n not in columns]
    missing = [c for c in columns if c not in names]
    expected = ",".join(columns)
    if missing and len(unknown) == len(names):
        raise ImportFileError("header", f"line 1 must be the header {expected}; found {','.join(header)[:80]!r}")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ImportFileError("header", f"column {dup[0]!r} appears twice")
    if unknown:
        raise ImportFileError(
            "header", f"unknown column(s) {', '.join(map(repr, unknown))}: the header must be exactly {expected}"
        )
    if missing:
        raise ImportFileError("header", f"missing column(s) {', '.join(missing)}: the header must be {expected}")
    return [names.index(c) for c in columns]


_UTC_ZONES = {
    "UTC",
    "Etc/UTC",
    "Etc/UCT",
    "UCT",
    "Etc/Universal",
    "Universal",
    "Etc/Zulu",
    "Zulu",
    "GMT",
    "Etc/GMT",
    "Etc/GMT+0",
    "Etc/GMT-0",
    "Etc/GMT0",
    "GMT0",
    "GMT+0",
    "GMT-0",
    "Etc/Greenwich",
}


def time_parser(tz: dt.tzinfo | None) -> Callable[[str], dt.datetime]:
    """The reader of a `time` field: ISO 8601; with an offset taken as given, without one
    wall-clock time in `tz` (the billing time zone); returned as naive UTC."""
    utc = dt.UTC
    local_is_utc = tz is None or tz is utc or getattr(tz, "key", None) in _UTC_ZONES
    fromiso = dt.datetime.fromisoformat

    def parse(text: str) -> dt.datetime:
        if "\x00" in text:  # fromisoformat stops reading at a NUL: "…08:00\x00junk" would pass
            raise BadField("time", "contains a NUL byte")
        try:
            value = fromiso(text)
            if value.tzinfo is not None:
                return value.astimezone(utc).replace(tzinfo=None)
            if local_is_utc:
                return value
            return value.replace(tzinfo=tz).astimezone(utc).replace(tzinfo=None)
        except (ValueError, OverflowError):
            raise BadField("time", f"{text!r} is not an ISO 8601 date-time" if text else "is empty") from None

    return parse


Reject = Callable[[int, str, str, list[str]], None]  # (line, field, reason, the row's fields)


class CsvInput:
    """One import file being read: its header checked, then its rows in the
    header's column order, the unreadable ones handed to `reject`."""

    def __init__(self, path: Path, handle: IO[bytes], columns: tuple[str, ...]):
        self.path = path
        self.columns = columns
        self.bad_lines: set[int] = set()
        self.reader = csv.reader(decoded_lines(handle, self.bad_lines), strict=True)
        self.header: list[str] = []
        self.order: list[int] = []

    def read_header(self) -> None:
        reader = self.reader
        try:
            header = next(reader, None)
            while header == []:  # leading blank lines
                header = next(reader, None)
        except csv.Error as exc:
            raise ImportFileError("header", f"line {reader.line_num}: not valid CSV: {exc}") from None
        if self.bad_lines and min(self.bad_lines) <= reader.line_num:
            raise ImportFileError(
                "file", f"is not UTF-8 text (line {min(self.bad_lines)} has invalid bytes); save it as UTF-8"
            )
        if header is None or header == []:
            raise ImportFileError("file", f"{self.path.name} is empty: expected the header {','.join(self.columns)}")
        self.order = header_order(header, self.columns)
        self.header = [h.strip() for h in header]

    def rows(self, reject: Reject) -> Iterator[tuple[int, list[str], list[str]]]:
        """(line, fields in `columns` order, the row as read) of each readable
        data row; blank lines skipped; the others handed to `reject`."""
        reader, bad_lines = self.reader, self.bad_lines
        ncols = len(self.columns)
        order = self.order
        canonical = order == list(range(ncols))
        last_end = reader.line_num
        it = iter(reader)
        while True:
            try:
                row = next(it)
            except StopIteration:
                return
            except csv.Error as exc:
                line = last_end + 1
                last_end = reader.line_num
                reject(line, "row", f"not valid CSV: {exc}", [""] * ncols)
                continue
            line = last_end + 1
            last_end = reader.line_num
            if not row:
                continue  # a blank line
            if bad_lines and (
                line in bad_lines or (last_end > line and any(n in bad_lines for n in range(line + 1, last_end + 1)))
            ):
                reject(line, "row", "is not valid UTF-8 text", row)
                continue
            if len(row) != ncols:
                reject(line, "row", f"has {len(row)} fields, expected {ncols} ({','.join(self.columns)})", row)
                continue
            yield line, (row if canonical else [row[i] for i in order]), row


def read_small(
    path: str | Path, columns: tuple[str, ...], reject: Reject
) -> Iterator[tuple[int, list[str], list[str]]]:
    """Every readable row of a small file (ERP confirmations, payments), header checked first."""
    path = Path(path)
    handle, _ = open_input(path)
    with handle:
        source = CsvInput(path, handle, columns)
        source.read_header()
        yield from source.rows(reject)


class _Rollback(Exception):
    pass


@dataclass
class FileImport:
    """A small import file read whole, then applied in one transaction, all or
    nothing (the ERP's confirmations, a payments file): its row count and the
    errors of its bad rows, by line."""

    path: Path
    rows: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def committed(self) -> bool:
        return not self.errors

    def _unreadable(self, line: int, field_name: str, reason: str, _raw: list[str]) -> None:
        self.rows += 1
        self.errors.append(RowError(line, field_name, reason))

    def read(self, columns: tuple[str, ...], parse: Callable[..., T], key: Callable[[T], str], repeat: str) -> list[T]:
        """Every row through `parse(line, *fields)` (BadField or FieldError: that
        row's error); a row whose `key` an earlier row had is an error too
        (`repeat` says what it repeats: "{key} is on line {first} too")."""
        items: list[T] = []
        seen: dict[str, int] = {}
        for line, fields, _ in read_small(self.path, columns, self._unreadable):
            self.rows += 1
            try:
                item = parse(line, *fields)
            except (BadField, FieldError) as exc:
                self.errors.append(RowError(line, exc.field, exc.reason))
                continue
            first = seen.setdefault(key(item), line)
            if first != line:
                self.errors.append(RowError(line, "row", repeat.format(key=key(item), first=first)))
                continue
            items.append(item)
        return items

    def apply(self, items: list[T], apply: Callable[[T], R], line_of: Callable[[T], int], field_name: str) -> list[R]:
        """Each item through `apply` (one guarded transition), in one transaction:
        rolled back when any item is refused, each refusal a row error
        (`field_name`: the field a Refused names).  NotAllowed stops it all."""
        from .store.models import database

        done: list[R] = []
        try:
            with database.atomic():
                for item in items:
                    try:
                        done.append(apply(item))
                    except FieldError as exc:
                        self.errors.append(RowError(line_of(item), exc.field, exc.reason))
                    except NotAllowed:
                        raise  # the person, not the line: the whole file is refused
                    except Refused as exc:
                        self.errors.append(RowError(line_of(item), field_name, f"{exc.number} {exc.reason}"))
                if self.errors:
                    raise _Rollback()
        except _Rollback:
            done = []
        self.errors.sort(key=lambda e: e.line)
        return done
