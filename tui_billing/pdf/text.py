"""Reading a PDF back: its text, as pypdf extracts it (previews, tests)."""

from __future__ import annotations

import io


def pdf_text(data: bytes) -> str:
    """The text of every page (pypdf), pages separated by a blank line."""
    from pypdf import (
        PdfReader,  # here: pypdf costs import time, and rendering does not need it
    )

    reader = PdfReader(io.BytesIO(bytes(data)))
    return "\n\n".join((page.extract_text() or "").rstrip() for page in reader.pages)
