"""Email that needs a person (F7): failed deliveries, uncertain ones (the
SMTP crash window), and queued mail the server has not taken for 15 minutes
(waiting: retried on its own), with why; `r` requeues a failed or uncertain
one, `s` confirms an uncertain one as delivered.  The same operations as
`tui-billing outbox --retry/--mark-sent` (mail.retry, mail.mark_mail_sent), run
in thread workers."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from ..text import shown
from ..widgets.fmt import text_cell
from .role_gate import RoleGate
from .support import db_session, error_text, post

COLUMNS = ("ID", "Status", "Invoice", "To", "Tries", "Why")


class OutboxModal(RoleGate, ModalScreen[None]):
    ROLE_ACTIONS = {"retry": "outbox", "mark_sent": "outbox"}

    BINDINGS = [
        Binding("escape,q", "close", "Close", id="outbox.close"),
        Binding("r", "retry", "Retry", id="outbox.retry"),
        Binding("s", "mark_sent", "Mark sent", id="outbox.mark_sent"),
        Binding("f5", "reload", "Refresh", id="outbox.refresh"),
    ]

    def __init__(self):
        super().__init__()
        self.rows: dict[str, dict] = {}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide-dialog", id="outbox-dialog"):
            yield Static("Email that needs a person: failed, uncertain, waiting", classes="dialog-title")
            yield Static("loading…", id="outbox-summary", classes="dialog-body")
            yield DataTable(id="outbox-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="outbox-detail")
            yield Static(
                "r retry (requeue now) · s mark sent (uncertain: found in the server's log) · F5 refresh · Esc close",
                classes="dialog-hint",
            )

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns(*COLUMNS)
        table.focus()
        self.action_reload()

    def action_reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="outbox")
    def _load(self) -> None:
        from .. import mail

        with db_session():
            try:
                counts = mail.counts()
                clock = self.app.ctx.clock
                rows = [mail.message_dict(m, clock) for m in mail.failed_messages(limit=500)]
                stalled = [mail.message_dict(m, clock) for m in mail.stalled_messages(clock.now(), limit=500)]
                for row in stalled:
                    row["status"] = "waiting"  # queued, retried on its own
                rows += stalled
            except Exception as exc:
                post(self.app, self.notify, error_text(exc), title="Outbox", severity="error")
                return
        post(self.app, self._show, counts, rows)

    def _show(self, counts: dict, rows: list[dict]) -> None:
        from .. import mail

        summary = self.query_one("#outbox-summary", Static)
        waiting = counts.get(mail.QUEUED, 0) + counts.get(mail.SENDING, 0)
        stalled = sum(1 for r in rows if r["status"] == "waiting")
        summary.update(
            f"{counts.get(mail.FAILED, 0):,} failed · {counts.get(mail.UNCERTAIN, 0):,} uncertain · "
            f"{waiting:,} queued ({stalled:,} waiting over {mail.STALLED_AFTER.seconds // 60} min) · "
            f"{counts.get(mail.SENT, 0):,} sent"
        )
        table = self.query_one(DataTable)
        table.clear()
        self.rows = {}
        for row in rows:
            key = str(row["id"])
            self.rows[key] = row
            why = shown((row["last_error"] or "").replace("\n", " "))
            # DataTable reads a str cell as markup ("[Errno 111] …" would vanish): Text cells
            table.add_row(
                *(
                    text_cell(v)
                    for v in (
                        key,
                        row["status"],
                        row["invoice"] or row["kind"],
                        row["recipient"],
                        str(row["attempts"]),
                        why[:60],
                    )
                ),
                key=key,
            )
        if not rows:
            self.query_one("#outbox-detail", Static).update("Nothing failed, uncertain or waiting.")
        else:
            self._detail()

    def current(self) -> dict | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.rows.get(key or "")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._detail()

    def _detail(self) -> None:
        row = self.current()
        if row is None:
            return
        text = Text()
        text.append(f"{shown(row['message_id'])}\n", style="bold")
        text.append(f"{shown(row['subject'])}\n{shown(row['last_error'] or '')}")
        self.query_one("#outbox-detail", Static).update(text)

    def action_retry(self) -> None:
        self._operate("retry")

    def action_mark_sent(self) -> None:
        self._operate("mark_mail_sent")

    def _operate(self, what: str) -> None:
        row = self.current()
        if row is None:
            self.notify("Nothing selected.", severity="warning")
            return
        self._run(what, row["id"])

    @work(thread=True, exclusive=True, group="outbox-op")
    def _run(self, what: str, msg_id: int) -> None:
        from .. import mail

        with db_session():
            try:
                done, refused = getattr(mail, what)(self.app.ctx, [msg_id])
            except Exception as exc:
                post(self.app, self.notify, error_text(exc), title="Outbox", severity="error")
                return
        if refused:
            post(self.app, self.notify, f"message {msg_id} {refused[0][1]}", title="Outbox", severity="warning")
        else:
            words = "requeued: the job loop sends it on its next pass" if what == "retry" else "marked sent"
            post(self.app, self.notify, f"message {msg_id} {words}", title="Outbox")
        post(self.app, self.action_reload)

    def action_close(self) -> None:
        self.dismiss(None)
