"""F8: the lines this console's job loop wrote, wrapped between words.

A log line is `key=value` pairs; a value can be long and without a space
(`jobs=close_postpay,auto_approve,…`, a mail holder).  A terminal would cut
it anywhere; here a line breaks at a space, else after a comma, `|` or `;`,
and only a single word longer than the whole width is cut.  The lines after
the first of an entry are indented, so every entry starts at the left edge.
Log lines carry text from imports (service names, errors): shown escaped
(text.shown), never as markup.
"""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Static

from ..text import shown

INDENT = "  "  # the lines after the first of an entry
_PIECES = re.compile(r"[^,|;]*[,|;]|[^,|;]+")  # a word broken after its commas, bars, semicolons


def _cut(word: str, width: int) -> list[str]:
    """A word wider than `width` cells: pieces that fit, cut after , | ; where it can."""
    out: list[str] = []
    line = ""
    for piece in _PIECES.findall(word):
        while cell_len(piece) > width:  # no separator within reach: cut the piece itself
            room = width - cell_len(line)
            if room <= 0:
                out.append(line)
                line, room = "", width
            out.append(line + piece[:room])
            piece, line = piece[room:], ""
        if cell_len(line + piece) > width:
            out.append(line)
            line = piece
        else:
            line += piece
    if line:
        out.append(line)
    return out


def wrap_entry(line: str, width: int) -> list[str]:
    """One log line as lines of at most `width` cells, broken between words."""
    width = max(width, len(INDENT) + 8)
    out: list[str] = []
    current = ""

    def prefix() -> str:
        return INDENT if out else ""

    for word in line.split(" "):
        candidate = f"{current} {word}" if current else word
        if cell_len(prefix() + candidate) <= width:
            current = candidate
            continue
        if current:
            out.append(prefix() + current)
            current = ""
        if cell_len(prefix() + word) <= width:
            current = word
            continue
        pieces = _cut(word, width - len(INDENT))
        for piece in pieces[:-1]:
            out.append(prefix() + piece)
        current = pieces[-1] if pieces else ""
    if current or not out:
        out.append(prefix() + current)
    return out


class LogLines(Widget):
    """The log, wrapped to the widget's width when drawn (a resize re-wraps it)."""

    DEFAULT_CSS = """
    LogLines { height: auto; }
    """

    def __init__(self, lines: list[str], **kwargs):
        super().__init__(**kwargs)
        self.lines = [shown(line) for line in lines]

    def wrapped(self, width: int) -> list[str]:
        return [part for line in self.lines for part in wrap_entry(line, width)]

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self.wrapped(width))

    def render(self) -> Text:
        width = self.content_size.width or self.size.width
        return Text("\n".join(self.wrapped(width)), no_wrap=True, overflow="crop")


class JobLogModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close", id="modal.close")]

    def __init__(self, title: str, lines: list[str]):
        super().__init__()
        self.title_text = title
        self.lines = lines

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide-dialog"):
            yield Static(Text(self.title_text), classes="dialog-title")
            with VerticalScroll(id="job-log-scroll", classes="dialog-scroll tall"):
                yield LogLines(self.lines, id="job-log")
            yield Static("↑↓ PgUp PgDn scroll · Esc close", classes="dialog-hint")

    def on_mount(self) -> None:
        scroll = self.query_one("#job-log-scroll")
        scroll.focus()
        scroll.scroll_end(animate=False)  # latest last: open on the latest

    def action_close(self) -> None:
        self.dismiss(None)
