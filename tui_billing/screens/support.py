"""Helpers for thread workers: each worker runs on its own thread, opens its
own store connection (peewee connections are per thread) and closes it."""
from __future__ import annotations

import contextlib
import logging

log = logging.getLogger("tui_billing.console")


@contextlib.contextmanager
def db_session():
    """Close this worker thread's connection when the worker ends."""
    from ..store.models import database

    try:
        yield
    finally:
        try:
            if database.obj is not None and not database.is_closed():
                database.close()
        except Exception:  # pragma: no cover - closing never blocks a result
            log.exception("closing the worker's store connection")


def post(app, fn, *args, **kwargs):
    """call_from_thread that tolerates an app already shutting down."""
    try:
        return app.call_from_thread(fn, *args, **kwargs)
    except RuntimeError:
        return None


def error_text(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    field = getattr(exc, "field", None)
    if reason and field:
        return f"{field}: {reason}"
    return str(exc) or exc.__class__.__name__
