"""Issue 13, "Frictions to clear" in the console (80x24 first), and issue 14
item 7 there: text from the store is shown escaped, never obeyed, never read
as markup.  Each test failed on the console before its fix."""

from __future__ import annotations

import re

from textual.widgets import DataTable, Input, Select, Static, TabbedContent
from textual.widgets._footer import FooterKey

from tui_billing import statuses as S
from tui_billing.risk import FLAGGED, Flag, dumps_flags
from tui_billing.screens.classes_screen import ClassesScreen
from tui_billing.screens.confirm import ConfirmModal
from tui_billing.screens.detail import PAYMENT_COLUMNS, InvoiceDetailScreen
from tui_billing.store.models import Account, ChargeLine, CustomerClass, Invoice, Payment
from tui_billing.widgets.invoice_table import ACCOUNT_MIN, InvoiceTable

from .conftest_console import console_env, console_template, make_app, settle, show_detail  # noqa: F401


def run(coro):
    import asyncio

    return asyncio.run(coro)


def lines_of(widget) -> list[str]:
    """The lines a widget shows on screen."""
    return [s.text.rstrip() for s in widget.render_lines(widget.region.reset_offset)]


def text_of(widget) -> str:
    return " ".join(" ".join(lines_of(widget)).split())


def footer_keys(app) -> list[tuple[str, str, int]]:
    return [(k.key_display, k.description, k.region.right) for k in app.screen.query(FooterKey)]


def queue_invoices(n: int) -> list[Invoice]:
    return list(Invoice.select().where(Invoice.status == S.UNDER_REVIEW).order_by(Invoice.id).limit(n))


# -- space marks and moves down; the dialogs' keys say what they do -------------------


