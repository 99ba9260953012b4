"""Invoice PDFs: real documents rendered and read back with pypdf."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont
from pypdf import PdfReader

from tui_billing import pdf
from tui_billing.money import format_amount

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["Zoë Łukasiewicz", "Ōsaka Trading KK", "Müller & Söhne GmbH", "Ærøskøbing Fiskeri ApS"]


def make_doc(
    lines: int = 30,
    *,
    taxes: tuple[pdf.TaxRow, ...] | None = None,
    number: str = "INV-2026-000123",
    customer: str = "Zoë Łukasiewicz",
    **changes,
) -> pdf.InvoiceDocument:
    charges = tuple(
        pdf.ChargeRow(
            i,
            f"Line {i:04d} {NAMES[i % 4]} storage €",
            Decimal(i % 9 + 1) / Decimal(8),
            Decimal("2.00") if i % 3 == 0 else Decimal(0),
            Decimal(10 * i) + Decimal("0.50"),
        )
        for i in range(1, lines + 1)
    )
    if taxes is None:
        taxes = (pdf.TaxRow(1, "VAT 19 %", "Umsatzsteuer", Decimal("19.00")),)
    corrections = (
        pdf.CorrectionRow(1, "Goodwill credit", Decimal("-12.00"), datetime(2026, 3, 2, 9, 15, tzinfo=UTC)),
        pdf.CorrectionRow(2, "Late fee", Decimal("12.00"), None),
    )
    subtotal = sum(c.amount for c in charges)
    discount = sum(c.discount for c in charges)
    tax = sum(t.amount for t in taxes)
    doc = pdf.InvoiceDocument(
        number=number,
        currency="EUR",
        seller=pdf.Party("Ōsaka Trading KK", ("2-1 Umeda, Kita-ku", "Ōsaka 530-0001, Japan")),
        customer=pdf.Party(customer, ("ul. Długa 5", "00-238 Warszawa", "zoe@example.pl")),
        issue_date=date(2026, 4, 1),
        due_date=date(2026, 4, 27),
        period_from=date(2026, 3, 1),
        period_to=date(2026, 3, 31),
        payment_terms="Net 26 days",
        charges=charges,
        taxes=taxes,
        corrections=corrections,
        subtotal=subtotal,
        discount_total=discount,
        tax_total=tax,
        correction_total=Decimal(0),
        total=subtotal - discount + tax,
    )
    return dataclasses.replace(doc, **changes) if changes else doc


def flat(text: str) -> str:
    """Whitespace-insensitive view (wrapped lines join with one space)."""
    return " ".join(text.split())


def pages_text(data: bytes) -> list[str]:
    return [page.extract_text() for page in PdfReader(io.BytesIO(data)).pages]


@pytest.fixture(scope="module")
def doc30() -> pdf.InvoiceDocument:
    return make_doc(30)


@pytest.fixture(scope="module")
def pdf30(doc30) -> bytes:
    return pdf.render_invoice(doc30)


# -- content ------------------------------------------------------------------


def test_is_a4_pdf_with_embedded_unicode_font(pdf30):
    assert pdf30.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf30))
    box = reader.pages[0].mediabox
    assert (round(float(box.width) * 25.4 / 72), round(float(box.height) * 25.4 / 72)) == (210, 297)
    fonts = reader.pages[0]["/Resources"]["/Font"]
    base_fonts = sorted(str(f.get_object()["/BaseFont"]).split("+")[1] for f in fonts.values())
    assert base_fonts == ["DejaVuSansBold", "DejaVuSansBook"]
    for f in fonts.values():
        composite = f.get_object()
        assert (composite["/Type"], composite["/Subtype"], composite["/Encoding"]) == ("/Font", "/Type0", "/Identity-H")
        assert b"beginbfchar" in composite["/ToUnicode"].get_object().get_data()
        descendant = composite["/DescendantFonts"][0].get_object()
        assert (descendant["/Subtype"], descendant["/CIDToGIDMap"]) == ("/CIDFontType2", "/Identity")
        assert descendant["/BaseFont"] == composite["/BaseFont"] == descendant["/FontDescriptor"]["/FontName"]
        info = descendant["/CIDSystemInfo"].get_object()
        assert (info["/Registry"], info["/Ordering"], info["/Supplement"]) == ("Adobe", "UCS", 0)
        descriptor = descendant["/FontDescriptor"].get_object()
        assert descriptor["/Type"] == "/FontDescriptor" and descriptor["/Ascent"] > 0 > descriptor["/Descent"]
        assert len(descriptor["/FontBBox"]) == 4
        stream = descriptor["/FontFile2"].get_object()
        program = stream.get_data()
        assert stream["/Length1"] == len(program)
        widths = descendant["/W"]  # one width per character id; composite parts may follow in the font
        assert widths[0] == 0 and 30 < len(widths[1]) <= TTFont(io.BytesIO(program))["maxp"].numGlyphs
        # the hand-made subset is a valid TrueType font (checksums right) whose glyphs all decompile
        tt = TTFont(io.BytesIO(program), checkChecksums=2)
        assert (
            sum(int.from_bytes(program[i : i + 4].ljust(4, b"\0"), "big") for i in range(0, len(program), 4))
            & 0xFFFFFFFF
            == 0xB1B0AFBA
        )
        assert "Bitstream" in tt["name"].getDebugName(0)
        glyf = tt["glyf"]
        assert tt["maxp"].numGlyphs == len(tt["hmtx"].metrics) == len(glyf.glyphOrder) > 30
        for name in glyf.glyphOrder:
            glyf[name].expand(glyf)
        assert glyf[glyf.glyphOrder[0]].numberOfContours != 0  # .notdef box kept


def test_text_has_number_descriptions_total_and_unicode(doc30, pdf30):
    text = pdf.pdf_text(pdf30)
    joined = flat(text)
    assert doc30.number in joined
    for charge in doc30.charges:
        assert flat(charge.description) in joined, charge.description
    assert f"€ {format_amount(doc30.total, 'EUR')}" in joined
    for needle in (
        "Zoë Łukasiewicz",
        "Ōsaka Trading KK",
        "Müller & Söhne GmbH",
        "ul. Długa 5",
        "€",
        "Goodwill credit Credit -12.00",
        "Late fee Charge 12.00",
        "Net 26 days",
        "2026-04-01",
        "2026-04-27",
        "2026-03-01 – 2026-03-31",
        "please pay by 2026-04-27",
    ):
        assert needle in joined, needle
    assert "Page 1 of 2" in joined and "Page 2 of 2" in joined
    assert "\ufffd" not in text and "?" not in text


def test_quantity_up_to_three_decimals():
    doc = make_doc(3)
    doc = dataclasses.replace(
        doc,
        charges=(
            pdf.ChargeRow(1, "Fraction", Decimal("0.33333"), Decimal(0), Decimal("1.00")),
            pdf.ChargeRow(2, "Whole", Decimal("12"), Decimal(0), Decimal("1.00")),
            pdf.ChargeRow(3, "Thousands", Decimal("1234.5"), Decimal(0), Decimal("1.00")),
        ),
    )
    joined = flat(pdf.pdf_text(pdf.render_invoice(doc)))
    assert "Fraction 0.333 " in joined
    assert "Whole 12 " in joined
    assert "Thousands 1,234.5 " in joined


def test_taxes_table_only_when_there_are_taxes():
    without = flat(pdf.pdf_text(pdf.render_invoice(make_doc(5, taxes=()))))
    assert "Umsatzsteuer" not in without and "# Tax" not in without and "Refund" not in without
    assert "Taxes 0.00" in without  # the totals line stays

    refund = pdf.TaxRow(2, "VAT correction", "Over-charged VAT in March", Decimal("-3.10"))
    with_taxes = flat(pdf.pdf_text(pdf.render_invoice(make_doc(5, taxes=(make_doc(1).taxes[0], refund)))))
    assert "# Tax Description Type Amount" in with_taxes
    assert "1 VAT 19 % Umsatzsteuer Tax 19.00" in with_taxes
    assert "2 VAT correction Over-charged VAT in March Refund -3.10" in with_taxes


def test_a_draft_is_marked_and_the_revision_is_not_shown():
    doc = make_doc(3, status_note="DRAFT – under review", revision=3)
    joined = flat(pdf.pdf_text(pdf.render_invoice(doc)))
    assert "DRAFT — not yet issued" in joined
    assert "Revision" not in joined and "under review" not in joined
    plain = flat(pdf.pdf_text(pdf.render_invoice(make_doc(3))))
    assert "DRAFT" not in plain and "not yet issued" not in plain


def test_long_description_is_wrapped_and_cut_not_overflowing():
    words = " ".join(f"word{i:03d}" for i in range(200))
    unbroken = "X" * 400
    doc = make_doc(2)
    doc = dataclasses.replace(
        doc,
        charges=(
            pdf.ChargeRow(1, words, Decimal(1), Decimal(0), Decimal("1.00")),
            pdf.ChargeRow(2, unbroken, Decimal(1), Decimal(0), Decimal("2.00")),
        ),
    )
    data = pdf.render_invoice(doc)
    text = pdf.pdf_text(data)
    assert "word000 word001" in text and "word199" not in text and "…" in text
    assert unbroken not in text and "XXXXXXXXXX" in text
    # every drawn string starts inside the page and none is wider than the page
    reader = PdfReader(io.BytesIO(data))
    spans = []
    reader.pages[0].extract_text(visitor_text=lambda t, cm, tm, font, size: spans.append((t, tm[4], size)))
    width_pt = float(reader.pages[0].mediabox.width)
    for t, x, _size in spans:
        assert 0 <= x < width_pt, t
    longest = max(len(t.strip()) for t, _, _ in spans)
    assert longest < 120  # a 400-char word was split over lines, not drawn in one piece


def test_missing_glyphs_are_replaced_visibly_not_dropped():
    doc = make_doc(1, customer="大阪 Trading\x00\tKK")
    text = pdf.pdf_text(pdf.render_invoice(doc))
    assert "\ufffd\ufffd Trading KK" in text


def test_500_lines_span_pages_with_header_on_every_page():
    doc = make_doc(500)
    data = pdf.render_invoice(doc)
    texts = pages_text(data)
    assert len(texts) >= 8
    for n, page in enumerate(texts, 1):
        assert "Description" in page, n
        assert f"Page {n} of {len(texts)}" in page
        assert doc.number in page
    joined = flat("\n".join(texts))
    for charge in doc.charges:
        assert charge.description in joined
    assert "Charges (continued)" in texts[1]


def test_same_document_same_bytes_even_in_another_process(doc30, pdf30):
    assert pdf.render_invoice(doc30) == pdf30
    assert pdf.render_invoice(make_doc(30, number="INV-2026-000124")) != pdf30
    script = (
        "import sys, hashlib; sys.path[:0] = [%r, %r]\n"
        "from test_pdf import make_doc\n"
        "from tui_billing import pdf\n"
        "print(hashlib.sha256(pdf.render_invoice(make_doc(30))).hexdigest())\n"
    ) % (str(ROOT), str(Path(__file__).parent))
    digests = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    import hashlib

    assert digests == {hashlib.sha256(pdf30).hexdigest()}


def test_four_threads_render_the_same_bytes_as_one():
    docs = [make_doc(20 + i, number=f"INV-T-{i}", customer=NAMES[i % 4]) for i in range(12)]
    expected = [pdf.render_invoice(d) for d in docs]
    pdf.render._FONTS = None  # the threads also race to parse the fonts on first use
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            assert list(pool.map(pdf.render_invoice, docs)) == expected


# -- file names and files -------------------------------------------------------

HOSTILE = [
    "../../etc/passwd",
    "/abs",
    "/",
    "a/b",
    "a\\b",
    "..",
    ".",
    "...",
    "con",
    "CON",
    "nul.pdf",
    "LPT1",
    "",
    " ",
    "\t",
    "\x00",
    "a\x00b",
    "x" * 300,
    ".hidden",
    "INV 1",
    "INV-1",
    "inv-1",
    "Ünïcödé",
    "C:\\Windows\\evil",
    "a..b",
    "trailing.",
    "~",
    "INV-1~0123456789ab",
]


def test_safe_filename_is_readable_and_never_a_path():
    assert pdf.safe_filename("INV-2026-000123") == "INV-2026-000123.pdf"
    for number in HOSTILE:
        name = pdf.safe_filename(number)
        assert name.endswith(".pdf")
        assert "/" not in name and "\\" not in name and "\x00" not in name
        assert not name.startswith(".") and name not in (".pdf", "..pdf")
        assert len(name.encode()) <= 255
        assert name.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL", "LPT1", "COM1"}
        assert all(c.isascii() and (c.isalnum() or c in "._-~") for c in name), name
    assert len({pdf.safe_filename(n) for n in HOSTILE}) == len(HOSTILE)
    # distinct even where case-insensitive file systems fold case
    assert len({pdf.safe_filename(n).lower() for n in HOSTILE}) == len(HOSTILE)
    assert pdf.safe_filename("a/b") != pdf.safe_filename("a_b")


def test_write_pdfs_stays_inside_directory(tmp_path, pdf30):
    outside_before = set(tmp_path.iterdir())
    target = tmp_path / "out"
    items = [(number, pdf30 + number.encode("utf-8", "surrogatepass")) for number in HOSTILE]
    paths = pdf.write_pdfs(items, target)
    assert len(paths) == len(HOSTILE) == len(set(paths))
    root = target.resolve()
    for path, (_, data) in zip(paths, items):
        assert path.resolve().parent == root
        assert path.read_bytes() == data
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in paths)  # no temp files left
    assert set(tmp_path.iterdir()) - outside_before == {target}
    assert not (tmp_path / "etc").exists() and not Path("/abs.pdf").exists()


def test_write_pdfs_duplicates_and_symlinks(tmp_path, pdf30):
    assert len(pdf.write_pdfs([("INV-1", pdf30), ("INV-1", pdf30)], tmp_path)) == 1
    with pytest.raises(ValueError):
        pdf.write_pdfs([("INV-2", pdf30), ("INV-2", pdf30 + b"x")], tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("keep")
    (tmp_path / "INV-3.pdf").symlink_to(secret)
    with pytest.raises(ValueError):
        pdf.write_pdfs([("INV-3", pdf30)], tmp_path)
    assert secret.read_text() == "keep"


def test_merge_pdfs_has_all_pages_and_an_outline_entry_per_invoice(tmp_path):
    docs = [make_doc(3, number="INV-A"), make_doc(120, number="INV-B/2"), make_doc(4, number="INV-Ç")]
    items = [(d.number, pdf.render_invoice(d)) for d in docs]
    counts = [len(PdfReader(io.BytesIO(data)).pages) for _, data in items]
    assert counts[1] > 1
    target = pdf.merge_pdfs(items, tmp_path / "all.pdf")
    assert target == tmp_path / "all.pdf" and [p.name for p in tmp_path.iterdir()] == ["all.pdf"]
    reader = PdfReader(str(target))
    assert len(reader.pages) == sum(counts)
    outline = reader.outline
    assert [item.title for item in outline] == ["INV-A", "INV-B/2", "INV-Ç"]
    starts = [reader.get_destination_page_number(item) for item in outline]
    assert starts == [0, counts[0], counts[0] + counts[1]]
    assert "INV-B/2" in reader.pages[starts[1]].extract_text()
    with pytest.raises(ValueError):
        pdf.merge_pdfs([], tmp_path / "none.pdf")


def test_pdf_text_covers_all_pages():
    doc = make_doc(200)
    text = pdf.pdf_text(pdf.render_invoice(doc))
    assert "Line 0001" in text and "Line 0200" in text and f"€ {format_amount(doc.total, 'EUR')}" in text


def test_module_does_not_import_ui_or_database():
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, %r); import tui_billing.pdf; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'peewee')))" % str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_empty_charges_and_no_corrections():
    doc = dataclasses.replace(
        make_doc(1, taxes=()),
        charges=(),
        corrections=(),
        subtotal=Decimal(0),
        discount_total=Decimal(0),
        total=Decimal(0),
    )
    joined = flat(pdf.pdf_text(pdf.render_invoice(doc)))
    assert "# Description Quantity Discount Amount No charges for this period" in joined
    assert "Adjustments #" not in joined and "Adjustments 0.00" in joined
    assert "Total (EUR) € 0.00" in joined and "Nothing to pay" in joined


# -- the package ------------------------------------------------------------------

# Each module of tui_billing/pdf/ may import only the ones before it here: no
# cycles, and the fpdf2 internals reachable from render.py alone (lazily).
PACKAGE_ORDER = [
    "model",
    "fonts",
    "measure",
    "layout",
    "paint",
    "fpdf_public",
    "fpdf_internals",
    "render",
    "files",
    "text",
    "pool",
    "__init__",
]


def test_package_modules_import_only_the_modules_below_them():
    import ast

    folder = ROOT / "tui_billing" / "pdf"
    assert sorted(p.stem for p in folder.glob("*.py")) == sorted(PACKAGE_ORDER)
    for n, name in enumerate(PACKAGE_ORDER):
        tree = ast.parse((folder / f"{name}.py").read_text())
        used = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                used.update([node.module] if node.module else [a.name for a in node.names])
        below = set(PACKAGE_ORDER[:n])
        assert used <= below, f"{name}.py imports {sorted(used - below)} from above it"
    render = (folder / "render.py").read_text()
    assert "from . import fpdf_internals" not in render and "from .fpdf_internals" not in render
