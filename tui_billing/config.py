"""Settings: per-operator config (TOML + env + flags) and store-wide settings.

Two layers, on purpose:
- the operator's own file (<user config dir>/tui-billing/config.toml, or
  --config), environment and flags say *where* and *how*: the store URL, mail
  transport and credentials, the job loop, theme, keys.  One schema and one
  loader, in config_file.py (Config, re-exported here as AppConfig);
- the store's `setting` table says *what the business wants*, shared by every
  admin of that store: invoice number format, off-peak window, ERP
  integration, admin notification address, seller details, time zone.
Flags beat environment, environment beats the file, the file beats defaults.
"""

from __future__ import annotations

import datetime as dt
import re
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from zoneinfo import ZoneInfo

from .addresses import AddressError, check_address, parse_mailbox
from .clock import Clock, parse_now, zone  # noqa: F401 - re-exported: the clock lives in clock.py
from .config_file import Config, JobsConfig, MailConfig, config_path, load  # noqa: F401 - re-exported
from .context import os_user  # noqa: F401 - re-exported: who acts lives in context.py
from .errors import ConfigError
from .four_eyes import parse_threshold
from .offpeak import parse_hhmm as _parse_hhmm
from .offpeak import parse_window
from .risk_settings import DEFAULT_RATES, FLAGGED, RiskSettings, RiskSettingsError, parse_rates
from .text import TextError, typed

# --------------------------------------------------------------------------
# Secrets in output: every store URL shown anywhere goes through redact_url.

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_SECRET_QUERY = re.compile(r"(^|[?&;])((?:ssl)?pass(?:word|wd)?)=[^&;#]*", re.IGNORECASE)
_SECRET_PAIR = re.compile(r"\b((?:ssl)?password)\s*=\s*(?!\*\*\*)(?:'[^']*'|\"[^\"]*\"|\S+)", re.IGNORECASE)
REDACTED = "***"


def redact_url(url: str) -> str:
    """The URL with its password (user info or ?password=) replaced by ***.

    `postgresql://billing:S3cret@db/x` -> `postgresql://billing:***@db/x`.
    """
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return _SECRET_PAIR.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    # The user info ends at the last "@" before the query: a password may hold
    # "/" or "@" when its writer did not percent-encode it.
    cut = min([i for i in (rest.find("?"), rest.find("#")) if i >= 0] or [len(rest)])
    head, tail = rest[:cut], rest[cut:]
    userinfo, at, host = head.rpartition("@")
    if at and ":" in userinfo:
        head = f"{userinfo.partition(':')[0]}:{REDACTED}@{host}"
    tail = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}{m.group(2)}={REDACTED}", tail)
    return f"{scheme}://{head}{tail}"


def redact_text(text: object) -> str:
    """Any text (an error message, a trace) with every URL in it redacted, and
    libpq-style `password=…` pairs too."""

    def one(m: re.Match) -> str:
        url = m.group(0)
        body = url.rstrip(":.,;)]")  # "cannot open URL: reason": the colon is the sentence's
        return redact_url(body) + url[len(body) :]

    value = _URL_IN_TEXT.sub(one, str(text))
    return _SECRET_PAIR.sub(lambda m: f"{m.group(1)}={REDACTED}", value)


# --------------------------------------------------------------------------
# Store-wide settings (the `setting` table), with defaults and validation.

