"""The PDF fast path's contract with fpdf2, and the public-API fallback.

pdf/fpdf_internals.py relies on fpdf2 2.8.9 internals.  The first half of
this file checks that those internals exist, take the parameters the fast
path passes (or, for overrides, that fpdf2 passes) and behave as it assumes,
so an fpdf2 upgrade fails here loudly, naming what changed.  The second half
checks the fallback (fpdf2's public API only): chosen when the internals
differ or when forced, and giving the same text and pages as the fast path.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import os
import subprocess
import sys
import zlib
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import fpdf
import pytest
from fpdf import FPDF
from fpdf.enums import TextEmphasis
from fpdf.fonts import Glyph, SubsetMap, TTFFont
from fpdf.syntax import PDFContentStream, PDFObject
from fpdf.util import escape_parens
from pypdf import PdfReader

from tui_billing import pdf
from tui_billing.pdf import fpdf_internals as internals
from tui_billing.pdf import fpdf_public, render
from tui_billing.pdf.fonts import FAMILY

from .test_pdf import NAMES, make_doc
from .test_pdf_customer import usage_doc

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def automatic_path(monkeypatch):
    """Every test starts with the automatic choice (and leaves it so)."""
    monkeypatch.delenv(pdf.FALLBACK_ENV, raising=False)
    pdf.use_fallback(False)
    yield
    pdf.use_fallback(False)


def fonts():
    return render._fonts()


def fast(doc) -> bytes:
    assert pdf.rendering_path() == render.FAST
    return pdf.render_invoice(doc)


def fallback(doc) -> bytes:
    pdf.use_fallback()
    try:
        assert pdf.rendering_path() == render.FALLBACK
        return pdf.render_invoice(doc)
    finally:
        pdf.use_fallback(False)


def base_fonts(data: bytes) -> list[str]:
    page = PdfReader(io.BytesIO(data)).pages[0]
    return sorted(str(f.get_object()["/BaseFont"]) for f in page["/Resources"]["/Font"].values())


# == the contract: what the fast path assumes of fpdf2 ========================================


def test_installed_fpdf2_has_every_internal_the_fast_path_uses():
    problems = internals.incompatibilities()
    assert problems == [], "fpdf2 changed under pdf/fpdf_internals.py:\n  " + "\n  ".join(problems)
    assert fpdf.FPDF_VERSION in internals.TESTED_VERSIONS
    assert pdf.fast_path_problems() == ()
    assert pdf.rendering_path() == render.FAST


def test_every_required_name_resolves_with_the_parameters_the_fast_path_uses():
    for name, (kind, params) in internals.REQUIRED.items():
        obj = internals._resolve(name)
        if kind == "value":
            continue
        names = [p for p in inspect.signature(obj).parameters if p != "self"]
        if kind == "exact":
            assert names == list(params), name
        else:
            assert set(params) <= set(names), name


def test_the_internals_used_are_all_named_in_required():
    """Every fpdf2 import and every private FPDF attribute fpdf_internals.py
    touches is listed in REQUIRED (so the shape check covers it)."""
    tree = ast.parse(Path(internals.__file__).read_text())
    required = " ".join(internals.REQUIRED)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fpdf"):
            for alias in node.names:
                if alias.name != "FPDF":
                    assert f".{alias.name}" in required, f"{node.module}.{alias.name} not in REQUIRED"
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "pdf"
            and (node.attr.startswith("_") or node.attr in ("fonts", "page"))
        ):
            assert f"fpdf.FPDF.{node.attr}" in required, node.attr


def test_subset_map_caches_wrap_plain_functions_that_do_what_fpdf2_does():
    """_DocSubset calls SubsetMap.pick/get_glyph's ``__wrapped__`` with its own
    per-document caches: the ids and glyphs must be fpdf2's own."""
    for method in (SubsetMap.pick, SubsetMap.get_glyph):
        assert callable(method.__wrapped__) and callable(method.cache_clear)  # functools.cache
    regular, _, _ = fonts()
    theirs = TTFFont(SimpleNamespace(fonts={}, render_color_fonts=False), regular.path, regular.fontkey, "")
    ours = internals.document_font(regular, 1)
    text = "Zoë Łukasiewicz € 12.50 ─ 大"
    assert [ours.subset.pick(ord(c)) for c in text] == [theirs.subset.pick(ord(c)) for c in text]
    assert ours.subset.pick(ord("大")) is None  # a missing glyph: no id (layout replaces it first)
    assert list(ours.subset.items()) == list(theirs.subset.items())
    for glyph, char_id in ours.subset.items():
        assert isinstance(glyph, Glyph) and isinstance(char_id, int)
        assert isinstance(glyph.glyph_id, int) and isinstance(glyph.glyph_name, str)
        assert isinstance(glyph.unicode, tuple) and isinstance(glyph.glyph_width, int)
    assert ours.encode_text("Zoë") == theirs.encode_text("Zoë")


