"""Helpers for thread workers: each worker runs on its own thread, opens its
own store connection (peewee connections are per thread) and closes it."""

from __future__ import annotations

import contextlib
import logging

from ..errors import FieldError

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
    """A failure as a toast says it: "field: reason" for refused input, else its own sentence."""
    if isinstance(exc, FieldError) and exc.field and exc.reason:
        return f"{exc.field}: {exc.reason}"
    return str(exc) or exc.__class__.__name__
