"""The [mail] table (or TUI_BILLING_SMTP_* variables): which transport, and
the retry policy, built from the typed MailConfig (config_file.py reads and
checks every key: a bad value raises ConfigError naming it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..config_file import MailConfig
from .transports import MaildirTransport, SmtpTransport


def default_maildir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("tui-billing", appauthor=False)) / "maildir"


def mail_config(cfg: MailConfig | Mapping | None) -> MailConfig:
    """The typed [mail] section; a plain table (tests, embedding callers) is read by the same schema."""
    return cfg if isinstance(cfg, MailConfig) else MailConfig.from_mapping(cfg)


def transport_from_config(cfg: MailConfig | Mapping | None):
    """The transport the [mail] section names.

    transport = "maildir" (default; folder `maildir`, else the user data
    dir) or "smtp" (host, port, starttls, tls, username, password, timeout).
    Naming a host without a transport means smtp.
    """
    cfg = mail_config(cfg)
    if cfg.transport == "maildir":
        return MaildirTransport(cfg.maildir or default_maildir())
    return SmtpTransport(
        cfg.host,
        cfg.smtp_port,
        starttls=cfg.starttls,
        tls=cfg.tls,
        username=cfg.username,
        password=cfg.password,
        timeout=cfg.timeout,
        local_hostname=cfg.local_hostname,
    )


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 60.0  # doubles per attempt: 1, 2, 4 … minutes
    cap_seconds: float = 3600.0

    def delay(self, attempts: int) -> dt.timedelta:
        seconds = min(self.base_seconds * (2 ** max(attempts - 1, 0)), self.cap_seconds)
        return dt.timedelta(seconds=seconds)

    @classmethod
    def from_config(cls, cfg: MailConfig | Mapping | None) -> "RetryPolicy":
        """[mail] max_attempts, retry_seconds, retry_max_seconds."""
        cfg = mail_config(cfg)
        return cls(max_attempts=cfg.max_attempts, base_seconds=cfg.retry_seconds, cap_seconds=cfg.retry_max_seconds)
