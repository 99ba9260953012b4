"""migrate, demo, settings, class: setting the store up."""
from __future__ import annotations

from ..config import ConfigError
from ..present import dumps, table
from .common import EXIT_OK, Env, UsageError, add_global_options, add_json


def register(sub) -> None:
    p = sub.add_parser("migrate", help="create or upgrade the store's schema")
    add_global_options(p)
    p.set_defaults(handler=cmd_migrate)

    p = sub.add_parser("demo", help="create and fill a demo store")
    add_global_options(p)
    p.add_argument("--invoices", type=int, default=2000, metavar="N")
    p.add_argument("--seed", type=int, default=1, metavar="S")
    p.add_argument("--force", action="store_true", help="add demo data even if the store is not empty")
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("settings", help="show or change store-wide settings")
    add_global_options(p)
    p.add_argument("key", nargs="?")
    p.add_argument("value", nargs="?")
    add_json(p)
    p.set_defaults(handler=cmd_settings)

    p = sub.add_parser("class", help="list or edit customer classes")
    add_global_options(p)
    p.add_argument("name", nargs="?")
    p.add_argument("--send-mode", choices=["immediately", "after_review"])
    p.add_argument("--hold-days", type=int)
    p.add_argument("--net-days", type=int)
    p.add_argument("--create", action="store_true", help="create the class if it does not exist")
    add_json(p)
    p.set_defaults(handler=cmd_class)


def cmd_migrate(env: Env, args) -> int:
    # open_env already applied pending migrations; say where the store stands.
    from ..store import db

    env.print(f"schema up to date ({env.db_url}); pending: {len(db.pending_migrations())}")
    return EXIT_OK


def cmd_demo(env: Env, args) -> int:
    from ..store import demo

    if args.invoices < 1 or args.invoices > 10_000_000:
        raise UsageError("invoices", "must be between 1 and 10,000,000")
    if not demo.is_empty() and not args.force:
        raise UsageError("db", f"{env.db_url} already holds data; use a new --db or --force")
    stats = demo.build(env.ctx, invoices=args.invoices, seed=args.seed)
    env.print(f"demo store ready at {env.db_url}: " + ", ".join(f"{v:,} {k}" for k, v in stats.items()))
    return EXIT_OK


def cmd_settings(env: Env, args) -> int:
    from ..store.settings import load_settings, save_setting

    if args.key and args.value is not None:
        try:
            save_setting(args.key, args.value)
        except ConfigError as exc:
            name, _, reason = str(exc).partition(": ")
            raise UsageError(name, reason) from None
    values = load_settings()
    data = {k: values[k] for k in sorted(set(values.values) | set(_defaults()))}
    if args.key and not args.value and args.key not in data:
        raise UsageError("key", f"{args.key!r} is not a setting")
    if args.key:
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
    from ..classes import ClassError, class_rows, save_class

    if args.name and any(v is not None for v in (args.send_mode, args.hold_days, args.net_days)) or args.create:
        if not args.name:
            raise UsageError("name", "give the class name")
        try:
            warning = save_class(env.ctx, args.name, send_mode=args.send_mode, hold_days=args.hold_days,
                                 net_days=args.net_days, create=args.create)
        except ClassError as exc:
            raise UsageError(exc.field, exc.reason) from None
        if warning:
            import sys
            print(f"warning: {warning}", file=sys.stderr)
    rows = class_rows(args.name)
    if env.json:
        env.print(dumps(rows))
    else:
        env.print(table([[r["name"], r["send_mode"], str(r["hold_days"]), str(r["net_days"]), r["warning"] or ""]
                         for r in rows], ["Class", "Send", "Hold days", "Net days", "Warning"], right={2, 3}))
    return EXIT_OK
