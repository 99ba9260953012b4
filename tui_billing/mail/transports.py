"""Transports: where a built message goes.

MaildirTransport writes into a local Maildir (the default), exactly once: the
file name comes from the Message-ID and is created with link(2), which never
overwrites.  SmtpTransport speaks SMTP (STARTTLS or implicit TLS, login) and
writes DATA in two steps, so the caller can record the point of no return
just before the final ".".  Both take `point_of_no_return`, a callable run
at that point (Maildir needs none: its delivery is idempotent).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import smtplib
import ssl
from collections.abc import Callable
from pathlib import Path

from .states import DeliveryError, Uncertain


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
        from ..safefile import make_dirs

        try:
            for sub in ("tmp", "new", "cur"):
                make_dirs(self.path / sub)
        except OSError as exc:
            raise DeliveryError(
                f"cannot create the maildir {self.path}: {exc.strerror or exc}", connection=True
            ) from exc

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

    def deliver(
        self, message_id: str, sender: str, recipient: str, data: bytes, point_of_no_return: Callable[[], None]
    ) -> str:
        self._ensure()
        if self.contains(message_id):
            return "already in the maildir"
        from ..safefile import open_exclusive

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

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        starttls: bool = False,
        tls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        local_hostname: str | None = None,
    ):
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
            conn: smtplib.SMTP
            if self.tls:
                conn = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout)
            conn.ehlo()
            if self.starttls:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"login to {self.host}:{self.port} refused: {_reply(exc)}", connection=True) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"cannot connect to {self.host}:{self.port}: {exc}", connection=True) from exc
        return conn

    def _abort(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()  # no QUIT: a half-sent DATA is discarded by the server
            except Exception:
                pass

    def deliver(
        self, message_id: str, sender: str, recipient: str, data: bytes, point_of_no_return: Callable[[], None]
    ) -> str:
        conn = self._conn
        fresh = conn is None
        if conn is None:
            conn = self._conn = self._connect()
        try:
            code, resp = conn.mail(sender)
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            if fresh:
                self._abort()
                raise DeliveryError(f"{self.host}:{self.port} closed the connection", connection=True) from exc
            self._abort()  # an idle connection the server dropped: one reconnect
            conn = self._conn = self._connect()
            code, resp = conn.mail(sender)
        sock = conn.sock
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
            assert sock is not None  # connected
            sock.sendall(payload)
        except (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException) as exc:
            self._abort()
            raise DeliveryError(f"{self.host}:{self.port}: {exc}") from exc
        try:
            point_of_no_return()
        except BaseException:
            self._abort()  # no final dot: the server drops the transaction
            raise
        try:
            sock.sendall(b".\r\n")
            code, resp = conn.getreply()
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            self._abort()
            raise Uncertain(
                f"connection lost after the message was handed to {self.host}:{self.port} and before its reply ({exc})"
            ) from exc
        if code != 250:
            if code == -1 or code >= 600 or code < 200:
                self._abort()
                raise Uncertain(f"no valid reply after the message was handed to {self.host}:{self.port}")
            raise DeliveryError(f"message refused: {code} {_text(resp)}", permanent=code >= 500)
        return f"{code} {_text(resp)}"[:200]

    def _rset(self) -> None:
        try:
            self._conn.rset()  # type: ignore[union-attr]  # None: aborted below, as any failure
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
