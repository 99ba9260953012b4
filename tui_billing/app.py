"""The Textual console: modes (queue F2, finder F3, classes F4), app-wide keys,
the command palette, notifications and the in-console job loop.

The header says which job loop serves the store ("jobs: this console, pass
just now", "jobs: billing-01:4711, pass 2 min ago", "no job loop: approved
invoices wait"), checked every JOBS_POLL seconds in a thread worker.  The
console runs the loop itself per its mode: "auto" (the default of
`tui-billing`): when no other loop is alive on the store; "on" (--jobs):
always (SQLite: waits for the other one); "off" (--no-jobs, and tests).

Thin on purpose: screens live in screens/, reusable widgets in widgets/, and
every rule in the domain modules they call.
"""

from __future__ import annotations

import threading
from collections import deque

from textual import events, work
from textual.app import App
from textual.binding import Binding
from textual.content import Content

from .errors import ConfigError
from .idle_work import IdleWork
from .screens.palette import BillingCommands
from .screens.queue import QueueScreen
from .screens.support import db_session, error_text, post

THEMES = ("textual-dark", "textual-light")
CHANGE_LOG = 500  # remembered change batches (screens refresh rows changed elsewhere)
JOBS_POLL = 15.0  # seconds between checks of the store's job loops (they beat every 15 s)
HEADER_SIDES = 4  # columns of the header that are not its title: icon 3 + right margin 1 (CSS below)
JOBS_MODES = {True: "on", False: "off", None: "off", "on": "on", "off": "off", "auto": "auto"}


