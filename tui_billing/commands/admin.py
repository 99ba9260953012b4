"""migrate, demo, settings, class: setting the store up."""

from __future__ import annotations

from ..errors import ConfigError
from ..present import dumps, table
from .common import (
    EXIT_OK,
    Env,
    UsageError,
    add_global_options,
    add_json,
    ascii_int,
    eprint,
    raw_value,
)


def register(sub) -> None:
    p = sub.add_parser("migrate", help="create or upgrade the store's schema")
    add_global_options(p)
    p.set_defaults(handler=cmd_migrate)

    p = sub.add_parser("demo", help="create and fill a demo store")
    add_global_options(p)
    p.add_argument(
        "--invoices",
        type=ascii_int("invoices", 1, DEMO_MAX),
        default=2000,
        metavar="N",
        help=f"how many invoices to generate (default 2000, at most {DEMO_MAX:,})",
    )
    p.add_argument(
        "--seed",
        type=ascii_int("seed", 0),
        default=1,
        metavar="S",
        help="random seed: the same seed gives the same demo data (default 1)",
    )
    p.add_argument("--force", action="store_true", help="add demo data even if the store is not empty")
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("settings", help="show or change store-wide settings")
    add_global_options(p)
    p.add_argument("key", nargs="?", help="the setting to show or change (none: show them all)")
    raw_value(
        p.add_argument(
            "value", nargs="?", help="its new value (checked by the rules that use it; nothing is written if refused)"
        )
    )
    add_json(p)
    p.set_defaults(handler=cmd_settings, check=check_settings, needs="view")

    p = sub.add_parser("class", help="list or edit customer classes")
    add_global_options(p)
    p.add_argument("name", nargs="?", help="the class to show or change (none: list them all)")
    p.add_argument(
        "--send-mode",
        choices=["immediately", "after_review"],
        help="immediately: invoices go out when generated; after_review: held for review first",
    )
    p.add_argument(
        "--hold-days",
        type=ascii_int("hold-days", 0, MAX_DAYS),
        metavar="N",
        help=f"days an invoice waits for review before it is auto-approved (0 to {MAX_DAYS})",
    )
    p.add_argument(
        "--net-days",
        type=ascii_int("net-days", 0, MAX_DAYS),
        metavar="N",
        help=f"payment terms: the due date is the issue date + N days (0 to {MAX_DAYS})",
    )
    p.add_argument("--create", action="store_true", help="create the class if it does not exist")
    add_json(p)
    p.set_defaults(handler=cmd_class, check=check_class, needs="view")


DEMO_MAX = 10_000_000
MAX_DAYS = 365  # customer_classes.MAX_DAYS (read there lazily: the parser is built without the store)


def check_settings(args) -> None:
    """Before the store opens: the key exists and the value passes the setting's own rules."""
    from ..config import validate_setting

    if args.key is None:
        return
    if args.key not in _defaults():
        raise UsageError("key", f"{args.key!r} is not a setting; known: {', '.join(sorted(_defaults()))}")
    if args.value is None:
        return
    try:
        validate_setting(args.key, args.value)
    except ConfigError as exc:
        raise UsageError(exc.field, exc.reason) from None


def check_class(args) -> None:
    """Before the store opens: a change names its class, and the name is one an admin may type."""
    from ..customer_classes import ClassError, clean_name

    changing = args.create or any(v is not None for v in (args.send_mode, args.hold_days, args.net_days))
    if changing and args.name is None:
        raise UsageError("name", "give the name of the class to change (or to create, with --create)")
    if args.name is not None:
        try:
            args.name = clean_name(args.name)
        except ClassError as exc:
            raise UsageError(exc.field, exc.reason) from None


def cmd_migrate(env: Env, args) -> int:
    # open_env already applied pending migrations; say where the store stands.
    from ..store import db

    env.print(f"schema up to date ({env.shown_url}); pending: {len(db.pending_migrations())}")
    return EXIT_OK


def cmd_demo(env: Env, args) -> int:
    from .. import demo

    if not demo.is_empty() and not args.force:
        raise UsageError("db", f"{env.shown_url} already holds data; use a new --db or --force")
    stats = demo.build(env.ctx, invoices=args.invoices, seed=args.seed)
    env.print(f"demo store ready at {env.shown_url}: " + ", ".join(f"{v:,} {k}" for k, v in stats.items()))
    return EXIT_OK


def cmd_settings(env: Env, args) -> int:
    from ..settings_change import change_setting
    from ..store.settings import load_settings

    if args.key is not None and args.value is not None:
        try:
            change_setting(env.ctx, args.key, args.value)
        except ConfigError as exc:
            raise UsageError(exc.field, exc.reason) from None
    values = load_settings()
    data = {k: values[k] for k in sorted(set(values.values) | set(_defaults()))}
    if args.key is not None and args.key not in data:
        raise UsageError("key", f"{args.key!r} is not a setting")
    if args.key is not None:
        data = {args.key: data[args.key]}
    if env.json:
        env.print(dumps(data))
    else:
        for key, value in data.items():
            env.print(f"{key} = {value!r}")
    return EXIT_OK


def _defaults():
    from ..config import DEFAULT_SETTINGS

    return DEFAULT_SETTINGS


def cmd_class(env: Env, args) -> int:
    from ..customer_classes import ClassError, class_rows, save_class

    if args.create or any(v is not None for v in (args.send_mode, args.hold_days, args.net_days)):
        try:
            warning = save_class(
                env.ctx,
                args.name,
                send_mode=args.send_mode,
                hold_days=args.hold_days,
                net_days=args.net_days,
                create=args.create,
            )
        except ClassError as exc:
            raise UsageError(exc.field, exc.reason) from None
        if warning:
            eprint(f"warning: {warning}")
    rows = class_rows(args.name)
    if env.json:
        env.print(dumps(rows))
    else:
        env.print(
            table(
                [
                    [r["name"], r["send_mode"], str(r["hold_days"]), str(r["net_days"]), r["warning"] or ""]
                    for r in rows
                ],
                ["Class", "Send", "Hold days", "Net days", "Warning"],
                right={2, 3},
            )
        )
    return EXIT_OK
