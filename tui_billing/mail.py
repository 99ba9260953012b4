"""Mail: the outbox, messages that cannot be forged from customer data, delivery.

Every email goes through the `outbox_message` table.  A row is queued inside
the transaction that makes it necessary (an invoice is queued in the same
transaction that marks it sent), so "the invoice went out" and "its email
is waiting" are never apart.  `deliver_due` then hands queued rows to a
transport: SMTP (host, port, STARTTLS, login) or a local Maildir folder (the
default).

Delivery states (`OutboxMessage.status`):

    queued ──claim──► sending ──(SMTP: just before the final ".")──► uncertain ──reply 250──► sent
       ▲                 │                                              │
       └── retry (backoff) ◄── connection/4xx error, or a crash while "sending"
                                              failed ◄── 5xx, bad address, too many attempts
                                          uncertain ◄── crash or lost connection after the "."

Exactly-once, precisely:

- Maildir: exactly once.  A message's file name is derived from its
  Message-ID and is created with link(2), which refuses to overwrite, so a
  retry after a crash finds the file (in new/ or cur/) instead of writing a
  second one.
- SMTP: a server delivers a message only after it has received the final
  "<CRLF>.<CRLF>" of DATA.  Everything up to that point is retried freely (a
  crash leaves the row "sending"; a loop puts it back in the queue once its
  sender is known to be dead or its lease ran out — see recover_interrupted —
  and the server has discarded the half-sent transaction).  Just before the final
  dot the row is committed as "uncertain"; after the server's reply it is
  committed as "sent" (or back to queued/failed if the server refused it).  A
  crash or a dropped connection between those two commits leaves the row
  "uncertain": it is NOT resent automatically (at-most-once for that one
  message) and `tui-billing outbox --failed` lists it for an operator, who can
  check the server's log for its Message-ID and `--mark-sent` or `--retry` it.
  In practice the server almost always did get it: the only way to lose the
  message is a crash in the microseconds between the "uncertain" commit and
  writing three bytes to the socket.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import secrets
import smtplib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, getaddresses
from pathlib import Path

from .config import ConfigError
from .money import format_money
from .store.models import Account, Invoice, InvoicePdf, OutboxMessage, database

QUEUED, SENDING, UNCERTAIN, SENT, FAILED = "queued", "sending", "uncertain", "sent", "failed"
STATUSES = (QUEUED, SENDING, UNCERTAIN, SENT, FAILED)
PROBLEM_STATUSES = (FAILED, UNCERTAIN)  # what `outbox --failed` lists: an operator must look
PENDING_STATUSES = (QUEUED, SENDING, UNCERTAIN, FAILED)  # everything not (known to be) delivered

INVOICE, DIGEST = "invoice", "digest"


class AddressError(ValueError):
    """An address that cannot be used in a header or an envelope; says why."""


class DeliveryError(Exception):
    """The message was not delivered (definitely).  `permanent`: do not retry."""

    def __init__(self, reason: str, *, permanent: bool = False, connection: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.connection = connection  # the server itself is unreachable: stop this run


class Uncertain(Exception):
    """The final "." was written but no reply came: maybe delivered, maybe not."""


class ClaimLost(Exception):
    """Another sender took the message over; abort without delivering."""


# --------------------------------------------------------------------------
# Addresses and header text: nothing from customer data becomes a header.

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")


def clean_header_text(text: object, limit: int = 200) -> str:
    """Customer text for a header: CR, LF and other control characters become
    spaces, runs of white space one space; at most `limit` characters."""
    value = " ".join(_CONTROL.sub(" ", str(text or "")).split())
    return value[:limit].rstrip()


def check_address(raw: str | None) -> str:
    """One plain ASCII address `local@domain`, or AddressError saying why not.

    Strict on purpose: no display name, no list, no comments, no line breaks,
    so an address typed into an account can never add a header or a
    recipient.
    """
    text = raw or ""
    if _CONTROL.search(text):
        raise AddressError("contains a line break or control character")
    text = text.strip()
    if not text:
        raise AddressError("is empty")
    if len(text) > 254:
        raise AddressError("is longer than 254 characters")
    pairs = getaddresses([text])
    if len(pairs) != 1 or pairs[0] != ("", text):
        raise AddressError(f"{text!r} is not exactly one plain address")
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"{text!r} has no @domain")
    if not text.isascii():
        raise AddressError(f"{text!r} is not an ASCII address")
    if len(local) > 64 or not _LOCAL.fullmatch(local):
        raise AddressError(f"{text!r} has an invalid local part")
    if not _DOMAIN.fullmatch(domain):
        raise AddressError(f"{text!r} has an invalid domain")
    Address(addr_spec=text)  # the email package agrees (raises on anything odd)
    return text


def parse_mailbox(raw: str) -> tuple[str, str]:
    """'Billing <billing@example.com>' -> ('Billing', 'billing@example.com')."""
    text = raw or ""
    if _CONTROL.search(text):
        raise AddressError("contains a line break or control character")
    pairs = getaddresses([text.strip()])
    if len(pairs) != 1 or not pairs[0][1]:
        raise AddressError(f"{text.strip()!r} is not exactly one address")
    name, addr = pairs[0]
    return clean_header_text(name, 100), check_address(addr)


def _domain_of(mail_from: str) -> str:
    try:
        return parse_mailbox(mail_from)[1].rpartition("@")[2].lower()
    except AddressError:
        return "tui-billing.invalid"


def _token(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode("utf-8", "surrogatepass")).hexdigest()[:16]


def invoice_message_id(inv: Invoice, revision: int, mail_from: str) -> str:
    """Deterministic: the same invoice revision always has the same Message-ID."""
    token = _token(inv.id, inv.number, revision, inv.account_id, inv.period_from)
    return f"<invoice.{inv.id}.r{revision}.{token}@{_domain_of(mail_from)}>"


def digest_message_id(invoices: Iterable[Invoice], mail_from: str, at: dt.datetime) -> str:
    """Unique per digest: the invoices and revisions it lists, and when."""
    pairs = sorted((i.id, i.revision) for i in invoices)
    token = _token(at.isoformat(), *(f"{i}.{r}" for i, r in pairs))
    return f"<review-digest.{at:%Y%m%d%H%M%S}.{len(pairs)}.{token}@{_domain_of(mail_from)}>"


def attachment_filename(number: str) -> str:
    try:
        from .pdf import safe_filename
    except ImportError:  # pragma: no cover - pdf.py always has it today
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", str(number)).strip("._") or "invoice"
        return f"{stem[:120]}.pdf"
    return safe_filename(number)


# --------------------------------------------------------------------------
# Queueing (called inside the caller's transaction)

@dataclass
class Queued:
    message: OutboxMessage
    created: bool  # False: it was already queued (idempotent re-run)


def invoice_subject(inv: Invoice, settings) -> str:
    seller = clean_header_text(settings["seller_name"], 120)
    return clean_header_text(f"Invoice {inv.number} from {seller} — {format_money(inv.total, inv.currency)}", 300)


def invoice_body(inv: Invoice, account: Account, settings, *, paid: bool | None = None) -> str:
    """The invoice email's text; `paid` (after dispatch) says what to do next."""
    cur = inv.currency
    lines = [
        f"Dear {clean_header_text(account.name, 200) or 'customer'},",
        "",
        f"please find attached invoice {inv.number} for the period "
        f"{inv.period_from:%d %b %Y} – {inv.period_to:%d %b %Y}.",
        "",
        f"  Invoice number:  {inv.number}",
        f"  Issue date:      {inv.issue_date:%Y-%m-%d}",
        f"  Period:          {inv.period_from:%Y-%m-%d} to {inv.period_to:%Y-%m-%d}",
        f"  Total:           {format_money(inv.total, cur)}",
        f"  Due date:        {inv.due_date:%Y-%m-%d}" if inv.due_date else "  Due date:        —",
        "",
    ]
    if paid is True:
        lines.append("This invoice has been paid from your account balance: there is nothing to pay.")
    elif paid is False:
        due = f" by {inv.due_date:%d %B %Y}" if inv.due_date else ""
        lines.append(f"Please pay {format_money(inv.outstanding, cur)}{due}.")
    lines += ["", "Kind regards,", settings["seller_name"], *settings["seller_address"].splitlines()]
    return "\n".join(lines) + "\n"


