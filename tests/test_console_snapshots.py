"""Snapshots of each screen and dialog (pytest-textual-snapshot) at 80x24 and
120x40.  Deterministic: fixed clock, demo seed 1.
Regenerate after an intended change with --snapshot-update."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tui_billing import statuses as S
from tui_billing.store.models import Correction, Invoice, TaxLine

from .conftest_console import console_env, console_template, make_app, settle, show_detail  # noqa: F401


def detail_invoice() -> Invoice:
    """An invoice under review with taxes and corrections: every tab has rows."""
    return (
        Invoice.select()
        .where(
            (Invoice.status == S.UNDER_REVIEW)
            & Invoice.id.in_(TaxLine.select(TaxLine.invoice))
            & Invoice.id.in_(Correction.select(Correction.invoice))
        )
        .order_by(Invoice.id)
        .first()
    )


async def steady(pilot) -> None:
    """Settle, then stop the text cursor blinking, shown in the focused input
    only.  It blinks every 0.5 s after the last key: on a loaded machine the
    picture was taken on either side of a blink (CI saw it)."""
    await settle(pilot)
    for screen in pilot.app.screen_stack:
        for field in screen.query(Input):
            field.cursor_blink = False
            field._cursor_visible = field.has_focus
    await pilot.pause()
    # Then until two pictures in a row agree: on a machine loaded beyond its
    # cores a table under a dialog was once pictured before its rows painted.
    previous = None
    for _ in range(40):
        picture = pilot.app.export_screenshot()
        if picture == previous:
            return
        previous = picture
        await pilot.pause(0.05)


def open_detail(invoice_id: int, *keys: str):
    async def run_before(pilot):
        await settle(pilot)
        await show_detail(pilot, invoice_id)
        if keys:
            await pilot.press(*keys)
        await steady(pilot)

    return run_before


def press(*keys: str):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press(*keys)
        await steady(pilot)

    return run_before


SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])


@SIZES
def test_snapshot_queue(snap_compare, console_env, size):
    assert snap_compare(make_app(console_env), terminal_size=size, run_before=press("space", "down", "space"))


@SIZES
def test_snapshot_finder(snap_compare, console_env, size):
    assert snap_compare(make_app(console_env), terminal_size=size, run_before=press("f3"))


@SIZES
def test_snapshot_detail(snap_compare, console_env, size):
    inv = detail_invoice()
    assert snap_compare(make_app(console_env), terminal_size=size, run_before=open_detail(inv.id))


@SIZES
def test_snapshot_detail_corrections_tab(snap_compare, console_env, size):
    inv = detail_invoice()
    assert snap_compare(make_app(console_env), terminal_size=size, run_before=open_detail(inv.id, "n", "n", "n"))


@SIZES
def test_snapshot_detail_changes_tab(snap_compare, console_env, size):
    """Flags section and the Changes tab (this invoice was reissued/adjusted since its review)."""
    inv = detail_invoice()
    assert snap_compare(
        make_app(console_env), terminal_size=size, run_before=open_detail(inv.id, "n", "n", "n", "n", "n")
    )


@SIZES
def test_snapshot_adjust_modal(snap_compare, console_env, size):
    inv = detail_invoice()
    assert snap_compare(
        make_app(console_env),
        terminal_size=size,
        run_before=open_detail(inv.id, "j", *"12.5x", "backspace", "tab", *"Porting fee"),
    )


@SIZES
def test_snapshot_reissue_modal(snap_compare, console_env, size):
    assert snap_compare(make_app(console_env), terminal_size=size, run_before=press("space", "down", "space", "r"))


@SIZES
def test_snapshot_approve_confirm(snap_compare, console_env, size):
    assert snap_compare(make_app(console_env), terminal_size=size, run_before=press("M", "a"))


@SIZES
def test_snapshot_download_modal(snap_compare, console_env, size, monkeypatch):
    monkeypatch.chdir("/")  # the dialog proposes ./invoices: the same path on every machine
    assert snap_compare(make_app(console_env), terminal_size=size, run_before=press("d"))


@SIZES
def test_snapshot_classes(snap_compare, console_env, size):
    assert snap_compare(make_app(console_env), terminal_size=size, run_before=press("f4", "down"))


@SIZES
def test_snapshot_help(snap_compare, console_env, size):
    assert snap_compare(make_app(console_env), terminal_size=size, run_before=press("f1"))


@SIZES
def test_snapshot_outbox(snap_compare, console_env, size):
    assert snap_compare(make_app(console_env), terminal_size=size, run_before=press("f7"))
