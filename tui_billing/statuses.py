"""Every status list of the seeds, with the words admins read.

Values are the API names (seed 001 gives them in parentheses); labels are the
words shown in the console and in PDFs.
"""

from __future__ import annotations

# Invoice status: the review lifecycle (seed 000) merged with the payment
# status an invoice takes once dispatched, and postpay's Open.
OPEN = "open"
UNDER_REVIEW = "under_review"
REJECTED = "rejected"
APPROVED = "approved"
UNPAID = "unpaid"
PAID = "paid"
OVERDUE = "overdue"

INVOICE_STATUSES = {
    OPEN: "Open",
    UNDER_REVIEW: "Under review",
    REJECTED: "Rejected",
    APPROVED: "Approved",
    UNPAID: "Unpaid",
    PAID: "Paid",
    OVERDUE: "Overdue",
}
# Statuses that mean "issued to the customer" (postpay: Closed).
SENT_STATUSES = (UNPAID, PAID, OVERDUE)

INVOICE_KINDS = {"regular": "Regular", "manual": "Manual", "final": "Final"}
PAYMENT_MODELS = {"postpay": "Postpay", "prepay": "Prepay"}
SEND_MODES = {"immediately": "Immediately", "after_review": "After review and approval by admin"}
REISSUE_MODES = {"now": "now", "off_peak": "off-peak"}
ACCOUNT_TYPES = {
    "business": "Business",
    "residential": "Residential",
    "reseller": "Reseller",
    "wholesale": "Wholesale",
}

# Seed 001, "Subscriptions — Status": all 20.
SUBSCRIPTION_STATUSES = {
    "ordered": "Ordered",
    "active": "Active",
    "delivered": "Delivered",
    "graced": "Graced",
    "stopped": "Stopped",
    "deleted": "Deleted",
    "installation_failed": "Installation failed",
    "activation_failed": "Activation failed",
    "renewal_failed": "Renewing failed",
    "updating_failed": "Updating failed",
    "stopping_failed": "Stopping failed",
    "deletion_failed": "Deletion failed",
    "installing": "Installing",
    "activating": "Activating",
    "renewing": "Renewing",
    "updating": "Updating",
    "stopping": "Stopping",
    "deleting": "Deleting",
    "waiting_for_manual_approve": "Waiting for manual approve",
    "blocked": "Blocked",
}

# Seed 001, "Payments — Status": all 8.
PAYMENT_STATUSES = {
    "waiting_for_payment": "Waiting for payment",
    "expired": "Expired",
    "cancelled": "Cancelled",
    "receipt_creating": "Receipt creating",
    "receipt_sent": "Receipt sent",
    "processing": "Processing",
    "completed": "Completed",
    "paid_from_balance": "Paid from balance",
}

CORRECTION_KINDS = {"manual_credit": "Manual credit", "manual_charge": "Manual charge"}


def label(table: dict[str, str], value: str) -> str:
    return table.get(value, value.replace("_", " ").capitalize())