def queue_invoice(ctx, inv: Invoice, settings) -> Queued:
    """Queue the email of `inv`'s current revision (insert-or-ignore).

    A customer address that is not usable still gets a row, status failed
    with the reason, so the failure is listed by `outbox --failed` (fix the
    account's email, then `outbox --retry`).
    """
    account = Account.get_by_id(inv.account_id)
    now = ctx.clock.now()
    status, error, recipient = QUEUED, "", account.email
    try:
        recipient = check_address(account.email)
    except AddressError as exc:
        status, error = FAILED, f"invalid recipient address: {exc}"
        recipient = clean_header_text(account.email, 254)
    row = dict(
        kind=INVOICE, invoice=inv.id, revision=inv.revision,
        message_id=invoice_message_id(inv, inv.revision, settings["mail_from"]),
        recipient=recipient, subject=invoice_subject(inv, settings),
        body=invoice_body(inv, account, settings), status=status, attempts=0,
        next_attempt_at=now, last_error=error, created_at=now)
    before = _find(INVOICE, inv.id, inv.revision)
    if before is None:
        OutboxMessage.insert(row).on_conflict_ignore().execute()
    msg = _find(INVOICE, inv.id, inv.revision)
    return Queued(msg, created=before is None and msg is not None)


def _find(kind: str, invoice_id: int, revision: int) -> OutboxMessage | None:
    return (OutboxMessage.select()
            .where((OutboxMessage.kind == kind) & (OutboxMessage.invoice == invoice_id)
                   & (OutboxMessage.revision == revision)).first())


