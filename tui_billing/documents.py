"""From stored invoice to PDF: build the document, keep the current revision's
PDF (and the one last sent to the customer), nothing older."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

from . import statuses as S
from .context import BulkResult
from .errors import FieldError
from .safefile import check_creatable_dir, make_dirs
from .store.models import (
    Account,
    ChargeLine,
    Correction,
    CustomerClass,
    Invoice,
    InvoicePdf,
    TaxLine,
    database,
)
from .store.settings import load_settings

if TYPE_CHECKING:
    from .config import StoreSettings


def draft_note(inv: Invoice) -> str:
    """The DRAFT mark a PDF of this invoice carries now ("" once issued)."""
    if inv.status in (S.UNDER_REVIEW, S.REJECTED, S.OPEN):
        return f"DRAFT — {S.label(S.INVOICE_STATUSES, inv.status).lower()}, not yet issued"
    return ""


def build_document(inv: Invoice, settings=None):
    """The invoice as its PDF shows it: plain values, picklable (pdf/pool.py
    sends them to worker processes).  `settings`: the store's, read once by
    a caller building many."""
    from . import pdf

    settings = settings or load_settings()
    account = Account.get_by_id(inv.account_id)
    cls = CustomerClass.get_by_id(inv.customer_class_id)
    seller_lines = tuple(settings["seller_address"].splitlines())
    customer_lines = tuple(line for line in (account.address or "").splitlines() if line) + (account.email,)
    units = settings.service_units

    def unit(c) -> str:  # a fee line is one month of its subscription; usage in its service's unit
        return "month" if c.subscription_id else units.get(c.service, "")

    charges = tuple(
        pdf.ChargeRow(c.position, c.description, c.quantity, c.discount, c.amount, unit(c))
        for c in ChargeLine.select().where(ChargeLine.invoice == inv.id).order_by(ChargeLine.position)
    )
    taxes = tuple(
        pdf.TaxRow(t.position, t.name, t.description, t.amount)
        for t in TaxLine.select().where(TaxLine.invoice == inv.id).order_by(TaxLine.position)
    )
    corrections = tuple(
        pdf.CorrectionRow(c.position, c.description, c.amount, c.approved_at)
        for c in Correction.select().where(Correction.invoice == inv.id).order_by(Correction.position)
    )
    note = draft_note(inv)
    return pdf.InvoiceDocument(
        number=inv.number,
        currency=inv.currency,
        seller=pdf.Party(settings["seller_name"], seller_lines),
        customer=pdf.Party(account.name, customer_lines),
        issue_date=inv.issue_date or inv.period_to,
        due_date=inv.due_date,
        period_from=inv.period_from,
        period_to=inv.period_to,
        payment_terms=f"Net {cls.net_days} days",
        charges=charges,
        taxes=taxes,
        corrections=corrections,
        subtotal=inv.subtotal,
        discount_total=inv.discount_total,
        tax_total=inv.tax_total,
        correction_total=inv.correction_total,
        total=inv.total,
        revision=inv.revision,
        payment_model=inv.payment_model,
        status_note=note,
    )


def store_pdf(inv: Invoice, now: dt.datetime | None = None) -> bytes:
    """Render the current revision and keep it; prune all but current and sent."""
    from . import pdf

    document = build_document(inv)
    return keep_pdf(inv, document.status_note, pdf.render_invoice(document), now)


def keep_pdf(inv: Invoice, note: str, data: bytes, now: dt.datetime | None = None) -> bytes:
    """Store `data`, rendered from `inv` as read with DRAFT mark `note`, unless
    the invoice moved on meanwhile; returns the PDF of the revision now kept."""
    now = now or dt.datetime.utcnow().replace(microsecond=0)
    with database.atomic():
        # Rendering takes a while: if the invoice moved on meanwhile (approved,
        # sent, changed), this document is not the one to keep.
        fresh = Invoice.get_or_none(Invoice.id == inv.id)
        if fresh is None:
            return data
        if fresh.revision != inv.revision or draft_note(fresh) != note:
            moved_on = fresh
        else:
            moved_on = None
            kept = _kept_pdf(fresh)
            if kept is not None and _was_sent(fresh):  # what the customer received is never replaced
                return kept
    if moved_on is not None:
        return current_pdf(moved_on)
    with database.atomic():
        (
            InvoicePdf.insert(invoice=inv.id, revision=inv.revision, data=data, created_at=now, note=note)
            .on_conflict(
                conflict_target=[InvoicePdf.invoice, InvoicePdf.revision],
                update={InvoicePdf.data: data, InvoicePdf.created_at: now, InvoicePdf.note: note},
            )
            .execute()
        )
        keep = [inv.revision] + ([inv.sent_revision] if inv.sent_revision else [])
        InvoicePdf.delete().where((InvoicePdf.invoice == inv.id) & InvoicePdf.revision.not_in(keep)).execute()
    return data


def current_pdf(inv: Invoice) -> bytes:
    """The PDF of the invoice's current revision, rendered now if missing or
    if its DRAFT mark no longer fits the status (rendered under review, then
    approved or rejected: the same revision, a different document)."""
    kept = _kept_pdf(inv)
    return kept if kept is not None else store_pdf(inv)


# -- many at once: rendered in worker processes (pdf/pool.py), kept here in order


_workers: int | None = None  # [jobs] workers of this process's configuration; None: one per core


def set_workers(count: int | None) -> None:
    """[jobs] workers, read once when a command or the console starts (commands/common.open_env)."""
    global _workers
    _workers = count


def render_pool(workers: int | None = None, expected: int | None = None):
    """A pool for many PDFs (`workers` processes, default [jobs] workers);
    in this process it renders through pdf.render_invoice, as store_pdf does."""
    from . import pdf

    return pdf.RenderPool(workers or _workers, expected=expected, render=lambda doc: pdf.render_invoice(doc))


def pdfs(
    refs: Iterable,
    pool,
    *,
    load: Callable[..., Invoice | None] | None = None,
    reuse: bool = True,
    now: dt.datetime | None = None,
) -> Iterator[tuple[Invoice | None, bytes | Exception | None]]:
    """For each ref, in order: (invoice, its PDF or why not).

    `load(ref)` gives the invoice (default: by id), or None for one to leave
    alone (yielded as (None, None)).  With `reuse` a PDF that fits is taken
    as kept (current_pdf); else the current revision is rendered
    (store_pdf).  Documents are built here and rendered by `pool` (a
    render_pool); each is kept (stored) here, in order, as it comes back.
    One invoice that fails is its item's exception, never the batch's."""
    settings = load_settings()
    load = load or (lambda ref: Invoice.get_or_none(Invoice.id == ref))
    items = _documents(refs, load, reuse, settings)
    for (inv, held), data in pool.render(items):
        if data is None or isinstance(data, Exception):
            yield inv, data if data is not None else held
            continue
        try:
            kept = keep_pdf(inv, held.status_note, data, now)
        except Exception as exc:  # this invoice's PDF is not kept; the others are
            yield inv, exc
            continue
        yield inv, kept


def _documents(refs, load, reuse: bool, settings) -> Iterator[tuple[tuple, object]]:
    """((invoice, document | kept PDF | exception | None), document to render or None) per ref."""
    for ref in refs:
        inv, held, document = _prepare(ref, load, reuse, settings)
        yield (inv, held), document


def _prepare(ref, load, reuse: bool, settings) -> tuple:
    inv = None
    try:
        inv = load(ref)
        if inv is None:
            return None, None, None
        kept = _kept_pdf(inv) if reuse else None
        if kept is not None:
            return inv, kept, None
        document = build_document(inv, settings)
        return inv, document, document
    except Exception as exc:  # read or built wrong: this invoice's result
        return inv, exc, None


# A bulk change's PDFs (pdfs_together): rendered by one pool, kept as they come.
_TOGETHER: ContextVar[_Together | None] = ContextVar("pdfs_together", default=None)
log = logging.getLogger(__name__)


class _Together:
    def __init__(self, pool):
        self.pool = pool
        self.settings: StoreSettings | None = None  # read on the first PDF (a bulk action may render none)

    def add(self, inv: Invoice) -> None:
        try:
            self.settings = self.settings or load_settings()
            document = build_document(inv, self.settings)
        except Exception as exc:  # noqa: BLE001 - committed; the next reader renders it
            _not_rendered(inv, exc)
            return
        self.pool.submit((inv, document), document)
        self.keep(self.pool.ready())

    def keep(self, results) -> None:
        for (inv, document), data in results:
            try:
                if isinstance(data, Exception):
                    raise data
                keep_pdf(inv, document.status_note, data)
            except Exception as exc:  # noqa: BLE001 - committed; the next reader renders it
                _not_rendered(inv, exc)


def _not_rendered(inv: Invoice, exc: Exception) -> None:
    log.warning("PDF of %s revision %s not rendered: %s", inv.number, inv.revision, exc)


@contextmanager
def pdfs_together(workers: int | None = None, expected: int | None = None) -> Iterator[None]:
    """Inside (a bulk change; also a decorator), the PDF of each revision
    committed is not rendered on the spot (defer_pdf): one render_pool
    renders them while this process goes on with the next invoice; each is
    kept as it comes back, the rest when the block ends.  A failed PDF is
    logged, as after a single change: it is rendered on demand when missing."""
    with render_pool(workers, expected) as pool:
        together = _Together(pool)
        token = _TOGETHER.set(together)
        try:
            yield
        finally:
            _TOGETHER.reset(token)
        together.keep(pool.drain())  # not after an error: those are rendered on demand


def defer_pdf(inv: Invoice) -> bool:
    """Inside pdfs_together: queue the PDF of the revision just committed
    for the block's pool and say so (True); outside: False, render it now."""
    together = _TOGETHER.get()
    if together is None:
        return False
    together.add(inv)
    return True


