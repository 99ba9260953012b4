"""A throwaway PostgreSQL cluster for the test session (initdb + pg_ctl).

Started on loopback in a temp dir when PostgreSQL's server binaries are on
the machine (CI installs them: see .ci/run), stopped at the end of the
session whatever happened.  As root, the cluster runs as the `postgres` user
(initdb refuses root).  Set TUI_BILLING_TEST_PG=require to fail instead of
skipping when the binaries are missing; TUI_BILLING_TEST_PG=off skips.
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
        self.root = Path(tempfile.mkdtemp(prefix="tui-billing-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def start(self) -> "Cluster":
        if self.as_postgres:
            shutil.chown(self.root, "postgres")
        # C.UTF-8: code-point order like C, and LOWER() knows non-ASCII
        # letters (the customer search); plain C where that locale is missing.
        locale = "C.UTF-8" if _has_locale("C.utf8") else "C"
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", f"--locale={locale}", "--no-sync")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                      "-o", opts, "-w", "-t", "60", "start")
        except BaseException:  # half started: never leave a postmaster behind
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass
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


def _has_locale(name: str) -> bool:
    """Is locale `name` installed ("C.utf8" matches C.UTF-8 and C.utf8)?"""
    def norm(text: str) -> str:
        return text.strip().lower().replace("-", "")
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return norm(name) in {norm(line) for line in out.splitlines()}
