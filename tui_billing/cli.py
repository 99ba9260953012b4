"""The command line: `tui-billing [COMMAND]`; no command opens the console.

Exit status: 0 done; 1 some items failed (the rest were done, each failure
reported); 2 bad usage or bad input (nothing written); 70 an unexpected error
(a bug: one line on stderr names the file that holds the full trace).  Must
not import Textual: scripts, cron and the headless job loop start fast
without it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import traceback
from collections.abc import Callable

from .commands import common
from .commands.common import EXIT_BAD_INPUT, Env, UsageError
from .config import redact_text

EXIT_INTERNAL = 70  # EX_SOFTWARE (sysexits.h): not 1, which scripts read as "some items failed"

COMMAND_MODULES = ("invoices", "admin", "import_and_bill", "erp_and_payments", "jobs", "users", "completion")


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: exit 2
        self.print_usage(sys.stderr)
        m = re.match(r"argument (-[^\s/:]+|[A-Za-z][\w.-]*)(?:/\S+)?: (.*)", message, re.DOTALL)
        if m:  # "argument --send-mode: invalid choice: …" names its field
            raise UsageError(m.group(1).lstrip("-"), m.group(2))
        raise UsageError("usage", message)

    def _get_value(self, action, arg_string):
        # Every value typed on the command line meets common.check_arg's rules
        # (UTF-8, not blank, no control characters) before its type reads it.
        if not isinstance(action, argparse._SubParsersAction):
            common.check_arg(common.field_of(action), arg_string, raw=getattr(action, "raw_text", False))
        return super()._get_value(action, arg_string)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tui-billing", description=__doc__.split("\n")[0])
    common.add_global_options(parser, suppress=False)
    loop = parser.add_mutually_exclusive_group()
    loop.add_argument(
        "--jobs",
        action="store_true",
        help="console: run the job loop inside it, waiting for another loop of the store to stop "
        "(default: run it when no other loop is alive; [jobs] console = auto|on|off)",
    )
    loop.add_argument(
        "--no-jobs",
        action="store_true",
        help="console: never run the job loop inside it (another loop, or none, serves the store)",
    )
    parser.add_argument("--version", action="version", version=f"tui-billing {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


_PARSER: argparse.ArgumentParser | None = None


def _parser() -> argparse.ArgumentParser:
    """The parser, built once per process (argparse's message lookups make a
    build cost tens of milliseconds; a parser is reusable: each parse starts
    from a fresh namespace)."""
    global _PARSER
    if _PARSER is None:
        _PARSER = build_parser()
    return _PARSER


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args = None
    try:
        args = _parser().parse_args(words)
        check = getattr(args, "check", None)
        if check is not None:  # the command's own checks of its arguments, before any store opens
            check(args)
        common.check_argv(words)
        handler: Callable[[Env, argparse.Namespace], int] | None = getattr(args, "handler", None)
        if handler is None:
            return run_console(args)
        return common.run_command(args, handler)
    except UsageError as exc:
        if args is None:  # argparse refused the line: does it still ask for JSON?
            args = argparse.Namespace(json="--json" in words)
        return _fail(args, exc.field, exc.reason)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 0
    except Exception as exc:  # noqa: BLE001 - a bug: never a traceback on the terminal
        return _internal_error(exc, words)


def _fail(args, field: str, reason: str) -> int:
    from .present import dumps

    message = redact_text(f"{field}: {reason}" if field != "usage" else reason)
    common.eprint(f"tui-billing: error: {message}")
    if args is not None and getattr(args, "json", False):
        print(dumps({"error": {"field": field, "message": message}}))
    return EXIT_BAD_INPUT


def _quiet_broken_pipe() -> None:
    """stdout's reader went away (`| head`): no "Exception ignored" at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def log_dir() -> "os.PathLike":
    """Where full traces go: the user's state log folder (platformdirs; a fresh $HOME gets its own)."""
    from pathlib import Path

    from platformdirs import user_log_dir

    return Path(user_log_dir("tui-billing", appauthor=False))


def _internal_error(exc: BaseException, words: list[str]) -> int:
    """One line on stderr; the full trace (secrets redacted) in a new owner-only
    file under log_dir().  Exit 70."""
    trace = redact_text("".join(traceback.format_exception(exc)))
    what = redact_text(f"{type(exc).__name__}: {exc}".strip().rstrip(":"))
    where = None
    try:
        from .safefile import make_dirs, open_exclusive

        folder = make_dirs(log_dir())
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = folder / f"crash-{stamp}-{os.getpid()}-{os.urandom(3).hex()}.log"
        with open_exclusive(path, text=True, encoding="utf-8", newline="\n") as f:
            f.write(f"tui-billing {_version()} at {dt.datetime.now().isoformat(timespec='seconds')}\n")
            f.write("argv: " + redact_text(" ".join(repr(w) for w in words)) + "\n\n")
            f.write(trace.encode("utf-8", "backslashreplace").decode("utf-8"))
        where = f"the full trace is in {path}"
    except Exception as log_exc:  # noqa: BLE001 - the log folder itself failed: still one line
        where = f"the trace could not be written ({type(log_exc).__name__}: {log_exc})"
    first = what.splitlines()[0] if what else type(exc).__name__
    common.eprint(f"tui-billing: internal error: {first[:300]}; {where}")
    return EXIT_INTERNAL


def run_console(args) -> int:
    from . import access
    from .errors import NotAllowed

    with common.open_env(args, demo_if_empty=True) as env:  # the same Ctx (clock, actor) as every command
        jobs = env.config.jobs.console  # --jobs / --no-jobs > $TUI_BILLING_JOBS_CONSOLE > [jobs] console > auto
        try:  # team mode: a user of the store; the console's own job loop only for those who may run it
            access.require(env.ctx, "view")
            if jobs == "on":
                access.require(env.ctx, "jobs")
        except NotAllowed as exc:
            return common.refuse_role(env, exc)
        if jobs == "auto" and not access.allowed(env.ctx, "jobs"):
            jobs = "off"
        from .app import run  # Textual is imported only here

        return run(env, jobs=jobs)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