DEFAULT_SETTINGS: dict[str, str] = {
    "number_format": "INV-{year}-{seq:06d}",
    "offpeak_start": "01:00",
    "offpeak_end": "05:00",
    "erp_integration": "off",
    "admin_email": "billing-admins@example.com",
    "mail_from": "Billing <billing@example.com>",
    "seller_name": "Northwind Telecom Ltd",
    "seller_address": "1 Exchange Square\nLondon EC2A 2BR\nVAT GB 123 4567 89",
    "timezone": "",
    # Risk review (tui_billing/risk.py).  large_correction above this share
    # of the account's usual total; tax_ratio when the tax share differs by
    # more than these percentage points from the account's usual.
    "risk_correction_share": "0.25",
    "risk_tax_tolerance": "2",
    # Money at stake is compared in one currency: amounts in another are
    # converted with these rates (units of the reporting currency per unit).
    "reporting_currency": "EUR",
    "currency_rates": DEFAULT_RATES,
    # At the end of the hold a flagged invoice whose score is at least
    # risk_hold_score is held for a person; `on` restores seed 000's
    # unconditional auto-approval.
    "auto_approve_flagged": "off",
    "risk_hold_score": str(FLAGGED),
    # ERP hand-off (issue 17): an ERP total further than this from the
    # invoice's is flagged: an amount in the reporting currency, or "0.5%".
    "erp_tolerance": "0.01",
    # Four-eyes (issue 16): invoices at or above this amount, in the reporting
    # currency, need two approvals by two different people.  Blank: off.
    "second_approval_above": "",
    # The unit of each usage service on the customer's PDF ("12,636.25 GB"):
    # `Service=unit` pairs separated by ";".  A service not listed shows a bare quantity.
    "service_units": "",
}


NUMBER_MAX = 64  # Invoice.number's column width
_NUMBER_SPEC = re.compile(r"(?:0[1-9])?d?")  # "", "d", "06d": zero-padded widths only (no spaces in numbers)


def validate_number_format(fmt: str) -> str:
    try:
        parts = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise ConfigError("number_format", str(exc)) from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if conversion or not _NUMBER_SPEC.fullmatch(spec or ""):
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ConfigError(
                "number_format", f"{shown} is not allowed; use a width like {{seq:06d}} (zero-padded, 1 to 9 digits)"
            )
    previous = None  # a field directly followed by another must have a fixed width, or numbers repeat
    for literal, name, spec, _ in parts:  # ({month}{seq}: month 1 + seq 12 = month 11 + seq 2 = "112")
        if name is None:
            continue
        if (
            previous is not None
            and not literal
            and previous not in (("year", ""), ("year", "d"), ("month", "02d"), ("month", "02"))
        ):
            hint = " (or write {month:02d})" if previous[0] == "month" else ""
            raise ConfigError(
                "number_format",
                f"put a separator after {{{previous[0]}}}{hint}: two numbers side by side can repeat a number",
            )
        previous = (name, spec or "")
    fields = {name for _, name, _, _ in parts if name}
    unknown = fields - {"year", "month", "seq"}
    if unknown:
        raise ConfigError("number_format", f"unknown field {{{sorted(unknown)[0]}}}; use year, month, seq")
    if "seq" not in fields:
        raise ConfigError("number_format", "must contain {seq} so numbers are unique")
    try:
        longest = fmt.format(year=2026, month=12, seq=10**12 - 1)
    except (ValueError, IndexError, KeyError) as exc:
        raise ConfigError("number_format", str(exc)) from None
    if len(longest) > NUMBER_MAX:
        raise ConfigError("number_format", f"numbers could be {len(longest)} characters long; at most {NUMBER_MAX}")
    if not fmt.format(year=2026, month=1, seq=1).strip():
        raise ConfigError("number_format", "gives an empty number")
    return fmt


def parse_hhmm(name: str, text: str) -> dt.time:
    """The off-peak window's reading of a time (offpeak.parse_hhmm): one rule."""
    return _parse_hhmm(name, text)


def _offpeak(key: str, value: str) -> str:
    parse_hhmm(key, value)
    return value.strip()


def _address(key: str, value: str) -> str:
    """admin_email: one plain address; mail_from: one mailbox ('Name <addr>').
    Read by the parser that mail delivery uses (addresses.check_address /
    parse_mailbox, in the core: mail re-exports them)."""
    try:
        if key == "admin_email":
            return check_address(value)
        parse_mailbox(value)
    except AddressError as exc:
        raise ConfigError(key, str(exc)) from None
    return value.strip()


