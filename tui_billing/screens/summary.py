"""What a bulk action did: how many succeeded, and each failure with its reason."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from ..context import BulkResult
from ..text import shown

SHOW_DONE = 30


class SummaryModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,enter,q", "close", "Close", id="modal.close")]

    def __init__(self, title: str, result: BulkResult, notes: list[str] | None = None):
        super().__init__()
        self.title_text = title
        self.result = result
        self.notes = notes or []

    def body(self) -> Text:
        r = self.result
        text = Text()
        text.append(f"✓ {len(r.done):,} done", style="bold green")
        text.append("   ")
        text.append(f"✗ {len(r.failed):,} failed", style="bold red" if r.failed else "dim")
        text.append("\n")
        for note in self.notes:
            text.append(shown(note) + "\n")
        if r.failed:
            text.append("\nFailed:\n", style="bold")
            for number, reason in r.failed:
                text.append(f"  {shown(number)}", style="bold")
                text.append(f"  {shown(reason)}\n")
        if r.done:
            text.append("\nDone: ", style="bold")
            listed = ", ".join(shown(n) for n in r.done[:SHOW_DONE])
            more = len(r.done) - SHOW_DONE
            text.append(listed + (f" and {more:,} more" if more > 0 else ""))
        return text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(Text(self.title_text), classes="dialog-title")
            with VerticalScroll(classes="dialog-scroll", id="summary-scroll"):
                yield Static(self.body(), id="summary-body")
            with Horizontal(classes="buttons"):
                yield Button("Close", variant="primary", id="close", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
