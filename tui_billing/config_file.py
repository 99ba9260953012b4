"""The operator's configuration: one schema, one loader, one precedence.

What an operator sets for *where* and *how* (the store URL, mail transport
and credentials, the job loop, the console's theme and keys) is read here and
nowhere else, into one frozen `Config`:

    flags  >  environment  >  config file  >  defaults

The file is `<user config dir>/tui-billing/config.toml` (platformdirs: on
Linux `$XDG_CONFIG_HOME/tui-billing/config.toml`, by default
`~/.config/tui-billing/config.toml`), or `--config FILE`.  `SCHEMA` lists
every key with its type, default, environment variable and flag; README,
*Configuration*, shows the same table.

A value that cannot be used raises ConfigError naming the key as it is
written in the file (`mail.port`, `jobs.console`) and saying why and where
it came from: `mail.port: 'abc' is not a whole number (from
$TUI_BILLING_SMTP_PORT)`.  Unknown keys are refused the same way (a typo
must not silently fall back to a default).

What the *business* wants (invoice number format, off-peak window, seller
details) is not here: it is the store's settings table (config.py), shared
by every admin of that store.

Core: imports nothing of tui_billing but errors (and platformdirs, tomllib).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

APP = "tui-billing"

# The jobs of the loop, in the order one pass runs them (jobs/loop.py JOBS has
# the functions; it checks that its names are these).
JOB_NAMES = (
    "close_postpay",
    "auto_approve",
    "reissue_offpeak",
    "dispatch_approved",
    "expire_payments",
    "notify_admins",
    "deliver_outbox",
    "fold_counts",
)
DEFAULT_INTERVAL = 60.0  # seconds between two runs of a job: "within minutes of approval"
DEFAULT_SLICE = 60.0  # seconds one job may run before the others get their turn (loop mode)
MAX_INTERVAL = 7 * 86400
CONSOLE_MODES = {"auto": "auto", "on": "on", "true": "on", "yes": "on", "off": "off", "false": "off", "no": "off"}
MAIL_TRANSPORTS = ("maildir", "smtp")
MAX_WORKERS = 256


def config_path() -> Path:
    """The default config file: platformdirs' user config dir (on Linux
    $XDG_CONFIG_HOME, else ~/.config) / tui-billing / config.toml."""
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP, appauthor=False)) / "config.toml"


# --------------------------------------------------------------------------
# Readers: a raw value (TOML typed, or text from the environment) -> the typed value.
# Each raises _Bad(reason); the loader adds the key and where the value came from.


class _Bad(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{_shown(value)} is not text (quote it)")
    if any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in value):
        raise _Bad(f"{_shown(value)} contains a control character")
    return value.strip()


def _optional_text(value: object) -> str | None:
    return _text(value) or None


def _path(value: object) -> Path | None:
    text = _text(str(value) if isinstance(value, Path) else value)
    return Path(text).expanduser() if text else None


def _switch(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise _Bad(f"{_shown(value)} is not true or false")


def _whole(low: int, high: int) -> Callable[[object], int]:
    def read(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise _Bad(f"{_shown(value)} is not a whole number")
        if isinstance(value, str):
            if not re.fullmatch(r"\s*[0-9]+\s*", value):
                raise _Bad(f"{_shown(value)} is not a whole number")
            number = int(value)
        else:
            number = value
        if not low <= number <= high:
            raise _Bad(f"{_shown(value)} must be between {low} and {high}")
        return number

    return read


def _number(value: object, what: str) -> float:
    """A TOML int/float, or text of digits: never a bool, NaN or infinity."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Bad(f"{_shown(value)} is not {what}")
    if isinstance(value, str) and not re.fullmatch(r"\s*[0-9]+(\.[0-9]*)?\s*|\s*\.[0-9]+\s*", value):
        raise _Bad(f"{_shown(value)} is not {what}")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise _Bad(f"{_shown(value)} is not {what}")
    return number


def _seconds(low: float, high: float, what: str = "a number of seconds") -> Callable[[object], float]:
    def read(value: object) -> float:
        number = _number(value, what)
        if not low <= number <= high:
            raise _Bad(f"{_shown(value)} must be between {low:g} and {high:g} seconds")
        return number

    return read


