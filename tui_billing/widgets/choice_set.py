"""A RadioSet whose highlight is its choice.

Textual's RadioSet moves a highlight with the arrow keys and presses a
button only on Enter/Space: Down, then Ctrl+S, applied the option that was
*not* highlighted (issue 13: the off-peak reissue queued while "Now" was
shown).  Here the arrow keys press the option they move to, so what the
admin sees highlighted is what a dialog applies.
"""

from __future__ import annotations

from textual.widgets import RadioButton, RadioSet


class ChoiceSet(RadioSet):
    def on_mount(self) -> None:
        # RadioSet's own mount (run after this one) highlights the first
        # option; afterwards, highlight the pressed one.
        self.call_later(self._highlight_chosen)

    def _highlight_chosen(self) -> None:
        chosen = self.chosen
        if chosen is not None:
            self._selected = self._nodes.index(chosen)

    @property
    def chosen(self) -> RadioButton | None:
        """The option that is on, read from the buttons themselves: the
        pressed_button bookkeeping catches up only when the message arrives."""
        for button in self.query(RadioButton):
            if button.value:
                return button
        return self.pressed_button

    def action_next_button(self) -> None:
        mounting = self._selected is None  # RadioSet's mount: highlight only
        super().action_next_button()
        if not mounting:
            self._press_highlighted()

    def action_previous_button(self) -> None:
        super().action_previous_button()
        self._press_highlighted()

    def _press_highlighted(self) -> None:
        if self._selected is None:
            return
        button = self._nodes[self._selected]
        if isinstance(button, RadioButton) and not button.value:
            chosen = self.chosen
            if chosen is not None and chosen is not button:
                with self.prevent(RadioButton.Changed):  # as RadioSet does: no "clicked off" echo
                    chosen.value = False  # at once, so `chosen` is never two buttons
            button.value = True  # RadioSet hears it and posts Changed
