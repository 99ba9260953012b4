"""The outbox's vocabulary: the states of a row, the kinds of message, and the
three ways a delivery attempt can end other than "sent" (see delivery.py for
the state machine)."""

from __future__ import annotations

QUEUED, SENDING, UNCERTAIN, SENT, FAILED = "queued", "sending", "uncertain", "sent", "failed"
STATUSES = (QUEUED, SENDING, UNCERTAIN, SENT, FAILED)
PROBLEM_STATUSES = (FAILED, UNCERTAIN)  # what `outbox --failed` lists: an operator must look
PENDING_STATUSES = (QUEUED, SENDING, UNCERTAIN, FAILED)  # everything not (known to be) delivered

INVOICE, DIGEST = "invoice", "digest"


class DeliveryError(Exception):
    """The message was not delivered (definitely).  `permanent`: do not retry."""

    def __init__(self, reason: str, *, permanent: bool = False, connection: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.connection = connection  # the server itself is unreachable: stop this run


class Uncertain(Exception):
    """The final "." was written but no reply came: maybe delivered, maybe not."""


class ClaimLost(Exception):
    """Another sender took the message over; abort without delivering."""
