"""Shared fixtures: a real SQLite store in a temp dir, a fixed clock."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from tui_billing.clock import Clock, zone
from tui_billing.store import db as store_db
from tui_billing.workflow import Ctx

# Every test runs in UTC unless it says otherwise, whatever the machine.
os.environ.setdefault("TZ", "UTC")
FIXED_NOW = dt.datetime(2026, 11, 20, 10, 0, 0)  # naive UTC


def pytest_addoption(parser):
    parser.addoption(
        "--backend",
        action="append",
        choices=["sqlite", "postgresql"],
        help="run store tests on this backend only (default: both)",
    )


# Parallel by default (pytest-xdist, README: Development): `python -m pytest`
# runs on WORKERS processes, tests marked xdist_group together on one of
# them.  Not when you name tests (path::test), --collect-only, -s or --pdb: a
# single test starts at once in this process, its output and debugger
# reachable.  `-n0` or `-p no:xdist` runs serially, `-n N` on N workers, and
# PYTEST_XDIST_AUTO_NUM_WORKERS=N (xdist's own) sets the default count.
# One worker more than cores: many tests wait on subprocesses, PostgreSQL or
# SMTP (measured on 2 cores: 2 workers 546 s, 3 workers 427 s, serial 848 s).
WORKERS = len(os.sched_getaffinity(0)) + 1 if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1) + 1


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config):
    opt = config.option
    if (
        getattr(opt, "numprocesses", 0) is None
        and opt.dist == "no"
        and not hasattr(config, "workerinput")
        and "PYTEST_XDIST_WORKER" not in os.environ
        and not opt.collectonly
        and opt.capture != "no"
        and not all("::" in arg for arg in config.args)
    ):
        opt.numprocesses, opt.dist = "auto", "loadgroup"
    return (yield)


@pytest.hookimpl(optionalhook=True)  # xdist's hook: absent under -p no:xdist
def pytest_xdist_auto_num_workers(config):
    return None if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS") else WORKERS


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        backends = metafunc.config.getoption("backend") or ["sqlite", "postgresql"]
        metafunc.parametrize("backend", backends, scope="session")


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway cluster for the whole session; stopped whatever happens."""
    from . import pgcluster

    mode = os.environ.get("TUI_BILLING_TEST_PG", "auto")
    bindir = pgcluster.find_bindir()
    if mode == "off" or bindir is None:
        if mode == "require":
            pytest.fail("PostgreSQL server binaries not found (TUI_BILLING_TEST_PG=require)")
        pytest.skip("PostgreSQL server binaries not found; install postgresql to run these")
    cluster = pgcluster.Cluster(bindir).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg_template(pg_cluster):
    """A migrated database to copy from, so each test starts from a fresh schema fast."""
    url = pg_cluster.create_database("tui_template")
    store_db.connect(url)
    store_db.close()
    return "tui_template"


_pg_counter = iter(range(1, 10**6))


def new_pg_database(cluster, template: str, name: str) -> str:
    """A fresh database `name` copied from the migrated template; its URL."""
    import psycopg2

    conn = psycopg2.connect(cluster.url())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    conn.close()
    return cluster.url(name)


def opened(url: str):
    """Fixture body: the store at `url` open (settings defaulted) for the test."""
    from tui_billing.store.settings import ensure_defaults

    store_db.connect(url)
    ensure_defaults()
    yield url
    store_db.close()


@pytest.fixture
def store_url(request, backend, tmp_path):
    if backend == "sqlite":
        yield from opened("sqlite:///" + str(tmp_path / "store.db"))
    else:
        cluster, name = request.getfixturevalue("pg_cluster"), f"t{next(_pg_counter)}"
        yield from opened(new_pg_database(cluster, request.getfixturevalue("pg_template"), name))
        cluster.drop_database(name)  # the cluster keeps only the databases of running tests


@pytest.fixture
def clock():
    return Clock(tz=zone("UTC"), fixed=FIXED_NOW)


@pytest.fixture
def ctx(clock):
    return Ctx(clock=clock, actor="alice")


@pytest.fixture
def demo_store(store_url, ctx):
    """A small deterministic demo store."""
    from tui_billing import demo

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


_bare_counter = iter(range(1, 10**6))


@pytest.fixture
def bare_url(request, backend, tmp_path):
    """An empty store with no migration applied (SQLite file or PostgreSQL
    database): migration tests bring it to an older schema themselves."""
    if backend == "sqlite":
        yield "sqlite:///" + str(tmp_path / "old.db")
        store_db.close()
    else:
        cluster, name = request.getfixturevalue("pg_cluster"), f"bare{next(_bare_counter)}"
        yield cluster.create_database(name)
        store_db.close()
        cluster.drop_database(name)
