"""An invoice's current PDF in the console (`p`): the page as a picture where
the terminal can draw one, its text (pdf.pdf_text) where it cannot.

Pictures: pypdfium2 rasterises a page, textual-image draws it with the
Kitty graphics protocol (kitty, Ghostty) or as Sixel (foot, WezTerm,
Konsole, xterm -ti vt340, mlterm, iTerm2, Windows Terminal, tmux built with
Sixel …).  Which one a terminal speaks is asked the way textual-image asks:
an escape-sequence query answered by the terminal.  Textual reads the
terminal's input itself, so the question is asked once per process, on the
first `p`, with the console suspended for that instant (the screen blinks
once).  Headless (tests, Pilot) and non-terminal runs never ask: they get the
text.  `$TUI_BILLING_PICTURES` overrides the answer: `kitty`, `sixel`, `off`
(text only) or `auto` (the default).

Where no picture protocol is found the text comes first; `t` still offers a
coarse picture of the layout drawn with coloured half blocks.

Heavy imports (pypdfium2, PIL, textual_image) happen only here, inside
functions, when a picture is first wanted: never at console start, never in
the CLI.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

PICTURES_ENV = "TUI_BILLING_PICTURES"
KITTY, SIXEL = "kitty", "sixel"
# Terminals whose TERM says what they draw, for when the query got no answer in
# time (a slow SSH link): textual-image waits 0.1 s for it.
_TERM_HINTS = {"xterm-kitty": KITTY, "xterm-ghostty": KITTY, "foot": SIXEL, "foot-extra": SIXEL}
MAX_SCALE = 4.0  # at most 288 dpi, whatever the terminal's size
KEEP_PAGES = 6  # rendered pages kept by an open preview (a few MB each)

_PDFIUM_LOCK = threading.Lock()  # pdfium is not thread-safe
_DETECTED: str | None = None  # the terminal's answer, once asked ("" = no pictures)


# --------------------------------------------------------------------------
# Pages as images (pypdfium2)
# --------------------------------------------------------------------------


def page_sizes(data: bytes) -> list[tuple[float, float]]:
    """(width, height) in points of every page."""
    import pypdfium2

    with _PDFIUM_LOCK:
        doc = pypdfium2.PdfDocument(bytes(data))
        try:
            return [doc.get_page_size(i) for i in range(len(doc))]
        finally:
            doc.close()


def render_page(data: bytes, index: int, *, width: int | None = None, height: int | None = None) -> Any:
    """Page ``index`` (0-based) of a PDF as an RGB PIL image, scaled to fit
    ``width`` x ``height`` pixels (either may be None: no limit that way),
    keeping its proportions; at most MAX_SCALE pixels per point."""
    import pypdfium2

    with _PDFIUM_LOCK:
        doc = pypdfium2.PdfDocument(bytes(data))
        try:
            page = doc[index]
            try:
                page_w, page_h = page.get_size()
                scales = [MAX_SCALE]
                if width:
                    scales.append(width / page_w)
                if height:
                    scales.append(height / page_h)
                bitmap = page.render(scale=max(min(scales), 0.05))
                try:
                    return bitmap.to_pil().convert("RGB")
                finally:
                    bitmap.close()
            finally:
                page.close()
        finally:
            doc.close()


# --------------------------------------------------------------------------
# What the terminal can draw
# --------------------------------------------------------------------------


def picture_protocol(app) -> str:
    """``"kitty"``, ``"sixel"`` or ``""`` (no pictures) for ``app``'s terminal."""
    choice = os.environ.get(PICTURES_ENV, "auto").strip().lower()
    if choice in ("off", "text", "no", "none", "0", "false"):
        return ""
    if app.is_headless or not _on_a_terminal():
        return ""  # tests, Pilot, output to a file: nothing may be drawn
    if choice in (KITTY, SIXEL):
        return choice if _import_textual_image(app) else ""
    global _DETECTED
    if _DETECTED is None:
        _DETECTED = _ask_terminal(app)
    return _DETECTED


def _on_a_terminal() -> bool:
    stdout = sys.__stdout__
    return bool(stdout is not None and stdout.isatty())


def _import_textual_image(app) -> bool:
    """Import textual-image, which asks the terminal on import (Sixel in the
    device attributes, a Kitty graphics query, a cell's size in pixels).
    On a terminal Textual reads the answers itself, so the console is
    suspended for that instant; where it cannot be, nothing is imported."""
    if "textual_image.widget" in sys.modules:
        return True
    try:
        if app.is_headless or not _on_a_terminal():
            import textual_image.widget  # noqa: F401  (no terminal: nothing is asked)

            return True
        driver = getattr(app, "_driver", None)
        if driver is None or not driver.can_suspend:
            return False
        with app.suspend():
            import textual_image.widget  # noqa: F401
        return True
    except Exception:  # not installed, or the terminal went away
        return False


