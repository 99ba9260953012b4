"""Mail: the invoice email at a real SMTP server, header safety, retries, outbox."""

from __future__ import annotations

import datetime as dt
import io
import json
import mailbox
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pypdf import PdfReader

from tests.test_jobs_support import (
    NOW,
    SmtpServer,
    ctx_at,
    make_account,
    make_approved,
    make_class,
    make_invoice,
    payments_of,
    reload,
)
from tui_billing import jobs, mail
from tui_billing import statuses as S
from tui_billing.store.models import OutboxMessage, Payment


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on 127.0.0.1, in this process."""
    server = SmtpServer().start()
    yield server
    server.stop()


def dispatch_and_deliver(ctx, transport, **kw):
    d = jobs.dispatch_approved(ctx)
    r = jobs.deliver_outbox(ctx, transport=transport, **kw)
    return d, r


def pdf_text(part) -> str:
    data = part.get_content()
    reader = PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def test_invoice_email_reaches_the_smtp_server_with_its_pdf(store_url, smtp):
    cls = make_class()
    acc = make_account(cls, name="Zoë Łukasiewicz & Co", email_addr="billing@zoe.example")
    inv = make_invoice(acc, total=Decimal("1234.50"))
    ctx = ctx_at(NOW, "job:test")

    d, r = dispatch_and_deliver(ctx, smtp.transport())

    assert (d.done, r.done, r.failed) == (1, 1, 0)
    [got] = smtp.inbox.messages()
    msg = got.message
    assert got.rcpt_tos == ["billing@zoe.example"]
    assert got.mail_from == "billing@example.com"
    assert msg["Subject"] == f"Invoice {inv.number} from Northwind Telecom Ltd — 1,234.50 EUR"
    assert msg["To"].addresses[0].addr_spec == "billing@zoe.example"
    assert msg["To"].addresses[0].display_name == "Zoë Łukasiewicz & Co"
    row = OutboxMessage.get(OutboxMessage.invoice == inv.id)
    assert msg["Message-ID"] == row.message_id and row.status == mail.SENT and row.attempts == 1
    body = msg.get_body(("plain",)).get_content()
    assert "1,234.50 EUR" in body and "2026-11-15" in body and "2026-10-01 to 2026-10-31" in body
    assert "Please pay 1,234.50 EUR by 15 November 2026" in body
    [att] = list(msg.iter_attachments())
    assert att.get_content_type() == "application/pdf"
    assert att.get_filename() == f"{inv.number}.pdf"
    text = pdf_text(att)
    assert inv.number in text and "1,234.50" in text
    assert "DRAFT" not in text.upper()  # the customer gets the final PDF, not the review draft
    inv = reload(inv)
    assert inv.status == S.UNPAID and inv.sent_revision == inv.revision
    [pay] = payments_of(inv)
    assert pay.status == "waiting_for_payment" and pay.amount == Decimal("1234.50")


def test_balance_covers_it_paid_and_told_so(store_url, smtp):
    acc = make_account(make_class(), balance=Decimal("2000"))
    inv = make_invoice(acc, total=Decimal("1234.50"))
    dispatch_and_deliver(ctx_at(NOW), smtp.transport())
    inv = reload(inv)
    assert inv.status == S.PAID
    assert [p.status for p in payments_of(inv)] == ["paid_from_balance"]
    [got] = smtp.inbox.messages()
    assert "paid from your account balance" in got.message.get_body(("plain",)).get_content()


def test_customer_name_cannot_inject_headers(store_url, smtp):
    evil = "Mallory Ltd\r\nBcc: evil@attacker.example\r\nX-Injected: yes\nSubject: pwned"
    acc = make_account(make_class(), name=evil, email_addr="victim@example.com")
    make_invoice(acc)
    dispatch_and_deliver(ctx_at(NOW), smtp.transport())
    [got] = smtp.inbox.messages()
    assert got.rcpt_tos == ["victim@example.com"]
    msg = got.message
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    assert len(msg.get_all("Subject")) == 1 and "pwned" not in msg["Subject"]
    assert len(msg.get_all("To")) == 1
    assert [a.addr_spec for a in msg["To"].addresses] == ["victim@example.com"]
    header_block = got.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in header_block and b"\nX-Injected:" not in header_block


@pytest.mark.parametrize(
    "address",
    [
        "victim@example.com\r\nBcc: evil@attacker.example",
        "victim@example.com\nBcc: evil@attacker.example",
        "victim@example.com, evil@attacker.example",
        "Victim <victim@example.com>",
        "victim@example.com>\r\nX-Injected: yes",
        "no-at-sign.example.com",
        "",
    ],
)
def test_bad_customer_address_is_refused_not_sent(store_url, smtp, address):
    acc = make_account(make_class(), email_addr=address)
    inv = make_invoice(acc)
    d, r = dispatch_and_deliver(ctx_at(NOW), smtp.transport())
    assert smtp.inbox.messages() == []
    row = OutboxMessage.get(OutboxMessage.invoice == inv.id)
    assert row.status == mail.FAILED and "invalid recipient address" in row.last_error
    assert "\n" not in row.recipient and "\r" not in row.recipient
    # The invoice is issued all the same; the failed delivery waits for an operator.
    assert reload(inv).status == S.UNPAID
    assert [m.id for m in mail.failed_messages()] == [row.id]


@pytest.mark.parametrize("good", ["a@b.co", "first.last+tag@sub.example.org", "x_y-z@example-host.io"])
def test_check_address_accepts_plain_addresses(good):
    assert mail.check_address(good) == good


@given(st.text(max_size=80))
@hsettings(max_examples=300, deadline=None)
def test_no_customer_text_can_break_a_header_line(text):
    cleaned = mail.clean_header_text(text)
    assert "\r" not in cleaned and "\n" not in cleaned
    try:
        addr = mail.check_address(text)
    except mail.AddressError:
        return
    assert addr == text.strip() and "\n" not in addr and "\r" not in addr and "," not in addr


def test_smtp_down_messages_wait_with_backoff_then_go_out(store_url):
    server = SmtpServer()  # not started: nothing listens on its port
    invoices = make_approved(3)
    t0 = NOW
    jobs.dispatch_approved(ctx_at(t0))
    policy = mail.RetryPolicy(max_attempts=5, base_seconds=60, cap_seconds=3600)

    r = jobs.deliver_outbox(ctx_at(t0), transport=server.transport(), policy=policy)
    assert r.done == 0
    rows = list(OutboxMessage.select().order_by(OutboxMessage.id))
    assert [m.status for m in rows] == [mail.QUEUED] * 3
    # The server is down: the first message is retried in 1 min, the rest were not tried yet.
    assert rows[0].attempts == 1 and rows[0].next_attempt_at == t0 + dt.timedelta(seconds=60)
    assert "cannot connect" in rows[0].last_error

    # Second run 30 s later: the others are tried (and backed off) one per run; none lost.
    jobs.deliver_outbox(ctx_at(t0 + dt.timedelta(seconds=30)), transport=server.transport(), policy=policy)
    jobs.deliver_outbox(ctx_at(t0 + dt.timedelta(seconds=31)), transport=server.transport(), policy=policy)
    jobs.deliver_outbox(ctx_at(t0 + dt.timedelta(seconds=32)), transport=server.transport(), policy=policy)
    rows = list(OutboxMessage.select().order_by(OutboxMessage.id))
    assert [m.attempts for m in rows] == [1, 1, 1]
    # Still down at the first retry: the delay doubles.
    jobs.deliver_outbox(ctx_at(t0 + dt.timedelta(seconds=61)), transport=server.transport(), policy=policy)
    first = OutboxMessage.get_by_id(rows[0].id)
    assert first.attempts == 2 and first.next_attempt_at == t0 + dt.timedelta(seconds=61 + 120)

    server.start()
    try:
        later = t0 + dt.timedelta(minutes=10)
        r = jobs.deliver_outbox(ctx_at(later), transport=server.transport(), policy=policy)
        assert r.done == 3
        assert sorted(server.inbox.message_ids()) == sorted(m.message_id for m in rows)
        assert {m.status for m in OutboxMessage.select()} == {mail.SENT}
        # Nothing is sent twice by further runs.
        jobs.deliver_outbox(ctx_at(later + dt.timedelta(hours=1)), transport=server.transport(), policy=policy)
        assert len(server.inbox.messages()) == 3
    finally:
        server.stop()
    assert all(reload(i).status in (S.PAID, S.UNPAID) for i in invoices)


def test_a_long_outage_never_fails_mail(store_url):
    """Six hours without a server, one run a minute: every message is still
    queued (an outage says nothing about a message), and all go out after."""
    server = SmtpServer()  # nothing listens yet
    make_approved(3)
    jobs.dispatch_approved(ctx_at(NOW))
    policy = mail.RetryPolicy(max_attempts=3, base_seconds=60, cap_seconds=3600)
    for minute in range(0, 6 * 60, 1):
        jobs.deliver_outbox(ctx_at(NOW + dt.timedelta(minutes=minute)), transport=server.transport(), policy=policy)
    rows = list(OutboxMessage.select())
    assert {m.status for m in rows} == {mail.QUEUED}
    assert max(m.attempts for m in rows) > policy.max_attempts  # tried on, past the limit
    assert all(m.next_attempt_at <= NOW + dt.timedelta(hours=7) for m in rows)  # capped backoff
    assert {m.refusals for m in rows} == {0}
    server.start()
    try:
        # Back, but busy: its first refusal is one of max_attempts, not the last straw.
        server.inbox.refusal = "451 4.3.0 try again later"
        jobs.deliver_outbox(ctx_at(NOW + dt.timedelta(hours=7)), transport=server.transport(), policy=policy)
        assert {(m.status, m.refusals) for m in OutboxMessage.select() if m.refusals} == {(mail.QUEUED, 1)}
        server.inbox.refusal = None
        jobs.deliver_outbox(ctx_at(NOW + dt.timedelta(hours=9)), transport=server.transport(), policy=policy)
        assert {m.status for m in OutboxMessage.select()} == {mail.SENT}
        assert len(server.inbox.messages()) == 3
    finally:
        server.stop()


def test_after_max_attempts_failed_and_listed(store_url, cli):
    server = SmtpServer().start()
    server.inbox.refusal = "451 4.3.0 mailbox busy, try later"  # the server answers: it counts
    make_approved(1)
    jobs.dispatch_approved(ctx_at(NOW))
    policy = mail.RetryPolicy(max_attempts=3, base_seconds=10, cap_seconds=60)
    t = NOW
    try:
        for _ in range(3):
            jobs.deliver_outbox(ctx_at(t), transport=server.transport(), policy=policy)
            t += dt.timedelta(minutes=5)
    finally:
        server.stop()
    [row] = OutboxMessage.select()
    assert row.status == mail.FAILED and row.attempts == 3
    code, out, _ = cli("outbox", "--failed", "--json")
    assert code == 0
    doc = json.loads(out)
    assert [m["id"] for m in doc["messages"]] == [row.id]
    assert doc["messages"][0]["status"] == "failed" and "451" in doc["messages"][0]["last_error"]
    code, out, _ = cli("outbox", "--failed")
    assert code == 0 and "failed" in out and str(row.id) in out
    assert server.inbox.messages() == []

    # The operator retries once the server accepts again: delivered.
    server = SmtpServer(server.port).start()
    try:
        code, out, _ = cli("--now", "2026-11-20T12:00:00Z", "outbox", "--retry", str(row.id))
        assert code == 0 and "requeued: 1 done" in out
        jobs.deliver_outbox(ctx_at(dt.datetime(2026, 11, 20, 12, 0)), transport=server.transport(), policy=policy)
        assert OutboxMessage.get_by_id(row.id).status == mail.SENT
        assert len(server.inbox.messages()) == 1
    finally:
        server.stop()


def test_uncertain_is_listed_not_resent_and_operator_can_confirm(store_url, smtp, cli):
    make_approved(1)
    jobs.dispatch_approved(ctx_at(NOW))
    [row] = OutboxMessage.select()
    # What a crash between the final "." and the reply leaves behind:
    OutboxMessage.update(
        status=mail.UNCERTAIN,
        attempts=1,
        last_error="uncertain: interrupted after the message was handed to the SMTP server",
    ).where(OutboxMessage.id == row.id).execute()
    assert mail.recover_interrupted() == 0  # only "sending" rows go back to the queue
    jobs.deliver_outbox(ctx_at(NOW), transport=smtp.transport())
    assert smtp.inbox.messages() == []  # not resent blindly
    code, out, _ = cli("outbox", "--failed")
    assert code == 0 and "uncertain" in out and "--mark-sent" in out
    code, out, err = cli("outbox", "--mark-sent", str(row.id))
    assert code == 0, err
    assert OutboxMessage.get_by_id(row.id).status == mail.SENT
    code, out, err = cli("outbox", "--mark-sent", str(row.id))
    assert code == 1 and "not uncertain" in err


def test_sending_row_after_crash_is_requeued_and_sent_once(store_url, smtp):
    make_approved(2)
    jobs.dispatch_approved(ctx_at(NOW))
    first = OutboxMessage.select().order_by(OutboxMessage.id).first()
    # A crash after the claim and before the final ".": the server discarded it.
    OutboxMessage.update(status=mail.SENDING, attempts=1).where(OutboxMessage.id == first.id).execute()
    jobs.deliver_outbox(ctx_at(NOW), transport=smtp.transport())
    assert len(smtp.inbox.messages()) == 1  # the claimed one is left alone meanwhile
    assert mail.recover_interrupted() == 1
    jobs.deliver_outbox(ctx_at(NOW), transport=smtp.transport())
    assert sorted(smtp.inbox.message_ids()) == sorted(m.message_id for m in OutboxMessage.select())
    assert OutboxMessage.get_by_id(first.id).attempts == 2


def test_maildir_in_a_folder_that_does_not_exist_yet_is_created(store_url, tmp_path):
    """The default maildir lives in the user data dir, which a fresh machine
    (a store opened with --db elsewhere) does not have yet."""
    transport = mail.MaildirTransport(tmp_path / "data" / "tui-billing" / "maildir")
    make_approved(2)
    jobs.dispatch_approved(ctx_at(NOW))
    assert jobs.deliver_outbox(ctx_at(NOW), transport=transport).done == 2
    assert len(mailbox.Maildir(str(tmp_path / "data" / "tui-billing" / "maildir"), create=False)) == 2


def test_maildir_delivery_is_exactly_once_even_after_a_crash(store_url, tmp_path):
    transport = mail.MaildirTransport(tmp_path / "md")
    invoices = make_approved(3)
    jobs.dispatch_approved(ctx_at(NOW))
    r = jobs.deliver_outbox(ctx_at(NOW), transport=transport)
    assert r.done == 3
    box = mailbox.Maildir(str(tmp_path / "md"), create=False)
    assert len(box) == 3
    # Killed after the file was written and before "sent" was recorded:
    OutboxMessage.update(status=mail.SENDING).execute()
    assert mail.recover_interrupted() == 3
    r = jobs.deliver_outbox(ctx_at(NOW), transport=transport)
    assert r.done == 3 and len(mailbox.Maildir(str(tmp_path / "md"), create=False)) == 3
    # A mail reader moved one to cur/ with flags: still recognised.
    key, msg = next(iter(box.items()))
    msg.set_subdir("cur")
    msg.set_flags("S")
    box[key] = msg
    OutboxMessage.update(status=mail.SENDING).execute()
    mail.recover_interrupted()
    jobs.deliver_outbox(ctx_at(NOW), transport=transport)
    ids = sorted(m["Message-ID"] for m in mailbox.Maildir(str(tmp_path / "md"), create=False))
    assert ids == sorted(m.message_id for m in OutboxMessage.select())
    assert len(invoices) == 3


def test_message_id_is_deterministic_per_invoice_revision(store_url):
    inv = make_approved(1)[0]
    a = mail.invoice_message_id(inv, 1, "Billing <billing@example.com>")
    assert a == mail.invoice_message_id(inv, 1, "Billing <billing@example.com>")
    assert a != mail.invoice_message_id(inv, 2, "Billing <billing@example.com>")
    assert a.startswith("<") and a.endswith("@example.com>")


def test_queue_is_insert_or_ignore(store_url):
    from tui_billing.store.settings import load_settings

    inv = make_approved(1)[0]
    ctx = ctx_at(NOW)
    first = mail.queue_invoice(ctx, inv, load_settings())
    again = mail.queue_invoice(ctx, inv, load_settings())
    assert first.created and not again.created
    assert OutboxMessage.select().count() == 1 and again.message.id == first.message.id


def test_transport_config():
    t = mail.transport_from_config({})
    assert isinstance(t, mail.MaildirTransport)
    t = mail.transport_from_config(
        {
            "transport": "smtp",
            "host": "mx.example",
            "port": "2525",
            "starttls": "true",
            "username": "u",
            "password": "p",
        }
    )
    assert (t.host, t.port, t.starttls, t.username) == ("mx.example", 2525, True, "u")
    assert mail.transport_from_config({"host": "mx.example"}).port == 25
    for bad in (
        {"transport": "pigeon"},
        {"transport": "smtp"},
        {"host": "h", "port": "x"},
        {"host": "h", "starttls": "maybe"},
    ):
        with pytest.raises(mail.ConfigError):
            mail.transport_from_config(bad)


def test_outbox_lists_pending_and_json(store_url, cli):
    make_approved(2)
    jobs.dispatch_approved(ctx_at(NOW))
    code, out, _ = cli("outbox", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["counts"]["queued"] == 2 and len(doc["messages"]) == 2
    assert {m["status"] for m in doc["messages"]} == {"queued"}
    assert all(m["invoice"].startswith("INV-") for m in doc["messages"])
    code, out, _ = cli("outbox")
    assert code == 0 and "queued" in out
    code, _, err = cli("outbox", "--limit", "0")
    assert code == 2 and "limit" in err


def test_payment_rows_unchanged_by_delivery(store_url, smtp):
    make_approved(4)
    jobs.dispatch_approved(ctx_at(NOW))
    before = Payment.select().count()
    jobs.deliver_outbox(ctx_at(NOW), transport=smtp.transport())
    assert Payment.select().count() == before == 4


def _store_setting(key: str, value: str) -> None:
    """A setting as a store written before `settings` checked it holds it (straight into the table)."""
    from tui_billing.store.models import Setting

    (
        Setting.insert(key=key, value=value)
        .on_conflict(conflict_target=[Setting.key], update={Setting.value: value})
        .execute()
    )


def test_bad_mail_from_setting_delays_instead_of_failing(store_url, smtp):
    from tui_billing.store.settings import save_setting

    make_approved(2)
    jobs.dispatch_approved(ctx_at(NOW))
    # As a store written before `settings` checked addresses holds it (save_setting refuses it now).
    _store_setting("mail_from", "Billing <billing@example.com>\r\nBcc: evil@attacker.example")
    r = jobs.deliver_outbox(ctx_at(NOW), transport=smtp.transport())
    assert r.done == 0 and smtp.inbox.messages() == []
    rows = list(OutboxMessage.select().order_by(OutboxMessage.id))
    assert [m.status for m in rows] == [mail.QUEUED, mail.QUEUED]  # waits for the fix, not failed
    assert "mail_from" in rows[0].last_error
    save_setting("mail_from", "Northwind Billing <invoices@northwind.example>")
    r = jobs.deliver_outbox(ctx_at(NOW + dt.timedelta(hours=1)), transport=smtp.transport())
    assert r.done == 2
    assert {g.mail_from for g in smtp.inbox.messages()} == {"invoices@northwind.example"}


def test_digest_again_after_the_same_invoice_is_reissued(store_url, smtp):
    from tui_billing import workflow

    acc = make_account(make_class("Enterprise", "after_review", 5, 26))
    inv = make_invoice(acc, status=S.UNDER_REVIEW, review_deadline=NOW + dt.timedelta(days=5))
    assert jobs.notify_admins(ctx_at(NOW)).done == 1
    workflow.reissue_many(ctx_at(NOW, "alice"), [inv.id], "now")
    assert jobs.notify_admins(ctx_at(NOW)).done == 1  # same invoice, same clock: a second digest all the same
    jobs.deliver_outbox(ctx_at(NOW), transport=smtp.transport())
    ids = smtp.inbox.message_ids()
    assert len(ids) == 2 and len(set(ids)) == 2


def test_mail_the_server_has_not_taken_for_15_minutes_is_listed_as_stalled(store_url):
    server = SmtpServer()  # nothing listens
    make_approved(2)
    jobs.dispatch_approved(ctx_at(NOW))
    jobs.deliver_outbox(ctx_at(NOW), transport=server.transport())
    assert mail.stalled_messages(NOW + dt.timedelta(minutes=14)) == []
    stalled = mail.stalled_messages(NOW + dt.timedelta(minutes=16))
    assert len(stalled) == 1 and "cannot connect" in stalled[0].last_error  # tried once, still queued
    assert stalled[0].status == mail.QUEUED


# --------------------------------------------------------------------------
# Issue 14 (defect 3): a digest that failed on a bad admin_email setting goes
# to the corrected address, by `outbox --retry` or by the job loop itself.


def _store_admin_email(value: str) -> None:
    _store_setting("admin_email", value)


def _waiting_for_review():
    acc = make_account(make_class("Enterprise", "after_review", 5, 26))
    return make_invoice(acc, status=S.UNDER_REVIEW, review_deadline=NOW + dt.timedelta(days=5))


def test_a_digest_failed_on_a_bad_admin_email_is_retried_to_the_corrected_address(store_url, smtp, cli):
    from tui_billing.store.settings import save_setting

    inv = _waiting_for_review()
    _store_admin_email("admins@example.com\r\nBcc: evil@attacker.example")
    assert jobs.notify_admins(ctx_at(NOW)).done == 1
    [row] = OutboxMessage.select().where(OutboxMessage.kind == mail.DIGEST)
    assert row.status == mail.FAILED and "admin_email" in row.last_error
    jobs.deliver_outbox(ctx_at(NOW), transport=smtp.transport())
    assert smtp.inbox.messages() == []

    code, _, err = cli("outbox", "--retry", str(row.id))  # not fixed yet: refused, naming the setting
    assert code == 1 and "admin_email" in err
    assert OutboxMessage.get_by_id(row.id).status == mail.FAILED

    save_setting("admin_email", "billing-ops@northwind.example")
    code, out, err = cli("--now", "2026-11-20T10:00:00Z", "outbox", "--retry", str(row.id))
    assert code == 0 and "requeued: 1 done" in out, err
    jobs.deliver_outbox(ctx_at(NOW), transport=smtp.transport())
    [got] = smtp.inbox.messages()
    assert got.rcpt_tos == ["billing-ops@northwind.example"]
    assert got.message["Bcc"] is None
    assert inv.number in got.message.get_body(("plain",)).get_content()
    assert OutboxMessage.get_by_id(row.id).status == mail.SENT
    # Exactly once: later runs of both jobs send nothing more.
    later = ctx_at(NOW + dt.timedelta(hours=1))
    jobs.notify_admins(later)
    jobs.deliver_outbox(later, transport=smtp.transport())
    assert len(smtp.inbox.messages()) == 1


def test_the_job_loop_sends_a_digest_held_up_by_a_bad_admin_email_once_it_is_fixed(store_url, tmp_path):
    from tui_billing.store.settings import save_setting

    inv = _waiting_for_review()
    transport = mail.MaildirTransport(tmp_path / "md")
    _store_admin_email("not an address")
    for minute in range(3):  # the loop runs on while the setting is bad: nothing goes, nothing is lost
        at = ctx_at(NOW + dt.timedelta(minutes=minute))
        jobs.notify_admins(at)
        jobs.deliver_outbox(at, transport=transport)
    [row] = OutboxMessage.select().where(OutboxMessage.kind == mail.DIGEST)
    assert row.status == mail.FAILED and row.attempts == 0

    save_setting("admin_email", "billing-ops@northwind.example")
    for minute in range(3, 6):
        at = ctx_at(NOW + dt.timedelta(minutes=minute))
        jobs.notify_admins(at)
        jobs.deliver_outbox(at, transport=transport)
    [msg] = list(mailbox.Maildir(str(tmp_path / "md"), create=False))
    assert msg["To"] == "billing-ops@northwind.example"
    assert inv.number in msg.get_payload(decode=True).decode()
    assert [r.status for r in OutboxMessage.select().where(OutboxMessage.kind == mail.DIGEST)] == [mail.SENT]
    assert OutboxMessage.get_by_id(row.id).recipient == "billing-ops@northwind.example"


# --------------------------------------------------------------------------
# Claims and leases: their own columns (migration 0007), never last_error


def _failed_once(server_down: SmtpServer) -> OutboxMessage:
    """One invoice email, tried once against a server that is down: queued, with its error."""
    make_approved(1)
    jobs.dispatch_approved(ctx_at(NOW))
    jobs.deliver_outbox(ctx_at(NOW), transport=server_down.transport())
    [row] = OutboxMessage.select()
    assert row.status == mail.QUEUED and row.attempts == 1 and "cannot connect" in row.last_error
    return row


def test_a_claim_keeps_the_last_error_and_records_sender_and_lease_in_their_own_columns(store_url):
    row = _failed_once(SmtpServer())  # not started: nothing listens on its port
    due = row.next_attempt_at
    before = jobs.base.real_now()

    token = mail._claim(row.id, due, "billing-b.example|4711|99|ab|")
    claimed = OutboxMessage.get_by_id(row.id)
    assert token == 2 and claimed.status == mail.SENDING and claimed.attempts == 2
    assert claimed.last_error == row.last_error  # the previous attempt's error, not the claim
    assert claimed.next_attempt_at == due
    assert (row.claimed_by, row.claimed_until) == (None, None)  # the queued row held no claim
    assert claimed.claimed_by == "billing-b.example|4711|99|ab|"
    assert before + mail.SEND_LEASE <= claimed.claimed_until <= jobs.base.real_now() + mail.SEND_LEASE
    assert mail.claim_holder(claimed) == "billing-b.example|4711|99|ab|"
    assert mail.interrupted_reason(claimed) is None  # a live sender on another host, lease running
    assert mail.recover_interrupted(now=NOW) == 0

    mail._point_of_no_return(row.id, token)  # leaving "sending" ends the claim
    uncertain = OutboxMessage.get_by_id(row.id)
    assert uncertain.status == mail.UNCERTAIN and (uncertain.claimed_by, uncertain.claimed_until) == (None, None)
    assert mail.claim_holder(uncertain) is None


def test_the_lease_is_claimed_until_and_a_requeued_slow_sender_is_fenced_off(store_url):
    make_approved(1)
    jobs.dispatch_approved(ctx_at(NOW))
    [row] = OutboxMessage.select()
    slow = mail._claim(row.id, NOW, "slow-host|1|1|a|")
    # next_attempt_at says nothing about the lease any more:
    OutboxMessage.update(next_attempt_at=jobs.base.real_now() - dt.timedelta(hours=1)).execute()
    assert mail.recover_interrupted(now=NOW) == 0
    OutboxMessage.update(claimed_until=jobs.base.real_now() - dt.timedelta(seconds=1)).execute()
    assert mail.recover_interrupted(now=NOW) == 1
    requeued = OutboxMessage.get_by_id(row.id)
    assert (requeued.status, requeued.next_attempt_at) == (mail.QUEUED, NOW)
    assert (requeued.claimed_by, requeued.claimed_until) == (None, None)
    assert requeued.last_error == "requeued after an interrupted delivery (lease expired)"
    fresh = mail._claim(row.id, NOW, "fresh-host|2|2|b|")
    assert fresh == slow + 1
    with pytest.raises(mail.ClaimLost):
        mail._point_of_no_return(row.id, slow)
    mail._point_of_no_return(row.id, fresh)
    assert OutboxMessage.get_by_id(row.id).status == mail.UNCERTAIN


def test_every_way_out_of_sending_clears_the_claim(store_url, tmp_path):
    row = _failed_once(SmtpServer())  # retry: back to the queue
    assert (row.claimed_by, row.claimed_until) == (None, None)
    OutboxMessage.update(next_attempt_at=NOW).execute()
    assert jobs.deliver_outbox(ctx_at(NOW), transport=mail.MaildirTransport(tmp_path / "md")).done == 1
    sent = OutboxMessage.get_by_id(row.id)
    assert (sent.status, sent.claimed_by, sent.claimed_until, sent.last_error) == (mail.SENT, None, None, "")
    # A sender that is gone: requeued by recovery, claim cleared.
    make_approved(1, prefix="Other")
    jobs.dispatch_approved(ctx_at(NOW))
    other = OutboxMessage.select().where(OutboxMessage.status == mail.QUEUED).get()
    mail._claim(other.id, NOW)  # this process
    assert mail.recover_interrupted(exclusive=True, now=NOW) == 1
    back = OutboxMessage.get_by_id(other.id)
    assert (back.status, back.claimed_by, back.claimed_until) == (mail.QUEUED, None, None)


# -- migration 0007 carries the old claims over -----------------------------------


def test_migration_0007_moves_claims_out_of_last_error_and_recovery_still_works(bare_url):
    """A store of the last release with deliveries in flight: a live sender
    elsewhere, one whose lease ran out, one with no sender recorded, and a
    queued message with a real error."""
    import socket

    from playhouse.migrations import Runner

    from tui_billing.jobs.lock import _pid_namespace
    from tui_billing.store import db as store_db

    db = store_db.connect(bare_url, migrate=False)
    Runner(db, str(store_db.MIGRATIONS_DIR)).up(target="0006_account_search_text")
    now = jobs.base.real_now()
    live, gone = now + dt.timedelta(minutes=4), now - dt.timedelta(seconds=5)
    dead_here = f"{socket.gethostname()}|999999999||x|{_pid_namespace()}"
    rows = [  # message id, status, last_error, next_attempt_at
        ("<a@x>", "sending", "sending, claimed by other-host|123|456|y|", live),
        ("<b@x>", "sending", "sending, claimed by other-host|124|457|z|", gone),
        ("<c@x>", "sending", f"sending, claimed by {dead_here}", live),
        ("<d@x>", "sending", "", now),
        ("<e@x>", "queued", "451 4.3.0 mailbox busy", now),
    ]
    p = db.param
    for message_id, status, error, at in rows:
        db.execute_sql(
            f"INSERT INTO outbox_message (kind, revision, message_id, recipient, subject, body, status, attempts, "
            f"refusals, next_attempt_at, last_error, created_at) "
            f"VALUES ({p}, 0, {p}, {p}, {p}, {p}, {p}, 1, 0, {p}, {p}, {p})",
            (
                "digest",
                message_id,
                "ops@x.example",
                "s",
                "b",
                status,
                at.strftime("%Y-%m-%d %H:%M:%S"),
                error,
                now.strftime("%Y-%m-%d %H:%M:%S"),
            ),
        )
    assert "0007_outbox_lease" in store_db.apply_migrations(db)

    got = {m.message_id: m for m in OutboxMessage.select()}
    assert {k: (m.claimed_by, m.claimed_until, m.last_error) for k, m in got.items()} == {
        "<a@x>": ("other-host|123|456|y|", live, ""),
        "<b@x>": ("other-host|124|457|z|", gone, ""),
        "<c@x>": (dead_here, live, ""),
        "<d@x>": (None, None, ""),
        "<e@x>": (None, None, "451 4.3.0 mailbox busy"),
    }
    assert {k: mail.interrupted_reason(m) for k, m in got.items() if m.status == mail.SENDING} == {
        "<a@x>": None,
        "<b@x>": "lease expired",
        "<c@x>": "sender is gone",
        "<d@x>": "sender not recorded",
    }
    assert mail.recover_interrupted(now=NOW) == 3
    assert {m.message_id: m.status for m in OutboxMessage.select()} == {
        "<a@x>": mail.SENDING,
        "<b@x>": mail.QUEUED,
        "<c@x>": mail.QUEUED,
        "<d@x>": mail.QUEUED,
        "<e@x>": mail.QUEUED,
    }
