"""Risk review in the console and `show` (issue 12): the expected total beside
the total, the money at stake, the account's recent totals as a chart in the
detail, and the invoices held for a person."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from textual.widgets import Static

from tui_billing import statuses as S
from tui_billing.risk import FLAGGED, Flag, dumps_flags
from tui_billing.store.models import ChargeLine, Invoice
from tui_billing.widgets.history_chart import HistoryChart
from tui_billing.widgets.invoice_table import InvoiceTable

from . import factories as F
from .conftest_console import CONSOLE_NOW, console_env, console_template, make_app, settle, show_detail  # noqa: F401


def run(coro):
    import asyncio

    return asyncio.run(coro)


def text_of(widget) -> str:
    """What a widget shows on screen, whitespace folded."""
    return " ".join(" ".join(s.text.rstrip() for s in widget.render_lines(widget.region.reset_offset)).split())


def first_in_queue(n: int) -> list[Invoice]:
    """The first n invoices under review in the queue's order (risk, then deadline): all on its first page."""
    from tui_billing.store import queries

    f = queries.make_filters(status=[S.UNDER_REVIEW, S.REJECTED])
    ids = [r.id for r in queries.page(f, sort="risk", limit=50) if r.status == S.UNDER_REVIEW][:n]
    assert len(ids) == n
    return [Invoice.get_by_id(i) for i in ids]


def flag(invoice_id: int, flags: list[Flag], **fields) -> None:
    """Flag an invoice as the bill run would: a score of at least FLAGGED."""
    Invoice.update(risk_score=FLAGGED + sum(f.weight for f in flags), risk_flags=dumps_flags(flags), **fields).where(
        Invoice.id == invoice_id
    ).execute()


# ---------------------------------------------------------------------------


def test_queue_shows_the_expected_total_beside_the_total(console_env):
    known, unknown = first_in_queue(2)
    Invoice.update(total=Decimal("12400.00"), currency="EUR", expected_total=Decimal("4010.00")).where(
        Invoice.id == known.id
    ).execute()
    Invoice.update(expected_total=None).where(Invoice.id == unknown.id).execute()

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            keys = [c.key for c in table.visible_specs()]
            # 80 columns: right after Total, the amount alone (Total beside it names the currency).
            assert keys[keys.index("total") + 1] == "expected_amount"
            assert table.get_cell(str(known.id), "expected_amount").plain == "4,010.00"
            assert table.get_cell(str(unknown.id), "expected_amount").plain == ""  # no history: blank
            assert "12,400.00 EUR" in text_of(table) and "4,010.00" in text_of(table)
            # Every column still fits: nothing scrolls sideways, the account keeps its minimum.
            widths = sum(c.get_render_width(table) for c in table.columns.values())
            assert widths <= table.size.width, (widths, table.size.width)
            assert table.columns["account"].width >= table.min_flex
            # Wider: Expected formatted like Total, and a Flags column of its own.
            await pilot.resize_terminal(120, 40)
            await settle(pilot)
            keys = [c.key for c in table.visible_specs()]
            assert keys[keys.index("total") + 1] == "expected" and "flags" in keys
            assert table.get_cell(str(known.id), "expected").plain == "4,010.00 EUR"
            assert table.get_cell(str(unknown.id), "expected").plain == ""

    run(scenario())


def test_queue_header_counts_the_invoices_held_for_a_person(console_env):
    held = first_in_queue(3)
    for inv in held:
        flag(
            inv.id,
            [Flag("total_spike", "total 12,400.00 EUR is 3.1x its usual 4,010.00")],
            held_at=CONSOLE_NOW - dt.timedelta(hours=1),
        )

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            counts = app.screen.query_one("#counts", Static)
            under_review = Invoice.select().where(Invoice.status == S.UNDER_REVIEW).count()
            assert f"Under review {under_review}" in text_of(counts)
            assert "3 held for a person" in text_of(counts)
            # 80 columns, no Flags column: the Review cell says it is held, and why.
            table = app.screen.query_one(InvoiceTable)
            assert table.get_cell(str(held[0].id), "review").plain == "held: spike"
            # One is approved elsewhere (its flags accepted): the count follows on refresh.
            Invoice.update(held_at=None).where(Invoice.id == held[0].id).execute()
            await pilot.press("f5")
            await settle(pilot)
            assert "2 held for a person" in text_of(counts)
            Invoice.update(held_at=None).where(Invoice.id.in_([i.id for i in held])).execute()
            await pilot.press("f5")
            await settle(pilot)
            assert "held for a person" not in text_of(counts)

    run(scenario())


