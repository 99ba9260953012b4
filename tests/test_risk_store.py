"""Risk review on a real store (SQLite and PostgreSQL): flags at generation,
adjust, reissue and closing; the risk-ordered queue; the CLI; the demo."""

from __future__ import annotations

import collections
import datetime as dt
import json
from decimal import Decimal as D

import pytest

from tui_billing import billrun, risk, workflow
from tui_billing import statuses as S
from tui_billing.store import queries, risk_store
from tui_billing.store.models import ChargeLine, Invoice, InvoiceSnapshot, Subscription, Xdr
from tui_billing.store.settings import save_setting

from . import factories as F

OCT_FROM, OCT_TO = dt.date(2026, 10, 1), dt.date(2026, 10, 31)


def month(m: int) -> tuple[dt.date, dt.date]:
    first = dt.date(2026, m, 1)
    last = (dt.date(2026, m + 1, 1) if m < 12 else dt.date(2027, 1, 1)) - dt.timedelta(days=1)
    return first, last


def history(acc, totals=("100.00", "100.00", "100.00"), *, usage=None, months=(7, 8, 9)):
    """Paid invoices of earlier months: one fee line each (plus a usage line if given)."""
    out = []
    for m, total in zip(months, totals):
        p_from, p_to = month(m)
        inv = F.invoice(
            status=S.PAID,
            total=D(total),
            acc=acc,
            period_from=p_from,
            period_to=p_to,
            generated=dt.datetime(2026, m + 1, 1, 3),
            number=f"HIST-{acc.id}-{m:02d}",
        )
        if usage is not None:
            ChargeLine.create(
                invoice=inv,
                position=2,
                description="Voice calls usage",
                service="Voice calls",
                quantity=D("100"),
                amount=D(usage),
            )
        out.append(inv)
    return out


def flag_codes(inv) -> list[str]:
    return [f.code for f in risk.parse_flags(Invoice.get_by_id(inv.id).risk_flags)]


def xdr(acc, xid, service, when, qty, amount):
    Xdr.create(xdr_id=xid, account=acc, service=service, time=when, quantity=D(qty), amount=D(amount))


# --------------------------------------------------------------------------
# Generation (bill run), adjust, reissue, closing


def test_bill_run_flags_a_spike_and_a_new_service_with_reasons(store_url, ctx):
    acc = F.account()
    history(acc)
    xdr(acc, "v1", "Voice calls", dt.datetime(2026, 10, 3, 10), "1000", "1000.00")
    quiet = F.account(name="Quiet Ltd")
    history(quiet)
    Subscription.create(
        account=quiet,
        name="Business Fibre 1 Gbit/s",
        service="Internet",
        status="active",
        fee=D("110.00"),
        active_from=dt.date(2026, 1, 1),
    )

    result = billrun.bill_run(ctx, OCT_FROM, OCT_TO)
    assert len(result.created) == 2
    spiky = Invoice.get((Invoice.account == acc.id) & (Invoice.period_from == OCT_FROM))
    assert risk.parse_flags(spiky.risk_flags) == [
        risk.Flag("total_spike", "total 1,000.00 EUR is 10.0x its usual 100.00 (median of 3 invoices)", D("900.00")),
        risk.Flag(
            "new_service",
            "Voice calls (1,000.00 EUR) billed for the first time; not on the last 3 invoices",
            D("1000.00"),
        ),
    ]
    # Flagged: FLAGGED + the evidence + the money at stake (the larger of the two, in EUR).
    assert spiky.risk_at_stake == D("1000.00")
    assert spiky.risk_score == (
        risk.FLAGGED + risk.WEIGHTS["total_spike"] + risk.WEIGHTS["new_service"] + risk.money_points(D("1000.00"))
    )
    calm = Invoice.get((Invoice.account == quiet.id) & (Invoice.period_from == OCT_FROM))
    assert calm.risk_flags == "" and not risk.is_flagged(calm.risk_score)
    assert calm.expected_total is not None


