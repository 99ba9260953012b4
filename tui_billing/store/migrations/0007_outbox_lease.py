"""Outbox claims get their own columns (issue 15): a message being sent names
its sender in `claimed_by` and the end of its lease in `claimed_until`,
instead of writing "sending, claimed by <sender>" over `last_error` and the
lease over `next_attempt_at`.  `last_error` now keeps the previous attempt's
error while a message is being sent.

Messages in `sending` when the store is migrated (a loop was killed, or is
still sending) keep their claim: the sender and the lease are carried over
from the old encoding into the new columns and the claim text is taken out
of `last_error`, so an interrupted delivery is recovered exactly as before
(requeued once its sender is gone or its lease ran out; a live sender keeps
it).  A `sending` row with no recorded sender stays without one (requeued by
the next loop, as before).

No index: recovery finds claimed rows by status ("status", "next_attempt_at").
"""

from peewee import CharField, DateTimeField

CLAIM_MARK = "sending, claimed by "  # the old encoding (tui_billing.mail.delivery.CLAIM_MARK)


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("outbox_message", "claimed_by", CharField(max_length=200, null=True)),
        migrator.add_column("outbox_message", "claimed_until", DateTimeField(null=True)),
    )
    p = db.param
    rows = list(
        db.execute_sql(
            f'SELECT "id", "last_error", "next_attempt_at" FROM "outbox_message" '
            f'WHERE "status" = {p} AND "last_error" LIKE {p}',
            ("sending", CLAIM_MARK + "%"),
        )
    )
    for id_, last_error, _lease in rows:
        if not last_error.startswith(CLAIM_MARK):  # LIKE is case-insensitive on SQLite
            continue
        rest = last_error[len(CLAIM_MARK) :]
        holder = rest.splitlines()[0][:200] if rest else None  # read as the old code read it
        # Guarded like every outbox move: a sender that finished meanwhile
        # (an older loop still running) has rewritten last_error.
        db.execute_sql(
            f'UPDATE "outbox_message" SET "claimed_by" = {p}, "claimed_until" = "next_attempt_at", '
            f'"last_error" = {p} WHERE "id" = {p} AND "status" = {p} AND "last_error" = {p}',
            (holder, "", id_, "sending", last_error),
        )


def down(migrator, db):
    # Back to the old encoding for rows still being sent, then drop the columns.
    p = db.param
    rows = list(
        db.execute_sql(
            f'SELECT "id", "claimed_by" FROM "outbox_message" WHERE "status" = {p} AND "claimed_by" IS NOT NULL',
            ("sending",),
        )
    )
    for id_, holder in rows:
        db.execute_sql(
            f'UPDATE "outbox_message" SET "last_error" = {p}, "next_attempt_at" = "claimed_until" WHERE "id" = {p}',
            ((CLAIM_MARK + holder)[:2000], id_),
        )
    migrator.migrate(
        migrator.drop_column("outbox_message", "claimed_until"),
        migrator.drop_column("outbox_message", "claimed_by"),
    )