def queue_digest(ctx, invoices: list[Invoice], settings) -> Queued:
    """One email to the admin address listing `invoices` (now under review).

    Invoices the job loop held for a person (held_at set: flagged at the end
    of their hold) are listed apart, under "Held for a person (flagged)",
    each with its flags' reasons."""
    from .risk import parse_flags
    from .workflow import hold_score

    now = ctx.clock.now()
    n = len(invoices)
    status, error, recipient = QUEUED, "", settings["admin_email"]
    try:
        recipient = check_address(settings["admin_email"])
    except AddressError as exc:
        status, error = FAILED, f"{BAD_ADMIN_EMAIL}{exc}"
        recipient = clean_header_text(recipient, 254)
    fresh = [inv for inv in invoices if getattr(inv, "held_at", None) is None]
    held = [inv for inv in invoices if getattr(inv, "held_at", None) is not None]
    holds = not settings.auto_approve_flagged
    threshold = hold_score(settings)

    def head(inv: Invoice) -> str:
        return (f"  {inv.number:<20} {clean_header_text(inv.account.name, 40):<40} "
                f"{format_money(inv.total, inv.currency):>18}")

    lines: list[str] = []
    if fresh:
        k = len(fresh)
        lines += [f"{k} invoice{'s are' if k != 1 else ' is'} waiting for your review:", ""]
        for inv in fresh:
            deadline = (ctx.clock.local(inv.review_deadline).strftime("%Y-%m-%d %H:%M")
                        if inv.review_deadline else "—")
            fate = "held (flagged)" if holds and (inv.risk_score or 0) >= threshold else "auto-approved"
            lines.append(f"{head(inv)}   {fate} {deadline}")
        lines.append("")
    if held:
        k = len(held)
        lines += ["Held for a person (flagged): "
                  f"{k} invoice{'s' if k != 1 else ''} reached the end of the hold and "
                  f"{'were' if k != 1 else 'was'} not approved automatically:", ""]
        for inv in held:
            lines.append(head(inv))
            flags = parse_flags(inv.risk_flags)
            lines += [f"      {clean_header_text(f.short, 40)}: {clean_header_text(f.reason, 300)}" for f in flags]
            if not flags:
                lines.append(f"      risk score {inv.risk_score or 0}")
        lines += ["", "A person approves each of them after checking its flags (the console asks to "
                  "accept them), or with:", "  tui-billing approve NUMBER --include-flagged", ""]
    lines += ["Review them in the console (tui-billing) or with:",
              "  tui-billing find --status under_review", "",
              "Invoices not approved, adjusted or reissued by their deadline are approved "
              "automatically and sent to the customer" +
              ("; flagged ones are held for a person instead." if holds else ".")]
    if fresh and held:
        subject = f"{len(fresh)} invoice{'s' if len(fresh) != 1 else ''} waiting for review, {len(held)} held"
    elif held:
        subject = f"{n} flagged invoice{'s' if n != 1 else ''} held for review"
    else:
        subject = f"{n} invoice{'s' if n != 1 else ''} waiting for review"
    message_id = digest_message_id(invoices, settings["mail_from"], now)
    OutboxMessage.insert(
        kind=DIGEST, invoice=None, revision=0, message_id=message_id, recipient=recipient,
        subject=clean_header_text(subject, 300),
        body="\n".join(lines) + "\n", status=status, attempts=0, next_attempt_at=now,
        last_error=error, created_at=now).on_conflict_ignore().execute()
    msg = OutboxMessage.get(OutboxMessage.message_id == message_id)
    return Queued(msg, created=True)


# --------------------------------------------------------------------------
# Building the message at delivery time

def build_message(msg: OutboxMessage, settings) -> tuple[EmailMessage, str, str]:
    """(message, envelope sender, envelope recipient); AddressError or
    DeliveryError(permanent) when it cannot be built."""
    try:
        from_name, from_addr = parse_mailbox(settings["mail_from"])
    except AddressError as exc:  # every message would fail: wait for the setting to be fixed
        raise DeliveryError(f"the mail_from setting is not a usable address: {exc}", connection=True) from None
    rcpt = check_address(msg.recipient)
    display = ""
    pdf_data = None
    inv = None
    if msg.kind == INVOICE and msg.invoice_id:
        inv = Invoice.get_or_none(Invoice.id == msg.invoice_id)
        if inv is None:
            raise DeliveryError("its invoice no longer exists", permanent=True)
        display = clean_header_text(Account.get_by_id(inv.account_id).name, 100)
        pdf_data = _pdf_for(inv, msg.revision)
    m = EmailMessage(policy=SMTP_POLICY)
    m["From"] = Address(display_name=from_name, addr_spec=from_addr)
    m["To"] = Address(display_name=display, addr_spec=rcpt)
    m["Subject"] = clean_header_text(msg.subject, 300)
    m["Date"] = format_datetime(msg.created_at.replace(tzinfo=dt.timezone.utc))
    m["Message-ID"] = msg.message_id
    m["Auto-Submitted"] = "auto-generated"
    m.set_content(msg.body)
    if pdf_data is not None:
        m.add_attachment(pdf_data, maintype="application", subtype="pdf",
                         filename=attachment_filename(inv.number))
    return m, from_addr, rcpt


def _pdf_for(inv: Invoice, revision: int) -> bytes:
    row = (InvoicePdf.select(InvoicePdf.data, InvoicePdf.note)
           .where((InvoicePdf.invoice == inv.id) & (InvoicePdf.revision == revision)).first())
    if row is not None and not row.note:  # a customer never gets a PDF marked DRAFT
        return bytes(row.data)
    if inv.revision == revision:  # kept PDF gone (should not happen): render it again
        from . import documents

        return documents.store_pdf(inv)
    raise DeliveryError(f"the PDF of revision {revision} is no longer stored", permanent=True)


# --------------------------------------------------------------------------
# Transports

