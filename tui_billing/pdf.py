"""Invoice PDFs: render what the customer receives, write/merge/preview files.

No database and no UI here: callers describe an invoice with the plain,
frozen dataclasses below and get PDF bytes back.

The PDF is the customer's document: nothing internal is printed (no
revision, no review status, no seed-001 console columns such as "Current
Debt Changed" or "Approved at"; corrections read as "Adjustments", credit or
charge).  Quantities carry their unit when the caller gives one.  A total of
zero says there is nothing to pay, a negative total is shown as a credit.

Speed.  Naive fpdf2 use with a Unicode TTF costs ~50 ms per document to parse
the font (``add_font``), ~30 ms to subset it with fontTools on output, and
``cell()``/``table()`` cost tens of µs per cell.  Here:

* each font is parsed once per process into an immutable ``_FontProgram``
  (metrics, cmap, widths, raw TrueType tables).  Every document gets its own
  light ``TTFFont`` view of it (``_DocFont``) whose only mutable state, the
  glyph subset map, is private to that document: documents can be rendered
  in many threads at once and nothing mutable is shared;
* on output the embedded font is subset by copying the used glyphs' raw
  ``glyf`` records into a minimal TrueType file (glyph id == character id,
  so ``/CIDToGIDMap /Identity``): a fraction of a millisecond;
* text is laid out here (advance widths, wrapping, ellipsis, decimal and
  right alignment, pagination) into a display list per page, so the page
  count is known before drawing ("Page 1 of 3"), and each page is written as
  one content-stream block.

This relies on fpdf2 internals (``OutputProducer._add_fonts``,
``SubsetMap``, ``FPDF._out``); tests/test_pdf.py checks the result, so pin
fpdf2 to a tested minor version (2.8.x).

Output is deterministic: metadata dates come from the issue date and
nothing else varies between runs, so equal documents give equal bytes.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import sys
import threading
import unicodedata
from array import array
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Iterable, Sequence

from fpdf import FPDF
from fpdf.enums import PDFResourceType
from fpdf.fonts import PDFFontDescriptor, SubsetMap, TTFFont
from fpdf.output import OutputProducer, PDFContentStream, PDFFontStream
from fpdf.syntax import PDFObject
from fpdf.util import escape_parens

from .money import SYMBOLS, format_amount

__all__ = [
    "Party", "ChargeRow", "TaxRow", "CorrectionRow", "InvoiceDocument",
    "render_invoice", "safe_filename", "write_pdfs", "merge_pdfs", "pdf_text",
]

FONT_DIR = Path(__file__).with_name("fonts")
_FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}
_FAMILY = "dejavu"


# --------------------------------------------------------------------------
# The document model
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Party:
    name: str
    lines: tuple[str, ...] = ()  # address / email lines


@dataclass(frozen=True)
class ChargeRow:
    position: int
    description: str
    quantity: Decimal
    discount: Decimal
    amount: Decimal
    unit: str = ""  # of the quantity, printed after it: "min", "GB", "month"; "" = a bare number


@dataclass(frozen=True)
class TaxRow:
    position: int
    name: str
    description: str
    amount: Decimal  # negative = refund


@dataclass(frozen=True)
class CorrectionRow:
    position: int
    description: str
    amount: Decimal  # negative = credit
    approved_at: datetime | None  # the console's "Approved at"; never printed (internal)


@dataclass(frozen=True)
class InvoiceDocument:
    number: str
    currency: str
    seller: Party
    customer: Party
    issue_date: date
    due_date: date | None
    period_from: date
    period_to: date
    payment_terms: str  # e.g. "Net 26 days"
    charges: tuple[ChargeRow, ...]
    taxes: tuple[TaxRow, ...]
    corrections: tuple[CorrectionRow, ...]
    subtotal: Decimal  # sum of charge amounts
    discount_total: Decimal
    tax_total: Decimal
    correction_total: Decimal
    total: Decimal
    revision: int = 1  # internal: not printed (a customer never sees revisions)
    payment_model: str = "postpay"
    # Non-empty = a draft (not yet issued): its first word is the watermark
    # ("DRAFT") and the line under the number says the draft is not yet
    # issued.  The rest of the note (it may name internal statuses such as
    # "under review") is not printed.
    status_note: str = ""


# --------------------------------------------------------------------------
# Fonts: parsed once per process, immutable, subset by hand on output
# --------------------------------------------------------------------------

class _Widths(dict):
    """Unicode -> advance width (1/1000 em).  Unknown keys give the default
    width *without* inserting it (fpdf's defaultdict would mutate shared state)."""

    __slots__ = ("default",)

    def __missing__(self, key):
        return self.default


# Tables a PDF-embedded TrueType program needs (ISO 32000 9.9) plus OS/2;
# cmap is not used by PDF viewers for CIDFontType2 with a CIDToGIDMap.
_COPIED_TABLES = ("OS/2", "cvt ", "fpgm", "prep")
_ARG_WORDS, _HAVE_SCALE, _MORE, _XY_SCALE, _TWO_BY_TWO = 0x0001, 0x0008, 0x0020, 0x0040, 0x0080


def _composite_refs(data: bytes) -> tuple[tuple[int, int], ...]:
    """(offset of the glyphIndex field, component glyph id) of a composite glyph."""
    if len(data) < 10 or struct.unpack_from(">h", data, 0)[0] >= 0:
        return ()
    refs = []
    pos = 10
    while True:
        flags, gid = struct.unpack_from(">HH", data, pos)
        refs.append((pos + 2, gid))
        pos += 4 + (4 if flags & _ARG_WORDS else 2)
        if flags & _HAVE_SCALE:
            pos += 2
        elif flags & _XY_SCALE:
            pos += 4
        elif flags & _TWO_BY_TWO:
            pos += 8
        if not flags & _MORE:
            return tuple(refs)


_U32 = next(code for code in "IL" if array(code).itemsize == 4)


def _checksum(data: bytes) -> int:
    """TrueType table checksum: sum of big-endian uint32 words, mod 2**32."""
    if len(data) % 4:
        data = bytes(data) + b"\0" * (4 - len(data) % 4)
    words = array(_U32)
    words.frombytes(data)
    if sys.byteorder == "little":
        words.byteswap()
    return sum(words) & 0xFFFFFFFF


class _FontProgram:
    """Everything about one TTF that does not change between documents.

    Built once per process (under a lock) and never mutated afterwards, so it
    is shared freely between threads.
    """

    def __init__(self, path: Path, style: str):
        self.path = path
        self.style = style
        self.fontkey = f"{_FAMILY}{style}"
        # Let fpdf compute metrics exactly as add_font() would, once.
        template = TTFFont(SimpleNamespace(fonts={}, render_color_fonts=False), path, self.fontkey, style)
        tt = template.ttfont
        self.name = template.name
        self.scale = template.scale
        self.up, self.ut, self.sp, self.ss = template.up, template.ut, template.sp, template.ss
        self.emphasis = template.emphasis
        d = template.desc
        self.desc_args = dict(
            ascent=d.ascent, descent=d.descent, cap_height=d.cap_height, flags=d.flags,
            font_b_box=d.font_b_box, italic_angle=d.italic_angle, stem_v=d.stem_v,
            missing_width=d.missing_width)
        self.cmap: dict[int, str] = dict(template.cmap)
        self.glyph_ids: dict[int, int] = dict(template.glyph_ids)
        widths = _Widths(template.cw)
        widths.default = d.missing_width
        self.cw = widths
        by_char = _Widths((chr(c), w) for c, w in template.cw.items())
        by_char.default = d.missing_width
        self.char_widths = by_char  # same, keyed by 1-char str
        self.chars = frozenset(self.cmap)
        self.gid_by_name = {name: i for i, name in enumerate(tt.getGlyphOrder())}
        self.glyphs: dict[int, object] = {}  # code point -> fpdf Glyph, filled by _DocSubset

        reader = tt.reader
        if "glyf" not in reader:
            raise ValueError(f"{path}: only TrueType-outline fonts are supported")
        self.head = bytes(reader["head"])
        self.hhea = bytes(reader["hhea"])
        self.maxp = bytes(reader["maxp"])
        self.post = bytes(reader["post"][:32])
        self.tables = {tag: bytes(reader[tag]) for tag in _COPIED_TABLES if tag in reader}
        # Keep the copyright/naming records (IDs 0-6, as fontTools' subsetter
        # does) so every embedded copy carries the font's notices.
        names = tt["name"]
        names.names = [n for n in names.names if n.nameID <= 6 and n.platformID == 3]
        self.tables["name"] = bytes(names.compile(tt))
        self.table_sums = {tag: _checksum(data) for tag, data in self.tables.items()}
        num_glyphs = struct.unpack_from(">H", self.maxp, 4)[0]
        long_loca = struct.unpack_from(">h", self.head, 50)[0] == 1
        raw_loca = reader["loca"]
        if long_loca:
            loca = struct.unpack(f">{num_glyphs + 1}I", raw_loca[: 4 * (num_glyphs + 1)])
        else:
            loca = tuple(2 * x for x in struct.unpack(f">{num_glyphs + 1}H", raw_loca[: 2 * (num_glyphs + 1)]))
        self.loca = loca
        self.glyf = bytes(reader["glyf"])
        n_long = struct.unpack_from(">H", self.hhea, 34)[0]
        raw_hmtx = reader["hmtx"]
        longs = struct.unpack(f">{2 * n_long}H", raw_hmtx[: 4 * n_long])
        metrics = [(longs[2 * i], longs[2 * i + 1]) for i in range(n_long)]
        rest = num_glyphs - n_long
        if rest > 0:
            lsbs = struct.unpack(f">{rest}H", raw_hmtx[4 * n_long: 4 * n_long + 2 * rest])
            last = metrics[-1][0]
            metrics.extend((last, lsb) for lsb in lsbs)
        self.hmetrics = tuple(metrics)  # (advance, lsb as uint16 bits)
        glyf = self.glyf
        self.composites = {
            gid: refs for gid in range(num_glyphs)
            if loca[gid + 1] > loca[gid] and (refs := _composite_refs(glyf[loca[gid]: loca[gid + 1]]))
        }
        # Each glyph is copied 4-byte aligned and zero-padded, so the glyf
        # table's checksum is the sum of the glyphs' own checksums.
        self.glyph_sums = tuple(_checksum(glyf[loca[gid]: loca[gid + 1]]) for gid in range(num_glyphs))
        tt.close()

    def document_font(self, index: int) -> "_DocFont":
        """A fresh per-document view: shared immutable data, private subset state."""
        f = _DocFont.__new__(_DocFont)
        f.program = self
        f.i = index
        f.type = "TTF"
        f.ttffile = self.path
        f.fontkey = self.fontkey
        f.name = self.name
        f.scale = self.scale
        f.up, f.ut, f.sp, f.ss = self.up, self.ut, self.sp, self.ss
        f.emphasis = self.emphasis
        f.is_compressed = f.is_cff = f.is_cid_keyed = f.is_symbol = False
        f.cff_ros = None
        f.collection_font_number = 0
        f.ttfont = None  # never touched: our output producer embeds the font itself
        f._hbfont = None
        f.color_font = None
        f.palette_index = 0
        f.unicode_range = None
        f.cmap = self.cmap
        f.glyph_ids = self.glyph_ids
        f.cw = self.cw
        f.desc = PDFFontDescriptor(**self.desc_args)
        f.missing_glyphs = []
        f.biggest_size_pt = 0
        f.subset = _DocSubset(f)
        f._codes = _Codes()
        f._codes.subset = f.subset
        return f

    def subset_program(self, order: Sequence[int]) -> bytes:
        """A TrueType file whose glyph ``n`` is original glyph ``order[n]``
        (``-1`` = empty); composite components are appended as needed."""
        order = list(order)
        new_gid: dict[int, int] = {}
        for n, old in enumerate(order):
            if old >= 0:
                new_gid.setdefault(old, n)
        n = 0
        while n < len(order):  # pull in components of composite glyphs
            old = order[n]
            n += 1
            for _, comp in self.composites.get(old, ()):
                if comp not in new_gid:
                    new_gid[comp] = len(order)
                    order.append(comp)
        loca, glyf, glyf_parts, hmtx = self.loca, self.glyf, [], []
        offsets = [0]
        size = 0
        glyf_sum = 0
        for old in order:
            if old >= 0:
                start, end = loca[old], loca[old + 1]
                if end > start:
                    refs = self.composites.get(old)
                    if refs:
                        data = bytearray(glyf[start:end])
                        for off, comp in refs:
                            struct.pack_into(">H", data, off, new_gid[comp])
                        glyf_sum += _checksum(data)
                    else:
                        data = glyf[start:end]
                        glyf_sum += self.glyph_sums[old]
                    glyf_parts.append(data)
                    size += len(data)
                    pad = -len(data) % 4
                    if pad:
                        glyf_parts.append(b"\0" * pad)
                        size += pad
                hmtx.extend(self.hmetrics[old])
            else:
                hmtx.extend((0, 0))
            offsets.append(size)
        count = len(order)
        head = bytearray(self.head)
        head[8:12] = b"\0\0\0\0"  # checkSumAdjustment, set below
        struct.pack_into(">h", head, 50, 1)  # long loca offsets
        hhea = bytearray(self.hhea)
        struct.pack_into(">H", hhea, 34, count)
        maxp = bytearray(self.maxp)
        struct.pack_into(">H", maxp, 4, count)
        post = bytearray(self.post)
        struct.pack_into(">I", post, 0, 0x00030000)  # no glyph names
        tables = dict(self.tables)
        tables.update({
            "head": bytes(head), "hhea": bytes(hhea), "maxp": bytes(maxp), "post": bytes(post),
            "hmtx": struct.pack(f">{2 * count}H", *hmtx),
            "loca": struct.pack(f">{count + 1}I", *offsets),
            "glyf": b"".join(glyf_parts),
        })
        tags = sorted(tables)
        num = len(tags)
        entry_selector = num.bit_length() - 1
        search_range = (1 << entry_selector) * 16
        directory = [struct.pack(">IHHHH", 0x00010000, num, search_range, entry_selector,
                                 num * 16 - search_range)]
        body = []
        offset = 12 + 16 * num
        head_offset = 0
        total = 0
        for tag in tags:
            data = tables[tag]
            if data is self.tables.get(tag):
                table_sum = self.table_sums[tag]
            elif tag == "glyf":
                table_sum = glyf_sum & 0xFFFFFFFF
            else:
                table_sum = _checksum(data)
            total += table_sum
            directory.append(struct.pack(">4sIII", tag.encode("latin-1"), table_sum, offset, len(data)))
            if tag == "head":
                head_offset = offset
            body.append(data)
            pad = -len(data) % 4
            if pad:
                body.append(b"\0" * pad)
            offset += len(data) + pad
        header = b"".join(directory)
        # whole-file checksum = directory + every (zero-padded, aligned) table
        total = (total + _checksum(header)) & 0xFFFFFFFF
        font = bytearray(header + b"".join(body))
        struct.pack_into(">I", font, head_offset + 8, (0xB1B0AFBA - total) & 0xFFFFFFFF)
        return bytes(font)


class _DocSubset(SubsetMap):
    """fpdf's SubsetMap with per-instance caches instead of its class-wide
    functools.cache (which is shared by all documents of all threads and is
    only released by an fpdf output of a TTF)."""

    _pick = SubsetMap.pick.__wrapped__
    _get_glyph = SubsetMap.get_glyph.__wrapped__

    def __init__(self, font: TTFFont) -> None:
        self._picked: dict[int, int | None] = {}
        self._glyphs = font.program.glyphs
        super().__init__(font)

    def pick(self, unicode: int):  # type: ignore[override]
        try:
            return self._picked[unicode]
        except KeyError:
            char_id = self._picked[unicode] = self._pick(unicode)
            return char_id

    def get_glyph(self, glyph=None, unicode=None, glyph_name=None, glyph_width=None):  # type: ignore[override]
        if glyph is None and glyph_name is None and glyph_width is None and type(unicode) is int:
            # The glyph of a code point is the same in every document of the font:
            # built once per process (Glyph objects are only read once made).
            try:
                return self._glyphs[unicode]
            except KeyError:
                found = self._glyphs[unicode] = self._get_glyph(None, unicode, None, None)
                return found
        return self._get_glyph(glyph, unicode, glyph_name, glyph_width)


class _Codes(dict):
    """Per-document ``str.translate`` table: code point -> its character id in
    the document's font subset.  Unknown code points are picked on first
    sight, in text order, so ids never depend on hash/set order."""

    __slots__ = ("subset",)

    def __missing__(self, uni: int) -> str:
        char_id = self.subset.pick(uni)
        code = self[uni] = chr(char_id) if char_id else ""
        return code


class _DocFont(TTFFont):
    __slots__ = ("program", "_codes")

    def encode_text(self, text: str) -> str:
        """fpdf's encode_text (text -> subset ids as a UTF-16 string operand)
        with one C-level ``str.translate`` instead of a loop per character."""
        mapped = text.translate(self._codes)
        return f"({escape_parens(mapped.encode('utf-16-be').decode('latin-1'))}) Tj"


_FONTS: tuple[_FontProgram, _FontProgram, "_Text"] | None = None
_FONTS_LOCK = threading.Lock()


def _fonts() -> tuple[_FontProgram, _FontProgram, "_Text"]:
    """(regular, bold, text helper): parsed on first use, then shared read-only."""
    global _FONTS
    if _FONTS is None:
        with _FONTS_LOCK:
            if _FONTS is None:
                regular = _FontProgram(FONT_DIR / _FONT_FILES[""], "")
                bold = _FontProgram(FONT_DIR / _FONT_FILES["B"], "B")
                _FONTS = (regular, bold, _Text(regular, bold))
    return _FONTS


def _utf16_hex(codes: tuple[int, ...]) -> str:
    return "".join(chr(c).encode("utf-16-be").hex().upper() for c in codes)


_UTF16_HEX: dict[tuple[int, ...], str] = {}  # shared by all documents; a race only computes twice


def _to_unicode_cmap(pairs: list[tuple[int, tuple[int, ...]]]) -> bytes:
    hexes = _UTF16_HEX

    def utf16(codes: tuple[int, ...]) -> str:
        try:
            return hexes[codes]
        except KeyError:
            value = hexes[codes] = _utf16_hex(codes)
            return value

    blocks = []
    for start in range(0, len(pairs), 100):
        chunk = pairs[start: start + 100]
        blocks.append(f"{len(chunk)} beginbfchar\n")
        blocks.extend(f"<{cid:04X}> <{utf16(codes)}>\n" for cid, codes in chunk)
        blocks.append("endbfchar\n")
    return (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo\n<</Registry (Adobe)\n/Ordering (UCS)\n/Supplement 0\n>> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
        f"{''.join(blocks)}endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend"
    ).encode("latin-1")


class _FontStream(PDFFontStream):
    # Glyph outlines barely compress: level 1 is ~2x faster than the default
    # for ~3% more bytes.  (Class attribute read by PDFContentStream.)
    _COMPRESSION_LEVEL = 1

    def serialize(self, obj_dict=None, _security_handler=None) -> str:
        return _serialize(self, {"/Filter": "/FlateDecode", "/Length": self.length, "/Length1": self.length1},
                          _security_handler)


class _OutputProducer(OutputProducer):
    """fpdf's producer, except that our fonts are embedded by ``_add_doc_font``."""

    def _add_fonts(self, image_objects_per_index, gfxstate_objs_per_name, pattern_objs_per_name):
        fonts = self.fpdf.fonts
        ours = {k: f for k, f in fonts.items() if isinstance(f, _DocFont)}
        others = {k: f for k, f in fonts.items() if k not in ours}
        result = {}
        if others:  # e.g. a core font: let fpdf handle it as usual
            self.fpdf.fonts = others
            try:
                result.update(super()._add_fonts(image_objects_per_index, gfxstate_objs_per_name,
                                                 pattern_objs_per_name))
            finally:
                self.fpdf.fonts = fonts
        for font in sorted(ours.values(), key=lambda f: f.i):
            result[font.i] = self._add_doc_font(font)
        return result

    def _add_doc_font(self, font: _DocFont) -> "_Entries":
        program = font.program
        by_cid = {cid: glyph for glyph, cid in font.subset.items() if glyph is not None}
        size = max(by_cid) + 1
        order = [-1] * size
        widths = [0] * size
        for cid, glyph in by_cid.items():
            order[cid] = program.gid_by_name.get(glyph.glyph_name, 0)
            widths[cid] = glyph.glyph_width
        order[0] = 0  # .notdef
        program_bytes = program.subset_program(order)
        digest = hashlib.sha256(program_bytes).digest()
        tag = "".join(chr(65 + b % 26) for b in digest[:6])
        base_font = f"/{tag}+{font.name}"
        pairs = sorted((cid, g.unicode) for cid, g in by_cid.items()
                       if isinstance(g.unicode, tuple) and g.unicode and cid)
        d = program.desc_args
        flags = d["flags"]
        # The same objects (and bytes) fpdf's own PDFFont & co. give, keys sorted
        # as fpdf's dir()-driven serialisation sorts them.
        composite = self._entries({"/BaseFont": base_font, "/DescendantFonts": None, "/Encoding": "/Identity-H",
                                   "/Subtype": "/Type0", "/ToUnicode": None, "/Type": "/Font"})
        cid_font = self._entries({"/BaseFont": base_font, "/CIDSystemInfo": None, "/CIDToGIDMap": "/Identity",
                                  "/DW": d["missing_width"], "/FontDescriptor": None, "/Subtype": "/CIDFontType2",
                                  "/Type": "/Font", "/W": f"[0 [{' '.join(map(str, widths))}]]"})
        composite.entries["/DescendantFonts"] = [cid_font]
        to_unicode = _ToUnicode(_to_unicode_cmap(pairs))
        self._add_pdf_obj(to_unicode, "fonts")
        composite.entries["/ToUnicode"] = to_unicode
        cid_font.entries["/CIDSystemInfo"] = self._entries(
            {"/Ordering": "(UCS)", "/Registry": "(Adobe)", "/Supplement": 0})
        descriptor = self._entries({
            "/Ascent": d["ascent"], "/CapHeight": d["cap_height"], "/Descent": d["descent"],
            "/Flags": getattr(flags, "value", flags), "/FontBBox": d["font_b_box"], "/FontFile2": None,
            "/FontName": base_font, "/ItalicAngle": d["italic_angle"], "/MissingWidth": d["missing_width"],
            "/StemV": d["stem_v"], "/Type": "/FontDescriptor"})
        cid_font.entries["/FontDescriptor"] = descriptor
        descriptor.entries["/FontFile2"] = _FontStream(contents=program_bytes)
        self._add_pdf_obj(descriptor.entries["/FontFile2"], "fonts")
        return composite

    def _entries(self, entries: dict) -> "_Entries":
        obj = _Entries(entries)
        self._add_pdf_obj(obj, "fonts")
        return obj


class _Entries(PDFObject):
    """A dictionary object with its entries spelled out.  fpdf serialises
    its objects by walking ``dir()`` of each (tens of µs apiece); the font
    objects are a dozen per document and their keys are known.  ``None``
    values are filled in before output; objects become references."""

    def __init__(self, entries: dict) -> None:
        super().__init__()
        self.entries = entries

    def serialize(self, obj_dict=None, _security_handler=None) -> str:
        ready = {}
        for key, value in self.entries.items():
            if isinstance(value, PDFObject):
                value = value.ref
            elif isinstance(value, list):
                value = f"[{' '.join(v.ref for v in value)}]"
            ready[key] = value
        return _serialize(self, ready, _security_handler)


class _ToUnicode(PDFContentStream):
    def serialize(self, obj_dict=None, _security_handler=None) -> str:
        return _serialize(self, {"/Length": self.length}, _security_handler)


def _serialize(obj: PDFObject, entries: dict, security_handler) -> str:
    """``obj`` as ``n 0 obj << entries >> [stream] endobj``, skipping fpdf's
    dir()-driven entry discovery."""
    if security_handler is not None:
        raise ValueError("invoice PDFs are not encrypted")
    return PDFObject.serialize(obj, entries)


# --------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------

_K = 72 / 25.4  # points per mm
_CONTROL = {c: " " for c in range(0x20)} | {0x7F: " "} | {c: " " for c in range(0x80, 0xA0)}
_CONTROL.update({0x2028: " ", 0x2029: " ", 0xFEFF: None, 0x200B: None, 0xAD: None})


class _Text:
    """Clean and measure text for the two faces (immutable, shared)."""

    def __init__(self, regular: _FontProgram, bold: _FontProgram):
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
        return sum(map(self.cw[style].__getitem__, text)) * size / (1000 * _K)

    def fit(self, text: str, style: str, size: float, width: float, always: bool = False) -> str:
        """Text cut with an ellipsis to fit ``width`` mm (``always``: end
        with an ellipsis even if it fits)."""
        if not always and self.width(text, style, size) <= width:
            return text
        cw = self.cw[style]
        limit = width * 1000 * _K / size - cw["…"]
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
        limit = width * 1000 * _K / size
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


def _fmt_quantity(q: Decimal) -> str:
    q = Decimal(q).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP)
    s = f"{q:,.3f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def _fmt_signed(amount: Decimal, currency: str) -> str:
    return ("-" if amount < 0 else "") + format_amount(abs(amount), currency)


