"""The job loop is visible (issue 13): the console's header says which job loop
serves the store (this console, another process with its last pass, or none),
the approve dialog promises only what that loop will do, and by default the
console runs the loop itself when no other one is alive on the store.

Real SQLite store, real Pilot at 80x24, a real second loop (`tui-billing jobs
run` in a subprocess) and real JobLock rows as the lock module writes them."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import time

import pytest
from textual.widgets import Static
from textual.widgets._header import HeaderTitle

from tui_billing import statuses as S
from tui_billing.jobs import status as jobs_status
from tui_billing.jobs.base import real_now
from tui_billing.jobs.lock import PASS_PREFIX, LoopLock
from tui_billing.risk import is_flagged
from tui_billing.screens.actions import NO_LOOP
from tui_billing.screens.confirm import ApproveModal, ConfirmModal
from tui_billing.screens.summary import SummaryModal
from tui_billing.store.models import Invoice, JobLock
from tui_billing.widgets.invoice_table import InvoiceTable

from .conftest_console import console_env, console_template, make_app, settle  # noqa: F401
from .test_jobs_support import cli_env, spawn, terminated, wait_for

NOW_ARG = "2026-11-20T10:00:00Z"  # the console tests' fixed clock (conftest_console.CONSOLE_NOW)


def run(coro):
    return asyncio.run(coro)


def header_text(app) -> str:
    """The header line as painted (so a title cut at 80 columns shows as cut)."""
    title = app.screen.query_one(HeaderTitle)
    return " ".join(" ".join(s.text.rstrip() for s in title.render_lines(title.region.reset_offset)).split())


async def approve_dialog_body(pilot) -> str:
    """Press `a` on the first unflagged invoice under review; the dialog's text."""
    app = pilot.app
    table = app.screen.query_one(InvoiceTable)
    for _ in range(200):
        row = table.current_row()
        if row is not None and row.status == S.UNDER_REVIEW and not is_flagged(row.risk_score):
            break
        await pilot.press("down")
    else:
        raise AssertionError("no unflagged invoice under review")
    await pilot.press("a")
    await settle(pilot)
    assert isinstance(app.screen, (ConfirmModal, ApproveModal))
    return " ".join(str(app.screen.body).split())


