"""Reissue one or many invoices: now, or in the nearest off-peak window."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, RadioButton, RadioSet, Static

from ..widgets.fmt import plural

MANY = 20  # above this, recommend the off-peak window (seed 000)


class ReissueModal(ModalScreen[str | None]):
    """Dismisses with "now", "off_peak" or None (cancelled)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="modal.cancel"),
        Binding("ctrl+s", "submit", "Reissue", id="modal.submit"),
    ]

    def __init__(self, count: int, numbers: list[str], window_text: str):
        super().__init__()
        self.count = count
        self.numbers = numbers
        self.window_text = window_text

    def compose(self) -> ComposeResult:
        which = ", ".join(self.numbers[:3]) + (f" and {self.count - 3:,} more" if self.count > 3 else "")
        with Vertical(classes="dialog"):
            yield Static(f"Reissue {plural(self.count, 'invoice')}", classes="dialog-title")
            yield Static(which, classes="dialog-body")
            yield Static("Recalculate per-service amounts from the current xDRs and subscriptions; "
                         "corrections are kept and the number does not change.", classes="dialog-hint")
            with RadioSet(id="reissue-mode"):
                yield RadioButton(f"In the off-peak window — {self.window_text}", value=True, id="mode-off_peak")
                yield RadioButton("Now — the corrected PDFs are available at once", id="mode-now")
            note = ("Many invoices: the off-peak window is recommended to spare the system."
                    if self.count > MANY else "Until it is reissued the invoice is stored as Rejected.")
            yield Static(note, classes="dialog-hint")
            with Horizontal(classes="buttons"):
                yield Button("Reissue  ^s", variant="primary", id="ok", compact=True)
                yield Button("Cancel  esc", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one(RadioSet).focus()

    def mode(self) -> str:
        pressed = self.query_one(RadioSet).pressed_button
        return "now" if pressed is not None and pressed.id == "mode-now" else "off_peak"

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(self.mode() if event.button.id == "ok" else None)

    def action_submit(self) -> None:
        self.dismiss(self.mode())

    def action_cancel(self) -> None:
        self.dismiss(None)