def _fmt_quantity_unit(q: Decimal, unit: str, text: "_Text") -> str:
    """The quantity cell: "1,234.5 min" (number, one space, unit)."""
    unit = text.clean(unit) if unit else ""
    return f"{_fmt_quantity(q)} {unit}" if unit else _fmt_quantity(q)


def _draft_word(note: str, text: "_Text") -> str:
    """The watermark word of a draft's status note ("DRAFT — …" -> "DRAFT")."""
    words = text.clean(note).split()
    return (words[0].strip(" -–—:,.").upper() if words else "") or "DRAFT"


# How a customer reads the payment model (the store's names are internal).
_BILLING = {"postpay": "Postpaid", "prepay": "Prepaid"}


def _billing_label(model: str, text: "_Text") -> str:
    model = text.clean(model)
    return _BILLING.get(model.lower(), model.replace("_", " ").capitalize())


# --------------------------------------------------------------------------
# Layout: a display list per page, then painting
# --------------------------------------------------------------------------

PAGE_W, PAGE_H = 210.0, 297.0
MARGIN = 15.0
CONTENT_W = PAGE_W - 2 * MARGIN
CONTENT_BOTTOM = PAGE_H - 20.0  # footer below
INK = (30, 30, 30)
MUTED = (105, 105, 105)
ACCENT = (28, 58, 105)
ALERT = (170, 25, 25)
RULE = (210, 210, 210)
HEADER_FILL = (232, 236, 242)
TOTAL_FILL = (242, 244, 247)

