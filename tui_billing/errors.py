"""The errors every layer raises and every face reads: the bottom of the house.

- FieldError: input refused.  `.field` names what is at fault (a form field,
  a flag, a setting), `.reason` says why; str() is "field: reason".  Each
  module has its own subclass (workflow.BadInput, text.TextError,
  money.MoneyError, customer_classes.ClassError, store.queries.FilterError,
  risk_settings.RiskSettingsError, ConfigError), so a caller catches what it
  expects; the faces read `.field` and `.reason`, never parse str().
- Refused / NotFound: a transition that does not apply to the invoice as it
  is; str() is the sentence admins read ("INV-… is rejected: …").

Imports nothing of tui_billing.
"""

from __future__ import annotations


class FieldError(ValueError):
    """Input refused: names the field at fault and says why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason

    def __reduce__(
        self,
    ) -> tuple[type[FieldError], tuple[str, str]]:  # copy and pickle rebuild it from (field, reason), not from str()
        return type(self), (self.field, self.reason)


class ConfigError(FieldError):
    """A setting, a config key or a flag that cannot be accepted.

    `ConfigError(field, reason)`; the older one-argument form
    `ConfigError("key: reason")` is still read (the message stays the same),
    split once here, where it is built."""

    def __init__(self, field: str, reason: str | None = None):
        if reason is None:
            head, sep, tail = field.partition(": ")
            field, reason = (head, tail) if sep else ("", field)
        super().__init__(field, reason)


class Refused(Exception):
    """A transition that does not apply; str() is the sentence admins read."""

    def __init__(self, number: str, reason: str):
        super().__init__(f"{number} {reason}" if number else reason)
        self.number = number
        self.reason = reason


class NotFound(Refused):
    pass


class NotAllowed(Refused):
    """The acting user's role does not allow the action (issue 16); str() is
    the sentence: "bob may not approve INV-2026-000123: role reviewer"."""

    def __init__(self, sentence: str, *, user: str = "", action: str = "", role: str | None = None):
        super().__init__("", sentence)
        self.user, self.action, self.role = user, action, role
