"""The filter bar: status, account type (a filter only, never a column — seed
001), customer class, customer text, number, payment status (the finder: invoices
with a payment in that status), issue date from/to; under them, when a filter
is refused, the line that says which and why.

It only collects raw text; the screen's worker turns it into Filters with
store.queries.make_filters, which says which field is wrong.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Input, Select, Static

from .. import statuses as S
from ..text import shown

FIELD_IDS = {  # make_filters / FilterError field -> widget id
    "status": "f-status",
    "account-type": "f-type",
    "class": "f-class",
    "customer": "f-customer",
    "number": "f-number",
    "payment-status": "f-payment",
    "from": "f-from",
    "to": "f-to",
}


class FilterBar(Vertical):
    # "Done": the footer must fit 80 columns with the finder's keys (help: the tooltip)
    BINDINGS = [Binding("escape", "done", "Done", id="filter.done", tooltip="Back to the list (the filter stays)")]

    class Changed(Message):
        def __init__(self, raw: dict, submitted: bool = False):
            super().__init__()
            self.raw = raw
            self.submitted = submitted

    class Done(Message):
        pass

    def __init__(self, statuses: list[str], *, status_prompt: str = "Any status", payments: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.statuses = statuses
        self.status_prompt = status_prompt
        self.payments = payments  # the payment status filter (the finder; the queue's invoices have no payment)
        self._debounce: Timer | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="filter-row"):
            yield Select(
                [(S.INVOICE_STATUSES[s], s) for s in self.statuses],
                prompt=self.status_prompt,
                compact=True,
                id="f-status",
            )
            yield Select(
                [(label, value) for value, label in S.ACCOUNT_TYPES.items()],
                prompt="Any account type",
                compact=True,
                id="f-type",
            )
            yield Select([], prompt="Any class", compact=True, id="f-class")
            yield Input(placeholder="Customer name or email", compact=True, id="f-customer")
        with Horizontal(classes="filter-row"):
            yield Input(placeholder="Number", compact=True, id="f-number")
            if self.payments:
                yield Select(
                    [(label, value) for value, label in S.PAYMENT_STATUSES.items()],
                    prompt="Any payment",
                    compact=True,
                    id="f-payment",
                )
            yield Input(placeholder="From YYYY-MM-DD", compact=True, id="f-from")
            yield Input(placeholder="To YYYY-MM-DD", compact=True, id="f-to")
        yield Static("", id="f-error")  # a row of its own, shown only with an error: the whole reason fits

    # -- values -----------------------------------------------------------------
    def values(self) -> dict:
        def sel(wid):
            v = self.query_one(f"#{wid}", Select).value
            return None if v is Select.NULL else v

        def txt(wid):
            return self.query_one(f"#{wid}", Input).value.strip() or None

        values = {
            "status": sel("f-status"),
            "account_type": sel("f-type"),
            "customer_class": sel("f-class"),
            "customer": txt("f-customer"),
            "number": txt("f-number"),
            "date_from": txt("f-from"),
            "date_to": txt("f-to"),
        }
        if self.payments:
            values["payment_status"] = sel("f-payment")
        return values

    def set_class_choices(self, names: list[str]) -> None:
        select = self.query_one("#f-class", Select)
        current = select.value
        with select.prevent(Select.Changed):
            select.set_options([(Text(shown(n)), n) for n in names])  # stored names: escaped, never markup
            if current is not Select.NULL and current in names:
                select.value = current

    def show_error(self, field: str | None, reason: str | None) -> None:
        for wid in FIELD_IDS.values():
            for widget in self.query(f"#{wid}"):
                widget.set_class(False, "-invalid")
        error = self.query_one("#f-error", Static)
        error.display = bool(field)
        if field:
            field_wid = FIELD_IDS.get(field)
            for widget in self.query(f"#{field_wid}") if field_wid else ():
                widget.set_class(True, "-invalid")
            error.update(Text(f"✗ {field}: {shown(reason)}"))
        else:
            error.update("")

    def focus_first(self) -> None:
        self.query_one("#f-customer", Input).focus()

    # -- events -----------------------------------------------------------------
    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self.values()))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(0.4, lambda: self.post_message(self.Changed(self.values())))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._debounce is not None:
            self._debounce.stop()
        self.post_message(self.Changed(self.values(), submitted=True))

    def action_done(self) -> None:
        self.post_message(self.Done())