def test_history_is_the_last_six_issued_regular_invoices_before_the_period(store_url, ctx):
    acc = F.account()
    history(
        acc, ("1.00", "10.00", "100.00", "100.00", "100.00", "100.00", "100.00"), months=(1, 2, 4, 5, 7, 8, 9)
    )  # January is too old to count
    F.invoice(
        status=S.PAID, total=D("5.00"), acc=acc, kind="manual", period_from=month(6)[0], period_to=month(6)[1]
    )  # not regular
    F.invoice(status=S.OPEN, total=D("1.00"), acc=acc, period_from=month(10)[0], period_to=month(10)[1])
    past = risk_store.load_histories([acc.id], dt.date(2026, 11, 1))[acc.id]
    assert [p.period_from.month for p in past] == [9, 8, 7, 5, 4, 2]
    assert [p.total for p in past] == [D("100.00")] * 5 + [D("10.00")]
    assert [c.description for c in past[0].charges] == ["Business Fibre 1 Gbit/s — monthly fee"]
    assert risk_store.load_histories([acc.id, 999], dt.date(2026, 8, 1)) == {
        acc.id: risk_store.load_histories([acc.id], dt.date(2026, 8, 1))[acc.id],
        999: [],
    }


def test_adjust_snapshots_first_then_flags_a_large_correction(store_url, ctx):
    inv = F.invoice(total=D("100.00"))
    workflow.adjust(ctx, inv.number, "credit", D("10.00"), "Small goodwill credit")
    assert Invoice.get_by_id(inv.id).risk_score == 0
    after = workflow.adjust(ctx, inv.number, "credit", D("50.00"), "Refund of a disputed month")
    assert risk.parse_flags(after.risk_flags) == [
        risk.Flag(
            "large_correction",
            "credit of 50.00 EUR is 50.0 % of the total before corrections 100.00 (limit 25.0 %)",
            D("50.00"),
        )
    ]
    assert after.risk_score == risk.FLAGGED + risk.WEIGHTS["large_correction"] + risk.money_points(D("50"))
    # One snapshot per revision changed, the first one is the revision as generated.
    snaps = list(InvoiceSnapshot.select().where(InvoiceSnapshot.invoice == inv.id).order_by(InvoiceSnapshot.revision))
    assert [(s.revision, s.action, s.total) for s in snaps] == [(1, "adjust", D("100.00")), (2, "adjust", D("90.00"))]


def test_the_correction_share_is_a_store_setting(store_url, ctx):
    save_setting("risk_correction_share", "0.6")
    inv = F.invoice(total=D("100.00"))
    assert not risk.is_flagged(workflow.adjust(ctx, inv.number, "credit", D("50.00"), "Refund").risk_score)


def test_adjust_flags_a_fee_for_a_subscription_that_was_stopped_before_the_period(store_url, ctx):
    acc = F.account()
    sub = Subscription.create(
        account=acc,
        name="SIP Trunk 30 channels",
        service="Voice calls",
        status="stopped",
        fee=D("149.00"),
        active_from=dt.date(2025, 1, 1),
        active_to=dt.date(2026, 8, 31),
    )
    inv = F.invoice(total=D("249.00"), acc=acc)
    ChargeLine.create(
        invoice=inv,
        position=2,
        description="SIP Trunk 30 channels — monthly fee",
        service="Voice calls",
        subscription=sub,
        quantity=D("1"),
        amount=D("149.00"),
    )
    after = workflow.adjust(ctx, inv.number, "charge", D("1.00"), "Porting fee")
    assert risk.parse_flags(after.risk_flags) == [
        risk.Flag(
            "inactive_subscription",
            f"SIP Trunk 30 channels (subscription {sub.id}) charged 149.00 EUR but it ended 2026-08-31, "
            "before the period",
            D("149.00"),
        )
    ]


