"""Adjust an invoice under review: one manual credit or manual charge.

Validated as typed with Textual Validators that call the domain
(workflow.preview_adjust, which reads the amount with money.parse_amount,
the CLI's parser too); the new total shown live is the preview's; the type
highlighted is the type applied (ChoiceSet); Escape cancels and nothing is
written.  The adjustment itself runs in a thread worker and the domain's
refusal (e.g. a credit larger than the total) is shown in the dialog, which
stays open.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.validation import ValidationResult, Validator
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from .. import statuses as S
from .. import workflow
from ..money import MoneyError, format_amount, format_debt_change, format_money, parse_amount
from ..widgets.choice_set import ChoiceSet
from ..widgets.fmt import text_cell
from .support import db_session, error_text, post

if TYPE_CHECKING:
    from textual import getters

    from ..app import BillingApp


@dataclass(frozen=True)
class AdjustTarget:
    id: int
    number: str
    account: str
    currency: str
    total: Decimal
    status: str
    basis: workflow.AdjustBasis | None = None  # read once by the worker: previews need no store read


@dataclass(frozen=True)
class AdjustDone:
    id: int
    number: str
    kind: str
    amount: Decimal
    currency: str
    total: Decimal
    revision: int
    tax: Decimal = Decimal(0)  # the tax the correction brought (taxed like the charges)


class AmountValidator(Validator):
    """Positive, at most the currency's decimals, within the sanity bound;
    with a target, a credit must not make its total negative."""

    def __init__(self, currency: str, target: "AdjustTarget | None" = None, kind=lambda: "credit"):
        super().__init__()
        self.currency = currency
        self.target = target
        self.kind = kind  # the dialog's current choice: "credit" or "charge"

    def validate(self, value: str) -> ValidationResult:
        if self.target is None:
            try:
                parse_amount(value, self.currency)
            except MoneyError as exc:
                return self.failure(exc.reason, value)
            return self.success()
        preview = workflow.preview_adjust(self.target.basis or self.target.id, self.kind(), value)
        if preview.field == "amount":
            return self.failure(preview.reason, value)
        return self.success()


class DescriptionValidator(Validator):
    def validate(self, value: str) -> ValidationResult:
        try:
            workflow.validate_adjustment("credit", Decimal(1), value)
        except workflow.BadInput as exc:
            return self.failure(exc.reason, value)
        return self.success()


class AdjustModal(ModalScreen[AdjustDone | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="modal.cancel"),
        Binding("ctrl+s", "submit", "Adjust", id="modal.submit"),
    ]

    if TYPE_CHECKING:  # the console's own App (its ctx, change_seq...), for the type checker
        app = getters.app(BillingApp)

    def __init__(self, target: AdjustTarget):
        super().__init__()
        self.target = target
        self.saving = False

    def compose(self) -> ComposeResult:
        t = self.target
        with Vertical(classes="dialog", id="adjust-dialog"):
            yield Static(text_cell(f"Adjust {t.number}"), classes="dialog-title")
            yield Static(
                text_cell(
                    f"{t.account} · {S.label(S.INVOICE_STATUSES, t.status)} · total {format_money(t.total, t.currency)}"
                ),
                classes="dialog-body",
            )
            with Horizontal(classes="form-row"):
                yield Label("Type", classes="form-label")
                with ChoiceSet(id="adj-kind"):
                    yield RadioButton("Manual credit", value=True, id="kind-credit")
                    yield RadioButton("Manual charge", id="kind-charge")
            with Horizontal(classes="form-row"):
                yield Label(f"Amount ({t.currency})", classes="form-label")
                yield Input(
                    placeholder="e.g. 25.00",
                    id="adj-amount",
                    compact=True,
                    validators=[AmountValidator(t.currency, t, self.kind)],
                    validate_on=["changed", "submitted"],
                )
            yield Static("", id="adj-amount-error", classes="form-error")
            with Horizontal(classes="form-row"):
                yield Label("Description", classes="form-label")
                yield Input(
                    placeholder="what it is for (required)",
                    id="adj-description",
                    compact=True,
                    max_length=300,
                    validators=[DescriptionValidator()],
                    validate_on=["changed", "submitted"],
                )
            yield Static("", id="adj-description-error", classes="form-error")
            with Horizontal(classes="form-row"):
                yield Label("New total", classes="form-label")
                yield Static(format_money(t.total, t.currency), id="adj-new-total")
            yield Static("", id="adj-error", classes="form-error")
            with Horizontal(classes="buttons"):
                yield Button("Adjust  ^s", variant="primary", id="ok", compact=True)
                yield Button("Cancel  esc", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#adj-amount", Input).focus()

    # -- live state -------------------------------------------------------------
    def kind(self) -> str:
        chosen = self.query_one("#adj-kind", ChoiceSet).chosen
        return "charge" if chosen is not None and chosen.id == "kind-charge" else "credit"

    def preview(self) -> workflow.AdjustPreview:
        """The domain's outcome of what is typed and chosen now (no store read)."""
        return workflow.preview_adjust(
            self.target.basis or self.target.id, self.kind(), self.query_one("#adj-amount", Input).value
        )

    def _show(self, input_id: str, result: ValidationResult | None, show_empty: bool = False) -> bool:
        widget = self.query_one(f"#{input_id}", Input)
        error = self.query_one(f"#{input_id}-error", Static)
        ok = result is None or result.is_valid
        if not widget.value and not show_empty:
            error.update("")
            widget.set_class(False, "-invalid")
            return ok
        error.update("" if ok or result is None else text_cell("✗ " + "; ".join(result.failure_descriptions)))
        widget.set_class(not ok, "-invalid")
        return ok

    def _new_total(self) -> None:
        t = self.target
        label = self.query_one("#adj-new-total", Static)
        p = self.preview()
        if p.after is None:  # nothing (valid) typed: the total stays
            label.update(format_money(t.total, t.currency))
            return
        # Net, its tax (manual corrections are taxed like the charges), new total.
        assert p.correction is not None  # set with `after`
        text = Text(format_money(p.after, t.currency), style="bold")
        text.append(
            f"  ({format_debt_change(p.correction, t.currency)} net", style="red" if p.correction < 0 else "green"
        )
        tax = f", tax {format_amount(p.tax, t.currency)})" if p.tax else ", no tax)"
        text.append(tax, style="red" if p.correction < 0 else "green")
        label.update(text)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_one("#adj-error", Static).update("")
        self._show(event.input.id or "", event.validation_result)
        self._new_total()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        event.stop()
        amount_input = self.query_one("#adj-amount", Input)
        self._show("adj-amount", amount_input.validate(amount_input.value))  # credit <-> charge
        self._new_total()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "adj-amount":
            self.query_one("#adj-description", Input).focus()
        else:
            self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self.action_submit()
        else:
            self.action_cancel()

    # -- submit -----------------------------------------------------------------
    def action_submit(self) -> None:
        if self.saving:
            return
        amount_input = self.query_one("#adj-amount", Input)
        desc_input = self.query_one("#adj-description", Input)
        ok_amount = self._show("adj-amount", amount_input.validate(amount_input.value), show_empty=True)
        ok_desc = self._show("adj-description", desc_input.validate(desc_input.value), show_empty=True)
        if not (ok_amount and ok_desc):
            (amount_input if not ok_amount else desc_input).focus()
            return
        preview = self.preview()  # what was validated is what is submitted
        if preview.amount is None:
            return
        self.saving = True
        self.query_one("#ok", Button).disabled = True
        self.query_one("#adj-error", Static).update("adjusting…")
        self._adjust(preview.kind, preview.amount, desc_input.value)

    @work(thread=True, exclusive=True, group="adjust")
    def _adjust(self, kind: str, amount: Decimal, description: str) -> None:
        t = self.target
        with db_session():
            try:
                inv = workflow.adjust(self.app.ctx, t.id, kind, amount, description)
            except workflow.BadInput as exc:
                post(self.app, self._refused, exc.field, exc.reason)
                return
            except workflow.Refused as exc:
                post(self.app, self._refused, None, str(exc))
                return
            except Exception as exc:  # the store failed: say so, keep the dialog
                post(self.app, self._refused, None, error_text(exc))
                return
        signed = amount if kind == "charge" else -amount
        done = AdjustDone(
            inv.id, inv.number, kind, amount, inv.currency, inv.total, inv.revision, inv.total - t.total - signed
        )
        post(self.app, self.dismiss, done)

    def _refused(self, field: str | None, reason: str) -> None:
        self.saving = False
        self.query_one("#ok", Button).disabled = False
        self.query_one("#adj-error", Static).update("")
        if field in ("amount", "description"):
            self.query_one(f"#adj-{field}-error", Static).update(text_cell(f"✗ {reason}"))
            self.query_one(f"#adj-{field}", Input).set_class(True, "-invalid")
        else:
            self.query_one("#adj-error", Static).update(text_cell(f"✗ {reason}"))

    def action_cancel(self) -> None:
        if not self.saving:
            self.dismiss(None)