BODY = 8.0
ROW_LINE = 3.6  # mm between wrapped lines in a row
ROW_PAD = 1.2  # mm above/below the text of a row
CELL_PAD = 1.5  # mm left/right inside a column


@dataclass(frozen=True)
class _Column:
    title: str
    width: float
    align: str = "L"  # "L", "R" or "D" (right, decimal points aligned, up to 3 decimals)
    wrap: bool = False


class _Layout:
    def __init__(self, doc: InvoiceDocument, text: _Text):
        self.doc = doc
        self.t = text
        self.pages: list[list[tuple]] = []
        self.y = 0.0
        self.number = text.clean(doc.number)
        self.seller = text.clean(doc.seller.name)

    # -- primitives ------------------------------------------------------
    def text(self, x: float, baseline: float, s: str, style: str = "", size: float = BODY,
             color=INK, align: str = "L", width: float = 0.0, shrink: bool = False) -> None:
        """Draw ``s``; with ``width`` (the box from ``x``) it is fitted: numbers
        (right-aligned) and ``shrink`` text get smaller, down to 5.5 pt, before
        anything is cut with an ellipsis."""
        if not s:
            return
        if width:
            w = self.t.width(s, style, size)
            if w > width:
                if (shrink or align == "R") and size > 5.5:
                    size = max(5.5, size * width / w)
                if self.t.width(s, style, size) > width:
                    s = self.t.fit(s, style, size, width)
            if align == "R":
                x = x + width - self.t.width(s, style, size)
        elif align == "R":
            x -= self.t.width(s, style, size)
        self.pages[-1].append(("text", x, baseline, s, style, size, color))

    def paragraph(self, x: float, baseline: float, s: str, style: str, size: float, color,
                  width: float, max_lines: int, line_h: float) -> float:
        """Wrapped text; returns the baseline after its last line."""
        for line in self.t.wrap(s, style, size, width, max_lines):
            self.text(x, baseline, line, style, size, color, width=width)
            baseline += line_h
        return baseline

    def rect(self, x, y, w, h, color) -> None:
        self.pages[-1].append(("rect", x, y, w, h, color))

    def rule(self, x1, y, x2, color=RULE, width=0.2) -> None:
        self.pages[-1].append(("line", x1, y, x2, y, color, width))

    def new_page(self) -> None:
        self.pages.append([])
        self.y = MARGIN
        if len(self.pages) > 1:
            self.text(MARGIN, self.y + 3, self.seller, "B", 8.5, ACCENT, width=CONTENT_W * 0.6)
            self.text(PAGE_W - MARGIN - CONTENT_W * 0.4, self.y + 3, f"Invoice {self.number} (continued)", "",
                      8, MUTED, align="R", width=CONTENT_W * 0.4)
            self.rule(MARGIN, self.y + 5, PAGE_W - MARGIN)
            self.y += 9

    def ensure(self, height: float) -> bool:
        if self.y + height > CONTENT_BOTTOM:
            self.new_page()
            return True
        return False

    # -- blocks ------------------------------------------------------------
    def heading(self) -> None:
        d, t = self.doc, self.t
        self.new_page()
        top = MARGIN
        left_w = CONTENT_W * 0.55
        y = self.paragraph(MARGIN, top + 5, self.seller, "B", 13, ACCENT, left_w, 2, 5.5) + 0.2
        for line in d.seller.lines[:6]:
            y = self.paragraph(MARGIN, y, t.clean(line), "", 8, MUTED, left_w, 2, 3.7)
        right = PAGE_W - MARGIN
        self.text(right, top + 6, "INVOICE", "B", 20, ACCENT, align="R")
        self.text(right - 70, top + 12, self.number, "B", 10, INK, align="R", width=70, shrink=True)
        y_right = top + 12
        if d.status_note.strip():
            y_right += 5
            self.text(right - 80, y_right, f"{_draft_word(d.status_note, t)} — not yet issued", "B", 8.5, ALERT,
                      align="R", width=80)
        self.y = max(y, y_right + 2) + 6

        # Bill to (left) and invoice facts (right)
        block_top = self.y
        self.text(MARGIN, block_top, "BILL TO", "B", 7, MUTED)
        y = self.paragraph(MARGIN, block_top + 5, t.clean(d.customer.name), "B", 10, INK, left_w, 2, 4.5) - 0.5
        for line in d.customer.lines[:8]:
            y = self.paragraph(MARGIN, y, t.clean(line), "", 8.5, INK, left_w, 2, 4)
        if d.total <= 0:
            due = "Nothing to pay"
        else:
            due = d.due_date.isoformat() if d.due_date else "—"
        facts = [
            ("Invoice number", self.number),
            ("Issue date", d.issue_date.isoformat()),
            ("Due date", due),
            ("Service period", f"{d.period_from.isoformat()} – {d.period_to.isoformat()}"),
            ("Payment terms", t.clean(d.payment_terms)),
            ("Billing", _billing_label(d.payment_model, t)),
            ("Currency", t.clean(d.currency)),
        ]
        label_x = MARGIN + CONTENT_W * 0.58
        value_x = label_x + 27
        fy = block_top
        for label, value in facts:
            self.text(label_x, fy, label, "", 8, MUTED)
            self.text(value_x, fy, value, "", 8.5, INK, width=PAGE_W - MARGIN - value_x, shrink=True)
            fy += 4.3
        self.y = max(y, fy) + 4

    def table(self, title: str, columns: Sequence[_Column], rows: Iterable[Sequence[str]],
              max_lines: int = 3, empty: str = "") -> None:
        """A titled table whose header repeats on every page it spans; rows
        grow for wrapped cells.  No rows: nothing, or the ``empty`` line."""
        t = self.t
        header_h = 6.0
        title_h = 7.5

        def draw_header(cont: bool) -> None:
            self.text(MARGIN, self.y + 5, f"{title} (continued)" if cont else title, "B", 10, ACCENT)
            self.y += title_h
            self.rect(MARGIN, self.y, CONTENT_W, header_h, HEADER_FILL)
            x = MARGIN
            for col in columns:
                self.text(x + CELL_PAD, self.y + 4.1, col.title, "B", 7.5, INK,
                          align="L" if col.align == "L" else "R", width=col.width - 2 * CELL_PAD)
                x += col.width
            self.y += header_h

        laid_out = []
        for row in rows:
            cells = []
            n_lines = 1
            for col, value in zip(columns, row):
                if col.wrap:
                    lines = t.wrap(value, "", BODY, col.width - 2 * CELL_PAD, max_lines)
                    n_lines = max(n_lines, len(lines))
                else:
                    lines = [value]
                cells.append(lines)
            laid_out.append((cells, 2 * ROW_PAD + ROW_LINE * (n_lines - 1) + 3.0))
        if not laid_out:
            if empty:
                self.ensure(title_h + header_h + 6)
                draw_header(False)
                self.text(MARGIN + columns[0].width + CELL_PAD, self.y + ROW_PAD + 2.6, empty, "", BODY, MUTED)
                self.y += 5.4
                self.rule(MARGIN, self.y, PAGE_W - MARGIN)
                self.y += 5
            return
        # a short table stays on one page; a long one starts with >= 3 rows
        keep = laid_out if len(laid_out) <= 6 else laid_out[:3]
        self.ensure(title_h + header_h + sum(h for _, h in keep))
        draw_header(False)
        # Decimal columns ("number" or "number unit"): the width of the longest
        # ".ddd" part, and of the longest " unit" (the room the numbers leave, at
        # least half the column).
        fraction_w, unit_w = {}, {}
        for i, col in enumerate(columns):
            if col.align == "D":
                numbers = [cells[i][0].partition(" ") for cells, _ in laid_out]
                fraction_w[i] = max(t.width(n[n.find("."):], "", BODY) if "." in n else 0.0
                                    for n, _, _ in numbers)
                if any(u for _, _, u in numbers):
                    room = col.width - 2 * CELL_PAD - fraction_w[i] - max(
                        t.width(n.partition(".")[0], "", BODY) for n, _, _ in numbers)
                    unit_w[i] = min(max(t.width(" " + u, "", BODY) for _, _, u in numbers),
                                    max(room, (col.width - 2 * CELL_PAD) / 2))
                else:
                    unit_w[i] = 0.0
        for cells, row_h in laid_out:
            if self.ensure(row_h):
                draw_header(True)
            x = MARGIN
            base = self.y + ROW_PAD + 2.6
            for i, (col, lines) in enumerate(zip(columns, cells)):
                width = col.width - 2 * CELL_PAD
                if col.align == "D":  # decimal points line up (digits are tabular), units after them
                    value, _, unit = lines[0].partition(" ")
                    dot = value.find(".")
                    pad = fraction_w[i] - (t.width(value[dot:], "", BODY) if dot >= 0 else 0.0)
                    box = width - unit_w[i]
                    self.text(x + CELL_PAD, base, value, "", BODY, INK, align="R", width=box - pad)
                    if unit:
                        space = t.width(" ", "", BODY)
                        self.text(x + CELL_PAD + box + space, base, unit, "", BODY, INK,
                                  width=unit_w[i] - space)
                else:
                    for n, line in enumerate(lines):
                        self.text(x + CELL_PAD, base + n * ROW_LINE, line, "", BODY, INK, align=col.align,
                                  width=width)
                x += col.width
            self.y += row_h
            self.rule(MARGIN, self.y, PAGE_W - MARGIN)
        self.y += 5

    def totals(self) -> None:
        d, cur = self.doc, self.doc.currency
        discount = -abs(d.discount_total)
        lines = [
            ("Charges", _fmt_signed(d.subtotal, cur)),
            ("Discounts", _fmt_signed(discount, cur)),
            ("Taxes", _fmt_signed(d.tax_total, cur)),
            ("Adjustments", _fmt_signed(d.correction_total, cur)),
        ]
        symbol = SYMBOLS.get(cur.upper())

        def money(amount: Decimal) -> str:
            value = _fmt_signed(amount, cur)
            return f"{symbol} {value}" if symbol and symbol != cur.upper() else f"{value} {self.t.clean(cur)}"

        # A negative total is a credit: shown as such, never as "-12.00 to pay".
        credit = d.total < 0
        total_text = money(-d.total if credit else d.total)
        block_h = 5 * len(lines) + 12
        self.ensure(block_h + 14)
        width = 82.0
        x = PAGE_W - MARGIN - width
        for label, value in lines:
            self.text(x + CELL_PAD, self.y + 3.5, label, "", 8.5, MUTED)
            self.text(x + 30, self.y + 3.5, value, "", 8.5, INK, align="R", width=width - 30 - CELL_PAD)
            self.y += 5
        self.y += 1.5
        self.rect(x, self.y, width, 9, TOTAL_FILL)
        self.rule(x, self.y, x + width, ACCENT, 0.4)
        self.text(x + CELL_PAD, self.y + 6, f"{'Credit' if credit else 'Total'} ({self.t.clean(cur)})", "B", 10.5,
                  ACCENT)
        self.text(x + 28, self.y + 6, total_text, "B", 11, INK, align="R", width=width - 28 - CELL_PAD)
        self.y += 14
        if credit:
            terms = f"This invoice is a credit of {total_text} in your favour: there is nothing to pay."
        elif d.total == 0:
            terms = f"Nothing to pay: this invoice totals {total_text}."
        else:
            terms = f"Payment terms: {self.t.clean(d.payment_terms)}"
            if d.due_date:
                terms += f" — please pay by {d.due_date.isoformat()}"
            terms += f", quoting invoice {self.number}."
        self.text(MARGIN, self.y, terms, "", 8.5, INK, width=CONTENT_W)
        self.y += 5

    # -- the document --------------------------------------------------------
    def build(self) -> list[list[tuple]]:
        d, t, cur = self.doc, self.t, self.doc.currency
        self.heading()
        num_w = 10.0
        qty_w = 22.0
        if any(c.unit for c in d.charges):  # "1,234.5 min": as wide as the longest number and unit need
            quantities = [_fmt_quantity_unit(c.quantity, c.unit, t).partition(" ") for c in d.charges]
            need = (max(t.width(n.partition(".")[0], "", BODY) for n, _, _ in quantities)  # decimal points
                    + max(t.width("".join(n.partition(".")[1:]), "", BODY) for n, _, _ in quantities)  # line up
                    + max(t.width(" " + u, "", BODY) for _, _, u in quantities) + 2 * CELL_PAD + 0.5)
            qty_w = min(max(qty_w, need), 40.0)
        self.table("Charges", (
            _Column("#", num_w, "R"),
            _Column("Description", CONTENT_W - num_w - qty_w - 24 - 28, "L", wrap=True),
            _Column("Quantity", qty_w, "D"),
            _Column("Discount", 24, "R"),
            _Column("Amount", 28, "R"),
        ), ((str(c.position), t.clean(c.description), _fmt_quantity_unit(c.quantity, c.unit, t),
             format_amount(c.discount, cur) if c.discount else "—", _fmt_signed(c.amount, cur))
            for c in d.charges), empty="No charges for this period")
        if d.taxes:
            self.table("Taxes", (
                _Column("#", num_w, "R"),
                _Column("Tax", 38, "L"),
                _Column("Description", CONTENT_W - num_w - 38 - 20 - 28, "L", wrap=True),
                _Column("Type", 20, "L"),
                _Column("Amount", 28, "R"),
            ), ((str(x.position), t.clean(x.name), t.clean(x.description),
                 "Refund" if x.amount < 0 else "Tax", _fmt_signed(x.amount, cur))
                for x in d.taxes))
        if d.corrections:
            # Seed 001's "Current Debt Changed" (▼/▲) and "Approved at" are the
            # console's view; the customer reads a credit or a charge and its amount.
            self.table("Adjustments", (
                _Column("#", num_w, "R"),
                _Column("Description", CONTENT_W - num_w - 20 - 28, "L", wrap=True),
                _Column("Type", 20, "L"),
                _Column("Amount", 28, "R"),
            ), ((str(c.position), t.clean(c.description), "Credit" if c.amount < 0 else "Charge",
                 _fmt_signed(c.amount, cur)) for c in d.corrections))
        self.totals()
        return self.pages

    def footer(self, page: int, count: int) -> list[tuple]:
        self.pages.append([])  # scratch page for the ops
        y = PAGE_H - 12
        self.rule(MARGIN, y - 4, PAGE_W - MARGIN)
        left = f"Invoice {self.number} · Payment terms: {self.t.clean(self.doc.payment_terms)} · {self.seller}"
        self.text(MARGIN, y, left, "", 7.5, MUTED, width=CONTENT_W - 30)
        self.text(PAGE_W - MARGIN, y, f"Page {page} of {count}", "", 7.5, MUTED, align="R")
        return self.pages.pop()