def _was_sent(inv: Invoice) -> bool:
    return bool(inv.sent_revision) and inv.sent_revision == inv.revision


def _kept_pdf(inv: Invoice) -> bytes | None:
    """The stored PDF of the current revision if it fits the status: its DRAFT
    mark is the one the status calls for, or the revision was sent and this is
    the final PDF the customer received (note None: stored before migration
    0004, when only final PDFs were sent)."""
    row = (
        InvoicePdf.select(InvoicePdf.data, InvoicePdf.note)
        .where((InvoicePdf.invoice == inv.id) & (InvoicePdf.revision == inv.revision))
        .first()
    )
    if row is None:
        return None
    if row.note == draft_note(inv) or (_was_sent(inv) and not row.note):
        return bytes(row.data)
    return None


class DownloadTargetError(FieldError):
    """The target directory or merged file cannot be used (bad input: nothing written)."""


def check_download_target(directory: Path, merged: Path | None) -> None:
    """Refuse a target that cannot work before anything is rendered or written.

    Everything is checked first (the directory and the merged file's folder,
    each the folder itself or, not there yet, its closest existing ancestor);
    only then is the directory created (folders it creates: owner only)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise DownloadTargetError("to", f"{directory} is not a directory")
    problem = check_creatable_dir(directory)
    if problem:
        raise DownloadTargetError("to", problem)
    if merged is not None:
        merged = Path(merged)
        if merged.suffix.lower() != ".pdf":
            raise DownloadTargetError("merge", f"{merged} should end in .pdf")
        if merged.is_symlink() or (merged.exists() and not merged.is_file()):
            raise DownloadTargetError("merge", f"{merged} exists and is not a regular file")
        problem = check_creatable_dir(merged.parent)
        if problem:
            raise DownloadTargetError("merge", problem)
    try:
        make_dirs(directory)
    except OSError as exc:
        raise DownloadTargetError("to", f"cannot create {directory}: {exc.strerror or exc}") from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise DownloadTargetError("to", f"{directory} is not writable")


def download_many(ids, directory: Path, merged: Path | None = None, progress=None, workers: int | None = None):
    """Write the current PDF of each invoice into `directory` (one file each,
    safe names) and, with `merged`, one PDF of them all with an outline.
    PDFs that need rendering are rendered by a render_pool (`workers`
    processes; default [jobs] workers), files written here in order.
    One invoice that cannot be rendered or written never stops the others:
    it is listed in the result's `failed`.  Returns (BulkResult, files, merged
    path or None)."""
    from . import pdf

    check_download_target(directory, merged)
    result = BulkResult()
    files: list[Path] = []
    items: list[tuple[str, bytes]] = []
    ids = list(ids)
    with render_pool(workers, expected=len(ids)) as pool:
        for i, (invoice_id, (inv, data)) in enumerate(zip(ids, pdfs(ids, pool)), 1):
            if inv is None:
                reason = f"not read: {_reason(data)}" if isinstance(data, Exception) else "does not exist"
                result.failed.append((str(invoice_id), reason))
            elif not isinstance(data, bytes):  # one bad invoice never blocks the batch
                result.failed.append((inv.number, f"PDF not written: {_reason(data) if data else 'not rendered'}"))
            else:
                try:
                    files += pdf.write_pdfs([(inv.number, data)], directory)
                    items.append((inv.number, data))
                    result.done.append(inv.number)
                except Exception as exc:
                    result.failed.append((inv.number, f"PDF not written: {_reason(exc)}"))
            if progress is not None:
                progress(i, len(ids))
    merged_path = None
    if merged is not None and any(f.resolve() == merged.resolve() for f in files):
        result.failed.append((merged.name, "merged PDF not written: it is also an invoice's file"))
    elif merged is not None and items:
        try:
            merged_path = pdf.merge_pdfs(items, merged)
        except Exception as exc:
            result.failed.append((merged.name, f"merged PDF not written: {_reason(exc)}"))
    return result, files, merged_path


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__
