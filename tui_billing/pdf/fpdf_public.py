"""The fallback: the same invoice through fpdf2's public API only.

Used when fpdf_internals.py finds an fpdf2 it was not tested with (or when
forced: ``TUI_BILLING_PDF_FALLBACK=1`` or ``pdf.use_fallback()``).  The
layout is the same (same display lists, measured with the same font
metrics); the faces are added with ``FPDF.add_font`` (fpdf2 parses each per
document and subsets it with fontTools on output), the display lists are
drawn with ``FPDF.text``/``rect``/``line`` (paint.py) and the file comes from
``FPDF.output()``.  Same text, amounts and pages as the fast path, at a
fraction of its speed.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from fpdf import FPDF

from .fonts import FAMILY, FontProgram
from .paint import paint_with_api


def add_fonts(pdf: FPDF, regular: FontProgram, bold: FontProgram) -> Callable[..., None]:
    """Adds the two faces to ``pdf`` and returns the page painter."""
    pdf.add_font(FAMILY, "", regular.path)
    pdf.add_font(FAMILY, "B", bold.path)
    return partial(paint_with_api, pdf)


def output(pdf: FPDF) -> bytes:
    return bytes(pdf.output())
