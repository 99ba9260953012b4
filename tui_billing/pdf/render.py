"""render_invoice: an ``InvoiceDocument`` becomes the customer's PDF (A4).

Fonts are parsed once per process (fonts.py), the document is laid out into
a display list per page (layout.py), and the pages are drawn and written by
one of two backends with the same interface (``add_fonts`` -> page painter,
``output`` -> bytes):

* fpdf_internals.py, the fast path, on the fpdf2 version it was tested with;
* fpdf_public.py, fpdf2's public API only, when the installed fpdf2 differs
  from what the fast path needs (``fast_path_problems()`` says why; logged
  once), or when forced by ``TUI_BILLING_PDF_FALLBACK=1`` or
  ``use_fallback()``.

Output is deterministic: metadata dates come from the issue date and nothing
else varies between runs, so equal documents give equal bytes (per backend).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time
from types import ModuleType

from fpdf import FPDF

from . import fpdf_public
from .fonts import FontProgram, load_programs
from .layout import MARGIN, Layout, draft_word
from .measure import Text
from .model import InvoiceDocument
from .paint import watermark

FALLBACK_ENV = "TUI_BILLING_PDF_FALLBACK"
FAST, FALLBACK = "fast", "fallback"

log = logging.getLogger(__name__)

_FONTS: tuple[FontProgram, FontProgram, Text] | None = None
_FONTS_LOCK = threading.Lock()


def _fonts() -> tuple[FontProgram, FontProgram, Text]:
    """(regular, bold, text helper): parsed on first use, then shared read-only."""
    global _FONTS
    if _FONTS is None:
        with _FONTS_LOCK:
            if _FONTS is None:
                regular, bold = load_programs()
                _FONTS = (regular, bold, Text(regular, bold))
    return _FONTS


# -- which backend --------------------------------------------------------------

_forced = False
_problems: tuple[str, ...] | None = None  # the fast path's, found on first use
_internals: ModuleType | None = None
_PATH_LOCK = threading.Lock()


def use_fallback(force: bool = True) -> None:
    """Render through fpdf2's public API from now on (``False``: choose
    automatically again, as ``TUI_BILLING_PDF_FALLBACK`` and fpdf2 allow)."""
    global _forced
    _forced = bool(force)


def fast_path_problems() -> tuple[str, ...]:
    """Why fpdf_internals cannot be used with the installed fpdf2 (empty:
    it can).  Checked once per process; the module itself is only imported
    here, so an fpdf2 without the names it imports is one more reason."""
    global _problems, _internals
    if _problems is not None:
        return _problems
    with _PATH_LOCK:
        if _problems is not None:
            return _problems
        try:
            module = importlib.import_module(f"{__package__}.fpdf_internals")
            problems = tuple(module.incompatibilities())
        except Exception as exc:  # noqa: BLE001 -- any import or attribute error of a changed fpdf2
            module, problems = None, (f"fpdf_internals cannot be loaded: {type(exc).__name__}: {exc}",)
        if problems:
            log.warning("PDF fast path off, rendering with fpdf2's public API (slower): %s", "; ".join(problems))
        _internals = None if problems else module
        _problems = problems
        return problems


def choose_path(
    env: Mapping[str, str] | None = None, problems: Sequence[str] | None = None, forced: bool | None = None
) -> str:
    """``FAST`` or ``FALLBACK``: the fallback when forced (``use_fallback()``
    or ``TUI_BILLING_PDF_FALLBACK`` set to anything but "", "0", "no",
    "false", "off") or when the fast path has ``problems``."""
    env = os.environ if env is None else env
    forced = _forced if forced is None else forced
    if forced or env.get(FALLBACK_ENV, "").strip().lower() not in ("", "0", "no", "false", "off"):
        return FALLBACK
    problems = fast_path_problems() if problems is None else problems
    return FALLBACK if problems else FAST


def rendering_path() -> str:
    """The backend ``render_invoice`` uses now: ``FAST`` or ``FALLBACK``."""
    return choose_path()


def _backend() -> ModuleType:
    internals = _internals if choose_path() == FAST else None  # set by fast_path_problems()
    return internals or fpdf_public


# -- the document -----------------------------------------------------------------


def render_invoice(doc: InvoiceDocument) -> bytes:
    """The customer's PDF for ``doc`` (A4).  Same document, same bytes."""
    regular, bold, text = _fonts()
    layout = Layout(doc, text)
    pages = layout.build()
    backend = _backend()

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    paint = backend.add_fonts(pdf, regular, bold)
    pdf.set_creation_date(datetime.combine(doc.issue_date, time(0, 0), tzinfo=UTC))
    pdf.set_title(f"Invoice {layout.number}")
    pdf.set_author(layout.seller)
    pdf.set_subject(f"Invoice {layout.number} for {text.clean(doc.customer.name)}")
    pdf.set_creator("tui-billing")
    pdf.set_lang("en")

    mark = draft_word(doc.status_note, text) if doc.status_note.strip() else ""
    count = len(pages)
    for n, ops in enumerate(pages, 1):
        pdf.add_page()
        paint(ops, layout.footer(n, count))
        if mark:
            watermark(pdf, mark, text)
    return backend.output(pdf)
