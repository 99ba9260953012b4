"""The text of an invoice's current PDF (pdf.pdf_text), scrollable."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class PdfTextModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close", id="modal.close")]

    def __init__(self, title: str, text: str):
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide-dialog"):
            yield Static(self.title_text, classes="dialog-title")
            with VerticalScroll(id="pdf-scroll", classes="dialog-scroll tall"):
                yield Static(Text(self.text or "(the PDF has no text)"), id="pdf-text")
            yield Static("↑↓ PgUp PgDn scroll · Esc close", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#pdf-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)
