"""Reissue one or many invoices: now, or in the nearest off-peak window.

The option highlighted is the option applied (ChoiceSet).  Given the
invoices' ids, the dialog says what the chosen option would do — reissued
at once, Rejected until the window opens, refused and why — from the
domain's workflow.preview_reissue, loaded in a worker (no rule here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, RadioButton, RadioSet, Static

from .. import workflow
from ..text import shown
from ..widgets.choice_set import ChoiceSet
from ..widgets.fmt import plural
from .support import db_session, error_text, post

if TYPE_CHECKING:
    from textual import getters

    from ..app import BillingApp

REFUSED_SHOWN = 2  # refused invoices named in the note; the summary lists each


class ReissueModal(ModalScreen[str | None]):
    """Dismisses with "now", "off_peak" or None (cancelled)."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="modal.cancel"),
        Binding("ctrl+s", "submit", "Reissue", id="modal.submit"),
    ]

    if TYPE_CHECKING:  # the console's own App (its ctx, change_seq...), for the type checker
        app = getters.app(BillingApp)

    def __init__(
        self, count: int, numbers: list[str], window_text: str, ids: list[int] | None = None, loop: str | None = ""
    ):
        super().__init__()
        # Who recalculates the queued ones: "the job loop in this console" / "… on host:pid";
        # None: no loop is running (the promise says so); "": not known.
        self.loop = loop
        self.count = count
        self.numbers = numbers
        self.window_text = window_text
        self.ids = ids
        self.previews: dict[str, workflow.ReissuePreview] = {}

    def compose(self) -> ComposeResult:
        which = ", ".join(shown(n) for n in self.numbers[:3])
        which += f" and {self.count - 3:,} more" if self.count > 3 else ""
        with Vertical(classes="dialog"):
            yield Static(f"Reissue {plural(self.count, 'invoice')}", classes="dialog-title")
            yield Static(Text(which), classes="dialog-body")
            yield Static(
                "Recalculate per-service amounts from the current xDRs and subscriptions; "
                "corrections are kept and the number does not change.",
                classes="dialog-hint",
            )
            with ChoiceSet(id="reissue-mode"):
                yield RadioButton(f"In the off-peak window — {self.window_text}", value=True, id="mode-off_peak")
                yield RadioButton("Now — the corrected PDFs are available at once", id="mode-now")
            yield Static(self._plain_note(), id="reissue-note", classes="dialog-hint")
            with Horizontal(classes="buttons"):
                yield Button("Reissue  ^s", variant="primary", id="ok", compact=True)
                yield Button("Cancel  esc", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one(ChoiceSet).focus()
        if self.ids is not None:
            self._load_previews(list(self.ids))

    def mode(self) -> str:
        chosen = self.query_one(ChoiceSet).chosen
        return "now" if chosen is not None and chosen.id == "mode-now" else "off_peak"

    # -- what the chosen option would do (the domain's preview) --------------------
    @work(thread=True, exclusive=True, group="reissue-preview")
    def _load_previews(self, ids: list[int]) -> None:
        clock = self.app.ctx.clock
        with db_session():
            try:
                previews = {mode: workflow.preview_reissue(ids, mode, clock=clock) for mode in ("off_peak", "now")}
            except Exception as exc:  # the dialog still works; the summary reports each
                post(self.app, self._note_failed, error_text(exc))
                return
        post(self.app, self._previewed, previews)

    def _previewed(self, previews: dict[str, workflow.ReissuePreview]) -> None:
        self.previews = previews
        self._show_note()

    def _note_failed(self, reason: str) -> None:
        self.query_one("#reissue-note", Static).update(Text(f"Could not check the invoices: {shown(reason)}"))

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        event.stop()
        self._show_note()

    def _plain_note(self) -> str:
        if self.count > workflow.REISSUE_MANY:
            return "Many invoices: the off-peak window is recommended to spare the system."
        return "Until it is reissued the invoice is stored as Rejected."

    def _show_note(self) -> None:
        p = self.previews.get(self.mode())
        note = self.query_one("#reissue-note", Static)
        note.update(self._plain_note() if p is None else self._preview_text(p))

    def _preview_text(self, p: workflow.ReissuePreview) -> Text:
        text = Text()
        n = len(p.ids)
        if p.now:
            text.append(f"{plural(n, 'invoice')} recalculated at once and back under review.")
        elif p.queued:
            clock = self.app.ctx.clock
            opens = (
                f"the window opens {clock.local(p.window_opens):%a %d %b %H:%M}"
                if p.window_opens > clock.now()
                else "the job loop reaches it (the window is open now)"
            )
            text.append(
                f"{plural(n, 'invoice')} {'stays' if n == 1 else 'stay'} Rejected until {opens}, "
                "then recalculated" + (f" by {self.loop}." if self.loop else ".")
            )
            if self.loop is None:
                text.append(
                    "\nNo job loop is running now: nothing is recalculated until one runs (tui-billing jobs run).",
                    style="yellow",
                )
        else:
            text.append("Nothing here can be reissued.", style="yellow")
        if p.refused:
            named = "; ".join(f"{shown(number)} {shown(reason)}" for number, reason in p.refused[:REFUSED_SHOWN])
            more = f" … and {len(p.refused) - REFUSED_SHOWN:,} more" if len(p.refused) > REFUSED_SHOWN else ""
            text.append(f"\n{len(p.refused):,} refused: {named}{more}", style="yellow")
        if p.recommend_offpeak and p.mode == "now":
            text.append("\nMany invoices: the off-peak window is recommended to spare the system.")
        return text

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(self.mode() if event.button.id == "ok" else None)

    def action_submit(self) -> None:
        self.dismiss(self.mode())

    def action_cancel(self) -> None:
        self.dismiss(None)
