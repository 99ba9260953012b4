"""What every command shares: global options, argument types, the open store,
errors, output.

Input is checked before the store is opened (argument types, the generic
check of every argument's text in `check_arg`, and each command's `check`
hook), so a refused command never creates or changes a store.  Everything
printed goes through `present.terminal_text` (control characters escaped)
and every store URL through `config.redact_url`.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import config_file
from ..clock import Clock, parse_now, zone
from ..config import AppConfig, redact_text, redact_url
from ..context import BulkResult, Ctx, os_user
from ..errors import ConfigError, FieldError, NotAllowed, NotFound
from ..present import terminal_text
from ..store.queries import FilterError
from ..text import TextError, typed

EXIT_OK, EXIT_SOME_FAILED, EXIT_BAD_INPUT = 0, 1, 2
ARG_MAX = 4096  # characters of any one argument (PATH_MAX); fields with a column are checked tighter
ID_MAX = 2**63 - 1  # the largest id either store can hold (SQLite INTEGER, PostgreSQL BIGINT)


class UsageError(Exception):
    """Bad usage or input: exit 2, nothing written.  Names the field."""

    def __init__(self, field_name: str, reason: str):
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


def usage_error(exc: FieldError) -> UsageError:
    """Refused input (any FieldError: BadInput, FilterError, TextError,
    ConfigError …) as the CLI reports it, exit 2: its field as the CLI names
    it, a flag without its dashes (ConfigError "--now" -> now)."""
    return UsageError(exc.field.lstrip("-"), exc.reason)


@dataclass
class Env:
    args: argparse.Namespace
    config: AppConfig
    ctx: Ctx
    db_url: str
    json: bool = False

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    @property
    def shown_url(self) -> str:
        """The store's URL as it may be printed: its password redacted."""
        return redact_url(self.db_url)

    def print(self, *parts) -> None:
        # sys.stdout looked up per call: tests swap it
        print(terminal_text(" ".join(str(p) for p in parts)), file=sys.stdout)

    def progress(self, label: str):
        return Progress(label)


def eprint(*parts) -> None:
    """A line on stderr, control characters escaped and URLs redacted."""
    print(terminal_text(redact_text(" ".join(str(p) for p in parts))), file=sys.stderr)


# --------------------------------------------------------------------------
# Arguments: every value a person types is checked before the store opens.


def field_of(action: argparse.Action) -> str:
    """The name an error gives an argument: `--hold-days` -> hold-days, a positional by its metavar/dest."""
    longs = [o for o in action.option_strings if o.startswith("--")] or action.option_strings
    if longs:
        return longs[0].lstrip("-")
    metavar = action.metavar if isinstance(action.metavar, str) else None
    return metavar if metavar and re.fullmatch(r"[A-Za-z][A-Za-z_-]*", metavar) else action.dest


def check_arg(field: str, text: str, *, raw: bool = False) -> None:
    """The rules every argument's text follows (text.typed): valid UTF-8,
    not blank, no control characters, at most ARG_MAX characters.
    `raw`: none of them here (the value has its own check, which names its field better:
    settings VALUE is named by its key)."""
    if raw:
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(field, "is not valid UTF-8 text (the bytes cannot be read as characters)") from None
    try:
        typed(field, text, max_len=ARG_MAX)
    except TextError as exc:
        raise UsageError(field, "is empty" if exc.reason == "is required" else exc.reason) from None


def raw_value(action: argparse.Action) -> argparse.Action:
    """Mark an argument whose text is checked by its own rules (settings VALUE: a blank
    timezone is the machine's, seller_address has lines)."""
    action.raw_text = True  # type: ignore[attr-defined]  # read back with getattr
    return action


def check_argv(words: list[str]) -> None:
    """Bytes that are not UTF-8 (surrogate-escaped by Python) left anywhere in
    the command line once it parsed: refused.  (Values are checked, with their
    field's name, as the parser reads them: check_arg.)"""
    for word in words:
        try:
            word.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError("argument", "is not valid UTF-8 text (the bytes cannot be read as characters)") from None


