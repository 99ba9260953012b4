"""Email addresses and header text: the syntax every layer reads alike.

Customer addresses must be one plain ASCII `local@domain` (check_address); a
sender is one mailbox, `Name <local@domain>` (parse_mailbox); names and
subjects built from customer data lose their line breaks and control
characters (clean_header_text).  The store-wide settings (config:
`admin_email`, `mail_from`) are checked here and mail delivery uses the same
functions (mail.addresses re-exports them), so a value the settings accept is
one mail can send to.

Core: pure, imports nothing of tui_billing.
"""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.utils import getaddresses


class AddressError(ValueError):
    """An address that cannot be used in a header or an envelope; says why."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")


def clean_header_text(text: object, limit: int = 200) -> str:
    """Customer text for a header: CR, LF and other control characters become
    spaces, runs of white space one space; at most `limit` characters."""
    value = " ".join(_CONTROL.sub(" ", str(text or "")).split())
    return value[:limit].rstrip()


def check_address(raw: str | None) -> str:
    """One plain ASCII address `local@domain`, or AddressError saying why not.

    Strict on purpose: no display name, no list, no comments, no line breaks,
    so an address typed into an account can never add a header or a
    recipient.
    """
    text = raw or ""
    if _CONTROL.search(text):
        raise AddressError("contains a line break or control character")
    text = text.strip()
    if not text:
        raise AddressError("is empty")
    if len(text) > 254:
        raise AddressError("is longer than 254 characters")
    pairs = getaddresses([text])
    if len(pairs) != 1 or pairs[0] != ("", text):
        raise AddressError(f"{text!r} is not exactly one plain address")
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"{text!r} has no @domain")
    if not text.isascii():
        raise AddressError(f"{text!r} is not an ASCII address")
    if len(local) > 64 or not _LOCAL.fullmatch(local):
        raise AddressError(f"{text!r} has an invalid local part")
    if not _DOMAIN.fullmatch(domain):
        raise AddressError(f"{text!r} has an invalid domain")
    Address(addr_spec=text)  # the email package agrees (raises on anything odd)
    return text


def parse_mailbox(raw: str) -> tuple[str, str]:
    """'Billing <billing@example.com>' -> ('Billing', 'billing@example.com')."""
    text = raw or ""
    if _CONTROL.search(text):
        raise AddressError("contains a line break or control character")
    pairs = getaddresses([text.strip()])
    if len(pairs) != 1 or not pairs[0][1]:
        raise AddressError(f"{text.strip()!r} is not exactly one address")
    name, addr = pairs[0]
    return clean_header_text(name, 100), check_address(addr)