def _ask_terminal(app) -> str:
    hint = _TERM_HINTS.get(os.environ.get("TERM", ""), "")
    if not _import_textual_image(app):
        return hint
    from textual_image import renderable

    if renderable.Image is renderable.TGPImage:
        return KITTY
    if renderable.Image is renderable.SixelImage:
        return SIXEL
    return hint  # no answer in time (a slow link): trust what TERM says


def _image_widget_class(protocol: str):
    from textual_image import widget

    return {KITTY: widget.TGPImage, SIXEL: widget.SixelImage}.get(protocol, widget.HalfcellImage)


def _cell_pixels() -> tuple[int, int]:
    """A terminal cell in pixels, as textual-image measured it on import."""
    if "textual_image.widget" not in sys.modules:
        return 10, 20  # textual-image's own default
    try:
        from textual_image._terminal import get_cell_size

        size = get_cell_size()
        return max(size.width, 1), max(size.height, 1)
    except Exception:
        return 10, 20


# --------------------------------------------------------------------------
# The modal
# --------------------------------------------------------------------------


class PdfTextModal(ModalScreen[None]):
    """The PDF's text; with ``pdf_bytes``, also its pages as pictures (shown
    first where the terminal draws pictures; `t` switches)."""

    DEFAULT_CSS = """
    PdfTextModal #pdf-pictures {
        height: 1fr;
        align-horizontal: center;
    }
    PdfTextModal #pdf-pictures.whole-page {
        overflow-y: hidden;
    }
    PdfTextModal #pdf-page-note {
        color: $text-muted;
    }
    """

    BINDINGS = [
        Binding("escape,q", "close", "Close", id="modal.close"),
        Binding("t", "toggle", "Picture/text", show=False),
        # priority: the page-wide picture scrolls with ↑↓; PgUp/PgDn turn pages
        Binding("pagedown", "page(1)", "Next page", show=False, priority=True),
        Binding("pageup", "page(-1)", "Previous page", show=False, priority=True),
        Binding("z", "zoom", "Whole page/width", show=False),
    ]

    def __init__(self, title: str, text: str, pdf_bytes: bytes | None = None):
        super().__init__()
        self.title_text = title
        self.text = text
        self.pdf_bytes = bytes(pdf_bytes) if pdf_bytes else None
        self.mode = "text"  # or "picture"
        self.protocol = ""  # what the terminal draws: kitty, sixel, "" (coarse half blocks)
        self.page = 0
        self.pages: list[tuple[float, float]] = []  # sizes, once known
        self.whole_page = False  # False: page width, scroll down it
        self.images: dict[tuple[int, bool, tuple[int, int]], Any] = {}  # rendered pages
        self.shown: tuple[int, bool, tuple[int, int]] | None = None
        self._placing = asyncio.Lock()  # one page replaces another at a time

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide-dialog"):
            yield Static(self.title_text, classes="dialog-title", id="pdf-title")
            with VerticalScroll(id="pdf-scroll", classes="dialog-scroll tall"):
                yield Static(Text(self.text or "(the PDF has no text)"), id="pdf-text")
            if self.pdf_bytes:
                pictures = VerticalScroll(id="pdf-pictures")
                pictures.display = False
                with pictures:
                    yield Static("Drawing the page…", id="pdf-page-note")
            yield Static(self._hint(), classes="dialog-hint", id="pdf-hint")

    def on_mount(self) -> None:
        self.query_one("#pdf-scroll").focus()
        if self.pdf_bytes:
            self.protocol = picture_protocol(self.app)
            if self.protocol:
                self._set_mode("picture")

    # -- keys ------------------------------------------------------------------
    def action_close(self) -> None:
        self._drop_images()
        self.dismiss(None)

    def action_toggle(self) -> None:  # type: ignore[override]  # this screen's `t`, not DOMNode's toggle(attribute)
        if not self.pdf_bytes:
            return
        if self.mode == "text" and not _import_textual_image(self.app):
            self.notify("This terminal cannot show the page as a picture.", title="PDF", severity="warning")
            return
        if self.mode == "text" and not self.protocol and not self.images:
            self.notify(
                "This terminal draws no pictures (Kitty graphics or Sixel): a coarse one in half blocks.", title="PDF"
            )
        self._set_mode("text" if self.mode == "picture" else "picture")

    def action_page(self, step: int) -> None:
        if self.mode != "picture":
            scroll = self.query_one("#pdf-scroll", VerticalScroll)
            scroll.scroll_page_down() if step > 0 else scroll.scroll_page_up()
            return
        if self.pages and 0 <= self.page + step < len(self.pages):
            self.page += step
            self._show_page()

    def on_resize(self) -> None:
        if self.mode == "picture":
            self.call_after_refresh(self._show_page)

    def action_zoom(self) -> None:
        if self.mode == "picture":
            self.whole_page = not self.whole_page
            self.query_one("#pdf-pictures").set_class(self.whole_page, "whole-page")
            self.query_one("#pdf-hint", Static).update(self._hint())
            self._show_page()

    # -- showing ---------------------------------------------------------------
    def _set_mode(self, mode: str) -> None:
        self.mode = mode
        picture = mode == "picture"
        self.query_one("#pdf-scroll").display = not picture
        pictures = self.query_one("#pdf-pictures", VerticalScroll)
        pictures.display = picture
        (pictures if picture else self.query_one("#pdf-scroll")).focus()
        self.query_one("#pdf-hint", Static).update(self._hint())
        if picture:
            self.call_after_refresh(self._show_page)
        else:
            self._update_title()

    def _hint(self) -> str:
        if not self.pdf_bytes:
            return "↑↓ PgUp PgDn scroll · Esc close"
        if self.mode == "text":
            return "↑↓ PgUp PgDn scroll · t picture · Esc close"
        zoom = "z page width" if self.whole_page else "↑↓ scroll · z whole page"
        return f"PgUp PgDn page · {zoom} · t text · Esc close"

    def _update_title(self) -> None:
        title = self.title_text
        if self.mode == "picture":
            title = title.replace("PDF text", "PDF")
            if self.pages:
                title += f" · page {self.page + 1} of {len(self.pages)}"
            if not self.protocol:
                title += " · coarse"
        self.query_one("#pdf-title", Static).update(title)

    def _target(self) -> tuple[int, int]:
        """The picture area in pixels (width, height), as textual-image counts them."""
        pictures = self.query_one("#pdf-pictures")
        region = pictures.content_region
        width = region.width
        if not self.whole_page:  # a page as wide as the area is taller: leave room for the scrollbar
            width -= pictures.styles.scrollbar_size_vertical
        cell_w, cell_h = _cell_pixels()
        return max(width, 10) * cell_w, max(region.height, 5) * cell_h

    def _show_page(self) -> None:
        if self.mode != "picture" or not self.pdf_bytes:
            return
        key = (self.page, self.whole_page, self._target())
        if key == self.shown:
            pass  # back on the page still shown (the next one was not drawn yet)
        elif key in self.images:
            self.call_later(self._put_image, key, self.images[key])
        else:
            self._rasterise(key)
        self._update_title()

    @work(thread=True, exclusive=True, group="pdf-page")
    def _rasterise(self, key: tuple[int, bool, tuple[int, int]]) -> None:
        index, whole_page, (width, height) = key
        try:
            data = self.pdf_bytes
            assert data is not None  # only drawn when there is a PDF
            if not self.pages:
                self.pages = page_sizes(data)
            image = render_page(data, index, width=width, height=height if whole_page else None)
        except Exception as exc:  # pypdfium2 missing, a PDF it cannot read: the text stays
            self.app.call_from_thread(self._picture_failed, exc)
            return
        self.app.call_from_thread(self._put_image, key, image)  # type: ignore[arg-type]  # a coroutine function

    def _picture_failed(self, exc: Exception) -> None:
        self.notify(
            f"No picture of this PDF ({exc or type(exc).__name__}); showing its text.", title="PDF", severity="warning"
        )
        self.pdf_bytes = None
        self._set_mode("text")
        self.query_one("#pdf-hint", Static).update(self._hint())

    async def _put_image(self, key, image) -> None:
        if not self.is_attached or self.mode != "picture":
            return
        self.images.pop(key, None)
        self.images[key] = image
        while len(self.images) > KEEP_PAGES:  # the least recently shown go first
            del self.images[next(iter(self.images))]
        async with self._placing:
            if key == self.shown or key[0] != self.page or key[1] != self.whole_page or not self.is_attached:
                return  # already shown, or the admin moved on meanwhile
            await self._drop_images()
            self.shown = None
            widget = _image_widget_class(self.protocol)(image, classes=f"pdf-page page-{key[0] + 1}")
            cell_w, cell_h = _cell_pixels()  # the image was rendered for this many cells
            widget.styles.width = max(1, round(image.width / cell_w))
            widget.styles.height = max(1, round(image.height / cell_h))
            pictures = self.query_one("#pdf-pictures", VerticalScroll)
            await pictures.mount(widget)
            pictures.scroll_home(animate=False)
            self.query_one("#pdf-page-note", Static).display = False
            self.shown = key
        self._update_title()

    def _drop_images(self):
        """Remove the page shown, freeing its copy in the terminal (Kitty keeps
        images sent to it until told otherwise).  Awaitable: until it is
        removed, no other page may take its place."""
        pages = self.query(".pdf-page")
        for old in pages:
            try:
                old.image = None
            except Exception:
                pass
        return pages.remove()