def account_history(inv: Invoice) -> list[Invoice]:
    """The account's regular issued invoices up to inv, by period (the test's own reading)."""
    rows = [
        i
        for i in Invoice.select().where(
            (Invoice.account == inv.account_id) & (Invoice.kind == "regular") & (Invoice.currency == inv.currency)
        )
        if (i.status != S.OPEN or i.id == inv.id) and (i.period_from, i.id) <= (inv.period_from, inv.id)
    ]
    return sorted(rows, key=lambda i: (i.period_from, i.id))[-12:]


def test_detail_charts_the_accounts_recent_totals_and_the_flagged_service(console_env):
    inv = next(
        i
        for i in Invoice.select()
        .where((Invoice.status == S.UNDER_REVIEW) & (Invoice.kind == "regular"))
        .order_by(Invoice.id)
        if len(account_history(i)) >= 4
        and ChargeLine.select().where(ChargeLine.invoice == i.id, ChargeLine.service != "").exists()
    )
    earlier = account_history(inv)[:-1]
    spike = (max(i.total for i in earlier) * 10).quantize(Decimal("0.01"))
    service = ChargeLine.select().where(ChargeLine.invoice == inv.id, ChargeLine.service != "").first().service
    flag(
        inv.id,
        [
            Flag("total_spike", f"total {spike:,} is 10.0x its usual"),
            Flag("usage_quantity", f"{service} quantity 12,400 is 3.1x its usual 4,000"),
        ],
        total=spike,
        expected_total=Decimal("4010.00"),
        risk_at_stake=Decimal("8390.00"),
    )
    history = account_history(Invoice.get_by_id(inv.id))
    by_service = {
        i.id: sum(
            (
                c.amount - c.discount
                for c in ChargeLine.select().where((ChargeLine.invoice == i.id) & (ChargeLine.service == service))
            ),
            Decimal(0),
        )
        for i in history
    }

    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            detail = await show_detail(pilot, inv.id)
            chart = detail.query_one("#detail-chart", HistoryChart)
            totals, amounts = chart.series
            # Oldest to newest, this invoice last and the one highlighted.
            assert list(totals.values) == [i.total for i in history]
            assert totals.current == len(history) - 1 and totals.values[totals.current] == spike
            assert amounts.title == service
            assert list(amounts.values) == [by_service[i.id] for i in history]
            # The spike is seen, not read: only this invoice's bar reaches the top row.
            lines = chart.render().plain.splitlines()
            top, marker = lines[1], lines[3]
            assert top[totals.current] == "█" and set(top[: totals.current]) == {" "}, lines
            assert marker.index("▲") == totals.current and "this" in marker
            # Beside the header group, inside 80 columns.
            head = detail.query_one("#detail-head", Static)
            assert chart.region.y == head.region.y and chart.region.right <= 80
            shown = text_of(head)
            assert f"Total {spike:,.2f} {inv.currency} · expected 4,010.00" in shown
            flags = text_of(detail.query_one("#detail-flags", Static))
            assert "8,390.00 EUR at stake" in flags and f"risk score {FLAGGED + 35 + 35}" in flags

    run(scenario())


def test_show_json_carries_expected_money_at_stake_and_held(store_url, cli):
    from tui_billing.store.settings import save_setting

    save_setting("reporting_currency", "JPY")  # at stake is in the reporting currency, not the invoice's
    flagged = F.invoice(total=Decimal("12400.00"))
    calm = F.invoice(total=Decimal("90.00"))
    flag(
        flagged.id,
        [Flag("total_spike", "total 12,400.00 EUR is 3.1x its usual 4,010.00")],
        expected_total=Decimal("4010.00"),
        risk_at_stake=Decimal("1353180"),
        held_at=dt.datetime(2026, 11, 20, 9, 30),
    )

    doc = json.loads(cli("show", flagged.number, "--json")[1])
    assert doc["expected_total"] == "4010.00"
    assert doc["risk_at_stake"] == "1353180" and doc["risk_at_stake_currency"] == "JPY"
    assert doc["flagged"] is True and doc["held"] is True and doc["held_at"] == "2026-11-20T09:30:00+00:00"
    doc = json.loads(cli("show", calm.number, "--json")[1])
    assert doc["expected_total"] is None and doc["risk_at_stake"] is None
    assert doc["flagged"] is False and doc["held"] is False and doc["held_at"] is None
    # find --json: the same invoice objects.
    (found,) = json.loads(cli("find", "--number", flagged.number, "--json")[1])["invoices"]
    assert (found["expected_total"], found["risk_at_stake"], found["held"]) == ("4010.00", "1353180", True)
    # And in words.
    code, out, _ = cli("show", flagged.number)
    assert code == 0
    assert "Expected        4,010.00 EUR" in out
    assert "flagged · 1,353,180 JPY at stake if the flags are right · risk score 1035" in out
    assert "Held            2026-11-20 09:30" in out
