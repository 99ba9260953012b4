"""The audit trail (F6): who did what, when, with which role — newest first,
with the `audit` command's filters (actor, action, invoice, from, to), read
by the same functions (store.audit_log.parse_filter, page; present.audit_dict)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from ..present import audit_change
from ..text import shown
from ..widgets.fmt import text_cell
from .support import db_session, error_text, post

if TYPE_CHECKING:
    from textual import getters

    from ..app import BillingApp

LIMIT = 200  # events shown; the summary says how many match
FILTERS = (
    ("actor", "actor (OS user)"),
    ("action", "action"),
    ("invoice", "invoice number"),
    ("since", "from (date or time)"),
    ("until", "to"),
)
COLUMNS = ("When", "Who", "Role", "What", "Invoice", "Change")
WHO = 14  # characters of the actor in the table ("job:dispatch_approved" in full in the detail line)


class AuditModal(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close", id="audit.close"),
        Binding("f5", "reload", "Refresh", id="audit.refresh"),
    ]

    if TYPE_CHECKING:  # the console's own App (its ctx, change_seq...), for the type checker
        app = getters.app(BillingApp)

    def __init__(self, invoice: str | None = None):
        super().__init__()
        self.initial_invoice = invoice
        self.events: dict[str, dict] = {}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide-dialog", id="audit-dialog"):
            yield Static("Audit trail: who did what, newest first", classes="dialog-title")
            with Horizontal(id="audit-filters"):
                for key, placeholder in FILTERS:
                    value = self.initial_invoice if key == "invoice" and self.initial_invoice else ""
                    yield Input(value=value, placeholder=placeholder, id=f"audit-{key}", classes="audit-filter")
            yield Static("loading…", id="audit-summary", classes="dialog-body")
            yield DataTable(id="audit-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="audit-detail")
            yield Static(
                "Enter in a filter applies them all · Tab next · F5 refresh · Esc close", classes="dialog-hint"
            )

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*COLUMNS)
        table.focus()
        self.action_reload()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_reload(self) -> None:
        values = {key: self.query_one(f"#audit-{key}", Input).value for key, _ in FILTERS}
        self._load(values)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_reload()

    @work(thread=True, exclusive=True, group="audit")
    def _load(self, values: dict[str, str]) -> None:
        from ..errors import FieldError
        from ..present import audit_dict
        from ..store import audit_log

        clock = self.app.ctx.clock
        with db_session():
            try:
                f = audit_log.parse_filter(clock, **values)
                total = audit_log.count(f)
                events = [audit_dict(ev, clock) for ev in audit_log.page(f, LIMIT)]
            except FieldError as exc:  # the filter at fault, named as the form shows it
                post(self.app, self._refused, exc.field, exc.reason)
                return
            except Exception as exc:
                post(self.app, self.notify, error_text(exc), title="Audit", severity="error")
                return
        post(self.app, self._show, total, events)

    def _refused(self, field: str, reason: str) -> None:
        label = dict(FILTERS).get({"from": "since", "to": "until"}.get(field, field), field)
        self.query_one("#audit-summary", Static).update(Text(f"{label}: {reason}", style="bold red"))

    def _show(self, total: int, events: list[dict]) -> None:
        shown_count = len(events)
        more = (
            f" (the newest {shown_count:,}; `tui-billing audit --all` lists every one)" if total > shown_count else ""
        )
        self.query_one("#audit-summary", Static).update(f"{total:,} events match{more}")
        table = self.query_one(DataTable)
        table.clear()
        self.events = {}
        for ev in events:
            key = str(ev["id"])
            self.events[key] = ev
            change = audit_change(ev)
            who = ev["actor"] if len(ev["actor"]) <= WHO else ev["actor"][: WHO - 1] + "…"  # in full below
            table.add_row(
                *(
                    text_cell(v)
                    for v in (
                        ev["at"][:16].replace("T", " "),
                        who,
                        ev["role"] or "—",
                        ev["action"],
                        ev["invoice"] or "",
                        change,
                    )
                ),
                key=key,
            )
        self._detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._detail()

    def _detail(self) -> None:
        table = self.query_one(DataTable)
        detail = self.query_one("#audit-detail", Static)
        if not table.row_count:
            detail.update("No event matches.")
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        ev = self.events.get(key or "")
        if ev is not None:
            text = Text(
                f"{shown(ev['actor'])}" + (f" ({ev['role']})" if ev["role"] else "") + f" · {ev['action']}",
                style="bold",
            )
            text.append(f"\n{shown(ev['detail']) or '—'}", style="")
            detail.update(text)
