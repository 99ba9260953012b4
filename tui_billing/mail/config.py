"""The [mail] table (or TUI_BILLING_SMTP_* variables): which transport, and
the retry policy.  A bad value raises ConfigError naming the key."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError
from .transports import MaildirTransport, SmtpTransport


def default_maildir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("tui-billing", appauthor=False)) / "maildir"


def _bool(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"mail.{name}: {value!r} is not true or false")


def _number(name: str, value, kind=int, low=1, high=None):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"mail.{name}: {value!r} is not a number") from None
    if number < low or (high is not None and number > high):
        raise ConfigError(f"mail.{name}: {value!r} must be between {low} and {high or 'any'}")
    return number


def transport_from_config(cfg: dict | None):
    """The transport named by the [mail] table / TUI_BILLING_SMTP_* variables.

    transport = "maildir" (default; folder `maildir`, else the user data
    dir) or "smtp" (host, port, starttls, tls, username, password, timeout).
    Naming a host without a transport means smtp.
    """
    cfg = dict(cfg or {})
    kind = str(cfg.get("transport") or ("smtp" if cfg.get("host") else "maildir")).strip().lower()
    if kind == "maildir":
        return MaildirTransport(cfg.get("maildir") or default_maildir())
    if kind != "smtp":
        raise ConfigError(f"mail.transport: {kind!r} is not smtp or maildir")
    host = str(cfg.get("host") or "").strip()
    if not host:
        raise ConfigError("mail.host: required for the smtp transport (TUI_BILLING_SMTP_HOST)")
    starttls = _bool("starttls", cfg.get("starttls", False))
    tls = _bool("tls", cfg.get("tls", False))
    if starttls and tls:
        raise ConfigError("mail.starttls: choose starttls or tls, not both")
    port = _number("port", cfg.get("port") or (465 if tls else 587 if starttls else 25), int, 1, 65535)
    return SmtpTransport(host, port, starttls=starttls, tls=tls, username=cfg.get("username") or None,
                         password=cfg.get("password") or None,
                         timeout=_number("timeout", cfg.get("timeout", 30), float, 1, 600),
                         local_hostname=cfg.get("local_hostname") or None)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 60.0  # doubles per attempt: 1, 2, 4 … minutes
    cap_seconds: float = 3600.0

    def delay(self, attempts: int) -> dt.timedelta:
        seconds = min(self.base_seconds * (2 ** max(attempts - 1, 0)), self.cap_seconds)
        return dt.timedelta(seconds=seconds)

    @classmethod
    def from_config(cls, cfg: dict | None) -> "RetryPolicy":
        cfg = cfg or {}
        return cls(max_attempts=_number("max_attempts", cfg.get("max_attempts", cls.max_attempts), int, 1, 1000),
                   base_seconds=_number("retry_seconds", cfg.get("retry_seconds", cls.base_seconds), float, 0, 86400),
                   cap_seconds=_number("retry_max_seconds", cfg.get("retry_max_seconds", cls.cap_seconds),
                                       float, 0, 7 * 86400))
