"""A throwaway PostgreSQL cluster for the test session (initdb + pg_ctl).

Started on loopback in a temp dir when PostgreSQL's server binaries are on
the machine (CI installs them: see .ci/run), stopped at the end of the
session whatever happened.  As root, the cluster runs as the `postgres` user
(initdb refuses root).  Set TUI_BILLING_TEST_PG=require to fail instead of
skipping when the binaries are missing; TUI_BILLING_TEST_PG=off skips.

Under pytest-xdist every worker starts its own cluster (its temp dir named
after the worker, its own port): nothing is shared between workers, and a
worker's session fixture stops its cluster as the serial run does.  Every
temp dir matches `${TMPDIR:-/tmp}/tui-billing-pg-*`, the glob .ci/run's
trap stops leftover clusters by.

The data directory itself lives in RAM (/dev/shm, a tmpfs) where the machine
has one with room to spare, behind the symlink `<temp dir>/data`: fsync is
off anyway, and on a disk every CREATE DATABASE (one per test) costs ~0.3 s
of file creation instead of ~0.04 s.  The fixtures drop each test's database
when the test ends, so the cluster stays small.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def find_bindir() -> Path | None:
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").exists() and Path(candidate, "pg_ctl").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, bindir: Path):
        self.bindir = bindir
        worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1… under xdist
        self.root = Path(tempfile.mkdtemp(prefix=f"tui-billing-pg-{worker}-" if worker else "tui-billing-pg-"))
        self.data = self.root / "data"
        self.ram = _ram_dir(self.root.name)
        if self.ram is not None:
            self.data.symlink_to(self.ram)
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> None:
        cmd = list(args)
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def start(self) -> "Cluster":
        if self.as_postgres:
            shutil.chown(self.root, "postgres")
            if self.ram is not None:
                shutil.chown(self.ram, "postgres")
        # C.UTF-8: code-point order like C, and LOWER() knows non-ASCII
        # letters (the customer search); plain C where that locale is missing.
        locale = "C.UTF-8" if _has_locale("C.utf8") else "C"
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            f"--locale={locale}",
            "--no-sync",
        )
        for attempt in range(5):
            (self.root / "log").unlink(missing_ok=True)  # this attempt's log only
            opts = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100 "
                "-c max_wal_size=256MB"
            )
            try:
                self._run(
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.root / "log"),
                    "-o",
                    opts,
                    "-w",
                    "-t",
                    "60",
                    "start",
                )
                return self
            except subprocess.CalledProcessError:
                # The free port was taken between _free_port() and the postmaster's
                # bind (another xdist worker, another test run): try another one.
                if attempt < 4 and self._port_taken():
                    self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop", check=False)
                    self.port = _free_port()
                    continue
                self.stop()
                raise
            except BaseException:  # half started: never leave a postmaster behind
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _port_taken(self) -> bool:
        try:
            log = (self.root / "log").read_text(errors="replace")
        except OSError:
            return False
        return "could not bind" in log or "could not create any TCP/IP sockets" in log

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass
        if self.ram is not None:
            shutil.rmtree(self.ram, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(self.url())
        conn.autocommit = True
        for attempt in range(20):
            try:
                with conn.cursor() as cur:
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
                    cur.execute(f'CREATE DATABASE "{name}"')
                break
            except psycopg2.errors.ObjectInUse:
                time.sleep(0.2)
        conn.close()
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a test's database when the test is over (best effort: its
        connections, say of a loop the test left running, are ended)."""
        import psycopg2

        try:
            conn = psycopg2.connect(self.url())
        except psycopg2.Error:
            return
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                force = " WITH (FORCE)" if conn.server_version >= 130000 else ""
                cur.execute(f'DROP DATABASE IF EXISTS "{name}"{force}')
        except psycopg2.Error:
            pass  # it goes with the cluster at the end of the session
        finally:
            conn.close()


def _ram_dir(name: str) -> Path | None:
    """A fresh folder on /dev/shm for the data directory, or None (no tmpfs
    there, or less than 2 GiB free: then the data stays in the temp dir)."""
    shm = Path("/dev/shm")
    try:
        stat = os.statvfs(shm)
        if stat.f_bavail * stat.f_frsize < 2 << 30 or not os.access(shm, os.W_OK):
            return None
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=shm))
    except OSError:
        return None


def _has_locale(name: str) -> bool:
    """Is locale `name` installed ("C.utf8" matches C.UTF-8 and C.utf8)?"""

    def norm(text: str) -> str:
        return text.strip().lower().replace("-", "")

    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return norm(name) in {norm(line) for line in out.splitlines()}