def _interval(value: object) -> float | None:
    """A job's interval: seconds (0 turns it off), or "off"."""
    if isinstance(value, str) and value.strip().lower() in ("off", "false", "no"):
        return None
    seconds = _number(value, "a number of seconds")
    if not 0 <= seconds <= MAX_INTERVAL:
        raise _Bad(f"{_shown(value)} must be between 0 (off) and {MAX_INTERVAL} seconds")
    return seconds or None


def _console(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    mode = CONSOLE_MODES.get(value.strip().lower()) if isinstance(value, str) else None
    if mode is None:
        raise _Bad(f"{_shown(value)} must be auto, on or off")
    return mode


def _transport(value: object) -> str:
    kind = _text(value).lower()
    if kind not in MAIL_TRANSPORTS:
        raise _Bad(f"{kind!r} is not smtp or maildir")
    return kind


# --------------------------------------------------------------------------
# The schema: every key, its reader, default, environment variable and flag.


@dataclass(frozen=True)
class Key:
    section: str  # "" (top level), "mail", "jobs"
    name: str
    read: Callable[[object], object]
    default: object
    help: str
    env: str | None = None
    flag: str | None = None
    secret: bool = False  # its value is never shown in an error

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}" if self.section else self.name


SCHEMA: tuple[Key, ...] = (
    Key(
        "",
        "db",
        _optional_text,
        None,
        "the store URL (sqlite:///path or postgresql://…); "
        "default sqlite:///<user data dir>/tui-billing/tui-billing.db",
        env="TUI_BILLING_DB",
        flag="--db",
    ),
    Key("", "theme", _text, "textual-dark", "the console's theme at start (textual-dark, textual-light)"),
    Key(
        "mail",
        "transport",
        _transport,
        None,
        "maildir | smtp (default: smtp when a host is given, else maildir)",
        env="TUI_BILLING_SMTP_TRANSPORT",
    ),
    Key(
        "mail",
        "maildir",
        _path,
        None,
        "the Maildir folder (default <user data dir>/tui-billing/maildir)",
        env="TUI_BILLING_SMTP_MAILDIR",
    ),
    Key("mail", "host", _text, "", "the SMTP server (required for smtp)", env="TUI_BILLING_SMTP_HOST"),
    Key(
        "mail",
        "port",
        _whole(1, 65535),
        None,
        "default 465 with tls, 587 with starttls, else 25",
        env="TUI_BILLING_SMTP_PORT",
    ),
    Key("mail", "starttls", _switch, False, "STARTTLS after connecting", env="TUI_BILLING_SMTP_STARTTLS"),
    Key("mail", "tls", _switch, False, "TLS from the first byte (port 465)"),
    Key("mail", "username", _optional_text, None, "SMTP login", env="TUI_BILLING_SMTP_USERNAME"),
    Key("mail", "password", _optional_text, None, "SMTP password", env="TUI_BILLING_SMTP_PASSWORD", secret=True),
    Key("mail", "timeout", _seconds(1, 600), 30.0, "seconds an SMTP command may take"),
    Key("mail", "local_hostname", _optional_text, None, "the name given in HELO/EHLO (default the host's)"),
    Key("mail", "max_attempts", _whole(1, 1000), 8, "refusals (4xx) before a message is failed"),
    Key("mail", "retry_seconds", _seconds(0, 86400), 60.0, "the first retry's delay; doubles per attempt"),
    Key("mail", "retry_max_seconds", _seconds(0, 7 * 86400), 3600.0, "the longest delay between two attempts"),
    Key(
        "jobs",
        "console",
        _console,
        "auto",
        "the loop inside the console: auto | on | off",
        env="TUI_BILLING_JOBS_CONSOLE",
        flag="--jobs/--no-jobs",
    ),
    Key(
        "jobs",
        "max_run_seconds",
        _seconds(0.1, 86400),
        DEFAULT_SLICE,
        "how long one job runs in loop mode before the others get their turn",
    ),
    Key(
        "jobs",
        "workers",
        _whole(1, MAX_WORKERS),
        None,
        "processes rendering PDFs when many are due (dispatch, download, bulk reissue); default one per core",
        env="TUI_BILLING_JOBS_WORKERS",
    ),
    *(
        Key("jobs", name, _interval, DEFAULT_INTERVAL, 'seconds between two runs; 0 or "off" turns it off')
        for name in JOB_NAMES
    ),
)
KEYS: dict[str, Key] = {key.dotted: key for key in SCHEMA}
SECTIONS = ("mail", "jobs", "keys")  # tables; [keys] maps console binding ids to keys