class MaildirTransport:
    """Deliver into a local Maildir (mailbox.Maildir layout); idempotent."""
    name = "maildir"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()

    def describe(self) -> str:
        return f"maildir {self.path}"

    def _ensure(self) -> None:
        """The maildir and every missing folder above it, owner only (0700).

        Maildir(create=True) would make only the last folder; the default one
        lives in a user data dir a fresh account may not have yet.  A folder
        that cannot be made stops the run like a server that is down (the
        mail waits, listed as stalled with this reason), never per message."""
        from .safefile import make_dirs

        try:
            for sub in ("tmp", "new", "cur"):
                make_dirs(self.path / sub)
        except OSError as exc:
            raise DeliveryError(f"cannot create the maildir {self.path}: {exc.strerror or exc}",
                                connection=True) from exc

    @staticmethod
    def key(message_id: str) -> str:
        return "tui-billing." + hashlib.sha256(message_id.encode()).hexdigest()[:40]

    def contains(self, message_id: str) -> bool:
        key = self.key(message_id)
        if (self.path / "new" / key).exists():
            return True
        cur = self.path / "cur"
        if (cur / key).exists():
            return True
        try:
            return any(name.startswith(key + ":") for name in os.listdir(cur))
        except FileNotFoundError:
            return False

    def deliver(self, message_id: str, sender: str, recipient: str, data: bytes,
                point_of_no_return: Callable[[], None]) -> str:
        self._ensure()
        if self.contains(message_id):
            return "already in the maildir"
        from .safefile import open_exclusive

        key = self.key(message_id)
        tmp = self.path / "tmp" / f"{key}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            with open_exclusive(tmp) as fh:  # owner only, never through a link
                fh.write(data.replace(b"\r\n", b"\n"))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, self.path / "new" / key)  # never overwrites: exactly once
            except FileExistsError:
                return "already in the maildir"
            _fsync_dir(self.path / "new")
        except OSError as exc:
            raise DeliveryError(f"cannot write to {self.path}: {exc}") from exc
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return "delivered"

    def close(self) -> None:
        pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class SmtpTransport:
    """SMTP with optional STARTTLS (or implicit TLS) and login.

    One connection is reused for a run.  DATA is written in two steps so the
    point of no return (the final ".") can be recorded just before it.
    """
    name = "smtp"

    def __init__(self, host: str, port: int = 25, *, starttls: bool = False, tls: bool = False,
                 username: str | None = None, password: str | None = None, timeout: float = 30.0,
                 local_hostname: str | None = None):
        self.host, self.port = host, port
        self.starttls, self.tls = starttls, tls
        self.username, self.password = username, password
        self.timeout = timeout
        self.local_hostname = local_hostname
        self._conn: smtplib.SMTP | None = None

    def describe(self) -> str:
        mode = " (implicit TLS)" if self.tls else " (STARTTLS)" if self.starttls else ""
        return f"smtp {self.host}:{self.port}{mode}"

    def _connect(self) -> smtplib.SMTP:
        try:
            if self.tls:
                conn = smtplib.SMTP_SSL(self.host, self.port, local_hostname=self.local_hostname,
                                        timeout=self.timeout, context=ssl.create_default_context())
            else:
                conn = smtplib.SMTP(self.host, self.port, local_hostname=self.local_hostname,
                                    timeout=self.timeout)
            conn.ehlo()
            if self.starttls:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"login to {self.host}:{self.port} refused: {_reply(exc)}",
                                connection=True) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"cannot connect to {self.host}:{self.port}: {exc}",
                                connection=True) from exc
        return conn

    def _abort(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()  # no QUIT: a half-sent DATA is discarded by the server
            except Exception:
                pass

    def deliver(self, message_id: str, sender: str, recipient: str, data: bytes,
                point_of_no_return: Callable[[], None]) -> str:
        fresh = self._conn is None
        if fresh:
            self._conn = self._connect()
        try:
            code, resp = self._conn.mail(sender)
        except (OSError, smtplib.SMTPServerDisconnected):
            if fresh:
                self._abort()
                raise DeliveryError(f"{self.host}:{self.port} closed the connection", connection=True)
            self._abort()  # an idle connection the server dropped: one reconnect
            self._conn = self._connect()
            code, resp = self._conn.mail(sender)
        conn = self._conn
        try:
            if code != 250:
                self._rset()
                raise DeliveryError(f"MAIL FROM refused: {code} {_text(resp)}", permanent=code >= 500)
            code, resp = conn.rcpt(recipient)
            if code not in (250, 251):
                self._rset()
                raise DeliveryError(f"recipient {recipient} refused: {code} {_text(resp)}", permanent=code >= 500)
            code, resp = conn.docmd("DATA")
            if code != 354:
                self._rset()
                raise DeliveryError(f"DATA refused: {code} {_text(resp)}", permanent=code >= 500)
            payload = re.sub(rb"(?m)^\.", b"..", data)
            if not payload.endswith(b"\r\n"):
                payload += b"\r\n"
            conn.sock.sendall(payload)
        except (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException) as exc:
            self._abort()
            raise DeliveryError(f"{self.host}:{self.port}: {exc}") from exc
        try:
            point_of_no_return()
        except BaseException:
            self._abort()  # no final dot: the server drops the transaction
            raise
        try:
            conn.sock.sendall(b".\r\n")
            code, resp = conn.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._abort()
            raise Uncertain(f"connection lost after the message was handed to {self.host}:{self.port} "
                            f"and before its reply ({exc})") from exc
        if code != 250:
            if code == -1 or code >= 600 or code < 200:
                self._abort()
                raise Uncertain(f"no valid reply after the message was handed to {self.host}:{self.port}")
            raise DeliveryError(f"message refused: {code} {_text(resp)}", permanent=code >= 500)
        return f"{code} {_text(resp)}"[:200]

    def _rset(self) -> None:
        try:
            self._conn.rset()
        except Exception:
            self._abort()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except Exception:
                try:
                    conn.close()
                except Exception:
                    pass


def _text(resp) -> str:
    if isinstance(resp, bytes):
        resp = resp.decode("utf-8", "replace")
    return " ".join(str(resp).split())[:300]


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return f"{exc.smtp_code} {_text(exc.smtp_error)}"


# --------------------------------------------------------------------------
# Configuration

def default_maildir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("tui-billing", appauthor=False)) / "maildir"


