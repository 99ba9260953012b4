"""Roles and four-eyes approval (issue 16), on SQLite and PostgreSQL: every
transition allowed and refused by role, the refusal sentence, nothing
written when refused, the first-user and last-admin rules, two approvals by
two people, the adjuster refused, the job loop holding what needs two, and
two approvers racing for the second approval."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
from decimal import Decimal

import pytest

from tui_billing import access, roles
from tui_billing import statuses as S
from tui_billing import workflow as W
from tui_billing.context import Ctx
from tui_billing.customer_classes import save_class
from tui_billing.errors import NotAllowed
from tui_billing.four_eyes import FourEyes
from tui_billing.revisions import mark_reviewed
from tui_billing.risk_settings import RiskSettings
from tui_billing.settings_change import change_setting
from tui_billing.store.models import AppUser, AuditEvent, Invoice, Setting

from . import factories as F


def as_(ctx: Ctx, name: str) -> Ctx:
    return Ctx(clock=ctx.clock, actor=name)


def team(ctx: Ctx, **people: str) -> None:
    """admin "root" first, then each name=role."""
    access.add_user(as_(ctx, "root"), "root", "admin")
    for name, role in people.items():
        access.add_user(as_(ctx, "root"), name, role)


def audit_count() -> int:
    return AuditEvent.select().count()


def reload(inv):
    return Invoice.get_by_id(inv.id)


# -- single-admin mode ----------------------------------------------------------


def test_single_admin_mode_allows_everything_and_records_no_role(store_url, ctx):
    inv = F.invoice()
    W.adjust(ctx, inv.number, "charge", Decimal("5"), "fee")
    W.approve(ctx, inv.number)  # the adjuster approves: one person, no four-eyes
    assert reload(inv).status == S.APPROVED
    assert {e.role for e in AuditEvent.select()} == {None}
    assert not access.team_mode()


# -- users ----------------------------------------------------------------------


def test_first_user_must_be_an_admin_and_then_only_admins_change_users(store_url, ctx):
    with pytest.raises(access.UserError) as exc:
        access.add_user(as_(ctx, "bob"), "bob", "approver")
    assert exc.value.field == "role" and "first user of a store must be an admin" in exc.value.reason
    assert AppUser.select().count() == 0 and audit_count() == 0  # nothing written
    team(ctx, bob="approver")
    with pytest.raises(NotAllowed) as exc:
        access.add_user(as_(ctx, "bob"), "carol", "admin")
    assert str(exc.value) == "bob may not manage users carol: role approver"
    with pytest.raises(NotAllowed):
        access.add_user(as_(ctx, "mallory"), "mallory", "admin")  # not a user at all
    assert [u.name for u in access.list_users()] == ["bob", "root"]
    _, previous = access.add_user(as_(ctx, "root"), "bob", "reviewer")
    assert previous == "approver" and access.role_of("bob") == "reviewer"
    ev = AuditEvent.select().where(AuditEvent.action == "user_role").get()
    assert (ev.actor, ev.role) == ("root", "admin")
    assert json.loads(ev.detail) == {"user": "bob", "role": "reviewer", "previous_role": "approver"}


def test_the_last_admin_stays(store_url, ctx):
    team(ctx)
    root = as_(ctx, "root")
    with pytest.raises(access.UserError, match="last admin"):
        access.remove_user(root, "root")
    with pytest.raises(access.UserError, match="last admin"):
        access.add_user(root, "root", "viewer")
    access.add_user(root, "ann", "admin")
    access.remove_user(root, "root")  # another admin exists now
    assert access.role_of("root") is None and access.role_of("ann") == "admin"
    assert AuditEvent.select().where(AuditEvent.action == "user_remove").count() == 1


@pytest.mark.parametrize("name", ["job:dispatch", "two words", ""])
def test_user_names_are_os_user_names(store_url, ctx, name):
    with pytest.raises((access.UserError, W.FieldError)):
        access.add_user(ctx, name, "admin")


# -- every transition x role ----------------------------------------------------------


def _approve(ctx, inv):
    W.approve(ctx, inv.number)


def _approve_flagged(ctx, inv):
    W.approve_many(ctx, [inv.number], include_flagged=True)


def _adjust(ctx, inv):
    W.adjust(ctx, inv.number, "credit", Decimal("1"), "goodwill")


def _reissue(ctx, inv):
    W.reissue_many(ctx, [inv.number], "off_peak")


def _review(ctx, inv):
    mark_reviewed(ctx, inv.number)


def _classes(ctx, inv):
    save_class(ctx, "Enterprise", hold_days=3)


def _settings(ctx, inv):
    change_setting(ctx, "risk_hold_score", "1500")


def _outbox(ctx, inv):
    from tui_billing import mail

    mail.retry(ctx, [])


def _bill_run(ctx, inv):
    from tui_billing.billrun import bill_run

    bill_run(ctx, dt.date(2026, 11, 1), dt.date(2026, 11, 30))


TRANSITIONS = {
    "approve": (_approve, "approve"),
    "accept_flags": (_approve_flagged, "approve"),
    "adjust": (_adjust, "adjust"),
    "reissue": (_reissue, "reissue"),
    "review": (_review, "mark reviewed"),
    "classes": (_classes, "change customer classes"),
    "settings": (_settings, "change settings"),
    "outbox": (_outbox, "act on the outbox"),
    "import": (_bill_run, "import usage or run the bill run"),
}


@pytest.mark.parametrize("role", roles.ROLES)
@pytest.mark.parametrize("action", sorted(TRANSITIONS))
def test_every_transition_checks_the_role(store_url, ctx, action, role):
    team(ctx, **({"pat": role} if role != "admin" else {}))
    who = "pat" if role != "admin" else "root"
    inv = F.invoice(number="INV-2026-000123")
    before_events, before = audit_count(), Invoice.get_by_id(inv.id).__data__.copy()
    run, verb = TRANSITIONS[action]
    person = as_(ctx, who)
    if roles.may(role, action):
        run(person, inv)
        if action not in ("outbox", "import"):  # (no mail, no open invoice: nothing to do)
            assert audit_count() > before_events
            assert AuditEvent.select().order_by(AuditEvent.id.desc()).get().role == role
    else:
        with pytest.raises(NotAllowed) as exc:
            run(person, inv)
        assert str(exc.value).startswith(f"{who} may not {verb}")
        assert str(exc.value).endswith(f": role {role}")
        assert audit_count() == before_events  # nothing written
        assert Invoice.get_by_id(inv.id).__data__ == before


def test_refusal_sentence_names_user_action_invoice_and_role(store_url, ctx):
    team(ctx, bob="reviewer")
    inv = F.invoice(number="INV-2026-000123")
    with pytest.raises(NotAllowed) as exc:
        W.approve(as_(ctx, "bob"), inv.number)
    assert str(exc.value) == "bob may not approve INV-2026-000123: role reviewer"
    with pytest.raises(NotAllowed) as exc:
        W.approve(as_(ctx, "eve"), inv.number)
    assert str(exc.value).startswith("eve may not approve INV-2026-000123: not a user of this store")


def test_a_role_changed_meanwhile_applies_at_once(store_url, ctx):
    team(ctx, bob="approver")
    bob = as_(ctx, "bob")
    a, b = F.invoice(), F.invoice()
    W.approve(bob, a.number)
    access.add_user(as_(ctx, "root"), "bob", "viewer")
    with pytest.raises(NotAllowed):
        W.approve(bob, b.number)
    assert reload(b).status == S.UNDER_REVIEW


def test_the_job_loop_is_a_system_actor(store_url, ctx):
    team(ctx)
    inv = F.invoice(generated=dt.datetime(2026, 11, 1))
    job = Ctx(clock=ctx.clock, actor="job:auto_approve")
    assert W.auto_approve_due(job).done == [inv.number]
    ev = AuditEvent.select().where(AuditEvent.action == "auto_approve").get()
    assert (ev.actor, ev.role) == ("job:auto_approve", None)


# -- four-eyes ------------------------------------------------------------------


@pytest.fixture
def four_eyes(store_url, ctx):
    team(ctx, alice="approver", bob="approver", carol="reviewer")
    change_setting(as_(ctx, "root"), "second_approval_above", "1000")
    return {n: as_(ctx, n) for n in ("alice", "bob", "carol", "root")}


def test_two_approvals_by_two_people_above_the_threshold(four_eyes):
    big = F.invoice(total=Decimal("1000.00"))  # at the threshold: two
    small = F.invoice(total=Decimal("999.99"))
    result = W.approve_many(four_eyes["alice"], [big.number, small.number])
    assert result.done == [small.number] and result.waiting == [big.number] and not result.failed
    got = reload(big)
    assert got.status == S.UNDER_REVIEW and got.first_approved_by == "alice"
    again = W.approve_many(four_eyes["alice"], [big.number])
    assert again.failed == [(big.number, "already has alice's approval (1 of 2): a second approver must approve it")]
    assert W.approve_many(four_eyes["bob"], [big.number]).done == [big.number]
    got = reload(big)
    assert (got.status, got.approved_by, got.first_approved_by) == (S.APPROVED, "bob", "alice")
    events = [
        (e.action, e.actor, e.role)
        for e in AuditEvent.select().where(AuditEvent.invoice == big.id).order_by(AuditEvent.id)
    ]
    assert events == [("approve_first", "alice", "approver"), ("approve", "bob", "approver")]
    detail = json.loads(
        AuditEvent.select().where((AuditEvent.invoice == big.id) & (AuditEvent.action == "approve")).get().detail
    )
    assert detail["first_approval"]["by"] == "alice"


def test_the_person_who_changed_a_revision_may_not_approve_it(four_eyes, ctx):
    inv = F.invoice(total=Decimal("100.00"))
    access.add_user(four_eyes["root"], "carol", "approver")
    W.adjust(four_eyes["carol"], inv.number, "charge", Decimal("10"), "late fee")
    result = W.approve_many(four_eyes["carol"], [inv.number])
    assert result.failed == [
        (
            inv.number,
            "was changed by carol (revision 2): a revision is approved by someone other than the person who made it",
        )
    ]
    assert W.approve_many(four_eyes["alice"], [inv.number]).done == [inv.number]


def test_a_change_after_the_first_approval_clears_it(four_eyes):
    inv = F.invoice(total=Decimal("5000.00"))
    W.approve(four_eyes["alice"], inv.number)
    assert reload(inv).first_approved_by == "alice"
    W.adjust(four_eyes["carol"], inv.number, "credit", Decimal("1"), "rounding")
    got = reload(inv)
    assert got.first_approved_by is None and got.changed_by == "carol"
    ev = AuditEvent.select().where(AuditEvent.action == "adjust").get()
    assert json.loads(ev.detail)["cleared_first_approval"] == "alice"
    assert W.approve_many(four_eyes["bob"], [inv.number]).waiting == [inv.number]  # first again
    assert W.approve_many(four_eyes["alice"], [inv.number]).done == [inv.number]


def test_a_reissue_names_who_asked_and_clears_the_first_approval(four_eyes, ctx):
    inv = F.invoice(total=Decimal("5000.00"))
    W.approve(four_eyes["alice"], inv.number)
    W.reissue_many(four_eyes["carol"], [inv.number], "now")
    got = reload(inv)
    assert (got.status, got.first_approved_by, got.changed_by) == (S.UNDER_REVIEW, None, "carol")


def test_other_currencies_convert_at_the_risk_rates(four_eyes):
    # USD=0.92: 1000 EUR is 1086.9566 USD (rounded up to the stored 1/10,000)
    below = F.invoice(total=Decimal("1086.95"), acc=F.account(currency="USD"), currency="USD")
    at = F.invoice(total=Decimal("1086.96"), acc=F.account(currency="USD"), currency="USD")
    result = W.approve_many(four_eyes["alice"], [below.number, at.number])
    assert result.done == [below.number] and result.waiting == [at.number]


def test_auto_approval_never_replaces_a_second_approval(four_eyes, ctx):
    due = dt.datetime(2026, 11, 1)
    big = F.invoice(total=Decimal("2000.00"), generated=due)
    half = F.invoice(total=Decimal("3000.00"), generated=due)
    small = F.invoice(total=Decimal("10.00"), generated=due)
    W.approve(four_eyes["alice"], half.number)
    job = Ctx(clock=ctx.clock, actor="job:auto_approve")
    result = W.auto_approve_due(job)
    assert result.done == [small.number]
    assert sorted(n for n, _ in result.held) == sorted([big.number, half.number])
    holds = {e.number: json.loads(e.detail) for e in AuditEvent.select().where(AuditEvent.action == "hold")}
    assert holds[big.number]["approvals"] == "0 of 2" and holds[half.number]["approvals"] == "1 of 2"
    assert reload(big).status == reload(half).status == S.UNDER_REVIEW
    assert W.auto_approve_due(job).done == []  # and stays held
    assert W.approve_many(four_eyes["bob"], [half.number]).done == [half.number]


def test_preview_says_which_need_a_second_approver(four_eyes):
    big, small = F.invoice(total=Decimal("1500.00")), F.invoice(total=Decimal("15.00"))
    p = W.preview_approve([big.id, small.id], four_eyes["alice"])
    assert p.ready == [big.number, small.number] and p.second_needed == [big.number]
    with pytest.raises(NotAllowed):
        W.preview_approve([big.id], four_eyes["carol"])


def test_sql_and_python_agree_at_the_edges(store_url, ctx):
    rules = FourEyes(True, Decimal("1000"), RiskSettings())
    currencies = ["EUR", "USD", "JPY", "GBP", "XXX"]
    invs = []
    for cur in currencies:
        edge = rules.min_total(cur)
        for delta in (Decimal("-0.0001"), Decimal(0), Decimal("0.0001")):
            invs.append(F.invoice(total=edge + delta, acc=F.account(currency=cur), currency=cur))
    from tui_billing.store.models import database

    sql, args = rules.sql(database.obj.param)
    ids = {i for (i,) in database.execute_sql(f"SELECT id FROM invoice WHERE {sql}", args)}
    assert ids == {i.id for i in invs if rules.needs_two(i.total, i.currency)}
    assert len(ids) == 2 * len(currencies)


def _racer(url: str, number: str, actor: str, queue) -> None:
    from tui_billing.clock import Clock, zone
    from tui_billing.store import db

    db.connect(url)
    result = W.approve_many(Ctx(clock=Clock(tz=zone("UTC"), fixed=dt.datetime(2026, 12, 1)), actor=actor), [number])
    queue.put((actor, result.done, result.waiting, result.failed))


@pytest.mark.slow
def test_three_approvers_racing_give_exactly_one_second_approval(four_eyes, store_url):
    access.add_user(four_eyes["root"], "dan", "approver")
    invs = [F.invoice(total=Decimal("5000.00")) for _ in range(6)]
    for inv in invs:
        W.approve(four_eyes["alice"], inv.number)  # the first approval
    spawn = mp.get_context("spawn")
    for inv in invs:
        queue = spawn.Queue()
        procs = [
            spawn.Process(target=_racer, args=(store_url, inv.number, who, queue)) for who in ("bob", "dan", "root")
        ]
        for p in procs:
            p.start()
        results = [queue.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(60)
        assert sum(len(done) for _, done, _, _ in results) == 1
        assert sum(len(waiting) for _, _, waiting, _ in results) == 0
        assert AuditEvent.select().where((AuditEvent.invoice == inv.id) & (AuditEvent.action == "approve")).count() == 1
        assert reload(inv).status == S.APPROVED


def test_setting_is_validated_by_the_amount_parser(store_url, ctx):
    with pytest.raises(W.FieldError) as exc:
        change_setting(ctx, "second_approval_above", "1,5")
    assert exc.value.field == "second_approval_above" and "decimal comma" in exc.value.reason
    assert Setting.select(Setting.value).where(Setting.key == "second_approval_above").scalar() in (None, "")
    assert audit_count() == 0
    assert change_setting(ctx, "second_approval_above", "10,000") == "10000.00"
    assert change_setting(ctx, "second_approval_above", "off") == ""
