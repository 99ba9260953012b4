"""Several job loops on one store (issue #6).

PostgreSQL: loops on different hosts share the work; every job claims its
items (FOR UPDATE SKIP LOCKED, claimed_by leases, queued -> sending), so no
invoice is approved, dispatched, emailed, closed, expired or listed in a
digest twice.  SQLite: a second loop is refused (or waits): see also
tests/test_jobs.py::test_second_loop_is_refused_then_waits_and_sigterm_stops_cleanly
(two real `jobs run` processes).
"""

from __future__ import annotations

import datetime as dt
import itertools
import mailbox
import os
import re
import signal
import socket
import threading
from collections import Counter
from decimal import Decimal
from types import SimpleNamespace

import pytest

from tests.conftest import new_pg_database, opened
from tests.test_jobs_support import (
    NOW,
    at,
    cli_env,
    ctx_at,
    make_account,
    make_approved,
    make_class,
    make_invoice,
    reload,
    spawn,
    terminated,
    wait_for,
)
from tui_billing import jobs, mail, workflow
from tui_billing import statuses as S
from tui_billing.config import AppConfig
from tui_billing.jobs.lock import LoopBusy, LoopLock, LoopRegistration, _pid_namespace, loop_lock, running_loops
from tui_billing.store import db as store_db
from tui_billing.store.models import AuditEvent, Invoice, JobLock, OutboxMessage, Payment, Subscription

_names = itertools.count(1)


@pytest.fixture
def pg_url(pg_cluster, pg_template):
    """A fresh migrated PostgreSQL database (like conftest's store_url, PostgreSQL only)."""
    yield from opened(new_pg_database(pg_cluster, pg_template, f"ml{os.getpid()}_{next(_names)}"))


@pytest.fixture
def sqlite_url(tmp_path):
    yield from opened("sqlite:///" + str(tmp_path / "store.db"))


def review_class():
    return make_class("Enterprise", "after_review", 5, 26)


def in_threads(n: int, target) -> list:
    """Run target(i) in n threads released together; their own connections; re-raise errors."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list = []

    def run(i):
        try:
            barrier.wait()
            results[i] = target(i)
        except Exception as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
        finally:
            store_db.close()  # this thread's connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return results


def logged(job: str, action: str):
    """A log(job, **fields) that records the invoices of one action."""
    seen: list[str] = []

    def log(j, **f):
        if j == job and f.get("action") == action:
            seen.append(f["invoice"])

    return seen, log


# --------------------------------------------------------------------------
# Two real `jobs run` processes on PostgreSQL

LINE_INVOICE = re.compile(r"job=(\w+) invoice=(\S+) .*?action=(\w+)")


def actions(text: str) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for line in text.splitlines():
        m = LINE_INVOICE.search(line)
        if m:
            out.setdefault((m.group(1), m.group(3)), set()).add(m.group(2))
    return out


def maildir_ids(path) -> list[str]:
    return [m["Message-ID"] for m in mailbox.Maildir(str(path), create=False)]


def loop_config(tmp_path, every: float = 1, slice_seconds: float = 2):
    """A config file: every job every `every` s, runs sliced, mail into tmp_path/md."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        "[jobs]\n"
        + "".join(f"{name} = {every}\n" for name in jobs.JOBS)
        + f"max_run_seconds = {slice_seconds}\n"
        + f'[mail]\ntransport = "maildir"\nmaildir = "{tmp_path / "md"}"\n'
    )
    return cfg


