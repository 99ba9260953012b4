"""Stored PDFs remember the draft note they were rendered with, so a PDF
rendered under review is never served once the invoice is approved."""
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column('invoice_pdf', 'note', TextField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('invoice_pdf', 'note'))