def _bool(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"mail.{name}: {value!r} is not true or false")


def _number(name: str, value, kind=int, low=1, high=None):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"mail.{name}: {value!r} is not a number") from None
    if number < low or (high is not None and number > high):
        raise ConfigError(f"mail.{name}: {value!r} must be between {low} and {high or 'any'}")
    return number


def transport_from_config(cfg: dict | None):
    """The transport named by the [mail] table / TUI_BILLING_SMTP_* variables.

    transport = "maildir" (default; folder `maildir`, else the user data
    dir) or "smtp" (host, port, starttls, tls, username, password, timeout).
    Naming a host without a transport means smtp.
    """
    cfg = dict(cfg or {})
    kind = str(cfg.get("transport") or ("smtp" if cfg.get("host") else "maildir")).strip().lower()
    if kind == "maildir":
        return MaildirTransport(cfg.get("maildir") or default_maildir())
    if kind != "smtp":
        raise ConfigError(f"mail.transport: {kind!r} is not smtp or maildir")
    host = str(cfg.get("host") or "").strip()
    if not host:
        raise ConfigError("mail.host: required for the smtp transport (TUI_BILLING_SMTP_HOST)")
    starttls = _bool("starttls", cfg.get("starttls", False))
    tls = _bool("tls", cfg.get("tls", False))
    if starttls and tls:
        raise ConfigError("mail.starttls: choose starttls or tls, not both")
    port = _number("port", cfg.get("port") or (465 if tls else 587 if starttls else 25), int, 1, 65535)
    return SmtpTransport(host, port, starttls=starttls, tls=tls, username=cfg.get("username") or None,
                         password=cfg.get("password") or None,
                         timeout=_number("timeout", cfg.get("timeout", 30), float, 1, 600),
                         local_hostname=cfg.get("local_hostname") or None)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 60.0  # doubles per attempt: 1, 2, 4 … minutes
    cap_seconds: float = 3600.0

    def delay(self, attempts: int) -> dt.timedelta:
        seconds = min(self.base_seconds * (2 ** max(attempts - 1, 0)), self.cap_seconds)
        return dt.timedelta(seconds=seconds)

    @classmethod
    def from_config(cls, cfg: dict | None) -> "RetryPolicy":
        cfg = cfg or {}
        return cls(max_attempts=_number("max_attempts", cfg.get("max_attempts", cls.max_attempts), int, 1, 1000),
                   base_seconds=_number("retry_seconds", cfg.get("retry_seconds", cls.base_seconds), float, 0, 86400),
                   cap_seconds=_number("retry_max_seconds", cfg.get("retry_max_seconds", cls.cap_seconds),
                                       float, 0, 7 * 86400))


# --------------------------------------------------------------------------
# Delivery

@dataclass
class DeliveryResult:
    sent: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    uncertain: list[int] = field(default_factory=list)
    skipped: int = 0
    stopped_early: bool = False


def _log_fields(msg: OutboxMessage) -> dict:
    number = None
    if msg.invoice_id:
        number = Invoice.select(Invoice.number).where(Invoice.id == msg.invoice_id).scalar()
    return {"invoice": number, "message": msg.message_id, "kind": msg.kind, "outbox": msg.id}


# A row in "sending" records who sends it and until when: `last_error` holds
# CLAIM_MARK + the sender (the job loop's holder "host|pid|start|random|pidns")
# and `next_attempt_at` the end of the lease (real UTC clock; while a row is
# sending, its next attempt is meaningless).  recover_interrupted() puts a
# row back in the queue only when its sender is known to be dead or its lease
# ran out; even then the attempts token keeps a sender that was merely slow
# from completing (ClaimLost before the final ".").
SEND_LEASE = dt.timedelta(minutes=5)
CLAIM_MARK = "sending, claimed by "


def sender_id() -> str:
    """This process as a sender (the same form as a job loop's holder)."""
    from .jobs.lock import make_holder

    global _SENDER
    if _SENDER is None or _SENDER[0] != os.getpid():
        _SENDER = (os.getpid(), make_holder())
    return _SENDER[1]


_SENDER: tuple[int, str] | None = None


def _real_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


