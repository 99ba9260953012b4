"""What the review queue and the finder share: the filter bar, counts per
status, a keyset-paged invoice table with marks, and the invoice actions.

Nothing is loaded in the UI thread: the first page (and the counts) of a
filter and every next page come from thread workers; pages are appended as
the cursor nears the last loaded row, so only the pages looked at are ever
in memory.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Header, Static

from .. import statuses as S
from ..console_state import InvoiceListRow, Pager, Targets
from ..text import shown
from ..widgets.filter_bar import FilterBar
from ..widgets.footer import Footer
from ..widgets.invoice_table import NEAR_END, InvoiceTable
from ..widgets.progress_panel import ProgressPanel
from ..widgets.status_counts import StatusCounts
from .actions import InvoiceActions
from .support import db_session, error_text, post

PAGE = 50
SORT_WORDS = {
    "issue_date": "issue date",
    "number": "number",
    "total": "total",
    "deadline": "review deadline",
    "risk": "risk, then deadline",
}


class InvoiceListScreen(InvoiceActions, Screen):
    STATUSES: list[str] = list(S.INVOICE_STATUSES)  # the status select's options
    BASE_STATUSES: tuple[str, ...] = ()  # applied when the status select is blank
    COLUMNS: list = []
    SORT = "issue_date"
    DESCENDING: bool | None = None
    STATUS_PROMPT = "Any status"
    NOTHING = "No invoice at all in this store."  # the note when no filter is set and nothing is listed

    BINDINGS = [
        Binding("slash", "focus_filter", "Filter", id="list.filter"),
        Binding("a", "approve", "Approve", id="list.approve"),
        Binding("j", "adjust", "Adjust", id="list.adjust"),
        Binding("r", "reissue", "Reissue", id="list.reissue"),
        Binding(
            "d",
            "download",
            "PDFs",
            id="list.download",
            tooltip="Download PDFs (to a directory, or merged into one file)",
        ),
        Binding("p", "pdf_text", "PDF", id="list.pdf", show=False),
        Binding("m", "mark_page", "Mark page", id="list.mark_page", show=False),
        Binding("M", "mark_matching", "Mark all matching", id="list.mark_all", show=False),
        Binding("u", "unmark", "Unmark all", id="list.unmark", show=False),
        Binding("f", "toggle_flagged", "Flagged", id="list.flagged", tooltip="Flagged invoices only (again: all)"),
        Binding("f5", "reload", "Refresh", id="list.refresh", show=False),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sort = self.SORT
        self.descending = self.DESCENDING
        self.filters = None  # queries.Filters of the rows shown (set by the worker)
        self.generation = 0
        self.pager: Pager | None = None  # used by one worker at a time
        self.has_more = False  # rows beyond those shown (fetched ahead or not yet)
        # One page is fetched ahead, in a worker, as soon as the last arrived:
        # when the cursor nears the end it is appended at once (no wait on the store).
        self.ahead: tuple[list, bool, int] | None = None  # (rows, more after them, app.change_seq when read)
        self.fetching = False  # a page is being fetched
        self.wanted = False  # the cursor asked for rows while they were being fetched
        self.seen_changes = 0
        self.flagged = False  # "flagged only": invoices with a risk flag (Filters.flagged)
        self.raw: dict = {}  # the filter bar's values of the rows being loaded / shown

    # -- layout -------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield FilterBar(self.STATUSES, status_prompt=self.STATUS_PROMPT, payments=not self.QUEUE, id="filters")
        yield StatusCounts(self.STATUSES, id="counts")
        yield InvoiceTable(self.COLUMNS, self.app.ctx.clock, queue=self.QUEUE, id="invoices")
        yield Static("", id="no-match")  # instead of an empty table: which filter matches nothing
        yield ProgressPanel(id="progress")
        yield Footer(compact=True, show_command_palette=False)

    QUEUE = False

    @property
    def table(self) -> InvoiceTable:
        return self.query_one("#invoices", InvoiceTable)

    @property
    def counts(self) -> StatusCounts:
        return self.query_one("#counts", StatusCounts)

    def on_mount(self) -> None:
        self.seen_changes = self.app.change_seq
        self.counts.set_sort(self.sort_words())
        self._load_classes()
        if self.is_current:
            self.reload()
        # else built in the background (BillingApp.prepare_finder): loaded when first shown
        self.table.focus()
        self.set_interval(60, self.table.tick)

    def sort_words(self) -> str:
        desc = self.descending
        if desc is None:
            from ..store.queries import SORTS

            desc = SORTS[self.sort][1]
        words = f"by {SORT_WORDS[self.sort]} {'▼' if desc else '▲'}"
        return words + (" · flagged only" if self.flagged else "")

    def action_toggle_flagged(self) -> None:
        """Only invoices with a risk flag, or all again."""
        self.flagged = not self.flagged
        self.counts.set_sort(self.sort_words())
        self.reload()

    # -- loading ------------------------------------------------------------------------
    def reload(self, raw: dict | None = None) -> None:
        raw = dict(raw if raw is not None else self.query_one(FilterBar).values(), flagged=self.flagged)
        self.raw = raw
        self.generation += 1
        # The old pager is done with: nothing may be fetched from it any more.
        self.pager, self.has_more = None, False
        self.ahead, self.fetching, self.wanted = None, False, False
        self._load_first(self.generation, raw, self.sort, self.descending)

    def action_reload(self) -> None:
        self.reload()

    @work(thread=True, exclusive=True, group="first")
    def _load_first(self, generation: int, raw: dict, sort: str, descending: bool | None) -> None:
        from ..store import queries

        with db_session():
            try:
                status = raw.get("status") or (list(self.BASE_STATUSES) or None)
                filters = queries.make_filters(
                    status=status,
                    account_type=raw.get("account_type"),
                    customer=raw.get("customer"),
                    customer_class=raw.get("customer_class"),
                    number=raw.get("number"),
                    date_from=raw.get("date_from"),
                    date_to=raw.get("date_to"),
                    flagged=bool(raw.get("flagged")),
                    payment_status=raw.get("payment_status"),
                )
            except queries.FilterError as exc:
                post(self.app, self._filter_error, generation, exc.field, exc.reason)
                return
            try:
                pager = Pager(filters, sort, descending, PAGE)
                rows = pager.next_page()
            except Exception as exc:
                post(self.app, self.notify, error_text(exc), title="Loading invoices", severity="error")
                return
            post(self.app, self._show_first, generation, filters, rows, pager)
            try:
                counts = queries.counts_by_status(filters)
                held = self.count_notes()
            except Exception as exc:
                post(self.app, self.notify, error_text(exc), title="Counting invoices", severity="error")
                return
            post(self.app, self._show_counts, generation, filters, counts, held)

    def _filter_error(self, generation: int, field: str, reason: str) -> None:
        if generation == self.generation:
            self.query_one(FilterBar).show_error(field, reason)

    def _show_first(self, generation: int, filters, rows: list[InvoiceListRow], pager: Pager) -> None:
        if generation != self.generation:
            return
        self.query_one(FilterBar).show_error(None, None)
        if filters != self.filters:
            self.table.selection.clear()
        self.filters = filters
        self.pager = pager
        self.has_more = pager.has_more  # (ahead/fetching/wanted were reset by reload())
        self.table.set_rows(rows)
        self._paint_empty()
        self._paint_marked()
        self._fetch_ahead()
        self.post_message(InvoiceTable.NearEnd())  # short page: more at once if the cursor is near the end
        if generation == 1:
            self.call_after_refresh(self.app.first_page_shown)

    # -- nothing matches: a line that says so (and which filter), not an empty table
    def _paint_empty(self) -> None:
        empty = not self.table.row_count and not self.has_more
        if empty:
            self.query_one("#no-match", Static).update(self.no_match_words())
        self.set_class(empty, "-no-match")

    def no_match_words(self) -> Text:
        raw = self.raw
        parts = []
        if raw.get("status"):
            parts.append(f"status {S.label(S.INVOICE_STATUSES, raw['status'])}")
        if raw.get("account_type"):
            parts.append(f"account type {S.label(S.ACCOUNT_TYPES, raw['account_type'])}")
        if raw.get("customer_class"):
            parts.append(f"class {shown(raw['customer_class'])}")
        if raw.get("payment_status"):
            parts.append(f"a payment {S.label(S.PAYMENT_STATUSES, raw['payment_status']).lower()}")
        for key, words in (("customer", "customer"), ("number", "number")):
            if raw.get(key):
                parts.append(f"{words} “{shown(raw[key])}”")
        if raw.get("date_from") or raw.get("date_to"):
            parts.append(f"issued {shown(raw.get('date_from') or '…')} to {shown(raw.get('date_to') or '…')}")
        if raw.get("flagged"):
            parts.append("flagged only")
        if not parts:
            return Text(self.NOTHING, style="bold")
        text = Text("No invoice matches ", style="bold")
        text.append(" · ".join(parts))
        text.append(
            ".  / changes the filter" + (", f shows unflagged ones too." if raw.get("flagged") else "."), style="dim"
        )
        return text

    def count_notes(self) -> dict[str, int] | None:
        """In a worker: what the counts line says besides the statuses (the queue:
        invoices held for a person, overdue ones); None: nothing here."""
        return None

    def _show_counts(self, generation: int, filters, counts: dict, held: dict[str, int] | None = None) -> None:
        if generation != self.generation:
            return
        self.counts.set_counts(counts, filters.statuses, held)
        self._paint_marked()

    def on_invoice_table_near_end(self, message: InvoiceTable.NearEnd) -> None:
        message.stop()
        table = self.table
        if not self.has_more or self.pager is None:
            return
        if table.row_count and table.cursor_row < table.row_count - NEAR_END:
            return
        if self.ahead is not None:
            rows, more, seq = self.ahead
            self.ahead = None
            self._show_more(self.generation, rows, more, seq)
        else:
            self.wanted = True
            self._fetch_ahead()

    def _fetch_ahead(self) -> None:
        if self.has_more and self.pager is not None and self.ahead is None and not self.fetching:
            self.fetching = True
            self._load_more(self.generation, self.pager, self.app.change_seq)

    @work(thread=True, exclusive=True, group="more")
    def _load_more(self, generation: int, pager: Pager, seq: int) -> None:
        with db_session():
            try:
                rows = pager.next_page()
            except Exception as exc:
                post(self.app, self.notify, error_text(exc), title="Loading invoices", severity="error")
                post(self.app, self._arrived, generation, pager, None, True, seq)
                return
        post(self.app, self._arrived, generation, pager, rows, pager.has_more, seq)

    def _arrived(self, generation: int, pager: Pager, rows: list[InvoiceListRow] | None, more: bool, seq: int) -> None:
        if generation != self.generation or pager is not self.pager:
            return  # fetched for a filter no longer shown
        self.fetching = False
        if rows is None:  # failed: asked again when the cursor next nears the end
            self.wanted = False
            return
        if self.wanted:
            self.wanted = False
            self._show_more(generation, rows, more, seq)
        else:
            self.ahead = (rows, more, seq)

    def _show_more(self, generation: int, rows: list[InvoiceListRow], more: bool, seq: int | None = None) -> None:
        if generation != self.generation:
            return
        self.has_more = more
        self.table.append_rows(rows)
        self._paint_empty()
        if seq is not None:  # read a while ago: rows changed since (here or elsewhere) are read again
            stale = self.app.changes_since(seq) & {r.id for r in rows}
            if stale:
                self.refresh_invoices(stale)
        self._fetch_ahead()

    def _reload_counts(self) -> None:
        if self.filters is not None:
            self._counts_only(self.generation, self.filters)

    @work(thread=True, exclusive=True, group="counts")
    def _counts_only(self, generation: int, filters) -> None:
        from ..store import queries

        with db_session():
            try:
                counts = queries.counts_by_status(filters)
                held = self.count_notes()
            except Exception:
                return
        post(self.app, self._show_counts, generation, filters, counts, held)

    @work(thread=True, exclusive=True, group="classes")
    def _load_classes(self) -> None:
        from ..store.models import CustomerClass, tuple_rows

        with db_session():
            try:
                names = [
                    n
                    for (n,) in tuple_rows(
                        CustomerClass.select(CustomerClass.name).order_by(CustomerClass.name).tuples()
                    )
                ]
            except Exception:
                return
        post(self.app, self._set_classes, names)

    def _set_classes(self, names: list[str]) -> None:  # on the UI thread: the widget tree is read here
        self.query_one(FilterBar).set_class_choices(names)

    # -- filter bar -----------------------------------------------------------------------
    def on_filter_bar_changed(self, message: FilterBar.Changed) -> None:
        self.reload(message.raw)
        if message.submitted:
            self.table.focus()

    def on_filter_bar_done(self, message: FilterBar.Done) -> None:
        self.table.focus()

    def action_focus_filter(self) -> None:
        self.query_one(FilterBar).focus_first()

    # -- marks ------------------------------------------------------------------------------
    def _paint_marked(self) -> None:
        sel = self.table.selection
        if sel.all_matching:
            n = sel.count(self.counts.matching())
            words = f"all {n:,} matching marked" if n is not None else "all matching marked"
        elif sel.ids:
            words = f"{len(sel.ids):,} marked"
        else:
            words = ""
        self.counts.set_marked(words)

    def on_invoice_table_marks_changed(self, message: InvoiceTable.MarksChanged) -> None:
        self._paint_marked()

    def action_mark_page(self) -> None:
        self.table.mark_loaded()

    def action_mark_matching(self) -> None:
        if self.filters is None:
            return
        self.table.selection.mark_all_matching(self.filters)
        self.table.repaint_marks()

    def action_unmark(self) -> None:
        self.table.selection.clear()
        self.table.repaint_marks()

    # -- InvoiceActions --------------------------------------------------------------------------
    def action_targets(self) -> Targets | None:
        sel = self.table.selection
        if sel:
            return sel.snapshot()
        invoice_id = self.current_invoice_id()
        return Targets.one(invoice_id) if invoice_id is not None else None

    def current_invoice_id(self) -> int | None:
        row = self.table.current_row()
        return row.id if row else None

    def loaded_ids(self) -> set[int]:
        return set(self.table.loaded_ids())

    def keeps(self, row: InvoiceListRow) -> bool:
        statuses = self.filters.statuses if self.filters is not None else ()
        flagged = self.filters is not None and self.filters.flagged
        return (not statuses or row.status in statuses) and (not flagged or row.flagged)

    def after_change(self, ids: list[int], fresh: dict) -> None:
        self.table.refresh_rows(fresh, self.keeps)
        self._paint_empty()
        self.seen_changes = self.app.change_seq
        self._paint_marked()
        self._reload_counts()

    def on_screen_resume(self) -> None:
        if not self.is_current:
            return  # built in the background, not shown yet
        if not self.generation:
            self.reload()  # first shown: its first page as of now, not as of when it was built
        else:
            self.sync_changes()

    def sync_changes(self) -> None:
        """Refresh the loaded rows that changed since this screen last looked."""
        changed = self.app.changes_since(self.seen_changes)
        self.seen_changes = self.app.change_seq
        if changed:
            self.refresh_invoices(changed)
            self._reload_counts()

    # -- open ------------------------------------------------------------------------------------------
    def on_data_table_row_selected(self, event) -> None:
        event.stop()
        row = self.table.items.get(event.row_key.value)
        if row is not None:
            self.app.open_invoice(row.id)
