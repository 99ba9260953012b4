"""The command line: `tui-billing [COMMAND]`; no command opens the console.

Exit status: 0 done; 1 some items failed (the rest were done, each failure
reported); 2 bad usage or bad input (nothing written).  Must not import
Textual: scripts, cron and the headless job loop start fast without it.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from .commands import common
from .commands.common import EXIT_BAD_INPUT, Env, UsageError

COMMAND_MODULES = ("invoices", "admin", "usage", "jobs")


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors: exit 2
        self.print_usage(sys.stderr)
        raise UsageError("usage", message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="tui-billing", description=__doc__.split("\n")[0])
    common.add_global_options(parser, suppress=False)
    loop = parser.add_mutually_exclusive_group()
    loop.add_argument("--jobs", action="store_true",
                      help="console: run the job loop inside it, waiting for another loop of the store to stop "
                           "(default: run it when no other loop is alive; [jobs] console = auto|on|off)")
    loop.add_argument("--no-jobs", action="store_true",
                      help="console: never run the job loop inside it (another loop, or none, serves the store)")
    parser.add_argument("--version", action="version", version=f"tui-billing {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return parser


def _version() -> str:
    from . import __version__
    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        handler: Callable[[Env, argparse.Namespace], int] | None = getattr(args, "handler", None)
        if handler is None:
            return run_console(args)
        with common.open_env(args) as env:
            return handler(env, args)
    except UsageError as exc:
        if args is None:  # argparse refused the line: does it still ask for JSON?
            words = sys.argv[1:] if argv is None else argv
            args = argparse.Namespace(json="--json" in words)
        return _fail(args, exc.field, exc.reason)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _fail(args, field: str, reason: str) -> int:
    message = f"{field}: {reason}" if field != "usage" else reason
    print(f"tui-billing: error: {message}", file=sys.stderr)
    if args is not None and getattr(args, "json", False):
        print(json.dumps({"error": {"field": field, "message": message}}, ensure_ascii=False))
    return EXIT_BAD_INPUT


def run_console(args) -> int:
    with common.open_env(args, demo_if_empty=True) as env:
        from .jobs.loop import console_mode

        jobs = "on" if args.jobs else "off" if args.no_jobs else console_mode(getattr(env.config, "jobs", {}))
        from .app import run  # Textual is imported only here

        return run(env, jobs=jobs)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