# --------------------------------------------------------------------------
# The typed configuration.


@dataclass(frozen=True)
class MailConfig:
    """[mail]: which transport, and the retry policy (mail/config.py builds them)."""

    transport: str = "maildir"
    maildir: Path | None = None  # None: mail.default_maildir()
    host: str = ""
    port: int | None = None  # None: smtp_port's default
    starttls: bool = False
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    local_hostname: str | None = None
    max_attempts: int = 8
    retry_seconds: float = 60.0
    retry_max_seconds: float = 3600.0

    @property
    def smtp_port(self) -> int:
        return self.port or (465 if self.tls else 587 if self.starttls else 25)

    @classmethod
    def from_mapping(cls, table: Mapping | None, source: str | None = None) -> "MailConfig":
        """A [mail] table as a dict (tests, callers with their own settings): the same rules."""
        return _build(_Values.of({"mail": dict(table or {})}, source)).mail


@dataclass(frozen=True)
class JobsConfig:
    """[jobs]: the loop inside the console, the time slice, PDF workers, each job's interval."""

    console: str = "auto"  # auto | on | off
    max_run_seconds: float = DEFAULT_SLICE
    workers: int | None = None  # PDF rendering processes; None: one per core (os.cpu_count())
    intervals: Mapping[str, float | None] = field(
        default_factory=lambda: {name: DEFAULT_INTERVAL for name in JOB_NAMES}
    )  # None: off

    @classmethod
    def from_mapping(cls, table: Mapping | None, source: str | None = None) -> "JobsConfig":
        """A [jobs] table as a dict: the same rules."""
        return _build(_Values.of({"jobs": dict(table or {})}, source)).jobs


def _section(value, kind):
    if isinstance(value, kind):
        return value
    return kind.from_mapping(value)