def test_font_metrics_are_what_add_font_computes():
    """fonts.py reads the fonts with fontTools using fpdf2 2.8.9's formulas."""
    for program in fonts()[:2]:
        t = TTFFont(SimpleNamespace(fonts={}, render_color_fonts=False), program.path, program.fontkey, program.style)
        d = t.desc
        assert (t.name, t.scale, t.up, t.ut, t.sp, t.ss) == (
            program.name,
            program.scale,
            program.up,
            program.ut,
            program.sp,
            program.ss,
        )
        assert list(t.cmap.items()) == list(program.cmap.items())
        assert t.glyph_ids == program.glyph_ids and dict(t.cw) == dict(program.cw)
        assert {
            "ascent": d.ascent,
            "descent": d.descent,
            "cap_height": d.cap_height,
            "flags": d.flags.value,
            "font_b_box": d.font_b_box,
            "italic_angle": d.italic_angle,
            "stem_v": d.stem_v,
            "missing_width": d.missing_width,
        } == program.desc_args


def test_document_font_sets_every_ttffont_slot_and_the_emphasis():
    regular, bold, _ = fonts()
    assert frozenset(TTFFont.__slots__) == internals.DOC_FONT_SLOTS
    f = internals.document_font(bold, 2)
    for slot in TTFFont.__slots__:
        getattr(f, slot)  # set, so fpdf2 finds whatever it reads
    assert f.emphasis == TextEmphasis.coerce("B") == TextEmphasis.B
    assert internals.document_font(regular, 1).emphasis == TextEmphasis.NONE


def test_out_and_the_resource_catalog_put_a_block_and_its_fonts_on_the_page():
    regular, bold, _ = fonts()
    doc = FPDF(unit="mm", format="A4")
    paint = internals.add_fonts(doc, regular, bold)
    assert [f.i for f in doc.fonts.values()] == [1, 2]
    doc.add_page()
    paint(
        [("text", 20, 30, "Zoë", "", 10, (0, 0, 0)), ("rect", 10, 10, 5, 5, (9, 9, 9))],
        [("text", 20, 40, "Łódź", "B", 12, (1, 2, 3)), ("line", 10, 50, 100, 50, (0, 0, 0), 0.2)],
    )
    # a core font beside ours: fpdf2's own _add_fonts embeds it, ours the rest
    doc.set_font("helvetica", size=9)
    doc.text(20, 60, "core")
    data = internals.output(doc)
    page = PdfReader(io.BytesIO(data)).pages[0]
    content = page.get_contents().get_data()
    assert b"/F1 10.00 Tf" in content and b"/F2 12.00 Tf" in content and b"re f" in content
    assert set(page["/Resources"]["/Font"]) == {"/F1", "/F2", "/F3"}
    assert page.extract_text().split() == ["Zoë", "Łódź", "core"]


def test_our_font_objects_have_the_entries_fpdf2_writes_for_its_own():
    """The fast path spells out the Type0 / CIDFontType2 / FontDescriptor
    entries instead of fpdf2's dir()-driven serialisation: same keys, same
    metric values as fpdf2's own add_font() output."""
    doc = make_doc(3)

    def objects(data):
        font = PdfReader(io.BytesIO(data)).pages[0]["/Resources"]["/Font"]["/F1"].get_object()
        cid = font["/DescendantFonts"][0].get_object()
        return font, cid, cid["/FontDescriptor"].get_object(), cid["/CIDSystemInfo"].get_object()

    ours, theirs = objects(fast(doc)), objects(fallback(doc))
    for a, b in zip(ours, theirs):
        assert sorted(a) == sorted(b)
    for key in ("/Encoding", "/Subtype", "/Type"):
        assert ours[0][key] == theirs[0][key]
    for key in ("/DW", "/Subtype", "/Type"):  # /CIDToGIDMap: ours /Identity (glyph id == char id), theirs a map
        assert ours[1][key] == theirs[1][key]
    for key in (
        "/Ascent",
        "/CapHeight",
        "/Descent",
        "/Flags",
        "/FontBBox",
        "/ItalicAngle",
        "/MissingWidth",
        "/StemV",
        "/Type",
    ):
        assert ours[2][key] == theirs[2][key], key
    assert dict(ours[3]) == dict(theirs[3])
    assert str(ours[0]["/BaseFont"]).split("+")[1] == str(theirs[0]["/BaseFont"]).split("+")[1]


