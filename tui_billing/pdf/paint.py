"""Painting: a page's display lists (layout.py) become marks on the page.

Two painters, one result:

* ``ContentStream`` (the fast path) writes the page as one content-stream
  block of PDF operators.  Drawing each string through ``FPDF.text()`` costs
  several µs of state bookkeeping; the display list already knows
  everything, so fills and rules come first, then a single text object
  (absolute ``Tm`` positions, font and colour set only when they change), all
  inside ``q ... Q`` so fpdf2's own idea of the graphics state stays true.
  Handing the block to the page is fpdf_internals.py's job.
* ``paint_with_api`` (the fallback) draws the same lists in the same order
  with fpdf2's public drawing methods (``set_font``, ``text``, ``rect``,
  ``line``).

The draft watermark uses the public API on both paths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from fpdf import FPDF

from .fonts import FAMILY
from .layout import ALERT, PAGE_H, PAGE_W
from .measure import K, Text


class PageFont(Protocol):
    i: int  # the font's resource number: /F<i>

    def encode_text(self, text: str) -> str: ...  # -> "(...) Tj"


def rgb(color: tuple[int, int, int]) -> str:
    return " ".join(f"{c / 255:.3f}".rstrip("0").rstrip(".") or "0" for c in color)


class ContentStream:
    """Turns one page's display lists into one content-stream block.  Strings
    are encoded by the document's fonts (which record the glyphs to embed)."""

    def __init__(self, fonts: Mapping[str, PageFont]):
        self.fonts = fonts
        self.colors: dict[tuple[int, int, int], str] = {}

    def rgb(self, color: tuple[int, int, int]) -> str:
        try:
            return self.colors[color]
        except KeyError:
            value = self.colors[color] = rgb(color)
            return value

    def block(self, *display_lists: list[tuple]) -> str:
        fonts, k, page_h = self.fonts, K, PAGE_H
        graphics: list[str] = []
        texts: list[str] = []
        fill = stroke = text_fill = font = None
        for ops in display_lists:
            for op in ops:
                kind = op[0]
                if kind == "text":
                    _, x, y, s, style, size, color = op
                    if font != (style, size):
                        font = (style, size)
                        texts.append(f"/F{fonts[style].i} {size:.2f} Tf")
                    if text_fill != color:
                        text_fill = color
                        texts.append(f"{self.rgb(color)} rg")
                    texts.append(f"1 0 0 1 {x * k:.2f} {(page_h - y) * k:.2f} Tm {fonts[style].encode_text(s)}")
                elif kind == "rect":
                    _, x, y, w, h, color = op
                    if fill != color:
                        fill = color
                        graphics.append(f"{self.rgb(color)} rg")
                    graphics.append(f"{x * k:.2f} {(page_h - y) * k:.2f} {w * k:.2f} {-h * k:.2f} re f")
                else:
                    _, x1, y1, x2, y2, color, width = op
                    if stroke != (color, width):
                        stroke = (color, width)
                        graphics.append(f"{self.rgb(color)} RG {width * k:.2f} w")
                    graphics.append(f"{x1 * k:.2f} {(page_h - y1) * k:.2f} m {x2 * k:.2f} {(page_h - y2) * k:.2f} l S")
        body = "\n".join(graphics)
        if texts:
            body += "\nBT\n" + "\n".join(texts) + "\nET"
        # latin-1 throughout: encode_text() gives UTF-16 bytes as latin-1 chars
        return f"q\n{body}\nQ"


def paint_with_api(pdf: FPDF, *display_lists: list[tuple]) -> None:
    """The same marks through fpdf2's public drawing methods: fills and rules
    first, then the strings, as ``ContentStream`` orders them.  The fonts are
    the ``FAMILY`` faces added with ``FPDF.add_font``."""
    graphics = [op for ops in display_lists for op in ops if op[0] != "text"]
    texts = [op for ops in display_lists for op in ops if op[0] == "text"]
    with pdf.local_context():
        for op in graphics:
            if op[0] == "rect":
                _, x, y, w, h, color = op
                pdf.set_fill_color(*color)
                pdf.rect(x, y, w, h, style="F")
            else:
                _, x1, y1, x2, y2, color, width = op
                pdf.set_draw_color(*color)
                pdf.set_line_width(width)
                pdf.line(x1, y1, x2, y2)
        for _, x, y, s, style, size, color in texts:
            pdf.set_font(FAMILY, style, size)
            pdf.set_text_color(*color)
            pdf.text(x, y, s)


def watermark(pdf: FPDF, word: str, text: Text) -> None:
    """The draft's word across the page, rotated, 8 % opaque."""
    size = 110.0
    width = text.width(word, "B", size)
    if width > 190:
        size = size * 190 / width
        width = text.width(word, "B", size)
    with pdf.local_context(fill_opacity=0.08, text_color=ALERT):
        pdf.set_font(FAMILY, "B", size)
        with pdf.rotation(35, x=PAGE_W / 2, y=PAGE_H / 2):
            pdf.text(PAGE_W / 2 - width / 2, PAGE_H / 2 + size / K * 0.35, word)


Painter = Callable[..., None]  # painter(*display_lists): draws them on the current page
