"""One invoice: the header group of seed 001 (with the expected total) beside
a chart of the account's recent totals, its risk flags in full with the money
at stake, and its tables in tabs (Charges, Subscriptions, Payments,
Corrections, Taxes — only when it has taxes —, Changes since the revision
last reviewed, and Audit), with approve / adjust / reissue / download / PDF
text / mark reviewed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, Static, TabbedContent, TabPane

from .. import payments, workflow
from .. import statuses as S
from ..console_state import Targets
from ..money import ZERO, format_amount, format_money
from ..present import Cell, approvals_words, detail_tables, issue_date_words, signed_amount, status_text
from ..text import shown
from ..widgets.fit_table import Col, FitTable, plain_of
from ..widgets.fmt import (
    FLAGGED_STYLE,
    HELD,
    STATUS_STYLES,
    hold_ran_out,
    local_time,
    plural,
    reissue_when,
    text_cell,
    time_left,
)
from ..widgets.footer import Footer
from ..widgets.history_chart import HistoryChart, Series
from ..widgets.progress_panel import ProgressPanel
from .actions import InvoiceActions
from .support import db_session, error_text, post

if TYPE_CHECKING:
    from ..store.detail import InvoiceDetail

LABEL = 16  # label column width in the header group
VALUE = 26  # left value width before the right-hand label
VALUE_NARROW = 24  # ... below CHART_WIDE columns, where the chart leaves the header 65
HEAD_FLAGS = 3  # flags the header shows; more go to the Flags tab
CHART_WIDE = 100  # from this width the chart's bars are 2 columns wide (3 from CHART_WIDER)
CHART_WIDER = 120

CHARGE_COLUMNS = [
    Col("pos", "#", 3, "right"),
    Col("description", "Description"),
    Col("quantity", "Quantity", 12, "right"),
    Col("discount", "Discount", 11, "right"),
    Col("amount", "Amount", 13, "right"),
]
SUBSCRIPTION_COLUMNS = [Col("id", "ID", 7, "right"), Col("name", "Name"), Col("status", "Status", 26)]
# ID, Status and Amount as wide as their longest cell (80 columns: the
# payment's description keeps room to be read).
PAYMENT_COLUMNS = [
    Col("id", "ID", 3, "right", max_width=10),
    Col("description", "Description"),
    Col("created", "Created at", 10),
    Col("due", "Due date", 10),
    Col("status", "Status", 6, max_width=19),
    Col("amount", "Amount", 8, "right", max_width=20),
]
CORRECTION_COLUMNS = [
    Col("pos", "#", 3, "right"),
    Col("description", "Description"),
    Col("debt", "Current Debt Changed", 20, "right"),
    Col("approved", "Approved at", 16),
]
TAX_COLUMNS = [
    Col("pos", "#", 3, "right"),
    Col("name", "Name", 22),
    Col("description", "Description"),
    Col("amount", "Amount", 13, "right"),
]
CHANGE_COLUMNS = [
    Col("change", "Change", 16),
    Col("line", "Line"),
    Col("before", "Before", 11, "right", wide_width=14),
    Col("after", "After", 11, "right", wide_width=14),
    Col("delta", "Delta", 11, "right", wide_width=14),
]
TOTAL_LABELS = {
    "subtotal": "Subtotal",
    "discount_total": "Discounts",
    "tax_total": "Taxes",
    "correction_total": "Corrections",
    "total": "Total",
}
NO_CHANGES = "No changes since the revision last reviewed."
# Eight tabs with their counts need about 87 columns: narrower, these two
# titles are shortened so that every tab (Flags, Audit) stays in sight.
SHORT_TITLES = {"tab-subscriptions": ("Subscriptions", "Subs."), "tab-corrections": ("Corrections", "Corr.")}
TAB_PADDING = 2  # a Tab's left and right padding
VIEW_COLUMNS = {
    "charges": CHARGE_COLUMNS,
    "subscriptions": SUBSCRIPTION_COLUMNS,
    "payments": PAYMENT_COLUMNS,
    "corrections": CORRECTION_COLUMNS,
    "taxes": TAX_COLUMNS,
}
AUDIT_COLUMNS = [Col("at", "When", 16), Col("actor", "Who", 12), Col("action", "What", 15), Col("change", "Change")]


class DetailTable(FitTable):
    """A read-only table of one invoice's lines (cells prepared by the screen)."""

    def __init__(self, columns, rows: list[dict], **kwargs):
        super().__init__(columns, **kwargs)
        for i, row in enumerate(rows):
            self.items[str(i)] = row
            self.order.append(str(i))
        self._grew(rows)  # columns with a max_width fit their longest cell

    def render_cells(self, item: dict, cols, wide: bool) -> list:
        return [item.get(c.key, "") for c in cols]

    def measure(self, item: dict) -> dict[str, int]:
        return {c.key: cell_len(plain_of(item.get(c.key, ""))) for c in self.specs if c.max_width}


