"""Who may do what, checked where it is done (issue 16).

Every transition calls `require(ctx, action, what)` inside its transaction,
before it changes anything: in single-admin mode (no users in the store) it
allows everything; otherwise it reads the acting person's role from the
store (so a role changed a moment ago applies at once) and raises
errors.NotAllowed naming the user, the action and the role.  The role found
is kept on the Ctx and written beside the actor in every audit event.

The users themselves are changed by three transitions here (add, change of
role, remove), audited like every other.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from . import roles
from .audit import write_audit
from .context import Ctx
from .errors import FieldError, NotAllowed
from .store.models import AppUser, AuditEvent, database
from .text import typed

NAME_MAX = AuditEvent.actor.max_length


class UserError(FieldError):
    """A user name or role that cannot be accepted."""


def team_mode() -> bool:
    """Whether any user exists: roles apply from the first user on."""
    return AppUser.select(AppUser.name).limit(1).exists()


def role_of(name: str) -> str | None:
    """The role of the person named, None when they are not a user."""
    return AppUser.select(AppUser.role).where(AppUser.name == name).scalar()


def _decide(ctx: Ctx, action: str) -> tuple[bool, str | None]:
    """(may the acting person do `action` now, their role): the one lookup
    behind `allowed` and `require`.  The job loop and single-admin mode may
    do everything (role None); a person who is not a user may do nothing."""
    if action not in roles.ALLOWED:
        raise KeyError(action)
    if ctx.system or not team_mode():
        return True, None
    role = role_of(ctx.user)
    return role is not None and roles.may(role, action), role


def allowed(ctx: Ctx, action: str) -> bool:
    """Whether the acting person may do `action` now (no error raised)."""
    return _decide(ctx, action)[0]


def require(ctx: Ctx, action: str, what: str = "") -> None:
    """Refuse `action` (NotAllowed) unless the acting person's role allows it.

    `what` names the object in the sentence ("INV-2026-000123", "12 invoices").
    The job loop (ctx.system) may do its jobs' transitions; a person may not
    pass as the job loop (its actors hold a colon, no passwd name does)."""
    ok, role = _decide(ctx, action)
    ctx.role = role
    if not ok:
        raise NotAllowed(roles.refusal(ctx.user, action, role, what), user=ctx.user, action=action, role=role)


# --------------------------------------------------------------------------
# Users: add, change role, remove — by an admin (or anyone, for the first
# user, who must be an admin: single-admin mode hands over to team mode).


@dataclass(frozen=True)
class User:
    name: str
    role: str
    added_at: dt.datetime
    added_by: str


def _name(value: str) -> str:
    name = typed("name", value, max_len=NAME_MAX)
    if ":" in name or " " in name:
        raise UserError("name", f"{name!r} is not an OS user name (no spaces, no colons)")
    return name


def list_users() -> list[User]:
    return [User(u.name, u.role, u.added_at, u.added_by) for u in AppUser.select().order_by(AppUser.name)]


def add_user(ctx: Ctx, name: str, role: str) -> tuple[User, str | None]:
    """Add a user, or change the role of one: returns (user, previous role).

    The first user of a store must be an admin (else nobody could add the
    next one); from then on only an admin may change users, and the last
    admin cannot demote themselves."""
    name, role = _name(name), roles.parse_role(role)
    with database.atomic():
        if not team_mode():
            if role != roles.ADMIN:
                raise UserError(
                    "role",
                    "the first user of a store must be an admin "
                    f"(`tui-billing user add {ctx.user} --role admin`), who then adds the others",
                )
            ctx.role = None
        else:
            require(ctx, "users", name)
        previous = role_of(name)
        if previous == roles.ADMIN and role != roles.ADMIN and _admins() == 1:
            raise UserError("role", f"{name} is the last admin: add another admin first")
        now = ctx.clock.now()
        if previous is None:
            AppUser.insert(name=name, role=role, added_at=now, added_by=ctx.user).execute()
            write_audit(ctx, "user_add", None, None, None, user=name, role=role)
        elif previous != role:
            AppUser.update(role=role).where(AppUser.name == name).execute()
            write_audit(ctx, "user_role", None, None, None, user=name, role=role, previous_role=previous)
        user = AppUser.get_by_id(name)
    return User(user.name, user.role, user.added_at, user.added_by), previous


def remove_user(ctx: Ctx, name: str) -> User:
    name = _name(name)
    with database.atomic():
        require(ctx, "users", name)
        user = AppUser.get_or_none(AppUser.name == name)
        if user is None:
            raise UserError("name", f"{name} is not a user of this store")
        if user.role == roles.ADMIN and _admins() == 1:
            raise UserError(
                "name", f"{name} is the last admin: add another admin first (a store with users always has an admin)"
            )
        AppUser.delete().where(AppUser.name == name).execute()
        write_audit(ctx, "user_remove", None, None, None, user=name, role=user.role)
    return User(user.name, user.role, user.added_at, user.added_by)


def _admins() -> int:
    return AppUser.select().where(AppUser.role == roles.ADMIN).count()