class BillingApp(App):
    CSS_PATH = "app.tcss"
    # The header's title gets the room of the clock we do not show: it also says
    # which job loop serves the store, and must fit 80 columns with the --now.
    CSS = """
    HeaderIcon { width: 3; }
    HeaderClockSpace { width: 1; }
    """
    TITLE = "tui-billing"
    MODES = {"queue": QueueScreen, "finder": lambda: _finder()(), "classes": lambda: _classes()()}
    DEFAULT_MODE = "queue"
    # The console's own palette only: Textual's system commands named Quit, Keys
    # and the theme a second time, without their keys.
    COMMANDS = {BillingCommands}
    BINDINGS = [
        # "?" first: the footer shows the first key, and "? Help" leaves 80 columns room
        Binding("question_mark,f1", "help", "Help", id="app.help"),
        Binding("f2", "switch_mode('queue')", "Review queue", id="app.queue", show=False),
        Binding("f3", "switch_mode('finder')", "Find invoices", id="app.finder", show=False),
        Binding("f4", "switch_mode('classes')", "Customer classes", id="app.classes", show=False),
        Binding("f6", "audit", "Audit trail", id="app.audit", show=False),
        Binding("f7", "outbox", "Email problems (outbox)", id="app.outbox", show=False),
        Binding("f8", "job_log", "Job loop log", id="app.job_log", show=False),
        Binding("f9,ctrl+t", "toggle_theme", "Light/dark theme", id="app.theme", show=False),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", show=False, priority=True),
    ]

    def __init__(
        self,
        env,
        *,
        jobs: bool | str = False,
        poll_seconds: float = 30,
        jobs_poll_seconds: float = JOBS_POLL,
        keymap: dict | None = None,
    ):
        super().__init__()
        self.env = env
        self.ctx = env.ctx
        self.jobs_mode = JOBS_MODES[jobs]  # "auto" | "on" | "off"
        self.jobs = self.jobs_mode != "off"
        self.poll_seconds = poll_seconds
        self.jobs_poll_seconds = jobs_poll_seconds
        self.loop_status = None  # jobs.LoopStatus of the last check (None until the first)
        self.jobs_words = ""  # what the header says about the job loops
        self._jobs_active = False  # this console's loop worker runs (waiting, or holding the store)
        self._jobs_failed = False  # it stopped on an error: auto mode does not start it again
        self.change_seq = 0
        self._changes: list[tuple[int, frozenset]] = []
        self.stop_jobs = threading.Event()
        self.job_lines: deque[str] = deque(maxlen=500)
        self._waiting_baseline: tuple[int, int] | None = None
        self._mail_problems: int | None = None  # failed + uncertain + stalled emails at the last poll
        self.keymap = dict(keymap or {})
        self.idle = IdleWork(self, self.prepare_finder)
        theme = getattr(getattr(env, "config", None), "theme", None)
        self._initial_theme = theme if theme in self.available_themes else THEMES[0]
        # who you are: the user, and in team mode their role (roles.py; README: Roles and approvals)
        self.sub_title = (
            self.ctx.actor
            + (f" ({self.ctx.role})" if self.ctx.role else "")
            + (f" · --now {self.ctx.clock.local():%Y-%m-%d %H:%M}" if self.ctx.clock.fixed else "")
        )

    def on_mount(self) -> None:
        self.theme = self._initial_theme
        if self.keymap:
            self.set_keymap(self.keymap)
        if self.poll_seconds:
            self.poll_waiting()  # baseline
            self.set_interval(self.poll_seconds, self.poll_waiting)
        if self.jobs_mode == "on":
            self.start_jobs()
        self.check_jobs()  # auto: starts the loop when no other one is alive
        if self.jobs_poll_seconds:
            self.set_interval(self.jobs_poll_seconds, self.check_jobs)

    # -- while the admin reads (idle_work.py) ---------------------------------------------
    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):
            self.idle.key()
        await super().on_event(event)

    def first_page_shown(self) -> None:
        """A list's first page is on screen: the start is over."""
        self.idle.start()

    def prepare_finder(self) -> None:
        """Build the finder (F3) in the background (IdleWork calls this after a
        second without a key): mounting a screen and styling its widgets takes
        a quarter of a second, which F3 would otherwise wait for; F3 then only
        switches to it and loads its first page (InvoiceListScreen.
        on_screen_resume). Textual builds a mode's screen on the first switch;
        its own _init_mode does what that switch would, without showing it."""
        if "finder" in self._screen_stacks or not self.is_running:
            return
        self._init_mode("finder")
        # Its widgets are styled as they mount, by the stylesheet as it is now (the
        # finder's CSS included): F3 need not restyle the whole app again (a
        # theme change restyles every screen, the finder too).
        self._screen_stacks["finder"][0]._css_update_count = self._css_update_count

    # -- the header: screen title — job loops · user · --now -----------------------------
    def format_title(self, title: str, sub_title: str) -> Content:
        """The job loop words come first after the title (in the warning colour when
        none runs); at a narrow width the user, then the --now, give way to them."""
        extras = [p for p in sub_title.split(" · ") if p] if sub_title else []
        jobs = self.jobs_words
        room = max(self.size.width - HEADER_SIDES, 20)

        def width(parts: list[str]) -> int:
            return len(title) + sum(len(p) + 3 for p in parts)

        while extras and width([jobs, *extras] if jobs else extras) > room:
            extras.pop(0)  # the user first (always the same), then the --now
        parts: list = [title]
        if jobs:
            style = "$text-warning" if self.loop_status is not None and not self.loop_status.running else ""
            parts += [(" — ", "dim"), (jobs, style)]
        if extras:
            parts += [(" · " if jobs else " — ", "dim"), (" · ".join(extras), "dim")]
        return Content.assemble(*parts)

    def on_resize(self, event) -> None:
        self.mutate_reactive(App.sub_title)  # headers re-format their title for the new width

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity="information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every toast shows its words as they are: they carry invoice numbers,
        names and reasons from the store, which are never read as markup and
        whose control characters are made visible (text.shown)."""
        from .text import shown

        super().notify(
            "\n".join(shown(line) for line in str(message).split("\n")),
            title=shown(title),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    # -- navigation -------------------------------------------------------------------
    def open_invoice(self, ref: int | str) -> None:
        from .screens.detail import InvoiceDetailScreen

        self.push_screen(InvoiceDetailScreen(ref))

    def action_toggle_theme(self) -> None:
        self.theme = THEMES[1] if self.theme == THEMES[0] else THEMES[0]

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.key_sections()))

    def key_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        from dataclasses import replace

        from .screens.adjust import AdjustModal
        from .screens.classes_screen import ClassesScreen
        from .screens.confirm import ConfirmModal
        from .screens.detail import InvoiceDetailScreen
        from .screens.finder import FinderScreen
        from .screens.invoice_list import InvoiceListScreen
        from .screens.outbox import OutboxModal
        from .screens.summary import SummaryModal
        from .widgets.filter_bar import FilterBar
        from .widgets.invoice_table import InvoiceTable

        def keys(*bindings) -> list[tuple[str, str]]:
            out = []
            for b in bindings:
                key = self.keymap.get(b.id, b.key) if b.id else b.key
                shown = " ".join(self.get_key_display(Binding(k.strip(), b.action)) for k in key.split(","))
                out.append((shown, b.tooltip or b.description))  # the tooltip says it in full
            return out

        def said(bindings, binding_id: str, words: str) -> Binding:
            """A dialog binding (its key, as remapped) with what it does in every dialog."""
            b = next(b for b in bindings if b.id == binding_id)
            return replace(b, description=words, tooltip="")

        palette = Binding("ctrl+p", "command_palette", "Command palette: every action by name")
        dialogs = [  # the same ids in every dialog; a dialog's button names its own verb
            said(AdjustModal.BINDINGS, "modal.submit", "Submit the dialog (its button names what it does)"),
            said(AdjustModal.BINDINGS, "modal.cancel", "Cancel: close the dialog, nothing is changed"),
            said(ConfirmModal.BINDINGS, "modal.confirm", "Confirm: yes to a question (approve, accept flags…)"),
            said(ConfirmModal.BINDINGS, "modal.cancel", "No: cancel a question, nothing is changed"),
            Binding("f", "include_flagged", "Approve: go on to accept the flags of the flagged invoices"),
            said(SummaryModal.BINDINGS, "modal.close", "Close a summary"),
            Binding("tab", "next", "Next field (shift+tab: the one before)"),
            Binding("up,down", "choose", "Change a choice: the option highlighted is the one applied"),
        ]
        return [
            ("Everywhere", keys(*self.BINDINGS, palette)),
            (
                "Review queue and finder",
                keys(
                    *InvoiceTable.BINDINGS,
                    *InvoiceListScreen.BINDINGS,
                    Binding("enter", "open", "Open the invoice"),
                    Binding("pagedown", "more", "Next rows (pages load as you go)"),
                ),
            ),
            ("Review queue", keys(*QueueScreen.BINDINGS)),
            ("Filter bar", keys(Binding("tab", "next", "Next filter"), *FilterBar.BINDINGS)),
            ("Finder", keys(*FinderScreen.BINDINGS)),
            ("Invoice detail", keys(*InvoiceDetailScreen.BINDINGS)),
            ("Dialogs", keys(*dialogs)),
            ("Customer classes", keys(*ClassesScreen.BINDINGS)),
            ("Email problems (F7)", keys(*OutboxModal.BINDINGS)),
        ]

    # -- what changed (screens refresh only those rows) -----------------------------
    def note_changed(self, ids) -> None:
        self.change_seq += 1
        self._changes.append((self.change_seq, frozenset(ids)))
        del self._changes[:-CHANGE_LOG]

    def changes_since(self, seq: int) -> set[int]:
        out: set[int] = set()
        for s, ids in self._changes:
            if s > seq:
                out |= ids
        return out

    # -- notifications: invoices newly waiting for review; rows changed elsewhere ----
    @work(thread=True, exclusive=True, group="poll")
    def poll_waiting(self) -> None:
        """Every ~30 s: toast when invoices newly wait for review, and refresh
        rows changed by someone else (another admin, the job loop)."""
        from peewee import fn

        from . import mail
        from . import statuses as S
        from .store.models import AuditEvent, Invoice, tuple_rows

        with db_session():
            try:
                counts = mail.counts()
                stalled, reason = mail.stalled_summary(self.ctx.clock.now())
                problems = counts[mail.FAILED] + counts[mail.UNCERTAIN] + stalled
                if problems and problems > (self._mail_problems or 0):
                    words = f"{counts[mail.FAILED]:,} failed, {counts[mail.UNCERTAIN]:,} uncertain"
                    if stalled:
                        words += f", {stalled:,} waiting ({reason[:80]})"
                    post(
                        self,
                        self.notify,
                        words + ": F7 shows them with the reason",
                        title="Email needs attention",
                        severity="warning",
                        timeout=15,
                    )
                self._mail_problems = problems
                top = (
                    Invoice.select(fn.MAX(Invoice.id)).scalar() or 0,
                    AuditEvent.select(fn.MAX(AuditEvent.id)).scalar() or 0,
                )
                base = self._waiting_baseline
                if base is None:
                    self._waiting_baseline = top
                    return
                new = Invoice.select().where((Invoice.id > base[0]) & (Invoice.status == S.UNDER_REVIEW)).count()
                events = (
                    AuditEvent.select(AuditEvent.invoice, AuditEvent.before_status, AuditEvent.after_status)
                    .where((AuditEvent.id > base[1]) & (AuditEvent.id <= top[1]) & AuditEvent.invoice.is_null(False))
                    .order_by(AuditEvent.id)
                    .limit(CHANGE_LOG * 10)
                    .tuples()
                )
                changed, back = set(), 0
                for invoice_id, before, after in tuple_rows(events):
                    changed.add(invoice_id)
                    if after == S.UNDER_REVIEW and before != S.UNDER_REVIEW and invoice_id <= base[0]:
                        back += 1
            except Exception:
                return
        self._waiting_baseline = top
        if changed:
            post(self, self.changed_elsewhere, changed)
        if new + back:
            words = f"{new + back:,} invoice{'s' if new + back != 1 else ''} newly wait for review"
            post(self, self.notify, f"{words} (F2 queue, F5 refresh)", title="Review queue", timeout=10)

    def changed_elsewhere(self, ids: set[int]) -> None:
        """Screens refresh those of their rows now (the active one) or when shown again."""
        self.note_changed(ids)
        sync = getattr(self.screen, "sync_changes", None)
        if sync is not None:
            sync()

    # -- the job loops of the store, and the one inside the console ----------------------
    @work(thread=True, exclusive=True, group="jobs-status")
    def check_jobs(self) -> None:
        """Which job loops are alive on the store (one query); the header says it,
        and in auto mode the console starts its own loop when none is."""
        try:
            from .jobs.status import loop_status
        except ImportError:  # pragma: no cover - a build without the jobs package
            return
        with db_session():
            try:
                status = loop_status()
            except Exception:  # the store is busy or gone: keep the last words
                return
        post(self, self._jobs_checked, status)

    def _jobs_checked(self, status) -> None:
        self.loop_status = status
        if (
            self.jobs_mode == "auto"
            and not status.running
            and not self._jobs_active
            and not self._jobs_failed
            and not self.stop_jobs.is_set()
        ):
            self.start_jobs()
        words = status.words(here="this console")
        if not status.running and self._jobs_active and not self.stop_jobs.is_set():
            words = "jobs: this console, starting"  # started, not yet holding the store
        if words != self.jobs_words:
            self.jobs_words = words
            self.mutate_reactive(App.sub_title)  # every screen's header

    def start_jobs(self) -> None:
        try:
            from .jobs import run_loop
        except ImportError:
            self.notify(
                "The job loop (tui_billing.jobs) is not available in this build; "
                "run `tui-billing jobs run` beside the console.",
                title="--jobs",
                severity="warning",
                timeout=15,
            )
            return
        self._jobs_active = True
        if self.jobs_mode == "auto":
            self.notify(
                "Job loop started in the console: no other loop runs on this store "
                "(tui-billing --no-jobs does not start it).",
                title="Jobs",
            )
        else:
            self.notify("Job loop started in the console.", title="--jobs")
        self._jobs_worker(run_loop, wait=self.jobs_mode == "on")

    @work(thread=True, group="jobs")
    def _jobs_worker(self, run_loop, wait: bool = True) -> None:
        from .jobs import LoopBusy

        with db_session():
            try:
                run_loop(
                    self.env, self.stop_jobs, wait=wait, log=self._job_line, on_pass=lambda: post(self, self.check_jobs)
                )
            except LoopBusy:  # auto: another loop took the store first; the header names it
                pass
            except Exception as exc:
                self._jobs_failed = True
                post(
                    self,
                    self.notify,
                    f"The job loop stopped: {error_text(exc)}",
                    title="Jobs",
                    severity="error",
                    timeout=30,
                )
            finally:
                self._jobs_active = False
        post(self, self.check_jobs)

    def _job_line(self, line: str) -> None:
        """A line of the job loop's log (from its thread): kept for F8; errors become toasts."""
        self.job_lines.append(line)
        if "action=error" in line:
            post(self, self.notify, line, title="Job loop", severity="error", timeout=15)
        elif "job=loop action=started" in line:
            post(self, self.check_jobs)  # the header: "jobs: this console"

    def mail_destination(self) -> str | None:
        """Where the mail of this console's own loop goes: "maildir /path", "smtp host:port"."""
        from . import mail

        try:
            return mail.transport_from_config(self.env.config.mail).describe()
        except ConfigError:
            return None

    def action_audit(self) -> None:
        from .screens.audit_screen import AuditModal

        if not isinstance(self.screen, AuditModal):
            self.push_screen(AuditModal())

    def action_outbox(self) -> None:
        from .screens.outbox import OutboxModal

        if not isinstance(self.screen, OutboxModal):
            self.push_screen(OutboxModal())

    def action_job_log(self) -> None:
        from .screens.job_log import JobLogModal

        store = f"The store: {self.jobs_words or 'not checked yet'}."
        if self.job_lines:
            lines = list(self.job_lines)
        elif self.jobs_mode == "off":
            lines = ['This console does not run the job loop (--no-jobs, or [jobs] console = "off").', store]
        elif not self._jobs_active:
            lines = ["This console runs no job loop: it starts one when no other loop is alive on the store.", store]
        else:
            lines = ["Nothing logged yet by the job loop of this console.", store]
        self.push_screen(JobLogModal("Job loop log (latest last)", lines))

    async def action_quit(self) -> None:
        self.stop_jobs.set()
        self.exit()

    def on_unmount(self) -> None:
        self.stop_jobs.set()
        self.idle.stop()


def _finder():  # screens other than the first are imported when first shown
    from .screens.finder import FinderScreen

    return FinderScreen


def _classes():
    from .screens.classes_screen import ClassesScreen

    return ClassesScreen


def load_keymap(env) -> dict[str, str]:
    """`[keys]` of the config file: binding id -> key(s), e.g. "list.approve" = "ctrl+a".
    Read and checked with the rest of the configuration (config_file.load), not here."""
    return dict(getattr(getattr(env, "config", None), "keys", None) or {})


def run(env, jobs: bool | str = "auto") -> int:
    """The console; jobs: "auto" (run the job loop when no other one is alive), "on", "off"."""
    app = BillingApp(env, jobs=jobs, keymap=load_keymap(env))
    try:
        app.run()
    finally:
        app.stop_jobs.set()
    return app.return_code or 0