def _rgb(color: tuple[int, int, int]) -> str:
    return " ".join(f"{c / 255:.3f}".rstrip("0").rstrip(".") or "0" for c in color)


class _Painter:
    """Turns one page's display list into one content-stream block.

    Drawing each string through ``FPDF.text()`` costs several µs of state
    bookkeeping; the display list already knows everything, so the block is
    written directly: fills and rules first, then a single text object
    (absolute ``Tm`` positions, font and colour set only when they change),
    all inside ``q ... Q`` so fpdf's own idea of the graphics state stays
    true.  Strings are encoded by the document's font (``_DocFont``), which
    records the glyphs to embed.
    """

    def __init__(self, pdf: FPDF, fonts: dict[str, _DocFont]):
        self.pdf = pdf
        self.fonts = fonts
        self.colors: dict[tuple[int, int, int], str] = {}

    def rgb(self, color: tuple[int, int, int]) -> str:
        try:
            return self.colors[color]
        except KeyError:
            value = self.colors[color] = _rgb(color)
            return value

    def paint(self, *display_lists: list[tuple]) -> None:
        pdf, fonts, k, page_h = self.pdf, self.fonts, _K, PAGE_H
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
                    texts.append(f"1 0 0 1 {x * k:.2f} {(page_h - y) * k:.2f} Tm "
                                 f"{fonts[style].encode_text(s)}")
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
                    graphics.append(f"{x1 * k:.2f} {(page_h - y1) * k:.2f} m "
                                    f"{x2 * k:.2f} {(page_h - y2) * k:.2f} l S")
        for f in fonts.values():
            pdf._resource_catalog.add(PDFResourceType.FONT, f.i, pdf.page)
        body = "\n".join(graphics)
        if texts:
            body += "\nBT\n" + "\n".join(texts) + "\nET"
        # _out() wants latin-1; encode_text() produced UTF-16 bytes as latin-1 chars
        pdf._out(f"q\n{body}\nQ")


