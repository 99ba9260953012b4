"""Customer classes: send mode, hold-for-review days, Net days, with the
warning of seed 000 shown live as the values change (Net 21 + 5 hold days ->
Net 26).

Saving asks first, with each value before and after (and the warning, if
any).  A warning stays: on the class's row (⚠) and under the form whenever
that class is highlighted, for as long as the class keeps the values it was
saved with — never only a toast.  Tab and Shift+Tab go round the form's
fields top to bottom, left to right (send mode, hold days, Net days, Save);
they never leave it for the list, where an arrow key would load another
class over what was typed.  Escape goes back to the list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Header, Input, Label, Select, Static

from .. import customer_classes as C
from .. import statuses as S
from ..widgets.fit_table import Col, FitTable
from ..widgets.fmt import text_cell
from ..widgets.footer import Footer
from .role_gate import RoleGate
from .support import db_session, error_text, post

COLUMNS = [
    Col("name", "Class"),
    Col("send_mode", "Send the invoice", 18),
    Col("hold", "Hold", 5, "right"),
    Col("net", "Net days", 8, "right"),
    Col("warning", "⚠", 1),
]
SEND_SHORT = {"immediately": "Immediately", "after_review": "After review"}
FORM = ("#class-send", "#class-hold", "#class-net", "#class-save")  # Tab order: top to bottom, left to right


class ClassTable(FitTable):
    def render_cells(self, row: dict, cols, wide: bool) -> list:
        out: list[Text | str] = []
        for c in cols:
            if c.key == "name":
                out.append(text_cell(row["name"], no_wrap=True, overflow="ellipsis"))
            elif c.key == "send_mode":
                out.append(SEND_SHORT.get(row["send_mode"], row["send_mode"]))
            elif c.key == "hold":
                out.append(Text(str(row["hold_days"]), justify="right"))
            elif c.key == "net":
                out.append(Text(str(row["net_days"]), justify="right"))
            elif c.key == "warning":
                out.append(Text("⚠", style="bold yellow") if row.get("warning") else " ")
        return out


class ClassesScreen(RoleGate, Screen):
    ROLE_ACTIONS = {"save": "classes", "edit": "classes"}

    TITLE = "Customer classes"
    BINDINGS = [
        Binding(
            "ctrl+s",
            "save",
            "Save",
            id="classes.save",
            tooltip="Save the form (asks first, with each value before and after)",
        ),
        Binding("e", "edit", "Edit", id="classes.edit"),
        Binding("escape", "to_table", "Back to list", id="classes.back", show=False),
        Binding("f5", "reload", "Refresh", id="classes.refresh", show=False),
        Binding("tab", "form_focus(1)", "Next field (round the form; Esc: back to the list)", show=False),
        Binding("shift+tab", "form_focus(-1)", "Previous field", show=False),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.rows: dict[str, dict] = {}
        self.editing: dict | None = None  # the saved values of the class in the form
        # The warning a save returned, per class, with the values it was given for:
        # shown while the class keeps those values.
        self.saved_warnings: dict[str, tuple[tuple, str]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield ClassTable(COLUMNS, id="classes-table")
        with Vertical(id="class-form"):
            yield Static("", id="class-title", classes="form-title")
            with Horizontal(classes="form-row"):
                yield Label("Send the invoice", classes="form-label")
                yield Select(
                    [(label, value) for value, label in S.SEND_MODES.items()],
                    allow_blank=False,
                    compact=True,
                    id="class-send",
                )
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

    @staticmethod
    def _values(row: dict) -> tuple[str, int, int]:
        return row["send_mode"], row["hold_days"], row["net_days"]

    def _with_warning(self, rows: list[dict]) -> list[dict]:
        """The rows with the warning that applies to each: the class's own (net
        days within the hold), or the one its last save here returned while it
        keeps the values saved then."""
        out = []
        for r in rows:
            saved = self.saved_warnings.get(r["name"])
            if saved is not None and saved[0] != self._values(r):
                del self.saved_warnings[r["name"]]  # changed since (here or elsewhere): it no longer applies
                saved = None
            out.append(dict(r, warning=r.get("warning") or (saved[1] if saved else None)))
        return out

    def _show(self, rows: list[dict]) -> None:
        rows = self._with_warning(rows)
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

    def action_form_focus(self, step: int) -> None:
        """Tab / Shift+Tab: round the form's fields; from the list, into the form."""
        fields = [self.query_one(wid) for wid in FORM]
        focused = self.focused
        index = next(
            (i for i, f in enumerate(fields) if focused is f or (focused is not None and f in focused.ancestors)), None
        )
        if index is None:
            target = fields[0] if step > 0 else fields[-1]
        else:
            target = fields[(index + step) % len(fields)]
        target.focus()

    def _edit(self, name: str) -> None:
        row = self.rows[name]
        self.editing = row
        self.query_one("#class-title", Static).update(
            text_cell(f"{name} — billing period {row['billing_period']}", style="bold")
        )
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
            error.update(Text("✗ " + ("hold days" if hold is None else "Net days") + ": a whole number of days"))
            warning.update("")
            return False
        try:
            C.validate(send, hold, net)
        except C.ClassError as exc:
            error.update(text_cell(f"✗ {exc.field}: {exc.reason}"))
            warning.update("")
            return False
        error.update("")
        row = self.editing
        before = self._values(row) if row else None
        text = C.change_warning(before, (send, hold, net))
        if not text and row is not None and before == (send, hold, net):
            text = row.get("warning")  # the class as saved: the warning that stays with it
        warning.update(text_cell(f"⚠ {text}", style="bold yellow") if text else "")
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
        """Ask first, with each value before and after; only what changed goes to the domain."""
        if self.editing is None or not self._check():
            return
        from .confirm import ConfirmModal

        send, hold, net = self.values()
        assert hold is not None and net is not None  # _check: whole numbers of days
        after = (send, hold, net)
        row = self.editing
        before = self._values(row)
        if after == before:
            self.notify(f"Nothing to save: the form holds the values {row['name']} has.", title="Customer class")
            return
        send, hold, net = after
        change = (
            send if send != row["send_mode"] else None,
            hold if hold != row["hold_days"] else None,
            net if net != row["net_days"] else None,
        )
        body = self.change_view(row["name"], before, after, C.change_warning(before, after))

        def answered(ok: bool | None) -> None:
            if ok:  # (cancelled: the form keeps what was typed)
                self._save(row["name"], *change)

        self.app.push_screen(ConfirmModal("Save the customer class?", body, "Save"), answered)

    @staticmethod
    def change_view(name: str, before: tuple, after: tuple, warning: str | None) -> Group:
        """Each value before → after (changed ones bold), then the warning."""
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        grid.add_row(Text(""), Text("before", style="dim"), Text(""), Text("after", style="dim"))
        labels = ("Send the invoice", "Hold for review", "Payment terms")
        words: tuple[Callable[[Any], str], ...] = (
            lambda v: SEND_SHORT.get(v, v),
            lambda v: f"{v} days",
            lambda v: f"Net {v} days",
        )
        for label, fmt, old, new in zip(labels, words, before, after):
            style = "bold" if old != new else "dim"
            grid.add_row(
                Text(label, style="bold"),
                Text(fmt(old), style="dim" if old == new else ""),
                Text("→" if old != new else "", style=style),
                Text(fmt(new), style=style),
            )
        parts: list[RenderableType] = [text_cell(name, style="bold"), grid]
        if warning:
            parts += [Text(""), text_cell(f"⚠ {warning}", style="bold yellow")]
        return Group(*parts)

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
        self.query_one("#class-error", Static).update(text_cell(text))

    def _saved(self, name: str, warning: str | None, rows: list[dict]) -> None:
        saved = next((r for r in rows if r["name"] == name), None)
        if warning and saved is not None:  # it stays on the row (and under the form) while it applies
            self.saved_warnings[name] = (self._values(saved), warning)
        else:
            self.saved_warnings.pop(name, None)
        rows = self._with_warning(rows)
        self.notify(f"{name} saved" + (" (see the warning on its row)" if warning else ""), title="Customer class")
        table = self.query_one(ClassTable)
        for r in rows:  # refresh only the cells that changed
            if r["name"] in self.rows:
                table.update_item(r["name"], r)
        self.rows = {r["name"]: r for r in rows}
        self._edit(name)
