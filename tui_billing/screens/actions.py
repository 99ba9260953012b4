"""Approve, adjust, reissue, download, PDF text: the flows every screen that
shows invoices shares.  Each flow resolves its targets and runs the domain
call in a thread worker; results come back with call_from_thread, progress
with messages, so the UI never waits on the store.

A screen using InvoiceActions implements:
  action_targets() -> Targets | None   what a bulk action applies to
  current_invoice_id() -> int | None   the invoice under the cursor
  loaded_ids() -> set[int]             rows it shows (to refresh after a change)
  after_change(ids, fresh)             repaint what changed
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.text import Text
from textual import work
from textual.message import Message

from .. import workflow
from ..console_state import Targets, fresh_rows
from ..money import format_money
from ..risk import compact
from ..text import shown
from ..widgets.fmt import plural, span, totals_line
from ..widgets.progress_panel import ProgressPanel
from .role_gate import RoleGate
from .support import db_session, error_text, post

VERBS = {  # verb -> (progress label, done words, title)
    "approve": ("Approving", "approved", "Approve"),
    "reissue": ("Reissuing", "reissued", "Reissue"),
    "download": ("Downloading", "downloaded", "Download"),
}
REFRESH_LIMIT = 5000  # loaded rows refreshed in place after an action
FLAGGED_SHOWN = 5  # flagged invoices listed in the approve question
ACCEPT_SHOWN = 20  # ... and with their flags in the acceptance question
NO_LOOP = "No job loop is running: they will be sent when one runs (tui-billing jobs run)."


def loop_where(status) -> str | None:
    """Where the store's job loop runs, for a sentence ("the job loop in this
    console", "the job loop on billing-01:4711"), or None when none is alive."""
    if status is None or not status.running:
        return None
    if status.here is not None:
        return "the job loop in this console"
    return f"the job loop on {status.where()}"


def _loop_status():
    """jobs.loop_status() (in a worker), or None when it cannot be read."""
    try:
        from ..jobs.status import loop_status

        return loop_status()
    except Exception:
        return None


class Progressed(Message):
    def __init__(self, done: int, total: int):
        super().__init__()
        self.done = done
        self.total = total