@pytest.mark.slow
def test_two_postgresql_loops_split_a_batch_of_due_invoices_with_no_overlap(pg_url, tmp_path):
    cls = review_class()
    due = [
        make_invoice(
            make_account(cls, name=f"Due {i}", email_addr=f"due{i}@example.com"),
            status=S.UNDER_REVIEW,
            review_deadline=at("2026-11-19T10:00:00"),
        )
        for i in range(240)
    ]
    waiting = [
        make_invoice(
            make_account(cls, name=f"Wait {i}", email_addr=f"wait{i}@example.com"),
            status=S.UNDER_REVIEW,
            review_deadline=at("2026-11-30T10:00:00"),
        )
        for i in range(60)
    ]
    env = cli_env()
    # Loop mode (as a service runs): a loop that finds every item claimed by
    # the other one comes back a second later and takes what is left.
    args = ["--db", pg_url, "--config", str(loop_config(tmp_path)), "--now", "2026-11-20T10:00:00Z", "jobs", "run"]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]

    def all_sent():
        store_db.close()  # a fresh connection per poll: no snapshot kept open
        sent = (
            OutboxMessage.select()
            .where((OutboxMessage.kind == mail.INVOICE) & (OutboxMessage.status == mail.SENT))
            .count()
        )
        pending = OutboxMessage.select().where(OutboxMessage.status.in_([mail.QUEUED, mail.SENDING])).count()
        unnotified = Invoice.select().where((Invoice.status == S.UNDER_REVIEW) & Invoice.notified_at.is_null()).count()
        return sent == len(due) and pending == 0 and unnotified == 0

    with terminated(spawn(args, env, logs[0])) as a, terminated(spawn(args, env, logs[1])) as b:
        wait_for(all_sent, timeout=120, step=0.5)
        for proc in (a, b):
            proc.send_signal(signal.SIGTERM)
        assert a.wait(30) == 0, logs[0].read_text()[-2000:]
        assert b.wait(30) == 0, logs[1].read_text()[-2000:]
    store_db.connect(pg_url)
    texts = [p.read_text() for p in logs]
    for text in texts:
        assert "job=loop action=started mode=loop" in text and "store=shared" in text
        assert "already running" not in text and "action=error" not in text and "action=failed" not in text
    got = [actions(t) for t in texts]
    numbers = {i.number for i in due}
    for key in (("auto_approve", "approved"), ("dispatch_approved", "queued"), ("deliver_outbox", "sent")):
        first, second = got[0].get(key, set()), got[1].get(key, set())
        assert not first & second, f"{key}: both loops did {sorted(first & second)[:5]}"
        assert first | second == numbers, key
    # Both did some of the work (which part depends on who started first).
    work = [{f"{job}.{action}": len(v) for (job, action), v in g.items()} for g in got]
    print(f"\nloop A: {work[0]}\nloop B: {work[1]}")
    assert all(sum(w.values()) for w in work), work

    # The store: each due invoice approved once, sent once, one payment, one email.
    for inv in due:
        inv = reload(inv)
        assert inv.status in (S.PAID, S.UNPAID)
    counts = Counter((e.invoice_id, e.action) for e in AuditEvent.select())
    for inv in due:
        assert counts[(inv.id, "auto_approve")] == 1 and counts[(inv.id, "send")] == 1
    assert Counter(p.invoice_id for p in Payment.select()) == Counter({i.id: 1 for i in due})
    ids = maildir_ids(tmp_path / "md")
    assert len(ids) == len(set(ids))
    invoice_ids = {m.message_id for m in OutboxMessage.select().where(OutboxMessage.kind == mail.INVOICE)}
    assert len(invoice_ids) == len(due) and invoice_ids <= set(ids)
    # The invoices still waiting for review: each in exactly one admin digest.
    digests = [m for m in mailbox.Maildir(str(tmp_path / "md"), create=False) if m["Message-ID"] not in invoice_ids]
    listed = Counter(n for d in digests for n in re.findall(r"INV-\d{4}-\d{6}", d.get_payload()))
    assert listed == Counter({i.number: 1 for i in waiting})
    assert {reload(i).status for i in waiting} == {S.UNDER_REVIEW}
    assert JobLock.select().count() == 0  # both registrations removed


# --------------------------------------------------------------------------
# Each job, two callers at once on PostgreSQL: disjoint work, nothing twice


def test_auto_approve_two_callers_split_the_due_invoices(pg_url):
    cls = review_class()
    acc = make_account(cls)
    invs = [make_invoice(acc, status=S.UNDER_REVIEW, review_deadline=at("2026-11-19T10:00:00")) for _ in range(120)]

    def work(i):
        seen, log = logged("auto_approve", "approved")
        r = jobs.auto_approve_due(ctx_at(NOW, f"job:loop{i}"), log=log, batch=7)
        assert r.failed == 0
        return seen

    a, b = in_threads(2, work)
    assert not set(a) & set(b)
    assert sorted(a + b) == sorted(i.number for i in invs)
    assert AuditEvent.select().where(AuditEvent.action == "auto_approve").count() == 120