def test_space_says_it_marks_and_moves_down_and_dialog_keys_say_submit(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            keys = footer_keys(app)
            assert ("space", "Mark ↓") in [(k, d) for k, d, _ in keys], keys
            table = app.screen.query_one(InvoiceTable)
            first = table.cursor_row
            await pilot.press("space")
            assert table.cursor_row == first + 1  # it did move down, as the footer says
            sections = dict(app.key_sections())
            assert ("space", "Mark or unmark the row, then move down to the next one") in sections[
                "Review queue and finder"
            ]
            dialogs = dict(sections["Dialogs"])
            assert dialogs["^s"].startswith("Submit"), dialogs  # not "Adjust": it submits every dialog
            assert dialogs["y"].startswith("Confirm") and dialogs["esc"].startswith("Cancel")
            await pilot.press("question_mark")
            await pilot.pause()
            shown = " ".join(text_of(s) for s in app.screen.query(".help-table"))
            assert "Submit the dialog" in shown and "then move down" in shown

    run(scenario())


# -- customer classes: ask before saving; the warning stays; Tab goes round the form ------


async def classes_at(pilot, name: str) -> ClassesScreen:
    await pilot.press("f4")
    await settle(pilot)
    screen = pilot.app.screen
    table = screen.query_one("#classes-table")
    table.move_cursor(row=table.order.index(name))
    await pilot.pause()
    return screen


def test_classes_save_asks_with_the_values_before_and_after(console_env):
    before = CustomerClass.get(CustomerClass.name == "Small Business")
    assert (before.send_mode, before.hold_days, before.net_days) == ("immediately", 0, 14)

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            screen = await classes_at(pilot, "Small Business")
            screen.query_one("#class-send", Select).value = "after_review"
            screen.query_one("#class-hold", Input).value = "5"
            await pilot.pause()
            await pilot.press("ctrl+s")
            await settle(pilot)
            modal = app.screen
            assert isinstance(modal, ConfirmModal), modal
            body = text_of(modal.query_one(".dialog-body", Static))
            for words in (
                "Small Business",
                "Send the invoice Immediately → After review",
                "Hold for review 0 days → 5 days",
                "Payment terms Net 14 days Net 14 days",
                "set Net 19 days",
            ):
                assert words in body, (words, body)
            await pilot.press("n")  # not saved: nothing written, the form keeps what was typed
            await settle(pilot)
            assert app.screen is screen
            cls = CustomerClass.get(CustomerClass.name == "Small Business")
            assert (cls.send_mode, cls.hold_days) == ("immediately", 0)
            assert screen.query_one("#class-hold", Input).value == "5"
            await pilot.press("ctrl+s")
            await settle(pilot)
            await pilot.press("y")
            await settle(pilot)
            cls = CustomerClass.get(CustomerClass.name == "Small Business")
            assert (cls.send_mode, cls.hold_days, cls.net_days) == ("after_review", 5, 14)
            # The warning stays with the class: on its row and under the form, after
            # looking at another class and coming back (not a toast that goes).
            table = screen.query_one("#classes-table")
            assert table.get_cell("Small Business", "warning").plain == "⚠"
            table.focus()
            await pilot.press("up")
            await pilot.pause()
            assert screen.editing["name"] != "Small Business"
            await pilot.press("down")
            await pilot.pause()
            assert screen.editing["name"] == "Small Business"
            warning = text_of(screen.query_one("#class-warning", Static))
            assert "set Net 19 days" in warning, warning
            # Until it no longer applies: Net 19 keeps the customer's 14 days to pay.
            screen.query_one("#class-net", Input).value = "19"
            await pilot.press("ctrl+s")
            await settle(pilot)
            await pilot.press("y")
            await settle(pilot)
            assert table.get_cell("Small Business", "warning").plain.strip() == ""
            assert text_of(screen.query_one("#class-warning", Static)) == ""

    run(scenario())


def test_classes_tab_goes_round_the_form_top_to_bottom_left_to_right(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            screen = await classes_at(pilot, "Enterprise")
            assert app.focused.id == "classes-table"
            await pilot.press("tab")
            order = [app.focused.id]
            for _ in range(4):
                await pilot.press("tab")
                order.append(app.focused.id)
            # Round the form, never out to the list (where an arrow would load
            # another class over what was typed).
            assert order == ["class-send", "class-hold", "class-net", "class-save", "class-send"], order
            await pilot.press("shift+tab")
            assert app.focused.id == "class-save"
            await pilot.press("escape")
            assert app.focused.id == "classes-table"
            assert isinstance(screen, ClassesScreen)

    run(scenario())


# -- a filter that matches nothing says so ------------------------------------------------------


def test_a_filter_matching_nothing_says_so_instead_of_an_empty_table(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("f3")
            await settle(pilot)
            finder = app.screen
            note = finder.query_one("#no-match", Static)
            assert not note.display
            finder.query_one("#f-customer", Input).value = "zz no such customer"
            await pilot.pause(0.6)  # the filter bar waits for the typing to stop
            await settle(pilot)
            table = finder.query_one(InvoiceTable)
            assert table.row_count == 0 and note.display
            words = text_of(note)
            assert words.startswith("No invoice matches") and "customer “zz no such customer”" in words, words
            assert table.size.height <= 2  # its header, not a screen of empty rows
            finder.query_one("#f-customer", Input).value = ""
            await pilot.pause(0.6)
            await settle(pilot)
            assert table.row_count and not note.display

    run(scenario())


# -- 80x24 ---------------------------------------------------------------------------------


def test_80x24_account_column_tells_accounts_apart(console_env):
    """Names that differ only at their end stay apart: the column keeps its
    minimum width and a long name is cut in the middle, its end kept."""
    a, b, big = queue_invoices(3)
    stem = "Helios Solar Energy International Services"
    Account.update(name=f"{stem} #33").where(Account.id == a.account_id).execute()
    Account.update(name=f"{stem} #46").where(Account.id == b.account_id).execute()
    from decimal import Decimal

    Invoice.update(total=Decimal("91114564.61"), expected_total=Decimal("81114564.61")).where(
        Invoice.id == big.id
    ).execute()

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            assert table.columns["account"].width >= ACCOUNT_MIN
            lines = lines_of(table)
            row_a = next(line for line in lines if a.number in line)
            row_b = next(line for line in lines if b.number in line)
            assert "#33" in row_a and "#46" in row_b, (row_a, row_b)
            assert "91,114,564.61 EUR" in text_of(table) or big.currency != "EUR"  # money still never cut

    run(scenario())


def test_80x24_footers_are_never_cut(console_env):
    """Whatever has the focus (the table, a filter), every key of the footer is in sight."""

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            for mode in ("f2", "f3", "f4"):
                await pilot.press(mode)
                await settle(pilot)
                screen = app.screen
                for widget in list(screen.focus_chain):
                    widget.focus()
                    await pilot.pause()
                    for _ in range(20):  # a machine loaded beyond its cores paints the footer later
                        keys = footer_keys(app)
                        if keys:
                            break
                        await pilot.pause(0.05)
                    assert keys and all(right <= 80 for _, _, right in keys), (mode, widget, keys)
                    help_key = [k for k in keys if k[1] == "Help"]
                    assert help_key, (mode, widget, keys)
            await show_detail(pilot, queue_invoices(1)[0].id)
            assert all(right <= 80 for _, _, right in footer_keys(app)), footer_keys(app)

    run(scenario())


def test_80x24_payments_tab_of_a_closed_postpay_invoice_shows_its_columns(console_env):
    paid = (
        Invoice.select()
        .where(
            (Invoice.payment_model == "postpay")
            & Invoice.status.in_([S.PAID, S.UNPAID, S.OVERDUE])
            & Invoice.id.in_(Payment.select(Payment.invoice))
        )
        .order_by(Invoice.id)
        .first()
    )
    assert paid is not None, "the demo store should hold a closed postpay invoice with a payment"
    payments = list(Payment.select().where(Payment.invoice == paid.id))

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            detail = await show_detail(pilot, paid.id)
            tabs = detail.query_one(TabbedContent)
            tabs.active = "tab-payments"
            await settle(pilot)
            table = detail.query_one("#payments-table", DataTable)
            assert [c.key.value for c in table.columns.values()] == [c.key for c in PAYMENT_COLUMNS]
            widths = sum(c.get_render_width(table) for c in table.columns.values())
            assert widths <= table.size.width, (widths, table.size.width)
            assert table.size.height >= min(len(payments), 3) + 1  # the header and its rows, in sight
            shown = text_of(table)
            for p in payments:  # each payment's description in full, not "PMT-0000…"
                assert p.description in shown, (p.description, shown)
            # The chart beside the header never wraps its titles (it made the header tall).
            head = detail.query_one("#detail-head", Static)
            chart = detail.query_one("#detail-chart")
            assert not chart.display or chart.size.height <= head.size.height

    run(scenario())


def test_the_flags_tab_says_what_its_number_counts(console_env):
    inv = queue_invoices(1)[0]
    flags = [
        Flag("total_spike", "total 12,400.00 EUR is 3.1x its usual 4,010.00"),
        Flag("new_service", "Roaming billed for the first time"),
        Flag("tax_ratio", "taxes are 31 % of the net, usually 21 %"),
    ]
    Invoice.update(risk_score=FLAGGED + 75, risk_flags=dumps_flags(flags)).where(Invoice.id == inv.id).execute()

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            detail = await show_detail(pilot, inv.id)
            tabs = detail.query_one(TabbedContent)
            assert tabs.get_tab("tab-flags").label.plain == "3 flags"
            assert tabs.get_tab("tab-flags").region.right <= 80

    run(scenario())


def test_job_log_wraps_between_words(console_env):
    line = (
        "2026-11-20T10:00:00Z job=loop action=started mode=loop store=exclusive "
        "jobs=close_postpay,auto_approve,reissue_offpeak,dispatch_approved,expire_payments,"
        'notify_admins,deliver_outbox holder="vm|30348|963210|c949f8b40fa4|pid:4026531836"'
    )

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            app.job_lines.append(line)
            await pilot.press("f8")
            await settle(pilot)
            log = app.screen.query("#job-log") or app.screen.query("#pdf-text")  # (before: the PDF text view)
            shown = [s for s in lines_of(log.first()) if s]
            assert shown[0].startswith("2026-11-20T10:00:00Z") and len(shown) > 1
            for word in re.findall(r"[^\s,|]+", line):  # every word whole on one line
                assert any(word in s for s in shown), (word, shown)
            assert all(s.startswith("  ") for s in shown[1:] if s)  # an entry's next lines are indented

    run(scenario())


# -- the command palette: each action with its key, once ------------------------------------------


def test_command_palette_shows_each_action_once_with_its_key(console_env):
    from textual.command import CommandList

    async def scenario():
        app = make_app(console_env, keymap={"list.approve": "ctrl+o"})
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("ctrl+p")
            await pilot.pause(0.5)
            commands = app.screen.query_one(CommandList)
            prompts = [str(commands.get_option_at_index(i).prompt).split("\n")[0] for i in range(commands.option_count)]
            titles = [p.split("  ")[0] for p in prompts]
            assert len(titles) == len(set(titles)), titles  # Quit, Keys, the theme: once each
            by_title = dict(p.split("  ", 1) for p in prompts if "  " in p)
            assert set(by_title) == set(titles), prompts  # every action shows its key
            assert by_title["Approve"] == "^o" and by_title["Find invoices"] == "f3"
            assert by_title["Keys"] == "? f1" and by_title["Quit"] == "^q"
            assert by_title["Mark all matching"] == "M"

    run(scenario())


# -- issue 14 item 7: stored text shown escaped, never obeyed, never markup -----------------------


def test_stored_text_is_shown_escaped_and_never_read_as_markup(console_env):
    inv = queue_invoices(1)[0]
    Account.update(name="Evil\x1b[2J Corp [bold]X[/bold]").where(Account.id == inv.account_id).execute()
    Invoice.update(number="INV-[red]7[/red]").where(Invoice.id == inv.id).execute()
    line = ChargeLine.select().where(ChargeLine.invoice == inv.id).order_by(ChargeLine.id).first()
    ChargeLine.update(description="Calls\x1b[31m RED\rAPPROVED").where(ChargeLine.id == line.id).execute()

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            row = next(s for s in lines_of(table) if "INV-[red]7[/red]" in s)
            assert "Evil\\x1b[2J Corp" in row and "[/bold]" in row and "\x1b" not in row, row
            detail = await show_detail(pilot, inv.id)
            assert isinstance(detail, InvoiceDetailScreen)
            head = text_of(detail.query_one("#detail-head", Static))
            assert "INV-[red]7[/red]" in head and "Evil\\x1b[2J Corp [bold]X[/bold]" in head, head
            charges = text_of(detail.query_one("#charges-table"))
            assert "Calls\\x1b[31m RED\\rAPPROVED" in charges, charges
            await pilot.press("j")  # the adjust dialog's title: the number as it is, not red "INV-7"
            await settle(pilot)
            title = text_of(app.screen.query_one(".dialog-title", Static))
            assert title == "Adjust INV-[red]7[/red]", title

    run(scenario())