def test_pdf_object_serialisation_and_streams_work_as_assumed():
    obj = PDFObject()
    obj.id = 7
    assert obj.ref == "7 0 R"
    assert PDFObject.serialize(obj, {"/A": 1, "/B": "/Name"}) == "7 0 obj\n<<\n/A 1\n/B /Name\n>>\nendobj"
    data = bytes(range(256)) * 20
    stream = internals._FontStream(contents=data)  # _COMPRESSION_LEVEL is read by PDFContentStream
    assert stream.content_stream() == zlib.compress(data, 1) and stream.length == len(zlib.compress(data, 1))
    assert stream.length1 == len(data)
    assert PDFContentStream._COMPRESSION_LEVEL == -1
    plain = PDFContentStream(b"abc")
    assert (plain.content_stream(), plain.length) == (b"abc", 3)
    assert escape_parens("a(b)c\\") == "a\\(b\\)c\\\\"


# == the detection: when the internals differ, the fallback is chosen ===========================


def fake_lookup(**changed):
    """The installed fpdf2's names, except ``changed`` (a value of None = missing)."""

    def lookup(name):
        key = name.replace(".", "_")
        if key in changed:
            if changed[key] is None:
                raise AttributeError(name)
            return changed[key]
        return internals._resolve(name)

    return lookup


def test_another_fpdf2_version_chooses_the_fallback():
    problems = internals.incompatibilities(version="2.9.0")
    assert len(problems) == 1 and "2.9.0" in problems[0]
    assert render.choose_path(env={}, problems=problems) == render.FALLBACK
    assert render.choose_path(env={}, problems=()) == render.FAST


def test_a_missing_or_reshaped_internal_chooses_the_fallback():
    class Slots:
        __slots__ = tuple(TTFFont.__slots__) + ("new_state",)

    cases = {
        "fpdf_fonts_SubsetMap_pick___wrapped__": None,  # pick no longer functools.cache'd
        "fpdf_output_OutputProducer__add_fonts": lambda self, images, gfx, patterns, shadings: {},
        "fpdf_FPDF__out": lambda self, s, where: None,  # a new required parameter
        "fpdf_FPDF__resource_catalog": None,
        "fpdf_fonts_TTFFont___slots__": Slots.__slots__,
        "fpdf_syntax_PDFObject_serialize": lambda self, obj_dict=None: "",
        "fpdf_FPDF_fonts": (),  # no longer a dict filled in place
    }
    for key, value in cases.items():
        problems = internals.incompatibilities(lookup=fake_lookup(**{key: value}))
        assert len(problems) == 1, (key, problems)
        assert render.choose_path(env={}, problems=problems) == render.FALLBACK


def test_an_fpdf2_upgrade_renders_through_the_fallback(monkeypatch):
    """The whole way: another version installed -> detected on first use ->
    the public API renders the same invoice."""
    doc = make_doc(30)
    expected = fast(doc)
    monkeypatch.setattr(fpdf, "FPDF_VERSION", "2.9.0")
    monkeypatch.setattr(render, "_problems", None)
    monkeypatch.setattr(render, "_internals", None)
    assert "2.9.0" in " ".join(pdf.fast_path_problems())
    assert pdf.rendering_path() == render.FALLBACK
    data = pdf.render_invoice(doc)
    assert all(name.startswith("/MPDFAA+") for name in base_fonts(data))  # fpdf2's own subsetting
    assert pdf.pdf_text(data) == pdf.pdf_text(expected)
    monkeypatch.undo()
    assert pdf.rendering_path() == render.FAST and pdf.render_invoice(doc) == expected


def test_fpdf_internals_that_cannot_even_be_imported_choose_the_fallback(monkeypatch):
    monkeypatch.setitem(sys.modules, "tui_billing.pdf.fpdf_internals", None)  # an ImportError
    monkeypatch.setattr(render, "_problems", None)
    monkeypatch.setattr(render, "_internals", None)
    problems = pdf.fast_path_problems()
    assert len(problems) == 1 and "cannot be loaded" in problems[0]
    assert pdf.rendering_path() == render.FALLBACK
    assert "Zoë Łukasiewicz" in pdf.pdf_text(pdf.render_invoice(make_doc(2)))


def test_forcing_the_fallback_by_function_and_by_environment(monkeypatch):
    assert render.choose_path(env={pdf.FALLBACK_ENV: "1"}, problems=()) == render.FALLBACK
    for off in ("", "0", "no", "false", "off", " OFF "):
        assert render.choose_path(env={pdf.FALLBACK_ENV: off}, problems=(), forced=False) == render.FAST
    assert render.choose_path(env={}, problems=(), forced=True) == render.FALLBACK
    monkeypatch.setenv(pdf.FALLBACK_ENV, "1")
    assert pdf.rendering_path() == render.FALLBACK
    assert all(name.startswith("/MPDFAA+") for name in base_fonts(pdf.render_invoice(make_doc(1))))
    monkeypatch.delenv(pdf.FALLBACK_ENV)
    assert pdf.rendering_path() == render.FAST
    pdf.use_fallback()
    assert pdf.rendering_path() == render.FALLBACK
    pdf.use_fallback(False)
    assert pdf.rendering_path() == render.FAST