def test_notify_admins_two_callers_never_list_an_invoice_twice(pg_url):
    acc = make_account(review_class())
    invs = [make_invoice(acc, status=S.UNDER_REVIEW, review_deadline=at("2026-11-25T10:00:00")) for _ in range(90)]

    def work(i):
        return jobs.notify_admins(ctx_at(NOW + dt.timedelta(seconds=i), f"job:loop{i}"), batch=8)

    results = in_threads(2, work)
    assert sum(r.done for r in results) == 90 and not any(r.failed for r in results)
    bodies = [m.body for m in OutboxMessage.select().where(OutboxMessage.kind == mail.DIGEST)]
    listed = Counter(n for body in bodies for n in re.findall(r"INV-\d{4}-\d{6}", body))
    assert listed == Counter({i.number: 1 for i in invs})


def test_close_postpay_and_expire_payments_two_callers_do_each_item_once(pg_url):
    direct = make_class()
    opened = []
    for i in range(30):
        acc = make_account(direct, name=f"Open {i}", email_addr=f"open{i}@example.com")
        Subscription.create(
            account=acc,
            name="SIP Trunk",
            service="Voice calls",
            status="active",
            fee=Decimal("49.00"),
            active_from=dt.date(2026, 1, 1),
        )
        opened.append(make_invoice(acc, status=S.OPEN, model="postpay", issue_date=dt.date(2026, 11, 2)))
    sent = make_approved(30, cls=direct, prefix="Late")
    for inv in sent:
        workflow.mark_invoice_sent(ctx_at(at("2026-11-01T04:00:00")), inv.id, 1)
    waiting = [p.id for p in Payment.select().where(Payment.status == "waiting_for_payment")]
    assert waiting

    def work(i):
        ctx = ctx_at(at("2026-12-20T00:00:00"), f"job:loop{i}")
        return jobs.close_postpay(ctx, batch=4), jobs.expire_payments(ctx, batch=4)

    results = in_threads(2, work)
    assert not any(c.failed or e.failed for c, e in results)
    assert sum(c.done for c, _ in results) == 30
    assert sum(e.done for _, e in results) == len(waiting)
    counts = Counter((e.invoice_id, e.action) for e in AuditEvent.select())
    assert all(counts[(i.id, "close")] == 1 for i in opened)
    assert {reload(i).status for i in opened} == {S.APPROVED}
    expired = Counter(e.invoice_id for e in AuditEvent.select().where(AuditEvent.action == "expire_payment"))
    assert set(expired.values()) == {1} and len(expired) == len(waiting)
    assert Payment.select().where(Payment.status == "expired").count() == len(waiting)


def test_dispatch_and_deliver_two_callers_share_and_send_once(pg_url, tmp_path):
    invoices = make_approved(60)
    transport = mail.MaildirTransport(tmp_path / "md")

    def work(i):
        ctx = ctx_at(NOW, f"job:loop{i}")
        queued, log_q = logged("dispatch_approved", "queued")
        sent, log_s = logged("deliver_outbox", "sent")
        jobs.dispatch_approved(ctx, log=log_q, batch=5)
        jobs.deliver_outbox(ctx, log=log_s, transport=transport, batch=7)
        return queued, sent

    (q1, s1), (q2, s2) = in_threads(2, work)
    assert not set(q1) & set(q2) and sorted(q1 + q2) == sorted(i.number for i in invoices)
    assert not set(s1) & set(s2) and len(s1) + len(s2) == 60
    ids = maildir_ids(tmp_path / "md")
    assert len(ids) == 60 == len(set(ids))
    assert Invoice.select().where(Invoice.claimed_by.is_null(False)).count() == 0


# --------------------------------------------------------------------------
# The loop guard per backend


