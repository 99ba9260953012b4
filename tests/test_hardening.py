"""Issue 14 (hardening: settings, secrets, identity, terminal, tracebacks,
silent acceptance, nothing written, SQLite = PostgreSQL) and issue 13's
"every option has a help text".  Each test fails on the code before the fix.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pwd
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tui_billing import statuses as S
from tui_billing.config import ConfigError, StoreSettings, validate_setting
from tui_billing.store import db as store_db
from tui_billing.store.models import ALL_MODELS, AuditEvent, ChargeLine, CustomerClass, Invoice, Setting
from tui_billing.store.settings import load_settings

from . import factories as F


def dump() -> dict:
    return {m.__name__: sorted(map(repr, m.select().tuples())) for m in ALL_MODELS}


def real_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def run(args: list, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """The CLI in its own process (bytes arguments pass through as they are)."""
    return subprocess.run(
        [sys.executable, "-m", "tui_billing", *args],
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


# --------------------------------------------------------------------------
# 2. Off-peak settings: validated by the reading the job loop uses


@pytest.mark.parametrize("value", ["01:00Z", "01:00+05:00", "01-00", "٠١:٠٠", "1:00", "01:00:00", "24:00", ""])
def test_offpeak_setting_the_jobs_cannot_use_is_refused(store_url, cli, value):
    before = dump()
    code, out, err = cli("settings", "offpeak_start", value)
    assert code == 2, out + err
    assert "error: offpeak_start: " in err
    assert dump() == before


def test_offpeak_window_that_never_opens_is_refused(store_url, cli):
    before = dump()
    code, _, err = cli("settings", "offpeak_start", "05:00")  # the end is 05:00
    assert code == 2 and "error: offpeak_start: the window 05:00–05:00 would never open" in err, err
    code, _, err = cli("settings", "offpeak_end", "01:00")  # the start is 01:00
    assert code == 2 and "error: offpeak_end: " in err, err
    assert dump() == before
    assert cli("settings", "offpeak_start", "22:00")[0] == 0
    assert cli("settings", "offpeak_end", "23:30")[0] == 0
    assert load_settings().offpeak == (dt.time(22), dt.time(23, 30))


def test_offpeak_settings_and_jobs_read_times_the_same_way():
    from tui_billing import offpeak

    for text in [
        "01:00",
        "23:59",
        "00:00",
        " 02:30 ",
        "01:00Z",
        "1:00",
        "01:00:00",
        "0100",
        "01:00+00:00",
        "٠١:٠٠",
        "25:00",
        "",
        "01:60",
    ]:
        try:
            offpeak.parse_hhmm("offpeak_start", text)
            usable = True
        except ConfigError:
            usable = False
        try:
            validate_setting("offpeak_start", text)
            accepted = True
        except ConfigError:
            accepted = False
        assert usable == accepted, text


def test_offpeak_job_runs_with_a_window_stored_before_the_check(store_url):
    """A value an older version accepted ("01:00Z") no longer stops every off-peak reissue."""
    from tests.test_jobs_support import at, ctx_at, make_account, make_invoice
    from tui_billing import jobs

    Setting.update(value="01:00Z").where(Setting.key == "offpeak_start").execute()
    assert StoreSettings({"offpeak_start": "01:00Z"}).offpeak == (dt.time(1), dt.time(5))
    assert StoreSettings({"offpeak_start": "03:00", "offpeak_end": "03:00"}).offpeak == (dt.time(1), dt.time(5))
    acc = make_account(F.customer_class())
    inv = make_invoice(acc, status=S.REJECTED, reissue_mode="off_peak", reissue_after=at("2026-11-21T01:00:00"))
    result = jobs.reissue_offpeak(ctx_at(at("2026-11-21T02:00:00"), "job:reissue_offpeak"))
    assert result.done == 1 and result.failed == 0
    assert Invoice.get_by_id(inv.id).status == S.UNDER_REVIEW


# --------------------------------------------------------------------------
# 3. Addresses: read by the parser mail delivery uses


@pytest.mark.parametrize(
    "key,value",
    [
        ("admin_email", "nope"),
        ("admin_email", "a@b"),
        ("admin_email", "admins@example.com, cfo@example.com"),
        ("admin_email", "Admins <admins@example.com>"),
        ("admin_email", "admins@example.com\r\nBcc: x@evil.example"),
        ("admin_email", ""),
        ("mail_from", "x@y"),
        ("mail_from", "Billing"),
        ("mail_from", "a@example.com, b@example.com"),
        ("mail_from", "Billing <billing@example.com>\r\nBcc: evil@attacker.example"),
        ("mail_from", "  "),
    ],
)
def test_malformed_addresses_are_refused(store_url, cli, key, value):
    before = dump()
    code, out, err = cli("settings", key, value)
    assert code == 2, out + err
    assert f"error: {key}: " in err
    assert dump() == before


def test_good_addresses_are_stored(store_url, cli):
    assert cli("settings", "admin_email", "billing-team@northwind.example")[0] == 0
    assert cli("settings", "mail_from", "Northwind Billing <invoices@northwind.example>")[0] == 0
    settings = load_settings()
    assert settings["admin_email"] == "billing-team@northwind.example"
    assert settings["mail_from"] == "Northwind Billing <invoices@northwind.example>"


# --------------------------------------------------------------------------
# 5. Passwords in output


@pytest.mark.parametrize(
    "url,shown",
    [
        ("postgresql://billing:S3cretPW@db.example:5432/billing", "postgresql://billing:***@db.example:5432/billing"),
        ("postgres://billing:p%40ss@db/x?sslmode=require", "postgres://billing:***@db/x?sslmode=require"),
        ("postgresql://billing:pa/ss@wd@db/x", "postgresql://billing:***@db/x"),
        ("postgresql://db/x?user=billing&password=S3cretPW", "postgresql://db/x?user=billing&password=***"),
        ("postgresql://billing@db/x", "postgresql://billing@db/x"),
        (
            "sqlite:////home/anna/.local/share/tui-billing/tui-billing.db",
            "sqlite:////home/anna/.local/share/tui-billing/tui-billing.db",
        ),
    ],
)
def test_redact_url(url, shown):
    from tui_billing.config import redact_text, redact_url

    assert redact_url(url) == shown
    assert redact_text(f"cannot open {url}: refused") == f"cannot open {shown}: refused"


def test_password_in_db_url_never_printed(tmp_path, capsys):
    from tui_billing.cli import main

    url = "postgresql://billing:S3cretPW@127.0.0.1:1/billing"  # nothing listens on port 1
    for args in (["find", "--json"], ["migrate"], ["approve", "--all", "--json"]):
        code = main(["--db", url, *args])
        out, err = capsys.readouterr()
        assert code == 2
        assert "S3cretPW" not in out + err
        assert "billing:***@127.0.0.1:1" in err
        if "--json" in args:
            assert "S3cretPW" not in json.loads(out)["error"]["message"]


def test_migrate_and_demo_print_the_url_redacted(pg_cluster, capsys):
    from tui_billing.cli import main

    from .conftest import new_pg_database

    plain = new_pg_database(pg_cluster, "template0", "redacted_demo")
    url = plain.replace("postgresql://postgres@", "postgresql://postgres:S3cretPW@")  # trust: any password
    try:
        assert main(["--db", url, "migrate"]) == 0
        out, err = capsys.readouterr()
        assert "postgres:***@" in out and "S3cretPW" not in out + err
        assert main(["--db", url, "--now", "2026-11-20T10:00", "demo", "--invoices", "12"]) == 0
        out, err = capsys.readouterr()
        assert "demo store ready at postgresql://postgres:***@" in out and "S3cretPW" not in out + err
    finally:
        store_db.close()


# --------------------------------------------------------------------------
# 6. The audit actor is the real user, not $LOGNAME


def expected_actor(url: str) -> str:
    user = real_user()
    if url.startswith("postgresql://"):
        session = url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[0]
        if session != user:
            return f"{user} (db {session})"
    return user


def test_audit_actor_is_the_real_user_not_logname(store_url):
    inv = F.invoice()
    store_db.close()
    proc = run(
        ["--db", store_url, "approve", inv.number],
        env={"LOGNAME": "somebody-else", "USER": "somebody-else", "USERNAME": "somebody-else"},
    )
    store_db.connect(store_url)
    assert proc.returncode == 0, proc.stderr
    event = AuditEvent.get((AuditEvent.number == inv.number) & (AuditEvent.action == "approve"))
    assert event.actor == expected_actor(store_url)
    assert "somebody-else" not in event.actor


def test_console_and_commands_share_the_actor(store_url, monkeypatch):
    """The console builds its Ctx in the same open_env as every command."""
    from tui_billing.commands.common import open_env

    monkeypatch.setenv("LOGNAME", "somebody-else")
    monkeypatch.setenv("USER", "somebody-else")
    store_db.close()
    args = argparse.Namespace(db=store_url, now=None, config=None, json=False)
    with open_env(args) as env:
        assert env.ctx.actor == expected_actor(store_url)
    store_db.connect(store_url)


# --------------------------------------------------------------------------
# 7. Terminal control codes: stored text is shown escaped; typed text refuses them


def test_show_prints_stored_control_codes_escaped(store_url, cli):
    acc = F.account("Evil\x1b[2J Co")
    inv = F.invoice(acc=acc)
    ChargeLine.create(
        invoice=inv,
        position=2,
        description="Fee\x1b[31mAPPROVED BY CFO\x1b[0m\nForged row\x9b2J",
        service="Internet\r",
        quantity=Decimal("1"),
        amount=Decimal("0"),
    )
    code, out, err = cli("show", inv.number)
    assert code == 0, err
    for raw in ("\x1b", "\x9b", "\r"):
        assert raw not in out
    assert "Evil\\x1b[2J Co" in out and "Fee\\x1b[31mAPPROVED BY CFO\\x1b[0m\\nForged row\\x9b2J" in out
    assert not any(line.startswith("Forged") for line in out.splitlines())
    code, out, _ = cli("show", inv.number, "--json")
    assert code == 0
    assert not any(ch in out for ch in ("\x1b", "\x9b", "\r", "\u202e"))
    doc = json.loads(out)
    assert doc["account"] == "Evil\x1b[2J Co"  # the data is kept; only its printing is escaped
    assert any(c["description"].startswith("Fee\x1b[31m") for c in doc["charges"])


def test_json_escapes_every_control_character():
    from tui_billing.present import dumps, terminal_text

    doc = {"a": "x\x1b[2J\x9b31m\x7f\u202eevil\u2028\u200b Ångström 東京 \U000e0001"}
    out = dumps(doc)
    assert json.loads(out) == doc
    assert all(ch not in out for ch in "\x1b\x9b\x7f\u202e\u2028\u200b\U000e0001")
    assert "Ångström 東京" in out
    assert terminal_text("a\x1b[31m\nb\rc") == "a\\x1b[31m\nb\\rc"


@pytest.mark.parametrize(
    "args,field",
    [
        (["class", "Ent\x1b[2Jerprise", "--create"], "name"),
        (["class", "\u202eesirpretnE", "--create"], "name"),
        (["class", "\u200b", "--create"], "name"),
        (["settings", "seller_name", "Northwind\x1b]0;owned\x07"], "seller_name"),
        (["settings", "seller_address", "1 Exchange Square\n\x1b[2JLondon"], "seller_address"),
        (["settings", "number_format", "INV-\x1b[31m{seq}"], "number_format"),
        (["adjust", "{n}", "--charge", "5", "--description", "\x1b[2J\x1b[31mAPPROVED BY CFO\x1b[0m"], "description"),
    ],
)
def test_typed_text_refuses_control_characters(store_url, cli, args, field):
    inv = F.invoice()
    before = dump()
    code, out, err = cli(*[a.replace("{n}", inv.number) for a in args])
    assert code == 2, out + err
    assert f"error: {field}: " in err and "\x1b" not in err
    assert dump() == before


def test_multiline_seller_address_is_still_accepted(store_url, cli):
    assert cli("settings", "seller_address", "1 Exchange Square\nLondon EC2A 2BR")[0] == 0
    assert load_settings()["seller_address"] == "1 Exchange Square\nLondon EC2A 2BR"


# --------------------------------------------------------------------------
# 8. No traceback: bad input is exit 2 naming the field; a bug is one line and a log file


@pytest.mark.parametrize(
    "args,field",
    [
        (["--now", "9999-12-31T23:59:59-14:00", "find"], "now"),
        (["--now", "0001-01-01T00:00+14:00", "find"], "now"),
        (["outbox", "--retry", "9223372036854775808"], "retry"),
        (["outbox", "--mark-sent", "99999999999999999999999"], "mark-sent"),
        (["--db", "sqlite:////dev/null", "find"], "db"),
        (["--db", "sqlite:////dev/null/x.db", "find"], "db"),
        (["--db", "mysql://root:S3cretPW@localhost/x", "find"], "db"),
    ],
)
def test_former_tracebacks_are_exit_2_naming_the_field(tmp_path, args, field):
    if args[0] != "--db":
        args = ["--db", f"sqlite:///{tmp_path / 'store.db'}", *args]
    proc = run(args, env={"HOME": str(tmp_path)})
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert f"error: {field}: " in err
    assert "S3cretPW" not in err


def test_non_utf8_argument_is_exit_2(tmp_path):
    proc = run(
        [b"--db", f"sqlite:///{tmp_path / 'store.db'}".encode(), b"find", b"--customer", b"Caf\xe9", b"--json"],
        env={"HOME": str(tmp_path)},
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, err
    assert "Traceback" not in err and "error: customer: is not valid UTF-8" in err
    assert json.loads(proc.stdout)["error"]["field"] == "customer"
    assert not (tmp_path / "store.db").exists()


def test_unexpected_error_is_one_line_and_a_private_trace_file(tmp_path):
    """A bug: exit 70, one line naming the trace file (under a fresh $HOME's state dir), secrets redacted."""
    home = tmp_path / "home"
    home.mkdir()
    code = (
        "import sys\n"
        "import tui_billing.commands.admin as admin\n"
        "def boom(env, args):\n"
        "    raise RuntimeError('lost postgresql://billing:S3cretPW@db/x')\n"
        "admin.cmd_migrate = boom\n"
        "from tui_billing.cli import main\n"
        f"sys.exit(main(['--db', 'sqlite:///{tmp_path / 'store.db'}', 'migrate']))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env={**env, "HOME": str(home)}
    )
    assert proc.returncode == 70, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "S3cretPW" not in proc.stderr
    assert lines[0].startswith(
        "tui-billing: internal error: RuntimeError: lost postgresql://billing:***@db/x; the full trace is in "
    )
    log = Path(lines[0].rsplit(" ", 1)[1])
    assert log.is_file() and log.is_relative_to(home / ".local" / "state" / "tui-billing" / "log")
    assert log.stat().st_mode & 0o777 == 0o600
    assert log.parent.stat().st_mode & 0o777 == 0o700
    text = log.read_text()
    assert "Traceback" in text and "RuntimeError" in text and "boom" in text
    assert "S3cretPW" not in text and "billing:***@db/x" in text


# --------------------------------------------------------------------------
# 9. Nothing accepted silently: empty, blank, non-ASCII digits


@pytest.mark.parametrize(
    "args,field",
    [
        (["class", "--hold-days", "3"], "name"),
        (["class", "--net-days", "30", "--send-mode", "immediately"], "name"),
        (["settings", "", "x"], "key"),
        (["settings", " "], "key"),
        (["--now", "", "find"], "now"),
        (["--now", "  ", "find"], "now"),
        (["--db", "", "find"], "db"),
        (["find", "--customer", ""], "customer"),
        (["bill-run", "--period", "٢٠٢٦-١٠"], "period"),
        (["bill-run", "--period", "2026-١٠"], "period"),
        (["bill-run", "--period", ""], "period"),
        (["class", "Enterprise", "--hold-days", "٣"], "hold-days"),
        (["class", "Enterprise", "--hold-days", "1_0"], "hold-days"),
        (["class", "Enterprise", "--net-days", " "], "net-days"),
        (["settings", "risk_hold_score", "١٢٠٠"], "risk_hold_score"),
        (["settings", "risk_hold_score", "1_200"], "risk_hold_score"),
        (["settings", "risk_correction_share", "٠٫٥"], "risk_correction_share"),
        (["settings", "currency_rates", "USD=٠.٩٢"], "currency_rates"),
        (["outbox", "--retry", "١"], "retry"),
        (["outbox", "--limit", "١٠"], "limit"),
        (["demo", "--invoices", "١٠"], "invoices"),
    ],
)
def test_empty_blank_and_non_ascii_digits_are_exit_2(store_url, cli, args, field):
    F.customer_class("Enterprise", "after_review", 5, 26)
    before = dump()
    code, out, err = cli(*args)
    assert code == 2, out + err
    assert f"error: {field}: " in err, err
    assert dump() == before


@pytest.mark.parametrize("status", [",", " , ", ",,,", ""])
def test_approve_all_with_an_empty_status_list_approves_nothing(store_url, cli, status):
    invoices = [F.invoice() for _ in range(3)]
    code, out, err = cli("approve", "--all", "--status", status)
    assert code == 2 and "error: status: " in err, out + err
    assert all(Invoice.get_by_id(i.id).status == S.UNDER_REVIEW for i in invoices)


def test_ascii_int_reads_only_what_it_shows():
    from tui_billing.commands.common import UsageError, ascii_int

    parse = ascii_int("hold-days", 0, 365)
    assert parse("0") == 0 and parse("365") == 365 and parse("007") == 7
    for text in ("١", "1_0", " 1", "1 ", "+1", "1.0", "366", "-1", "\uff11", ""):
        with pytest.raises(UsageError) as exc:
            parse(text)
        assert exc.value.field == "hold-days"


# --------------------------------------------------------------------------
# 10. Nothing written: no store appears at a mistyped --db path


@pytest.mark.parametrize(
    "args",
    [
        ["class", "--hold-days", "١"],
        ["settings", "admin_email", "not-an-address"],
        ["--now", "yesterday", "find"],
        ["show", "NOPE-1"],  # known only once the store is open: the new store is removed again
        ["approve", "--all", "--class", "Nobody"],
        ["adjust", "NOPE-1", "--charge", "5", "--description", "x"],
    ],
)
def test_refused_command_leaves_no_store_at_a_mistyped_path(tmp_path, capsys, args):
    from tui_billing.cli import main

    folder = tmp_path / "typo" / "deeper"
    path = folder / "billing.db"
    assert main(["--db", f"sqlite:///{path}", *args]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not path.exists() and not (tmp_path / "typo").exists()
    assert list(tmp_path.iterdir()) == []


def test_refused_command_keeps_an_existing_store(tmp_path, capsys):
    from tui_billing.cli import main

    path = tmp_path / "billing.db"
    assert main(["--db", f"sqlite:///{path}", "migrate"]) == 0
    assert main(["--db", f"sqlite:///{path}", "show", "NOPE-1"]) == 2
    assert path.exists()


# --------------------------------------------------------------------------
# 11. SQLite and PostgreSQL give the same answer: checked before the store


@pytest.mark.parametrize(
    "name,ok",
    [
        ("x" * 10_000, False),
        ("x" * 121, False),
        ("A\x00B", False),
        ("x" * 120, True),
        ("Großkunden Ōsaka", True),
    ],
)
def test_class_name_checked_before_the_store(store_url, cli, name, ok):
    before = dump()
    code, out, err = cli("class", name, "--create", "--send-mode", "immediately", "--json")
    assert "Traceback" not in err
    if ok:
        assert code == 0, err
        assert CustomerClass.get(CustomerClass.name == name).send_mode == "immediately"
    else:
        assert code == 2 and "error: name: " in err, err
        assert dump() == before


# --------------------------------------------------------------------------
# Issue 13: every option of every command says what it does


def _parsers(parser: argparse.ArgumentParser, path=("tui-billing",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"{' '.join(path)} {name}: the command has no help text"
                yield from _parsers(sub, (*path, name))


def test_every_option_of_every_command_has_a_help_text():
    from tui_billing.cli import build_parser

    missing = []
    seen = 0
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            seen += 1
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")
    assert seen > 100
    assert not missing, "no help text: " + ", ".join(missing)
