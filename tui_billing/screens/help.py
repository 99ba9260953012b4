"""`?` / F1: every key of every screen, read from the bindings (so a remapped
key shows as remapped)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1,question_mark", "close", "Close", id="help.close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]):
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide-dialog"):
            yield Static("Keys", classes="dialog-title")
            with VerticalScroll(id="help-scroll", classes="dialog-scroll tall"):
                for title, keys in self.sections:
                    table = Table.grid(padding=(0, 2))
                    table.add_column(width=12, style="bold")
                    table.add_column()
                    for key, description in keys:
                        table.add_row(Text(key), Text(description))
                    yield Static(Text(title, style="bold underline"), classes="help-title")
                    yield Static(table, classes="help-table")
            yield Static("↑↓ scroll · Esc close · Ctrl+P command palette", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)
