"""The two DejaVu Sans faces: parsed once per process, cut per document.

Naive fpdf2 use with a Unicode TTF costs ~50 ms per document to parse the
font (``add_font``) and ~30 ms to subset it with fontTools on output.  Here
each face is read once per process with fontTools into an immutable
``FontProgram``: its metrics (computed exactly as fpdf2 2.8.9's ``add_font``
computes them, so the PDF's font objects are what fpdf2 itself would write),
its cmap and widths, and its raw TrueType tables.  ``subset_program`` then
cuts a document's subset by copying the used glyphs' raw ``glyf`` records
into a minimal TrueType file: a fraction of a millisecond.

Only fontTools and the TrueType format are used here, no fpdf2: the
fallback renderer (fpdf_public.py) measures text with these same metrics.
"""

from __future__ import annotations

import re
import struct
import sys
from array import array
from collections.abc import Sequence
from pathlib import Path

from fontTools.ttLib import TTFont

FONT_DIR = Path(__file__).parent.parent / "fonts"
FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}
FAMILY = "dejavu"

# PDF font descriptor flags (ISO 32000 9.8.2), as fpdf2 sets them.
_FIXED_PITCH, _SYMBOLIC, _ITALIC, _FORCE_BOLD = 0x1, 0x4, 0x40, 0x40000


class Widths(dict):
    """Unicode -> advance width (1/1000 em).  Unknown keys give the default
    width *without* inserting it (a defaultdict would mutate shared state)."""

    __slots__ = ("default",)
    default: int

    def __missing__(self, key):
        return self.default


# Tables a PDF-embedded TrueType program needs (ISO 32000 9.9) plus OS/2;
# cmap is not used by PDF viewers for CIDFontType2 with a CIDToGIDMap.
_COPIED_TABLES = ("OS/2", "cvt ", "fpgm", "prep")
_RAW_TABLES = ("head", "hhea", "maxp", "post", "loca", "glyf", "hmtx") + _COPIED_TABLES
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


def _checksum(data: bytes | bytearray) -> int:
    """TrueType table checksum: sum of big-endian uint32 words, mod 2**32."""
    if len(data) % 4:
        data = bytes(data) + b"\0" * (4 - len(data) % 4)
    words = array(_U32)
    words.frombytes(data)
    if sys.byteorder == "little":
        words.byteswap()
    return sum(words) & 0xFFFFFFFF


