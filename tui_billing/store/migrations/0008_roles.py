"""Roles and four-eyes approval (issue 16).

- app_user: the people who may use the store and their role; empty (every
  existing store) means single-admin mode, as before.
- invoice.first_approved_by/_at: the first of two approvals of the current
  revision (invoices at or above the setting second_approval_above);
  invoice.changed_by: who made the current revision (adjust, reissue), who
  may not approve it.
- audit_event.role: the actor's role when the event was written.

Nullable columns only: SQLite adds them without rebuilding the tables.
"""

from peewee import CharField, DateTimeField, Model


def up(migrator, db):
    class AppUser(Model):
        name = CharField(primary_key=True, max_length=64)
        role = CharField(max_length=20)
        added_at = DateTimeField()
        added_by = CharField(max_length=64)

        class Meta:
            database = db
            table_name = "app_user"

    db.create_tables([AppUser])
    migrator.migrate(
        migrator.add_column("invoice", "first_approved_by", CharField(max_length=64, null=True)),
        migrator.add_column("invoice", "first_approved_at", DateTimeField(null=True)),
        migrator.add_column("invoice", "changed_by", CharField(max_length=64, null=True)),
        migrator.add_column("audit_event", "role", CharField(max_length=20, null=True)),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_column("audit_event", "role"),
        migrator.drop_column("invoice", "changed_by"),
        migrator.drop_column("invoice", "first_approved_at"),
        migrator.drop_column("invoice", "first_approved_by"),
    )
    db.execute_sql('DROP TABLE "app_user"')