def _watermark(pdf: FPDF, word: str, text: _Text) -> None:
    size = 110.0
    width = text.width(word, "B", size)
    if width > 190:
        size = size * 190 / width
        width = text.width(word, "B", size)
    with pdf.local_context(fill_opacity=0.08, text_color=ALERT):
        pdf.set_font(_FAMILY, "B", size)
        with pdf.rotation(35, x=PAGE_W / 2, y=PAGE_H / 2):
            pdf.text(PAGE_W / 2 - width / 2, PAGE_H / 2 + size / _K * 0.35, word)


def render_invoice(doc: InvoiceDocument) -> bytes:
    """The customer's PDF for ``doc`` (A4).  Same document, same bytes."""
    regular, bold, text = _fonts()
    layout = _Layout(doc, text)
    pages = layout.build()

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_margins(MARGIN, MARGIN, MARGIN)
    for program in (regular, bold):
        pdf.fonts[program.fontkey] = program.document_font(len(pdf.fonts) + 1)
    pdf.set_creation_date(datetime.combine(doc.issue_date, time(0, 0), tzinfo=timezone.utc))
    pdf.set_title(f"Invoice {layout.number}")
    pdf.set_author(layout.seller)
    pdf.set_subject(f"Invoice {layout.number} for {text.clean(doc.customer.name)}")
    pdf.set_creator("tui-billing")
    pdf.set_lang("en")

    painter = _Painter(pdf, {"": pdf.fonts[regular.fontkey], "B": pdf.fonts[bold.fontkey]})
    mark = ""
    if doc.status_note.strip():
        mark = _draft_word(doc.status_note, text)
    count = len(pages)
    for n, ops in enumerate(pages, 1):
        pdf.add_page()
        painter.paint(ops, layout.footer(n, count))
        if mark:
            _watermark(pdf, mark, text)
    return bytes(pdf.output(output_producer_class=_OutputProducer))


# --------------------------------------------------------------------------
# Files: safe names, atomic writes, merging, text preview
# --------------------------------------------------------------------------

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
    from .safefile import atomic_write

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
    from .safefile import make_dirs

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
    from pypdf import PdfReader, PdfWriter

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
    from .safefile import make_dirs

    make_dirs(target.parent)
    _atomic_write(target, buf.getvalue())
    return target


def pdf_text(data: bytes) -> str:
    """The text of every page (pypdf), pages separated by a blank line."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(bytes(data)))
    return "\n\n".join((page.extract_text() or "").rstrip() for page in reader.pages)
