"""The key footer: Textual's, recomposed only when what it shows changed.

Textual's footer rebuilds all its keys on every bindings update of its
screen (the screen shown, suspended, the focus moved): three times when F3
shows the finder, 10-15 ms each of the key press's wait. This one rebuilds
once per refresh at most, and only when a key, its words, its state or its
tooltip changed.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shown: tuple[Any, ...] | None = None  # what the keys shown were built from
        self._pending = False  # a rebuild is asked for after the next refresh

    def bindings_changed(self, screen: Screen[Any]) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._pending:
            self._pending = True
            self.call_after_refresh(self._recompose_if_changed)

    async def _recompose_if_changed(self) -> None:
        self._pending = False
        shown = self._what_is_shown()
        if shown != self._shown:
            self._shown = shown
            await self.recompose()

    def _what_is_shown(self) -> tuple[Any, ...]:
        """What compose() builds the keys from (Textual's Footer.compose)."""
        active = self.screen.active_bindings

        def key(entry: Any) -> tuple[Any, ...]:
            _node, b, enabled, tooltip = entry
            return (b.key, b.action, b.description, b.group, enabled, tooltip, self.app.get_key_display(b))

        palette = active.get(self.app.COMMAND_PALETTE_BINDING) if self.show_command_palette else None
        return (
            tuple(key(entry) for entry in active.values() if entry[1].show),
            self.app.ENABLE_COMMAND_PALETTE and palette is not None and key(palette),
        )
