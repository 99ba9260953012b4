"""user add|list|remove and audit: who may do what, and what everyone did (issue 16)."""

from __future__ import annotations

import csv
import sys

from .common import EXIT_OK, Env, UsageError, add_global_options, add_json, eprint

AUDIT_LIMIT = 100


def register(sub) -> None:
    from ..roles import ROLES

    p = sub.add_parser(
        "user",
        help="the store's users and their roles (none: single-admin mode)",
        description="Once a store has a user, every person is known by their OS user name and "
        "may do what their role allows: " + ", ".join(ROLES) + ".  The first user "
        "must be an admin; then only an admin changes users.",
    )
    add_global_options(p)
    actions = p.add_subparsers(dest="user_action", metavar="ACTION", parser_class=type(p))
    p.set_defaults(handler=_missing_action)

    a = actions.add_parser("add", help="add a user, or change a user's role")
    add_global_options(a)
    a.add_argument("name", metavar="NAME", help="the person's OS user name (the one they SSH in as)")
    a.add_argument("--role", required=True, choices=ROLES, help="what they may do (README: Roles and approvals)")
    add_json(a)
    a.set_defaults(handler=cmd_user_add)

    ls = actions.add_parser("list", help="the users and their roles")
    add_global_options(ls)
    add_json(ls)
    ls.set_defaults(handler=cmd_user_list, needs="view")

    r = actions.add_parser("remove", help="remove a user (never the last admin)")
    add_global_options(r)
    r.add_argument("name", metavar="NAME", help="the OS user name to remove")
    add_json(r)
    r.set_defaults(handler=cmd_user_remove)

    au = sub.add_parser(
        "audit",
        help="the audit trail: who did what, when, newest first",
        description="Events by actor, action, invoice and time; without --all the newest "
        f"{AUDIT_LIMIT} (stderr says how many match).",
    )
    add_global_options(au)
    au.add_argument("--actor", metavar="USER", help="events by this person (their OS user name)")
    au.add_argument("--action", metavar="ACTION", help="events of this action (approve, adjust, user_add, …)")
    au.add_argument("--invoice", metavar="NUMBER", help="events of this invoice")
    au.add_argument(
        "--from",
        dest="since",
        metavar="TIME",
        help="from this time (ISO 8601; a date is its first moment, in the billing zone)",
    )
    au.add_argument(
        "--to", dest="until", metavar="TIME", help="until this time (ISO 8601; a date includes that whole day)"
    )
    au.add_argument("--all", action="store_true", help=f"every matching event, not only the newest {AUDIT_LIMIT}")
    au.add_argument("--format", choices=["table", "csv"], help="table (default) or csv (RFC 4180)")
    add_json(au)
    au.set_defaults(handler=cmd_audit, needs="view")


def _missing_action(env: Env, args) -> int:
    raise UsageError("action", "say add, list or remove (tui-billing user --help)")


def _user_dict(user, clock) -> dict:
    from ..present import iso_time

    return {"name": user.name, "role": user.role, "added_at": iso_time(clock, user.added_at), "added_by": user.added_by}


def cmd_user_add(env: Env, args) -> int:
    from .. import access
    from ..present import dumps

    user, previous = access.add_user(env.ctx, args.name, args.role)
    if env.json:
        env.print(dumps(_user_dict(user, env.clock) | {"previous_role": previous}))
    elif previous is None:
        env.print(f"{user.name}: added as {user.role}")
    elif previous == user.role:
        env.print(f"{user.name}: already {user.role}; nothing changed")
    else:
        env.print(f"{user.name}: role {previous} → {user.role}")
    return EXIT_OK


def cmd_user_list(env: Env, args) -> int:
    from .. import access
    from ..present import dumps
    from ..roles import DESCRIPTIONS
    from ..text import shown

    users = access.list_users()
    if env.json:
        env.print(
            dumps({"mode": "team" if users else "single-admin", "users": [_user_dict(u, env.clock) for u in users]})
        )
        return EXIT_OK
    if not users:
        env.print(
            "no users: single-admin mode (whoever can open the store may do everything); "
            "start with `tui-billing user add YOUR-NAME --role admin`"
        )
        return EXIT_OK
    width = max(len(u.name) for u in users)
    for u in users:
        env.print(f"{shown(u.name).ljust(width)}  {u.role:<8}  {DESCRIPTIONS[u.role]}")
    return EXIT_OK


def cmd_user_remove(env: Env, args) -> int:
    from .. import access
    from ..present import dumps

    user = access.remove_user(env.ctx, args.name)
    if env.json:
        env.print(dumps({"removed": _user_dict(user, env.clock)}))
    else:
        env.print(f"{user.name}: removed (was {user.role})")
    return EXIT_OK


def cmd_audit(env: Env, args) -> int:
    from ..present import audit_change, audit_dict, dumps
    from ..store import audit_log

    if env.json and args.format is not None:
        raise UsageError("format", "--format and --json exclude each other")
    f = audit_log.parse_filter(
        env.clock, actor=args.actor, action=args.action, invoice=args.invoice, since=args.since, until=args.until
    )
    total = audit_log.count(f)
    rows = audit_log.every(f) if args.all else audit_log.page(f, AUDIT_LIMIT)
    docs = (audit_dict(ev, env.clock) for ev in rows)
    if env.json:
        env.print(dumps({"total": total, "events": list(docs)}))
    elif args.format == "csv":
        from ..present import csv_cell

        out = csv.writer(sys.stdout)
        out.writerow(AUDIT_FIELDS)
        for d in docs:
            out.writerow(
                [csv_cell(d[k]) if k in ("actor", "detail") else ("" if d[k] is None else d[k]) for k in AUDIT_FIELDS]
            )
    else:
        from ..text import shown

        for d in docs:
            who = d["actor"] + (f" ({d['role']})" if d["role"] else "")
            what = d["invoice"] or ""
            change = audit_change(d)
            env.print(
                "  ".join(
                    [d["at"][:19].replace("T", " "), shown(who), d["action"], shown(what), change, shown(d["detail"])]
                ).rstrip()
            )
    if not args.all and total > AUDIT_LIMIT:
        eprint(f"{AUDIT_LIMIT} of {total:,} events (newest first); --all for every one")
    return EXIT_OK


AUDIT_FIELDS = (
    "id",
    "at",
    "actor",
    "role",
    "action",
    "invoice",
    "before_status",
    "before_total",
    "after_status",
    "after_total",
    "detail",
)