def _env(url, tmp_path):
    return SimpleNamespace(
        ctx=ctx_at(NOW), db_url=url, config=AppConfig(mail={"transport": "maildir", "maildir": str(tmp_path / "md")})
    )


def test_second_sqlite_loop_is_refused(sqlite_url, tmp_path):
    """(The same with two real processes, --wait and SIGTERM: tests/test_jobs.py.)"""
    running = loop_lock()
    assert isinstance(running, LoopLock)
    running.try_acquire()
    try:
        with pytest.raises(LoopBusy, match="another job loop is already running"):
            jobs.run_loop(_env(sqlite_url, tmp_path), threading.Event(), once=True, wait=False, log=lambda line: None)
    finally:
        running.release()
    summary = jobs.run_loop(_env(sqlite_url, tmp_path), threading.Event(), once=True, wait=False, log=lambda line: None)
    assert summary.ok


def test_postgresql_loops_register_side_by_side(pg_url, tmp_path):
    other = loop_lock()
    assert isinstance(other, LoopRegistration)
    other.try_acquire()
    # A registration left by a loop of this host that was killed: removed by the next loop.
    dead = f"{socket.gethostname()}|999999999||x|{_pid_namespace()}"
    JobLock.insert(name="jobs:deadbeef", holder=dead, heartbeat_at=jobs.base.real_now()).execute()
    make_approved(2)
    lines: list[str] = []
    summary = jobs.run_loop(_env(pg_url, tmp_path), threading.Event(), once=True, wait=False, log=lines.append)
    assert summary.ok and summary.done >= 4  # not refused: dispatched and delivered both
    assert any("action=removed_dead_loop" in line for line in lines)
    assert [h.pid for h, _ in running_loops()] == [os.getpid()]  # the other one, still registered
    assert other.heartbeat()
    JobLock.delete().where(JobLock.name == other.name).execute()  # taken for dead while it hung:
    assert other.heartbeat() and JobLock.get(JobLock.name == other.name).holder == other.holder  # re-registers
    other.release()
    assert JobLock.select().count() == 0


# --------------------------------------------------------------------------
# Crash recovery of "sending" rows with several senders


def test_recovery_requeues_only_rows_whose_sender_is_dead_or_whose_lease_ran_out(store_url):
    make_approved(5)
    jobs.dispatch_approved(ctx_at(NOW))
    rows = list(OutboxMessage.select().order_by(OutboxMessage.id))
    assert len(rows) == 5
    now = jobs.base.real_now()
    here = f"{socket.gethostname()}|999999999||x|{_pid_namespace()}"
    cases = {
        rows[0].id: (mail.sender_id(), now + mail.SEND_LEASE),  # a live sender (this process): left alone
        rows[1].id: ("other-host|123|456|y|", now + mail.SEND_LEASE),  # live elsewhere: left alone
        rows[2].id: ("other-host|123|456|y|", now - dt.timedelta(seconds=1)),  # lease ran out
        rows[3].id: (here, now + mail.SEND_LEASE),  # its process on this host is gone
    }
    for msg_id, (holder, lease) in cases.items():
        (
            OutboxMessage.update(
                status=mail.SENDING, attempts=1, next_attempt_at=lease, last_error=mail.CLAIM_MARK + holder
            )
            .where(OutboxMessage.id == msg_id)
            .execute()
        )
    # rows[4]: "sending" with no sender recorded (an older version): requeued.
    OutboxMessage.update(status=mail.SENDING, attempts=1).where(OutboxMessage.id == rows[4].id).execute()

    assert mail.recover_interrupted(now=NOW) == 3
    status = {m.id: m for m in OutboxMessage.select()}
    assert [status[r.id].status for r in rows] == [mail.SENDING, mail.SENDING, mail.QUEUED, mail.QUEUED, mail.QUEUED]
    assert status[rows[3].id].next_attempt_at == NOW and "sender is gone" in status[rows[3].id].last_error
    # A SQLite loop holds the store's only lock: every "sending" row is its own to recover.
    assert mail.recover_interrupted(exclusive=True, now=NOW) == 2
    assert {m.status for m in OutboxMessage.select()} == {mail.QUEUED}


