"""Roles with real identities (issue 16): real OS users run the real CLI
(`runuser`), on a SQLite store shared with a group (README: Security) and on
PostgreSQL with a login per admin.  Needs root (CI runs as root): the test
creates the OS users and the group if they are missing and leaves them.

What it proves: the actor is the OS user whatever $LOGNAME says; each
transition is allowed or refused by that user's role (exit 1, the sentence
naming user, action and role, nothing written); four-eyes holds across
people; the audit command lists who did what with their role."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("runuser") or not shutil.which("useradd"),
        reason="needs root, runuser and useradd to act as several OS users",
    ),
    pytest.mark.xdist_group("os_users"),  # one worker creates the users; the rest wait for it
]

GROUP = "tbq_billing"
PEOPLE = ("tbq_alice", "tbq_bob", "tbq_carol")


def _ensure_os_users() -> None:
    if subprocess.run(["getent", "group", GROUP], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", GROUP], check=True)
    for name in PEOPLE:
        if subprocess.run(["id", "-u", name], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "-M", "-N", "-g", GROUP, "-s", "/bin/sh", name], check=True)


def _python_for_everyone(folder: Path) -> list[str]:
    """A command line that runs this suite's tui-billing as any OS user.

    This interpreter may sit in a folder other users cannot enter (pyenv under
    /root): then a venv of the system's python3 of the same version, without
    packages of its own, is made world-readable and pointed at this venv's
    site-packages (same minor version: the same compiled extensions)."""
    import sysconfig

    def works(cmd: list[str]) -> bool:
        probe = subprocess.run(["runuser", "-u", PEOPLE[0], "--", *cmd, "--version"], capture_output=True)
        return probe.returncode == 0

    direct = [sys.executable, "-m", "tui_billing.cli"]
    if works(direct):
        return direct
    system = shutil.which("python3", path="/usr/bin:/bin")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if (
        system
        and subprocess.run(
            [system, "-c", f"import sys; assert '%d.%d' % sys.version_info[:2] == '{version}'"], capture_output=True
        ).returncode
        == 0
    ):
        venv = folder / "venv"
        subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True)
        site = next(venv.glob("lib/python*/site-packages"))
        purelib = sysconfig.get_paths()["purelib"]
        (site / "suite.pth").write_text(f"import site; site.addsitedir({purelib!r})\n")
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
        shim = [str(venv / "bin" / "python"), "-m", "tui_billing.cli"]
        if works(shim):
            return shim
    pytest.fail(
        f"no Python that {PEOPLE[0]} may run: {sys.executable} is not reachable by other users "
        f"and no system python{version} could stand in"
    )


@pytest.fixture(scope="module")
def people():
    _ensure_os_users()
    folder = Path(tempfile.mkdtemp(prefix="tbq-python-"))
    folder.chmod(0o755)
    command = _python_for_everyone(folder)
    homes = {}
    for name in PEOPLE:
        home = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        shutil.chown(home, name, GROUP)
        homes[name] = home
    yield command, homes
    for home in homes.values():
        shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)


class Team:
    def __init__(self, url: str, people):
        self.url = url
        self.command, self.homes = people

    def run(self, who: str | None, *args: str, env: dict | None = None):
        """The CLI as OS user `who` (None: root); (exit code, stdout, stderr)."""
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TUI_BILLING_DB": self.url,
            **(env or {}),
        }
        cmd = [*self.command, *args]
        if who is not None:
            environ["HOME"] = str(self.homes[who])
            cmd = ["runuser", "-u", who, "--", "env", *[f"{k}={v}" for k, v in environ.items()], *cmd]
        else:
            environ["HOME"] = os.environ.get("HOME", "/root")
        done = subprocess.run(cmd, capture_output=True, text=True, env=environ, timeout=120)
        return done.returncode, done.stdout, done.stderr

    def ok(self, who, *args, **kw) -> str:
        code, out, err = self.run(who, *args, **kw)
        assert code == 0, (who, args, out, err)
        return out

    def under_review(self, who, n: int) -> list[str]:
        out = self.ok(who, "find", "--status", "under_review", "--limit", "200", "--json", "--sort", "total")
        return [i["number"] for i in json.loads(out)["invoices"]][:n]


def _walk(team: Team) -> None:
    alice, bob, carol = PEOPLE
    # Single-admin mode until the first user: who adds it must name an admin.
    code, _, err = team.run(alice, "user", "add", bob, "--role", "approver")
    assert code == 2 and "first user of a store must be an admin" in err
    team.ok(alice, "user", "add", alice, "--role", "admin")
    team.ok(alice, "user", "add", bob, "--role", "approver")
    team.ok(alice, "user", "add", carol, "--role", "reviewer")
    users = json.loads(team.ok(carol, "user", "list", "--json"))
    assert {u["name"]: u["role"] for u in users["users"]} == {alice: "admin", bob: "approver", carol: "reviewer"}

    small, other = team.under_review(carol, 2)
    # The reviewer adjusts; she may not approve; $LOGNAME does not make her someone else.
    team.ok(carol, "adjust", small, "--credit", "1.00", "--description", "goodwill")
    code, _, err = team.run(carol, "approve", small, env={"LOGNAME": alice, "USER": alice})
    assert code == 1 and f"{carol} may not approve {small}: role reviewer" in err
    # The approver may; and the reviewer's change does not stop him.
    team.ok(bob, "approve", small)
    assert json.loads(team.ok(carol, "show", small, "--json"))["status"] == "approved"
    # Non-users are refused even reading, once the store has users.
    code, _, err = team.run(None, "find", "--limit", "1")
    assert code == 1 and "root may not view" in err and "not a user of this store" in err

    # Four-eyes: above the threshold two different approvers; the one who changed it neither.
    team.ok(alice, "settings", "second_approval_above", "0.01")
    out = team.ok(bob, "approve", other)
    assert "1 of 2 approvals" in out
    code, _, err = team.run(bob, "approve", other)
    assert code == 1 and "already has" in err and "a second approver must approve it" in err
    shown = json.loads(team.ok(carol, "show", other, "--json"))
    assert shown["status"] == "under_review" and shown["approvals"]["text"] == "1 of 2 approvals"
    assert shown["approvals"]["given"][0]["by"] == bob
    team.ok(alice, "approve", other)
    shown = json.loads(team.ok(carol, "show", other, "--json"))
    assert shown["status"] == "approved" and [g["by"] for g in shown["approvals"]["given"]] == [bob, alice]

    # The audit trail: who, with which role, did what.
    events = json.loads(team.ok(carol, "audit", "--invoice", other, "--json"))["events"]
    assert [(e["actor"].split(" (db ")[0], e["role"], e["action"]) for e in events][:2] == [
        (alice, "admin", "approve"),
        (bob, "approver", "approve_first"),
    ]
    adjusts = json.loads(team.ok(bob, "audit", "--actor", carol, "--action", "adjust", "--json"))["events"]
    assert [(e["invoice"], e["role"]) for e in adjusts] == [(small, "reviewer")]
    # Role changes are events too; an approver may not change roles.
    code, _, err = team.run(bob, "user", "add", carol, "--role", "admin")
    assert code == 1 and f"{bob} may not manage users {carol}: role approver" in err
    team.ok(alice, "user", "add", carol, "--role", "viewer")
    roles = json.loads(team.ok(alice, "audit", "--action", "user_role", "--json"))["events"]
    assert json.loads(roles[0]["detail"]) == {"user": carol, "role": "viewer", "previous_role": "reviewer"}


def test_a_team_on_a_shared_sqlite_store(people):
    folder = Path(tempfile.mkdtemp(prefix="tbq-store-"))
    try:
        shutil.chown(folder, group=GROUP)
        folder.chmod(0o2770)  # README: a setgid folder for the group
        url = f"sqlite:///{folder}/billing.db"
        team = Team(url, people)
        assert team.run(None, "demo", "--invoices", "120")[0] == 0  # root builds it, as the README's admin would
        for suffix in ("", "-wal", "-shm"):
            path = Path(f"{folder}/billing.db{suffix}")
            if path.exists():
                shutil.chown(path, group=GROUP)
                path.chmod(0o660)
        _walk(team)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_team_on_postgresql_with_a_login_each(people, pg_cluster):
    import psycopg2

    admin_url = pg_cluster.create_database(f"team{os.getpid()}")
    team = Team(admin_url, people)
    assert team.run(None, "demo", "--invoices", "120")[0] == 0
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 'tbq_billing'")
        if cur.fetchone() is None:
            cur.execute("CREATE ROLE tbq_billing NOLOGIN")
        for name in PEOPLE:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE ROLE "{name}" LOGIN IN ROLE tbq_billing')
        cur.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO tbq_billing")
        cur.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO tbq_billing")
    conn.close()
    base = admin_url.replace("postgresql://postgres@", "postgresql://{}@")
    per_login = {name: base.format(name) for name in PEOPLE}

    class PerLogin(Team):
        def run(self, who, *args, env=None):
            return super().run(who, *args, env={"TUI_BILLING_DB": per_login[who] if who else admin_url, **(env or {})})

    _walk(PerLogin(admin_url, people))
    # each login is recorded beside the OS user when they differ: here they are the same
    conn = psycopg2.connect(admin_url)
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT actor FROM audit_event WHERE role IS NOT NULL")
        assert {a for (a,) in cur.fetchall()} <= set(PEOPLE)
    conn.close()
