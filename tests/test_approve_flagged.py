"""Issue 12, part 3: no flagged invoice leaves without a person.

An admin approves a flagged invoice only by accepting its flags (recorded in
the audit log); `approve --all` leaves flagged ones; `--dry-run` writes
nothing; the job loop holds a flagged invoice at the end of its hold (unless
auto_approve_flagged is on) and the admin digest lists it; the console's
confirmation shows flagged invoices apart and approves them only after a
second, explicit confirmation.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from decimal import Decimal

import pytest

from tui_billing import jobs, mail, risk
from tui_billing import statuses as S
from tui_billing import workflow as W
from tui_billing.store.models import AuditEvent, Invoice, OutboxMessage
from tui_billing.store.settings import save_setting

from . import factories as F
from .conftest_console import console_env, console_template  # noqa: F401

SPIKE = risk.Flag(code="total_spike", reason="total 10,000.00 EUR is 5.0x its usual 2,000.00")
TAX = risk.Flag(code="tax_ratio", reason="tax is 0.0 % of the net charges 100.00; usually 20.0 %")
DUE = dt.datetime(2026, 11, 10, 9, 0)  # generated then: hold of 5 days ran out before FIXED_NOW


def flag(inv: Invoice, *flags: risk.Flag, score: int = 1200) -> Invoice:
    """Make an invoice flagged, directly on its row."""
    flags = flags or (SPIKE,)
    Invoice.update(risk_score=score, risk_flags=risk.dumps_flags(list(flags))).where(Invoice.id == inv.id).execute()
    return reload(inv)


def reload(inv: Invoice) -> Invoice:
    return Invoice.get_by_id(inv.id)


def events(inv: Invoice, action: str | None = None) -> list[AuditEvent]:
    q = AuditEvent.select().where(AuditEvent.invoice == inv.id)
    if action:
        q = q.where(AuditEvent.action == action)
    return list(q.order_by(AuditEvent.id))


def job_ctx(ctx: W.Ctx) -> W.Ctx:
    return W.Ctx(clock=ctx.clock, actor="job:auto_approve")


# -- the domain: approve and preview ----------------------------------------------


def test_approve_refuses_a_flagged_invoice_and_names_its_flags(store_url, ctx):
    bad = flag(F.invoice(number="INV-2026-000777"), SPIKE, TAX)
    good = F.invoice()
    with pytest.raises(W.Refused) as exc:
        W.approve(ctx, bad.number)
    assert str(exc.value) == ("INV-2026-000777 is flagged (spike, tax): check it, then approve with --include-flagged")
    assert reload(bad).status == S.UNDER_REVIEW and events(bad) == []

    result = W.approve_many(ctx, [bad.id, good.id])
    assert result.done == [good.number]
    assert result.failed == [(bad.number, "is flagged (spike, tax): check it, then approve with --include-flagged")]
    assert reload(bad).status == S.UNDER_REVIEW and reload(good).status == S.APPROVED
    assert result.accepted == []


def test_approve_with_include_flagged_records_who_accepted_which_flags_at_which_revision(store_url, ctx):
    inv = flag(F.invoice(revision=3), SPIKE, TAX)
    plain = F.invoice()
    result = W.approve_many(ctx, [inv.id, plain.id], include_flagged=True)
    assert sorted(result.done) == sorted([inv.number, plain.number])
    assert [(n, [f.code for f in fl]) for n, fl in result.accepted] == [(inv.number, ["total_spike", "tax_ratio"])]
    got = reload(inv)
    assert got.status == S.APPROVED and got.approved_by == "alice"
    (ev,) = events(inv, "approve")
    assert (ev.actor, ev.before_status, ev.after_status) == ("alice", S.UNDER_REVIEW, S.APPROVED)
    detail = json.loads(ev.detail)
    assert detail["revision"] == 3
    assert detail["accepted_flags"] == [
        {"code": "total_spike", "reason": SPIKE.reason, "at_stake": "0"},
        {"code": "tax_ratio", "reason": TAX.reason, "at_stake": "0"},
    ]
    # An unflagged invoice approved in the same call accepts nothing.
    (plain_ev,) = events(plain, "approve")
    assert "accepted_flags" not in json.loads(plain_ev.detail)


def test_the_refusal_is_checked_again_under_the_lock(store_url, ctx):
    """The preview is advisory: an invoice flagged after it is still refused."""
    inv = F.invoice()
    preview = W.preview_approve([inv.id])
    assert preview.ready == [inv.number]
    flag(inv)  # e.g. an adjust re-assessed it meanwhile
    result = W.approve_many(ctx, preview.ready_ids)
    assert result.done == [] and "is flagged (spike)" in result.failed[0][1]
    assert reload(inv).status == S.UNDER_REVIEW


def test_preview_sorts_ready_flagged_refused_and_writes_nothing(store_url, ctx):
    ready = F.invoice(total=Decimal("100.00"))
    flagged = flag(F.invoice(total=Decimal("10000.00")))
    rejected = F.invoice(status=S.REJECTED)
    sent = F.invoice(status=S.UNPAID)
    flagged_sent = flag(F.invoice(status=S.APPROVED))  # its status refuses it first
    before = AuditEvent.select().count()
    p = W.preview_approve([ready.id, flagged.number, rejected.id, sent.id, flagged_sent.id, 999_999, ready.id])
    assert p.ready == [ready.number] and p.ready_ids == [ready.id]
    assert [(f.number, [x.code for x in f.flags]) for f in p.flagged] == [(flagged.number, ["total_spike"])]
    assert p.flagged_ids == [flagged.id] and p.flagged[0].reason.startswith("is flagged (spike)")
    assert p.refused == [
        (rejected.number, W.APPROVE_REFUSALS[S.REJECTED]),
        (sent.number, W.APPROVE_REFUSALS[S.UNPAID]),
        (flagged_sent.number, "is already approved"),
        ("999999", "does not exist"),
    ]
    assert p.ready_totals == {"EUR": Decimal("100.00")} and p.flagged_totals == {"EUR": Decimal("10000.00")}
    assert not p.all_ready() and not p.all_ready(include_flagged=True)
    assert W.preview_approve([ready.id, flagged.id]).all_ready(include_flagged=True)
    assert AuditEvent.select().count() == before
    assert reload(ready).status == S.UNDER_REVIEW and reload(flagged).status == S.UNDER_REVIEW


# -- the CLI ----------------------------------------------------------------------------


def test_cli_approve_named_flagged_is_a_refusal_the_others_are_done(store_url, cli):
    bad = flag(F.invoice())
    good = F.invoice()
    code, out, err = cli("approve", bad.number, good.number)
    assert code == 1
    assert "approved: 1 done, 1 failed" in out
    assert f"{bad.number}: is flagged (spike): check it, then approve with --include-flagged" in err
    assert reload(bad).status == S.UNDER_REVIEW and reload(good).status == S.APPROVED

    code, out, err = cli("approve", bad.number, "--include-flagged", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["done"] == [bad.number] and doc["failed"] == []
    assert doc["accepted_flags"] == [
        {"number": bad.number, "flags": [{"code": "total_spike", "reason": SPIKE.reason, "at_stake": "0"}]}
    ]
    (ev,) = events(bad, "approve")
    assert json.loads(ev.detail)["accepted_flags"][0]["code"] == "total_spike"


def test_cli_approve_all_leaves_flagged_ones_and_reports_each(store_url, cli):
    flagged = [flag(F.invoice()) for _ in range(2)]
    plain = [F.invoice() for _ in range(3)]
    code, out, _ = cli("approve", "--all", "--json")
    assert code == 1
    doc = json.loads(out)
    assert sorted(doc["done"]) == sorted(i.number for i in plain)
    assert sorted(f["number"] for f in doc["failed"]) == sorted(i.number for i in flagged)
    assert all("is flagged (spike)" in f["reason"] for f in doc["failed"])
    assert {reload(i).status for i in flagged} == {S.UNDER_REVIEW}
    assert {reload(i).status for i in plain} == {S.APPROVED}
    # Flags are accepted invoice by invoice, never for "all matching".
    code, _, err = cli("approve", "--all", "--include-flagged")
    assert code == 2 and "include-flagged" in err
    assert {reload(i).status for i in flagged} == {S.UNDER_REVIEW}


def test_cli_approve_all_text_lists_each_flagged_on_stderr(store_url, cli):
    flagged = flag(F.invoice())
    plain = F.invoice()
    code, out, err = cli("approve", "--all")
    assert code == 1 and "approved: 1 done, 1 failed" in out
    assert f"{flagged.number}: is flagged (spike)" in err and plain.number not in err


def test_cli_dry_run_writes_nothing(store_url, cli):
    ready = F.invoice()
    flagged = flag(F.invoice(), SPIKE, TAX)
    rejected = F.invoice(status=S.REJECTED)
    audits = AuditEvent.select().count()
    states = {i.id: (reload(i).status, reload(i).approved_at) for i in (ready, flagged, rejected)}

    code, out, err = cli("approve", ready.number, flagged.number, rejected.number, "--dry-run", "--json")
    assert code == 1, err
    doc = json.loads(out)
    assert doc["dry_run"] is True
    assert doc["would_approve"] == [ready.number]
    assert doc["accepting_flags"] == []
    assert [n["number"] for n in doc["needs_acceptance"]] == [flagged.number]
    assert [f["code"] for f in doc["needs_acceptance"][0]["flags"]] == ["total_spike", "tax_ratio"]
    assert doc["refused"] == [{"number": rejected.number, "reason": W.APPROVE_REFUSALS[S.REJECTED]}]

    code, out, err = cli("approve", ready.number, flagged.number, "--dry-run")
    assert code == 1
    assert "1 would be approved, 1 need their flags accepted, 0 would be refused" in out
    assert f"approve  {ready.number}" in out and f"{flagged.number}: is flagged (spike, tax)" in err

    code, out, _ = cli("approve", ready.number, flagged.number, "--dry-run", "--include-flagged", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["would_approve"] == [ready.number, flagged.number] and doc["needs_acceptance"] == []
    assert [a["number"] for a in doc["accepting_flags"]] == [flagged.number]

    code, out, _ = cli("approve", "--all", "--dry-run", "--json")
    assert code == 1 and json.loads(out)["would_approve"] == [ready.number]

    assert AuditEvent.select().count() == audits
    assert {i.id: (reload(i).status, reload(i).approved_at) for i in (ready, flagged, rejected)} == states


# -- the job loop: held, not auto-approved -------------------------------------------


def test_auto_approve_holds_a_flagged_invoice_and_approves_the_others(store_url, ctx):
    flagged = flag(F.invoice(generated=DUE), SPIKE, TAX)
    plain = F.invoice(generated=DUE)
    not_due = flag(F.invoice(generated=dt.datetime(2026, 11, 19, 9, 0)))
    Invoice.update(notified_at=ctx.clock.now() - dt.timedelta(days=5)).execute()  # all announced earlier

    result = W.auto_approve_due(job_ctx(ctx))
    assert result.done == [plain.number]
    assert [(n, [f.code for f in fl]) for n, fl in result.held] == [(flagged.number, ["total_spike", "tax_ratio"])]
    got = reload(flagged)
    assert got.status == S.UNDER_REVIEW and got.held_at == ctx.clock.now() and got.approved_at is None
    assert got.notified_at is None  # announced again, as held, in the next digest
    assert reload(plain).status == S.APPROVED
    assert reload(not_due).held_at is None and reload(not_due).status == S.UNDER_REVIEW
    (ev,) = events(flagged, "hold")
    assert (ev.actor, ev.before_status, ev.after_status) == ("job:auto_approve", S.UNDER_REVIEW, S.UNDER_REVIEW)
    detail = json.loads(ev.detail)
    assert [f["code"] for f in detail["flags"]] == ["total_spike", "tax_ratio"]
    assert detail["flags"][0]["reason"] == SPIKE.reason and detail["revision"] == got.revision
    assert W.held_count() == 1

    # The next ticks neither approve it nor hold it again: held_at stays the first hold's.
    later = W.Ctx(
        clock=type(ctx.clock)(tz=ctx.clock.tz, fixed=ctx.clock.now() + dt.timedelta(hours=1)), actor="job:auto_approve"
    )
    again = W.auto_approve_due(later)
    assert again.done == [] and again.held == []
    assert reload(flagged).held_at == ctx.clock.now() and len(events(flagged, "hold")) == 1

    # Re-assessed clean (an adjust, say): held_at stays, and only a person lets it out.
    Invoice.update(risk_score=0, risk_flags="").where(Invoice.id == flagged.id).execute()
    assert W.auto_approve_due(later).done == []
    assert reload(flagged).status == S.UNDER_REVIEW and W.held_count() == 1
    W.approve(ctx, flagged.id)
    assert reload(flagged).status == S.APPROVED and W.held_count() == 0


def test_auto_approve_flagged_on_approves_a_flagged_invoice(store_url, ctx):
    save_setting("auto_approve_flagged", "on")
    flagged = flag(F.invoice(generated=DUE))
    result = W.auto_approve_due(job_ctx(ctx))
    assert result.done == [flagged.number] and result.held == []
    got = reload(flagged)
    assert got.status == S.APPROVED and got.held_at is None
    (ev,) = events(flagged, "auto_approve")
    assert json.loads(ev.detail)["flags"][0]["code"] == "total_spike"
    assert events(flagged, "hold") == []


def test_risk_hold_score_sets_what_is_held(store_url, ctx):
    save_setting("risk_hold_score", "2000")
    mild = flag(F.invoice(generated=DUE), score=1200)
    severe = flag(F.invoice(generated=DUE), score=2500)
    result = W.auto_approve_due(job_ctx(ctx))
    assert result.done == [mild.number] and [n for n, _ in result.held] == [severe.number]
    assert reload(severe).held_at is not None


def test_job_logs_held_invoices_and_goes_on_past_a_full_batch(store_url, ctx):
    held = [flag(F.invoice(generated=DUE)) for _ in range(3)]
    plain = [F.invoice(generated=DUE) for _ in range(2)]
    lines = []
    res = jobs.auto_approve_due(job_ctx(ctx), batch=2, log=lambda job, **f: lines.append((job, f)))
    assert res.done == 2 and res.skipped == 3
    assert {reload(i).status for i in plain} == {S.APPROVED}
    assert all(reload(i).held_at is not None for i in held)
    assert sorted(f["invoice"] for _, f in lines if f["action"] == "held") == sorted(i.number for i in held)
    assert all(f["flags"] == "total_spike" for _, f in lines if f["action"] == "held")


def test_a_batch_approves_and_holds_at_most_its_limit(store_url, ctx):
    """PostgreSQL ran `id IN (SELECT … LIMIT 2 FOR UPDATE SKIP LOCKED)` again for
    each row it scanned (a small table): one batch took all 7 due invoices."""
    flagged = [flag(F.invoice(generated=DUE)) for _ in range(3)]
    plain = [F.invoice(generated=DUE) for _ in range(7)]
    first = W.auto_approve_due(job_ctx(ctx), limit=2)
    assert first.done == [i.number for i in plain[:2]]
    assert [n for n, _ in first.held] == [i.number for i in flagged[:2]]


def test_the_job_looks_for_invoices_to_hold_only_while_a_batch_held_a_batch(store_url, ctx, caplog):
    """Looking for due invoices to hold reads every due invoice left: once a
    batch, the tick of 10,000 due took 1.5x one set-based UPDATE."""
    held = [flag(F.invoice(generated=DUE)) for _ in range(3)]
    plain = [F.invoice(generated=DUE) for _ in range(7)]
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        res = jobs.auto_approve_due(job_ctx(ctx), batch=2)
    assert res.done == 7 and res.skipped == 3
    assert {reload(i).status for i in plain} == {S.APPROVED}
    assert all(reload(i).held_at is not None and reload(i).status == S.UNDER_REVIEW for i in held)
    # Four batches: the first held two (a full batch), the second one; the last two did not look.
    looked = [r for r in caplog.records if "SET held_at" in str(r.msg)]
    assert len(looked) == 2


def test_two_job_loops_hold_each_flagged_invoice_once(store_url, ctx):
    """PostgreSQL: the holds are claimed with SKIP LOCKED like the approvals."""
    from .test_multi_loop import in_threads

    flagged = [flag(F.invoice(generated=DUE)) for _ in range(30)]
    plain = [F.invoice(generated=DUE) for _ in range(30)]

    def work(i):
        lines = []
        jobs.auto_approve_due(
            W.Ctx(clock=ctx.clock, actor=f"job:loop{i}"),
            batch=4,
            log=lambda job, **f: lines.append((f["action"], f["invoice"])),
        )
        return lines

    a, b = in_threads(2, work)
    assert not set(a) & set(b)
    assert sorted(n for act, n in a + b if act == "held") == sorted(i.number for i in flagged)
    assert sorted(n for act, n in a + b if act == "approved") == sorted(i.number for i in plain)
    assert AuditEvent.select().where(AuditEvent.action == "hold").count() == 30
    assert AuditEvent.select().where(AuditEvent.action == "auto_approve").count() == 30
    assert {reload(i).status for i in flagged} == {S.UNDER_REVIEW} and W.held_count() == 30


def test_digest_lists_held_invoices_with_their_flags(store_url, ctx):
    acc = F.account(name="Globex Corporation")
    flagged = flag(F.invoice(acc=acc, generated=DUE, total=Decimal("10000.00")), SPIKE, TAX)
    fresh = F.invoice(generated=dt.datetime(2026, 11, 19, 9, 0))
    assert jobs.notify_admins(ctx).done == 2  # both announced as waiting for review
    W.auto_approve_due(job_ctx(ctx))  # the flagged one is held: announced again, as held
    assert jobs.notify_admins(ctx).done == 1
    assert jobs.notify_admins(ctx).done == 0

    first, second = OutboxMessage.select().where(OutboxMessage.kind == mail.DIGEST).order_by(OutboxMessage.id)
    assert "held (flagged)" in first.body and "Held for a person" not in first.body
    assert fresh.number in first.body and flagged.number in first.body
    assert second.subject == "1 flagged invoice held for review"
    body = second.body
    assert "Held for a person (flagged)" in body and fresh.number not in body
    section = body[body.index("Held for a person (flagged)") :]
    assert flagged.number in section and "Globex Corporation" in section and "10,000.00" in section
    assert SPIKE.reason in section and TAX.reason in section
    assert "--include-flagged" in section


# -- the console ------------------------------------------------------------------------


def test_console_lists_flagged_apart_and_approves_only_the_unflagged(console_env):
    from textual.widgets import Static

    from tui_billing.screens.confirm import ApproveModal, ConfirmModal
    from tui_billing.screens.summary import SummaryModal
    from tui_billing.widgets.invoice_table import InvoiceTable

    from .conftest_console import make_app, settle
    from .test_console import move_to, run

    target = Invoice.select().where(Invoice.status == S.UNDER_REVIEW).order_by(Invoice.id).first()
    target = flag(target, SPIKE, TAX, score=90_000)  # the riskiest: first in the queue

    async def scenario(accept: bool):
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            await move_to(pilot, table, lambda r: r.id == target.id)
            await pilot.press("space")
            other = await move_to(
                pilot, table, lambda r: r.status == S.UNDER_REVIEW and not risk.is_flagged(r.risk_score)
            )
            await pilot.press("space")
            await pilot.press("a")
            await settle(pilot)
            modal = app.screen
            assert isinstance(modal, ApproveModal)
            body = str(modal.query_one(".dialog-body", Static).render())
            head, _, flagged_part = body.partition("1 flagged invoice: approved only if you accept")
            assert "Approve 1 unflagged invoice under review?" in head and other.number in head
            assert target.number not in head
            assert target.number in flagged_part and "spike, tax" in flagged_part
            if not accept:
                await pilot.press("y")
                await settle(pilot)
                assert isinstance(app.screen, SummaryModal)
                assert app.screen.result.done == [other.number] and not app.screen.result.failed
                return other
            await pilot.press("f")
            await settle(pilot)
            confirm = app.screen
            assert isinstance(confirm, ConfirmModal)
            text = str(confirm.query_one(".dialog-body", Static).render())
            assert "Accept the flags of 1 invoice" in text and SPIKE.reason in text and TAX.reason in text
            await pilot.press("y")
            await settle(pilot)
            assert isinstance(app.screen, SummaryModal)
            assert sorted(app.screen.result.done) == sorted([other.number, target.number])
            return other

    other = run(scenario(accept=False))
    assert reload(target).status == S.UNDER_REVIEW and events(target, "approve") == []
    assert Invoice.get(Invoice.number == other.number).status == S.APPROVED

    run(scenario(accept=True))
    assert reload(target).status == S.APPROVED
    (ev,) = events(target, "approve")
    detail = json.loads(ev.detail)
    assert ev.actor == "alice" and [f["code"] for f in detail["accepted_flags"]] == ["total_spike", "tax_ratio"]
    assert detail["revision"] == reload(target).revision