class FontProgram:
    """Everything about one TTF that does not change between documents.

    Built once per process (under a lock, by render.py) and never mutated
    afterwards, except ``glyphs``: the fast path's per-process memo of
    fpdf2 glyph objects (filled by fpdf_internals, values never change once
    made).  Shared freely between threads.
    """

    def __init__(self, path: Path, style: str):
        self.path = path
        self.style = style
        self.fontkey = f"{FAMILY}{style}"
        tt = TTFont(path, recalcTimestamp=False, fontNumber=0, lazy=True)
        if "glyf" not in tt:
            raise ValueError(f"{path}: only TrueType-outline fonts are supported")
        # Raw bytes first: once a table is decoded, getTableData() recompiles it.
        raw = {tag: bytes(tt.getTableData(tag)) for tag in _RAW_TABLES if tag in tt}
        self._metrics(tt)
        self.gid_by_name = {name: i for i, name in enumerate(tt.getGlyphOrder())}
        self.glyphs: dict[int, object] = {}  # code point -> fpdf2 Glyph (fast path memo)

        self.head, self.hhea, self.maxp = raw["head"], raw["hhea"], raw["maxp"]
        self.post = raw["post"][:32]
        self.tables = {tag: raw[tag] for tag in _COPIED_TABLES if tag in raw}
        # Keep the copyright/naming records (IDs 0-6, as fontTools' subsetter
        # does) so every embedded copy carries the font's notices.
        names = tt["name"]
        names.names = [n for n in names.names if n.nameID <= 6 and n.platformID == 3]
        self.tables["name"] = bytes(names.compile(tt))
        self.table_sums = {tag: _checksum(data) for tag, data in self.tables.items()}
        num_glyphs = struct.unpack_from(">H", self.maxp, 4)[0]
        long_loca = struct.unpack_from(">h", self.head, 50)[0] == 1
        raw_loca = raw["loca"]
        if long_loca:
            loca = struct.unpack(f">{num_glyphs + 1}I", raw_loca[: 4 * (num_glyphs + 1)])
        else:
            loca = tuple(2 * x for x in struct.unpack(f">{num_glyphs + 1}H", raw_loca[: 2 * (num_glyphs + 1)]))
        self.loca = loca
        self.glyf = raw["glyf"]
        n_long = struct.unpack_from(">H", self.hhea, 34)[0]
        raw_hmtx = raw["hmtx"]
        longs = struct.unpack(f">{2 * n_long}H", raw_hmtx[: 4 * n_long])
        metrics = [(longs[2 * i], longs[2 * i + 1]) for i in range(n_long)]
        rest = num_glyphs - n_long
        if rest > 0:
            lsbs = struct.unpack(f">{rest}H", raw_hmtx[4 * n_long : 4 * n_long + 2 * rest])
            last = metrics[-1][0]
            metrics.extend((last, lsb) for lsb in lsbs)
        self.hmetrics = tuple(metrics)  # (advance, lsb as uint16 bits)
        glyf = self.glyf
        self.composites = {
            gid: refs
            for gid in range(num_glyphs)
            if loca[gid + 1] > loca[gid] and (refs := _composite_refs(glyf[loca[gid] : loca[gid + 1]]))
        }
        # Each glyph is copied 4-byte aligned and zero-padded, so the glyf
        # table's checksum is the sum of the glyphs' own checksums.
        self.glyph_sums = tuple(_checksum(glyf[loca[gid] : loca[gid + 1]]) for gid in range(num_glyphs))
        tt.close()

    def _metrics(self, tt: TTFont) -> None:
        """Metrics, cmap and widths, with fpdf2 2.8.9's ``TTFFont`` formulas
        (tests/test_pdf_fallback.py checks they still agree)."""
        if ".notdef" not in tt.getGlyphOrder():
            raise ValueError(f"{self.path}: the font has no .notdef glyph")
        head, hhea, os2, post, hmtx = tt["head"], tt["hhea"], tt["OS/2"], tt["post"], tt["hmtx"]
        scale = self.scale = 1000 / float(head.unitsPerEm)
        missing_width = round(scale * hmtx.metrics[".notdef"][0])
        cap_height = getattr(os2, "sCapHeight", hhea.ascent)
        flags = _SYMBOLIC
        if post.isFixedPitch:
            flags |= _FIXED_PITCH
        if post.italicAngle != 0:
            flags |= _ITALIC
        if os2.usWeightClass >= 600:
            flags |= _FORCE_BOLD
        self.desc_args = dict(
            ascent=round(hhea.ascent * scale),
            descent=round(hhea.descent * scale),
            cap_height=round(cap_height * scale),
            flags=flags,
            font_b_box=(
                f"[{head.xMin * scale:.0f} {head.yMin * scale:.0f} {head.xMax * scale:.0f} {head.yMax * scale:.0f}]"
            ),
            italic_angle=int(post.italicAngle),
            stem_v=round(50 + int(pow((os2.usWeightClass / 65), 2))),
            missing_width=missing_width,
        )
        cmap = tt.getBestCmap()
        if not cmap:
            raise ValueError(f"{self.path}: the font has no Unicode cmap")
        self.cmap: dict[int, str] = dict(cmap)
        widths = Widths()
        widths.default = missing_width
        glyph_ids: dict[int, int] = {}
        advances = hmtx.metrics
        for char, glyph in self.cmap.items():
            w = advances[glyph][0]
            if w == 65535:
                w = 0
            widths[char] = round(scale * w + 0.001)  # half up
            glyph_ids[char] = tt.getGlyphID(glyph)
        self.cw = widths
        self.glyph_ids = glyph_ids
        by_char = Widths((chr(c), w) for c, w in widths.items())
        by_char.default = missing_width
        self.char_widths = by_char  # same, keyed by 1-char str
        self.chars = frozenset(self.cmap)
        self.name = re.sub("[ ()]", "", tt["name"].getBestFullName())
        self.up = round(post.underlinePosition * scale)
        self.ut = round(post.underlineThickness * scale)
        self.sp = round(os2.yStrikeoutPosition * scale)
        self.ss = round(os2.yStrikeoutSize * scale)

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
        loca, glyf = self.loca, self.glyf
        glyf_parts: list[bytes | bytearray] = []
        hmtx: list[int] = []
        offsets = [0]
        size = 0
        glyf_sum = 0
        for old in order:
            if old >= 0:
                start, end = loca[old], loca[old + 1]
                if end > start:
                    refs = self.composites.get(old)
                    data: bytes | bytearray
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
        tables.update(
            {
                "head": bytes(head),
                "hhea": bytes(hhea),
                "maxp": bytes(maxp),
                "post": bytes(post),
                "hmtx": struct.pack(f">{2 * count}H", *hmtx),
                "loca": struct.pack(f">{count + 1}I", *offsets),
                "glyf": b"".join(glyf_parts),
            }
        )
        tags = sorted(tables)
        num = len(tags)
        entry_selector = num.bit_length() - 1
        search_range = (1 << entry_selector) * 16
        directory = [struct.pack(">IHHHH", 0x00010000, num, search_range, entry_selector, num * 16 - search_range)]
        body: list[bytes | bytearray] = []
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


def load_programs() -> tuple[FontProgram, FontProgram]:
    """(regular, bold), freshly parsed: callers cache them (render.py)."""
    return (FontProgram(FONT_DIR / FONT_FILES[""], ""), FontProgram(FONT_DIR / FONT_FILES["B"], "B"))
