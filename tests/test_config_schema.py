"""One typed configuration (issue 15): one schema, one loader, one precedence
(flags > environment > file > defaults), errors naming the key.

Real TOML files in temp dirs, real environment variables (monkeypatch), and
the CLI run as a subprocess where the exit status and "nothing written"
matter.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
from pathlib import Path

import pytest

from tui_billing import config_file
from tui_billing.config_file import SCHEMA, Config, JobsConfig, MailConfig, config_path, load
from tui_billing.errors import ConfigError

from .test_jobs_support import cli_env, run_cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No TUI_BILLING_* variable of the machine, and a config dir of the test's own."""
    for name in list(os.environ):
        if name.startswith("TUI_BILLING_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------
# Precedence: flag > environment > file > default


def test_store_url_flag_beats_env_beats_file_beats_default(clean_env, monkeypatch):
    cfg = write(clean_env / "config.toml", 'db = "sqlite:///from-file.db"\n')
    assert load(None).db_url is None  # default: the store's own (store.db.default_url)
    assert load(cfg).db_url == "sqlite:///from-file.db"
    monkeypatch.setenv("TUI_BILLING_DB", "sqlite:///from-env.db")
    assert load(cfg).db_url == "sqlite:///from-env.db"
    assert load(cfg, flags={"db": "sqlite:///from-flag.db"}).db_url == "sqlite:///from-flag.db"
    assert load(cfg, flags={"db": None}).db_url == "sqlite:///from-env.db"  # a flag not given


def test_mail_port_env_beats_file_beats_default(clean_env, monkeypatch):
    cfg = write(clean_env / "config.toml", '[mail]\nhost = "mx.example"\nport = 2526\n')
    assert load(None).mail.port is None and load(None).mail.smtp_port == 25  # default (no file at all)
    assert load(cfg).mail.port == 2526 and load(cfg).mail.transport == "smtp"  # a host means smtp
    monkeypatch.setenv("TUI_BILLING_SMTP_PORT", "2527")
    assert load(cfg).mail.port == 2527
    monkeypatch.setenv("TUI_BILLING_SMTP_PORT", "")  # empty: unset
    assert load(cfg).mail.port == 2526
    assert config_file.KEYS["mail.port"].flag is None  # no flag sets it: env is the top


def test_jobs_console_flag_beats_env_beats_file_beats_default(clean_env, monkeypatch):
    from tui_billing.cli import build_parser
    from tui_billing.commands.common import load_config

    cfg = write(clean_env / "config.toml", '[jobs]\nconsole = "off"\n')
    assert load(None).jobs.console == "auto"
    assert load(cfg).jobs.console == "off"
    monkeypatch.setenv("TUI_BILLING_JOBS_CONSOLE", "on")
    assert load(cfg).jobs.console == "on"
    assert load(cfg, flags={"jobs.console": "off"}).jobs.console == "off"
    # The CLI's flags map onto the keys: --no-jobs / --jobs is jobs.console, --db is db.
    parse = build_parser().parse_args
    assert load_config(parse(["--config", str(cfg), "--no-jobs"])).jobs.console == "off"
    monkeypatch.setenv("TUI_BILLING_JOBS_CONSOLE", "off")
    assert load_config(parse(["--config", str(cfg), "--jobs"])).jobs.console == "on"
    assert load_config(parse(["--config", str(cfg)])).jobs.console == "off"
    assert load_config(parse(["--config", str(cfg), "--db", "sqlite:///x.db"])).db_url == "sqlite:///x.db"


def test_a_job_interval_and_the_time_slice_from_the_file(clean_env):
    cfg = write(
        clean_env / "config.toml",
        '[jobs]\ndispatch_approved = 30\nnotify_admins = 0\ndeliver_outbox = "off"\nmax_run_seconds = 2.5\n',
    )
    jobs = load(cfg).jobs
    assert jobs.intervals["dispatch_approved"] == 30 and jobs.intervals["auto_approve"] == 60
    assert jobs.intervals["notify_admins"] is None and jobs.intervals["deliver_outbox"] is None
    assert jobs.max_run_seconds == 2.5


def test_typed_values_from_file_and_environment(clean_env, monkeypatch):
    cfg = write(
        clean_env / "config.toml",
        '[mail]\ntransport = "SMTP"\nhost = " mx.example "\nstarttls = true\n'
        'username = "billing"\npassword = "S3cret"\nmax_attempts = 3\n'
        'retry_seconds = 10\n[keys]\n"list.approve" = "ctrl+a"\n'
        'list.mark = "x"\n',
    )
    monkeypatch.setenv("TUI_BILLING_SMTP_STARTTLS", "no")
    monkeypatch.setenv("TUI_BILLING_SMTP_MAILDIR", "~/mails")
    got = load(cfg)
    assert isinstance(got.mail, MailConfig) and isinstance(got.jobs, JobsConfig)
    mail = got.mail
    assert (mail.transport, mail.host, mail.starttls, mail.smtp_port) == ("smtp", "mx.example", False, 25)
    assert got.mail.maildir == Path("~/mails").expanduser()
    assert (got.mail.max_attempts, got.mail.retry_seconds) == (3, 10.0)
    assert got.keys == {"list.approve": "ctrl+a", "list.mark": "x"}  # quoted or not, the same id
    assert "S3cret" not in repr(got)
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.mail.port = 1  # frozen


def test_plain_tables_are_read_by_the_same_schema():
    cfg = Config(mail={"transport": "maildir", "maildir": "/tmp/md"}, jobs={"deliver_outbox": 0.2})
    assert cfg.mail.maildir == Path("/tmp/md") and cfg.jobs.intervals["deliver_outbox"] == 0.2
    with pytest.raises(ConfigError) as exc:
        Config(jobs={"console": "sometimes"})
    assert exc.value.field == "jobs.console"


# --------------------------------------------------------------------------
# Errors name the key, the reason and where the value came from


@pytest.mark.parametrize(
    "text, field, reason",
    [
        ('[mail]\nport = "abc"\n', "mail.port", "'abc' is not a whole number"),
        ("[mail]\nport = 70000\n", "mail.port", "must be between 1 and 65535"),
        ('[mail]\nstarttls = "maybe"\n', "mail.starttls", "'maybe' is not true or false"),
        ('[mail]\ntransport = "pigeon"\n', "mail.transport", "'pigeon' is not smtp or maildir"),
        ('[mail]\ntransport = "smtp"\n', "mail.host", "required for the smtp transport"),
        ('[mail]\nhost = "h"\nstarttls = true\ntls = true\n', "mail.starttls", "choose starttls or tls"),
        ("[mail]\nprot = 2525\n", "mail.prot", "not a key of [mail]"),
        ('[jobs]\nauto_approve = "soon"\n', "jobs.auto_approve", "'soon' is not a number of seconds"),
        ("[jobs]\nteleport = 5\n", "jobs.teleport", "not a job"),
        ('[jobs]\nconsole = "sometimes"\n', "jobs.console", "must be auto, on or off"),
        ("[jobs]\nmax_run_seconds = true\n", "jobs.max_run_seconds", "is not a number of seconds"),
        ('dbb = "sqlite:///x.db"\n', "dbb", "not a config key"),
        ('mail = "smtp"\n', "mail", "must be a table"),
        ('[keys]\n"list.approve" = 5\n', "keys.list.approve", "is not a key"),
        ("db = 5\n", "db", "is not text"),
    ],
)
def test_a_bad_value_names_its_key_reason_and_file(clean_env, text, field, reason):
    cfg = write(clean_env / "config.toml", text)
    with pytest.raises(ConfigError) as exc:
        load(cfg)
    assert exc.value.field == field, exc.value
    assert exc.value.reason.startswith(reason) or reason in exc.value.reason, exc.value
    if field != "mail.host":
        assert str(cfg) in exc.value.reason


def test_a_bad_environment_value_names_the_variable(clean_env, monkeypatch):
    monkeypatch.setenv("TUI_BILLING_SMTP_PORT", "25x")
    with pytest.raises(ConfigError) as exc:
        load(None)
    assert (exc.value.field, exc.value.reason) == (
        "mail.port",
        "'25x' is not a whole number (from $TUI_BILLING_SMTP_PORT)",
    )


def test_a_bad_password_is_never_echoed(clean_env):
    cfg = write(clean_env / "config.toml", "[mail]\npassword = 123456789\n")
    with pytest.raises(ConfigError) as exc:
        load(cfg)
    assert exc.value.field == "mail.password" and "123456789" not in str(exc.value)


def test_a_named_config_file_must_exist_and_parse(clean_env):
    with pytest.raises(ConfigError) as exc:
        load(clean_env / "missing.toml")
    assert exc.value.field == "--config" and "no such file" in exc.value.reason
    assert load(None).path is None  # the default file may be absent: defaults
    cfg = write(clean_env / "broken.toml", "[mail\nport = 1\n")
    with pytest.raises(ConfigError) as exc:
        load(cfg)
    assert exc.value.field == "--config" and str(cfg) in exc.value.reason


def test_bad_config_exits_2_naming_the_key_and_writes_nothing(tmp_path):
    store = tmp_path / "new" / "store.db"
    cfg = write(tmp_path / "bad.toml", '[mail]\nport = "abc"\n')
    r = run_cli(["--db", f"sqlite:///{store}", "--config", str(cfg), "migrate"], cli_env())
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"tui-billing: error: mail.port: 'abc' is not a whole number (from {cfg})"
    assert not store.exists() and not store.parent.exists()
    r = run_cli(["--db", f"sqlite:///{store}", "find", "--json"], cli_env(TUI_BILLING_SMTP_PORT="abc"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert json.loads(r.stdout)["error"]["field"] == "mail.port"
    assert "$TUI_BILLING_SMTP_PORT" in r.stderr
    cfg = write(tmp_path / "unknown.toml", "[jobs]\nteleport = 5\n")
    r = run_cli(["--db", f"sqlite:///{store}", "--config", str(cfg), "jobs", "run", "--once"], cli_env())
    assert r.returncode == 2 and "jobs.teleport: not a job" in r.stderr
    r = run_cli(["--db", f"sqlite:///{store}", "--config", str(tmp_path / "typo.toml"), "migrate"], cli_env())
    assert r.returncode == 2 and "config:" in r.stderr and "no such file" in r.stderr
    assert not store.exists() and not store.parent.exists()


def test_the_cli_applies_the_store_url_precedence(tmp_path):
    def store_of(*args: str, **env) -> str:
        r = run_cli([*args, "migrate"], cli_env(XDG_CONFIG_HOME=tmp_path / "xdg", **env))
        assert r.returncode == 0, r.stderr
        return r.stdout

    write(tmp_path / "xdg" / "tui-billing" / "config.toml", f'db = "sqlite:///{tmp_path / "file.db"}"\n')
    assert str(tmp_path / "file.db") in store_of()
    assert str(tmp_path / "env.db") in store_of(TUI_BILLING_DB=f"sqlite:///{tmp_path / 'env.db'}")
    assert str(tmp_path / "flag.db") in store_of(
        "--db", f"sqlite:///{tmp_path / 'flag.db'}", TUI_BILLING_DB=f"sqlite:///{tmp_path / 'env.db'}"
    )


# --------------------------------------------------------------------------
# The path: platformdirs' user config dir, as before on Linux


def test_the_path_honours_xdg_config_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_path() == tmp_path / "xdg" / "tui-billing" / "config.toml"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_path() == tmp_path / "home" / ".config" / "tui-billing" / "config.toml"


def test_the_default_file_is_read(clean_env):
    write(clean_env / "xdg" / "tui-billing" / "config.toml", 'theme = "textual-light"\n[jobs]\nconsole = "off"\n')
    got = load(None)
    assert (got.theme, got.jobs.console) == ("textual-light", "off")
    assert got.path == clean_env / "xdg" / "tui-billing" / "config.toml"


# --------------------------------------------------------------------------
# One reader: the schema is the only place that reads the file and the variables


def test_the_job_names_of_the_schema_are_the_loops_jobs():
    from tui_billing import jobs

    assert tuple(jobs.JOBS) == config_file.JOB_NAMES


def test_only_the_loader_reads_toml_and_the_config_variables():
    readers = set()
    for path in (ROOT / "tui_billing").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        if "tomllib" in names or any(
            s.startswith("TUI_BILLING_SMTP_") or s == "TUI_BILLING_JOBS_CONSOLE" for s in strings
        ):
            readers.add(path.relative_to(ROOT).as_posix())
    assert readers == {"tui_billing/config_file.py"}


def test_the_console_keys_come_from_the_loaded_config(tmp_path):
    from types import SimpleNamespace

    from tui_billing.app import load_keymap

    other = write(tmp_path / "other.toml", '[keys]\n"list.approve" = "f12"\n')
    env = SimpleNamespace(args=SimpleNamespace(config=str(other)), config=Config(keys={"list.approve": "ctrl+o"}))
    assert load_keymap(env) == {"list.approve": "ctrl+o"}  # not the file named again


def test_the_readme_lists_every_key():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Configuration") : readme.index("## Money")]
    for key in SCHEMA:
        assert f"`{key.dotted}`" in section or (key.section == "jobs" and key.name in config_file.JOB_NAMES), key
        if key.env:
            assert f"${key.env}" in section, key.env
