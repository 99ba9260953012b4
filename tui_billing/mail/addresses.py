"""Message-IDs, and the address syntax mail uses: nothing from customer data
becomes a header.

The address and header-text rules (check_address, parse_mailbox,
clean_header_text, AddressError) live in the core (tui_billing.addresses),
where the store-wide settings check `admin_email` and `mail_from` with them;
they are re-exported here for mail's own modules.  Message-IDs are derived
from what the message is about, so the same invoice revision always has the
same one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..addresses import AddressError, check_address, clean_header_text, parse_mailbox

if TYPE_CHECKING:  # annotations only: addresses import nothing of the store
    from ..store.models import Invoice

__all__ = [
    "AddressError",
    "check_address",
    "clean_header_text",
    "parse_mailbox",
    "invoice_message_id",
    "digest_message_id",
]


def _domain_of(mail_from: str) -> str:
    try:
        return parse_mailbox(mail_from)[1].rpartition("@")[2].lower()
    except AddressError:
        return "tui-billing.invalid"


def _token(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def invoice_message_id(inv: Invoice, revision: int, mail_from: str) -> str:
    """Deterministic: the same invoice revision always has the same Message-ID."""
    token = _token(inv.id, inv.number, revision, inv.account_id, inv.period_from)
    return f"<invoice.{inv.id}.r{revision}.{token}@{_domain_of(mail_from)}>"


def digest_message_id(invoices: Iterable[Invoice], mail_from: str, at: dt.datetime) -> str:
    """Unique per digest: the invoices and revisions it lists, and when."""
    pairs = sorted((i.id, i.revision) for i in invoices)
    token = _token(at.isoformat(), *(f"{i}.{r}" for i, r in pairs))
    return f"<review-digest.{at:%Y%m%d%H%M%S}.{len(pairs)}.{token}@{_domain_of(mail_from)}>"
