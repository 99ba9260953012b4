"""Snapshots of each screen (pytest-textual-snapshot) at 80x24, and the queue
and the detail at 120x40.  Deterministic: fixed clock, demo seed 1.
Regenerate after an intended change with --snapshot-update."""
from __future__ import annotations

from tui_billing import statuses as S
from tui_billing.store.models import Correction, Invoice, TaxLine

from .conftest_console import console_env, console_template, make_app, settle  # noqa: F401


def detail_invoice() -> Invoice:
    """An invoice under review with taxes and corrections: every tab has rows."""
    return (Invoice.select()
            .where((Invoice.status == S.UNDER_REVIEW)
                   & Invoice.id.in_(TaxLine.select(TaxLine.invoice))
                   & Invoice.id.in_(Correction.select(Correction.invoice)))
            .order_by(Invoice.id).first())


def open_detail(invoice_id: int, *keys: str):
    async def run_before(pilot):
        await settle(pilot)
        pilot.app.open_invoice(invoice_id)
        await settle(pilot)
        if keys:
            await pilot.press(*keys)
            await settle(pilot)
    return run_before


def press(*keys: str):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press(*keys)
        await settle(pilot)
    return run_before


def test_snapshot_queue_80x24(snap_compare, console_env):
    assert snap_compare(make_app(console_env), terminal_size=(80, 24), run_before=press("space", "space"))


def test_snapshot_queue_120x40(snap_compare, console_env):
    assert snap_compare(make_app(console_env), terminal_size=(120, 40), run_before=press("space"))


def test_snapshot_finder_80x24(snap_compare, console_env):
    assert snap_compare(make_app(console_env), terminal_size=(80, 24), run_before=press("f3"))


def test_snapshot_detail_80x24(snap_compare, console_env):
    inv = detail_invoice()
    assert snap_compare(make_app(console_env), terminal_size=(80, 24), run_before=open_detail(inv.id))


def test_snapshot_detail_corrections_tab_120x40(snap_compare, console_env):
    inv = detail_invoice()
    assert snap_compare(make_app(console_env), terminal_size=(120, 40),
                        run_before=open_detail(inv.id, "n", "n", "n"))


def test_snapshot_adjust_modal_80x24(snap_compare, console_env):
    inv = detail_invoice()
    assert snap_compare(make_app(console_env), terminal_size=(80, 24),
                        run_before=open_detail(inv.id, "j", *"12.5x", "backspace", "tab", *"Porting fee"))


def test_snapshot_classes_80x24(snap_compare, console_env):
    assert snap_compare(make_app(console_env), terminal_size=(80, 24), run_before=press("f4", "down"))


def test_snapshot_help_80x24(snap_compare, console_env):
    assert snap_compare(make_app(console_env), terminal_size=(80, 24), run_before=press("f1"))


def test_snapshot_detail_changes_tab_80x24(snap_compare, console_env):
    """Flags section and the Changes tab (this invoice was reissued/adjusted since its review)."""
    inv = detail_invoice()
    assert snap_compare(make_app(console_env), terminal_size=(80, 24),
                        run_before=open_detail(inv.id, "n", "n", "n", "n", "n"))
