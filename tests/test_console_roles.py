"""The console knows who you are (issue 16): the header shows user and role,
actions the role may not take are left out of the footer and say why when
their key is pressed, the approve question says which invoices need a second
approver, the queue says "1 of 2", and F6 lists the audit trail with filters."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from textual.widgets import DataTable, Input, Static

from tui_billing import access
from tui_billing import statuses as S
from tui_billing.context import Ctx
from tui_billing.settings_change import change_setting
from tui_billing.store.models import Invoice

from .conftest_console import console_env, console_template, make_app, settle, show_detail  # noqa: F401


def _team(env, **people) -> None:
    root = Ctx(clock=env.ctx.clock, actor="dana")
    access.add_user(root, "dana", "admin")
    for name, role in people.items():
        access.add_user(root, name, role)
    access.require(env.ctx, "view")  # as the CLI does when the console opens: ctx.role is the role


def _footer_keys(app) -> set[str]:
    return {b.action for (_, b, enabled, _) in app.screen.active_bindings.values() if b.show and enabled}


def test_header_and_footer_follow_the_role(console_env):
    _team(console_env, alice="reviewer")
    app = make_app(console_env)

    async def go():
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await settle(pilot)
            assert app.sub_title.startswith("alice (reviewer)")
            assert "approve" not in _footer_keys(app) and "adjust" in _footer_keys(app)
            await pilot.press("a")
            await settle(pilot)
            toasts = [n.message for n in app._notifications]
            assert any("alice may not approve: role reviewer" in t for t in toasts), toasts
            assert Invoice.select().where(Invoice.status == S.APPROVED).count() == approved_before

    approved_before = Invoice.select().where(Invoice.status == S.APPROVED).count()
    asyncio.run(go())


def test_single_admin_mode_shows_everything_as_before(console_env):
    app = make_app(console_env)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            assert app.sub_title.startswith("alice") and "(" not in app.sub_title.split(" · ")[0]
            assert {"approve", "adjust", "reissue"} <= _footer_keys(app)

    asyncio.run(go())


def test_approve_question_names_the_second_approver_and_the_queue_says_1_of_2(console_env):
    _team(console_env, alice="approver", bob="approver")
    change_setting(Ctx(clock=console_env.ctx.clock, actor="dana"), "second_approval_above", "0.01")
    inv = (
        Invoice.select()
        .where((Invoice.status == S.UNDER_REVIEW) & (Invoice.risk_score < 1000))
        .order_by(Invoice.total.desc())
        .first()
    )
    app = make_app(console_env)

    async def go():
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            screen = await show_detail(pilot, inv.id)
            await pilot.press("a")
            await settle(pilot)
            body = " ".join(str(s.render()) for s in app.screen.query(".dialog-body"))
            assert "yours is the first of two approvals" in body and inv.number in body
            await pilot.press("y")
            await settle(pilot)
            assert Invoice.get_by_id(inv.id).first_approved_by == "alice"
            assert Invoice.get_by_id(inv.id).status == S.UNDER_REVIEW
            await settle(pilot)
            head = str(screen.query_one("#detail-head", Static).render())
            assert "1 of 2 approvals: alice" in head

    asyncio.run(go())


def test_audit_screen_filters(console_env):
    from tui_billing import workflow as W

    _team(console_env, alice="reviewer")
    inv = Invoice.select().where(Invoice.status == S.UNDER_REVIEW).first()
    W.adjust(console_env.ctx, inv.number, "charge", Decimal("3"), "late fee")
    app = make_app(console_env)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("f6")
            await settle(pilot)
            screen = app.screen
            screen.query_one("#audit-actor", Input).value = "alice"
            screen.query_one("#audit-action", Input).value = "adjust"
            screen.action_reload()
            await settle(pilot)
            table = screen.query_one(DataTable)
            assert table.row_count == 1
            assert [str(c) for c in table.get_row_at(0)][1:4] == ["alice", "reviewer", "adjust"]
            screen.query_one("#audit-since", Input).value = "yesterday"
            screen.action_reload()
            await settle(pilot)
            assert "from (date or time): 'yesterday' is not an ISO 8601 date" in str(
                screen.query_one("#audit-summary", Static).render()
            )

    asyncio.run(go())