def _claim(msg_id: int, now: dt.datetime, holder: str | None = None) -> int | None:
    """queued -> sending, attempts + 1, sender and lease recorded; returns the
    new attempts (the claim token).  The conditional UPDATE is the claim: of
    several loops exactly one moves the row."""
    holder = holder or sender_id()
    with database.atomic():
        n = (OutboxMessage.update(status=SENDING, attempts=OutboxMessage.attempts + 1,
                                  next_attempt_at=_real_now() + SEND_LEASE,
                                  last_error=(CLAIM_MARK + holder)[:2000])
             .where((OutboxMessage.id == msg_id) & (OutboxMessage.status == QUEUED)
                    & (OutboxMessage.next_attempt_at <= now))
             .execute())
        if n != 1:
            return None
        return OutboxMessage.select(OutboxMessage.attempts).where(OutboxMessage.id == msg_id).scalar()


def _move(msg_id: int, token: int, from_status: tuple[str, ...], **changes) -> bool:
    n = (OutboxMessage.update(**changes)
         .where((OutboxMessage.id == msg_id) & (OutboxMessage.attempts == token)
                & OutboxMessage.status.in_(from_status))
         .execute())
    return n == 1


def deliver_due(ctx, transport, *, policy: RetryPolicy | None = None, limit: int = 200,
                stop=None, log: Callable[..., None] | None = None, job: str = "deliver_outbox",
                holder: str | None = None) -> DeliveryResult:
    """Send queued messages whose next attempt is due (next_attempt_at <= now).

    Several senders (job loops on a PostgreSQL store) may run this at once:
    each message is claimed (queued -> sending) by exactly one of them.
    `holder` names this sender on its claims (default: this process)."""
    from .store.settings import load_settings

    policy = policy or RetryPolicy()
    log = log or (lambda *a, **k: None)
    result = DeliveryResult()
    settings = load_settings()
    now = ctx.clock.now()
    ids = [r.id for r in OutboxMessage.select(OutboxMessage.id)
           .where((OutboxMessage.status == QUEUED) & (OutboxMessage.next_attempt_at <= now))
           .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(limit)]
    try:
        for msg_id in ids:
            if stop is not None and stop.is_set():
                result.stopped_early = True
                break
            now = ctx.clock.now()
            token = _claim(msg_id, now, holder)
            if token is None:
                result.skipped += 1  # someone else took it, or it is no longer due
                continue
            msg = OutboxMessage.get_by_id(msg_id)
            fields = _log_fields(msg)
            try:
                message, sender, rcpt = build_message(msg, settings)
                data = message.as_bytes(policy=SMTP_POLICY)
                outcome = transport.deliver(
                    msg.message_id, sender, rcpt, data,
                    lambda: _point_of_no_return(msg_id, token))
            except ClaimLost:
                result.skipped += 1
                log(job, **fields, action="skipped", reason="claimed by another sender")
                continue
            except Uncertain as exc:
                _move(msg_id, token, (UNCERTAIN,), last_error=f"uncertain: {exc}"[:2000])
                result.uncertain.append(msg_id)
                log(job, **fields, action="uncertain", to=msg.recipient, reason=str(exc))
                continue
            except (AddressError, DeliveryError) as exc:
                permanent = isinstance(exc, AddressError) or exc.permanent
                reason = f"invalid address: {exc}" if isinstance(exc, AddressError) else exc.reason
                # The server being down says nothing about this message: it is
                # retried (at the capped backoff) however long the outage lasts,
                # never failed for it.  max_attempts counts the server's answers.
                outage = isinstance(exc, DeliveryError) and exc.connection and not permanent
                refusals = msg.refusals + (0 if outage else 1)
                # From "uncertain" too: a refusal after the final "." is a definite answer.
                if permanent or refusals >= policy.max_attempts:
                    _move(msg_id, token, (SENDING, UNCERTAIN), status=FAILED, last_error=reason[:2000],
                          refusals=refusals)
                    result.failed.append(msg_id)
                    log(job, **fields, action="failed", attempts=token, to=msg.recipient, reason=reason)
                else:
                    later = ctx.clock.now() + policy.delay(token)
                    _move(msg_id, token, (SENDING, UNCERTAIN), status=QUEUED, next_attempt_at=later,
                          last_error=reason[:2000], refusals=refusals)
                    result.retrying.append(msg_id)
                    log(job, **fields, action="retry", attempts=token,
                        next_attempt=later.strftime("%Y-%m-%dT%H:%M:%SZ"), reason=reason)
                if isinstance(exc, DeliveryError) and exc.connection:
                    result.stopped_early = True  # the server is down: the rest waits for the next run
                    break
                continue
            except Exception as exc:  # a bug or a broken PDF: retry later, never lose the row
                reason = f"{type(exc).__name__}: {exc}"
                later = ctx.clock.now() + policy.delay(token)
                refusals = msg.refusals + 1
                status = FAILED if refusals >= policy.max_attempts else QUEUED
                _move(msg_id, token, (SENDING,), status=status, next_attempt_at=later, last_error=reason[:2000],
                      refusals=refusals)
                (result.failed if status == FAILED else result.retrying).append(msg_id)
                log(job, **fields, action="failed" if status == FAILED else "retry", attempts=token, reason=reason)
                continue
            done = _move(msg_id, token, (SENDING, UNCERTAIN), status=SENT, sent_at=ctx.clock.now(),
                         last_error="")
            if done:
                result.sent.append(msg_id)
                log(job, **fields, action="sent", to=msg.recipient, via=transport.name, reply=outcome)
            else:
                log(job, **fields, action="uncertain", reason="delivered, but the outbox row was changed meanwhile")
    finally:
        transport.close()
    return result