def parse_switch(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise ConfigError(name, f"{text!r} is not on or off")


UNIT_MAX = 12


def parse_units(text: str) -> dict[str, str]:
    """service_units: "Voice calls=min; Mobile data=GB" -> {service: unit}."""
    units: dict[str, str] = {}
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        service, sep, unit = part.rpartition("=")
        service, unit = " ".join(service.split()), unit.strip()
        if not sep or not service or not unit:
            raise ConfigError(
                "service_units",
                f"{part.strip()!r} is not Service=unit (pairs separated by ';', e.g. Voice calls=min; Mobile data=GB)",
            )
        if len(unit) > UNIT_MAX:
            raise ConfigError("service_units", f"unit {unit!r} is longer than {UNIT_MAX} characters")
        if service in units:
            raise ConfigError("service_units", f"{service!r} is listed twice")
        units[service] = unit
    return units


def _timezone(value: str) -> str:
    if value:  # blank: the machine's zone
        zone(value)  # ConfigError when it is not a known time zone
    return value


VALIDATORS: dict[str, Callable[[str], str]] = {
    "service_units": lambda v: "; ".join(f"{s}={u}" for s, u in parse_units(v).items()),
    "number_format": validate_number_format,
    "offpeak_start": lambda v: _offpeak("offpeak_start", v),
    "offpeak_end": lambda v: _offpeak("offpeak_end", v),
    "admin_email": lambda v: _address("admin_email", v),
    "mail_from": lambda v: _address("mail_from", v),
    "erp_integration": lambda v: "on" if parse_switch("erp_integration", v) else "off",
    "timezone": _timezone,
    "risk_correction_share": lambda v: _risk_setting("risk_correction_share", v),
    "risk_tax_tolerance": lambda v: _risk_setting("risk_tax_tolerance", v),
    "reporting_currency": lambda v: _risk_setting("reporting_currency", v),
    "currency_rates": lambda v: _risk_setting("currency_rates", v),
    "risk_hold_score": lambda v: _risk_setting("risk_hold_score", v),
    "erp_tolerance": lambda v: _risk_setting("erp_tolerance", v),
    "auto_approve_flagged": lambda v: "on" if parse_switch("auto_approve_flagged", v) else "off",
    "second_approval_above": lambda v: str(t) if (t := parse_threshold(v)) is not None else "",
}

RISK_KEYS = (
    "risk_correction_share",
    "risk_tax_tolerance",
    "reporting_currency",
    "currency_rates",
    "risk_hold_score",
    "erp_tolerance",
)


def _risk_setting(key: str, value: str) -> str:
    """Checked by the same parser that uses it (risk_settings.RiskSettings.parse)."""
    args = {k: DEFAULT_SETTINGS[k] for k in RISK_KEYS} | {key: value}
    try:
        RiskSettings.parse(**args)
    except RiskSettingsError as exc:
        raise ConfigError(exc.field, exc.reason) from None
    if key == "currency_rates":  # stored as read: CODE=rate, upper case, sorted
        return " ".join(f"{code}={rate}" for code, rate in parse_rates(value, args["reporting_currency"]))
    return value.strip().upper() if key == "reporting_currency" else value.strip()


@dataclass(frozen=True)
class StoreSettings:
    values: dict[str, str]

    def __getitem__(self, key: str) -> str:
        return self.values.get(key, DEFAULT_SETTINGS.get(key, ""))

    @property
    def number_format(self) -> str:
        return self["number_format"]

    @property
    def erp_integration(self) -> bool:
        return parse_switch("erp_integration", self["erp_integration"])

    @property
    def offpeak(self) -> tuple[dt.time, dt.time]:
        """The window, read by offpeak.parse_window (the rule `settings` checks
        with); a pair stored before that check, which it would refuse, falls
        back to the default window rather than stopping every off-peak job."""
        try:
            return parse_window(self["offpeak_start"], self["offpeak_end"])
        except ConfigError:
            return parse_window(DEFAULT_SETTINGS["offpeak_start"], DEFAULT_SETTINGS["offpeak_end"])

    @property
    def tz(self) -> ZoneInfo:
        return zone(self["timezone"])

    @property
    def risk(self) -> RiskSettings:
        """risk.RiskSettings; a bad stored value falls back to its default."""
        values = {k: self[k] for k in RISK_KEYS}
        for key in RISK_KEYS:
            try:
                RiskSettings.parse(**({k: DEFAULT_SETTINGS[k] for k in RISK_KEYS} | {key: values[key]}))
            except RiskSettingsError:
                values[key] = DEFAULT_SETTINGS[key]
        return RiskSettings.parse(**values)

    @property
    def service_units(self) -> dict[str, str]:
        try:
            return parse_units(self["service_units"])
        except ConfigError:
            return {}

    @property
    def second_approval_above(self) -> "Decimal | None":
        """four_eyes threshold; a bad stored value asks two approvals of every
        invoice (the safe side) rather than none."""
        try:
            return parse_threshold(self["second_approval_above"])
        except ConfigError:
            return Decimal("0.0001")

    @property
    def auto_approve_flagged(self) -> bool:
        try:
            return parse_switch("auto_approve_flagged", self["auto_approve_flagged"])
        except ConfigError:
            return False


SETTING_MAX = 500  # characters of one setting (seller_address: each line)
MULTILINE_SETTINGS = {"seller_address"}
OPTIONAL_SETTINGS = {"timezone", "service_units", "second_approval_above"}  # blank: the machine's zone
# Read as numbers: written with the digits 0-9 only.  (Python's int() and
# Decimal() also read "١٢" and "1_0"; a setting must mean what it shows.)
NUMERIC_SETTINGS = {
    "risk_correction_share",
    "risk_tax_tolerance",
    "risk_hold_score",
    "currency_rates",
    "offpeak_start",
    "offpeak_end",
}


def _setting_text(key: str, value: str | None) -> str:
    """The text rules of every setting (text.typed): no control characters
    (seller_address: lines), not blank (timezone may be), at most SETTING_MAX."""
    try:
        (value or "").encode("utf-8")
    except UnicodeEncodeError:  # bytes of a non-UTF-8 argument, surrogate-escaped
        raise ConfigError(key, "is not valid UTF-8 text (the bytes cannot be read as characters)") from None
    try:
        if key in MULTILINE_SETTINGS:
            lines = [
                typed(key, line, max_len=SETTING_MAX, required=False)
                for line in (value or "").replace("\r\n", "\n").split("\n")
            ]
            text = "\n".join(line for line in lines if line)
            if not text:
                raise TextError(key, "is required")
        else:
            # An optional setting may be left empty (spaces), not set to invisible characters.
            required = key not in OPTIONAL_SETTINGS or bool((value or "").strip())
            text = typed(key, value, max_len=SETTING_MAX, required=required)
    except TextError as exc:
        raise ConfigError(key, exc.reason) from None
    if key in NUMERIC_SETTINGS:
        odd = next((ch for ch in text if ch == "_" or (ch.isdigit() and not ch.isascii())), None)
        if odd is not None:
            what = "_" if odd == "_" else f"{odd} ({unicodedata.name(odd, 'a digit')})"
            raise ConfigError(key, f"{text!r} contains {what}; write numbers with the digits 0-9")
    return text


def validate_setting(key: str, value: str, current: "StoreSettings | None" = None) -> str:
    """The value as it will be stored, or ConfigError naming the setting.

    `current`: the store's settings, for rules across two keys (the off-peak
    window must open: its start and end differ).
    """
    if not (key or "").strip():
        raise ConfigError("key", "is empty; give a setting's name")
    if key not in DEFAULT_SETTINGS:
        raise ConfigError("key", f"{key!r} is not a setting; known: {', '.join(sorted(DEFAULT_SETTINGS))}")
    value = _setting_text(key, value)
    check = VALIDATORS.get(key)
    value = check(value) if check else value
    if current is not None and key in ("offpeak_start", "offpeak_end"):
        other = "offpeak_end" if key == "offpeak_start" else "offpeak_start"
        try:
            parse_hhmm(other, current[other])
        except ConfigError:
            pass  # a stored value the window cannot use is replaced by the default: nothing to pair with
        else:
            pair = {key: value, other: current[other]}
            parse_window(pair["offpeak_start"], pair["offpeak_end"], changing=key)
    return value


# --------------------------------------------------------------------------
# The operator's config file, environment and flags: config_file.py (one
# schema, one loader).  AppConfig is its Config, under the name callers know.

AppConfig = Config
