"""Stored PDFs remember the draft note they were rendered with, so a PDF
rendered under review is never served once the invoice is approved; outbox
messages count the server's refusals apart from the attempts (an outage, when
no server answers, is not a refusal)."""

from peewee import *


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("invoice_pdf", "note", TextField(null=True)),
        migrator.add_column("outbox_message", "refusals", IntegerField(default=0)),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column("outbox_message", "refusals"),
        migrator.drop_column("invoice_pdf", "note"),
    )