def test_the_environment_switch_works_in_a_fresh_process():
    script = (
        "import sys, hashlib; sys.path[:0] = [%r]\n"
        "from tests.test_pdf import make_doc\n"
        "from tui_billing import pdf\n"
        "print(pdf.rendering_path(), hashlib.sha256(pdf.render_invoice(make_doc(5))).hexdigest())\n"
    ) % str(ROOT)
    env = dict(os.environ, **{pdf.FALLBACK_ENV: "1"})
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    import hashlib

    assert out.stdout.split() == ["fallback", hashlib.sha256(fallback(make_doc(5))).hexdigest()]


# == the fallback: the same invoices, the same text and pages =====================================


def invoices():
    charges = make_doc(2).charges
    return {
        "30 lines": make_doc(30),
        "150 lines, four pages": make_doc(150),
        "draft with watermark": make_doc(3, status_note="DRAFT – under review", revision=3),
        "missing glyphs, control characters": make_doc(1, customer="大阪 Trading\x00\tKK"),
        "units": usage_doc(),
        "credit": make_doc(2, total=Decimal("-14.50")),
        "nothing to pay, no charges": dataclasses.replace(
            make_doc(1, taxes=()),
            charges=(),
            corrections=(),
            subtotal=Decimal(0),
            discount_total=Decimal(0),
            total=Decimal(0),
        ),
        "long words": dataclasses.replace(
            make_doc(2),
            charges=(
                pdf.ChargeRow(1, " ".join(f"word{i:03d}" for i in range(200)), Decimal(1), Decimal(0), Decimal(1)),
                pdf.ChargeRow(2, "X" * 400, Decimal(1), Decimal(0), Decimal(2)),
                *charges,
            ),
        ),
        "another customer": make_doc(12, number="INV-Ç/7", customer=NAMES[3]),
    }


@pytest.mark.parametrize("name", list(invoices()))
def test_fallback_gives_the_same_text_and_pages_as_the_fast_path(name):
    doc = invoices()[name]
    ours, public = fast(doc), fallback(doc)
    assert ours != public
    assert all(not n.startswith("/MPDFAA+") for n in base_fonts(ours))
    assert all(n.startswith("/MPDFAA+") for n in base_fonts(public))
    a, b = PdfReader(io.BytesIO(ours)), PdfReader(io.BytesIO(public))
    assert len(a.pages) == len(b.pages)
    for page_a, page_b in zip(a.pages, b.pages):
        assert page_a.extract_text() == page_b.extract_text()
        assert page_a.mediabox == page_b.mediabox
    assert pdf.pdf_text(ours) == pdf.pdf_text(public)
    assert a.metadata == b.metadata  # title, author, subject, creator, dates


def test_fallback_places_every_character_where_the_fast_path_does():
    """Not only the same text: each character in the same box (pdfium's
    reading of the pages, the engine of the console's page pictures)."""
    import pypdfium2

    doc = make_doc(40, status_note="DRAFT")

    def boxes(data):
        found = []
        document = pypdfium2.PdfDocument(data)
        for n in range(len(document)):
            text = document[n].get_textpage()
            for i in range(text.count_chars()):
                char = text.get_text_range(i, 1)
                if char.strip():
                    found.append((n, char, tuple(round(v, 1) for v in text.get_charbox(i))))
        return found

    ours = boxes(fast(doc))
    assert len(ours) > 2000 and ours == boxes(fallback(doc))


def test_fallback_is_deterministic_and_thread_safe():
    from concurrent.futures import ThreadPoolExecutor

    docs = [make_doc(5 + i, number=f"INV-F-{i}", customer=NAMES[i % 4]) for i in range(4)]
    pdf.use_fallback()
    expected = [pdf.render_invoice(d) for d in docs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(pdf.render_invoice, docs)) == expected


def test_only_fpdf_internals_touches_fpdf2_internals():
    """The other modules use fpdf2's public API: FPDF and its public methods."""
    folder = Path(pdf.__file__).parent
    for path in folder.glob("*.py"):
        if path.name == "fpdf_internals.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fpdf":
                assert node.module == "fpdf" and [a.name for a in node.names] == ["FPDF"], path.name
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "fpdf" for a in node.names), path.name
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "pdf":
                assert not node.attr.startswith("_"), f"{path.name}: pdf.{node.attr}"
    assert fpdf_public.add_fonts.__module__ == "tui_billing.pdf.fpdf_public" and FAMILY == "dejavu"
