"""Customer classes: send mode, hold-for-review days, Net days, with the
warning of seed 000 shown live as the values change (Net 21 + 5 hold days ->
Net 26)."""
from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from .. import classes as C
from .. import statuses as S
from ..widgets.fit_table import Col, FitTable
from .support import db_session, error_text, post

COLUMNS = [Col("name", "Class"), Col("send_mode", "Send the invoice", 18), Col("hold", "Hold", 5, "right"),
           Col("net", "Net days", 8, "right"), Col("warning", "⚠", 1)]
SEND_SHORT = {"immediately": "Immediately", "after_review": "After review"}


class ClassTable(FitTable):
    def render_cells(self, row: dict, cols, wide: bool) -> list:
        out = []
        for c in cols:
            if c.key == "name":
                out.append(Text(row["name"]))
            elif c.key == "send_mode":
                out.append(SEND_SHORT.get(row["send_mode"], row["send_mode"]))
            elif c.key == "hold":
                out.append(Text(str(row["hold_days"]), justify="right"))
            elif c.key == "net":
                out.append(Text(str(row["net_days"]), justify="right"))
            elif c.key == "warning":
                out.append(Text("⚠", style="bold yellow") if row.get("warning") else " ")
        return out


class ClassesScreen(Screen):
    TITLE = "Customer classes"
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="classes.save"),
        Binding("e", "edit", "Edit", id="classes.edit"),
        Binding("escape", "to_table", "Back to list", id="classes.back", show=False),
        Binding("f5", "reload", "Refresh", id="classes.refresh", show=False),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rows: dict[str, dict] = {}
        self.editing: dict | None = None  # the saved values of the class in the form

    def compose(self) -> ComposeResult:
        yield Header()
        yield ClassTable(COLUMNS, id="classes-table")
        with Vertical(id="class-form"):
            yield Static("", id="class-title", classes="form-title")
            with Horizontal(classes="form-row"):
                yield Label("Send the invoice", classes="form-label")
                yield Select([(label, value) for value, label in S.SEND_MODES.items()], allow_blank=False,
                             compact=True, id="class-send")
            with Horizontal(classes="form-row"):
                yield Label("Hold for review", classes="form-label")
                yield Input("0", id="class-hold", compact=True, type="integer", classes="days")
                yield Label("days", classes="unit")
            with Horizontal(classes="form-row"):
                yield Label("Payment terms", classes="form-label")
                yield Label("Net", classes="unit")
                yield Input("30", id="class-net", compact=True, type="integer", classes="days")
                yield Label("days", classes="unit")
                yield Button("Save", id="class-save", variant="primary", compact=True)
            yield Static("", id="class-warning", classes="warning")
            yield Static("", id="class-error", classes="form-error")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.action_reload()
        self.query_one("#classes-table").focus()

    def action_reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="classes")
    def _load(self) -> None:
        with db_session():
            try:
                rows = C.class_rows()
            except Exception as exc:
                post(self.app, self.notify, error_text(exc), severity="error")
                return
        post(self.app, self._show, rows)

    def _show(self, rows: list[dict]) -> None:
        table = self.query_one(ClassTable)
        current = table.current_key()
        self.rows = {r["name"]: r for r in rows}
        table.set_items((r["name"], r) for r in rows)
        if current in self.rows:
            table.move_cursor(row=table.order.index(current))
        elif rows:
            self._edit(rows[0]["name"])

    # -- the form ----------------------------------------------------------------------
    def on_data_table_row_highlighted(self, event) -> None:
        if event.row_key is not None and event.row_key.value in self.rows:
            self._edit(event.row_key.value)

    def on_data_table_row_selected(self, event) -> None:
        self.action_edit()

    def action_edit(self) -> None:
        self.query_one("#class-send", Select).focus()

    def action_to_table(self) -> None:
        self.query_one(ClassTable).focus()

    def _edit(self, name: str) -> None:
        row = self.rows[name]
        self.editing = row
        self.query_one("#class-title", Static).update(Text(f"{name} — billing period {row['billing_period']}",
                                                           style="bold"))
        send = self.query_one("#class-send", Select)
        hold = self.query_one("#class-hold", Input)
        net = self.query_one("#class-net", Input)
        with send.prevent(Select.Changed), hold.prevent(Input.Changed), net.prevent(Input.Changed):
            send.value = row["send_mode"]
            hold.value = str(row["hold_days"])
            net.value = str(row["net_days"])
        self._check()

    def values(self) -> tuple[str, int | None, int | None]:
        send = self.query_one("#class-send", Select).value
        send = send if isinstance(send, str) else "immediately"

        def number(wid):
            try:
                return int(self.query_one(wid, Input).value.strip())
            except ValueError:
                return None

        return send, number("#class-hold"), number("#class-net")

    def _check(self) -> bool:
        send, hold, net = self.values()
        warning = self.query_one("#class-warning", Static)
        error = self.query_one("#class-error", Static)
        if hold is None or net is None:
            error.update("✗ " + ("hold days" if hold is None else "Net days") + ": a whole number of days")
            warning.update("")
            return False
        try:
            C.validate(send, hold, net)
        except C.ClassError as exc:
            error.update(f"✗ {exc.field}: {exc.reason}")
            warning.update("")
            return False
        error.update("")
        row = self.editing
        before = (row["send_mode"], row["hold_days"], row["net_days"]) if row else None
        text = C.change_warning(before, (send, hold, net))
        warning.update(Text(f"⚠ {text}", style="bold yellow") if text else "")
        return True

    def on_select_changed(self, event: Select.Changed) -> None:
        self._check()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._check()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_save()

    def action_save(self) -> None:
        if self.editing is None or not self._check():
            return
        send, hold, net = self.values()
        row = self.editing
        # Only what changed goes to the domain.
        self._save(row["name"], send if send != row["send_mode"] else None,
                   hold if hold != row["hold_days"] else None, net if net != row["net_days"] else None)

    @work(thread=True, exclusive=True, group="save-class")
    def _save(self, name: str, send, hold, net) -> None:
        with db_session():
            try:
                warning = C.save_class(self.app.ctx, name, send_mode=send, hold_days=hold, net_days=net)
                rows = C.class_rows()
            except C.ClassError as exc:
                post(self.app, self._show_error, f"✗ {exc.field}: {exc.reason}")
                return
            except Exception as exc:
                post(self.app, self.notify, error_text(exc), severity="error")
                return
        post(self.app, self._saved, name, warning, rows)

    def _show_error(self, text: str) -> None:
        self.query_one("#class-error", Static).update(text)

    def _saved(self, name: str, warning: str | None, rows: list[dict]) -> None:
        self.notify(f"{name} saved" + (f" — {warning}" if warning else ""), title="Customer class",
                    severity="warning" if warning else "information")
        table = self.query_one(ClassTable)
        for r in rows:  # refresh only the cells that changed
            if r["name"] in self.rows:
                table.update_item(r["name"], r)
        self.rows = {r["name"]: r for r in rows}
        self._edit(name)
        if warning:
            self.query_one("#class-warning", Static).update(Text(f"⚠ {warning}", style="bold yellow"))