def _point_of_no_return(msg_id: int, token: int) -> None:
    """Commit 'uncertain' before the final "." (autocommit: one statement)."""
    if not _move(msg_id, token, (SENDING,), status=UNCERTAIN,
                 last_error="uncertain: interrupted after the message was handed to the SMTP server"):
        raise ClaimLost()


def claim_holder(msg: OutboxMessage) -> str | None:
    """Who claimed a "sending" row (None: not recorded, e.g. an older version)."""
    text = msg.last_error or ""
    if msg.status != SENDING or not text.startswith(CLAIM_MARK):
        return None
    return text[len(CLAIM_MARK):].splitlines()[0] if len(text) > len(CLAIM_MARK) else None


def interrupted_reason(msg: OutboxMessage, now: dt.datetime | None = None) -> str | None:
    """Why a "sending" row may go back to the queue, or None while its sender
    may still be working on it."""
    from .jobs.lock import Holder

    holder = claim_holder(msg)
    if holder is None:
        return "sender not recorded"
    if Holder.parse(holder).dead():
        return "sender is gone"
    if msg.next_attempt_at is None or msg.next_attempt_at < (now or _real_now()):
        return "lease expired"
    return None


def recover_interrupted(*, exclusive: bool = False, now: dt.datetime | None = None) -> int:
    """After a crash: rows left 'sending' were never handed over (SMTP: no
    final "."; Maildir: delivery is idempotent), so they go back to the queue,
    due at once (at `now`, the caller's clock; default: when it was queued).

    exclusive=True (a SQLite job loop holding the store's only loop lock: no
    other sender can run) requeues every 'sending' row.  Otherwise (several
    loops on PostgreSQL) only rows whose sender is dead (a process of this
    host that no longer exists), whose sender is not recorded, or whose lease
    (SEND_LEASE) ran out; a row another live loop is sending is left alone.
    Each row moves with a guarded UPDATE (same status and attempts), so a
    sender that finishes meanwhile wins; a slow sender whose row was requeued
    and claimed again finds its token stale and stops before the final ".".
    """
    moved = 0
    rows = list(OutboxMessage.select(OutboxMessage.id, OutboxMessage.status, OutboxMessage.attempts,
                                     OutboxMessage.next_attempt_at, OutboxMessage.last_error,
                                     OutboxMessage.created_at)
                .where(OutboxMessage.status == SENDING))
    for msg in rows:
        reason = "the job loop holds the store" if exclusive else interrupted_reason(msg)
        if reason is None:
            continue
        moved += (OutboxMessage.update(status=QUEUED, next_attempt_at=now or msg.created_at,
                                       last_error=f"requeued after an interrupted delivery ({reason})")
                  .where((OutboxMessage.id == msg.id) & (OutboxMessage.status == SENDING)
                         & (OutboxMessage.attempts == msg.attempts)).execute())
    return moved


# --------------------------------------------------------------------------
# Listing and operator actions (the `outbox` command and the console)

def list_messages(statuses: Iterable[str] | None = PENDING_STATUSES, limit: int = 200) -> list[OutboxMessage]:
    from peewee import JOIN

    query = OutboxMessage.select(OutboxMessage, Invoice.id, Invoice.number).join(
        Invoice, JOIN.LEFT_OUTER)
    if statuses is not None:
        query = query.where(OutboxMessage.status.in_(list(statuses)))
    return list(query.order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc()).limit(limit))


def failed_messages(limit: int = 200) -> list[OutboxMessage]:
    """Deliveries an operator must look at: failed, and uncertain (SMTP crash window)."""
    return list_messages(PROBLEM_STATUSES, limit)


STALLED_AFTER = dt.timedelta(minutes=15)


def stalled_messages(now: dt.datetime, limit: int = 200) -> list[OutboxMessage]:
    """Queued mail tried and still not taken after STALLED_AFTER: the server is
    unreachable, refuses the login, or mail_from is unusable.  It is retried
    on its own (never failed for an outage), but a person should know."""
    from peewee import JOIN

    return list(OutboxMessage.select(OutboxMessage, Invoice.id, Invoice.number).join(Invoice, JOIN.LEFT_OUTER)
                .where(_stalled(now)).order_by(OutboxMessage.created_at, OutboxMessage.id).limit(limit))


def stalled_summary(now: dt.datetime) -> tuple[int, str]:
    """(how many stalled, the newest one's last error) without loading them (the console's poll)."""
    newest = (OutboxMessage.select(OutboxMessage.last_error).where(_stalled(now))
              .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc()).first())
    if newest is None:
        return 0, ""
    return OutboxMessage.select().where(_stalled(now)).count(), newest.last_error


def _stalled(now: dt.datetime):
    return ((OutboxMessage.status == QUEUED) & (OutboxMessage.attempts > 0)
            & (OutboxMessage.created_at <= now - STALLED_AFTER))


def counts() -> dict[str, int]:
    from peewee import fn

    rows = (OutboxMessage.select(OutboxMessage.status, fn.COUNT(OutboxMessage.id).alias("n"))
            .group_by(OutboxMessage.status).tuples())
    found = dict(rows)
    return {s: found.get(s, 0) for s in STATUSES}


