"""Issue 13: the console and the CLI never do something other than what the
admin meant.  Amounts are read by one parser (money.parse_amount) and a
comma a decimal-comma reader would read differently is refused; the option
highlighted in a dialog is the option applied; what a dialog or a dry run
says would happen comes from the domain's previews (workflow.preview_*)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from textual.widgets import Input, Static

from tui_billing import statuses as S
from tui_billing import workflow
from tui_billing.screens.adjust import AdjustModal, AdjustTarget
from tui_billing.screens.reissue import ReissueModal
from tui_billing.screens.summary import SummaryModal
from tui_billing.store.models import AuditEvent, Correction, Invoice

from . import factories as F
from .conftest_console import console_env, console_template, make_app, open_dialog, settle  # noqa: F401


def run(coro):
    import asyncio

    return asyncio.run(coro)


def text_of(widget) -> str:
    return " ".join(str(widget.render()).split())


def under_review(currency: str | None = None) -> Invoice:
    query = Invoice.select().where((Invoice.status == S.UNDER_REVIEW) & (Invoice.kind == "regular"))
    if currency:
        query = query.where(Invoice.currency == currency)
    return query.order_by(Invoice.id).first()


# -- 1. amounts: a decimal comma is refused under the field, Ctrl+S books nothing


@pytest.mark.parametrize("typed", ["1,5", "12,50", "1.234,50"])
def test_adjust_dialog_refuses_a_decimal_comma_and_books_nothing(console_env, typed):
    inv = under_review("PLN") or under_review()
    corrections, audits = Correction.select().count(), AuditEvent.select().count()

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            modal = await open_dialog(pilot, inv.id, "j")
            assert isinstance(modal, AdjustModal)
            await pilot.press(*typed)
            await pilot.pause()
            error = text_of(modal.query_one("#adj-amount-error", Static))
            assert f"'{typed}' looks like a decimal comma; type" in error, error
            assert modal.query_one("#adj-amount", Input).has_class("-invalid")
            # The new total is not shown as if 15 (or 1,250) had been typed.
            assert text_of(modal.query_one("#adj-new-total", Static)).startswith(f"{inv.total:,.2f} ")
            await pilot.press("tab", *"Rabat")
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert app.screen is modal  # the dialog stays, nothing submitted
            assert "looks like a decimal comma" in text_of(modal.query_one("#adj-amount-error", Static))

    run(scenario())
    assert Correction.select().count() == corrections and AuditEvent.select().count() == audits
    after = Invoice.get_by_id(inv.id)
    assert (after.total, after.revision) == (inv.total, inv.revision)


# -- 2. choices: the highlighted option is the one applied ------------------------


def test_reissue_dialog_down_then_ctrl_s_reissues_now(console_env):
    inv = under_review()

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            modal = await open_dialog(pilot, inv.id, "r")
            assert isinstance(modal, ReissueModal)
            await pilot.press("down")  # the highlight moves to "Now": so does the choice
            assert modal.mode() == "now"
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert isinstance(app.screen, SummaryModal)

    run(scenario())
    after = Invoice.get_by_id(inv.id)
    assert after.status == S.UNDER_REVIEW and after.reissue_mode is None  # reissued at once, not queued
    assert after.revision == inv.revision + 1
    actions = [
        a
        for (a,) in AuditEvent.select(AuditEvent.action)
        .where(AuditEvent.invoice == inv.id)
        .order_by(AuditEvent.id)
        .tuples()
    ]
    assert actions[-2:] == ["request_reissue", "reissue"]


def test_reissue_dialog_up_and_down_follow_the_highlight(console_env):
    inv = under_review()

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            modal = await open_dialog(pilot, inv.id, "r")
            assert modal.mode() == "off_peak"
            await pilot.press("down", "up")
            assert modal.mode() == "off_peak"
            await pilot.press("down", "down")  # wraps round to the first
            assert modal.mode() == "off_peak"
            await pilot.press("up")
            assert modal.mode() == "now"
            await pilot.press("escape")
            await settle(pilot)

    run(scenario())
    assert Invoice.get_by_id(inv.id).status == S.UNDER_REVIEW


def test_adjust_dialog_down_to_manual_charge_books_a_charge(console_env):
    inv = under_review("EUR")
    expected = workflow.preview_adjust(inv.id, "charge", "12.50").after  # with its tax, if taxed

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            modal = await open_dialog(pilot, inv.id, "j")
            await pilot.press("shift+tab")  # from the amount back to the type
            await pilot.press("down")  # highlight "Manual charge": it is the choice
            assert modal.kind() == "charge"
            await pilot.press("tab", *"12.50", "tab", *"On-site support")
            await pilot.pause()
            total = text_of(modal.query_one("#adj-new-total", Static))
            assert total.startswith(f"{expected:,.2f} EUR") and "▲ 12.50 net" in total
            # The tax the charge brings is shown, and it is what the domain books.
            tax = workflow.preview_adjust(inv.id, "charge", "12.50").tax
            assert (f"tax {tax:,.2f})" if tax else "no tax)") in total
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert not isinstance(app.screen, AdjustModal)

    run(scenario())
    corr = Correction.select().where(Correction.invoice == inv.id).order_by(Correction.id.desc()).first()
    assert corr.kind == "manual_charge" and corr.amount == Decimal("12.50")
    assert Invoice.get_by_id(inv.id).total == expected  # what the dialog showed is what was booked
    assert Invoice.get_by_id(inv.id).total == expected


# -- 3. previews from the domain ---------------------------------------------------


def test_reissue_dialog_text_comes_from_the_domain_preview(console_env):
    fresh = under_review()
    sent = Invoice.select().where(Invoice.status == S.APPROVED).order_by(Invoice.id).first()

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            app.push_screen(
                ReissueModal(2, [fresh.number, sent.number], "opens Sat 21 Nov 01:00", ids=[fresh.id, sent.id])
            )
            await settle(pilot)
            modal = app.screen
            note = text_of(modal.query_one("#reissue-note", Static))
            assert "1 invoice stays Rejected until the window opens Sat 21 Nov 01:00" in note, note
            assert f"1 refused: {sent.number} is already approved" in note
            await pilot.press("down")
            await settle(pilot)
            note = text_of(modal.query_one("#reissue-note", Static))
            assert "1 invoice recalculated at once" in note and "1 refused" in note, note
            await pilot.press("escape")
            await settle(pilot)

    run(scenario())
    assert Invoice.get_by_id(fresh.id).status == S.UNDER_REVIEW


def test_preview_adjust(store_url):
    inv = F.invoice(total=Decimal("100.00"))
    p = workflow.preview_adjust(inv.number, "credit", "12.5")
    assert p.applies and (p.number, p.currency, p.amount) == (inv.number, "EUR", Decimal("12.50"))
    assert (p.before, p.correction, p.after) == (Decimal("100.00"), Decimal("-12.50"), Decimal("87.50"))
    p = workflow.preview_adjust(inv.id, "charge", Decimal("1"))
    assert p.applies and p.after == Decimal("101.00") and p.correction == Decimal("1.00")
    # Refusals: a field (bad input) or the invoice's state; never an exception.
    p = workflow.preview_adjust(inv.number, "credit", "100.01")
    assert not p.applies and p.field == "amount" and "would make" in p.reason and p.after is None
    p = workflow.preview_adjust(inv.number, "credit", "1,5")
    assert p.field == "amount" and "looks like a decimal comma" in p.reason
    p = workflow.preview_adjust(inv.number, "refund", "1")
    assert p.field == "kind"
    p = workflow.preview_adjust(inv.number, "charge", "1", description="  ")
    assert p.field == "description" and p.reason == "is required"
    sent = F.invoice(status=S.APPROVED)
    p = workflow.preview_adjust(sent.number, "charge", "1")
    assert not p.applies and p.field is None and p.reason == workflow.CHANGE_REFUSALS[S.APPROVED]
    with pytest.raises(workflow.NotFound):
        workflow.preview_adjust("NOPE-1", "charge", "1")
    # The console's target as already read: no store read for each key typed.
    target = AdjustTarget(inv.id, inv.number, "Zoë", "EUR", Decimal("100.00"), S.UNDER_REVIEW)
    assert workflow.preview_adjust(target, "credit", "100").after == Decimal("0.00")
    # The real adjust refuses with the preview's very words.
    with pytest.raises(workflow.BadInput, match="would make"):
        workflow.adjust(workflow.Ctx(actor="t"), inv.id, "credit", Decimal("100.01"), "x")
    assert Correction.select().count() == 0 and AuditEvent.select().count() == 0


def test_preview_reissue(store_url, clock):
    fresh = F.invoice()
    waiting = F.invoice(status=S.REJECTED, reissue_mode="off_peak")
    sent = F.invoice(status=S.APPROVED)
    note = F.invoice(kind="manual")
    refs = [fresh.number, waiting.id, sent.number, note.number, "NOPE-1", fresh.id]
    p = workflow.preview_reissue(refs, "off_peak", clock=clock)
    assert p.mode == "off_peak" and p.now == [] and p.queued == [fresh.number, waiting.number]
    assert p.window_opens == clock.to_utc(clock.local().replace(hour=1, minute=0) + dt.timedelta(days=1))
    assert p.refused == [
        (sent.number, "is already approved: it can no longer be reissued"),
        (note.number, "is not a regular invoice: only regular invoices are reviewed"),
        ("NOPE-1", "does not exist"),
    ]
    assert not p.all_apply and p.ids == [fresh.id, waiting.id]
    p = workflow.preview_reissue([fresh.id, waiting.id], "now", clock=clock)
    assert p.now == [fresh.number, waiting.number] and p.queued == [] and p.window_opens is None and p.all_apply
    with pytest.raises(workflow.BadInput):
        workflow.preview_reissue([fresh.id], "tonight", clock=clock)
    assert AuditEvent.select().count() == 0
    assert Invoice.get_by_id(fresh.id).status == S.UNDER_REVIEW