def _r(text: str) -> Text:
    return Text(text, justify="right")


TONES = {"down": "red", "up": "green"}


def _cell(cell: Cell) -> Text:
    if cell.right:
        return Text(cell.text, justify="right", style=TONES.get(cell.tone, ""))
    return _t(cell.text)


def _t(text: str) -> Text:
    """Stored text (descriptions, names): escaped, never markup (fmt.text_cell),
    cut with an ellipsis when the column is narrow."""
    return text_cell(text, no_wrap=True, overflow="ellipsis")


def change_name(change) -> str:
    """A changed line's name: its description, with its service when the
    description does not start with it (the words `show` prints too)."""
    if not change.service or change.description.startswith(change.service):
        return change.description
    return f"{change.description} [{change.service}]"


def flags_title(n: int) -> str:
    """The Flags tab's title says what its number counts: "3 flags" (the checks that raised one)."""
    return plural(n, "flag")


class InvoiceDetailScreen(InvoiceActions, Screen):
    BINDINGS = [
        Binding("escape", "back", "Back", id="detail.back"),
        Binding("a", "approve", "Approve", id="detail.approve"),
        Binding("j", "adjust", "Adjust", id="detail.adjust"),
        Binding("r", "reissue", "Reissue", id="detail.reissue"),
        Binding("d", "download", "Download", id="detail.download"),
        Binding("p", "pdf_text", "PDF", id="detail.pdf"),
        Binding("n", "next_tab", "Next tab", id="detail.next_tab"),
        Binding(
            "v",
            "mark_reviewed",
            "Mark revision reviewed (the next Changes start here)",
            id="detail.reviewed",
            show=False,
        ),
        Binding("f5", "reload", "Refresh", id="detail.refresh", show=False),
        # Payments tab (seed 001: a payment that needs a manual receipt): shown there only, and
        # only the step the highlighted payment can take (80 columns: short words, the tooltip says it all).
        Binding(
            "c",
            "receipt('receipt_creating')",
            "Receipt",
            id="detail.receipt_creating",
            tooltip="Receipt creating: start the manual receipt of the highlighted completed payment",
        ),
        Binding(
            "e",
            "receipt('receipt_sent')",
            "Receipt sent",
            id="detail.receipt_sent",
            tooltip="Receipt sent: the manual receipt of the highlighted payment went to the customer",
        ),
    ]
    ROLE_ACTIONS = {**InvoiceActions.ROLE_ACTIONS, "receipt": "payments"}

    def __init__(self, ref: int | str):
        super().__init__()
        self.ref = ref
        # None until the first load has been shown (_show); what reads it runs after that.
        self.detail: InvoiceDetail = None  # type: ignore[assignment]
        self.erp = False
        self.reporting = "EUR"  # store setting reporting_currency: risk_at_stake is in it
        self.holds_flagged = True  # store setting auto_approve_flagged is off
        self.seen_changes = 0
        self.tab_titles: dict[str, str] = {}  # pane id -> full title, as last built
        self.approvals: str | None = None  # present.approvals_words, when two are needed
        self.needs_two = False  # four-eyes: the job loop holds it at the end of its hold

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="detail-top"):
            yield Static("loading…", id="detail-head")
            yield HistoryChart(id="detail-chart")
        yield Static("", id="detail-flags")
        yield Container(id="detail-body")
        yield ProgressPanel(id="progress")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.title = "Invoice"
        self.seen_changes = self.app.change_seq
        self.action_reload()

    def on_screen_resume(self) -> None:
        self.sync_changes()

    def sync_changes(self) -> None:
        changed = self.app.changes_since(self.seen_changes)
        self.seen_changes = self.app.change_seq
        if self.detail is not None and self.detail.invoice.id in changed:
            self.action_reload()

    def action_reload(self) -> None:
        self._load(self.ref)

    @work(thread=True, exclusive=True, group="detail")
    def _load(self, ref) -> None:
        from ..store.detail import load_detail
        from ..store.settings import load_settings

        with db_session():
            try:
                detail = load_detail(ref)
                settings = load_settings()
                rules = workflow.four_eyes_rules(settings)
            except Exception as exc:
                post(self.app, self._failed, error_text(exc))
                return
        inv = detail.invoice
        self.approvals = approvals_words(inv, self.app.ctx.clock, rules)  # four-eyes: "1 of 2 approvals: …"
        self.needs_two = inv.status == S.UNDER_REVIEW and rules.needs_two(inv.total, inv.currency)
        post(
            self.app,
            self._show,
            detail,
            settings.erp_integration,
            settings["reporting_currency"],
            not settings.auto_approve_flagged,
        )

    def _failed(self, reason: str) -> None:
        self.query_one("#detail-head", Static).update(text_cell(f"✗ {reason}", style="bold red"))

    async def _show(self, detail, erp: bool, reporting: str, holds_flagged: bool) -> None:
        self.detail = detail
        self.erp = erp
        self.reporting = reporting
        self.holds_flagged = holds_flagged
        inv = detail.invoice
        self.ref = inv.id
        self.title = f"Invoice {shown(inv.number)}"
        self.paint_head()
        self.query_one("#detail-flags", Static).update(self.flags_view())
        body = self.query_one("#detail-body", Container)
        active = None
        for tabs in body.query(TabbedContent):
            active = tabs.active
        panes = self.panes()
        ids = [p.id for p in panes]
        self.tab_titles = {}  # a resize while the tabs are rebuilt has nothing to fit
        await body.remove_children()
        tabs = TabbedContent(id="detail-tabs", initial=active if active and active in ids else "")
        for pane in panes:
            tabs.compose_add_child(pane)
        await body.mount(tabs)
        self.tab_titles = {pane.id: tabs.get_tab(pane).label.plain for pane in panes if pane.id}
        self.fit_tab_titles()

    def on_resize(self) -> None:
        self.fit_tab_titles()
        if self.detail is not None:
            self.paint_head()

    def paint_head(self) -> None:
        """The header group and, beside it, the chart of the account's recent invoices."""
        head = self.head_text()
        self.query_one("#detail-head", Static).update(head)
        chart = self.query_one("#detail-chart", HistoryChart)
        points = len(self.detail.history)
        chart.display = points > 1  # a first invoice (or not a regular one): nothing to compare with
        if chart.display:
            width = self.size.width
            per = 1 if width < CHART_WIDE else 2 if width < CHART_WIDER else 3
            chart.styles.width = 1 + per * points
            chart.show(self.chart_series(), len(head.plain.splitlines()), self.detail.flagged)

    def chart_series(self) -> list[Series]:
        d = self.detail
        points = d.history
        current = next((i for i, p in enumerate(points) if p.invoice_id == d.invoice.id), len(points) - 1)
        totals = f"Last {len(points)} totals" if self.size.width >= CHART_WIDE else "Totals"
        series = [Series(totals, tuple(p.total for p in points), current)]
        if d.history_service:
            series.append(
                Series(
                    shown(d.history_service),
                    tuple(p.service if p.service is not None else ZERO for p in points),
                    current,
                )
            )
        return series

    def fit_tab_titles(self) -> None:
        titles = self.tab_titles
        narrow = sum(len(t) + TAB_PADDING for t in titles.values()) > self.size.width
        for tabs in self.query(TabbedContent):
            for pane_id, title in titles.items():
                if narrow and pane_id in SHORT_TITLES:
                    title = title.replace(*SHORT_TITLES[pane_id], 1)
                tab = tabs.get_tab(pane_id)
                if tab.label.plain != title:
                    tab.label = title

    # -- header group ---------------------------------------------------------------
    def head_text(self) -> Text:
        d, clock = self.detail, self.app.ctx.clock
        inv = d.invoice
        cur = inv.currency
        narrow = self.size.width < CHART_WIDE
        value_width = VALUE_NARROW if narrow else VALUE
        text = Text(no_wrap=True, overflow="ellipsis")

        def pair(l1, v1, l2=None, v2=None):
            text.append(f"{l1:<{LABEL}}", style="bold")
            v1 = v1 if isinstance(v1, Text) else text_cell(v1)
            if l2 is None:
                text.append_text(v1)
            else:
                v1.truncate(value_width, overflow="ellipsis", pad=True)
                text.append_text(v1)
                text.append(f"{l2:<{LABEL - 1}}", style="bold")
                text.append_text(v2 if isinstance(v2, Text) else text_cell(v2))
            text.append("\n")

        pair("Invoice number", inv.number, "Revision", str(inv.revision))
        pair(
            "Account",
            f"{inv.account.name} ({inv.customer_class.name}, "
            f"{S.label(S.ACCOUNT_TYPES, inv.account.account_type).lower()})",
        )
        pair("Total", self.total_words())
        pair("Status", self.status_words(), "Payment model", S.label(S.PAYMENT_MODELS, inv.payment_model))
        if self.erp:
            ext = (
                format_money(inv.external_total, inv.external_currency or cur)
                if inv.external_total is not None
                else "—"
            )
            pair(
                "External total",
                ext,
                "Approval date",
                local_time(clock, inv.approved_at, "%Y-%m-%d" if narrow else "%Y-%m-%d %H:%M"),
            )
            if inv.erp_reference:  # confirmed by the ERP (erp import)
                pair("ERP reference", f"{inv.erp_reference}" + (f" of {inv.erp_date}" if inv.erp_date else ""))
        pair("From", inv.period_from.isoformat(), "To", inv.period_to.isoformat())
        pair("Issue date", issue_date_words(inv), "Due date", inv.due_date.isoformat() if inv.due_date else "—")
        pair("Review deadline", self.deadline_words(narrow))
        if self.approvals:
            pair("Approvals", self.approvals)
        text.rstrip()
        return text

    def total_words(self) -> Text:
        """'12,400.00 EUR · expected 4,010.00': the total and what the account's history predicts."""
        inv = self.detail.invoice
        text = Text(format_money(inv.total, inv.currency), style="bold")
        if inv.expected_total is not None:
            text.append(f" · expected {format_amount(inv.expected_total, inv.currency)}")
        return text

    def deadline_words(self, narrow: bool) -> str:
        """When the hold ends and what happens then (shorter below CHART_WIDE columns)."""
        d, clock = self.detail, self.app.ctx.clock
        inv = d.invoice
        if inv.status == S.REJECTED:  # never auto-approved: the reissue sets a fresh hold period
            words = f"none: reissue {reissue_when(clock, inv.reissue_mode, inv.reissue_after)}"
            return words if narrow else words + " (a fresh hold period starts then)"
        if inv.review_deadline is None or inv.status != S.UNDER_REVIEW:
            return "—"
        at = local_time(clock, inv.review_deadline)
        if d.held:
            return f"{at} (ran out: {HELD})"
        left = time_left(inv.review_deadline, clock.now())
        if not hold_ran_out(left):
            return f"{at} ({left} left)"
        if (d.flagged and self.holds_flagged) or self.needs_two:
            then = f"{HELD} on the next job pass"
        else:
            then = "approved on the next job pass"
        return f"{left}: {then}" if narrow else f"{at} ({left}: {then})"

    def flags_view(self) -> Table | Text:
        """Each risk flag's reason in full (wrapped), or "No flags"."""
        d = self.detail
        if not d.flags:
            text = Text(f"{'Flags':<{LABEL}}", style="bold")
            text.append("No flags", style="dim")
            return text
        listed = d.flags if len(d.flags) <= HEAD_FLAGS else d.flags[: HEAD_FLAGS - 1]
        grid = self._flag_grid(listed, "Flags", d.flagged, self.stake_words())
        if len(listed) < len(d.flags):  # the header stays small at 80x24; the tab has them all
            more = len(d.flags) - len(listed)
            tab = flags_title(len(d.flags))
            grid.add_row(Text(""), Text(f"… and {more} more: every flag in full on the “{tab}” tab", style="italic"))
        return grid

    def stake_words(self) -> Text:
        """A flagged invoice's summary: '8,390.00 EUR at stake if the flags are right · risk score 1160'
        (the money in the reporting currency; the score kept for whoever compares them)."""
        d = self.detail
        text = Text()
        at_stake = d.invoice.risk_at_stake
        if at_stake is not None:
            text.append(f"{format_money(at_stake, self.reporting)} at stake", style=FLAGGED_STYLE)
            text.append(" if the flags are right · ")
        text.append(f"risk score {d.risk_score}", style="dim")
        return text

    @staticmethod
    def _flag_grid(
        flags, title: str, flagged: bool, summary: Text | None = None, *, stakes: str | None = None
    ) -> Table:
        """One row per flag: its reason in full.  Flagged, `summary` comes first
        and the strong evidence is red; `stakes`: the currency to show each
        flag's money at stake in."""
        grid = Table.grid()
        grid.add_column(width=LABEL, no_wrap=True)
        grid.add_column(ratio=1)
        if flagged and summary is not None:
            grid.add_row(Text(title, style="bold"), summary)
        for flag in flags:
            label = Text(title if not grid.rows else "", style="bold")
            reason = Text("• ", style=FLAGGED_STYLE if flagged and flag.weight >= 40 else "yellow")
            reason.append(flag.short, style="bold")
            reason.append(f": {shown(flag.reason)}")
            at_stake = getattr(flag, "at_stake", None)
            if stakes and at_stake:
                reason.append(f" ({format_money(at_stake, stakes)} at stake)", style="dim")
            grid.add_row(label, reason)
        return grid

    def flags_pane(self) -> TabPane:
        d = self.detail
        grid = self._flag_grid(d.flags, "Flags", d.flagged, self.stake_words(), stakes=d.invoice.currency)
        return TabPane(
            flags_title(len(d.flags)), VerticalScroll(Static(grid, id="flags-full"), id="flags-scroll"), id="tab-flags"
        )

    def status_words(self) -> Text:
        inv = self.detail.invoice
        label = status_text(inv)
        text = Text()
        if inv.payment_model == "postpay":
            # Seed 001: a postpay invoice is Open while its period runs, then Closed.
            if inv.status == S.OPEN:
                return Text("Open", style=STATUS_STYLES[S.OPEN])
            text.append("Closed · ")
        text.append(label, style=STATUS_STYLES.get(inv.status, ""))
        return text  # a rejected one's reissue: on the Review deadline line

    # -- tabs -------------------------------------------------------------------------
    def panes(self) -> list[TabPane]:
        d, clock = self.detail, self.app.ctx.clock
        cur = d.invoice.currency
        panes = []
        # The cells are present.detail_tables': `show` prints the same ones.
        for view in detail_tables(d, clock):
            columns, tab = VIEW_COLUMNS[view.key], f"tab-{view.key}"
            if view.note is not None:
                panes.append(TabPane(view.title, Static(view.note, id=f"{view.key}-note", classes="note"), id=tab))
                continue
            rows = [{col.key: _cell(cell) for col, cell in zip(columns, row)} for row in view.rows]
            panes.append(
                TabPane(f"{view.title} {len(view.rows)}", DetailTable(columns, rows, id=f"{view.key}-table"), id=tab)
            )
        panes.append(self.changes_pane())
        panes.append(
            TabPane(
                "Audit",
                DetailTable(
                    AUDIT_COLUMNS,
                    [
                        {
                            "at": local_time(clock, a.at),
                            "actor": _t(a.actor),
                            "action": _t(a.action),
                            "change": _t(self.audit_change(a, cur)),
                        }
                        for a in d.audit
                    ],
                    id="audit-table",
                ),
                id="tab-audit",
            )
        )
        if d.flags:
            panes.append(self.flags_pane())
        return panes

    def changes_pane(self) -> TabPane:
        """What changed between the revision last reviewed and now: per line and in total."""
        diff, cur = self.detail.changes, self.detail.invoice.currency
        if diff is None:
            return TabPane("Changes", Static(NO_CHANGES, id="changes-note", classes="note"), id="tab-changes")

        def amount(state) -> Text:
            return _r(format_amount(state.net, cur) if state is not None else "—")

        def delta(value) -> Text:
            return Text(
                signed_amount(value, cur), justify="right", style="" if not value else ("red" if value < 0 else "green")
            )

        rows = []
        for section, items in (("", diff.charges), ("tax ", diff.taxes), ("correction ", diff.corrections)):
            for c in items:
                name = change_name(c)
                if c.fields:
                    name += f" ({', '.join(c.fields)})"
                rows.append(
                    {
                        "change": Text(section + c.change),
                        "line": _t(name),
                        "before": amount(c.before),
                        "after": amount(c.after),
                        "delta": delta(c.delta),
                    }
                )
        for key, label in TOTAL_LABELS.items():
            before, after = diff.totals.get(key, (None, None))
            if before is None or after is None or (before == after and key != "total"):
                continue
            style = "bold" if key == "total" else ""
            rows.append(
                {
                    "change": Text("total" if key == "total" else "", style=style),
                    "line": Text(label, style=style),
                    "before": Text(format_amount(before, cur), justify="right", style=style),
                    "after": Text(format_amount(after, cur), justify="right", style=style),
                    "delta": delta(after - before),
                }
            )
        n = len(diff.charges) + len(diff.taxes) + len(diff.corrections)
        head = Text(f"Revision {diff.from_revision} (last reviewed) → revision {diff.to_revision}: total ")
        head.append(f"{format_money(diff.total_before, cur)} → {format_money(diff.total_after, cur)}", style="bold")
        head.append(f" ({signed_amount(diff.total_delta, cur)})")
        return TabPane(
            f"Changes {n}",
            Static(head, id="changes-head"),
            DetailTable(CHANGE_COLUMNS, rows, id="changes-table"),
            id="tab-changes",
        )

    # -- manual receipts (Payments tab) --------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "receipt":
            pay = self._payment_highlighted()
            if pay is None:
                return False  # only on the Payments tab, with a payment to act on
            if self.role_allows(action) and payments.receipt_refusal(pay.status, str(parameters[0])):
                return False  # shown only where it applies; the key still says why not (on_key)
        return super().check_action(action, parameters)

    RECEIPT_KEYS = {"c": "receipt_creating", "e": "receipt_sent"}

    def on_key(self, event) -> None:
        super().on_key(event)  # the role's refusal (RoleGate)
        step = self.RECEIPT_KEYS.get(event.key)
        if step is None or not self.role_allows("receipt"):
            return
        pay = self._payment_highlighted()
        if pay is not None:
            refusal = payments.receipt_refusal(pay.status, step)
            if refusal:
                event.stop()
                self.notify(f"{payments.name_of(pay)} {refusal}", title="Receipt", severity="warning")

    def on_tabbed_content_tab_activated(self, _event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()  # the receipt keys come and go with the Payments tab

    def on_data_table_row_highlighted(self, _event) -> None:
        self.refresh_bindings()  # ... and with the payment highlighted

    def _payment_highlighted(self):
        """The payment under the cursor of the Payments tab, when that tab is the one shown."""
        if self.detail is None or not self.detail.closed:
            return None
        for tabs in self.query(TabbedContent):
            if tabs.active != "tab-payments":
                return None
        tables = self.query("#payments-table")
        if not tables:
            return None
        row = tables.first(DetailTable).cursor_row
        pays = self.detail.payments
        return pays[row] if 0 <= row < len(pays) else None

    def action_receipt(self, step: str) -> None:
        pay = self._payment_highlighted()
        if pay is not None:
            self._receipt(pay.id, step)

    @work(thread=True, exclusive=True, group="receipt")
    def _receipt(self, payment_id: int, step: str) -> None:
        with db_session():
            try:
                pay = payments.mark_receipt(self.app.ctx, payment_id, step)
            except Exception as exc:
                post(self.app, self.notify, error_text(exc), title="Receipt", severity="warning")
                return
        words = f"{payments.name_of(pay)}: {payments.label(pay.status).lower()}"
        post(self.app, self._receipt_done, pay.invoice_id, words)

    def _receipt_done(self, invoice_id: int, words: str) -> None:
        self.notify(words, title="Receipt")
        self.app.note_changed({invoice_id})
        self.seen_changes = self.app.change_seq
        self.action_reload()

    def action_mark_reviewed(self) -> None:
        if self.detail is None:
            return
        self._mark_reviewed(self.detail.invoice.id)

    @work(thread=True, exclusive=True, group="reviewed")
    def _mark_reviewed(self, invoice_id: int) -> None:
        from ..revisions import mark_reviewed

        with db_session():
            try:
                inv = mark_reviewed(self.app.ctx, invoice_id)
            except Exception as exc:
                post(self.app, self.notify, error_text(exc), title="Mark reviewed", severity="warning")
                return
        post(self.app, self._reviewed, invoice_id, inv.number, inv.revision)

    def _reviewed(self, invoice_id: int, number: str, revision: int) -> None:
        self.notify(f"{number}: revision {revision} marked reviewed; Changes start from it.", title="Mark reviewed")
        self.app.note_changed({invoice_id})
        self.seen_changes = self.app.change_seq
        self.action_reload()

    @staticmethod
    def audit_change(a, cur: str) -> str:
        parts = []
        if a.before_status != a.after_status and (a.before_status or a.after_status):
            parts.append(
                f"{S.label(S.INVOICE_STATUSES, a.before_status or '—')} → "
                f"{S.label(S.INVOICE_STATUSES, a.after_status or '—')}"
            )
        if a.before_total is not None and a.after_total is not None and a.before_total != a.after_total:
            parts.append(f"{format_amount(a.before_total, cur)} → {format_amount(a.after_total, cur)}")
        return " · ".join(parts) or "—"

    def action_next_tab(self) -> None:
        for tabs in self.query(TabbedContent):
            ids = [p.id for p in tabs.query(TabPane) if p.id]
            if ids:
                i = ids.index(tabs.active) if tabs.active in ids else -1
                tabs.active = ids[(i + 1) % len(ids)]

    def action_back(self) -> None:
        self.dismiss()

    # -- InvoiceActions -------------------------------------------------------------------
    def current_invoice_id(self) -> int | None:
        return self.detail.invoice.id if self.detail else None

    def action_targets(self) -> Targets | None:
        invoice_id = self.current_invoice_id()
        return Targets.one(invoice_id) if invoice_id is not None else None

    def loaded_ids(self) -> set[int]:
        invoice_id = self.current_invoice_id()
        return {invoice_id} if invoice_id is not None else set()

    def after_change(self, ids, fresh) -> None:
        self.seen_changes = self.app.change_seq
        self.action_reload()

    def refresh_invoices(self, ids) -> None:
        if set(ids) & self.loaded_ids():
            self.action_reload()
