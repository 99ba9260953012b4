"""tui-billing: review, adjust, reissue, approve and send invoices from a terminal."""

__version__ = "0.1.0"
