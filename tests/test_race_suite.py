"""Race suite (issue #6): admins and job loops hammering one store, then invariants.

On each backend: 10,000 invoices under review; for RACE_SECONDS two admin
processes (bulk approve of random chunks, adjust of random invoices) and two
job loops (`tui-billing jobs run`, a fixed --now after half of the review
deadlines, mail into a Maildir) run at once.  SQLite: the second loop is
refused ("another job loop is already running").  PostgreSQL: both loops run
and share the work.  Then:

- no invoice emailed twice (Maildir files per Message-ID, per invoice and
  per (invoice, revision)); every sent row has its file; no invoice in two
  admin digests;
- every correction an admin saw succeed exists, and no other one;
- every invoice: total = subtotal - discounts + taxes + corrections, the
  parts equal the sums of their lines, revision = 1 + corrections;
- every transition is in the audit log: each invoice's events chain from
  (under review, initial total) to its current (status, total); each approved
  invoice has one approve/auto_approve, each sent one send, each correction
  one adjust event;
- the invoice counts the database keeps equal a recount.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import os
import random
import re
import signal
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from tests.test_jobs_support import NOW, cli_env, spawn, terminated, wait_for
from tui_billing import jobs, mail
from tui_billing import statuses as S
from tui_billing.money import quantize
from tui_billing.store import counts
from tui_billing.store import db as store_db
from tui_billing.store.bulk import dbv, insert_rows
from tui_billing.store.models import (
    Account,
    AuditEvent,
    ChargeLine,
    Correction,
    CustomerClass,
    Invoice,
    OutboxMessage,
    Payment,
    TaxLine,
    TaxRule,
)

INVOICES = 10_000
ACCOUNTS = 500
RACE_SECONDS = 15.0
LOOP_NOW = "2026-11-20T10:00:00Z"  # == NOW: about half of the deadlines have passed


# --------------------------------------------------------------------------
# A store of 10,000 invoices under review, built set-based


def build_store(seed: int) -> dict[int, Decimal]:
    """Returns the initial total of every invoice."""
    rng = random.Random(seed)
    cls = CustomerClass.create(name="Enterprise", send_mode="after_review", hold_days=5, net_days=26)
    # The rule behind the VAT lines: an adjust taxes its correction by it (README, Adjust).
    TaxRule.create(customer_class=cls, name="VAT", percent=Decimal(20), description="20 %")
    insert_rows(
        Account,
        [
            "name",
            "email",
            "account_type",
            "customer_class",
            "currency",
            "balance",
            "payment_model",
            "address",
            "search_text",
        ],
        [
            (
                f"Race Customer {i}",
                f"billing{i}@race.example",
                "business",
                cls.id,
                "EUR",
                dbv(Account.balance, Decimal(rng.choice([0, 0, 500, 50_000]))),
                "postpay",
                "1 Race Rd",
                Account.search_text_of(f"Race Customer {i}", f"billing{i}@race.example"),
            )
            for i in range(ACCOUNTS)
        ],
    )
    account_ids = [a.id for a in Account.select(Account.id).order_by(Account.id)]
    columns = [
        "number",
        "account",
        "customer_class",
        "kind",
        "payment_model",
        "status",
        "currency",
        "period_from",
        "period_to",
        "generated_at",
        "issue_date",
        "due_date",
        "review_deadline",
        "subtotal",
        "discount_total",
        "tax_total",
        "correction_total",
        "total",
        "outstanding",
        "revision",
        "risk_score",
        "risk_flags",
    ]
    rows = []
    for i in range(INVOICES):
        deadline = NOW + dt.timedelta(minutes=rng.randint(-3 * 1440, 3 * 1440))  # half are due
        generated = deadline - dt.timedelta(days=5)
        subtotal = Decimal(rng.randint(1_000, 500_000)) / 100
        discount = (subtotal * Decimal(rng.choice([0, 0, 5, 10])) / 100).quantize(Decimal("0.01"))
        tax = ((subtotal - discount) * Decimal("0.2")).quantize(Decimal("0.01"))
        total = subtotal - discount + tax
        rows.append(
            (
                f"INV-2026-{i + 1:06d}",
                account_ids[i % ACCOUNTS],
                cls.id,
                "regular",
                "postpay",
                S.UNDER_REVIEW,
                "EUR",
                dt.date(2026, 10, 1),
                dt.date(2026, 10, 31),
                generated,
                generated.date(),
                generated.date() + dt.timedelta(days=26),
                deadline,
                *(dbv(Invoice.total, v) for v in (subtotal, discount, tax, Decimal(0), total, total)),
                1,
                0,
                "",
            )
        )
    insert_rows(Invoice, columns, rows)
    invoices = list(
        Invoice.select(Invoice.id, Invoice.subtotal, Invoice.discount_total, Invoice.tax_total, Invoice.total).order_by(
            Invoice.id
        )
    )
    insert_rows(
        ChargeLine,
        ["invoice", "position", "description", "service", "quantity", "discount", "amount"],
        [
            (
                inv.id,
                1,
                "Business Fibre 1 Gbit/s — monthly fee",
                "Internet",
                dbv(ChargeLine.quantity, 1),
                dbv(ChargeLine.discount, inv.discount_total),
                dbv(ChargeLine.amount, inv.subtotal),
            )
            for inv in invoices
        ],
    )
    insert_rows(
        TaxLine,
        ["invoice", "position", "name", "description", "amount"],
        [(inv.id, 1, "VAT", "20 %", dbv(TaxLine.amount, inv.tax_total)) for inv in invoices],
    )
    return {inv.id: inv.total for inv in invoices}


# --------------------------------------------------------------------------
# An admin: bulk approve of random chunks and adjusts of random invoices


def _admin(url: str, actor: str, ids: list[int], seconds: float, out: str, seed: int) -> None:
    from tui_billing import workflow as W
    from tui_billing.clock import Clock, zone

    store_db.connect(url)
    ctx = W.Ctx(clock=Clock(tz=zone("UTC"), fixed=NOW), actor=actor)
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    k = 0
    with open(out, "w") as fh:

        def record(**row):
            fh.write(json.dumps(row) + "\n")
            fh.flush()

        while time.monotonic() < deadline:
            k += 1
            time.sleep(rng.uniform(0, 0.03))  # fast for a human, and the job loops get their turn
            if rng.random() < 0.05:
                result = W.approve_many(ctx, rng.sample(ids, rng.randint(10, 60)))
                for number in result.done:
                    record(approved=number)
                continue
            inv_id, kind = rng.choice(ids), rng.choice(["credit", "charge"])
            amount = Decimal(rng.randint(1, 20_000)) / 100
            description = f"{actor} correction {k}"
            try:
                inv = W.adjust(ctx, inv_id, kind, amount, description)
            except (W.Refused, W.BadInput):
                continue  # approved or sent meanwhile, or the credit is too large
            record(
                invoice=inv_id,
                amount=str(-amount if kind == "credit" else amount),
                description=description,
                revision=inv.revision,
            )
    store_db.close()


# --------------------------------------------------------------------------

INVOICE_MID = re.compile(r"<invoice\.(\d+)\.r(\d+)\.")


def maildir_message_ids(path: Path) -> list[str]:
    """Message-ID of every file in new/ and cur/ (headers only: fast)."""
    found = []
    for sub in ("new", "cur"):
        folder = path / sub
        if not folder.exists():
            continue
        for name in os.listdir(folder):
            head = (folder / name).read_bytes().split(b"\n\n", 1)[0].decode("utf-8", "replace")
            m = re.search(r"(?im)^Message-ID:\s*(<[^>]+>)", head)
            assert m, f"no Message-ID in {name}"
            found.append(m.group(1))
    return found


@pytest.mark.slow
def test_race_suite(store_url, backend, tmp_path):
    started = time.monotonic()
    seed = random.randrange(1 << 30)
    initial = build_store(seed)
    ids = sorted(initial)
    assert len(ids) == INVOICES
    built = time.monotonic() - started
    store_db.close()

    maildir = tmp_path / "maildir"
    cfg = tmp_path / "config.toml"
    cfg.write_text("[jobs]\n" + "".join(f"{name} = 1\n" for name in jobs.JOBS) + "max_run_seconds = 2\n")
    env = cli_env(TUI_BILLING_SMTP_TRANSPORT="maildir", TUI_BILLING_SMTP_MAILDIR=maildir)
    args = ["--db", store_url, "--config", str(cfg), "--now", LOOP_NOW, "jobs", "run"]
    logs = [tmp_path / "loop-a.log", tmp_path / "loop-b.log"]
    outs = [tmp_path / "alice.jsonl", tmp_path / "bob.jsonl"]
    mp_ctx = mp.get_context("spawn")
    admins = [
        mp_ctx.Process(target=_admin, args=(store_url, actor, ids, RACE_SECONDS, str(out), seed + n))
        for n, (actor, out) in enumerate(zip(("alice", "bob"), outs))
    ]

    with terminated(spawn(args, env, logs[0])) as loop_a:
        if backend == "sqlite":
            # One loop per SQLite store: the second is told so and exits 1.
            wait_for(lambda: "action=started" in logs[0].read_text() or loop_a.poll() is not None, timeout=30)
        with terminated(spawn(args, env, logs[1])) as loop_b:
            for p in admins:
                p.start()
            race_started = time.monotonic()
            if backend == "sqlite":
                assert loop_b.wait(30) == 1
                assert "another job loop is already running" in logs[1].read_text()
                assert f"pid {loop_a.pid}" in logs[1].read_text()
            for p in admins:
                p.join(RACE_SECONDS + 120)
                assert p.exitcode == 0
            for loop in (loop_a, loop_b):
                if loop.poll() is None:
                    loop.send_signal(signal.SIGTERM)  # the item in hand is finished first
            assert loop_a.wait(60) == 0, logs[0].read_text()[-3000:]
            if backend == "postgresql":
                assert loop_b.wait(60) == 0, logs[1].read_text()[-3000:]
    raced = time.monotonic() - race_started
    store_db.connect(store_url)

    texts = [p.read_text() for p in logs]
    running = texts if backend == "postgresql" else texts[:1]
    for text in running:
        assert "job=loop action=started mode=loop" in text
        assert "job=loop action=stopped" in text
        bad = [line for line in text.splitlines() if "action=error" in line or "action=failed" in line]
        assert not bad, bad[:5]
    work = [Counter(m.group(1) for m in re.finditer(r"job=(\w+) invoice=\S+ ", t)) for t in running]

    # ---- what the admins saw succeed
    approved_by: dict[str, list[str]] = {}
    reported: set[tuple[int, Decimal, str]] = set()
    for actor, out in zip(("alice", "bob"), outs):
        approved_by[actor] = []
        for line in out.read_text().splitlines():
            row = json.loads(line)
            if "approved" in row:
                approved_by[actor].append(row["approved"])
            else:
                reported.add((row["invoice"], Decimal(row["amount"]), row["description"]))

    invoices = {inv.id: inv for inv in Invoice.select()}
    corrections = list(Correction.select())
    events = list(AuditEvent.select().order_by(AuditEvent.id))
    by_invoice = defaultdict(list)
    for e in events:
        by_invoice[e.invoice_id].append(e)

    # ---- no correction lost, none extra
    stored = {(c.invoice_id, c.amount, c.description) for c in corrections}
    assert len(stored) == len(corrections)
    assert stored == reported, (
        f"seed {seed}: lost {sorted(reported - stored)[:5]}, extra {sorted(stored - reported)[:5]}"
    )

    # ---- totals equal the sums of their lines
    sums = defaultdict(lambda: Decimal(0))
    per_invoice = Counter()
    for c in corrections:
        sums[c.invoice_id] += c.amount
        per_invoice[c.invoice_id] += 1
    charges = {c.invoice_id: c for c in ChargeLine.select()}
    taxes = {t.invoice_id: t.amount for t in TaxLine.select()}
    for inv in invoices.values():
        assert inv.total == inv.subtotal - inv.discount_total + inv.tax_total + inv.correction_total, inv.number
        assert inv.correction_total == sums[inv.id], inv.number
        assert inv.subtotal == charges[inv.id].amount and inv.discount_total == charges[inv.id].discount
        assert inv.tax_total == taxes[inv.id]
        if per_invoice[inv.id]:  # corrections are net, taxed like the charges: 20 % of all
            assert inv.tax_total == quantize((inv.subtotal - inv.discount_total + sums[inv.id]) / 5, "EUR")
        else:
            assert inv.total == initial[inv.id]
        assert inv.revision == 1 + per_invoice[inv.id], inv.number
        assert inv.outstanding == (Decimal(0) if inv.status == S.PAID else inv.total), inv.number
    positions = defaultdict(list)
    for c in corrections:
        positions[c.invoice_id].append(c.position)
    assert all(sorted(p) == list(range(1, len(p) + 1)) for p in positions.values())

    # ---- every transition in the audit log
    sent_states = (S.PAID, S.UNPAID)
    for inv in invoices.values():
        state = (S.UNDER_REVIEW, initial[inv.id])
        for e in by_invoice[inv.id]:
            assert (e.before_status, e.before_total) == state, (inv.number, e.action, state)
            state = (e.after_status, e.after_total)
        assert state == (inv.status, inv.total), inv.number
        actions = Counter(e.action for e in by_invoice[inv.id])
        approvals = actions["approve"] + actions["auto_approve"]
        assert approvals == (1 if inv.status in (S.APPROVED, *sent_states) else 0), inv.number
        assert actions["send"] == (1 if inv.status in sent_states else 0), inv.number
        assert actions["adjust"] == per_invoice[inv.id], inv.number
        assert inv.status in (S.UNDER_REVIEW, S.APPROVED, *sent_states), inv.number
    adjusts = {
        (e.invoice_id, Decimal(json.loads(e.detail)["amount"]), json.loads(e.detail)["description"])
        for e in events
        if e.action == "adjust"
    }
    assert adjusts == stored
    for actor, numbers in approved_by.items():  # each admin's approvals, as the log has them
        assert len(numbers) == len(set(numbers))
        logged = [e.number for e in events if e.action == "approve" and e.actor == actor]
        assert sorted(logged) == sorted(numbers), actor
    assert not set(approved_by["alice"]) & set(approved_by["bob"])

    # ---- no invoice emailed twice; each sent invoice has its one email
    outbox = list(OutboxMessage.select())
    files = Counter(maildir_message_ids(maildir))
    assert not [mid for mid, n in files.items() if n > 1], "delivered twice"
    per_invoice_mail = Counter(int(m.group(1)) for mid in files if (m := INVOICE_MID.match(mid)))
    assert not [i for i, n in per_invoice_mail.items() if n > 1], "an invoice emailed twice"
    assert len({INVOICE_MID.match(mid).groups() for mid in files if INVOICE_MID.match(mid)}) == sum(
        per_invoice_mail.values()
    )
    invoice_rows = [m for m in outbox if m.kind == mail.INVOICE]
    assert Counter(m.invoice_id for m in invoice_rows) == Counter(
        {i.id: 1 for i in invoices.values() if i.status in sent_states}
    )
    for m in invoice_rows:
        inv = invoices[m.invoice_id]
        assert m.revision == inv.sent_revision == inv.revision
        assert m.status in (mail.SENT, mail.QUEUED), (m.status, m.last_error)  # queued: stopped before delivery
        assert files[m.message_id] == (1 if m.status == mail.SENT else 0)
    assert set(files) == {m.message_id for m in outbox if m.status == mail.SENT}
    # Maildir's link() would hide a second delivery attempt: the loops' logs
    # must show each message handed over exactly once, by one of them.
    handed = Counter(
        m.group(1)
        for text in texts
        for line in text.splitlines()
        if " action=sent" in line and (m := re.search(r" message=(\S+)", line))
    )
    assert not [mid for mid, n in handed.items() if n > 1], "a message handed over twice"
    assert set(handed) == set(files)
    assert Counter(p.invoice_id for p in Payment.select()) == Counter(
        {i.id: 1 for i in invoices.values() if i.status in sent_states}
    )

    # ---- no invoice in two admin digests (two loops never list the same one)
    # An invoice is announced once as waiting, and once more if the loop held it
    # (an admin's adjust can flag it before its deadline): its section "Held for a person".
    def announced(held: bool) -> Counter:
        parts = (m.body.partition("Held for a person (flagged)") for m in outbox if m.kind == mail.DIGEST)
        return Counter(
            n for before, _, after in parts for n in re.findall(r"INV-\d{4}-\d{6}", after if held else before)
        )

    listed = announced(held=False) + announced(held=True)
    for held in (False, True):
        assert not [n for n, c in announced(held).items() if c > 1], f"an invoice in two digests (held: {held})"
    assert sum(1 for i in invoices.values() if i.notified_at is not None) == len(
        listed
    )  # distinct invoices: a held one twice
    # ---- stopped cleanly: no claim, no message in flight
    assert Invoice.select().where(Invoice.claimed_by.is_null(False)).count() == 0
    assert not [m for m in outbox if m.status == mail.SENDING]
    # ---- the counts the database keeps equal a recount (issue 18: triggers, every writer)
    assert counts.check() == []

    status = Counter(i.status for i in invoices.values())
    summary = (
        f"\n{backend} seed {seed}: built {INVOICES:,} in {built:.1f}s, raced {raced:.1f}s; "
        f"statuses {dict(status)}; corrections {len(corrections)}; "
        f"admin approvals {sum(map(len, approved_by.values()))}; emails {len(files)}; "
        f"digests {sum(1 for m in outbox if m.kind == mail.DIGEST)}; loops {[dict(w) for w in work]}"
    )
    print(summary)
    assert status[S.UNPAID] + status[S.PAID] > 0 and corrections, summary  # the race did happen
    if backend == "postgresql":
        assert all(sum(w.values()) for w in work), summary  # both loops worked
