"""What a message says: invoice subjects and bodies (when queued), and the
MIME message built from an outbox row at delivery time, with the invoice's
stored PDF attached (never one marked DRAFT)."""

from __future__ import annotations

import datetime as dt
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime

from ..money import format_money
from ..store.models import Account, Invoice, InvoicePdf, OutboxMessage
from .addresses import AddressError, check_address, clean_header_text, parse_mailbox
from .states import INVOICE, DeliveryError


def invoice_subject(inv: Invoice, settings) -> str:
    seller = clean_header_text(settings["seller_name"], 120)
    return clean_header_text(f"Invoice {inv.number} from {seller} — {format_money(inv.total, inv.currency)}", 300)


def invoice_body(inv: Invoice, account: Account, settings, *, paid: bool | None = None) -> str:
    """The invoice email's text; `paid` (after dispatch) says what to do next."""
    cur = inv.currency
    lines = [
        f"Dear {clean_header_text(account.name, 200) or 'customer'},",
        "",
        f"please find attached invoice {inv.number} for the period "
        f"{inv.period_from:%d %b %Y} – {inv.period_to:%d %b %Y}.",
        "",
        f"  Invoice number:  {inv.number}",
        f"  Issue date:      {inv.issue_date:%Y-%m-%d}",
        f"  Period:          {inv.period_from:%Y-%m-%d} to {inv.period_to:%Y-%m-%d}",
        f"  Total:           {format_money(inv.total, cur)}",
        f"  Due date:        {inv.due_date:%Y-%m-%d}" if inv.due_date else "  Due date:        —",
        "",
    ]
    if paid is True:
        lines.append("This invoice has been paid from your account balance: there is nothing to pay.")
    elif paid is False:
        due = f" by {inv.due_date:%d %B %Y}" if inv.due_date else ""
        lines.append(f"Please pay {format_money(inv.outstanding, cur)}{due}.")
    lines += ["", "Kind regards,", settings["seller_name"], *settings["seller_address"].splitlines()]
    return "\n".join(lines) + "\n"


def attachment_filename(number: str) -> str:
    try:
        from ..pdf import safe_filename
    except ImportError:  # pragma: no cover - pdf always has it today
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", str(number)).strip("._") or "invoice"
        return f"{stem[:120]}.pdf"
    return safe_filename(number)


def build_message(msg: OutboxMessage, settings) -> tuple[EmailMessage, str, str]:
    """(message, envelope sender, envelope recipient); AddressError or
    DeliveryError(permanent) when it cannot be built."""
    try:
        from_name, from_addr = parse_mailbox(settings["mail_from"])
    except AddressError as exc:  # every message would fail: wait for the setting to be fixed
        raise DeliveryError(f"the mail_from setting is not a usable address: {exc}", connection=True) from None
    rcpt = check_address(msg.recipient)
    display = ""
    pdf_data = None
    inv = None
    if msg.kind == INVOICE and msg.invoice_id:
        inv = Invoice.get_or_none(Invoice.id == msg.invoice_id)
        if inv is None:
            raise DeliveryError("its invoice no longer exists", permanent=True)
        display = clean_header_text(Account.get_by_id(inv.account_id).name, 100)
        pdf_data = _pdf_for(inv, msg.revision)
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = Address(display_name=from_name, addr_spec=from_addr)
    m["To"] = Address(display_name=display, addr_spec=rcpt)
    m["Subject"] = clean_header_text(msg.subject, 300)
    m["Date"] = format_datetime(msg.created_at.replace(tzinfo=dt.UTC))
    m["Message-ID"] = msg.message_id
    m["Auto-Submitted"] = "auto-generated"
    m.set_content(msg.body)
    if pdf_data is not None and inv is not None:  # (set together)
        m.add_attachment(pdf_data, maintype="application", subtype="pdf", filename=attachment_filename(inv.number))
    return m, from_addr, rcpt


def _pdf_for(inv: Invoice, revision: int) -> bytes:
    row = (
        InvoicePdf.select(InvoicePdf.data, InvoicePdf.note)
        .where((InvoicePdf.invoice == inv.id) & (InvoicePdf.revision == revision))
        .first()
    )
    if row is not None and not row.note:  # a customer never gets a PDF marked DRAFT
        return bytes(row.data)
    if inv.revision == revision:  # kept PDF gone (should not happen): render it again
        from .. import documents

        return documents.store_pdf(inv)
    raise DeliveryError(f"the PDF of revision {revision} is no longer stored", permanent=True)
