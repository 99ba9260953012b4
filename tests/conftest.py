"""Shared fixtures: a real SQLite store in a temp dir, a fixed clock."""
from __future__ import annotations

import datetime as dt
import os

import pytest

from tui_billing.config import Clock, zone
from tui_billing.store import db as store_db
from tui_billing.workflow import Ctx

# Every test runs in UTC unless it says otherwise, whatever the machine.
os.environ.setdefault("TZ", "UTC")
FIXED_NOW = dt.datetime(2026, 11, 20, 10, 0, 0)  # naive UTC


@pytest.fixture
def store_url(tmp_path):
    url = "sqlite:///" + str(tmp_path / "store.db")
    store_db.connect(url)
    from tui_billing.store.settings import ensure_defaults

    ensure_defaults()
    yield url
    store_db.close()


@pytest.fixture
def clock():
    return Clock(tz=zone("UTC"), fixed=FIXED_NOW)


@pytest.fixture
def ctx(clock):
    return Ctx(clock=clock, actor="alice")


@pytest.fixture
def demo_store(store_url, ctx):
    """A small deterministic demo store."""
    from tui_billing.store import demo

    demo.build(ctx, invoices=300, seed=7, quiet=True)
    return store_url


@pytest.fixture
def cli(store_url, capsys):
    """Run the CLI in-process against the test store: (exit code, stdout, stderr)."""
    from tui_billing.cli import main

    def run(*args: str):
        code = main(["--db", store_url, *args])
        store_db.connect(store_url)  # main closed it; keep the store open for asserts
        out, err = capsys.readouterr()
        return code, out, err

    return run
