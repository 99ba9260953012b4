"""Roles and what each may do (issue 16): pure rules, no store.

A store with no users is in single-admin mode: whoever can open it may do
everything, as before roles existed.  Once a user exists, every person is
looked up by their OS user name and may do what their role allows:

    viewer    find, show, download
    reviewer  + adjust, reissue, mark reviewed
    approver  + approve, accept flags
    operator  view + classes, settings, outbox, job loop, imports, bill run
    admin     everything, and users and roles

The job loop acts as a named system actor ("job:<name>") that is allowed the
jobs' own transitions only (context.Ctx.system).

Imports nothing of tui_billing but its errors.
"""

from __future__ import annotations

from .errors import FieldError

ROLES = ("viewer", "reviewer", "approver", "operator", "admin")

VIEWER, REVIEWER, APPROVER, OPERATOR, ADMIN = ROLES

# action -> the roles allowed it
_VIEW = frozenset(ROLES)
_REVIEW = frozenset({REVIEWER, APPROVER, ADMIN})
_APPROVE = frozenset({APPROVER, ADMIN})
_OPERATE = frozenset({OPERATOR, ADMIN})
ALLOWED: dict[str, frozenset[str]] = {
    "view": _VIEW,
    "adjust": _REVIEW,
    "reissue": _REVIEW,
    "review": _REVIEW,  # mark the current revision reviewed (the diff's baseline)
    "approve": _APPROVE,
    "accept_flags": _APPROVE,
    "classes": _OPERATE,
    "settings": _OPERATE,
    "outbox": _OPERATE,
    "jobs": _OPERATE,  # the job loop, and what it does: close postpay, send, expire
    "import": _OPERATE,  # xDR import, bill run, risk re-assessment
    "payments": _OPERATE,  # a payments file, manual receipts (issue 17)
    "erp": _OPERATE,  # the ERP hand-off: export, import of external totals
    "users": frozenset({ADMIN}),
}

# The verb of the refusal sentence: "bob may not <verb> INV-…: role viewer".
VERBS = {
    "view": "view",
    "adjust": "adjust",
    "reissue": "reissue",
    "review": "mark reviewed",
    "approve": "approve",
    "accept_flags": "accept the flags of",
    "classes": "change customer classes",
    "settings": "change settings",
    "outbox": "act on the outbox",
    "jobs": "run the jobs",
    "import": "import usage or run the bill run",
    "payments": "record payments or receipts",
    "erp": "exchange invoices with the ERP",
    "users": "manage users",
}

# The actions a console user sees in the footer, by role (screens read this).
DESCRIPTIONS = {
    VIEWER: "find, show and download invoices",
    REVIEWER: "adjust and reissue invoices, and what a viewer does",
    APPROVER: "approve invoices and accept their flags, and what a reviewer does",
    OPERATOR: "classes, settings, outbox, job loop, imports, bill run, payments and ERP; views invoices",
    ADMIN: "everything, and users and roles",
}


class RoleError(FieldError):
    pass


def parse_role(value: str) -> str:
    role = (value or "").strip().lower()
    if role not in ROLES:
        raise RoleError("role", f"{value!r} is not a role: one of {', '.join(ROLES)}")
    return role


def may(role: str | None, action: str) -> bool:
    """Whether `role` allows `action`; None (single-admin mode) allows all."""
    if action not in ALLOWED:
        raise KeyError(action)
    return role is None or role in ALLOWED[action]


def refusal(user: str, action: str, role: str | None, what: str = "") -> str:
    """The sentence refusing `action` to `user`: names the user, the action and the role."""
    target = f" {what}" if what else ""
    if role is None:
        return (
            f"{user} may not {VERBS[action]}{target}: not a user of this store "
            "(an admin adds users with `tui-billing user add NAME --role ROLE`)"
        )
    return f"{user} may not {VERBS[action]}{target}: role {role}"
