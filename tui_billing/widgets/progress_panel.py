"""A one-line progress strip for bulk actions; the rest of the UI stays live."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar


class ProgressPanel(Horizontal):
    DEFAULT_CSS = """
    ProgressPanel { height: 1; display: none; background: $boost; }
    ProgressPanel.-running { display: block; }
    ProgressPanel Label { width: auto; padding: 0 1; }
    ProgressPanel ProgressBar { width: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Label("", id="progress-label")
        yield ProgressBar(total=None, show_eta=False, id="progress-bar")

    def start(self, label: str, total: int | None) -> None:
        self.query_one("#progress-label", Label).update(label)
        self.query_one(ProgressBar).update(total=total, progress=0)
        self.add_class("-running")

    def advance_to(self, done: int, total: int) -> None:
        self.query_one(ProgressBar).update(total=total, progress=done)

    def finish(self) -> None:
        self.remove_class("-running")

    @property
    def running(self) -> bool:
        return self.has_class("-running")