def message_dict(msg: OutboxMessage, clock) -> dict:
    from .present import iso_time

    number = getattr(msg.invoice, "number", None) if msg.invoice_id else None
    return {
        "id": msg.id, "kind": msg.kind, "invoice": number, "revision": msg.revision if msg.invoice_id else None,
        "message_id": msg.message_id, "recipient": msg.recipient, "subject": msg.subject,
        "status": msg.status, "attempts": msg.attempts,
        "next_attempt_at": iso_time(clock, msg.next_attempt_at) if msg.status == QUEUED else None,
        "last_error": msg.last_error or None, "created_at": iso_time(clock, msg.created_at),
        "sent_at": iso_time(clock, msg.sent_at),
    }


def retry(ctx, ids: Iterable[int]) -> tuple[list[int], list[tuple[int, str]]]:
    """Operator: put failed/uncertain messages back in the queue now.

    Invoice emails take the account's current address, review digests the
    current admin_email setting (either fixed meanwhile).
    An uncertain message may then arrive twice: the operator decides.
    """
    from .store.settings import load_settings
    from .workflow import write_audit

    settings = None
    done, refused = [], []
    for msg_id in ids:
        with database.atomic():
            msg = OutboxMessage.get_or_none(OutboxMessage.id == msg_id)
            if msg is None:
                refused.append((msg_id, "does not exist"))
                continue
            if msg.status not in PROBLEM_STATUSES:
                refused.append((msg_id, f"is {msg.status}, not failed or uncertain"))
                continue
            recipient = msg.recipient
            if msg.kind == INVOICE and msg.invoice_id:
                inv = Invoice.get_or_none(Invoice.id == msg.invoice_id)
                if inv is not None:
                    recipient = Account.get_by_id(inv.account_id).email
            elif msg.kind == DIGEST:
                if settings is None:
                    settings = load_settings()
                recipient = settings["admin_email"]
            try:
                recipient = check_address(recipient)
            except AddressError as exc:
                what = "the admin_email setting is" if msg.kind == DIGEST else "recipient"
                refused.append((msg_id, f"{what} still invalid: {exc}"))
                continue
            OutboxMessage.update(status=QUEUED, next_attempt_at=ctx.clock.now(), recipient=recipient, refusals=0,
                                 last_error=f"requeued by {ctx.actor}; was {msg.status}: {msg.last_error}"[:2000]
                                 ).where((OutboxMessage.id == msg_id)
                                         & OutboxMessage.status.in_(PROBLEM_STATUSES)).execute()
            inv = Invoice.get_or_none(Invoice.id == msg.invoice_id) if msg.invoice_id else None
            write_audit(ctx, "mail_retry", inv, outbox=msg_id, message_id=msg.message_id, was=msg.status)
            done.append(msg_id)
    return done, refused


BAD_ADMIN_EMAIL = "invalid admin_email setting: "


def requeue_digests_for_admin_email(ctx, settings) -> list[OutboxMessage]:
    """Digests that were never tried because the admin_email setting was not
    an address (failed when queued, attempts 0) go back to the queue,
    addressed to the current setting, once it is one.  Nothing was sent, so
    nothing can arrive twice.  Returns the rows requeued."""
    try:
        recipient = check_address(settings["admin_email"])
    except AddressError:
        return []
    rows = list(OutboxMessage.select(OutboxMessage.id, OutboxMessage.message_id, OutboxMessage.last_error)
                .where((OutboxMessage.kind == DIGEST) & (OutboxMessage.status == FAILED)
                       & (OutboxMessage.attempts == 0)
                       & OutboxMessage.last_error.startswith(BAD_ADMIN_EMAIL)))
    done = []
    for msg in rows:
        n = (OutboxMessage.update(status=QUEUED, recipient=recipient, next_attempt_at=ctx.clock.now(), refusals=0,
                                  last_error=f"requeued: admin_email is now set; was failed: {msg.last_error}"[:2000])
             .where((OutboxMessage.id == msg.id) & (OutboxMessage.status == FAILED)
                    & (OutboxMessage.attempts == 0)).execute())
        if n == 1:
            msg.recipient = recipient
            done.append(msg)
    return done


def mark_sent(ctx, ids: Iterable[int]) -> tuple[list[int], list[tuple[int, str]]]:
    """Operator: an uncertain message was found in the server's log."""
    from .workflow import write_audit

    done, refused = [], []
    for msg_id in ids:
        with database.atomic():
            msg = OutboxMessage.get_or_none(OutboxMessage.id == msg_id)
            if msg is None:
                refused.append((msg_id, "does not exist"))
                continue
            if msg.status != UNCERTAIN:
                refused.append((msg_id, f"is {msg.status}, not uncertain"))
                continue
            OutboxMessage.update(status=SENT, sent_at=ctx.clock.now(),
                                 last_error=f"confirmed delivered by {ctx.actor}"
                                 ).where((OutboxMessage.id == msg_id) & (OutboxMessage.status == UNCERTAIN)).execute()
            inv = Invoice.get_or_none(Invoice.id == msg.invoice_id) if msg.invoice_id else None
            write_audit(ctx, "mail_confirmed", inv, outbox=msg_id, message_id=msg.message_id)
            done.append(msg_id)
    return done, refused

