"""Customer search by any part, accent- and case-insensitive (issue 13): each
account keeps a folded copy of its name and email (`search_text`, see
text.fold), which the finder matches with a plain LIKE '%…%' on both
backends.  Existing accounts are filled here, in batches by id.

No index: a B-tree cannot serve LIKE '%…%' (a match anywhere in the text), and
the account table is scanned once per search, not once per invoice."""

from peewee import SQL, TextField

from tui_billing.text import fold

BATCH = 1000


def up(migrator, db):
    migrator.migrate(
        # DEFAULT '' in the schema too: rows inserted by other writers (raw
        # SQL, an older tui-billing) that do not name the column stay valid.
        migrator.add_column("account", "search_text", TextField(default="", constraints=[SQL("DEFAULT ''")])),
    )
    p = db.param
    select = f'SELECT "id", "name", "email" FROM "account" WHERE "id" > {p} ORDER BY "id" LIMIT {BATCH}'
    update = f'UPDATE "account" SET "search_text" = {p} WHERE "id" = {p}'
    last = 0
    while True:
        rows = list(db.execute_sql(select, (last,)))
        if not rows:
            break
        values = [(f"{fold(name)} {fold(email)}", id_) for id_, name, email in rows]
        if p == "?":  # SQLite
            db.cursor().executemany(update, values)
        else:  # PostgreSQL: a few round trips per batch, not one per account
            from psycopg2.extras import execute_batch

            execute_batch(db.cursor(), update, values, page_size=BATCH)
        last = rows[-1][0]


def down(migrator, db):
    migrator.migrate(migrator.drop_column("account", "search_text"))
