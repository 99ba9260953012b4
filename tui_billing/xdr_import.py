"""xDR import: a CSV file of usage records -> the `xdr` table.

File format (UTF-8, a byte-order mark is accepted):

    xdr_id,account,service,time,quantity,amount

- The first line is the header: exactly these six column names (any order,
  case and surrounding spaces ignored).  Any other column is rejected, so a
  column the import would silently drop (say `currency`) never goes unnoticed.
- xdr_id: the source system's id, 1-64 characters, unique.  Ids already in
  the store are skipped and counted ("already imported"), never errors, so
  importing the same file twice adds nothing.  The same id twice in one file
  is an error.
- account: the account's numeric id, or its email address (compared without
  regard to case; it must belong to exactly one account).
- service: 1-60 characters.
- No text field may contain a NUL byte (PostgreSQL cannot store one): such a
  row is refused naming its line and field, the same on SQLite.
- time: ISO 8601 date-time.  With an offset (`Z`, `+02:00`) it is taken as
  given; without one it is wall-clock time in the billing time zone (the
  store's `timezone` setting), like `--now`.  Stored as UTC.
- quantity: a plain decimal, >= 0, at most 3 decimal places.
- amount: a plain decimal in the account's currency, at most 4 decimal
  places (rated usage is often sub-cent; invoice lines round the per-service
  sum half-up to the currency's minor unit).  Negative amounts (credit
  records) are allowed.
  "Plain decimal": optional '-', digits, optional '.' and digits; no
  exponent, no NaN/Infinity, no thousands separators, at most 12 integer digits.
- Blank lines are ignored; every other line must have exactly six fields.

Modes: atomic (default) imports the whole file or nothing; with
`skip_bad=True` the good rows are imported (committed per batch) and the bad
ones written to FILE.rejects.csv (original fields + a `reason` column),
created owner-only through an exclusive temp file (safefile), never through
a link planted at its name.

Duplicate-looking usage (issue 12): an imported row with the same account,
service, time, quantity and amount as an earlier row of the file or a record
already in the store, under another xdr_id, is imported all the same and
counted (`duplicates`, with up to DUPLICATE_EXAMPLES examples) -- re-sent
usage is a warning, not an error.  The first of identical rows is the
original and not counted.  Rows skipped as "already imported" are never
duplicates.  Checked once per batch, right after its INSERT: one query
matches each new row against older records (lower id) through the index
xdr(account_id, time).
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .csv_input import BadField, CsvInput, ImportFileError, RowError, open_input, time_parser
from .store.bulk import insert_rows
from .store.models import Account, Xdr, database, tuple_rows
from .text import TextError, check_stored

if TYPE_CHECKING:
    from .safefile import AtomicFile

COLUMNS = ("xdr_id", "account", "service", "time", "quantity", "amount")
MAX_ID = 64
MAX_SERVICE = 60
QUANTITY_PLACES = 3
AMOUNT_PLACES = 4  # store.fields.MONEY_SCALE
BATCH = 10_000
KEEP_ERRORS = 1000  # errors kept for the report; counts are always exact
DUPLICATE_EXAMPLES = 5  # duplicate-looking rows described in the report; the count is exact

_NUMBER = re.compile(r"(-?)([0-9]{1,12})(?:\.([0-9]{1,4}))?")
_LOOSE_NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


# The rules every import file shares live in csv_input (re-exported: callers name them here).
_RowError = BadField


@dataclass
class Duplicate:
    """An imported row that repeats another record under a different xdr_id."""

    line: int
    xdr_id: str
    repeats: str  # the xdr_id of the record it repeats (stored before, or an earlier line)

    def as_dict(self) -> dict:
        return {"line": self.line, "xdr_id": self.xdr_id, "repeats": self.repeats}

    def __str__(self) -> str:
        return f"line {self.line}: {self.xdr_id} repeats {self.repeats}"


@dataclass
class ImportResult:
    path: Path
    skip_bad: bool = False
    rows: int = 0  # data rows read (blank lines not counted)
    imported: int = 0
    existing: int = 0  # skipped: xdr_id already in the store
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)  # the first KEEP_ERRORS
    rejects_path: Path | None = None
    seconds: float = 0.0
    duplicates: int = 0  # imported rows repeating another record's account/service/time/quantity/amount
    duplicate_examples: list[Duplicate] = field(default_factory=list)  # the first DUPLICATE_EXAMPLES

    @property
    def errors_truncated(self) -> bool:
        return self.rejected > len(self.errors)

    @property
    def committed(self) -> bool:
        return self.skip_bad or self.rejected == 0

    def as_dict(self) -> dict:
        return {
            "file": str(self.path),
            "mode": "skip_bad" if self.skip_bad else "atomic",
            "rows": self.rows,
            "imported": self.imported if self.committed else 0,
            "already_imported": self.existing,
            "rejected": self.rejected,
            "errors": [e.as_dict() for e in self.errors],
            "errors_truncated": self.errors_truncated,
            "rejects_file": str(self.rejects_path) if self.rejects_path else None,
            "duplicates": {
                "count": self.duplicates if self.committed else 0,
                "examples": [d.as_dict() for d in self.duplicate_examples] if self.committed else [],
            },
            "seconds": round(self.seconds, 3),
        }


def rejects_path_for(path: Path) -> Path:
    """FILE.csv -> FILE.rejects.csv beside it."""
    stem = path.name[:-4] if path.name.lower().endswith(".csv") else path.name
    return path.with_name(stem + ".rejects.csv")


# --------------------------------------------------------------------------
# Field parsing: cheap checks first, a precise message only for bad values.

_POW10 = [10**n for n in range(8)]


def _scaled(text: str, places: int, name: str, *, negative: bool) -> int:
    """A plain decimal as an integer count of 10**-places units."""
    m = _NUMBER.fullmatch(text)
    if m is None:
        raise _RowError(name, _number_reason(text, places))
    sign, whole, frac = m.groups()
    if frac is None:
        value = int(whole) * _POW10[places]
    else:
        n = len(frac)
        if n > places:
            raise _RowError(name, _number_reason(text, places))
        value = int(whole + frac) * _POW10[places - n]
    if sign:
        if not negative and value:
            raise _RowError(name, f"{text!r} is negative")
        value = -value
    return value


def _number_reason(text: str, places: int) -> str:
    if not text:
        return "is empty"
    if text.lower().lstrip("+-") in ("nan", "snan", "inf", "infinity"):
        return f"{text!r} is not a number"
    plain = re.fullmatch(r"-?([0-9]+)(?:\.([0-9]+))?", text)
    if plain:
        if len(plain.group(1)) > 12:
            return f"{text!r} is too large (at most 12 digits before the decimal point)"
        return f"{text!r} has more than {places} decimal places"
    if _LOOSE_NUMBER.fullmatch(text):
        return (
            f"{text!r} is not a plain decimal (write digits with an optional '-' and '.': "
            "no '+', exponent, bare point or separators)"
        )
    return f"{text!r} is not a number"


def _account_map() -> dict[str, int | None]:
    """Account id (as text) and lower-cased email -> id; None: ambiguous email."""
    out: dict[str, int | None] = {}
    emails: dict[str, int | None] = {}
    for acc_id, email in tuple_rows(Account.select(Account.id, Account.email).tuples()):
        out[str(acc_id)] = acc_id
        key = (email or "").strip().lower()
        if key:
            emails[key] = None if key in emails else acc_id
    for key, value in emails.items():
        out.setdefault(key, value)
    return out


# --------------------------------------------------------------------------


class _Rollback(Exception):
    pass


class _Importer:
    def __init__(self, path: Path, skip_bad: bool, tz, progress, batch_size: int, keep_errors: int):
        self.path = path
        self.skip_bad = skip_bad
        self.progress = progress
        self.batch_size = batch_size
        self.keep_errors = keep_errors
        self.result = ImportResult(path=path, skip_bad=skip_bad)
        self.parse_time = time_parser(tz)
        self.accounts = _account_map()
        self.start_max = 0
        self.header: list[str] = []
        self.rejects_tmp: Path | None = None
        self._rejects: AtomicFile | None = None  # of FILE.rejects.csv
        self._rejects_file: Any = None
        self._rejects_writer: Any = None
        self.rejected_ids: dict[str, int] = {}  # ids of rejected rows: later copies are duplicates too
        self.batch: list[tuple] = []
        self.batch_lines: list[int] = []
        self.batch_raw: list[list[str]] = []
        self.batch_ids: dict[str, int] = {}

    # -- errors and rejects -------------------------------------------------
    def reject(self, line: int, field_name: str, reason: str, raw: list[str] | None, xid: str | None = None):
        res = self.result
        res.rejected += 1
        if len(res.errors) < self.keep_errors:
            res.errors.append(RowError(line, field_name, reason))
        if xid and xid not in self.rejected_ids:
            self.rejected_ids[xid] = line
        if self._rejects_writer is not None:
            self._rejects_writer.writerow([*(raw or []), f"line {line}: {field_name}: {reason}"])

    def open_rejects(self) -> None:
        """Opened before anything is written, so an unwritable directory fails early.

        Written to a fresh exclusive temp file beside the import file (never
        through a link planted at FILE.rejects.csv or at a temp name), owner
        only, renamed over FILE.rejects.csv when the run ends well."""
        from .safefile import AtomicFile

        final = rejects_path_for(self.path)
        if final.is_dir() and not final.is_symlink():
            raise ImportFileError("rejects", f"{final} is a directory")
        try:
            self._rejects = AtomicFile(final, text=True, newline="")
        except OSError as exc:
            raise ImportFileError("rejects", f"cannot write beside {self.path}: {exc.strerror or exc}") from None
        self.rejects_tmp = self._rejects.tmp
        self._rejects_file = self._rejects.file
        self._rejects_writer = csv.writer(self._rejects_file)
        self._rejects_writer.writerow([*self.header, "reason"])

    def finish_rejects(self, ok: bool) -> None:
        rejects = self._rejects
        if self._rejects_file is None or rejects is None:  # (set together by open_rejects)
            return
        final = rejects_path_for(self.path)
        if ok and self.result.rejected:
            self.result.rejects_path = rejects.commit()
            return
        rejects.discard()
        if ok and (final.exists() or final.is_symlink()):
            final.unlink()  # a rejects file always describes the last run (a link: the link goes, not its target)

    # -- the batch ----------------------------------------------------------
    def flush(self) -> None:
        if not self.batch:
            return
        found = _existing_ids(list(self.batch_ids))
        rows = self.batch
        if found:
            keep = []
            for rec, line, raw in zip(self.batch, self.batch_lines, self.batch_raw):
                row_id = found.get(rec[0])
                if row_id is None:
                    keep.append(rec)
                elif row_id > self.start_max:  # inserted by this run: an earlier line had it
                    self.reject(
                        line, "xdr_id", f"duplicate xdr_id {rec[0]!r}: an earlier line of this file has it", raw
                    )
                else:
                    self.result.existing += 1
            rows = keep
        if self.skip_bad:
            with database.atomic():
                insert_rows(Xdr, list(COLUMNS), rows)
                self.count_duplicates(rows)
        else:
            insert_rows(Xdr, list(COLUMNS), rows)
            self.count_duplicates(rows)
        self.result.imported += len(rows)
        self.batch, self.batch_lines, self.batch_raw, self.batch_ids = [], [], [], {}

    def count_duplicates(self, rows: list[tuple]) -> None:
        """Count the rows just inserted that repeat an older record (see the module docstring).

        Called right after the batch's INSERT, in its transaction: one query
        finds, for each new row, the oldest record with a lower id and the same
        account, service, time, quantity and amount -- a record stored before,
        a row of an earlier batch (already written by this run) or an earlier
        row of this batch.
        """
        if not rows:
            return
        res = self.result
        for xid, original in _repeated(rows):
            res.duplicates += 1
            if len(res.duplicate_examples) < DUPLICATE_EXAMPLES:
                res.duplicate_examples.append(Duplicate(self.batch_ids[xid], xid, original))

    # -- the file -----------------------------------------------------------
    def run(self) -> ImportResult:
        started = time.perf_counter()
        handle, size = open_input(self.path)
        ok = False
        try:
            with handle:
                source = CsvInput(self.path, handle, COLUMNS)
                source.read_header()
                self.header = source.header
                if self.skip_bad:
                    self.open_rejects()
                    self.start_max = _max_xdr_id()
                    self.read_rows(source, handle, size)
                    self.flush()
                else:
                    try:
                        with database.atomic():
                            self.start_max = _max_xdr_id()
                            self.read_rows(source, handle, size)
                            self.flush()
                            if self.result.rejected:
                                raise _Rollback()
                    except _Rollback:
                        self.result.imported = 0  # rolled back: nothing was written
                ok = True
        finally:
            self.finish_rejects(ok)
        if self.progress:
            self.progress(size, size)
        self.result.seconds = time.perf_counter() - started
        return self.result

    def unreadable(self, line: int, field_name: str, reason: str, raw: list[str]) -> None:
        self.result.rows += 1
        self.reject(line, field_name, reason, raw)

    def read_rows(self, source: CsvInput, handle, size: int) -> None:
        res = self.result
        accounts = self.accounts
        parse_time = self.parse_time
        scaled = _scaled
        batch_size = self.batch_size
        progress = self.progress
        for line, fields, row in source.rows(self.unreadable):
            res.rows += 1
            xid, acc, service, when, qty, amount = fields
            xid = xid.strip()
            try:
                if not xid:
                    raise _RowError("xdr_id", "is empty")
                stored_text("xdr_id", xid, MAX_ID)
                first = self.batch_ids.get(xid) or self.rejected_ids.get(xid)
                if first is not None:
                    raise _RowError("xdr_id", f"duplicate xdr_id {xid!r} (first on line {first})")
                acc = acc.strip()
                account_id = accounts.get(acc)
                if account_id is None:
                    account_id = accounts.get(acc.lower()) if "@" in acc else None
                    if account_id is None:
                        raise _RowError("account", _account_reason(acc, accounts))
                service = service.strip()
                if not service:
                    raise _RowError("service", "is empty")
                stored_text("service", service, MAX_SERVICE)
                moment = parse_time(when.strip())
                q = scaled(qty.strip(), QUANTITY_PLACES, "quantity", negative=False)
                a = scaled(amount.strip(), AMOUNT_PLACES, "amount", negative=True)
            except _RowError as exc:
                self.reject(line, exc.field, exc.reason, row, xid if exc.field != "xdr_id" else None)
                continue
            self.batch_ids[xid] = line
            self.batch.append((xid, account_id, service, moment, q, a))
            self.batch_lines.append(line)
            self.batch_raw.append(row)
            if len(self.batch) >= batch_size:
                self.flush()
                if progress:
                    progress(handle.tell(), size)


def stored_text(field_name: str, value: str, max_len: int) -> str:
    """Text that goes into a column: no NUL, at most the column's length (text.check_stored),
    so SQLite and PostgreSQL take and refuse the same rows."""
    try:
        return check_stored(field_name, value, max_len=max_len)
    except TextError as exc:
        raise _RowError(exc.field, exc.reason) from None


def _account_reason(text: str, accounts: dict) -> str:
    if not text:
        return "is empty"
    if "@" in text:
        if text.lower() in accounts:  # present with None: more than one account has it
            return f"email {text!r} belongs to more than one account: use the account id"
        return f"no account has the email {text!r}"
    if text.isdigit():
        return f"account {text} does not exist"
    return f"{text!r} is neither an account id nor an account email"


def _existing_ids(ids: list[str]) -> dict[str, int]:
    """xdr_id -> row id of those already stored: one IN query per 5,000 ids.

    Plain SQL on purpose: building a 10,000-value IN list through the query
    builder costs more than the lookup itself.
    """
    db = database.obj
    table = Xdr._meta.table_name
    found: dict[str, int] = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        marks = ", ".join([db.param] * len(chunk))
        cursor = db.execute_sql(f'SELECT "xdr_id", "id" FROM "{table}" WHERE "xdr_id" IN ({marks})', chunk)
        found.update(cursor.fetchall())
    return found


_SAME = (
    'o."account_id" = b."account_id" AND o."time" = b."time" AND o."service" = b."service" '
    'AND o."quantity" = b."quantity" AND o."amount" = b."amount" AND o."id" < b."id"'
)


def _repeated(rows: list[tuple]) -> list[tuple[str, str]]:
    """(xdr_id, xdr_id of the oldest record it repeats) for the just-inserted `rows` that repeat one.

    Set-based: one query per batch, each new row probing the index
    xdr(account_id, time) once; in the order of insertion (line order).
    """
    db = database.obj
    table = Xdr._meta.table_name
    if db.param == "?":
        # SQLite: the writer holds the lock from the INSERT on, so the batch is the last len(rows)
        # rowids (one executemany: consecutive).  A bare column beside MIN() comes from the MIN row.
        lo = db.execute_sql(f'SELECT MAX("id") FROM "{table}"').fetchone()[0] - len(rows)
        cursor = db.execute_sql(
            f'SELECT b."xdr_id", o."xdr_id", MIN(o."id") FROM "{table}" b JOIN "{table}" o ON {_SAME} '
            f'WHERE b."id" > ? GROUP BY b."id" ORDER BY b."id"',
            [lo],
        )
        return [(xid, original) for xid, original, _ in cursor.fetchall()]
    # PostgreSQL: ids come from a sequence shared with other sessions, so the batch is found by its
    # xdr_ids, each through the unique index (OFFSET 0: not a plan that scans the table, which
    # outdated statistics right after a large import would make look cheap); LATERAL ... LIMIT 1
    # then probes the (account_id, time) index once per new row.
    cursor = db.execute_sql(
        f'SELECT b."xdr_id", o."xdr_id" FROM unnest(%s::text[]) AS u(xdr_id) CROSS JOIN LATERAL '
        f'(SELECT * FROM "{table}" b WHERE b."xdr_id" = u.xdr_id OFFSET 0) b CROSS JOIN LATERAL '
        f'(SELECT o."xdr_id" FROM "{table}" o WHERE {_SAME} ORDER BY o."id" LIMIT 1) o '
        f'ORDER BY b."id"',
        [[rec[0] for rec in rows]],
    )
    return cursor.fetchall()


def _max_xdr_id() -> int:
    from peewee import fn

    return Xdr.select(fn.MAX(Xdr.id)).scalar() or 0


def import_xdrs(
    path: str | Path,
    *,
    skip_bad: bool = False,
    tz=None,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = BATCH,
    keep_errors: int = KEEP_ERRORS,
) -> ImportResult:
    """Import an xDR CSV file; see the module docstring for the format.

    Atomic by default: if any row is bad nothing is written and the result
    lists the errors (`result.committed` is False).  With skip_bad the good
    rows are imported and the bad ones go to FILE.rejects.csv.  Raises
    ImportFileError when the file itself is unusable (nothing written).
    """
    if tz is None:
        from .store.settings import load_settings

        tz = load_settings().tz
    return _Importer(Path(path), skip_bad, tz, progress, batch_size, keep_errors).run()