class InvoiceActions(RoleGate):
    """Mixin for Screen subclasses."""

    # what each action takes of the user's role (roles.ALLOWED): left out of the footer otherwise
    ROLE_ACTIONS = {"approve": "approve", "adjust": "adjust", "reissue": "reissue", "mark_reviewed": "review"}

    # -- what the screen provides ----------------------------------------------
    def action_targets(self) -> Targets | None:  # pragma: no cover - overridden
        return None

    def current_invoice_id(self) -> int | None:  # pragma: no cover - overridden
        return None

    def loaded_ids(self) -> set[int]:
        return set()

    def after_change(self, ids: list[int], fresh: dict) -> None:  # pragma: no cover
        pass

    # -- helpers ----------------------------------------------------------------
    def _panel(self) -> ProgressPanel | None:
        try:
            return self.query_one(ProgressPanel)
        except Exception:
            return None

    def bulk_running(self) -> bool:
        return any(w.group == "bulk" and w.is_running for w in self.workers)

    def on_progressed(self, message: Progressed) -> None:
        panel = self._panel()
        if panel is not None:
            panel.advance_to(message.done, message.total)

    # -- actions (bound to keys by the screens) ----------------------------------
    def action_approve(self) -> None:
        self._start("approve")

    def action_reissue(self) -> None:
        self._start("reissue")

    def action_download(self) -> None:
        self._start("download")

    def _start(self, verb: str) -> None:
        if self.bulk_running():
            self.notify("A bulk action is still running; wait for its summary.", severity="warning")
            return
        targets = self.action_targets()
        if targets is None:
            self.notify(f"Nothing to {verb}: no invoice under the cursor or marked.", severity="warning")
            return
        self._prepare(verb, targets)

    @work(thread=True, exclusive=True, group="prepare")
    def _prepare(self, verb: str, targets: Targets) -> None:
        from ..offpeak import next_window_start
        from ..store.models import Invoice, tuple_rows
        from ..store.settings import load_settings

        clock = self.app.ctx.clock
        with db_session():
            try:
                ids = targets.resolve()
                preview = None
                if verb == "approve":  # the domain's own sorting: ready, flagged, refused (and why)
                    preview = workflow.preview_approve(ids, self.app.ctx)  # four-eyes: as this person
                    numbers = preview.ready[:3]
                else:
                    numbers = (
                        [
                            n
                            for (n,) in tuple_rows(
                                Invoice.select(Invoice.number)
                                .where(Invoice.id.in_(ids[:3]))
                                .order_by(Invoice.id)
                                .tuples()
                            )
                        ]
                        if ids
                        else []
                    )
                window = None
                if verb == "reissue":
                    start, end = load_settings().offpeak
                    window = next_window_start(clock, start, end)
            except Exception as exc:
                post(self.app, self.notify, error_text(exc), title=f"{verb} failed", severity="error")
                return
            # The dialogs' promises name the loop that keeps them (approve: sending; reissue: the window).
            loops = _loop_status() if verb in ("approve", "reissue") else None
        post(self.app, self._ask, verb, ids, preview, numbers, window, loops)

    def _ask(
        self, verb: str, ids: list[int], preview, numbers: list[str], window: dt.datetime | None, loops=None
    ) -> None:
        from .download import DownloadModal
        from .reissue import ReissueModal

        if not ids:
            self.notify(f"Nothing to {verb}: no invoice matches.", severity="warning")
            return
        clock = self.app.ctx.clock
        if verb == "approve":
            self._ask_approve(ids, preview, numbers, loops)
        elif verb == "reissue":
            local = clock.local(window)
            wait = int((window - clock.now()).total_seconds())
            when = f"opens {local:%a %d %b %H:%M}" + (f" (in {span(wait)})" if wait > 0 else " (open now)")
            self.app.push_screen(
                ReissueModal(len(ids), numbers, when, ids=ids, loop=loop_where(loops)),
                lambda mode: self._launch("reissue", ids, mode) if mode else None,
            )
        elif verb == "download":
            self.app.push_screen(
                DownloadModal(len(ids), clock.local()),
                lambda choice: self._launch("download", ids, choice) if choice else None,
            )

    # -- approve: what will be approved, what needs its flags accepted, what is refused
    def send_promise(self, loops) -> str:
        """What happens to approved invoices, true to the job loops of the store."""
        where = loop_where(loops)
        if where is None:
            return NO_LOOP
        if loops.here is not None:
            dest = self.app.mail_destination() or ""
            if dest.startswith("maildir "):  # the default: nothing leaves this machine
                return (
                    f"Approved invoices are sent within minutes by {where}, into the "
                    f"{dest} (no mail server is configured)."
                )
        return f"Approved invoices are sent to the customers within minutes by {where}."

    def _ask_approve(self, ids: list[int], preview: workflow.ApprovePreview, numbers: list[str], loops=None) -> None:
        from .. import statuses as S
        from .confirm import ApproveModal, ConfirmModal

        p = preview
        count = len(p.ready)

        def refused_as(s: str) -> str:
            if s == "four_eyes":
                return "for another approver"
            return S.label(S.INVOICE_STATUSES, s).lower() if s else "gone"

        refused = ", ".join(f"{n:,} {refused_as(s)}" for s, n in p.refused_by_status.items())
        if not count and not p.flagged:
            self.notify(
                f"None of the {plural(len(ids), 'invoice')} is under review ({refused}): nothing to approve.",
                title="Approve",
                severity="warning",
            )
            return
        body = Text()
        if count:
            what = "unflagged invoice" if p.flagged else "invoice"
            body.append(f"Approve {plural(count, what)} under review?\n", style="bold")
            body.append(", ".join(shown(n) for n in numbers) + (" …" if count > len(numbers) else "") + "\n")
            body.append("Totals: ")
            body.append(totals_line(p.ready_totals), style="bold")
        if p.flagged:
            if count:
                body.append("\n\n")
            body.append(
                f"{plural(len(p.flagged), 'flagged invoice')}: approved only if you accept their flags\n",
                style="bold yellow",
            )
            for f in p.flagged[:FLAGGED_SHOWN]:
                body.append(f"  {shown(f.number)}", style="bold")
                body.append(f"  {format_money(f.total, f.currency)}  ")
                body.append(compact(f.flags, 30) or f"risk score {f.risk_score}", style="yellow")
                body.append("\n")
            if len(p.flagged) > FLAGGED_SHOWN:
                body.append(f"  … and {len(p.flagged) - FLAGGED_SHOWN:,} more\n")
            body.append("Totals: ")
            body.append(totals_line(p.flagged_totals), style="bold")
        if p.second_needed:  # four-eyes: this approval is the first of two
            k = len(p.second_needed)
            body.append(
                f"\n\n{plural(k, 'invoice')} at or above the second-approval amount: yours is the "
                f"first of two approvals; {'they wait' if k != 1 else 'it waits'} for a second approver\n",
                style="bold yellow",
            )
            body.append(
                ", ".join(shown(n) for n in p.second_needed[:FLAGGED_SHOWN])
                + (f" … and {k - FLAGGED_SHOWN:,} more" if k > FLAGGED_SHOWN else "")
            )
        if p.refused:
            body.append(
                f"\n{len(p.refused):,} of the {len(ids):,} marked will be refused ({refused}); the summary lists each.",
                style="yellow",
            )
        promise = self.send_promise(loops)
        body.append("\n" + promise, style="" if loop_where(loops) else "yellow")
        flagged = set(p.flagged_ids)
        rest = [i for i in ids if i not in flagged]  # refused ones too: the summary lists each
        if not p.flagged:
            self.app.push_screen(
                ConfirmModal("Approve", body, "Approve"),
                lambda ok: self._launch("approve", ids, (rest, [])) if ok else None,
            )
            return

        def chosen(choice: str | None) -> None:
            if choice == ApproveModal.UNFLAGGED:
                self._launch("approve", ids, (rest, []))
            elif choice == ApproveModal.FLAGGED:
                self._ask_accept(ids, p, rest, promise)

        self.app.push_screen(ApproveModal("Approve", body, count), chosen)

    def _ask_accept(self, ids: list[int], p: workflow.ApprovePreview, rest: list[int], promise: str) -> None:
        """The second, explicit confirmation: accept the flags of these invoices."""
        from .confirm import ConfirmModal

        body = Text()
        k = len(p.flagged)
        also = f" (and the {plural(len(p.ready), 'unflagged one')})" if p.ready else ""
        body.append(
            f"Accept the flags of {plural(k, 'invoice')} and approve {'them' if k != 1 else 'it'}{also}?\n",
            style="bold",
        )
        for f in p.flagged[:ACCEPT_SHOWN]:
            body.append(f"\n{shown(f.number)}", style="bold")
            body.append(f"  {format_money(f.total, f.currency)}  revision {f.revision}\n")
            for flag in f.flags:
                body.append(f"  {flag.short}: ", style="yellow")
                body.append(f"{shown(flag.reason)}\n")
        if k > ACCEPT_SHOWN:
            body.append(f"\n… and {k - ACCEPT_SHOWN:,} more flagged invoices\n")
        body.append(
            "\nYou accept these flags as checked: the audit log records your name, each flag and the revision.",
            style="yellow",
        )
        body.append("\n" + promise, style="" if promise != NO_LOOP else "yellow")
        accepted = p.flagged_ids
        self.app.push_screen(
            ConfirmModal("Accept flags and approve", body, "Accept and approve", scroll=True),
            lambda ok: self._launch("approve", ids, (rest, accepted)) if ok else None,
        )

    def _launch(self, verb: str, ids: list[int], option) -> None:
        label, _, _ = VERBS[verb]
        panel = self._panel()
        count = len(ids) if verb != "approve" else len(option[0]) + len(option[1])
        if panel is not None:
            panel.start(f"{label} {plural(count, 'invoice')}", count)
        self._run(verb, ids, option, frozenset(self.loaded_ids()))

    @work(thread=True, exclusive=True, group="bulk")
    def _run(self, verb: str, ids: list[int], option, loaded: frozenset) -> None:
        last = [0]

        def progress(done: int, total: int) -> None:
            if done == total or done - last[0] >= max(total // 100, 1):
                last[0] = done
                self.post_message(Progressed(done, total))

        notes: list[str] = []
        with db_session():
            try:
                if verb == "approve":
                    result, notes = self._approve(ids, option, progress)
                elif verb == "reissue":
                    result = workflow.reissue_many(self.app.ctx, ids, option, progress=progress)
                    if option == "off_peak" and result.done:
                        where = loop_where(_loop_status())
                        notes.append(
                            "They stay Rejected until the off-peak window opens; "
                            + (
                                f"{where} recalculates them then and they come back under review."
                                if where
                                else "a job loop recalculates them then and they come back under review, "
                                "but none is running now (tui-billing jobs run)."
                            )
                        )
                else:
                    result, notes = self._download(ids, option, progress)
            except Exception as exc:  # the store failed mid-way: report, never crash
                result = workflow.BulkResult(failed=[("—", error_text(exc))])
            changed = [i for i in ids if i in loaded][:REFRESH_LIMIT]
            try:
                fresh = fresh_rows(changed) if verb != "download" else {}
            except Exception:
                fresh = {}
        words = "queued for the off-peak reissue" if verb == "reissue" and option == "off_peak" else None
        post(self.app, self._finished, verb, ids, result, fresh, notes, words)

    def _approve(self, ids: list[int], option: tuple[list[int], list[int]], progress):
        """The unflagged (and refused, reported) ones as they are; the flagged
        ones only when their flags were accepted, with include_flagged."""
        rest, accepted = option
        total = len(rest) + len(accepted)
        result = workflow.approve_many(self.app.ctx, rest, progress=lambda d, t: progress(d, total))
        if accepted:
            result.merge(
                workflow.approve_many(
                    self.app.ctx, accepted, include_flagged=True, progress=lambda d, t: progress(len(rest) + d, total)
                )
            )
        notes = []
        if result.accepted:
            notes.append(
                f"{plural(len(result.accepted), 'flagged invoice')} approved with "
                "their flags accepted (recorded in the audit log)."
            )
        if result.waiting:
            notes.append(
                f"{plural(len(result.waiting), 'invoice')} given the first of two approvals: "
                "they wait under review for a second approver."
            )
        left = len(ids) - total
        if left:
            notes.append(
                f"{plural(left, 'flagged invoice')} left under review for a person "
                "(to approve them: a, then f to accept their flags)."
            )
        return result, notes

    def _download(self, ids: list[int], option: tuple[Path, Path | None], progress):
        from .. import documents

        directory, merged = option
        try:
            result, _, merged_path = documents.download_many(ids, directory, merged, progress)
        except documents.DownloadTargetError as exc:
            return workflow.BulkResult(failed=[("—", exc.reason)]), []
        notes = [f"Files in {directory}"] + ([f"Merged: {merged_path}"] if merged_path else [])
        return result, notes

    def _finished(
        self,
        verb: str,
        ids: list[int],
        result: workflow.BulkResult,
        fresh: dict,
        notes: list[str],
        words: str | None = None,
    ) -> None:
        from .summary import SummaryModal

        panel = self._panel()
        if panel is not None:
            panel.finish()
        _, done_words, title = VERBS[verb]
        if verb != "download":
            self.app.note_changed(ids)
            self.after_change(ids, fresh)
        clear = getattr(self, "action_unmark", None)
        if clear is not None:  # the batch is done: its marks go (failures stay listed in the summary)
            clear()
        message = f"{plural(len(result.done), 'invoice')} {words or done_words}"
        if result.failed:
            message += f"; {len(result.failed):,} failed"
        self.notify(message, title=f"{title} finished", severity="warning" if result.failed else "information")
        self.app.push_screen(SummaryModal(f"{title}: {message}", result, notes))

    # -- adjust (one invoice) -------------------------------------------------------
    def action_adjust(self) -> None:
        invoice_id = self.current_invoice_id()
        if invoice_id is None:
            self.notify("Nothing to adjust: no invoice under the cursor.", severity="warning")
            return
        self._prepare_adjust(invoice_id)

    @work(thread=True, exclusive=True, group="prepare")
    def _prepare_adjust(self, invoice_id: int) -> None:
        from ..store.models import Account, Invoice
        from .adjust import AdjustTarget

        with db_session():
            try:
                inv = (
                    Invoice.select(Invoice, Account)
                    .join(Account, on=(Invoice.account == Account.id))
                    .where(Invoice.id == invoice_id)
                    .first()
                )
                if inv is None:
                    raise workflow.NotFound(str(invoice_id), "does not exist")
                target = AdjustTarget(
                    inv.id,
                    inv.number,
                    inv.account.name,
                    inv.currency,
                    inv.total,
                    inv.status,
                    workflow.adjust_basis(inv),
                )
                # The domain's own sentence when this status cannot change.
                refusal = workflow.CHANGE_REFUSALS.get(inv.status)
            except Exception as exc:
                post(self.app, self.notify, error_text(exc), title="Adjust", severity="error")
                return
        if refusal:
            post(self.app, self.notify, f"{target.number} {refusal}", title="Adjust", severity="warning")
            return
        post(self.app, self._ask_adjust, target)

    def _ask_adjust(self, target) -> None:
        from .adjust import AdjustModal

        self.app.push_screen(AdjustModal(target), self._adjusted)

    def _adjusted(self, done) -> None:
        if done is None:
            return
        from ..money import format_amount, format_money

        self.app.note_changed([done.id])
        tax = f" + tax {format_amount(done.tax, done.currency)}" if done.tax else ""
        self.notify(
            f"{done.number}: manual {done.kind} of {format_money(done.amount, done.currency)}{tax}; "
            f"total now {format_money(done.total, done.currency)} (revision {done.revision})",
            title="Adjusted",
        )
        self.refresh_invoices([done.id])

    # -- refresh rows that changed elsewhere ----------------------------------------
    def refresh_invoices(self, ids) -> None:
        ids = [i for i in ids if i in self.loaded_ids()]
        if ids:
            self._refresh_worker(ids[:REFRESH_LIMIT])

    @work(thread=True, group="refresh")
    def _refresh_worker(self, ids: list[int]) -> None:
        with db_session():
            try:
                fresh = fresh_rows(ids)
            except Exception as exc:
                post(self.app, self.notify, error_text(exc), severity="error")
                return
        post(self.app, self.after_change, ids, fresh)

    # -- PDF text preview -------------------------------------------------------------
    def action_pdf_text(self) -> None:
        invoice_id = self.current_invoice_id()
        if invoice_id is None:
            self.notify("No invoice under the cursor.", severity="warning")
            return
        self._load_pdf_text(invoice_id)

    @work(thread=True, exclusive=True, group="pdf")
    def _load_pdf_text(self, invoice_id: int) -> None:
        from .. import documents, pdf
        from ..store.models import Invoice

        with db_session():
            try:
                inv = Invoice.get_by_id(invoice_id)
                data = documents.current_pdf(inv)
                text = pdf.pdf_text(data)
                title = f"{shown(inv.number)} · revision {inv.revision} · PDF text"
            except Exception as exc:
                post(self.app, self.notify, error_text(exc), title="PDF", severity="error")
                return
        post(self.app, self._show_pdf_text, title, text, data)

    def _show_pdf_text(self, title: str, text: str, data: bytes | None = None) -> None:
        from .pdf_preview import PdfTextModal

        # The bytes too: where the terminal draws pictures, the page is shown as one.
        self.app.push_screen(PdfTextModal(title, text, pdf_bytes=data))