def ascii_int(field: str, low: int | None = None, high: int | None = ID_MAX):
    """An argparse type: a whole number written with the digits 0-9 (and an
    optional leading minus), between `low` and `high`.  Python's int() also
    reads "١٢", " 12 " and "1_000": a number must mean what it shows."""
    pattern = re.compile(r"-?[0-9]+", re.ASCII)

    def parse(text: str) -> int:
        if not pattern.fullmatch(text):
            raise UsageError(field, f"{text!r} is not a whole number written with the digits 0-9")
        value = int(text)
        if (low is not None and value < low) or (high is not None and value > high):
            if high is None:
                bound = f"at least {low:,}"
            elif low is None:
                bound = f"at most {high:,}"
            else:
                bound = f"between {low:,} and {high:,}"
            raise UsageError(field, f"{text} is out of range: must be {bound}")
        return value

    parse.__name__ = "whole number"
    return parse


def now_arg(text: str) -> str:
    """--now: read as the clock will read it (config.parse_now), before any store opens."""
    try:
        parse_now(text, zone("UTC"))
    except ConfigError as exc:
        raise UsageError("now", exc.reason) from None
    return text


def db_arg(text: str) -> str:
    """--db: a sqlite:/// or postgresql:// URL whose SQLite file can be a store."""
    check_db_url(text)
    return text


def check_db_url(url: str) -> None:
    shown = redact_url(url)
    if not url.startswith(("sqlite:", "postgres://", "postgresql://")):
        raise UsageError("db", f"{shown!r} is not a sqlite:/// or postgresql:// URL")
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url[len("sqlite:///") :])
        if not path.name:
            raise UsageError("db", f"{shown}: give a file name")
        if path.exists() and not path.is_file():
            raise UsageError("db", f"{path} is not a regular file")
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise UsageError("db", f"{parent} is not a directory")
                break


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool = True, now: bool = True) -> None:
    """--db/--now/--config, accepted before or after the sub-command.

    `reissue --now` is a mode flag (DESIGN.md), so there the clock's --now
    goes before the sub-command: `tui-billing --now 2026-03-01T10:00 reissue X --now`.
    """
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--db",
        metavar="URL",
        default=default,
        type=db_arg,
        help="store URL (default $TUI_BILLING_DB, then a SQLite file in the user data dir)",
    )
    if now:
        parser.add_argument(
            "--now",
            metavar="ISO8601",
            default=default,
            type=now_arg,
            help="fix the clock for this command (back-dated runs, tests)",
        )
    parser.add_argument("--config", metavar="FILE", default=default, help="config file (TOML)")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def status_list(text: str) -> str:
    """--status: at least one status; "," or " , " lists none (and --all would mean every invoice)."""
    if not [s for s in text.split(",") if s.strip()]:
        from .. import statuses as S

        raise UsageError("status", f"{text!r} lists no status; give one or more of {', '.join(S.INVOICE_STATUSES)}")
    return text


def filter_date(field: str):
    """--from/--to: read by the filters' own date reader (store.queries.parse_date), before the store opens."""

    def parse(text: str) -> str:
        from ..store.queries import parse_date

        try:
            parse_date(field, text)
        except FilterError as exc:
            raise usage_error(exc) from None
        return text

    parse.__name__ = "date"
    return parse


