"""Clean and measure text with the fonts' own advance widths.

Layout needs widths for wrapping, ellipses and right/decimal alignment;
they come from the parsed fonts (fonts.py), so both renderers (the fast
path and the public-API fallback) lay a document out identically.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only the widths and character sets of the programs are read
    from .fonts import FontProgram

K = 72 / 25.4  # points per mm
_CONTROL: dict[int, str | None] = {**{c: " " for c in range(0x20)}, 0x7F: " ", **{c: " " for c in range(0x80, 0xA0)}}
_CONTROL.update({0x2028: " ", 0x2029: " ", 0xFEFF: None, 0x200B: None, 0xAD: None})


class Text:
    """Clean and measure text for the two faces (immutable, shared)."""

    def __init__(self, regular: FontProgram, bold: FontProgram):
        self.cw = {"": regular.char_widths, "B": bold.char_widths}
        self.chars = frozenset(map(chr, regular.chars & bold.chars))
        self.replacement = "\ufffd" if "\ufffd" in self.chars else "?"

    def clean(self, text: object) -> str:
        """NFC, control characters to spaces, runs of spaces collapsed, and
        characters the font lacks replaced by U+FFFD (never silently dropped)."""
        s = unicodedata.normalize("NFC", str(text)).translate(_CONTROL)
        chars = self.chars
        if not chars.issuperset(s):
            s = "".join(c if c in chars else self.replacement for c in s)
        return " ".join(s.split())

    def units(self, text: str, style: str) -> float:
        """Advance width in 1/1000 em."""
        return sum(map(self.cw[style].__getitem__, text))

    def width(self, text: str, style: str, size: float) -> float:
        """Width in mm at ``size`` pt."""
        return sum(map(self.cw[style].__getitem__, text)) * size / (1000 * K)

    def fit(self, text: str, style: str, size: float, width: float, always: bool = False) -> str:
        """Text cut with an ellipsis to fit ``width`` mm (``always``: end
        with an ellipsis even if it fits)."""
        if not always and self.width(text, style, size) <= width:
            return text
        cw = self.cw[style]
        limit = width * 1000 * K / size - cw["…"]
        used = 0.0
        for n, c in enumerate(text):
            used += cw[c]
            if used > limit:
                return text[:n].rstrip() + "…"
        return text.rstrip() + "…"

    def wrap(self, text: str, style: str, size: float, width: float, max_lines: int) -> list[str]:
        """Greedy word wrap; over-long words are split; an ellipsis ends the
        last line when the text needs more than ``max_lines``."""
        if not text:
            return [""]
        cw = self.cw[style]
        limit = width * 1000 * K / size
        if self.units(text, style) <= limit:
            return [text]
        space = cw[" "]
        lines: list[str] = []
        current: list[str] = []
        current_w = 0.0
        for word in text.split(" "):
            word_w = self.units(word, style)
            if current and current_w + space + word_w <= limit:
                current.append(word)
                current_w += space + word_w
                continue
            if current:
                lines.append(" ".join(current))
                current, current_w = [], 0.0
            while word_w > limit:  # hard-split a word wider than the column
                used = 0.0
                cut = 1
                for n, c in enumerate(word):
                    used += cw[c]
                    if used > limit:
                        cut = max(n, 1)
                        break
                lines.append(word[:cut])
                word = word[cut:]
                word_w = self.units(word, style)
            current, current_w = [word], word_w
        if current:
            lines.append(" ".join(current))
        if len(lines) > max_lines:
            lines = lines[:max_lines]
            lines[-1] = self.fit(lines[-1], style, size, width, always=True)
        return lines
