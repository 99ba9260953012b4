"""Adjust and reissue render the PDF after their commit, never holding the store's locks (issue 15.4)."""

from __future__ import annotations

import sqlite3
from decimal import Decimal as D

import pytest

from tui_billing import pdf
from tui_billing import workflow as W
from tui_billing.store.models import Invoice, InvoicePdf

from . import factories as F


def _other_writer_can_write(store_url: str, invoice_id: int) -> bool:
    """Can another admin's connection write the same invoice right now, without waiting?"""
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(store_url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE invoice SET notified_at = notified_at WHERE id = ?", (invoice_id,))
            conn.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()
    import psycopg2

    conn = psycopg2.connect(store_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET lock_timeout = '200ms'")
            cur.execute("UPDATE invoice SET notified_at = notified_at WHERE id = %s", (invoice_id,))
        conn.rollback()
        return True
    except psycopg2.errors.LockNotAvailable:
        return False
    finally:
        conn.close()


class Probe:
    """Wraps the real renderer: while it renders, notes whether another writer could write."""

    def __init__(self, store_url: str):
        self.store_url = store_url
        self.invoice_id = 0
        self.seen: list[bool] = []
        self.real = pdf.render_invoice

    def render(self, document, *a, **kw):
        self.seen.append(_other_writer_can_write(self.store_url, self.invoice_id))
        return self.real(document, *a, **kw)


@pytest.fixture
def probe(store_url, monkeypatch):
    p = Probe(store_url)
    monkeypatch.setattr(pdf, "render_invoice", p.render)
    return p


def test_adjust_renders_its_pdf_after_the_commit(store_url, ctx, probe):
    inv = F.invoice()
    probe.invoice_id = inv.id
    W.adjust(ctx, inv.number, "charge", D("5"), "Porting fee")
    assert probe.seen == [True]  # rendered once, with the store free for others
    got = Invoice.get_by_id(inv.id)
    assert InvoicePdf.select().where((InvoicePdf.invoice == inv.id) & (InvoicePdf.revision == got.revision)).exists()


def test_reissue_renders_its_pdf_after_the_commit(store_url, ctx, probe):
    inv = F.invoice()
    probe.invoice_id = inv.id
    W.request_reissue(ctx, inv.number, "now")
    W.complete_reissue(ctx, inv.id)
    assert probe.seen and all(probe.seen)
    got = Invoice.get_by_id(inv.id)
    assert InvoicePdf.select().where((InvoicePdf.invoice == inv.id) & (InvoicePdf.revision == got.revision)).exists()
