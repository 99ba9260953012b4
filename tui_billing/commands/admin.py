"""migrate, demo, settings, class, counts: setting the store up and keeping it right."""

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

    p = sub.add_parser(
        "counts",
        help="invoices per status, as the store keeps them; --check against a recount",
        description="The counts the database keeps per status, account type and class (triggers, in the "
        "transaction of every change). --check recounts and lists any group that differs (exit 1); "
        "--rebuild makes them again from a recount (an operator or an admin).",
    )
    add_global_options(p)
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--check", dest="verify", action="store_true", help="compare with a recount (exit 1 when they differ)"
    )
    what.add_argument("--rebuild", action="store_true", help="make them again from a recount")
    add_json(p)
    p.set_defaults(handler=cmd_counts, needs="view")

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


def cmd_counts(env: Env, args) -> int:
    from .. import access
    from .. import statuses as S
    from ..store import counts
    from .common import EXIT_SOME_FAILED

    if args.rebuild:
        access.require(env.ctx, "jobs", "the invoice counts")
        counts.rebuild()
    if args.verify:  # (not args.check: that name is the parser's input hook)
        wrong = counts.check()
        rows = [
            {"status": s, "account_type": t, "class_id": c, "kept": kept, "counted": counted}
            for (s, t, c), kept, counted in wrong
        ]
        if env.json:
            env.print(dumps({"ok": not wrong, "differences": rows}))
        elif wrong:
            for r in rows:
                eprint(
                    f"{r['status']} / {r['account_type']} / class {r['class_id']}: kept {r['kept']:,}, counted {r['counted']:,}"
                )
            eprint(
                "tui-billing: the kept counts differ from a recount; `tui-billing counts --rebuild` makes them again"
            )
        else:
            env.print("the kept counts equal a recount")
        return EXIT_SOME_FAILED if wrong else EXIT_OK
    kept = counts.by_status()
    values = {s: kept.get(s, 0) for s in S.INVOICE_STATUSES}
    if env.json:
        env.print(dumps({"counts": values, "rebuilt": bool(args.rebuild)}))
    else:
        env.print(table([[S.INVOICE_STATUSES[s], f"{n:,}"] for s, n in values.items()], ["status", "invoices"], {1}))
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
