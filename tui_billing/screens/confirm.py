"""A yes/no question before a bulk action (approve: count and sums per currency),
and the approve question when flagged invoices are among those chosen."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmModal(ModalScreen[bool]):
    BINDINGS = [
        Binding("escape,n", "cancel", "Cancel", id="modal.cancel"),
        Binding("y", "confirm", "Yes", id="modal.confirm"),
    ]

    def __init__(self, title: str, body, confirm: str = "Confirm", scroll: bool = False):
        """`body`: a Text or any Rich renderable (a str is read as plain text)."""
        super().__init__()
        self.title_text = title
        self.body = Text(body) if isinstance(body, str) else body
        self.confirm = confirm
        self.scroll = scroll  # a long body scrolls (the buttons stay in sight)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.title_text), classes="dialog-title")
            if self.scroll:
                with VerticalScroll(classes="dialog-scroll"):
                    yield Static(self.body, classes="dialog-body")
            else:
                yield Static(self.body, classes="dialog-body")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.confirm} (y)", variant="primary", id="ok", compact=True)
                yield Button("Cancel (n)", id="cancel", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "ok")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class ApproveModal(ModalScreen[str | None]):
    """Approve with flagged invoices among the chosen: "unflagged" (approve
    only the others), "flagged" (go on to accept the flags: a second
    confirmation), or None."""

    UNFLAGGED, FLAGGED = "unflagged", "flagged"
    BINDINGS = [
        Binding("escape,n", "cancel", "Cancel", id="modal.cancel"),
        Binding("y", "confirm", "Approve unflagged", id="modal.confirm"),
        Binding("f", "include_flagged", "Include flagged"),  # no id: not remapped (README lists ids)
    ]

    def __init__(self, title: str, body: Text | str, unflagged: int):
        super().__init__()
        self.title_text = title
        self.body = body
        self.unflagged = unflagged  # how many would be approved without accepting flags

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.title_text), classes="dialog-title")
            with VerticalScroll(classes="dialog-scroll"):
                yield Static(self.body, classes="dialog-body")
            with Horizontal(classes="buttons"):
                if self.unflagged:
                    yield Button(
                        f"Approve {self.unflagged:,} unflagged (y)", variant="primary", id="unflagged", compact=True
                    )
                yield Button(
                    "Include flagged… (f)",
                    variant="warning" if self.unflagged else "primary",
                    id="flagged",
                    compact=True,
                )
                yield Button("Cancel (n)", id="cancel", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id if event.button.id in (self.UNFLAGGED, self.FLAGGED) else None)

    def action_confirm(self) -> None:
        if self.unflagged:
            self.dismiss(self.UNFLAGGED)
        else:
            self.app.bell()

    def action_include_flagged(self) -> None:
        self.dismiss(self.FLAGGED)

    def action_cancel(self) -> None:
        self.dismiss(None)