def add_filters(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("filters")
    g.add_argument(
        "--status",
        type=status_list,
        help="comma-separated: open, under_review, rejected, approved, unpaid, paid, overdue",
    )
    g.add_argument("--account-type", help="business, residential, reseller, wholesale")
    g.add_argument(
        "--customer", help="any part of the account name or email; accents and case ignored (angstrom finds Ångström)"
    )
    g.add_argument("--class", dest="customer_class", metavar="CLASS", help="customer class name")
    g.add_argument("--number", help="any part of the invoice number (000658 finds INV-2026-000658)")
    g.add_argument(
        "--payment-status",
        metavar="STATUS",
        help="invoices with a payment in this status: waiting_for_payment, expired, cancelled, receipt_creating, "
        "receipt_sent, processing, completed, paid_from_balance",
    )
    g.add_argument(
        "--from", dest="date_from", metavar="DATE", type=filter_date("from"), help="issue date from (YYYY-MM-DD)"
    )
    g.add_argument("--to", dest="date_to", metavar="DATE", type=filter_date("to"), help="issue date to (YYYY-MM-DD)")


def filters_from(args):
    from ..store.queries import make_filters

    return make_filters(
        status=args.status,
        account_type=args.account_type,
        customer=args.customer,
        customer_class=args.customer_class,
        number=args.number,
        date_from=args.date_from,
        date_to=args.date_to,
        flagged=getattr(args, "flagged", False),
        payment_status=getattr(args, "payment_status", None),
    )


def store_url(args, config: AppConfig) -> str:
    """The URL of the store the command works on: --db, $TUI_BILLING_DB, the config file
    (config_file.load applied that precedence), else the default."""
    from ..store import db as store_db

    url = config.db_url or store_db.default_url()
    check_arg("db", url)  # from the environment or the config file: the same rules as --db
    check_db_url(url)
    return url


def config_flags(args) -> dict[str, object]:
    """The flags that set config keys (config_file.SCHEMA): --db, and --jobs / --no-jobs (jobs.console)."""
    jobs = "on" if getattr(args, "jobs", False) else "off" if getattr(args, "no_jobs", False) else None
    return {"db": getattr(args, "db", None), "jobs.console": jobs}


def load_config(args) -> AppConfig:
    """The one configuration (config_file.load: flags > environment > file > defaults);
    a bad value is exit 2 naming its key (`mail.port: 'abc' is not a whole number (from …)`)."""
    try:
        return config_file.load(getattr(args, "config", None) or None, flags=config_flags(args))
    except ConfigError as exc:
        raise usage_error(exc) from None


def run_command(args, handler) -> int:
    """Open the store, run the command, close it.  A command refused with exit
    2 leaves no store behind that it created (a mistyped --db path): the
    contract's "nothing written" holds for the file system too."""
    config = load_config(args)
    url = store_url(args, config)
    fresh = _fresh_sqlite(url)
    code = EXIT_BAD_INPUT
    try:
        with open_env(args, config=config, url=url) as env:
            try:
                needs = getattr(args, "needs", None)
                if needs:  # reads and imports: the role is checked before anything runs
                    from .. import access

                    access.require(env.ctx, needs)
                code = handler(env, args)
            except NotAllowed as exc:  # the role refuses: exit 1, the sentence names user, action and role
                code = refuse_role(env, exc)
    finally:
        if fresh is not None and code == EXIT_BAD_INPUT:
            _discard(*fresh)
    return code


def _fresh_sqlite(url: str) -> tuple[Path, list[Path]] | None:
    """(file, folders) a SQLite URL would create; None when the file exists (or it is not SQLite)."""
    if not url.startswith("sqlite:///") or url == "sqlite:///:memory:":
        return None
    path = Path(url[len("sqlite:///") :]).absolute()
    if path.exists():
        return None
    folders = []
    for parent in path.parents:
        if parent.exists():
            break
        folders.append(parent)  # deepest first
    return path, folders


def _discard(path: Path, folders: list[Path]) -> None:
    from ..store import db as store_db

    store_db.close()
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty: never someone else's files


def actor_of_session() -> str:
    """Who the audit log names: the real OS user of this process (config.os_user,
    not $LOGNAME), and on PostgreSQL the database session user beside it when
    it differs ("alice (db billing)").  At most the audit column's width."""
    from ..store import db as store_db
    from ..store.models import AuditEvent, database

    actor = os_user()
    if not store_db.is_sqlite():
        # The role this connection logged in as (libpq knows it: no round trip); the query otherwise.
        session = (
            getattr(getattr(database.connection(), "info", None), "user", None)
            or database.execute_sql("SELECT session_user").fetchone()[0]
        )
        if session and session != actor:
            actor = f"{actor} (db {session})"
    return actor[: AuditEvent.actor.max_length]


@contextlib.contextmanager
def open_env(args, *, demo_if_empty: bool = False, config: AppConfig | None = None, url: str | None = None):
    """Open the store and translate domain errors into exit status 2.

    The console builds its Ctx here too: the same clock and the same actor."""
    import peewee

    from ..store import db as store_db
    from ..store.settings import ensure_defaults

    config = config or load_config(args)
    url = url or store_url(args, config)
    from .. import documents  # not pdf: fpdf2 is imported only when a PDF is rendered

    documents.set_workers(config.jobs.workers)  # PDF worker processes: dispatch, download, bulk reissue
    now_text = getattr(args, "now", None)
    if now_text is not None:  # a bad --now must not create or migrate a store first
        now_arg(now_text)
    try:
        store_db.connect(url)
        settings = ensure_defaults()
        clock = Clock(tz=zone(settings["timezone"]))
        if now_text is not None:
            clock.fixed = parse_now(now_text, clock.tz)
        actor = actor_of_session()
    except store_db.StoreError as exc:
        store_db.close()
        raise UsageError("db", redact_text(exc.reason)) from None
    except ConfigError as exc:
        store_db.close()
        raise usage_error(exc) from None
    except (peewee.DatabaseError, peewee.InterfaceError, OSError) as exc:  # /dev/null, not a SQLite file, …
        store_db.close()
        raise UsageError("db", redact_text(f"cannot use {url} as a store: {exc}".strip())) from None
    env = Env(
        args=args, config=config, ctx=Ctx(clock=clock, actor=actor), db_url=url, json=bool(getattr(args, "json", False))
    )
    if demo_if_empty:
        from .. import demo

        if demo.is_empty():
            demo.build(env.ctx, invoices=2000, seed=1, quiet=True)
    try:
        yield env
    except FieldError as exc:  # BadInput, FilterError, TextError, ConfigError …: the field named
        raise usage_error(exc) from None
    except NotFound as exc:
        raise UsageError("invoice", str(exc)) from None
    finally:
        store_db.close()


def refuse_role(env: Env, exc: NotAllowed) -> int:
    from ..present import dumps

    if env.json:
        env.print(
            dumps(
                {
                    "error": {
                        "field": "role",
                        "message": str(exc),
                        "user": exc.user,
                        "action": exc.action,
                        "role": exc.role,
                    }
                }
            )
        )
    eprint(f"tui-billing: refused: {exc}")
    return EXIT_SOME_FAILED


def report_bulk(env: Env, verb: str, result: BulkResult, extra: dict | None = None) -> int:
    """Print what was done and each failure; exit 1 if any item failed."""
    from ..present import dumps

    if env.json:
        doc = {"done": result.done, "failed": [{"number": n, "reason": r} for n, r in result.failed]}
        doc.update(extra or {})
        env.print(dumps(doc))
    else:
        waiting = getattr(result, "waiting", None)  # four-eyes: first approvals given
        also = f", {len(waiting)} waiting for a second approver" if waiting else ""
        env.print(f"{verb}: {len(result.done)} done{also}, {len(result.failed)} failed")
        for number, reason in result.failed:
            eprint(f"  {number}: {reason}")
    return EXIT_SOME_FAILED if result.failed else EXIT_OK


class Progress:
    """A one-line progress bar on a terminal (stderr); silent when piped."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        pct = int(done * 100 / total)
        if pct == self._last and done != total:
            return
        self._last = pct
        width = 30
        filled = int(width * done / total)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {pct:3d}% {done:,}/{total:,}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