def test_reissue_recomputes_flags_and_the_diff_lists_exactly_the_changed_lines(store_url, ctx):
    from tui_billing.store.models import TaxRule

    cls = F.customer_class()
    TaxRule.create(customer_class=cls, name="VAT", description="VAT 20 %", percent=D("20"))
    acc = F.account(cls=cls)
    Subscription.create(
        account=acc,
        name="Business Fibre 1 Gbit/s",
        service="Internet",
        status="active",
        fee=D("89.00"),
        active_from=dt.date(2026, 1, 1),
    )
    Subscription.create(
        account=acc,
        name="Static IP block /29",
        service="Internet",
        status="active",
        fee=D("25.00"),
        active_from=dt.date(2026, 1, 1),
    )
    xdr(acc, "v1", "Voice calls", dt.datetime(2026, 10, 3, 10), "120", "12.00")
    xdr(acc, "s1", "SMS", dt.datetime(2026, 10, 4, 10), "10", "0.45")
    billrun.bill_run(ctx, OCT_FROM, OCT_TO)
    inv = Invoice.get(Invoice.account == acc.id)
    assert inv.revision == 1 and inv.total == D("151.74")  # (89 + 25 + 12 + 0.45) * 1.2

    # Late usage for Voice calls, a first Mobile data record, and the IP block
    # turns out to have ended before October.
    xdr(acc, "v2", "Voice calls", dt.datetime(2026, 10, 30, 22), "30.5", "3.01")
    xdr(acc, "d1", "Mobile data", dt.datetime(2026, 10, 15, 12), "2.5", "4.75")
    Subscription.update(status="stopped", active_to=dt.date(2026, 9, 30)).where(
        Subscription.name == "Static IP block /29"
    ).execute()
    workflow.request_reissue(ctx, inv.number, "now")
    after = workflow.complete_reissue(ctx, inv.id)

    from tui_billing.store.detail import load_detail

    d = load_detail(inv.number)
    assert d.changes is not None and (d.changes.from_revision, d.changes.to_revision) == (1, 2)
    assert [(c.change, c.description, c.fields, c.delta) for c in d.changes.charges] == [
        ("removed", "Static IP block /29 — monthly fee", (), D("-25.00")),
        ("changed", "Voice calls usage", ("quantity", "amount"), D("3.01")),
        ("added", "Mobile data usage", (), D("4.75")),
    ]
    assert [(c.change, c.description) for c in d.changes.taxes] == [("changed", "VAT")]
    assert d.changes.totals["total"] == (D("151.74"), after.total)
    assert after.total == D("131.05")  # 89 + 15.01 + 0.45 + 4.75 = 109.21, VAT 21.84
    assert d.changes.total_delta == D("-20.69")
    # The Fibre fee and SMS lines did not change: not listed.
    # Flags were recomputed for the new revision (no history: none apply).
    assert (after.risk_score, after.risk_flags, after.expected_total) == (0, "", None)


def test_close_postpay_flags_missing_usage(store_url, ctx):
    acc = F.account()
    history(acc, ("150.00", "150.00", "150.00"), usage="50.00")
    Subscription.create(
        account=acc,
        name="Business Fibre 1 Gbit/s",
        service="Internet",
        status="active",
        fee=D("100.00"),
        active_from=dt.date(2026, 1, 1),
    )
    open_inv = F.invoice(status=S.OPEN, total=D("0"), acc=acc, generated_at=None, issue_date=dt.date(2026, 11, 2))
    assert open_inv.risk_score == 0
    closed = workflow.close_postpay(ctx, open_inv.id)
    assert closed.status == S.UNDER_REVIEW
    assert risk.Flag(
        "missing_usage",
        "no Voice calls usage charged; it was on all the last 3 invoices (usually 50.00 EUR)",
        D("50.00"),
    ) in risk.parse_flags(closed.risk_flags)


