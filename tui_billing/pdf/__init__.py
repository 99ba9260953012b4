"""Invoice PDFs: render what the customer receives, write/merge/preview files.

No database and no UI here: callers describe an invoice with the plain,
frozen dataclasses of model.py and get PDF bytes back from
``render_invoice``.  The package, by what each part does (each imports only
the ones above it):

    model.py           the invoice as the PDF shows it (InvoiceDocument, Party, ...)
    fonts.py           the DejaVu faces: parsed once (fontTools), subset by hand
    measure.py         clean and measure text with the fonts' widths
    layout.py          an invoice -> a display list per page (the wording too)
    paint.py           display lists -> a content-stream block, or public fpdf2 calls
    fpdf_internals.py  the fast path: all that relies on fpdf2 2.8.9 internals
    fpdf_public.py     the fallback: fpdf2's public API only
    render.py          render_invoice, and which of the two paths it takes
    files.py           safe file names, atomic writes, merging
    text.py            a PDF's text read back (pypdf)
    pool.py            many at once, in worker processes, in order (RenderPool)

Speed (README, Performance): the fast path renders a 30-line invoice in a
few ms; the fallback, taken when the installed fpdf2 is not the one the
fast path was tested with (or when ``TUI_BILLING_PDF_FALLBACK=1``), gives
the same text, amounts and pages, more slowly.
"""

from __future__ import annotations

from .files import merge_pdfs, safe_filename, write_pdfs
from .fonts import FONT_DIR
from .model import ChargeRow, CorrectionRow, InvoiceDocument, Party, TaxRow
from .pool import RenderFailed, RenderPool
from .render import (
    FALLBACK_ENV,
    fast_path_problems,
    render_invoice,
    rendering_path,
    use_fallback,
)
from .text import pdf_text

__all__ = [
    "FALLBACK_ENV",
    "FONT_DIR",
    "ChargeRow",
    "CorrectionRow",
    "InvoiceDocument",
    "Party",
    "RenderFailed",
    "RenderPool",
    "TaxRow",
    "fast_path_problems",
    "merge_pdfs",
    "pdf_text",
    "render_invoice",
    "rendering_path",
    "safe_filename",
    "use_fallback",
    "write_pdfs",
]