async def until(pilot, predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError("timed out waiting")


# -- the status function (no Textual) ------------------------------------------------


def test_loop_status_reads_heartbeats_and_passes(console_env):
    assert not jobs_status.loop_status().running
    assert jobs_status.loop_status().words() == "no job loop: approved invoices wait"

    lock = LoopLock()  # this process, exactly as a loop takes the store
    lock.try_acquire()
    status = jobs_status.loop_status()
    [loop] = status.alive
    assert loop.here and status.here is loop and loop.last_pass_at is None
    assert status.words(here="this console") == "jobs: this console, first pass running"
    lock.note_pass()
    assert JobLock.get(JobLock.name == PASS_PREFIX + "jobs").holder == lock.holder
    assert jobs_status.loop_status().words(here="this console") == "jobs: this console, pass just now"
    later = real_now() + dt.timedelta(minutes=1, seconds=50)  # heartbeats continue, no pass since
    JobLock.update(heartbeat_at=later).where(JobLock.name == "jobs").execute()
    assert jobs_status.loop_status(now=later).words() == "jobs: this process, pass 1 min ago"
    lock.release()
    assert JobLock.select().count() == 0  # the pass row goes with the lock
    assert not jobs_status.loop_status().running

    # Another host's loop: named host:pid; once its heartbeat is 2 minutes old it is not alive.
    JobLock.insert(name="jobs", holder="billing-01|4711|99|abc|pid:[1]", heartbeat_at=real_now()).execute()
    status = jobs_status.loop_status()
    assert status.running and status.here is None
    assert status.words(here="this console") == "jobs: billing-01:4711, first pass running"
    JobLock.update(heartbeat_at=real_now() - dt.timedelta(minutes=3)).execute()
    status = jobs_status.loop_status()
    assert not status.running and len(status.loops) == 1
    # A loop of this host whose process is gone (killed): not alive at once.
    from tui_billing.jobs.lock import _pid_namespace

    JobLock.update(holder=f"{socket.gethostname()}|999999999||x|{_pid_namespace()}", heartbeat_at=real_now()).execute()
    assert not jobs_status.loop_status().running


def test_loop_status_with_several_registered_loops(store_url):
    """PostgreSQL's registrations (run here on both backends): every loop is listed,
    its pass row follows it, and a dead loop's rows are removed by the next loop."""
    from tui_billing.jobs.lock import LoopRegistration, _pid_namespace

    mine, other = LoopRegistration(), LoopRegistration()
    other.holder = "billing-02|77|1|r|pid:[1]"  # a loop on another host
    mine.try_acquire()
    other.try_acquire()
    other.note_pass()
    status = jobs_status.loop_status()
    assert sorted(loop.here for loop in status.alive) == [False, True]
    assert status.words(here="this console") == "jobs: this console +1, pass just now"
    assert [loop.where for loop in status.others] == ["billing-02:77"]

    dead = f"{socket.gethostname()}|999999999||x|{_pid_namespace()}"
    JobLock.insert(name="jobs:deadbeef", holder=dead, heartbeat_at=real_now()).execute()
    JobLock.insert(name=PASS_PREFIX + "jobs:deadbeef", holder=dead, heartbeat_at=real_now()).execute()
    assert len(jobs_status.loop_status().alive) == 2  # the dead one is listed, not alive
    third = LoopRegistration()
    third.try_acquire()  # removes the dead loop's registration and its pass row
    assert third.reaped == [dead]
    assert not JobLock.select().where(JobLock.name.contains("deadbeef")).exists()
    assert JobLock.get(JobLock.name == PASS_PREFIX + other.name).holder == other.holder  # a live one's stays
    for loop in (mine, other, third):
        loop.release()
    assert JobLock.select().count() == 0


def test_console_mode_config_is_validated():
    from tui_billing.config import ConfigError
    from tui_billing.jobs import console_mode, intervals

    assert console_mode({}) == "auto"
    assert console_mode({"console": "off"}) == "off" and console_mode({"console": True}) == "on"
    with pytest.raises(ConfigError, match="jobs.console"):
        console_mode({"console": "sometimes"})
    assert "console" not in intervals({"console": "off"})  # not mistaken for a job


# -- the console ---------------------------------------------------------------------


def test_no_loop_header_says_so_and_approve_dialog_says_they_wait(console_env):
    async def scenario():
        app = make_app(console_env)  # jobs off: nothing runs a loop on this store
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            header = header_text(app)
            # 80 columns: the job words and the --now both fit (the user gives way).
            assert header == "Review queue — no job loop: approved invoices wait · --now 2026-11-20 10:00"
            assert not [w for w in app.workers if w.group == "jobs"]
            body = await approve_dialog_body(pilot)
            assert NO_LOOP in body
            assert "within minutes" not in body

    run(scenario())
    assert JobLock.select().count() == 0


def test_header_at_120_columns_keeps_the_user(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            assert header_text(app) == (
                "Review queue — no job loop: approved invoices wait · alice · --now 2026-11-20 10:00"
            )
            await pilot.resize_terminal(80, 24)
            await settle(pilot)
            assert "alice" not in header_text(app) and "--now" in header_text(app)

    run(scenario())


def test_another_loop_is_named_the_dialog_promises_sending_and_no_second_loop_starts(console_env, tmp_path):
    log = tmp_path / "loop.log"
    env = cli_env(TUI_BILLING_SMTP_MAILDIR=tmp_path / "other-maildir")
    with terminated(spawn(["--db", console_env.db_url, "--now", NOW_ARG, "jobs", "run"], env, log)) as other:
        # Its first pass is done when its pass row is written.
        wait_for(
            lambda: JobLock.get_or_none(JobLock.name == PASS_PREFIX + "jobs") is not None or other.poll() is not None,
            timeout=60,
        )
        assert other.poll() is None, log.read_text()
        where = f"{socket.gethostname()}:{other.pid}"

        async def scenario():
            app = make_app(console_env, jobs="auto")  # the default of `tui-billing`
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(pilot)
                assert f"jobs: {where}, pass just now" in header_text(app)
                # The store has its loop: the console does not start a second one.
                assert not app._jobs_active
                assert not [w for w in app.workers if w.group == "jobs"]
                body = await approve_dialog_body(pilot)
                assert f"sent to the customers within minutes by the job loop on {where}." in body
                assert NO_LOOP not in body

        run(scenario())
        assert JobLock.get(JobLock.name == "jobs").holder.split("|")[1] == str(other.pid)
        other.terminate()
        assert other.wait(20) == 0
    assert "job=loop action=stopped" in log.read_text()


def test_embedded_loop_starts_when_no_loop_holds_the_store(console_env, tmp_path):
    maildir = tmp_path / "maildir"  # conftest_console: this console's mail goes here

    async def scenario():
        app = make_app(console_env, jobs="auto")
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await settle(pilot)
            assert [w for w in app.workers if w.group == "jobs"], "auto: the console runs the loop"
            assert any("Job loop started" in n.message for n in app._notifications)
            # It holds the store: the lock row is this process's.
            await until(pilot, lambda: "jobs: this console, pass" in app.jobs_words)
            row = JobLock.get(JobLock.name == "jobs")
            assert row.holder.split("|")[:2] == [socket.gethostname(), str(os.getpid())]
            assert "jobs: this console, pass just now" in header_text(app)
            body = await approve_dialog_body(pilot)
            assert (
                f"sent within minutes by the job loop in this console, into the maildir {maildir} "
                "(no mail server is configured)"
            ) in body
            await pilot.press("n")
            await pilot.press("ctrl+q")

    run(scenario())
    assert (maildir / "new").is_dir() and any((maildir / "new").iterdir()), "its first pass mailed"
    assert JobLock.select().count() == 0, "quitting released the store"


def test_auto_console_takes_the_store_over_when_the_other_loop_stops(console_env, tmp_path):
    log = tmp_path / "loop.log"
    env = cli_env(TUI_BILLING_SMTP_MAILDIR=tmp_path / "other-maildir")
    with terminated(spawn(["--db", console_env.db_url, "--now", NOW_ARG, "jobs", "run"], env, log)) as other:
        wait_for(
            lambda: JobLock.get_or_none(JobLock.name == "jobs") is not None or other.poll() is not None, timeout=60
        )

        async def scenario():
            app = make_app(console_env, jobs="auto", jobs_poll_seconds=0.5)
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(pilot)
                assert not app._jobs_active and f":{other.pid}" in app.jobs_words
                other.terminate()
                assert other.wait(20) == 0
                await until(pilot, lambda: app.jobs_words.startswith("jobs: this console"))
                app.stop_jobs.set()

        run(scenario())


def test_off_peak_reissue_note_says_when_no_loop_runs(console_env):
    async def scenario():
        app = make_app(console_env)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            table = app.screen.query_one(InvoiceTable)
            for _ in range(200):
                row = table.current_row()
                if row is not None and row.status == S.UNDER_REVIEW:
                    break
                await pilot.press("down")
            await pilot.press("r")
            await settle(pilot)
            # The dialog says it before the admin confirms, not only the summary after.
            note = str(app.screen.query_one("#reissue-note", Static).render())
            assert "No job loop is running now: nothing is recalculated until one runs" in note
            await pilot.press("ctrl+s")  # off-peak, the dialog's default
            await settle(pilot)
            assert isinstance(app.screen, SummaryModal)
            notes = " ".join(app.screen.notes)
            assert "none is running now (tui-billing jobs run)" in notes

    run(scenario())
    assert Invoice.select().where(Invoice.reissue_mode == "off_peak", Invoice.status == S.REJECTED).exists()
