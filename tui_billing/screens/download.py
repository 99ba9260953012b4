"""Download PDFs: a directory, and optionally one merged file."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from ..text import shown
from ..widgets.fmt import plural


def default_directory() -> Path:
    return Path.cwd() / "invoices"


class DownloadModal(ModalScreen[tuple[Path, Path | None] | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="modal.cancel"),
        Binding("ctrl+s", "submit", "Download", id="modal.submit"),
    ]

    def __init__(self, count: int, stamp: dt.datetime, directory: Path | None = None):
        super().__init__()
        self.count = count
        self.directory = directory or default_directory()
        self.merged_name = f"invoices-{stamp:%Y%m%d-%H%M}.pdf"

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"Download {plural(self.count, 'invoice')} (PDF)", classes="dialog-title")
            with Horizontal(classes="form-row"):
                yield Label("Directory", classes="form-label")
                yield Input(str(self.directory), id="dl-dir", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("", classes="form-label")
                yield Checkbox("Also one merged PDF", value=False, id="dl-merge", compact=True)
            with Horizontal(classes="form-row"):
                yield Label("Merged file", classes="form-label")
                yield Input(self.merged_name, id="dl-merged", compact=True, disabled=True)
            yield Static("", id="dl-error", classes="form-error")
            with Horizontal(classes="buttons"):
                yield Button("Download  ^s", variant="primary", id="ok", compact=True)
                yield Button("Cancel  esc", id="cancel", compact=True)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.query_one("#dl-merged", Input).disabled = not event.value

    def values(self) -> tuple[Path, Path | None] | None:
        error = self.query_one("#dl-error", Static)
        raw = self.query_one("#dl-dir", Input).value.strip()
        if not raw:
            error.update("✗ directory: is required")
            return None
        directory = Path(os.path.expanduser(raw))
        if directory.exists() and not directory.is_dir():
            error.update(Text(f"✗ directory: {shown(directory)} is not a directory"))  # typed: never markup
            return None
        merged = None
        if self.query_one("#dl-merge", Checkbox).value:
            name = self.query_one("#dl-merged", Input).value.strip()
            if not name.lower().endswith(".pdf"):
                error.update("✗ merged file: should end in .pdf")
                return None
            merged = Path(os.path.expanduser(name))
            if not merged.is_absolute():
                merged = directory / merged
        error.update("")
        return directory, merged

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self.action_submit()
        else:
            self.dismiss(None)

    def action_submit(self) -> None:
        values = self.values()
        if values is not None:
            self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)
