"""What every command shares: global options, the open store, errors, output."""
from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config import AppConfig, Clock, ConfigError, os_user, parse_now, zone
from ..store.queries import FilterError
from ..workflow import BadInput, BulkResult, Ctx, NotFound

EXIT_OK, EXIT_SOME_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(Exception):
    """Bad usage or input: exit 2, nothing written.  Names the field."""

    def __init__(self, field_name: str, reason: str):
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


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

    def print(self, *parts) -> None:
        print(*parts, file=sys.stdout)  # looked up per call: tests swap it

    def progress(self, label: str):
        return Progress(label)


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool = True, now: bool = True) -> None:
    """--db/--now/--config, accepted before or after the sub-command.

    `reissue --now` is a mode flag (DESIGN.md), so there the clock's --now
    goes before the sub-command: `tui-billing --now 2026-03-01T10:00 reissue X --now`.
    """
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--db", metavar="URL", default=default,
                        help="store URL (default $TUI_BILLING_DB, then a SQLite file in the user data dir)")
    if now:
        parser.add_argument("--now", metavar="ISO8601", default=default,
                            help="fix the clock for this command (back-dated runs, tests)")
    parser.add_argument("--config", metavar="FILE", default=default, help="config file (TOML)")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def add_filters(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("filters")
    g.add_argument("--status", help="comma-separated: open, under_review, rejected, approved, unpaid, paid, overdue")
    g.add_argument("--account-type", help="business, residential, reseller, wholesale")
    g.add_argument("--customer", help="text in the account name or email")
    g.add_argument("--class", dest="customer_class", metavar="CLASS", help="customer class name")
    g.add_argument("--number", help="invoice number or its prefix")
    g.add_argument("--from", dest="date_from", metavar="DATE", help="issue date from (YYYY-MM-DD)")
    g.add_argument("--to", dest="date_to", metavar="DATE", help="issue date to (YYYY-MM-DD)")


def filters_from(args):
    from ..store.queries import make_filters

    return make_filters(status=args.status, account_type=args.account_type, customer=args.customer,
                        customer_class=args.customer_class, number=args.number,
                        date_from=args.date_from, date_to=args.date_to,
                        flagged=getattr(args, "flagged", False))


@contextlib.contextmanager
def open_env(args, *, demo_if_empty: bool = False):
    """Open the store and translate domain errors into exit status 2."""
    from ..store import db as store_db
    from ..store.settings import ensure_defaults, load_settings

    try:
        config = AppConfig.load(Path(args.config) if getattr(args, "config", None) else None)
    except ConfigError as exc:
        raise UsageError("config", str(exc)) from None
    url = getattr(args, "db", None) or config.db_url or store_db.default_url()
    if getattr(args, "now", None):  # a bad --now must not create or migrate a store first
        try:
            parse_now(args.now, zone("UTC"))
        except ConfigError as exc:
            name, _, reason = str(exc).partition(": ")
            raise UsageError(name.lstrip("-"), reason) from None
    try:
        store_db.connect(url)
        ensure_defaults()
        settings = load_settings()
        clock = Clock(tz=zone(settings["timezone"]))
        if getattr(args, "now", None):
            clock.fixed = parse_now(args.now, clock.tz)
    except store_db.StoreError as exc:
        raise UsageError("db", str(exc).removeprefix("--db: ")) from None
    except ConfigError as exc:
        name, _, reason = str(exc).partition(": ")
        raise UsageError(name.lstrip("-"), reason) from None
    env = Env(args=args, config=config, ctx=Ctx(clock=clock, actor=os_user()), db_url=url,
              json=bool(getattr(args, "json", False)))
    if demo_if_empty:
        from ..store import demo

        if demo.is_empty():
            demo.build(env.ctx, invoices=2000, seed=1, quiet=True)
    try:
        yield env
    except (BadInput, FilterError) as exc:
        raise UsageError(exc.field, getattr(exc, "reason", str(exc).split(": ", 1)[-1])) from None
    except NotFound as exc:
        raise UsageError("invoice", str(exc)) from None
    except ConfigError as exc:
        name, _, reason = str(exc).partition(": ")
        raise UsageError(name.lstrip("-"), reason) from None
    finally:
        store_db.close()


def report_bulk(env: Env, verb: str, result: BulkResult, extra: dict | None = None) -> int:
    """Print what was done and each failure; exit 1 if any item failed."""
    from ..present import dumps

    if env.json:
        doc = {"done": result.done, "failed": [{"number": n, "reason": r} for n, r in result.failed]}
        doc.update(extra or {})
        env.print(dumps(doc))
    else:
        env.print(f"{verb}: {len(result.done)} done, {len(result.failed)} failed")
        for number, reason in result.failed:
            print(f"  {number}: {reason}", file=sys.stderr)
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
