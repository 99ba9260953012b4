"""Fixtures for the console tests (imported by tests/test_console*.py).

A real SQLite store, filled once per session by the demo builder (300
invoices, seed 1, fixed clock) and copied for each test, so tests can write.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil

import pytest

from tui_billing.clock import Clock, zone
from tui_billing.commands.common import Env
from tui_billing.config import AppConfig
from tui_billing.store import db as store_db
from tui_billing.workflow import Ctx

os.environ.setdefault("TZ", "UTC")
CONSOLE_NOW = dt.datetime(2026, 11, 20, 10, 0, 0)  # naive UTC


def console_ctx() -> Ctx:
    return Ctx(clock=Clock(tz=zone("UTC"), fixed=CONSOLE_NOW), actor="alice")


@pytest.fixture(scope="session")
def console_template(tmp_path_factory):
    from tui_billing import demo
    from tui_billing.store.models import database
    from tui_billing.store.settings import ensure_defaults

    path = tmp_path_factory.mktemp("console-template") / "store.db"
    store_db.connect("sqlite:///" + str(path))
    ensure_defaults()
    demo.build(console_ctx(), invoices=300, seed=1, quiet=True)
    database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store_db.close()
    return path


@pytest.fixture
def console_env(console_template, tmp_path):
    path = tmp_path / "store.db"
    shutil.copy(console_template, path)
    url = "sqlite:///" + str(path)
    store_db.connect(url)
    args = argparse.Namespace(config=str(tmp_path / "no-config.toml"), jobs=False, db=url, now=None)
    # Mail from a console started with jobs goes to a maildir of the test, never the user's.
    config = AppConfig(mail={"transport": "maildir", "maildir": str(tmp_path / "maildir")})
    env = Env(args=args, config=config, ctx=console_ctx(), db_url=url)
    yield env
    store_db.close()


def make_app(env, **kwargs):
    from tui_billing.app import BillingApp

    kwargs.setdefault("poll_seconds", 0)
    return BillingApp(env, **kwargs)


async def settle(pilot, rounds: int = 100) -> None:
    """Wait until every worker (but the job loop) finished and the screen repainted."""
    app = pilot.app

    def busy():
        return [w for w in app.workers if w.group != "jobs" and w.is_running]

    from textual.worker import WorkerCancelled

    for _ in range(rounds):
        workers = busy()
        if workers:
            try:
                await app.workers.wait_for_complete(workers)
            except WorkerCancelled:  # an exclusive worker replaced by a newer one: wait for that
                pass
        await pilot.pause()
        if not busy():
            await pilot.pause()
            if not busy():
                return
    raise AssertionError("workers did not finish")


async def show_detail(pilot, ref):
    """Open an invoice's detail screen (by id or number) and wait until it is shown."""
    pilot.app.open_invoice(ref)
    await settle(pilot)
    await tables_filled(pilot)
    return pilot.app.screen


async def tables_filled(pilot, rounds: int = 200) -> None:
    """Wait until each table shown has its rows.  A FitTable used to fill
    itself on its first Resize only, which on a loaded machine never came
    (CI pictured the adjust dialog over an empty charges table); this fails
    if a sized table stays empty."""
    from tui_billing.widgets.fit_table import FitTable

    for _ in range(rounds):
        pending = [t for t in pilot.app.screen.query(FitTable) if t.region.height and t.row_count != len(t.order)]
        if not pending:
            return
        await pilot.pause(0.02)
    raise AssertionError(f"tables sized but never filled: {[(t.id, t.size) for t in pending]}")


async def open_dialog(pilot, ref, key):
    """The dialog a key opens on an invoice's detail screen (j adjust, r reissue…)."""
    await show_detail(pilot, ref)
    await pilot.press(key)
    await settle(pilot)
    return pilot.app.screen