@dataclass(frozen=True)
class Config:
    """The operator's configuration, typed; `load()` builds it.

    `Config(mail={...}, jobs={...})` reads plain tables by the same rules
    (tests and embedding callers)."""

    db_url: str | None = None  # None: the store's default (store.db.default_url)
    theme: str = "textual-dark"
    mail: MailConfig = field(default_factory=MailConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    keys: Mapping[str, str] = field(default_factory=dict)  # console binding id -> key(s)
    path: Path | None = None  # the file read (None: none)

    def __post_init__(self):
        object.__setattr__(self, "mail", _section(self.mail, MailConfig))
        object.__setattr__(self, "jobs", _section(self.jobs, JobsConfig))
        if not isinstance(self.keys, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.keys.items()
        ):
            object.__setattr__(self, "keys", _build(_Values.of({"keys": self.keys}, None)).keys)

    @classmethod
    def load(
        cls,
        path: Path | str | None = None,
        *,
        flags: Mapping[str, object] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> "Config":
        return load(path, flags=flags, environ=environ)


# --------------------------------------------------------------------------
# The loader.


@dataclass
class _Values:
    """Raw values by dotted key, each with where it came from."""

    values: dict[str, tuple[object, str | None]] = field(default_factory=dict)
    keys: dict[str, tuple[object, str | None]] = field(default_factory=dict)

    @classmethod
    def of(cls, data: Mapping, source: str | None) -> "_Values":
        out = cls()
        out.read_file(data, source)
        return out

    def read_file(self, data: Mapping, source: str | None) -> None:
        for name, value in data.items():
            if name in SECTIONS:
                if not isinstance(value, Mapping):
                    raise _error(name, f"must be a table ([{name}])", source)
                if name == "keys":
                    self._read_keys(value, source)
                    continue
                for sub, item in value.items():
                    self._set_known(f"{name}.{sub}", item, source)
            else:
                self._set_known(name, value, source)

    def _set_known(self, dotted: str, value: object, source: str | None) -> None:
        if dotted not in KEYS:
            section, _, name = dotted.rpartition(".")
            if not section:
                known = ", ".join([k.name for k in SCHEMA if not k.section] + [f"[{s}]" for s in SECTIONS])
                raise _error(dotted, f"not a config key; known: {known}", source)
            known = ", ".join(k.name for k in SCHEMA if k.section == section)
            what = "a job or a [jobs] key" if section == "jobs" else f"a key of [{section}]"
            raise _error(dotted, f"not {what}; known: {known}", source)
        self.values[dotted] = (value, source)

    def _read_keys(self, table: Mapping, source: str | None, prefix: str = "") -> None:
        """[keys]: "list.approve" = "ctrl+a"; an unquoted list.approve (a TOML sub-table) reads the same."""
        for name, value in table.items():
            binding = f"{prefix}{name}"
            if isinstance(value, Mapping):
                self._read_keys(value, source, f"{binding}.")
            else:
                self.keys[binding] = (value, source)


def _error(dotted: str, reason: str, source: str | None) -> ConfigError:
    return ConfigError(dotted, f"{reason} (from {source})" if source else reason)


def _read(key: Key, raw: tuple[object, str | None] | None):
    if raw is None:
        return key.default
    value, source = raw
    try:
        return key.read(value)
    except _Bad as exc:
        reason = exc.reason
        if key.secret:  # never echo a password: say what is wrong with it only
            reason = "is not text (quote it)" if not isinstance(value, str) else "contains a control character"
        raise _error(key.dotted, reason, source) from None


def _build(raw: _Values, path: Path | None = None) -> Config:
    got = {k.dotted: _read(k, raw.values.get(k.dotted)) for k in SCHEMA}
    # [mail]: the rules across keys
    host = got["mail.host"]
    transport = got["mail.transport"] or ("smtp" if host else "maildir")
    if transport == "smtp" and not host:
        source = (raw.values.get("mail.transport") or (None, None))[1]
        raise ConfigError(
            "mail.host",
            "required for the smtp transport"
            + (f" (set by {source})" if source else "")
            + "; give host in [mail] or $TUI_BILLING_SMTP_HOST",
        )
    if got["mail.starttls"] and got["mail.tls"]:
        source = (raw.values.get("mail.tls") or raw.values.get("mail.starttls") or (None, None))[1]
        raise _error("mail.starttls", "choose starttls or tls, not both", source)
    mail = MailConfig(**{k.name: got[k.dotted] for k in SCHEMA if k.section == "mail"} | {"transport": transport})
    jobs = JobsConfig(
        console=got["jobs.console"],
        max_run_seconds=got["jobs.max_run_seconds"],
        workers=got["jobs.workers"],
        intervals={name: got[f"jobs.{name}"] for name in JOB_NAMES},
    )
    keys = {}
    for binding, (value, source) in raw.keys.items():
        if not isinstance(value, str) or not value.strip():
            raise _error(f"keys.{binding}", f'{_shown(value)} is not a key (e.g. "ctrl+a" or "f6,x")', source)
        keys[binding] = value.strip()
    return Config(db_url=got["db"], theme=got["theme"] or Config.theme, mail=mail, jobs=jobs, keys=keys, path=path)


def read_file(path: Path, *, required: bool) -> dict:
    """The TOML table of `path`; {} when it does not exist and is not required."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError("--config", f"{path}: no such file") from None
        return {}
    except IsADirectoryError:
        raise ConfigError("--config", f"{path} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("--config", f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path}: {exc}") from None


def load(
    path: Path | str | None = None,
    *,
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """The configuration: flags > environment > file > defaults, in this one place.

    `path`: --config (it must exist), else config_path() (read when it exists).
    `flags`: dotted key -> value given on the command line; None = not given
    (`{"db": args.db, "jobs.console": "on"}`).  `environ`: default os.environ;
    an empty variable counts as unset.  Raises ConfigError naming the key.
    """
    file = Path(path) if path is not None else config_path()
    raw = _Values()
    data = read_file(file, required=path is not None)
    raw.read_file(data, str(file))
    environ = os.environ if environ is None else environ
    for key in SCHEMA:
        if key.env and environ.get(key.env):
            raw.values[key.dotted] = (environ[key.env], f"${key.env}")
    for dotted, value in (flags or {}).items():
        if value is None:
            continue
        if dotted not in KEYS:
            raise ConfigError(dotted, "not a config key a flag can set")
        raw.values[dotted] = (value, KEYS[dotted].flag or dotted)
    return _build(raw, file if data or file.exists() else None)
