"""Shared pieces for the job and mail tests (no tests here).

A real SMTP server (aiosmtpd) in the test process, and small factories that
create classes, accounts and invoices with the real models.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import errno
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from tui_billing import statuses as S
from tui_billing.clock import Clock, zone
from tui_billing.store.models import Account, ChargeLine, CustomerClass, Invoice, Payment
from tui_billing.store.settings import format_number, load_settings, reserve
from tui_billing.workflow import Ctx

BIN = Path(sys.executable).with_name("tui-billing")
NOW = dt.datetime(2026, 11, 20, 10, 0, 0)  # naive UTC, like conftest.FIXED_NOW


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def ctx_at(moment: dt.datetime, actor: str = "test") -> Ctx:
    return Ctx(clock=Clock(tz=zone("UTC"), fixed=moment), actor=actor)


# --------------------------------------------------------------------------
# SMTP server


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: email.message.EmailMessage

    @property
    def message_id(self) -> str:
        return self.message["Message-ID"]


class Inbox:
    """aiosmtpd handler keeping every message it accepted."""

    def __init__(self):
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.refusal: str | None = None  # e.g. "451 4.3.0 busy": refuse every message with it

    async def handle_DATA(self, server, session, envelope):
        if self.refusal:
            return self.refusal
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), raw, msg))
        return "250 Message accepted for delivery"

    def messages(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def message_ids(self) -> list[str]:
        return [r.message_id for r in self.messages()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    def __init__(self, port: int | None = None):
        self.fixed_port = port is not None
        self.port = port or free_port()
        self.inbox = Inbox()
        self.controller = None

    def start(self) -> "SmtpServer":
        from aiosmtpd.controller import Controller

        for attempt in range(5):
            self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
            try:
                self.controller.start()
                return self
            except OSError as exc:
                # The free port was taken before we bound it (another xdist worker,
                # another test run): a new one, unless the test chose this port.
                if self.fixed_port or attempt == 4 or exc.errno != errno.EADDRINUSE:
                    raise
                self.controller.loop.close()  # its thread ended at the failed bind
                self.controller = None
                self.port = free_port()
        raise AssertionError("unreachable")

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def transport(self, **kw):
        from tui_billing.mail import SmtpTransport

        return SmtpTransport("127.0.0.1", self.port, timeout=10, **kw)

    def env(self) -> dict:
        return {
            "TUI_BILLING_SMTP_TRANSPORT": "smtp",
            "TUI_BILLING_SMTP_HOST": "127.0.0.1",
            "TUI_BILLING_SMTP_PORT": str(self.port),
        }


# --------------------------------------------------------------------------
# Data


def make_class(name="Direct", send_mode="immediately", hold_days=0, net_days=14) -> CustomerClass:
    return CustomerClass.create(name=name, send_mode=send_mode, hold_days=hold_days, net_days=net_days)


def make_account(
    cls: CustomerClass,
    name="Acme Widgets Inc",
    email_addr="billing@acme.example",
    balance=Decimal("0"),
    currency="EUR",
    model="postpay",
) -> Account:
    return Account.create(
        name=name,
        email=email_addr,
        account_type="business",
        customer_class=cls,
        currency=currency,
        balance=balance,
        payment_model=model,
        address="1 Market St\nBerlin",
    )


def make_invoice(
    account: Account,
    *,
    status=S.APPROVED,
    total=Decimal("1234.50"),
    period=(dt.date(2026, 10, 1), dt.date(2026, 10, 31)),
    issue_date=dt.date(2026, 11, 1),
    review_deadline=None,
    model=None,
    reissue_mode=None,
    reissue_after=None,
    net_days=None,
) -> Invoice:
    cls = CustomerClass.get_by_id(account.customer_class_id)
    net_days = cls.net_days if net_days is None else net_days
    seq = reserve("invoice", 1)
    inv = Invoice.create(
        number=format_number(load_settings().number_format, seq, issue_date),
        account=account,
        customer_class=cls,
        kind="regular",
        payment_model=model or account.payment_model,
        status=status,
        currency=account.currency,
        period_from=period[0],
        period_to=period[1],
        generated_at=None if status == S.OPEN else dt.datetime.combine(issue_date, dt.time(3)),
        issue_date=issue_date,
        due_date=None if status == S.OPEN else issue_date + dt.timedelta(days=net_days),
        review_deadline=review_deadline,
        subtotal=total,
        total=total,
        outstanding=total,
        approved_at=NOW - dt.timedelta(hours=1) if status == S.APPROVED else None,
        reissue_mode=reissue_mode,
        reissue_after=reissue_after,
        reissue_requested_at=NOW - dt.timedelta(hours=2) if reissue_mode else None,
    )
    ChargeLine.create(
        invoice=inv,
        position=1,
        description="Business Fibre 1 Gbit/s",
        service="Internet",
        quantity=Decimal("1"),
        discount=Decimal("0"),
        amount=total,
    )
    return inv


def make_approved(n: int, cls=None, prefix="Customer") -> list[Invoice]:
    cls = cls or CustomerClass.get_or_none(CustomerClass.name == "Direct") or make_class()
    out = []
    for i in range(n):
        acc = make_account(
            cls,
            name=f"{prefix} {i}",
            email_addr=f"billing+{prefix.lower()}{i}@example.com",
            balance=Decimal("5000") if i % 3 == 0 else Decimal("0"),
        )
        out.append(make_invoice(acc, total=Decimal(100 + i) + Decimal("0.25"), issue_date=dt.date(2026, 11, 19)))
    return out


def reload(inv: Invoice) -> Invoice:
    return Invoice.get_by_id(inv.id)


def payments_of(inv: Invoice) -> list[Payment]:
    return list(Payment.select().where(Payment.invoice == inv.id))


# --------------------------------------------------------------------------
# The CLI in a subprocess


def cli_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUI_BILLING_")}
    env.update(TZ="UTC", PYTHONUNBUFFERED="1", XDG_CONFIG_HOME=extra.pop("XDG_CONFIG_HOME", "/nonexistent"))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_cli(args: list[str], env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=timeout)


def spawn(args: list[str], env: dict, stderr_path: Path) -> subprocess.Popen:
    fh = open(stderr_path, "ab")
    proc = subprocess.Popen([str(BIN), *args], env=env, stdout=subprocess.DEVNULL, stderr=fh)
    fh.close()
    return proc


def wait_for(predicate, timeout: float = 20.0, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")


@contextlib.contextmanager
def terminated(proc: subprocess.Popen):
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
