"""Mail: the outbox, messages that cannot be forged from customer data, delivery.

Every email goes through the `outbox_message` table.  A row is queued inside
the transaction that makes it necessary (an invoice is queued in the same
transaction that marks it sent), so "the invoice went out" and "its email
is waiting" are never apart.  `deliver_due` then hands queued rows to a
transport: SMTP (host, port, STARTTLS, login) or a local Maildir folder (the
default).  The delivery states and the exactly-once reasoning are in
delivery.py.

The package, by what each part does (each imports only those above it):

    states      the states of a row, the kinds of message, delivery outcomes
    addresses   addresses, header text and Message-IDs (AddressError)
    compose     subjects, bodies, the MIME message and its PDF attachment
    queue       queue_invoice / queue_digest, inside the caller's transaction
    transports  MaildirTransport, SmtpTransport
    config      the [mail] table: transport_from_config, RetryPolicy
    delivery    claim, deliver, recover: deliver_due, recover_interrupted
    operator    listing, counts, retry, mark_mail_sent, requeue_digests_for_admin_email

Callers use `from tui_billing import mail` and `mail.NAME`: every name below
is re-exported here.
"""

from __future__ import annotations

from ..errors import ConfigError
from .addresses import (
    AddressError,
    check_address,
    clean_header_text,
    digest_message_id,
    invoice_message_id,
    parse_mailbox,
)
from .compose import attachment_filename, build_message, invoice_body, invoice_subject
from .config import RetryPolicy, default_maildir, transport_from_config
from .delivery import (  # noqa: F401  (the multi-loop tests drive a claim by hand)
    CLAIM_MARK,
    SEND_LEASE,
    DeliveryResult,
    _claim,
    _point_of_no_return,
    claim_holder,
    deliver_due,
    interrupted_reason,
    recover_interrupted,
    sender_id,
)
from .operator import (
    STALLED_AFTER,
    counts,
    failed_messages,
    list_messages,
    mark_mail_sent,
    message_dict,
    requeue_digests_for_admin_email,
    retry,
    stalled_messages,
    stalled_summary,
)
from .queue import BAD_ADMIN_EMAIL, Queued, queue_digest, queue_invoice
from .states import (
    DIGEST,
    FAILED,
    INVOICE,
    PENDING_STATUSES,
    PROBLEM_STATUSES,
    QUEUED,
    SENDING,
    SENT,
    STATUSES,
    UNCERTAIN,
    ClaimLost,
    DeliveryError,
    Uncertain,
)
from .transports import MaildirTransport, SmtpTransport

__all__ = [
    # states
    "QUEUED",
    "SENDING",
    "UNCERTAIN",
    "SENT",
    "FAILED",
    "STATUSES",
    "PROBLEM_STATUSES",
    "PENDING_STATUSES",
    "INVOICE",
    "DIGEST",
    "DeliveryError",
    "Uncertain",
    "ClaimLost",
    # addresses
    "AddressError",
    "check_address",
    "clean_header_text",
    "parse_mailbox",
    "invoice_message_id",
    "digest_message_id",
    # compose
    "attachment_filename",
    "build_message",
    "invoice_body",
    "invoice_subject",
    # queue
    "BAD_ADMIN_EMAIL",
    "Queued",
    "queue_digest",
    "queue_invoice",
    # transports and config
    "MaildirTransport",
    "SmtpTransport",
    "ConfigError",
    "RetryPolicy",
    "default_maildir",
    "transport_from_config",
    # delivery
    "CLAIM_MARK",
    "SEND_LEASE",
    "DeliveryResult",
    "claim_holder",
    "deliver_due",
    "interrupted_reason",
    "recover_interrupted",
    "sender_id",
    # operator
    "STALLED_AFTER",
    "counts",
    "failed_messages",
    "list_messages",
    "mark_mail_sent",
    "message_dict",
    "requeue_digests_for_admin_email",
    "retry",
    "stalled_messages",
    "stalled_summary",
]
