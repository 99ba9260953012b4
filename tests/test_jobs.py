"""Jobs: time travel (fixed clocks and --now), the loop, the single-loop guard."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import socket
import threading
from collections import Counter
from decimal import Decimal

import pytest

from tests.conftest import opened
from tests.test_jobs_support import (
    NOW,
    SmtpServer,
    at,
    cli_env,
    ctx_at,
    make_account,
    make_approved,
    make_class,
    make_invoice,
    payments_of,
    reload,
    run_cli,
    spawn,
    terminated,
    wait_for,
)
from tui_billing import jobs, mail, workflow
from tui_billing import statuses as S
from tui_billing.jobs.base import format_line
from tui_billing.jobs.lock import LoopBusy, LoopLock
from tui_billing.store import db as store_db
from tui_billing.store.models import AuditEvent, Invoice, JobLock, OutboxMessage, Payment, Subscription


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on 127.0.0.1, in this process."""
    server = SmtpServer().start()
    yield server
    server.stop()


LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ job=[a-z_]+( [a-z_]+=(\"[^\"]*\"|\S+))*$")


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No operator config or mail settings leak in; mail goes to a temp Maildir."""
    for key in ("TUI_BILLING_DB", "TUI_BILLING_SMTP_TRANSPORT", "TUI_BILLING_SMTP_HOST", "TUI_BILLING_SMTP_PORT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("TUI_BILLING_SMTP_MAILDIR", str(tmp_path / "maildir"))
    return tmp_path


@pytest.fixture
def sqlite_store(tmp_path):
    yield from opened("sqlite:///" + str(tmp_path / "jobs.db"))


def review_class(hold_days=5, net_days=26):
    return make_class("Enterprise", "after_review", hold_days, net_days)


# --------------------------------------------------------------------------
# Auto-approve at the deadline


def test_hold_expiry_approves_at_the_deadline_not_a_minute_before(store_url):
    acc = make_account(review_class())
    deadline = at("2026-11-25T10:00:00")
    inv = make_invoice(acc, status=S.UNDER_REVIEW, review_deadline=deadline)

    r = jobs.auto_approve_due(ctx_at(deadline - dt.timedelta(minutes=1)))
    assert r.done == 0 and reload(inv).status == S.UNDER_REVIEW

    lines = []
    r = jobs.auto_approve_due(ctx_at(deadline, "job:auto_approve"), log=lambda job, **f: lines.append((job, f)))
    inv = reload(inv)
    assert r.done == 1 and inv.status == S.APPROVED
    assert inv.approved_by == "job:auto_approve" and inv.approved_at == deadline
    assert inv.issue_date == dt.date(2026, 11, 1)  # the generation date is kept
    assert lines == [("auto_approve", {"invoice": inv.number, "action": "approved"})]
    # Idempotent: nothing more to do.
    assert jobs.auto_approve_due(ctx_at(deadline + dt.timedelta(hours=1))).done == 0


def test_rejected_invoice_is_never_auto_approved(store_url):
    acc = make_account(review_class())
    inv = make_invoice(
        acc,
        status=S.REJECTED,
        review_deadline=at("2026-11-19T10:00:00"),
        reissue_mode="off_peak",
        reissue_after=at("2026-11-21T01:00:00"),
    )
    r = jobs.auto_approve_due(ctx_at(at("2026-11-20T14:00:00")))
    assert r.done == 0 and reload(inv).status == S.REJECTED


def test_cli_time_travel_auto_approve_then_dispatch(store_url, cli, isolated):
    acc = make_account(review_class())
    inv = make_invoice(acc, status=S.UNDER_REVIEW, review_deadline=at("2026-11-25T10:00:00"))

    code, _, err = cli("--now", "2026-11-25T09:59:00Z", "jobs", "run", "--once")
    assert code == 0, err
    assert reload(inv).status == S.UNDER_REVIEW
    assert f"invoice={inv.number} action=approved" not in err

    code, _, err = cli("--now", "2026-11-25T10:00:00Z", "jobs", "run", "--once")
    assert code == 0, err
    assert f"2026-11-25T10:00:00Z job=auto_approve invoice={inv.number} action=approved" in err
    assert f"job=dispatch_approved invoice={inv.number} action=queued status=unpaid" in err
    assert re.search(rf"job=deliver_outbox invoice={inv.number} .*action=sent", err)
    for line in err.strip().splitlines():
        assert LINE.match(line), line
    assert reload(inv).status == S.UNPAID
    assert OutboxMessage.get(OutboxMessage.invoice == inv.id).status == mail.SENT


# --------------------------------------------------------------------------
# Off-peak reissue


def test_offpeak_reissue_waits_for_the_window(store_url):
    acc = make_account(review_class())
    inv = make_invoice(acc, status=S.UNDER_REVIEW, review_deadline=at("2026-11-25T10:00:00"))
    workflow.request_reissue(ctx_at(at("2026-11-20T14:00:00"), "alice"), inv.id, "off_peak")
    inv = reload(inv)
    assert inv.status == S.REJECTED and inv.reissue_after == at("2026-11-21T01:00:00")

    for moment in ("2026-11-20T14:00:00", "2026-11-20T23:30:00", "2026-11-21T00:59:00"):
        assert jobs.reissue_offpeak(ctx_at(at(moment))).done == 0, moment
        assert reload(inv).status == S.REJECTED

    r = jobs.reissue_offpeak(ctx_at(at("2026-11-21T01:00:00"), "job:reissue_offpeak"))
    inv = reload(inv)
    assert r.done == 1 and inv.status == S.UNDER_REVIEW and inv.revision == 2
    assert inv.reissue_after is None and inv.notified_at is None


def test_missed_window_waits_for_the_next_one_and_now_requests_run_any_time(store_url):
    acc = make_account(review_class())
    missed = make_invoice(acc, status=S.REJECTED, reissue_mode="off_peak", reissue_after=at("2026-11-20T01:00:00"))
    stale_now = make_invoice(acc, status=S.REJECTED, reissue_mode="now", reissue_after=at("2026-11-20T09:00:00"))
    r = jobs.reissue_offpeak(ctx_at(at("2026-11-20T14:00:00")))  # outside the window
    assert r.done == 1
    assert reload(missed).status == S.REJECTED
    assert reload(stale_now).status == S.UNDER_REVIEW
    assert jobs.reissue_offpeak(ctx_at(at("2026-11-21T05:00:00"))).done == 0  # 05:00 is outside
    assert jobs.reissue_offpeak(ctx_at(at("2026-11-21T04:59:00"))).done == 1
    assert reload(missed).status == S.UNDER_REVIEW


def test_offpeak_batches_are_resumable_after_a_stop(store_url):
    acc = make_account(review_class())
    invs = [
        make_invoice(acc, status=S.REJECTED, reissue_mode="off_peak", reissue_after=at("2026-11-21T01:00:00"))
        for _ in range(7)
    ]
    stop = threading.Event()
    seen = []

    def log(job, **f):
        seen.append(f)
        if len(seen) == 3:
            stop.set()  # SIGTERM arrives while the third is done

    ctx = ctx_at(at("2026-11-21T02:00:00"))
    r = jobs.reissue_offpeak(ctx, stop=stop, log=log, batch=2)
    assert r.done == 3
    assert Counter(reload(i).status for i in invs) == {S.UNDER_REVIEW: 3, S.REJECTED: 4}
    assert Invoice.select().where(Invoice.claimed_by.is_null(False)).count() == 0  # claims released
    r = jobs.reissue_offpeak(ctx, batch=2)
    assert r.done == 4 and {reload(i).status for i in invs} == {S.UNDER_REVIEW}


# --------------------------------------------------------------------------
# Postpay closing and payment expiry


def _open_postpay(cls):
    acc = make_account(cls)
    Subscription.create(
        account=acc,
        name="SIP Trunk 30 channels",
        service="Voice calls",
        status="active",
        fee=Decimal("149.00"),
        active_from=dt.date(2026, 1, 1),
    )
    return make_invoice(acc, status=S.OPEN, model="postpay", issue_date=dt.date(2026, 11, 2))


def test_postpay_closes_on_day_two_not_day_one(store_url):
    reviewed = _open_postpay(review_class())
    direct = _open_postpay(make_class())
    for moment in ("2026-10-31T23:59:00", "2026-11-01T00:00:00", "2026-11-01T23:59:00"):
        assert jobs.close_postpay(ctx_at(at(moment))).done == 0, moment
    assert reload(reviewed).status == S.OPEN

    day2 = at("2026-11-02T00:00:00")
    r = jobs.close_postpay(ctx_at(day2, "job:close_postpay"))
    assert r.done == 2
    reviewed, direct = reload(reviewed), reload(direct)
    assert reviewed.status == S.UNDER_REVIEW and reviewed.review_deadline == day2 + dt.timedelta(days=5)
    assert direct.status == S.APPROVED  # its class sends immediately: dispatch picks it up
    assert reviewed.closed_at == day2 and reviewed.issue_date == dt.date(2026, 11, 2)
    assert reviewed.total == Decimal("149.00")  # recalculated from the period at closing
    assert payments_of(reviewed) == []  # payments exist only once issued to the customer
    assert jobs.close_postpay(ctx_at(day2)).done == 0


def test_payment_expiry_makes_the_invoice_overdue(store_url):
    acc = make_account(make_class(net_days=14))
    inv = make_invoice(acc, status=S.APPROVED, issue_date=dt.date(2026, 11, 1))
    workflow.mark_invoice_sent(ctx_at(at("2026-11-01T04:00:00")), inv.id, 1)
    [pay] = payments_of(inv)
    assert pay.status == "waiting_for_payment" and pay.due_date == dt.date(2026, 11, 15)

    assert jobs.expire_payments(ctx_at(at("2026-11-15T23:59:00"))).done == 0
    assert reload(inv).status == S.UNPAID
    r = jobs.expire_payments(ctx_at(at("2026-11-16T00:00:00"), "job:expire_payments"))
    assert r.done == 1
    assert reload(inv).status == S.OVERDUE
    assert Payment.get_by_id(pay.id).status == "expired"
    assert jobs.expire_payments(ctx_at(at("2026-11-17T00:00:00"))).done == 0


def test_cli_time_travel_postpay_and_expiry(store_url, cli, isolated):
    inv = _open_postpay(make_class())
    code, _, err = cli("--now", "2026-11-01T12:00:00Z", "jobs", "run", "--once")
    assert code == 0, err
    assert reload(inv).status == S.OPEN
    code, _, err = cli("--now", "2026-11-02T00:05:00Z", "jobs", "run", "--once")
    assert code == 0, err
    assert f"job=close_postpay invoice={inv.number} action=closed status=approved" in err
    inv = reload(inv)
    assert inv.status == S.UNPAID and inv.due_date == dt.date(2026, 11, 16)
    code, _, err = cli("--now", "2026-11-17T08:00:00Z", "jobs", "run", "--once")
    assert code == 0, err
    assert f"job=expire_payments invoice={inv.number}" in err and "action=expired" in err
    assert reload(inv).status == S.OVERDUE


# --------------------------------------------------------------------------
# Admin digest and the console's hook


def test_notify_admins_one_digest_then_only_new_ones(store_url, smtp):
    acc = make_account(review_class())
    first = [make_invoice(acc, status=S.UNDER_REVIEW, review_deadline=at("2026-11-25T10:00:00")) for _ in range(3)]
    notice = jobs.review_notice()
    assert notice.waiting == 3 and notice.unnotified == 3

    r = jobs.notify_admins(ctx_at(NOW, "job:notify_admins"))
    assert r.done == 3
    assert jobs.notify_admins(ctx_at(NOW)).done == 0  # each invoice in exactly one digest
    assert all(reload(i).notified_at == NOW for i in first)

    # One is reissued: it waits for review again, so admins hear about it again.
    workflow.reissue_many(ctx_at(NOW, "alice"), [first[0].id], "now")
    later = jobs.review_notice(notice.cursor)
    assert later.new == 1 and later.newest == first[0].number and later.unnotified == 1
    assert jobs.notify_admins(ctx_at(NOW + dt.timedelta(minutes=1))).done == 1

    jobs.deliver_outbox(ctx_at(NOW + dt.timedelta(minutes=1)), transport=smtp.transport())
    got = smtp.inbox.messages()
    assert [g.rcpt_tos for g in got] == [["billing-admins@example.com"]] * 2
    assert got[0].message["Subject"] == "3 invoices waiting for review"
    body = got[0].message.get_body(("plain",)).get_content()
    assert all(i.number in body for i in first)
    assert got[1].message["Subject"] == "1 invoice waiting for review"


# --------------------------------------------------------------------------
# Concurrency: two callers, two loops


def test_two_concurrent_callers_never_send_twice(store_url, smtp):
    invoices = make_approved(30)
    barrier = threading.Barrier(2)
    errors = []

    def worker(name):
        try:
            barrier.wait()
            ctx = ctx_at(NOW, f"job:{name}")
            for _ in range(2):
                jobs.dispatch_approved(ctx, batch=5)
                jobs.deliver_outbox(ctx, transport=smtp.transport(), batch=7)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            store_db.close()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    ids = smtp.inbox.message_ids()
    assert len(ids) == 30 and len(set(ids)) == 30
    assert sorted(ids) == sorted(m.message_id for m in OutboxMessage.select())
    assert {m.status for m in OutboxMessage.select()} == {mail.SENT}
    assert Payment.select().count() == 30
    assert AuditEvent.select().where(AuditEvent.action == "send").count() == 30
    assert {reload(i).status for i in invoices} <= {S.PAID, S.UNPAID}


def test_loop_lock_refuses_a_second_loop_and_takes_over_dead_or_stale_ones(store_url):
    a, b = LoopLock(), LoopLock()
    a.try_acquire()
    with pytest.raises(LoopBusy) as exc:
        b.try_acquire()
    assert "already running" in str(exc.value) and "--wait" in str(exc.value)
    assert a.heartbeat()
    a.release()
    b.try_acquire()  # free again
    b.release()

    # A loop that was killed on this host: taken over at once.
    from tui_billing.jobs.lock import _pid_namespace

    dead = f"{socket.gethostname()}|999999999||x|{_pid_namespace()}"
    JobLock.insert(name="jobs", holder=dead, heartbeat_at=jobs.base.real_now()).execute()
    c = LoopLock()
    c.try_acquire()
    assert c.took_over == dead
    c.release()
    # Same host name, another pid space (a container): no way to tell, so refused.
    JobLock.insert(
        name="jobs", holder=f"{socket.gethostname()}|999999999||x|pid:[1]", heartbeat_at=jobs.base.real_now()
    ).execute()
    with pytest.raises(LoopBusy):
        LoopLock().try_acquire()
    JobLock.delete().execute()

    # A loop elsewhere with a fresh heartbeat: refused; once stale: taken over.
    JobLock.insert(name="jobs", holder="other-host|123|456|y", heartbeat_at=jobs.base.real_now()).execute()
    with pytest.raises(LoopBusy):
        LoopLock().try_acquire()
    JobLock.update(heartbeat_at=jobs.base.real_now() - dt.timedelta(minutes=3)).execute()
    d = LoopLock()
    d.try_acquire()
    assert d.took_over == "other-host|123|456|y"
    # The loop that was taken over notices at its next heartbeat (and stops).
    JobLock.update(heartbeat_at=jobs.base.real_now() - dt.timedelta(minutes=3)).execute()
    e = LoopLock()
    e.try_acquire()
    assert not d.heartbeat() and e.heartbeat()
    d.release()  # releases nothing it no longer holds
    assert JobLock.get().holder == e.holder
    e.release()


def test_second_loop_is_refused_then_waits_and_sigterm_stops_cleanly(sqlite_store, tmp_path):
    make_approved(3)
    env = cli_env(TUI_BILLING_SMTP_MAILDIR=tmp_path / "md")
    db = ["--db", sqlite_store, "--now", "2026-11-20T10:00:00Z"]
    log_a = tmp_path / "a.log"
    with terminated(spawn([*db, "jobs", "run"], env, log_a)) as a:
        wait_for(
            lambda: (
                "action=finished" in log_a.read_text()
                or "job=deliver_outbox" in log_a.read_text()
                or a.poll() is not None
            )
        )
        assert a.poll() is None
        b = run_cli([*db, "jobs", "run", "--once"], env)
        assert b.returncode == 1
        assert "another job loop is already running" in b.stderr and f"pid {a.pid}" in b.stderr

        log_c = tmp_path / "c.log"
        with terminated(spawn([*db, "jobs", "run", "--once", "--wait"], env, log_c)) as c:
            wait_for(lambda: "action=waiting" in log_c.read_text())
            assert c.poll() is None
            a.send_signal(signal.SIGTERM)
            assert a.wait(10) == 0
            assert "job=loop action=stopped" in log_a.read_text()
            assert c.wait(20) == 0
            assert "job=loop action=started mode=once" in log_c.read_text()
    assert JobLock.select().count() == 0  # both released the lock
    assert {i.status for i in Invoice.select()} <= {S.PAID, S.UNPAID}


def test_sigterm_finishes_the_item_in_hand(sqlite_store, tmp_path):
    invoices = make_approved(40)
    env = cli_env(TUI_BILLING_SMTP_MAILDIR=tmp_path / "md")
    log = tmp_path / "loop.log"
    with terminated(spawn(["--db", sqlite_store, "--now", "2026-11-20T10:00:00Z", "jobs", "run"], env, log)) as p:
        wait_for(lambda: log.read_text().count("action=queued") >= 3)
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
    text = log.read_text()
    assert "job=loop action=stopped" in text
    queued = text.count("job=dispatch_approved") - text.count("action=skipped")
    statuses = Counter(reload(i).status for i in invoices)
    assert 3 <= statuses[S.PAID] + statuses[S.UNPAID] == queued < 40  # stopped mid-way, nothing half done
    for inv in invoices:
        rows = OutboxMessage.select().where(OutboxMessage.invoice == inv.id).count()
        assert rows == (0 if reload(inv).status == S.APPROVED else 1)
    assert Invoice.select().where(Invoice.claimed_by.is_null(False)).count() == 0
    assert JobLock.select().count() == 0


def test_cli_once_subprocess_backdated_and_greppable(sqlite_store, tmp_path):
    acc = make_account(review_class())
    inv = make_invoice(acc, status=S.UNDER_REVIEW, review_deadline=at("2026-11-25T10:00:00"))
    env = cli_env(TUI_BILLING_SMTP_MAILDIR=tmp_path / "md")
    r = run_cli(["--db", sqlite_store, "--now", "2026-11-25T10:00:00Z", "jobs", "run", "--once"], env)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert all(LINE.match(line) for line in lines), lines
    assert f"2026-11-25T10:00:00Z job=auto_approve invoice={inv.number} action=approved" in lines
    assert reload(inv).status == S.UNPAID
    r = run_cli(["--db", sqlite_store, "outbox", "--json"], env)
    # Approved in the same pass it would have been announced: no digest for it.
    assert json.loads(r.stdout)["counts"]["sent"] == 1


def test_job_intervals_config_is_validated(store_url, cli, isolated):
    cfg = isolated / "bad.toml"
    cfg.write_text('[jobs]\nauto_approve = "soon"\n')
    code, _, err = cli("--config", str(cfg), "jobs", "run", "--once")
    assert code == 2 and "jobs.auto_approve" in err
    cfg.write_text("[jobs]\nteleport = 5\n")
    code, _, err = cli("--config", str(cfg), "jobs", "run", "--once")
    assert code == 2 and "not a job" in err
    cfg.write_text(
        '[jobs]\nnotify_admins = 0\ndispatch_approved = 30\n[mail]\ntransport = "maildir"\n'
        f'maildir = "{isolated / "md2"}"\n'
    )
    code, _, err = cli("--config", str(cfg), "--now", "2026-11-20T10:00:00Z", "jobs", "run", "--once")
    assert code == 0, err
    assert "notify_admins" not in err.split("jobs=")[1].split()[0]
    assert jobs.intervals({"dispatch_approved": 30})["dispatch_approved"] == 30
    assert jobs.intervals({})["deliver_outbox"] == jobs.DEFAULT_INTERVAL == 60


def test_jobs_without_action_is_usage_error(store_url, cli):
    code, _, err = cli("jobs")
    assert code == 2 and "run" in err


def test_run_loop_in_a_thread_like_the_console(sqlite_store, tmp_path):
    """The console's --jobs worker: run_loop(env, stop_event), no signal handlers."""
    from types import SimpleNamespace

    from tui_billing.config import AppConfig

    make_approved(2)
    env = SimpleNamespace(
        ctx=ctx_at(NOW),
        db_url=sqlite_store,
        config=AppConfig(mail={"transport": "maildir", "maildir": str(tmp_path / "md")}, jobs={"deliver_outbox": 0.2}),
    )
    lines: list[str] = []
    stop = threading.Event()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("s", jobs.run_loop(env, stop, log=lines.append)))
    t.start()
    wait_for(lambda: sum("action=sent" in line for line in lines) == 2)
    stop.set()
    t.join(10)
    assert not t.is_alive() and result["s"].ok and result["s"].stopped
    assert lines[0].startswith("2026-11-20T10:00:00Z job=loop action=started mode=loop")
    assert lines[-1].startswith("2026-11-20T10:00:00Z job=loop action=stopped")
    assert JobLock.select().count() == 0


def test_log_line_format_quotes_and_never_breaks_lines():
    line = format_line(
        dt.datetime(2026, 11, 22, 3, 0),
        "auto_approve",
        {"invoice": "INV-2026-000123", "action": "approved", "reason": 'a "b"\nc', "x": None},
    )
    assert line == '2026-11-22T03:00:00Z job=auto_approve invoice=INV-2026-000123 action=approved reason="a \\"b\\" c"'
