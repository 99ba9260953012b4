"""What the console user's role leaves out (issue 16).

The domain refuses every transition a role does not allow (access.require);
the console only shows it first: an action the role may not take is left out
of the footer and the palette (Screen.check_action returning False), and its
key, if pressed, says why instead of doing nothing.  The role is the one
found when the console opened (ctx.role; None: single-admin mode, which
allows everything); a role changed meanwhile is still enforced by the
domain, whose refusal the action's toast shows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import events

from ..roles import may, refusal

if TYPE_CHECKING:  # a mixin for a Screen: the type checker sees it as one
    from textual import getters
    from textual.screen import Screen

    from ..app import BillingApp

    _ScreenBase = Screen[Any]
else:
    _ScreenBase = object


class RoleGate(_ScreenBase):
    """Mixin for a Screen: ROLE_ACTIONS maps its action names to roles.ALLOWED's."""

    ROLE_ACTIONS: dict[str, str] = {}

    if TYPE_CHECKING:  # the console's own App (its ctx, change_seq...), for the type checker
        app = getters.app(BillingApp)

    def role_allows(self, action: str) -> bool:
        needed = self.ROLE_ACTIONS.get(action)
        if needed is None:
            return True
        return may(getattr(self.app.ctx, "role", None), needed)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.role_allows(action):
            return False  # left out of the footer and the palette; on_key says why
        return super().check_action(action, parameters)

    def refused_key(self, key: str) -> str | None:
        """The sentence for a key bound to an action this role may not take."""
        for binding in self._bindings.key_to_bindings.get(key, ()):  # every class's BINDINGS, keymap applied
            if not self.role_allows(binding.action):
                ctx = self.app.ctx
                return refusal(ctx.user, self.ROLE_ACTIONS[binding.action], ctx.role)
        return None

    def on_key(self, event: events.Key) -> None:
        sentence = self.refused_key(event.key)
        if sentence is not None:
            event.stop()
            self.app.notify(sentence, title="Not allowed", severity="warning")
