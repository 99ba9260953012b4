"""Changing a store-wide setting: one guarded, audited transition (issue 16).

The setting is checked by the parser that uses it (config.VALIDATORS, via
store.settings.save_setting); the person must be an operator or an admin
once the store has users; the audit event names the key, the value before
and the value after.
"""

from __future__ import annotations

from . import access
from .audit import write_audit
from .context import Ctx
from .store.models import Setting, database
from .store.settings import save_setting


def change_setting(ctx: Ctx, key: str, value: str) -> str:
    """Store `value` under `key` (as the setting's parser normalises it); return what was stored."""
    with database.atomic():
        access.require(ctx, "settings", key)
        before = Setting.select(Setting.value).where(Setting.key == key).scalar()
        stored = save_setting(key, value)
        if stored != before:
            write_audit(ctx, "setting_change", None, None, None, key=key, before=before, after=stored)
    return stored
