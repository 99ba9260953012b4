"""Downloads and previews of stored invoices: the CLI and the shared domain
function the console calls, on a real store with real PDFs read back."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from decimal import Decimal

import pytest
from pypdf import PdfReader

from tui_billing import documents, workflow
from tui_billing import statuses as S
from tui_billing.pdf import safe_filename
from tui_billing.store.models import Invoice, InvoicePdf

from . import factories as F


def text_of(data: bytes) -> str:
    return " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages).split())


def test_pdf_text_loses_its_draft_mark_once_approved(store_url, cli, ctx):
    inv = F.invoice()
    code, out, _ = cli("show", inv.number, "--pdf-text")
    assert code == 0 and "DRAFT — not yet issued" in out and "under review" not in out
    workflow.adjust(ctx, inv.id, "credit", Decimal("5"), "Goodwill")  # a PDF rendered under review
    workflow.approve(ctx, inv.id)
    code, out, _ = cli("show", inv.number, "--pdf-text")
    assert code == 0 and inv.number in out and "95.00" in out
    assert "DRAFT" not in out


def test_rejected_invoice_pdf_is_a_draft_without_internal_status(store_url, cli, ctx):
    inv = F.invoice()
    documents.current_pdf(Invoice.get_by_id(inv.id))
    workflow.request_reissue(ctx, inv.id, "off_peak")
    code, out, _ = cli("show", inv.number, "--pdf-text")
    assert code == 0 and "DRAFT — not yet issued" in out and "rejected" not in out.lower()


def test_download_writes_one_file_each_and_a_merged_pdf_with_outline(store_url, cli, tmp_path):
    invoices = [F.invoice(total=Decimal(t)) for t in ("10.00", "20.00", "30.00")]
    merged = tmp_path / "all.pdf"
    code, out, _ = cli(
        "download", *[i.number for i in invoices], "--to", str(tmp_path / "out"), "--merge", str(merged), "--json"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["done"] == [i.number for i in invoices] and doc["failed"] == []
    for inv in invoices:
        path = tmp_path / "out" / safe_filename(inv.number)
        assert str(path) in doc["files"]
        assert inv.number in text_of(path.read_bytes())
    reader = PdfReader(merged)
    assert [o.title for o in reader.outline] == [i.number for i in invoices]
    assert len(reader.pages) == 3


def test_download_goes_on_past_a_file_it_cannot_write(store_url, cli, tmp_path):
    first, blocked, last = (F.invoice() for _ in range(3))
    out_dir = tmp_path / "out"
    (out_dir / safe_filename(blocked.number)).mkdir(parents=True)  # a directory where the file goes
    code, out, err = cli("download", first.number, blocked.number, last.number, "--to", str(out_dir), "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["done"] == [first.number, last.number]
    assert [f["number"] for f in doc["failed"]] == [blocked.number]
    assert "not a regular file" in doc["failed"][0]["reason"]
    assert (out_dir / safe_filename(last.number)).is_file()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_download_to_an_unwritable_directory_is_bad_input(store_url, cli, tmp_path):
    inv = F.invoice()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = cli("download", inv.number, "--to", str(locked))
    assert code == 2 and "error: to:" in err


@pytest.mark.parametrize(
    "args,field",
    [
        (["--to", "{file}"], "to"),
        (["--to", "{dir}", "--merge", "{dir}/all.txt"], "merge"),
        (["--to", "/proc/no/such/dir"], "to"),
        (["--to", "{dir}", "--merge", "{file}/all.pdf"], "merge"),
    ],
)
def test_download_bad_target_exit_2_nothing_written(store_url, cli, tmp_path, args, field):
    inv = F.invoice()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    args = [a.replace("{file}", str(a_file)).replace("{dir}", str(tmp_path / "d")) for a in args]
    code, _, err = cli("download", inv.number, *args)
    assert code == 2 and f"error: {field}:" in err
    assert not (tmp_path / "d" / safe_filename(inv.number)).exists()


def test_store_keeps_only_the_current_and_the_sent_pdf(store_url, ctx):
    inv = F.invoice()
    for amount in ("1", "2", "3"):
        workflow.adjust(ctx, inv.id, "charge", Decimal(amount), f"charge {amount}")
    kept = sorted(r for (r,) in InvoicePdf.select(InvoicePdf.revision).where(InvoicePdf.invoice == inv.id).tuples())
    assert kept == [Invoice.get_by_id(inv.id).revision]
    # Pretend revision 4 was sent (the dispatch job's column), then change it again.
    Invoice.update(sent_revision=4).where(Invoice.id == inv.id).execute()
    workflow.adjust(ctx, inv.id, "charge", Decimal("4"), "charge 4")
    kept = sorted(r for (r,) in InvoicePdf.select(InvoicePdf.revision).where(InvoicePdf.invoice == inv.id).tuples())
    assert kept == [4, 5]


def test_download_many_reports_a_missing_invoice_and_does_the_rest(store_url, tmp_path):
    inv = F.invoice()
    result, files, merged = documents.download_many([inv.id, 10**9], tmp_path, tmp_path / "m.pdf")
    assert result.done == [inv.number] and result.failed == [(str(10**9), "does not exist")]
    assert len(files) == 1 and merged == tmp_path / "m.pdf"


def test_adjust_amount_must_be_plain_ascii_digits(store_url, cli):
    inv = F.invoice()
    for typed in ("١٢", "１２", "1E+1", "Infinity", "+5"):
        code, _, err = cli("adjust", inv.number, "--credit", typed, "--description", "x")
        assert code == 2 and "error: credit:" in err, typed
    assert Invoice.get_by_id(inv.id).revision == 1
    assert Invoice.get_by_id(inv.id).status == S.UNDER_REVIEW


def test_the_pdf_a_customer_received_is_never_replaced(store_url, ctx, tmp_path):
    from tui_billing import jobs, mail

    from .test_jobs_support import ctx_at

    inv = F.invoice()
    workflow.approve(ctx, inv.id)
    jobs.dispatch_approved(ctx_at(dt.datetime(2026, 11, 20, 10, 5)))
    jobs.deliver_outbox(ctx, transport=mail.MaildirTransport(tmp_path / "maildir"))
    sent = Invoice.get_by_id(inv.id)
    assert sent.sent_revision == sent.revision
    stored = InvoicePdf.get((InvoicePdf.invoice == inv.id) & (InvoicePdf.revision == sent.revision))
    assert stored.note == "" and "DRAFT" not in text_of(bytes(stored.data))
    # Downloads later (a new seller address meanwhile) give the very bytes the customer got.
    from tui_billing.store.settings import save_setting

    save_setting("seller_name", "Renamed Seller plc")
    assert documents.current_pdf(sent) == bytes(stored.data)
    assert bytes(InvoicePdf.get_by_id(stored.id).data) == bytes(stored.data)


def test_a_draft_rendered_for_a_stale_invoice_is_not_kept(store_url, ctx):
    """A download renders from an invoice read before it was approved: the
    DRAFT document must not be stored for the approved invoice."""
    inv = F.invoice()
    stale = Invoice.get_by_id(inv.id)  # under review, as the download read it
    workflow.approve(ctx, inv.id)
    data = documents.store_pdf(stale)
    assert "DRAFT" not in text_of(data)
    row = InvoicePdf.get((InvoicePdf.invoice == inv.id) & (InvoicePdf.revision == stale.revision))
    assert row.note == ""


@pytest.mark.parametrize("merge", ["{file}/sub/all.pdf", "{file}/a/b/all.pdf", "{dangling}/all.pdf"])
def test_merge_under_a_file_is_refused_before_anything_is_rendered_or_written(store_url, cli, tmp_path, merge):
    """Issue 14 (defect 10): a merged file whose folder cannot exist (a regular
    file, or a broken link, somewhere above it) is bad input: exit 2, no PDF
    rendered, no folder made, nothing written."""
    inv = F.invoice()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    out_dir = tmp_path / "out"
    rendered = InvoicePdf.select().count()
    code, out, err = cli(
        "download", inv.number, "--to", str(out_dir), "--merge", merge.format(file=a_file, dangling=dangling), "--json"
    )
    assert code == 2 and "error: merge:" in err
    assert json.loads(out)["error"]["field"] == "merge"
    assert not out_dir.exists()  # not even the directory
    assert not (tmp_path / "nowhere").exists()
    assert InvoicePdf.select().count() == rendered
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith("store.db")} == {"a-file", "dangling"}
