"""The console after the invoice is issued (issue 17): manual receipts in the
detail's Payments tab, the queue's overdue count, the ERP lines of the header."""

from __future__ import annotations

from textual.widgets import Static, TabbedContent

from tui_billing import statuses as S
from tui_billing.store.models import AuditEvent, Invoice, Payment
from tui_billing.store.settings import save_setting
from tui_billing.widgets.status_counts import StatusCounts

from .conftest_console import console_env, console_template, make_app, settle, show_detail  # noqa: F401


def run(coro):
    import asyncio

    asyncio.run(coro)


def footer_keys(screen) -> set[str]:
    return {b.action for _, b, enabled, _ in screen.active_bindings.values() if enabled and b.show}


def test_receipt_keys_act_on_the_highlighted_payment_of_the_payments_tab(console_env):
    pay = Payment.select().where(Payment.status == "completed").order_by(Payment.id).first()
    assert pay is not None, "the demo holds completed payments"
    inv = Invoice.get_by_id(pay.invoice_id)

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            detail = await show_detail(pilot, inv.id)
            assert "receipt('receipt_creating')" not in footer_keys(detail)  # not on the Charges tab
            await pilot.press("c")  # does nothing there
            await settle(pilot)
            assert Payment.get_by_id(pay.id).status == "completed"
            detail.query_one(TabbedContent).active = "tab-payments"
            await settle(pilot)
            keys = footer_keys(detail)
            assert "receipt('receipt_creating')" in keys and "receipt('receipt_sent')" not in keys
            await pilot.press("c")
            await settle(pilot)
            assert Payment.get_by_id(pay.id).status == "receipt_creating"
            keys = footer_keys(detail)  # only the step the highlighted payment can take
            assert "receipt('receipt_sent')" in keys and "receipt('receipt_creating')" not in keys
            await pilot.press("c")  # again: refused, with the reason in a toast; nothing changes
            await settle(pilot)
            assert Payment.get_by_id(pay.id).status == "receipt_creating"
            assert any("only a completed payment" in str(n.message) for n in app._notifications)
            await pilot.press("e")
            await settle(pilot)
            assert Payment.get_by_id(pay.id).status == "receipt_sent"
            events = AuditEvent.select().where(
                (AuditEvent.invoice == inv.id) & AuditEvent.action.in_(["receipt_creating", "receipt_sent"])
            )
            assert [e.actor for e in events] == ["alice", "alice"]

    run(scenario())


def test_the_queue_counts_overdue_invoices(console_env):
    overdue = Invoice.select().where(Invoice.status == S.OVERDUE).count()
    assert overdue, "the demo holds overdue invoices"

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            counts = app.screen.query_one(StatusCounts)
            assert f"{overdue:,} overdue" in str(counts.render())

    run(scenario())


def test_the_detail_header_shows_the_erp_lines_when_the_integration_is_on(console_env):
    inv = Invoice.select().where(Invoice.erp_reference.is_null(False)).order_by(Invoice.id).first()
    assert inv is not None
    save_setting("erp_integration", "on")

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            detail = await show_detail(pilot, inv.id)
            head = str(detail.query_one("#detail-head", Static).render())
            assert "External total" in head and inv.erp_reference in head
            assert "Approval date" in head

    run(scenario())


def test_the_finder_filters_by_payment_status(console_env):
    from textual.widgets import Select

    from tui_billing.widgets.invoice_table import InvoiceTable

    want = {
        i.number
        for i in Invoice.select(Invoice.number).where(
            Invoice.id.in_(Payment.select(Payment.invoice).where(Payment.status == "expired"))
        )
    }
    assert want, "the demo holds expired payments"

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("f3")
            await settle(pilot)
            finder = app.screen
            assert not finder.query("#f-error").first().display  # no error: no row for it
            finder.query_one("#f-payment", Select).value = "expired"
            await settle(pilot)
            table = finder.query_one(InvoiceTable)
            shown = {table.items[k].number for k in table.order}
            assert shown == want
            # The queue has no payment filter: its invoices have no payment yet.
            await pilot.press("f2")
            await settle(pilot)
            assert not app.screen.query("#f-payment")

    run(scenario())
