"""The console driven with Textual's Pilot at 80x24 against a real SQLite
store (no mocks): find, detail tabs, approve, adjust, reissue."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from textual.widgets import Input, Select, Static, TabbedContent

from tui_billing import risk, workflow
from tui_billing import statuses as S
from tui_billing.risk import is_flagged
from tui_billing.screens.adjust import AdjustModal
from tui_billing.screens.confirm import ConfirmModal
from tui_billing.screens.detail import InvoiceDetailScreen
from tui_billing.screens.finder import FinderScreen
from tui_billing.screens.invoice_list import PAGE
from tui_billing.screens.queue import QueueScreen
from tui_billing.screens.reissue import ReissueModal
from tui_billing.screens.summary import SummaryModal
from tui_billing.store.models import AuditEvent, Correction, Invoice, TaxLine
from tui_billing.widgets.invoice_table import InvoiceTable

from .conftest_console import console_env, console_template, make_app, settle, show_detail  # noqa: F401


def run(coro):
    import asyncio

    return asyncio.run(coro)


def text_of(widget) -> str:
    """What a widget shows on screen, whitespace folded."""
    return " ".join(" ".join(s.text.rstrip() for s in widget.render_lines(widget.region.reset_offset)).split())


async def move_to(pilot, table: InvoiceTable, predicate, limit: int = 200):
    """Move the cursor down to the next row satisfying predicate."""
    for _ in range(limit):
        row = table.current_row()
        if row is not None and predicate(row):
            return row
        await pilot.press("down")
    raise AssertionError("no such row")


# ---------------------------------------------------------------------------


def test_queue_is_first_screen_sorted_by_deadline(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert isinstance(app.screen, QueueScreen)
            await pilot.press("s")  # risk first is the default (issue #7); s: by review deadline
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            rows = [table.items[k] for k in table.order]
            assert rows and {r.status for r in rows} <= {S.UNDER_REVIEW, S.REJECTED}
            deadlines = [r.review_deadline for r in rows]
            assert deadlines == sorted(deadlines)
            expected = Invoice.select().where(Invoice.status.in_([S.UNDER_REVIEW, S.REJECTED])).count()
            assert len(rows) == min(expected, PAGE)
            counts = str(app.screen.query_one("#counts", Static).render())
            assert f"Under review {Invoice.select().where(Invoice.status == S.UNDER_REVIEW).count()}" in counts

    run(scenario())


def test_find_filter_open_detail_visit_every_tab(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("f3")
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, FinderScreen)
            # No account-type column (seed 001), but the filter exists.
            table = screen.query_one(InvoiceTable)
            assert "account_type" not in {c.key for c in table.specs}
            screen.query_one("#f-status", Select).value = S.PAID
            await settle(pilot)
            screen.query_one("#f-type", Select).value = "business"
            await settle(pilot)
            rows = [table.items[k] for k in table.order]
            assert rows and all(r.status == S.PAID and r.account_type == "business" for r in rows)
            # Enter opens the detail of the row under the cursor.
            table.focus()
            number = table.current_row().number
            await pilot.press("enter")
            await settle(pilot)
            detail = app.screen
            assert isinstance(detail, InvoiceDetailScreen)
            assert detail.detail.invoice.number == number
            head = str(detail.query_one("#detail-head", Static).render())
            for label in (
                "Invoice number",
                "Account",
                "Total",
                "Payment model",
                "Status",
                "From",
                "To",
                "Review deadline",
                "Revision",
            ):
                assert label in head
            assert "External total" not in head  # ERP integration is off
            tabs = detail.query_one(TabbedContent)
            panes = [p.id for p in tabs.query("TabPane")]
            has_taxes = has_tax_lines(detail.detail.invoice.id)
            assert ("tab-taxes" in panes) == has_taxes
            assert panes[:4] == ["tab-charges", "tab-subscriptions", "tab-payments", "tab-corrections"]
            # Audit last, or the Flags tab after it when the invoice has flags.
            assert panes[-1] == ("tab-flags" if detail.detail.flags else "tab-audit")
            assert "tab-audit" in panes[-2:]
            visited = []
            for i in range(len(panes)):
                if i:
                    await pilot.press("n")
                    await pilot.pause()
                visited.append(tabs.active)
                for table_in_tab in detail.query_one(f"#{tabs.active}").query("DataTable"):
                    # Tables inside tab panes get a real height (a known Textual sizing trap).
                    assert table_in_tab.size.height >= min(table_in_tab.row_count + 1, 5), tabs.active
            assert visited == panes
            # A paid invoice is closed: its payments are listed.
            assert detail.query_one("#payments-table").row_count >= 1
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, FinderScreen)

    run(scenario())


def has_tax_lines(invoice_id: int) -> bool:
    return TaxLine.select().where(TaxLine.invoice == invoice_id).exists()


async def finder_built(pilot, rounds: int = 200) -> FinderScreen:
    """Wait until the console built the finder in the background (after the queue's first page)."""
    app = pilot.app
    for _ in range(rounds):
        stack = app._screen_stacks.get("finder")
        if stack and stack[0].is_mounted:
            await settle(pilot)
            return stack[0]
        await pilot.pause(0.02)
    raise AssertionError("the finder was not built in the background")


def test_f3_switches_to_a_finder_built_in_the_background_and_loads_it_then(console_env):
    """F3 used to build the finder's screen first (a quarter of a second at any size of
    store); the console builds it while the queue is read. It is loaded when shown, as
    of then: an invoice changed after it was built is where it belongs."""

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            finder = await finder_built(pilot)
            assert isinstance(app.screen, QueueScreen)
            assert finder.generation == 0 and not finder.table.row_count  # nothing read yet
            newest = Invoice.select().order_by(Invoice.issue_date.desc(), Invoice.id.desc()).first()
            oldest = Invoice.select().order_by(Invoice.issue_date, Invoice.id).first()
            Invoice.update(issue_date=newest.issue_date + dt.timedelta(days=1)).where(Invoice.id == oldest.id).execute()
            await pilot.press("f3")
            await settle(pilot)
            assert app.screen is finder
            assert finder.table.current_row().number == oldest.number
            assert finder.table.row_count == PAGE

    run(scenario())


def test_a_theme_changed_before_f3_styles_the_finder_built_in_the_background(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            finder = await finder_built(pilot)
            queue = app.screen
            before = finder.table.styles.background
            await pilot.press("f9")
            await settle(pilot)
            await pilot.press("f3")
            await settle(pilot)
            assert finder.table.styles.background == queue.table.styles.background != before

    run(scenario())


def test_the_footer_rebuilds_its_keys_only_when_they_change(console_env):
    """Textual's footer rebuilt every key on each bindings update (three times for F3)."""
    from textual.widgets._footer import FooterKey

    from tui_billing.widgets.footer import Footer

    def descriptions(footer) -> list[str]:
        return [k.description for k in footer.query(FooterKey)]

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            footer = app.screen.query_one(Footer)
            keys = list(footer.query(FooterKey))
            assert "Mark ↓" in descriptions(footer)  # the table's key: it has the focus
            await pilot.press("down", "down", "up")
            app.screen.refresh_bindings()
            await settle(pilot)
            assert list(footer.query(FooterKey)) == keys  # the same keys: not rebuilt
            await pilot.press("slash")  # the filter bar takes the focus: the table's keys go
            await settle(pilot)
            assert "Mark ↓" not in descriptions(footer) and "Filter" in descriptions(footer)
            await pilot.press("escape")
            await settle(pilot)
            assert "Mark ↓" in descriptions(footer)

    run(scenario())


def test_taxes_tab_absent_and_payments_hidden_for_open_postpay(console_env):
    no_tax = Invoice.select().where(Invoice.id.not_in(TaxLine.select(TaxLine.invoice))).order_by(Invoice.id).first()
    open_postpay = (
        Invoice.select()
        .where((Invoice.status == S.OPEN) & (Invoice.payment_model == "postpay"))
        .order_by(Invoice.id)
        .first()
    )
    assert no_tax is not None and open_postpay is not None

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await show_detail(pilot, no_tax.id)
            panes = [p.id for p in app.screen.query("TabPane")]
            assert "tab-taxes" not in panes and "tab-charges" in panes
            await pilot.press("escape")
            await pilot.pause()
            detail = await show_detail(pilot, open_postpay.number)
            assert not detail.query("#payments-table")
            note = str(detail.query_one("#payments-note", Static).render())
            assert note.startswith("Payments appear once the invoice is closed")
            head = str(detail.query_one("#detail-head", Static).render())
            assert "Open" in head and "Postpay" in head

    run(scenario())


def test_queue_mark_three_and_approve(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            marked = []
            for _ in range(3):  # unflagged ones: flagged ones ask for their flags to be accepted
                row = await move_to(pilot, table, lambda r: r.status == S.UNDER_REVIEW and not is_flagged(r.risk_score))
                await pilot.press("space")
                marked.append(row.id)
            assert table.selection.ids == set(marked)
            await pilot.press("a")
            await settle(pilot)
            assert isinstance(app.screen, ConfirmModal)
            body = str(app.screen.query_one(".dialog-body", Static).render())
            assert "Approve 3 invoices" in body and "Totals:" in body
            await pilot.press("y")
            await settle(pilot)
            assert isinstance(app.screen, SummaryModal)
            assert len(app.screen.result.done) == 3 and not app.screen.result.failed
            await pilot.press("escape")
            await pilot.pause()
            # Approved invoices leave the queue: their rows are removed in place.
            for invoice_id in marked:
                assert str(invoice_id) not in table.items
            assert not table.selection

    run(scenario())
    approved = list(Invoice.select().where(Invoice.status == S.APPROVED, Invoice.approved_by == "alice"))
    assert len(approved) == 3
    for inv in approved:
        assert (
            AuditEvent.select()
            .where((AuditEvent.invoice == inv.id) & (AuditEvent.action == "approve") & (AuditEvent.actor == "alice"))
            .exists()
        )


def test_approve_refusal_listed_in_summary(console_env):
    """A rejected invoice in the batch is reported with its reason; the rest are approved."""

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            await move_to(pilot, table, lambda r: r.status == S.REJECTED)
            await pilot.press("space")
            await pilot.press("home")
            await move_to(pilot, table, lambda r: r.status == S.UNDER_REVIEW and not is_flagged(r.risk_score))
            await pilot.press("space")
            await pilot.press("a")
            await settle(pilot)
            await pilot.press("y")
            await settle(pilot)
            summary = app.screen
            assert isinstance(summary, SummaryModal)
            assert len(summary.result.done) == 1
            [(number, reason)] = summary.result.failed
            assert "rejected" in reason
            assert "reissue it before approving it" in str(summary.query_one("#summary-body", Static).render())

    run(scenario())


def test_adjust_refuses_bad_amounts_then_applies_a_good_one(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            row = await move_to(pilot, table, lambda r: r.status == S.UNDER_REVIEW and r.currency == "EUR")
            corrections_before = Correction.select().count()
            await pilot.press("j")
            await settle(pilot)
            modal = app.screen
            assert isinstance(modal, AdjustModal)
            amount = modal.query_one("#adj-amount", Input)
            error = modal.query_one("#adj-amount-error", Static)
            for bad, words in (
                ("0", "greater than zero"),
                ("-5", "greater than zero"),
                ("abc", "not a number"),
                ("1.234", "at most 2 decimal places"),
            ):
                amount.value = ""
                await pilot.pause()
                amount.focus()
                await pilot.press(*bad)
                await pilot.pause()
                assert words in str(error.render()), (bad, str(error.render()))
                assert amount.has_class("-invalid")
                await pilot.press("ctrl+s")  # refused in the modal: nothing written
                await settle(pilot)
                assert app.screen is modal
                assert Correction.select().count() == corrections_before
            # Escape cancels: nothing written.
            await pilot.press("escape")
            await settle(pilot)
            assert not isinstance(app.screen, AdjustModal)
            assert Correction.select().count() == corrections_before
            # A good one: a charge of 12.50 with a description.
            await pilot.press("j")
            await settle(pilot)
            modal = app.screen
            await pilot.press("down")  # nothing: focus is on the amount
            modal.query_one("#kind-charge").value = True
            await pilot.pause()
            modal.query_one("#adj-amount", Input).focus()
            await pilot.press(*"12.50")
            await pilot.pause()
            # The new total is the domain's preview (a charge is taxed like the invoice's charges).
            expected = workflow.preview_adjust(row.id, "charge", "12.50").after
            assert f"{expected:,.2f} EUR" in str(modal.query_one("#adj-new-total", Static).render())
            await pilot.press("tab")
            await pilot.press(*"On-site support")
            await pilot.press("enter")
            await settle(pilot)
            assert not isinstance(app.screen, AdjustModal)
            # The row's total cell shows the new total.
            cell = table.get_cell(str(row.id), "total")
            assert cell.plain == f"{expected:,.2f} EUR"

    run(scenario())
    corr = Correction.select().order_by(Correction.id.desc()).first()
    assert corr.kind == "manual_charge" and corr.amount == Decimal("12.50") and corr.description == "On-site support"
    inv = Invoice.get_by_id(corr.invoice_id)
    assert inv.status == S.UNDER_REVIEW
    assert AuditEvent.select().where((AuditEvent.invoice == inv.id) & (AuditEvent.action == "adjust")).exists()


def test_adjust_from_detail_updates_total_shown(console_env):
    inv = (
        Invoice.select()
        .where((Invoice.status == S.UNDER_REVIEW) & (Invoice.currency == "EUR"))
        .order_by(Invoice.id)
        .first()
    )
    expected = workflow.preview_adjust(inv.id, "credit", "1.00").after  # the domain's new total

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await show_detail(pilot, inv.id)
            await pilot.press("j")
            await settle(pilot)
            await pilot.press(*"1.00")
            await pilot.press("tab")
            await pilot.press(*"Goodwill")
            await pilot.press("ctrl+s")
            await settle(pilot)
            detail = app.screen
            assert isinstance(detail, InvoiceDetailScreen)
            head = str(detail.query_one("#detail-head", Static).render())
            assert f"{expected:,.2f} EUR" in head
            assert detail.detail.corrections[-1].description == "Goodwill"

    run(scenario())


def test_reissue_off_peak_marks_rejected(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            row = await move_to(pilot, table, lambda r: r.status == S.UNDER_REVIEW)
            await pilot.press("r")
            await settle(pilot)
            modal = app.screen
            assert isinstance(modal, ReissueModal)
            assert "opens" in modal.window_text  # when the off-peak window opens, local time
            assert modal.mode() == "off_peak"
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert isinstance(app.screen, SummaryModal)
            await pilot.press("escape")
            await pilot.pause()
            # The row stays in the queue, its state cell now says it awaits reissue.
            assert table.items[str(row.id)].status == S.REJECTED
            # (80 columns: "reissue 01:00"; "reissue off-peak 01:00" where it fits)
            assert table.get_cell(str(row.id), "review").plain.startswith("reissue ")
            assert table.get_cell(str(row.id), "review").plain != "reissue now"
            return row.id

    invoice_id = run(scenario())
    inv = Invoice.get_by_id(invoice_id)
    assert inv.status == S.REJECTED and inv.reissue_mode == "off_peak"
    assert (
        AuditEvent.select()
        .where((AuditEvent.invoice == invoice_id) & (AuditEvent.action == "request_reissue"))
        .exists()
    )


def test_select_all_matching_is_a_query(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            screen = app.screen
            screen.query_one("#f-status", Select).value = S.UNDER_REVIEW
            await settle(pilot)
            table = screen.query_one(InvoiceTable)
            await pilot.press("M")
            sel = table.selection
            assert sel.all_matching and not sel.ids  # no row ids loaded into the selection
            await pilot.press("space")  # unmark the first row
            targets = sel.snapshot()
            ids = targets.resolve()
            expected = Invoice.select().where(Invoice.status == S.UNDER_REVIEW).count()
            assert len(ids) == expected - 1
            counts = str(screen.query_one("#counts", Static).render())
            assert f"all {expected - 1} matching marked" in counts

    run(scenario())


def test_help_and_theme_and_modes(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("f1")
            await pilot.pause()
            assert app.screen.__class__.__name__ == "HelpScreen"
            await pilot.press("escape")
            theme = app.theme
            await pilot.press("f9")
            assert app.theme != theme
            await pilot.press("f4")
            await settle(pilot)
            assert app.screen.__class__.__name__ == "ClassesScreen"
            await pilot.press("f2")
            await settle(pilot)
            assert isinstance(app.screen, QueueScreen)

    run(scenario())


def test_classes_warning_live_and_save(console_env):
    from tui_billing.store.models import CustomerClass

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("f4")
            await settle(pilot)
            screen = app.screen
            table = screen.query_one("#classes-table")
            table.move_cursor(row=table.order.index("Small Business"))
            await pilot.pause()
            # Seed 000: switching review on with 5 hold days keeps Net 14 for the customer only at Net 19.
            screen.query_one("#class-send", Select).value = "after_review"
            screen.query_one("#class-hold", Input).value = "5"
            await pilot.pause()
            warning = str(screen.query_one("#class-warning", Static).render())
            assert "set Net 19 days" in warning
            screen.query_one("#class-net", Input).value = "19"
            await pilot.pause()
            assert str(screen.query_one("#class-warning", Static).render()) == ""
            await pilot.press("ctrl+s")  # asks first, with the values before and after
            await settle(pilot)
            assert isinstance(app.screen, ConfirmModal)
            await pilot.press("y")
            await settle(pilot)

    run(scenario())
    cls = CustomerClass.get(CustomerClass.name == "Small Business")
    assert (cls.send_mode, cls.hold_days, cls.net_days) == ("after_review", 5, 19)


def test_jobs_flag_starts_the_loop_and_it_dispatches(console_env, tmp_path):
    approved = Invoice.select().where(Invoice.status == S.APPROVED).count()
    assert approved, "the demo store should hold approved invoices to dispatch"

    async def scenario():
        app = make_app(console_env, jobs=True)
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await settle(pilot)
            messages = [n.message for n in app._notifications]
            assert any("Job loop started" in m for m in messages)
            assert [w for w in app.workers if w.group == "jobs"]
            # The first pass queues mail for every approved invoice (dispatch) and a later
            # job of the same pass hands it over (delivery): wait for both, not the first.
            for _ in range(400):
                if not Invoice.select().where(Invoice.status == S.APPROVED).count() and delivered():
                    break
                await pilot.pause(0.05)
            app.stop_jobs.set()

    def delivered():
        new = tmp_path / "maildir" / "new"
        return new.is_dir() and any(new.iterdir())

    run(scenario())
    assert Invoice.select().where(Invoice.status == S.APPROVED).count() == 0
    assert delivered(), "mail went to the test's maildir"


def test_command_palette_lists_actions_and_runs_them(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("ctrl+p")
            await pilot.pause()
            await pilot.press(*"Find invoices")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, FinderScreen)

    run(scenario())


def test_keys_can_be_remapped_by_binding_id(console_env):
    async def scenario():
        app = make_app(console_env, keymap={"list.approve": "ctrl+o"})
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            await move_to(pilot, table, lambda r: r.status == S.UNDER_REVIEW and not is_flagged(r.risk_score))
            await pilot.press("a")  # no longer approve
            await settle(pilot)
            assert not isinstance(app.screen, ConfirmModal)
            await pilot.press("ctrl+o")
            await settle(pilot)
            assert isinstance(app.screen, ConfirmModal)
            sections = dict(app.key_sections())
            assert ("^o", "Approve") in sections["Review queue and finder"]

    run(scenario())


def test_next_page_loads_when_the_cursor_nears_the_end(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("f3")
            await settle(pilot)
            screen = app.screen
            table = screen.query_one(InvoiceTable)
            assert table.row_count == PAGE and screen.has_more
            assert screen.ahead is not None and len(screen.ahead[0]) == PAGE  # the next page, fetched ahead
            table.focus()
            await pilot.press("end")
            assert table.row_count == 2 * PAGE  # appended at once, no wait on the store
            await settle(pilot)
            numbers = [table.items[k].number for k in table.order]
            assert len(set(numbers)) == 2 * PAGE  # keyset pages never repeat a row
            for _ in range(300 // PAGE + 1):
                await pilot.press("end")
                await settle(pilot)
            assert table.row_count == Invoice.select().count() == 300 and not screen.has_more
            assert screen.ahead is None or screen.ahead[0] == []

    run(scenario())


@pytest.mark.parametrize(
    "sort,descending",
    [("deadline", None), ("deadline", True), ("issue_date", None), ("issue_date", False), ("total", None)],
)
def test_pager_merges_statuses_in_exactly_the_query_order(console_env, sort, descending):
    from tui_billing.console_state import Pager
    from tui_billing.store import queries

    filters = queries.make_filters(status=[S.UNDER_REVIEW, S.REJECTED, S.APPROVED])
    pager = Pager(filters, sort, descending, limit=7)
    got = []
    while pager.has_more:
        page = pager.next_page()
        assert len(page) <= 7
        got += [r.id for r in page]
    expected = [r.id for r in queries.page(filters, sort=sort, descending=descending, limit=5000)]
    assert got == expected and len(got) > 7


def test_rows_changed_elsewhere_are_refreshed_by_the_poll(console_env):
    """Another admin (or the job loop) approves an invoice: the queue drops its row."""
    from tui_billing import workflow

    async def scenario():
        app = make_app(console_env, poll_seconds=3600)  # polled by hand below
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            row = await move_to(pilot, table, lambda r: r.status == S.UNDER_REVIEW)
            other = workflow.Ctx(clock=app.ctx.clock, actor="bob")
            workflow.approve_many(other, [row.id], include_flagged=True)  # bob accepts its flags, if any
            app.poll_waiting()
            await settle(pilot)
            assert str(row.id) not in table.items

    run(scenario())


def test_erp_integration_shows_external_total_and_approval_date(console_env):
    from tui_billing.store.settings import save_setting

    save_setting("erp_integration", "on")
    paid = Invoice.select().where(Invoice.status == S.PAID).order_by(Invoice.id).first()

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await show_detail(pilot, paid.id)
            head = str(app.screen.query_one("#detail-head", Static).render())
            assert "External total" in head and "Approval date" in head
            assert "Closed · Paid" in head or paid.payment_model != "postpay"

    run(scenario())


# -- risk review (issue #7) ---------------------------------------------------


def flag_invoices(scores: dict[int, list[str]]) -> None:
    """Give invoices risk flags (codes; reasons made up) as the bill run would."""
    from tui_billing.risk import FLAGGED, Flag, dumps_flags, score

    for invoice_id, codes in scores.items():
        flags = [Flag(code, f"reason of {code} on invoice {invoice_id}") for code in codes]
        Invoice.update(risk_score=FLAGGED + score(flags), risk_flags=dumps_flags(flags)).where(
            Invoice.id == invoice_id
        ).execute()


def queue_ids(status=(S.UNDER_REVIEW,)) -> list[int]:
    """Queue invoices, latest deadline first (the ones the deadline sort shows last)."""
    return [
        i.id
        for i in Invoice.select(Invoice.id)
        .where(Invoice.status.in_(list(status)))
        .order_by(Invoice.review_deadline.desc(), Invoice.id)
    ]


def test_queue_is_sorted_by_risk_then_deadline_and_s_switches(console_env):
    ids = queue_ids()
    # Late deadlines: by deadline alone they would come last.
    flag_invoices({ids[0]: ["total_spike"], ids[1]: ["negative_total", "tax_ratio"], ids[2]: ["new_service"]})

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            screen = app.screen
            assert screen.sort == "risk"
            table = screen.query_one(InvoiceTable)
            rows = [table.items[k] for k in table.order]
            assert [r.id for r in rows[:3]] == [ids[1], ids[0], ids[2]]
            assert [r.risk_score for r in rows[:3]] == [1075, 1035, 1015]
            scores = [r.risk_score for r in rows]
            assert scores == sorted(scores, reverse=True)
            # Unflagged invoices are ordered by their distance from expected (the
            # score below FLAGGED); equal scores by the nearest deadline.
            for score in {r.risk_score for r in rows}:
                same = [r.review_deadline for r in rows if r.risk_score == score and r.review_deadline]
                assert same == sorted(same)
            # 80 columns (no Flags column beside Expected): the Review cell of a flagged one shows its flags.
            assert table.get_cell(str(ids[1]), "review").plain == "negative, tax"
            assert table.get_cell(str(ids[0]), "review").plain == "spike"
            assert "by risk" in str(screen.query_one("#counts", Static).render())
            # s: back to the review deadline order, and again to risk.
            await pilot.press("s")
            await settle(pilot)
            rows = [table.items[k] for k in table.order]
            deadlines = [r.review_deadline for r in rows]
            assert screen.sort == "deadline" and deadlines == sorted(deadlines)
            assert "by review deadline" in str(screen.query_one("#counts", Static).render())
            await pilot.press("s")
            await settle(pilot)
            assert table.order[0] == str(ids[1])

    run(scenario())


def test_flagged_only_in_queue_and_finder(console_env):
    under_review = queue_ids()
    paid = [i.id for i in Invoice.select(Invoice.id).where(Invoice.status == S.PAID).order_by(Invoice.id)]
    flag_invoices({under_review[3]: ["zero_total"], under_review[5]: ["large_correction"], paid[0]: ["total_drop"]})
    flagged = {i.id for i in Invoice.select(Invoice.id).where(Invoice.risk_score >= risk.FLAGGED)}
    in_queue = {i for i in flagged if Invoice.get_by_id(i).status in (S.UNDER_REVIEW, S.REJECTED)}
    assert {under_review[3], under_review[5]} <= in_queue

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            everything = len(table.order)
            await pilot.press("f")
            await settle(pilot)
            rows = [table.items[k] for k in table.order]
            assert {r.id for r in rows} == in_queue and all(risk.is_flagged(r.risk_score) for r in rows)
            counts = str(app.screen.query_one("#counts", Static).render())
            assert "flagged only" in counts
            assert f"Under review {len([r for r in rows if r.status == S.UNDER_REVIEW])}" in counts
            await pilot.press("f")  # again: every invoice
            await settle(pilot)
            assert len(table.order) == everything
            # The finder has the toggle too (and a risk sort, k).
            await pilot.press("f3")
            await settle(pilot)
            finder = app.screen
            assert isinstance(finder, FinderScreen)
            await pilot.press("f")
            await settle(pilot)
            table = finder.query_one(InvoiceTable)
            assert {table.items[k].id for k in table.order} == flagged
            await pilot.press("k")
            await settle(pilot)
            scores = [table.items[k].risk_score for k in table.order]
            assert scores == sorted(scores, reverse=True)

    run(scenario())


def test_detail_tabs_all_in_sight_at_80_columns(console_env):
    """Eight tabs with counts need ~87 columns: at 80 two titles are shortened, never a tab hidden."""
    inv = (
        Invoice.select()
        .where(
            (Invoice.status == S.UNDER_REVIEW)
            & (Invoice.risk_score >= risk.FLAGGED)
            & Invoice.id.in_(TaxLine.select(TaxLine.invoice))
        )
        .order_by(Invoice.id)
        .first()
    )
    assert inv is not None, "the demo store should hold a flagged invoice with taxes"

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await show_detail(pilot, inv.id)
            tabs = app.screen.query_one(TabbedContent)
            ids = [p.id for p in tabs.query("TabPane")]
            assert {"tab-taxes", "tab-flags", "tab-audit"} <= set(ids) and len(ids) == 8

            def titles():
                return [tabs.get_tab(i).label.plain for i in ids]

            def all_in_sight():
                return all(tabs.get_tab(i).region.right <= 80 for i in ids)

            assert titles()[1].startswith("Subs. ") and titles()[3].startswith("Corr. ")
            assert all_in_sight(), titles()
            await pilot.resize_terminal(120, 40)
            await settle(pilot)
            assert titles()[1].startswith("Subscriptions ") and titles()[3].startswith("Corrections ")
            await pilot.resize_terminal(80, 24)
            await settle(pilot)
            assert titles()[1].startswith("Subs. ") and all_in_sight()

    run(scenario())


def test_detail_lists_flags_in_full_and_changes_since_review(console_env):
    from tui_billing import workflow
    from tui_billing.risk import FLAGGED, Flag, dumps_flags

    from .conftest_console import console_ctx

    inv = (
        Invoice.select()
        .where((Invoice.status == S.UNDER_REVIEW) & (Invoice.currency == "EUR") & (Invoice.revision == 1))
        .order_by(Invoice.id)
        .first()
    )
    plain = (
        Invoice.select()
        .where((Invoice.status == S.UNDER_REVIEW) & (Invoice.risk_flags == "") & (Invoice.id != inv.id))
        .order_by(Invoice.id)
        .first()
    )
    reasons = [
        "total 12,400.00 EUR is 9.8x the last 3 invoices' average 1,265.10",
        "first time billed: roaming (120.00 EUR); not on the last 3 invoices",
    ]
    before = Invoice.get_by_id(inv.id).total
    preview = workflow.preview_adjust(inv.id, "charge", "12.50")
    workflow.adjust(console_ctx(), inv.id, "charge", Decimal("12.50"), "On-site support")
    after = Invoice.get_by_id(inv.id).total
    # (after the adjust: it assesses the invoice again)
    Invoice.update(
        risk_score=FLAGGED + 50,
        risk_flags=dumps_flags([Flag("total_spike", reasons[0]), Flag("new_service", reasons[1])]),
    ).where(Invoice.id == inv.id).execute()
    assert after == preview.after  # 12.50 and its tax, if the account's rules tax it

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            detail = await show_detail(pilot, inv.id)
            # Each reason in full (wrapped at 80 columns, never cut), with the score.
            shown = text_of(detail.query_one("#detail-flags", Static))
            assert f"risk score {FLAGGED + 50}" in shown
            for reason in reasons:
                assert reason in shown, (reason, shown)
            assert [f.reason for f in detail.detail.flags] == reasons
            # Changes: the added correction line and the total, before and after.
            tabs = detail.query_one(TabbedContent)
            panes = [p.id for p in tabs.query("TabPane")]
            assert panes.index("tab-changes") == panes.index("tab-audit") - 1  # just before Audit
            assert panes[-1] == "tab-flags"
            tabs.active = "tab-changes"
            await settle(pilot)
            table = detail.query_one("#changes-table")
            cells = [[table.get_cell_at((r, c)) for c in range(len(table.columns))] for r in range(table.row_count)]
            plain_rows = [[c.plain if hasattr(c, "plain") else str(c) for c in row] for row in cells]
            added = [r for r in plain_rows if r[0] == "correction added"]
            assert added and "On-site support" in added[0][1] and added[0][4] == "+12.50"
            total = [r for r in plain_rows if r[1] == "Total"]
            assert total == [["total", "Total", f"{before:,.2f}", f"{after:,.2f}", f"+{after - before:,.2f}"]]
            head = str(detail.query_one("#changes-head", Static).render())
            assert "Revision 1 (last reviewed) → revision 2" in head and f"{after:,.2f} EUR" in head
            # v: this revision is reviewed; the next diff starts from it.
            await pilot.press("v")
            await settle(pilot)
            assert detail.detail.changes is None
            note = str(detail.query_one("#changes-note", Static).render())
            assert note == "No changes since the revision last reviewed."
            # An invoice without flags says so.
            await pilot.press("escape")
            await pilot.pause()
            await show_detail(pilot, plain.id)
            assert "No flags" in str(app.screen.query_one("#detail-flags", Static).render())

    run(scenario())
    assert AuditEvent.select().where((AuditEvent.invoice == inv.id) & (AuditEvent.action == "mark_reviewed")).exists()


@pytest.mark.parametrize("descending", [None, False])
def test_pager_pages_the_risk_sort_in_exactly_the_query_order(console_env, descending):
    from tui_billing.console_state import Pager
    from tui_billing.store import queries

    ids = queue_ids((S.UNDER_REVIEW, S.REJECTED))
    flag_invoices({i: ["tax_ratio"] if n % 3 else ["total_spike", "tax_ratio"] for n, i in enumerate(ids[:11])})
    filters = queries.make_filters(status=[S.UNDER_REVIEW, S.REJECTED])
    pager = Pager(filters, "risk", descending, limit=4)
    got = []
    while pager.has_more:
        got += [r.id for r in pager.next_page()]
    expected = [r.id for r in queries.page(filters, sort="risk", descending=descending, limit=5000)]
    assert got == expected and len(got) == len(ids)


def test_readme_lists_every_binding_id():
    """Operators remap keys by id ([keys] in the config file): the README's
    list must name every id the console has, and no id it lacks."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    source = "".join(p.read_text(encoding="utf-8") for p in (root / "tui_billing").rglob("*.py"))
    ids = set(re.findall(r'id="([a-z_]+\.[a-z_]+)"', source))
    readme = (root / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("**Remapping keys.**") : readme.index("## Usage and the bill run")]
    listed = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", section))
    assert ids and ids == listed


def test_failed_email_is_announced_and_retried_from_the_outbox_screen(console_env, tmp_path):
    from textual.widgets import DataTable

    from tui_billing import jobs, mail, workflow
    from tui_billing.screens.outbox import OutboxModal
    from tui_billing.store.models import Account, OutboxMessage

    ctx = console_env.ctx
    inv = Invoice.select().where(Invoice.status == S.UNDER_REVIEW).order_by(Invoice.id).first()
    account = Account.get_by_id(inv.account_id)
    good_email = account.email
    Account.update(email="Billing <a@b.example>, c@d.example").where(Account.id == account.id).execute()
    workflow.approve(ctx, inv.id, include_flagged=True)  # whatever its flags: this test is about mail
    jobs.dispatch_approved(ctx)
    jobs.deliver_outbox(ctx, transport=mail.MaildirTransport(tmp_path / "maildir"))
    [msg] = OutboxMessage.select().where(OutboxMessage.invoice == inv.id)
    assert msg.status == mail.FAILED

    async def scenario():
        app = make_app(console_env, poll_seconds=3600)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)  # the first poll ran on mount
            toasts = [n.message for n in app._notifications]
            assert any("1 failed" in t and "F7" in t for t in toasts), toasts
            await pilot.press("f7")
            await settle(pilot)
            assert isinstance(app.screen, OutboxModal)
            table = app.screen.query_one(DataTable)
            assert table.row_count == 1
            assert inv.number in str(table.get_row_at(0))
            await pilot.press("r")  # the address is still bad: refused, nothing changes
            await settle(pilot)
            assert OutboxMessage.get_by_id(msg.id).status == mail.FAILED
            assert any("still invalid" in n.message for n in app._notifications)
            Account.update(email=good_email).where(Account.id == account.id).execute()
            await pilot.press("r")
            await settle(pilot)
            assert OutboxMessage.get_by_id(msg.id).status == mail.QUEUED
            assert (
                AuditEvent.select().where((AuditEvent.action == "mail_retry") & (AuditEvent.invoice == inv.id)).count()
                == 1
            )
            assert app.screen.query_one(DataTable).row_count == 0
            await pilot.press("escape")
            assert not isinstance(app.screen, OutboxModal)

    run(scenario())


def test_many_flags_header_stays_small_and_the_flags_tab_has_them_all(console_env):
    from tui_billing.risk import FLAGGED, Flag, dumps_flags

    inv = Invoice.select().where(Invoice.status == S.UNDER_REVIEW).order_by(Invoice.id).first()
    codes = ["negative_total", "total_spike", "inactive_subscription", "missing_usage", "tax_ratio"]
    reasons = [
        f"reason number {i} for {code}, long enough to wrap at eighty columns of a terminal"
        for i, code in enumerate(codes)
    ]
    Invoice.update(
        risk_score=FLAGGED + 170, risk_flags=dumps_flags([Flag(c, r) for c, r in zip(codes, reasons)])
    ).where(Invoice.id == inv.id).execute()

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            detail = await show_detail(pilot, inv.id)
            head = text_of(detail.query_one("#detail-flags", Static))
            assert f"risk score {FLAGGED + 170}" in head and reasons[0] in head and reasons[1] in head
            assert reasons[4] not in head and "3 more" in head
            tabs = detail.query_one(TabbedContent)
            tabs.active = "tab-flags"
            await settle(pilot)
            full = text_of(detail.query_one("#flags-full", Static))
            for reason in reasons:
                assert reason in full, (reason, full)

    run(scenario())


def test_long_numbers_and_large_totals_are_never_cut(console_env):
    """At 80 columns the Number and Total columns grow for what they must show;
    the account name gives way (it ends in '…')."""
    inv = Invoice.select().where(Invoice.status == S.UNDER_REVIEW).order_by(Invoice.id).first()
    Invoice.update(number="INV-2026-1000001", total=Decimal("91114564.61"), currency="EUR").where(
        Invoice.id == inv.id
    ).execute()

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            await move_to(pilot, table, lambda r: r.id == inv.id)
            await pilot.pause()
            assert table.columns["number"].width >= len("INV-2026-1000001")
            assert table.columns["total"].width >= len("91,114,564.61 EUR")
            line = text_of(table)
            assert "INV-2026-1000001" in line and "91,114,564.61 EUR" in line

    run(scenario())


def test_a_page_fetched_ahead_shows_changes_made_meanwhile(console_env):
    """The next page is read before it is needed; an invoice on it that someone
    else approved meanwhile must not appear as still under review."""
    from tui_billing import workflow

    # An invoice under review in the middle of the finder's second page (by issue date).
    by_date = list(Invoice.select().order_by(Invoice.issue_date.desc(), Invoice.id.desc()))
    target = next(i for i in by_date[:PAGE] if i.status == S.UNDER_REVIEW)
    Invoice.update(issue_date=by_date[PAGE + PAGE // 2].issue_date).where(Invoice.id == target.id).execute()

    async def scenario():
        app = make_app(console_env, poll_seconds=3600)  # polled by hand below
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("f3")
            await settle(pilot)
            screen = app.screen
            ahead = [r for r in screen.ahead[0] if r.status == S.UNDER_REVIEW]
            assert [r.id for r in ahead][:1] == [target.id], "the page fetched ahead should hold it"
            other = workflow.Ctx(clock=app.ctx.clock, actor="bob")
            workflow.approve_many(other, [ahead[0].id], include_flagged=True)  # flags, if any, accepted
            app.poll_waiting()  # another admin's change, seen by the poll
            await settle(pilot)
            table = screen.query_one(InvoiceTable)
            table.focus()
            await pilot.press("end")
            await settle(pilot)
            assert table.items[str(ahead[0].id)].status == S.APPROVED

    run(scenario())


def test_a_filter_change_drops_the_old_filters_pages(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("f3")
            await settle(pilot)
            screen = app.screen
            old_pager = screen.pager
            screen.reload({"status": S.UNDER_REVIEW})
            assert screen.pager is None and screen.ahead is None and not screen.has_more
            await settle(pilot)
            assert screen.pager is not old_pager
            table = screen.query_one(InvoiceTable)
            assert {table.items[k].status for k in table.order} == {S.UNDER_REVIEW}

    run(scenario())


def test_mail_waiting_on_an_unreachable_server_is_announced(console_env):
    import datetime as dt

    from textual.widgets import DataTable

    from tui_billing import jobs, workflow
    from tui_billing.screens.outbox import OutboxModal

    from .conftest_console import CONSOLE_NOW
    from .test_jobs_support import SmtpServer, ctx_at

    inv = Invoice.select().where(Invoice.status == S.UNDER_REVIEW).order_by(Invoice.id).first()
    workflow.approve(console_env.ctx, inv.id, include_flagged=True)  # whatever its flags
    earlier = ctx_at(CONSOLE_NOW - dt.timedelta(hours=1))
    jobs.dispatch_approved(earlier)
    jobs.deliver_outbox(earlier, transport=SmtpServer().transport())  # nothing listens

    async def scenario():
        app = make_app(console_env, poll_seconds=3600)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            toasts = [n.message for n in app._notifications]
            assert any("1 waiting" in t and "cannot connect" in t for t in toasts), toasts
            await pilot.press("f7")
            await settle(pilot)
            assert isinstance(app.screen, OutboxModal)
            table = app.screen.query_one(DataTable)
            rows = [table.get_row_at(i) for i in range(table.row_count)]
            # The first message tried (the server down, the rest wait for the next run).
            assert [r[1].plain for r in rows] == ["waiting"] and "cannot connect" in rows[0][5]

    run(scenario())


def test_growing_columns_never_push_the_table_past_80_columns(console_env):
    inv = Invoice.select().where(Invoice.status == S.UNDER_REVIEW).order_by(Invoice.id).first()
    Invoice.update(number="INV-2026-LONG-NUMBER-0001", total=Decimal("9999999999.99")).where(
        Invoice.id == inv.id
    ).execute()

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            widths = sum(c.get_render_width(table) for c in table.columns.values())
            assert widths <= table.size.width, (widths, table.size.width)
            assert table.columns["account"].width >= table.min_flex
            # What does not fit ends in "…": never cut silently.
            for column in ("number", "total"):
                cell = table.get_cell(str(inv.id), column)
                assert cell.overflow == "ellipsis" and cell.no_wrap, column

    run(scenario())


def test_a_refreshed_row_whose_total_grew_widens_its_column(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            row = next(table.items[k] for k in table.order if table.items[k].currency == "EUR")
            assert table.columns["total"].width < len("9,999,999.99 EUR")
            Invoice.update(total=Decimal("9999999.99")).where(Invoice.id == row.id).execute()
            app.screen.refresh_invoices([row.id])
            await settle(pilot)
            assert table.columns["total"].width >= len("9,999,999.99 EUR")
            assert "9,999,999.99 EUR" in text_of(table)

    run(scenario())
