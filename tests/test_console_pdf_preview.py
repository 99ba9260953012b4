"""`p` in the console: the invoice's PDF as a picture where the terminal draws
one, as text where it cannot (screens/pdf_preview.py).  Real PDFs of the demo
store and of pdf.render_invoice, rasterised by pypdfium2; no mocks."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from pypdf import PdfReader
from textual.widgets import Static

from tui_billing import documents, pdf
from tui_billing import statuses as S
from tui_billing.screens.pdf_preview import PdfTextModal, picture_protocol, render_page
from tui_billing.store.models import Invoice

from .conftest_console import console_env, console_template, make_app, settle, show_detail  # noqa: F401
from .test_pdf import make_doc

ROOT = Path(__file__).resolve().parents[1]
A4 = (595.28, 841.89)  # points


def run(coro):
    import asyncio

    return asyncio.run(coro)


def text_of(widget) -> str:
    return " ".join(str(widget.render()).split())


def an_invoice() -> Invoice:
    return Invoice.select().where(Invoice.status == S.UNDER_REVIEW).order_by(Invoice.id).first()


def test_render_page_rasterises_a_real_invoice_at_the_asked_size():
    data = pdf.render_invoice(make_doc(200))  # several pages
    pages = len(PdfReader(io.BytesIO(data)).pages)
    assert pages >= 3
    first = render_page(data, 0, width=800)
    assert first.mode == "RGB" and abs(first.width - 800) <= 1
    assert abs(first.height - 800 * A4[1] / A4[0]) <= 2
    whole = render_page(data, pages - 1, width=800, height=400)  # the height limits: whole page
    assert abs(whole.height - 400) <= 1 and abs(whole.width - 400 * A4[0] / A4[1]) <= 2
    # a real page, not a blank bitmap: dark text on white paper
    colours = first.convert("L").getcolors(maxcolors=256 * 256)
    assert min(value for _, value in colours) < 80 and max(value for _, value in colours) == 255
    assert render_page(data, 1, width=800).tobytes() != first.tobytes()


def test_p_without_a_graphics_terminal_shows_the_text_then_t_a_picture(console_env):
    inv = an_invoice()
    data = documents.current_pdf(inv)
    text = pdf.pdf_text(data)

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            assert picture_protocol(app) == ""  # headless: never asks the terminal, no picture
            app.push_screen(PdfTextModal(f"{inv.number} · PDF text", text, pdf_bytes=data))
            await settle(pilot)
            modal = app.screen
            assert isinstance(modal, PdfTextModal) and modal.mode == "text"
            assert modal.query_one("#pdf-scroll").display and not modal.query_one("#pdf-pictures").display
            shown = text_of(modal.query_one("#pdf-text", Static))
            assert inv.number in shown and "Charges" in shown
            assert "t picture" in text_of(modal.query_one("#pdf-hint", Static))

            await pilot.press("t")  # the coarse picture (half blocks), rendered in a worker
            await settle(pilot)
            assert modal.mode == "picture" and not modal.query_one("#pdf-scroll").display
            image_widget = modal.query_one(".page-1")
            image = image_widget.image
            pictures = modal.query_one("#pdf-pictures")
            # as wide as the area less its scrollbar, at textual-image's 10 px a cell (headless)
            assert image.width == image_widget.size.width * 10
            assert image_widget.size.width == pictures.content_region.width - 2
            assert pictures.show_vertical_scrollbar and not pictures.show_horizontal_scrollbar
            assert abs(image.height - image.width * A4[1] / A4[0]) <= 2
            title = text_of(modal.query_one("#pdf-title", Static))
            assert f"{inv.number} · PDF · page 1 of 1" in title and "coarse" in title
            rendered = "".join(seg.text for line in image_widget.render_lines(image_widget.size.region) for seg in line)
            assert "▀" in rendered or "▄" in rendered  # drawn with half blocks

            await pilot.press("t")
            await settle(pilot)
            assert modal.mode == "text" and modal.query_one("#pdf-scroll").display
            await pilot.press("escape")
            await settle(pilot)
            assert not isinstance(app.screen, PdfTextModal)

    run(scenario())


def test_pgdn_pgup_and_z_move_between_pages_of_a_long_invoice(console_env):
    data = pdf.render_invoice(make_doc(200))
    count = len(PdfReader(io.BytesIO(data)).pages)

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            app.push_screen(PdfTextModal("INV-2026-000123 · PDF text", pdf.pdf_text(data), pdf_bytes=data))
            await settle(pilot)
            modal = app.screen
            await pilot.press("t")
            await settle(pilot)
            first = modal.query_one(".page-1").image
            assert f"page 1 of {count}" in text_of(modal.query_one("#pdf-title", Static))
            await pilot.press("pagedown")
            await settle(pilot)
            second = modal.query_one(".page-2").image
            assert second.tobytes() != first.tobytes() and not modal.query(".page-1")
            assert f"page 2 of {count}" in text_of(modal.query_one("#pdf-title", Static))
            await pilot.press("pageup", "pageup")  # stops at the first page
            await settle(pilot)
            assert modal.page == 0 and modal.query_one(".page-1")
            await pilot.press("pagedown", "pageup")  # back before page 2 was drawn: the title follows
            await settle(pilot)
            assert modal.page == 0 and modal.query_one(".page-1") and not modal.query(".page-2")
            assert f"page 1 of {count}" in text_of(modal.query_one("#pdf-title", Static))
            await pilot.press("z")  # the whole page fits the area's height
            await settle(pilot)
            whole = modal.query_one(".page-1").image
            area = modal.query_one("#pdf-pictures").content_region
            assert abs(whole.height - area.height * 20) <= 1 and whole.width < first.width
            assert "z page width" in text_of(modal.query_one("#pdf-hint", Static))

    run(scenario())


def test_p_on_the_detail_still_shows_the_pdf_text(console_env):
    inv = an_invoice()

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await show_detail(pilot, inv.id)
            await pilot.press("p")
            await settle(pilot)
            modal = app.screen
            assert isinstance(modal, PdfTextModal) and modal.mode == "text"
            assert inv.number in text_of(modal.query_one("#pdf-text", Static))

    run(scenario())


def test_pictures_can_be_switched_off_and_a_text_only_modal_has_no_picture_key(console_env, monkeypatch):
    monkeypatch.setenv("TUI_BILLING_PICTURES", "off")
    data = pdf.render_invoice(make_doc(3))

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert picture_protocol(app) == ""
            app.push_screen(PdfTextModal("text only", "some text"))
            await settle(pilot)
            modal = app.screen
            assert not modal.query("#pdf-pictures")
            assert "t picture" not in text_of(modal.query_one("#pdf-hint", Static))
            await pilot.press("t")
            await settle(pilot)
            assert modal.mode == "text"
            app.pop_screen()
            app.push_screen(PdfTextModal("with bytes", pdf.pdf_text(data), pdf_bytes=data))
            await settle(pilot)
            assert app.screen.mode == "text"

    run(scenario())


def test_the_console_and_the_cli_start_without_the_picture_libraries():
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "import tui_billing.cli, tui_billing.app, tui_billing.screens.actions, tui_billing.screens.pdf_preview\n"
        "heavy = lambda: sorted({m.split('.')[0] for m in sys.modules} & {'pypdfium2', 'textual_image', 'PIL'})\n"
        "print(heavy())\n"
        "from tui_billing import pdf\n"
        "from tests.test_pdf import make_doc\n"
        "tui_billing.screens.pdf_preview.render_page(pdf.render_invoice(make_doc(1)), 0, width=100)\n"
        "print(heavy())\n" % str(ROOT)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split("\n")[:2] == ["[]", "['PIL', 'pypdfium2']"]  # loaded when a page is drawn