def test_bulk_approve_does_not_touch_flags_and_leaves_no_diff(store_url, ctx):
    inv = F.invoice(total=D("100.00"))
    score = workflow.adjust(ctx, inv.number, "credit", D("60.00"), "Refund").risk_score
    assert workflow.approve_many(ctx, [inv.number], include_flagged=True).ok
    from tui_billing.store.detail import load_detail

    d = load_detail(inv.number)
    assert d.invoice.status == S.APPROVED and d.invoice.risk_score == score and risk.is_flagged(score)
    assert d.changes is None  # approved: the approved revision is the reviewed one


def test_mark_reviewed_moves_the_baseline(store_url, ctx):
    from tui_billing import revisions
    from tui_billing.store.detail import load_detail

    inv = F.invoice(total=D("100.00"))
    workflow.adjust(ctx, inv.number, "charge", D("5.00"), "Porting fee")
    assert load_detail(inv.number).changes.from_revision == 1
    revisions.mark_reviewed(ctx, inv.number)
    assert load_detail(inv.number).changes is None
    assert InvoiceSnapshot.select().where(InvoiceSnapshot.invoice == inv.id).count() == 0
    workflow.adjust(ctx, inv.number, "charge", D("7.00"), "Hardware replacement")
    d = load_detail(inv.number)
    assert (d.changes.from_revision, d.changes.to_revision) == (2, 3)
    assert [(c.change, c.description) for c in d.changes.corrections] == [("added", "Hardware replacement")]
    assert d.changes.total_delta == D("7.00")
    approved = F.invoice(status=S.APPROVED)
    with pytest.raises(workflow.Refused):
        revisions.mark_reviewed(ctx, approved.number)


# --------------------------------------------------------------------------
# The queue: flagged filter, risk order, keyset paging


def _queue_world():
    cls = F.customer_class()
    acc = F.account(cls=cls)
    rows = []
    base = dt.datetime(2026, 11, 18, 9)
    for i in range(23):
        inv = F.invoice(
            acc=acc, status=S.UNDER_REVIEW if i % 5 else S.REJECTED, generated=base + dt.timedelta(hours=(i * 7) % 11)
        )
        score = [0, 10, 1040, 1065][i % 4]
        deadline = None if i % 6 == 0 else inv.review_deadline
        Invoice.update(
            risk_score=score,
            risk_flags=risk.dumps_flags([risk.Flag("total_spike", f"spike {i}")] if risk.is_flagged(score) else []),
            review_deadline=deadline,
        ).where(Invoice.id == inv.id).execute()
        rows.append(Invoice.get_by_id(inv.id))
    return rows


def _expected(rows, desc=True):
    far = dt.datetime.max
    key = lambda r: (-r.risk_score, r.review_deadline is None, r.review_deadline or far, r.id)  # noqa: E731
    ordered = sorted(rows, key=key)
    return [r.id for r in (ordered if desc else list(reversed(ordered)))]


@pytest.mark.parametrize("desc", [True, False])
def test_risk_sort_pages_by_score_then_deadline(store_url, desc):
    rows = _queue_world()
    f = queries.Filters(statuses=(S.UNDER_REVIEW, S.REJECTED))
    got, after = [], None
    while True:
        page = queries.page(f, sort="risk", descending=desc, after=after, limit=4)
        got += [r.id for r in page]
        if len(page) < 4:
            break
        after = queries.key_of(page[-1], "risk")
    assert got == _expected(rows, desc)


def test_flagged_only_filter_and_page_rows_carry_flags(store_url):
    rows = _queue_world()
    f = queries.make_filters(status="under_review,rejected", flagged=True)
    page = queries.page(f, sort="risk", limit=100)
    assert {r.id for r in page} == {r.id for r in rows if r.risk_score >= risk.FLAGGED}
    top = page[0]
    assert top.risk_score == 1065 and top.flags[0].code == "total_spike"
    assert queries.counts_by_status(f)[S.UNDER_REVIEW] + queries.counts_by_status(f)[S.REJECTED] == len(page)


# --------------------------------------------------------------------------
# CLI


