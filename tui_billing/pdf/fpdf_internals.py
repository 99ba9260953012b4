"""The fast path: everything that relies on fpdf2 2.8.9 internals, here only.

fpdf2 has no public way to share a parsed font between documents, to embed
a font subset made elsewhere, or to add a prepared content-stream block to a
page.  This module does those three things by reaching into fpdf2:

* ``document_font``: a light ``TTFFont`` view of a parsed ``FontProgram``,
  put straight into ``FPDF.fonts`` instead of ``add_font`` parsing the file
  again.  Its only mutable state, the glyph subset map (``_DocSubset``, an
  fpdf2 ``SubsetMap`` with per-document instead of class-wide caches), is
  private to the document: documents can be rendered in many threads at once.
* ``add_fonts`` returns the page painter: ``paint.ContentStream`` writes the
  block, ``FPDF._out`` adds it to the page and ``FPDF._resource_catalog``
  lists the fonts in the page's resources.
* ``output``: ``FPDF.output`` with ``_OutputProducer``, whose ``_add_fonts``
  embeds our subsets (fonts.py cuts them) with the font objects' entries
  spelled out (fpdf2 serialises its objects by walking ``dir()``; the bytes
  are the same).

``incompatibilities()`` says whether this fpdf2 still has what the fast
path touches (``REQUIRED`` below, with the parameters it passes or, for
overrides, that fpdf2 passes); render.py falls back to fpdf2's public API
(fpdf_public.py) when it does not, and tests/test_pdf_fallback.py checks
both the shapes and the behaviour, so an fpdf2 upgrade fails that test loudly
and costs speed, not correctness.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import fpdf
from fpdf import FPDF
from fpdf.enums import FontDescriptorFlags, PDFResourceType, TextEmphasis
from fpdf.fonts import PDFFontDescriptor, SubsetMap, TTFFont
from fpdf.output import OutputProducer, PDFFontStream
from fpdf.syntax import PDFContentStream, PDFObject
from fpdf.util import escape_parens

from .fonts import FontProgram
from .paint import ContentStream

# fpdf2 versions whose internals this module was written against and tested
# with (tests/test_pdf_fallback.py): any other version renders through the
# public API until it has been checked and added here.
TESTED_VERSIONS = ("2.8.9",)

# Every fpdf2 name the fast path touches.  A tuple lists parameter names:
# "exact" = fpdf2 calls our override with these (after self), so they must be
# exactly these; "accepts" = we call it with these, so it must take them;
# None = used as a value (class, attribute, constant).
REQUIRED: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "fpdf.FPDF.fonts": ("value", None),
    "fpdf.FPDF._out": ("accepts", ("s",)),
    "fpdf.FPDF.output": ("accepts", ("output_producer_class",)),
    "fpdf.FPDF.page": ("value", None),
    "fpdf.FPDF._resource_catalog": ("value", None),
    "fpdf.output.ResourceCatalog.add": ("accepts", ("resource_type", "resource", "page_number")),
    "fpdf.enums.PDFResourceType.FONT": ("value", None),
    "fpdf.enums.TextEmphasis.coerce": ("accepts", ("value",)),
    "fpdf.enums.FontDescriptorFlags": ("value", None),
    "fpdf.fonts.PDFFontDescriptor.__init__": (
        "accepts",
        ("ascent", "descent", "cap_height", "flags", "font_b_box", "italic_angle", "stem_v", "missing_width"),
    ),
    "fpdf.fonts.TTFFont.encode_text": ("exact", ("text",)),
    "fpdf.fonts.TTFFont.__slots__": ("value", None),
    "fpdf.fonts.SubsetMap.__init__": ("accepts", ("font",)),
    "fpdf.fonts.SubsetMap.items": ("accepts", ()),
    "fpdf.fonts.SubsetMap.pick": ("exact", ("unicode",)),
    "fpdf.fonts.SubsetMap.pick.__wrapped__": ("accepts", ("unicode",)),
    "fpdf.fonts.SubsetMap.get_glyph": ("exact", ("glyph", "unicode", "glyph_name", "glyph_width")),
    "fpdf.fonts.SubsetMap.get_glyph.__wrapped__": ("accepts", ("glyph", "unicode", "glyph_name", "glyph_width")),
    "fpdf.fonts.Glyph": ("value", None),
    "fpdf.output.OutputProducer.__init__": ("accepts", ("fpdf",)),
    "fpdf.output.OutputProducer._add_fonts": (
        "exact",
        ("image_objects_per_index", "gfxstate_objs_per_name", "pattern_objs_per_name"),
    ),
    "fpdf.output.OutputProducer._add_pdf_obj": ("accepts", ("pdf_obj", "trace_label")),
    "fpdf.output.PDFFontStream.__init__": ("accepts", ("contents",)),
    "fpdf.syntax.PDFContentStream.__init__": ("accepts", ("contents",)),
    "fpdf.syntax.PDFContentStream._COMPRESSION_LEVEL": ("value", None),
    "fpdf.syntax.PDFContentStream.serialize": ("exact", ("obj_dict", "_security_handler")),
    "fpdf.syntax.PDFObject.__init__": ("accepts", ()),
    "fpdf.syntax.PDFObject.ref": ("value", None),
    "fpdf.syntax.PDFObject.serialize": ("exact", ("obj_dict", "_security_handler")),
    "fpdf.util.escape_parens": ("accepts", ("s",)),
}

# The TTFFont attributes document_font() sets: all of TTFFont's slots, so that
# whatever fpdf2 reads from a font it finds.
DOC_FONT_SLOTS = frozenset(
    (
        "i",
        "type",
        "name",
        "desc",
        "glyph_ids",
        "_hbfont",
        "sp",
        "ss",
        "up",
        "ut",
        "cw",
        "ttffile",
        "fontkey",
        "emphasis",
        "scale",
        "subset",
        "cmap",
        "ttfont",
        "missing_glyphs",
        "biggest_size_pt",
        "color_font",
        "unicode_range",
        "palette_index",
        "is_compressed",
        "is_cff",
        "is_cid_keyed",
        "is_symbol",
        "cff_ros",
        "collection_font_number",
    )
)

# Attributes of an FPDF instance (set in __init__ or properties), not of the class.
_INSTANCE_ATTRIBUTES = ("fonts", "page", "_resource_catalog")


def _resolve(name: str) -> object:
    """The object a dotted ``REQUIRED`` name stands for (AttributeError or
    ImportError when fpdf2 has no such thing)."""
    parts = name.split(".")
    for n in range(len(parts) - 1, 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:n]))
        except ImportError:
            continue
        rest = parts[n:]
        if rest[0] == "FPDF" and len(rest) == 2 and rest[1] in _INSTANCE_ATTRIBUTES:
            obj = _probe_document()
            rest = rest[1:]
        for part in rest:
            obj = getattr(obj, part)
        return obj
    raise ImportError(f"no module for {name}")


def _probe_document() -> FPDF:
    probe = FPDF()
    probe.add_page()
    return probe


def _parameters(obj: Any) -> list[inspect.Parameter] | None:
    try:
        params = list(inspect.signature(obj).parameters.values())
    except (TypeError, ValueError):
        return None
    if params and params[0].name == "self":
        params = params[1:]
    return params


# What some of the values must be, beyond existing.
_VALUE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "fpdf.FPDF.fonts": lambda v: isinstance(v, dict),  # filled in place by add_fonts
    "fpdf.FPDF.page": lambda v: isinstance(v, int),
    "fpdf.fonts.TTFFont.__slots__": lambda v: frozenset(v) == DOC_FONT_SLOTS,
    "fpdf.syntax.PDFContentStream._COMPRESSION_LEVEL": lambda v: isinstance(v, int),
}


def _shape_problem(name: str, kind: str, expected: tuple[str, ...] | None, obj: Any) -> str | None:
    if kind == "value":
        check = _VALUE_CHECKS.get(name)
        if check is None or check(obj):
            return None
        if name.endswith("__slots__"):
            return f"{name} differs from the slots document_font() sets: {sorted(frozenset(obj) ^ DOC_FONT_SLOTS)}"
        return f"{name} is not what the fast path expects: {obj!r:.80}"
    assert expected is not None  # every kind but "value" names its parameters
    params = _parameters(obj)
    if params is None:
        return f"{name} is not callable with an inspectable signature"
    names = [p.name for p in params]
    if kind == "exact":
        if names != list(expected):
            return f"{name} takes ({', '.join(names)}), the override takes ({', '.join(expected)})"
        return None
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    missing = [n for n in expected if n not in names and not var_kw]
    if missing:
        return f"{name} takes ({', '.join(names)}): no {', '.join(missing)}"
    required = [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind
        in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    extra = [n for n in required if n not in expected]
    if extra:
        return f"{name} now requires ({', '.join(extra)})"
    return None


def incompatibilities(version: str | None = None, lookup: Callable[[str], object] | None = None) -> list[str]:
    """Why the fast path cannot run on this fpdf2; empty when it can.

    ``version`` (default: the installed fpdf2's) must be a tested one, and
    every ``REQUIRED`` name must resolve (``lookup``, default: in the
    installed fpdf2) to something of the expected shape.  Tests pass a fake
    version or lookup to see the fallback chosen.
    """
    version = fpdf.FPDF_VERSION if version is None else version
    find = lookup or _resolve
    problems = []
    if version not in TESTED_VERSIONS:
        problems.append(
            f"fpdf2 {version} is not a version the fast path was tested with ({', '.join(TESTED_VERSIONS)})"
        )
    for name, (kind, expected) in REQUIRED.items():
        try:
            obj = find(name)
        except Exception as exc:  # noqa: BLE001 -- a missing module, class or attribute: all the same here
            problems.append(f"{name} is missing ({type(exc).__name__}: {exc})")
            continue
        problem = _shape_problem(name, kind, expected, obj)
        if problem:
            problems.append(problem)
    return problems


# --------------------------------------------------------------------------
# A per-document view of a parsed font
# --------------------------------------------------------------------------


class _DocSubset(SubsetMap):
    """fpdf2's SubsetMap with per-instance caches instead of its class-wide
    functools.cache (which is shared by all documents of all threads and is
    only released by an fpdf2 output of a TTF)."""

    _pick = getattr(SubsetMap.pick, "__wrapped__", SubsetMap.pick)
    _get_glyph = getattr(SubsetMap.get_glyph, "__wrapped__", SubsetMap.get_glyph)

    def __init__(self, font: _DocFont) -> None:
        self._picked: dict[int, int | None] = {}
        self._glyphs = font.program.glyphs
        super().__init__(font)

    def pick(self, unicode: int):  # type: ignore[override]
        try:
            return self._picked[unicode]
        except KeyError:
            char_id = self._picked[unicode] = self._pick(unicode)
            return char_id

    def get_glyph(self, glyph=None, unicode=None, glyph_name=None, glyph_width=None):
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
    subset: SubsetMap

    def __missing__(self, uni: int) -> str:
        char_id = self.subset.pick(uni)
        code = self[uni] = chr(char_id) if char_id else ""
        return code


class _DocFont(TTFFont):
    __slots__ = ("_codes", "program")
    _codes: _Codes
    program: FontProgram
    unicode_range: Any  # in TTFFont's slots, not in its annotations

    def encode_text(self, text: str) -> str:
        """fpdf2's encode_text (text -> subset ids as a UTF-16 string operand)
        with one C-level ``str.translate`` instead of a loop per character."""
        mapped = text.translate(self._codes)
        return f"({escape_parens(mapped.encode('utf-16-be').decode('latin-1'))}) Tj"


def document_font(program: FontProgram, index: int) -> _DocFont:
    """A fresh per-document view: shared immutable data, private subset state."""
    f = _DocFont.__new__(_DocFont)
    f.program = program
    f.i = index
    f.type = "TTF"
    f.ttffile = program.path
    f.fontkey = program.fontkey
    f.name = program.name
    f.scale = program.scale
    f.up, f.ut, f.sp, f.ss = program.up, program.ut, program.sp, program.ss
    f.emphasis = TextEmphasis.coerce(program.style)
    f.is_compressed = f.is_cff = f.is_cid_keyed = f.is_symbol = False
    f.cff_ros = None
    f.collection_font_number = 0
    f.ttfont = None  # never touched: our output producer embeds the font itself
    f._hbfont = None
    f.color_font = None
    f.palette_index = 0
    f.unicode_range = None
    f.cmap = program.cmap
    f.glyph_ids = program.glyph_ids
    f.cw = program.cw
    f.desc = PDFFontDescriptor(**dict(program.desc_args, flags=FontDescriptorFlags(program.desc_args["flags"])))
    f.missing_glyphs = []
    f.biggest_size_pt = 0
    f.subset = _DocSubset(f)
    f._codes = _Codes()
    f._codes.subset = f.subset
    return f


def add_fonts(pdf: FPDF, regular: FontProgram, bold: FontProgram) -> Callable[..., None]:
    """Puts the two faces in ``pdf`` (as "dejavu" and "dejavuB", so the
    public ``set_font`` finds them too) and returns the page painter:
    ``paint(*display_lists)`` adds the lists to the current page as one block."""
    for program in (regular, bold):
        pdf.fonts[program.fontkey] = document_font(program, len(pdf.fonts) + 1)
    fonts = {"": pdf.fonts[regular.fontkey], "B": pdf.fonts[bold.fontkey]}
    stream = ContentStream(fonts)
    catalog = pdf._resource_catalog
    font_resource = PDFResourceType.FONT

    def paint(*display_lists: list[tuple]) -> None:
        block = stream.block(*display_lists)
        for f in fonts.values():
            catalog.add(font_resource, f.i, pdf.page)
        pdf._out(block)

    return paint


def output(pdf: FPDF) -> bytes:
    return bytes(pdf.output(output_producer_class=_OutputProducer))


# --------------------------------------------------------------------------
# Output: our subsets embedded, font objects spelled out
# --------------------------------------------------------------------------


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
        chunk = pairs[start : start + 100]
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
        return _serialize(
            self, {"/Filter": "/FlateDecode", "/Length": self.length, "/Length1": self.length1}, _security_handler
        )


class _OutputProducer(OutputProducer):
    """fpdf2's producer, except that our fonts are embedded by ``_add_doc_font``."""

    def _add_fonts(self, image_objects_per_index, gfxstate_objs_per_name, pattern_objs_per_name):
        registry = self.fpdf.fonts  # a read-only property: the dict itself is changed, then restored
        everything = dict(registry)
        ours = {k: f for k, f in everything.items() if isinstance(f, _DocFont)}
        others = {k: f for k, f in everything.items() if k not in ours}
        result = {}
        if others:  # e.g. a core font: let fpdf2 handle it as usual
            registry.clear()
            registry.update(others)
            try:
                result.update(
                    super()._add_fonts(image_objects_per_index, gfxstate_objs_per_name, pattern_objs_per_name)
                )
            finally:
                registry.clear()
                registry.update(everything)
        for font in sorted(ours.values(), key=lambda f: f.i):
            result[font.i] = self._add_doc_font(font)
        return result

    def _add_doc_font(self, font: _DocFont) -> _Entries:
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
        pairs = sorted(
            (cid, g.unicode) for cid, g in by_cid.items() if isinstance(g.unicode, tuple) and g.unicode and cid
        )
        d = program.desc_args
        # The same objects (and bytes) fpdf2's own PDFFont & co. give, keys sorted
        # as fpdf2's dir()-driven serialisation sorts them.
        composite = self._entries(
            {
                "/BaseFont": base_font,
                "/DescendantFonts": None,
                "/Encoding": "/Identity-H",
                "/Subtype": "/Type0",
                "/ToUnicode": None,
                "/Type": "/Font",
            }
        )
        cid_font = self._entries(
            {
                "/BaseFont": base_font,
                "/CIDSystemInfo": None,
                "/CIDToGIDMap": "/Identity",
                "/DW": d["missing_width"],
                "/FontDescriptor": None,
                "/Subtype": "/CIDFontType2",
                "/Type": "/Font",
                "/W": f"[0 [{' '.join(map(str, widths))}]]",
            }
        )
        composite.entries["/DescendantFonts"] = [cid_font]
        to_unicode = _ToUnicode(_to_unicode_cmap(pairs))
        self._add_pdf_obj(to_unicode, "fonts")
        composite.entries["/ToUnicode"] = to_unicode
        cid_font.entries["/CIDSystemInfo"] = self._entries(
            {"/Ordering": "(UCS)", "/Registry": "(Adobe)", "/Supplement": 0}
        )
        descriptor = self._entries(
            {
                "/Ascent": d["ascent"],
                "/CapHeight": d["cap_height"],
                "/Descent": d["descent"],
                "/Flags": d["flags"],
                "/FontBBox": d["font_b_box"],
                "/FontFile2": None,
                "/FontName": base_font,
                "/ItalicAngle": d["italic_angle"],
                "/MissingWidth": d["missing_width"],
                "/StemV": d["stem_v"],
                "/Type": "/FontDescriptor",
            }
        )
        cid_font.entries["/FontDescriptor"] = descriptor
        descriptor.entries["/FontFile2"] = _FontStream(contents=program_bytes)
        self._add_pdf_obj(descriptor.entries["/FontFile2"], "fonts")
        return composite

    def _entries(self, entries: dict) -> _Entries:
        obj = _Entries(entries)
        self._add_pdf_obj(obj, "fonts")
        return obj


class _Entries(PDFObject):
    """A dictionary object with its entries spelled out.  fpdf2 serialises
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
    """``obj`` as ``n 0 obj << entries >> [stream] endobj``, skipping fpdf2's
    dir()-driven entry discovery."""
    if security_handler is not None:
        raise ValueError("invoice PDFs are not encrypted")
    return PDFObject.serialize(obj, entries)
