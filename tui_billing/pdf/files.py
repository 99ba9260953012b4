"""PDF files: safe names, atomic writes inside a folder, merging.

Every write goes through tui_billing/safefile.py (an exclusive, owner-only
temp file renamed into place); names come from ``safe_filename`` and are
checked again to stay inside the target folder.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ..safefile import atomic_write, make_dirs

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
_MAX_STEM = 120


def safe_filename(number: str) -> str:
    """``INV-2026-000123`` -> ``INV-2026-000123.pdf``; never a path.

    Only ASCII letters (upper case), digits, ``.``, ``_`` and ``-`` are kept
    verbatim.  Anything else (separators, ``..``, control characters, spaces,
    non-ASCII, lower case, a leading dot, Windows device names, excess length)
    makes the mapping lossy: unsafe characters become ``_`` and ``~`` plus 12
    hex digits of the number's SHA-256 is appended.  ``~`` never appears in a
    verbatim name, so two different numbers cannot map to the same file name
    (lower case is treated as lossy so names stay distinct on case-insensitive
    file systems too).
    """
    original = str(number)
    stem = _SAFE.sub("_", original)
    stem = stem.lstrip(".").rstrip(". ")
    lossy = stem != original or any(c.islower() for c in original)
    if not stem.strip("._-"):
        stem, lossy = "invoice", True
    if stem.split(".")[0].upper() in _RESERVED:
        stem, lossy = f"_{stem}", True
    if len(stem) > _MAX_STEM:
        stem, lossy = stem[:_MAX_STEM].rstrip("."), True
    if lossy:
        digest = hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        stem = f"{stem}~{digest}"
    return f"{stem}.pdf"


def _atomic_write(target: Path, data: bytes) -> None:
    """An exclusive, owner-only temp file renamed into place (safefile)."""
    atomic_write(target, data)


def _inside(directory: Path, name: str) -> Path:
    """``directory/name``, refusing anything that could leave ``directory``."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"unsafe file name {name!r}")
    target = directory / name
    if target.parent != directory or os.path.commonpath([directory, target.resolve()]) != str(directory):
        raise ValueError(f"{name!r} would be written outside {directory}")
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise ValueError(f"{target} exists and is not a regular file")
    return target


def write_pdfs(items: Iterable[tuple[str, bytes]], directory: Path) -> list[Path]:
    """One file per (invoice number, PDF bytes) in ``directory``, each written
    atomically; returns the paths in order.  A number given twice with the same
    bytes is written once; with different bytes it is an error."""
    directory = Path(directory)
    make_dirs(directory)  # folders it creates: owner only
    root = directory.resolve()
    written: dict[str, bytes] = {}
    paths: list[Path] = []
    for number, data in items:
        data = bytes(data)
        name = safe_filename(number)
        if name in written:
            if written[name] != data:
                raise ValueError(f"two different PDFs for invoice {number!r}")
            continue
        target = _inside(root, name)
        _atomic_write(target, data)
        written[name] = data
        paths.append(target)
    return paths


def merge_pdfs(items: Iterable[tuple[str, bytes]], target: Path) -> Path:
    """All PDFs in one file with an outline entry per invoice (titled with its
    number, pointing at its first page); written atomically to ``target``."""
    from pypdf import (  # here: pypdf costs import time, and only merging needs it
        PdfReader,
        PdfWriter,
    )

    target = Path(target)
    writer = PdfWriter()
    count = 0
    for number, data in items:
        writer.append(PdfReader(io.BytesIO(bytes(data))), outline_item=str(number), import_outline=False)
        count += 1
    if not count:
        raise ValueError("no PDFs to merge")
    writer.add_metadata({"/Title": f"{count} invoice{'s' if count != 1 else ''}", "/Creator": "tui-billing"})
    writer.page_mode = "/UseOutlines"
    buf = io.BytesIO()
    writer.write(buf)
    make_dirs(target.parent)
    _atomic_write(target, buf.getvalue())
    return target