def test_a_loop_releases_only_invoice_claims_of_its_own_hosts_dead_processes(store_url, monkeypatch):
    invs = make_approved(4)
    dead_pid = "999999999"

    def claim_as(host: str, pid: str) -> str:
        monkeypatch.setattr(jobs.base.socket, "gethostname", lambda: host)
        return f"dispatch:{jobs.base._short_host()}:{pid}:beef"

    here = "billing-worker-production-eu-01.example.net"
    claims = {
        invs[0].id: claim_as(here, dead_pid),  # this host, process gone: released
        invs[1].id: claim_as(here, str(os.getpid())),  # this host, alive: kept
        invs[2].id: claim_as("billing-worker-production-eu-02.example.net", dead_pid),  # same 20-char start
        invs[3].id: claim_as("billing-worker-production-eu-01.example.org", dead_pid),  # same short name
    }
    assert len(set(claims.values())) == 4
    lease = jobs.base.real_now() + dt.timedelta(minutes=5)
    for inv_id, claim in claims.items():
        Invoice.update(claimed_by=claim, claimed_until=lease).where(Invoice.id == inv_id).execute()
    claim_as(here, "0")  # the loop runs on `here`
    assert jobs.base.release_dead_claims() == 1
    left = {i.id: i.claimed_by for i in Invoice.select().where(Invoice.id.in_(list(claims)))}
    assert left == {**claims, invs[0].id: None}


def test_a_requeued_slow_sender_stops_before_the_final_dot(store_url):
    """Lease ran out while a live sender was still at it: the next claim wins, the slow one aborts."""
    make_approved(1)
    jobs.dispatch_approved(ctx_at(NOW))
    [row] = OutboxMessage.select()
    slow = mail._claim(row.id, NOW, "slow-host|1|1|a|")
    OutboxMessage.update(claimed_until=jobs.base.real_now() - dt.timedelta(seconds=1)).execute()
    assert mail.recover_interrupted(now=NOW) == 1
    fresh = mail._claim(row.id, NOW, "fresh-host|2|2|b|")
    assert fresh == slow + 1
    with pytest.raises(mail.ClaimLost):
        mail._point_of_no_return(row.id, slow)
    mail._point_of_no_return(row.id, fresh)  # the new claim goes ahead
    assert OutboxMessage.get_by_id(row.id).status == mail.UNCERTAIN


# --------------------------------------------------------------------------
# Time slices: a long job hands over so mail keeps flowing


def test_max_run_seconds_is_validated_and_not_a_job():
    from tui_billing.config import ConfigError

    assert jobs.run_slice({}) == jobs.DEFAULT_SLICE == 60
    assert jobs.run_slice({"max_run_seconds": 2}) == 2
    assert "max_run_seconds" not in jobs.intervals({"max_run_seconds": 2})
    for bad in ("soon", 0, True, -1):
        with pytest.raises(ConfigError, match="jobs.max_run_seconds"):
            jobs.run_slice({"max_run_seconds": bad})


def test_a_sliced_dispatch_lets_delivery_run_then_continues(sqlite_url, tmp_path):
    make_approved(30)
    env = SimpleNamespace(
        ctx=ctx_at(NOW),
        db_url=sqlite_url,
        config=AppConfig(
            mail={"transport": "maildir", "maildir": str(tmp_path / "md")},
            jobs={"max_run_seconds": 0.1, "dispatch_approved": 600, "deliver_outbox": 0.2},
        ),
    )
    lines: list[str] = []
    stop = threading.Event()
    t = threading.Thread(target=lambda: jobs.run_loop(env, stop, log=lines.append))
    t.start()
    try:
        wait_for(lambda: sum("action=sent" in line for line in lines) == 30, timeout=60)
    finally:
        stop.set()
        t.join(20)
    order = [line.split()[1] for line in lines if "action=queued" in line or "action=sent" in line]
    # Delivery started before dispatch finished (one PDF takes longer than the slice),
    # and dispatch went on without waiting for its 600 s interval.
    assert order.index("job=deliver_outbox") < max(i for i, j in enumerate(order) if j == "job=dispatch_approved")
    assert Invoice.select().where(Invoice.status == S.APPROVED).count() == 0