def test_cli_find_flagged_json_and_show(store_url, cli, ctx):
    acc = F.account()
    history(acc)
    spiky = F.invoice(total=D("1000.00"), acc=acc)
    calm = F.invoice(total=D("100.00"), acc=F.account(name="Calm"))
    assert cli("assess", "--all", "--json")[0] == 0
    code, out, err = cli("find", "--flagged", "--sort", "risk", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert [i["number"] for i in doc["invoices"]] == [spiky.number]
    (inv,) = doc["invoices"]
    assert inv["risk_score"] == risk.FLAGGED + risk.WEIGHTS["total_spike"] + risk.money_points(D("900"))
    assert inv["flags"] == [
        {
            "code": "total_spike",
            "at_stake": "900.00",
            "reason": "total 1,000.00 EUR is 10.0x its usual 100.00 (median of 3 invoices)",
        }
    ]
    code, out, _ = cli("find", "--sort", "risk", "--status", "under_review")
    lines = out.splitlines()
    assert "Risk" in lines[0] and "Flags" in lines[0]
    assert spiky.number in lines[2] and "spike" in lines[2] and calm.number in lines[3]

    workflow.adjust(ctx, spiky.number, "credit", D("900.00"), "Wrong rating of October usage")
    code, out, _ = cli("show", spiky.number)
    assert code == 0
    assert "Risk flags" in out and "large_correction" in out
    assert "credit of 900.00 EUR is 900.0 % of the account's usual total 100.00" in out
    assert "Changes since revision 1 (last reviewed) -> revision 2" in out
    assert "Total 1,000.00 EUR -> 100.00 EUR (-900.00)" in out
    doc = json.loads(cli("show", spiky.number, "--json")[1])
    assert [f["code"] for f in doc["flags"]] == ["large_correction"]
    changes = doc["changes_since_review"]
    assert changes["charges"] == [] and changes["corrections"][0]["change"] == "added"
    assert changes["totals"]["total"] == {"before": "1000.00", "after": "100.00", "delta": "-900.00"}
    assert json.loads(cli("show", calm.number, "--json")[1])["changes_since_review"] is None


def test_cli_settings_validate_risk_values(store_url, cli):
    code, _, err = cli("settings", "risk_total_factor", "5")
    assert code == 2 and "key: 'risk_total_factor' is not a setting" in err
    code, _, err = cli("settings", "currency_rates", "USD=0.9 JPY=abc")
    assert code == 2 and "currency_rates: JPY" in err
    code, _, err = cli("settings", "reporting_currency", "euro")
    assert code == 2 and "reporting_currency" in err
    code, _, err = cli("settings", "risk_hold_score", "0")
    assert code == 2 and "risk_hold_score" in err
    assert cli("settings", "currency_rates", "usd=0.9,  JPY=0.006")[0] == 0
    assert "'JPY=0.006 USD=0.9'" in cli("settings", "currency_rates")[1]


# --------------------------------------------------------------------------
# Demo data: planted anomalies are flagged, normal data mostly is not


def test_demo_plants_are_flagged_with_the_right_reason(store_url, ctx):
    from tui_billing import demo

    planted: list[tuple[str, str]] = []
    stats = demo.build(ctx, invoices=2000, seed=3, quiet=True, anomalies=0.01, planted=planted)
    kinds = collections.Counter(code for _, code in planted)
    assert len(planted) >= 10 and {"total_spike", "zero_total", "missing_usage"} <= set(kinds)
    by_number = {i.number: i for i in Invoice.select().where(Invoice.number.in_([n for n, _ in planted]))}
    for number, code in planted:
        flags = risk.parse_flags(by_number[number].risk_flags)
        assert code in [f.code for f in flags], (number, code, flags)
        assert all(f.reason for f in flags)
    total = Invoice.select().count()
    flagged = Invoice.select().where(Invoice.risk_score >= risk.FLAGGED).count()
    assert flagged == stats["flagged"]
    assert flagged <= 0.03 * total  # ~1 % planted, follow-ons rare
    # The stored flags are what assessing the stored invoice gives again.
    for inv in Invoice.select().where(Invoice.number.in_([n for n, _ in planted[:8]])):
        assert risk_store.assess_invoice(inv, save=False)[1] == risk.parse_flags(inv.risk_flags)


def test_normal_demo_data_flags_at_most_five_percent(store_url, ctx):
    from tui_billing import demo

    demo.build(ctx, invoices=2000, seed=5, quiet=True, anomalies=0)
    total = Invoice.select().count()
    issued = Invoice.select().where(Invoice.status != S.OPEN)
    flagged = issued.where(Invoice.risk_score >= risk.FLAGGED).count()
    assert flagged <= 0.03 * total
    queue = Invoice.select().where(Invoice.status == S.UNDER_REVIEW)
    assert queue.where(Invoice.risk_score >= risk.FLAGGED).count() <= 0.03 * queue.count()


def test_assess_many_in_worker_processes_stores_what_one_process_stores(store_url, ctx, backend):
    """assess --all runs the assessing in a pool of worker processes (a
    SQLite file, a PostgreSQL server); what it stores is exactly what one
    process stores."""
    from tui_billing import demo

    demo.build(ctx, invoices=2400, seed=7, quiet=True)
    ids = [i for (i,) in Invoice.select(Invoice.id).tuples()]
    columns = (Invoice.id, Invoice.risk_score, Invoice.risk_flags, Invoice.expected_total, Invoice.risk_at_stake)
    chunks = -(-len(ids) // risk_store.CHUNK)
    assert risk_store.pool_size(2, chunks) == 2 and risk_store.pool_size(1, chunks) == 1
    assert risk_store.pool_size(2, risk_store.POOL_MIN_CHUNKS - 1) == 1
    counts = risk_store.assess_many(ids, workers=1)
    alone = list(Invoice.select(*columns).order_by(Invoice.id).tuples())
    Invoice.update(risk_score=0, risk_flags="", expected_total=None, risk_at_stake=None).execute()
    seen = []
    assert risk_store.assess_many(ids, workers=2, progress=lambda done, total: seen.append((done, total))) == counts
    assert list(Invoice.select(*columns).order_by(Invoice.id).tuples()) == alone
    assert counts["assessed"] == len(ids) and seen[-1] == (len(ids), len(ids))
    assert sum(1 for row in alone if risk.is_flagged(row[1])) == counts["flagged"]


def test_inactive_subscription_plant_on_the_demo_queue_is_fixed_by_reissue(store_url, ctx):
    """A planted fee for an idle subscription, reissued: the line goes, the flag too,
    and the diff lists exactly that line."""
    from tui_billing import demo

    planted: list[tuple[str, str]] = []
    demo.build(ctx, invoices=3000, seed=11, quiet=True, anomalies=0.05, planted=planted)
    numbers = [n for n, code in planted if code == "inactive_subscription"]
    candidates = list(
        Invoice.select().where(Invoice.number.in_(numbers) & Invoice.status.in_([S.UNDER_REVIEW, S.REJECTED]))
    )
    if not candidates:
        pytest.skip("seed planted no inactive subscription in the queue")
    inv = candidates[0]
    if inv.status == S.UNDER_REVIEW:
        workflow.request_reissue(ctx, inv.id, "now")
    after = workflow.complete_reissue(ctx, inv.id)
    assert "inactive_subscription" not in flag_codes(after)
    from tui_billing.store.detail import load_detail

    d = load_detail(inv.id)
    assert [c.change for c in d.changes.charges] == ["removed"]
    assert d.changes.charges[0].description.endswith("— monthly fee")


def test_migration_adds_risk_columns_to_an_existing_store(tmp_path):
    from peewee import SqliteDatabase
    from playhouse.migrations import Runner

    from tui_billing.store import db as store_db

    path = tmp_path / "old.db"
    old = SqliteDatabase(str(path))
    Runner(old, str(store_db.MIGRATIONS_DIR)).up(target="0001_initial")
    old.execute_sql(
        "INSERT INTO customer_class (name, send_mode, hold_days, net_days, billing_period) "
        "VALUES ('Enterprise', 'after_review', 5, 26, 'monthly')"
    )
    old.execute_sql(
        "INSERT INTO account (name, email, account_type, customer_class_id, currency, balance, "
        "payment_model, address) VALUES ('A', 'a@example.com', 'business', 1, 'EUR', 0, 'postpay', '')"
    )
    old.execute_sql(
        "INSERT INTO invoice (number, account_id, customer_class_id, kind, payment_model, status, "
        "currency, period_from, period_to, issue_date, subtotal, discount_total, tax_total, "
        "correction_total, total, outstanding, revision) VALUES ('INV-1', 1, 1, 'regular', 'postpay', "
        "'under_review', 'EUR', '2026-10-01', '2026-10-31', '2026-11-02', 0, 0, 0, 0, 0, 0, 1)"
    )
    old.close()
    store_db.connect("sqlite:///" + str(path))
    try:
        inv = Invoice.get(Invoice.number == "INV-1")
        assert (inv.risk_score, inv.risk_flags) == (0, "")
        assert InvoiceSnapshot.select().count() == 0
        assert not store_db.pending_migrations()
    finally:
        store_db.close()


def test_the_queue_asks_the_index_whether_an_invoice_lacks_a_deadline(store_url, backend):
    """The queue skips reading invoices without a review deadline when there
    are none of that status.  PostgreSQL, expecting hundreds of undated
    invoices under review (there were none), scanned the whole table for one:
    14 ms of the first page's 24 at 30,000 invoices.  Asked in the index's
    order, it reads one index entry."""
    if backend == "sqlite":
        pytest.skip("PostgreSQL's planner; SQLite's answers IS NULL from the index itself")
    import re

    from tui_billing.store.models import database

    rows = _queue_world()
    db, p = database.obj, database.obj.param
    columns = [c.name for c in db.get_columns("invoice") if c.name not in ("id", "number")]
    names = ", ".join(f'"{c}"' for c in columns)
    picked = ", ".join("'paid'" if c == "status" else "NULL" if c == "review_deadline" else f'"{c}"' for c in columns)
    # 20,000 paid invoices without a deadline and 1,000 under review with one.
    for count, status_sql in ((20_000, picked), (1_000, names)):
        db.execute_sql(
            f'INSERT INTO "invoice" ("number", {names}) SELECT \'GEN-{count}-\' || g, {status_sql} '
            f'FROM "invoice" CROSS JOIN generate_series(1, {p}) AS g WHERE "id" = {p}',
            (count, next(r.id for r in rows if r.status == S.UNDER_REVIEW and r.review_deadline)),
        )
    Invoice.update(review_deadline=dt.datetime(2026, 11, 25)).where(
        (Invoice.status == S.UNDER_REVIEW) & Invoice.review_deadline.is_null()
    ).execute()
    db.execute_sql("ANALYZE")
    seen: list[tuple[str, tuple]] = []
    run = db.execute_sql

    def recorded(sql, params=None, *args, **kwargs):
        seen.append((sql, params))
        return run(sql, params, *args, **kwargs)

    db.execute_sql = recorded
    try:
        page = queries.page(queries.Filters(statuses=(S.UNDER_REVIEW,)), sort="risk", limit=100)
    finally:
        del db.execute_sql
    assert len(page) == 100
    probes = [  # the page's reads are LIMIT 100; the probes LIMIT 1 (a parameter on PostgreSQL)
        (sql, params)
        for sql, params in seen
        if "review_deadline" in sql and re.search(r"LIMIT %s$", sql) and params[-1] == 1
    ]
    assert probes
    for sql, params in probes:
        plan = "\n".join(r[0] for r in db.execute_sql("EXPLAIN " + sql, params))
        assert "Seq Scan" not in plan, plan
