"""Issue 18, search by index: the customer text and the invoice number are
found through an index (SQLite: FTS5 trigram tables kept by triggers;
PostgreSQL: pg_trgm GIN indexes), with exactly the results of the LIKE scan
they replace; migration 0010 builds the index for stores made before it;
where the index cannot be built, search scans as before.  Every test runs on
SQLite and PostgreSQL (the `backend` fixture) unless it names one."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from unittest import mock

import pytest

from tui_billing.store import db as store_db
from tui_billing.store import queries as Q
from tui_billing.store import search_index as SI
from tui_billing.store.models import Account, Invoice, database
from tui_billing.text import fold

from . import factories as F

NAMES = [
    ("Ångström Labs AB", "ap@angstrom.example"),
    ("Øresund Shipping ApS", "billing@oresund.example"),
    ("Straßenbau Łódź", "kontakt@strassenbau.example"),
    ("Ünïted 100% Örganic", "hello@united.example"),
    ("United 1000 Organic", "ops@united1000.example"),
    ("Acme_Corp", "ap@acme.example"),
    ("AcmeXCorp", "ap@acmex.example"),
    ("Back\\slash Trading", "bs@back.example"),
    ('Quote "Q" Inc', "q@quote.example"),
    ("İstanbul Ticaret", "info@istanbul.example"),
    ("ΣΊΣΥΦΟΣ Ε.Π.Ε.", "sisyfos@example.gr"),
    ("Ab", "x@y.example"),
]
NUMBERS = [
    "INV-2025-000658",
    "INV-2025-006580",
    "INV-2025-000659",
    "inv-x%1",
    "INV_2026_1",
    "CN-2026\\7",
    'Q"1-2026',
    "INV-ÄÖ-0001",
]
CUSTOMER_TEXTS = [
    "angstrom",
    "ANGSTR",
    "ström lab",
    "ÅNGSTRÖM",
    "  ström   LAB ",
    "labs ab ap@",  # across the name and the email
    "billing@",
    "@oresund",
    ".example",
    "strasse",
    "lodz",
    "united 100%",
    "100%",
    "%",
    "%%",
    "_",
    "e_c",
    "acme_c",
    "\\",
    "k\\s",
    '"q"',
    'e "',
    "istanbul",
    "σισυφος",
    "ΣΊΣ",
    "ab",
    "a",
    "s",
    "é",
    "zzqx",
    "angstrom labs ab ap@angstrom.example!",
]
NUMBER_TEXTS = [
    "000658",
    "658",
    "inv-2025-00065",
    "INV",
    "in",
    "6",
    "%",
    "x%1",
    "_",
    "v_2",
    "\\",
    "2026\\7",
    '"1',
    'q"1-',
    "äö",
    "ÄÖ-0",
    "-",
    "zzqx",
]


@pytest.fixture
def rows(store_url, monkeypatch):
    """Two invoices of each account of NAMES, and one invoice for each of NUMBERS."""
    # The factory numbers INV-2026-{count}, its count shared by every test of
    # this process: at 658 it made an INV-2026-000658 beside NUMBERS' (CI).
    monkeypatch.setattr(F, "_seq", itertools.count(1))
    accounts = [F.account(name, email=email) for name, email in NAMES]
    for acc in accounts:
        F.invoice(acc=acc)
        F.invoice(acc=acc, status="paid")
    for number, acc in zip(NUMBERS, accounts, strict=False):
        F.invoice(acc=acc, number=number)
    return accounts


def _both_ways(read):
    """What `read()` gives, the same whichever way SQLite reads a search page
    (queries._many): the matches by the index, then sorted; or the page's
    order walked.  (PostgreSQL's planner chooses its way itself.)"""
    if not store_db.is_sqlite():
        return read()
    with mock.patch.object(Q, "_crossover", lambda: 10**9):
        by_index = read()
    with mock.patch.object(Q, "_crossover", lambda: 0):
        walked = read()
    assert by_index == walked
    return by_index


def _scan_ids(filters: Q.Filters) -> list[int]:
    """The invoices the LIKE scan (the search before issue 18) finds, in the page order."""
    p = database.obj.param
    if filters.customer:
        sql = (
            f'SELECT i."id" FROM "invoice" i JOIN "account" a ON a."id" = i."account_id" '
            f'WHERE a."search_text" LIKE {p} ESCAPE {p}'
        )
        params = [Q._like_pattern(fold(filters.customer)), "\\"]
    else:
        like = "LIKE" if store_db.is_sqlite() else "ILIKE"  # peewee's contains(), as before
        sql = f'SELECT i."id" FROM "invoice" i WHERE i."number" {like} {p} ESCAPE {p}'
        params = [Q._like_pattern(filters.number), "\\"]
    sql += ' ORDER BY i."issue_date" DESC, i."id" DESC'
    if not store_db.is_sqlite():
        with database.atomic():  # a scan, whatever indexes there are
            database.obj.execute_sql("SET LOCAL enable_indexscan = off")
            database.obj.execute_sql("SET LOCAL enable_bitmapscan = off")
            return [r[0] for r in database.obj.execute_sql(sql, params)]
    return [r[0] for r in database.obj.execute_sql(sql, params)]


def _found(filters: Q.Filters) -> list[int]:
    ids = _both_ways(lambda: [r.id for r in Q.page(filters, limit=1000)])
    assert Q.count_matching(filters) == len(ids)
    assert sorted(i for (i,) in Q.ids_matching(filters).tuples()) == sorted(ids)
    counts = Q.counts_by_status(filters)  # per status, whatever statuses the filter asks for
    assert sum(counts[s] for s in filters.statuses or counts) == len(ids)
    return ids


# -- (a) the same results as the scan ------------------------------------------


@pytest.mark.parametrize("typed", CUSTOMER_TEXTS)
def test_customer_search_finds_what_the_scan_finds(rows, typed):
    f = Q.make_filters(customer=typed)
    expected = _scan_ids(f)
    assert _found(f) == expected
    # and that is what a person means: the folded text contains the folded typed text
    folded = fold(typed)
    by_hand = {
        i.id
        for i in Invoice.select().join(Account)
        if folded in Account.search_text_of(i.account.name, i.account.email)
    }
    assert set(expected) == by_hand


@pytest.mark.parametrize("typed", NUMBER_TEXTS)
def test_number_search_finds_what_the_scan_finds(rows, typed):
    f = Q.make_filters(number=typed)
    assert _found(f) == _scan_ids(f)


def test_ascii_number_search_ignores_case(rows):
    for typed in ("inv-2025-00065", "V-2025-0006", "x%1", "v_2"):
        found = {Invoice.get_by_id(i).number for i in _found(Q.make_filters(number=typed))}
        assert found == {n for n in Invoice.select(Invoice.number).scalars() if typed.lower() in n.lower()}, typed


def test_search_combines_with_the_other_filters_and_pages(rows):
    f = Q.make_filters(customer="example", status="paid")
    expected = [i for i in _scan_ids(Q.make_filters(customer="example")) if Invoice.get_by_id(i).status == "paid"]
    assert _found(f) == expected and len(expected) == len(NAMES)  # one paid invoice each
    first, more = Q.find_page(f, limit=4)
    assert more and [r.id for r in first] == expected[:4]
    after = Q.key_of(first[-1], "issue_date")
    assert _both_ways(lambda: [r.id for r in Q.page(f, after=after, limit=4)]) == expected[4:8]
    assert _both_ways(lambda: [r.id for r in Q.page(f, sort="risk", limit=100)]) == [
        r.id for r in Q.page(Q.make_filters(status="paid"), sort="risk", limit=100) if r.id in expected
    ]
    assert _both_ways(lambda: [r.id for r in Q.iter_matching(f, batch=3)]) == expected


# -- (b) the index is what answers -----------------------------------------------


def _plan(sql: str, params) -> str:
    if store_db.is_sqlite():
        return "\n".join(str(r[-1]) for r in database.obj.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params))
    return "\n".join(r[0] for r in database.obj.execute_sql(f"EXPLAIN {sql}", params))


def _grow(rows, n: int) -> None:
    """n more accounts and n more invoices, copied from existing rows in one
    statement each (PostgreSQL: tables large enough for the planner to prefer
    an index to a scan); none matches the searches of the test."""
    p, db = database.obj.param, database.obj
    acc = [c.name for c in db.get_columns("account") if c.name not in ("id", "name", "email", "search_text")]
    inv = [c.name for c in db.get_columns("invoice") if c.name not in ("id", "number")]
    a, i = ", ".join(f'"{c}"' for c in acc), ", ".join(f'"{c}"' for c in inv)
    db.execute_sql(
        f'INSERT INTO "account" ("name", "email", "search_text", {a}) '
        f"SELECT 'Filler ' || g, 'f' || g || '@filler.example', 'filler ' || g || ' f' || g || '@filler.example', {a} "
        f'FROM "account" CROSS JOIN generate_series(1, {p}) AS g WHERE "id" = {p}',
        (n, rows[5].id),
    )
    db.execute_sql(
        f'INSERT INTO "invoice" ("number", {i}) SELECT \'GEN-\' || g, {i} '
        f'FROM "invoice" CROSS JOIN generate_series(1, {p}) AS g WHERE "id" = {p}',
        (n, Invoice.select(Invoice.id).where(Invoice.account == rows[5].id).scalar()),
    )
    # What VACUUM does in time: the GIN indexes' pending entries merged (the
    # planner prices an index with 20,000 pending entries as a slow one).
    db.execute_sql(
        "SELECT gin_clean_pending_list('account_search_text_trgm'), gin_clean_pending_list('invoice_number_trgm')"
    )
    db.execute_sql("ANALYZE")


def test_the_index_answers_a_search(rows, backend):
    customer, number = Q.make_filters(customer="ström"), Q.make_filters(number="000658")

    def plan_of_page(f):
        return _plan(*Q.page_query(f, sort="issue_date", descending=True, after=None, limit=100).sql())

    if backend == "sqlite":
        assert SI.fts_ready(database.obj)
        assert f"{SI.ACCOUNT_FTS} VIRTUAL TABLE INDEX" in plan_of_page(customer)
        assert f"{SI.NUMBER_FTS} VIRTUAL TABLE INDEX" in plan_of_page(number)
        assert f"{SI.NUMBER_FTS} VIRTUAL TABLE INDEX" in _plan(*Q.ids_matching(number).sql())
        # under 3 characters the trigrams cannot answer: the scan
        assert "VIRTUAL TABLE" not in _plan(*Q.ids_matching(Q.make_filters(number="65")).sql())
        # a page of many matches walks the page's order instead of reading them all
        with mock.patch.object(Q, "_crossover", lambda: 0):
            for f in (customer, number):
                assert "SCAN t1 USING INDEX invoice_issue_date_id" in plan_of_page(f)
                assert "VIRTUAL TABLE" not in plan_of_page(f) and "TEMP B-TREE" not in plan_of_page(f)
    else:
        _grow(rows, 20_000)  # the planner's own choice, on tables where a scan is not free
        assert "account_search_text_trgm" in plan_of_page(customer)
        assert "account_search_text_trgm" in plan_of_page(Q.make_filters(customer="zzqx"))
        assert "invoice_number_trgm" in plan_of_page(number)
        assert "invoice_number_trgm" in plan_of_page(Q.make_filters(number="zzqx"))
        assert "invoice_number_trgm" in _plan(*Q.ids_matching(number).sql())
    assert [Invoice.get_by_id(i).number for i in _found(number)] == ["INV-2025-000658"]
    assert _found(customer) == _scan_ids(customer) and len(_found(customer)) == 3


# -- (c) every writer keeps the index right -----------------------------------------


def _numbers(**filters) -> set[str]:
    return _both_ways(lambda: {r.number for r in Q.page(Q.make_filters(**filters), limit=1000)})


def _fts_intact() -> None:
    if store_db.is_sqlite():  # FTS5 compares the index with the rows of the content table
        for fts in (SI.ACCOUNT_FTS, SI.NUMBER_FTS):
            database.obj.execute_sql(f'INSERT INTO "{fts}" ("{fts}", rank) VALUES (\'integrity-check\', 1)')


def test_the_index_follows_updates_deletes_and_raw_inserts(rows):
    acc = rows[0]
    # the application's update (save: search_text follows the name)
    acc.name = "Þórsmörk Ehf"
    acc.save(only=[Account.name])
    assert _numbers(customer="thorsmork") and not _numbers(customer="angstrom labs")
    # a raw UPDATE of the folded text, as another writer would do it
    Account.update(search_text="nordlys as ap@angstrom.example").where(Account.id == acc.id).execute()
    assert len(_numbers(customer="nordlys")) == 3 and not _numbers(customer="thorsmork")
    assert len(_numbers(customer="ap@angstrom")) == 3  # the unchanged part still found
    # a deleted account (and its invoices)
    gone = rows[1]
    Invoice.delete().where(Invoice.account == gone.id).execute()
    Account.delete().where(Account.id == gone.id).execute()
    assert not _numbers(customer="oresund")
    # a raw INSERT of an account that brings its folded text (the demo's bulk insert does)
    p = database.obj.param
    database.obj.execute_sql(
        f'INSERT INTO "account" ("name", "email", "account_type", "customer_class_id", "currency", "balance", '
        f'"payment_model", "address", "search_text") VALUES ({p}, {p}, {p}, {p}, {p}, 0, {p}, {p}, {p})',
        (
            "Fjällräven Ltd",
            "f@fjall.example",
            "business",
            acc.customer_class_id,
            "EUR",
            "postpay",
            "",
            "fjallraven ltd f@fjall.example",
        ),
    )
    new = Account.get(Account.name == "Fjällräven Ltd")
    F.invoice(acc=new, number="INV-2027-424242")
    assert _numbers(customer="FJÄLLRÄV") == {"INV-2027-424242"}
    # invoices: a raw INSERT (every column copied from another row), a renumbering, a delete
    columns = [c.name for c in database.obj.get_columns("invoice") if c.name not in ("id", "number")]
    listed = ", ".join(f'"{c}"' for c in columns)
    database.obj.execute_sql(
        f'INSERT INTO "invoice" ("number", {listed}) SELECT {p}, {listed} FROM "invoice" WHERE "number" = {p}',
        ("CN-2027-777001", "INV-2027-424242"),
    )
    assert _numbers(number="777001") == {"CN-2027-777001"} and _numbers(number="cn-2027") == {"CN-2027-777001"}
    assert _numbers(customer="fjallrav") == {"INV-2027-424242", "CN-2027-777001"}
    Invoice.update(number="CN-2027-888002").where(Invoice.number == "CN-2027-777001").execute()
    assert not _numbers(number="777001") and _numbers(number="888002") == {"CN-2027-888002"}
    Invoice.update(status="paid").where(Invoice.number == "CN-2027-888002").execute()  # not the number: no index work
    assert _numbers(number="888002") == {"CN-2027-888002"}
    Invoice.delete().where(Invoice.number == "CN-2027-888002").execute()
    assert not _numbers(number="888002")
    _fts_intact()
    for typed in ("nordlys", "angstrom", "oresund", "example"):
        f = Q.make_filters(customer=typed)
        assert _found(f) == _scan_ids(f), typed


def test_the_demo_and_a_bill_run_keep_the_index(store_url, ctx):
    import datetime as dt

    from tui_billing import billrun, demo

    demo.build(ctx, invoices=150, seed=5, quiet=True)  # bulk inserts
    result = billrun.bill_run(ctx, dt.date(2026, 11, 1), dt.date(2026, 11, 30), include_empty=True)
    made = result.created + result.closed
    assert made
    _fts_intact()
    for inv in Invoice.select().where(Invoice.id.in_([made[0], made[-1], 1])):
        assert inv.number in _numbers(number=inv.number[-7:].lower())
        f = Q.make_filters(customer=Account.get_by_id(inv.account_id).name.upper())
        assert inv.id in _found(f) and _found(f) == _scan_ids(f)


def test_bulk_inserts_write_many_rows_a_statement(store_url, backend):
    """FTS5 flushes its pending trigrams at the end of every statement that
    wrote them (here through invoice's trigger), and a flush costs more as
    the index grows: one statement per row (executemany) took 122 s for
    10,000 invoices into a store of 700,000; the bulk insert of the bill run
    and the demo writes 500 rows a statement, and indexes every one."""
    from tui_billing.store.bulk import insert_models

    if backend != "sqlite":
        pytest.skip("SQLite's FTS5 tables; PostgreSQL's pg_trgm indexes have no such flush")
    template = F.invoice()
    skip = {"id", "number"}
    rows = [
        {k: v for k, v in template.__data__.items() if k not in skip} | {"number": f"BULK-{i:05d}"} for i in range(1200)
    ]
    statements: list[str] = []
    connection = database.obj.connection()
    connection.set_trace_callback(statements.append)
    try:
        with database.atomic():
            insert_models(Invoice, rows)
    finally:
        connection.set_trace_callback(None)
    # (SQLite reports a statement again as each of its trigger programs starts.)
    inserts = {sql for sql in statements if sql.lstrip().upper().startswith('INSERT INTO "INVOICE"')}
    assert len(inserts) == 3  # 500 + 500 + 200 rows
    _fts_intact()
    assert _numbers(number="ulk-0119") == {f"BULK-0119{d}" for d in range(10)}


# -- (d) migration 0010 builds the index of an existing store ---------------------------


def _before_0010() -> str:
    names = sorted(p.stem for p in Path(store_db.MIGRATIONS_DIR).glob("[0-9]*.py"))
    return names[names.index("0010_search_index") - 1]


def _indexed(backend) -> bool:
    if backend == "sqlite":
        return SI.fts_ready(database.obj)
    found = database.obj.execute_sql(
        "SELECT count(*) FROM pg_indexes WHERE indexname IN ('account_search_text_trgm', 'invoice_number_trgm')"
    ).fetchone()[0]
    return found == 2


def test_migration_0010_indexes_a_store_made_before_it(bare_url, backend):
    from playhouse.migrations import Runner

    from tui_billing.store.settings import ensure_defaults

    db = store_db.connect(bare_url, migrate=False)
    Runner(db, str(store_db.MIGRATIONS_DIR)).up(target=_before_0010())  # a store of the last release
    ensure_defaults()
    accounts = [F.account(name, email=email) for name, email in NAMES]
    for acc, number in zip(accounts, NUMBERS, strict=False):
        F.invoice(acc=acc, number=number)
    assert not _indexed(backend)
    assert "0010_search_index" in store_db.apply_migrations(db)
    store_db.close()
    store_db.connect(bare_url)  # opened again as every command opens it: nothing left to apply
    assert store_db.pending_migrations() == [] and _indexed(backend)
    _fts_intact()
    for f in (Q.make_filters(customer="ANGSTR"), Q.make_filters(customer="lodz"), Q.make_filters(number="000658")):
        assert len(_found(f)) == 1 and _found(f) == _scan_ids(f)


def test_a_new_store_is_indexed(store_url, backend):
    assert _indexed(backend)


def test_a_table_rebuilt_by_a_later_migration_gets_its_triggers_back(store_url, tmp_path, monkeypatch):
    """SQLite changes a column by rebuilding the table, which drops its triggers;
    opening the store after such a migration puts them back."""
    if not store_db.is_sqlite():
        pytest.skip("PostgreSQL alters tables in place: its indexes stay")
    acc = F.account("Ångström Labs AB")
    F.invoice(acc=acc, number="INV-2025-000658")
    later = tmp_path / "migrations"
    later.mkdir()
    for script in Path(store_db.MIGRATIONS_DIR).glob("[0-9]*.py"):
        (later / script.name).write_text(script.read_text(encoding="utf-8"), encoding="utf-8")
    (later / "0099_rebuild.py").write_text(
        # Other tables' triggers name these tables (the counts'): apply_migrations
        # renames the rebuilt copy by the legacy rule, or SQLite would refuse.
        "def up(migrator, db):\n"
        "    migrator.migrate(\n"
        "        migrator.add_column_default('invoice', 'kind', 'regular'),\n"
        "        migrator.add_column_default('account', 'address', ''),\n"
        "    )\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(store_db, "MIGRATIONS_DIR", later)
    assert store_db.apply_migrations() == ["0099_rebuild"]
    assert set(SI.TRIGGERS) <= {r[0] for r in database.obj.execute_sql("SELECT name FROM sqlite_master")}
    F.invoice(acc=F.account("Øresund Shipping ApS"), number="INV-2025-777001")
    _fts_intact()
    assert _numbers(number="777001") == {"INV-2025-777001"} and _numbers(customer="oresund") == {"INV-2025-777001"}
    from tui_billing.store import counts  # the counts' triggers are back too, their counts right

    assert counts.installed() and counts.check() == []


def test_missing_triggers_make_search_scan_not_miss(store_url):
    """A store whose triggers are gone (say, rebuilt by hand) is not trusted: the scan answers."""
    if not store_db.is_sqlite():
        pytest.skip("SQLite's triggers")
    F.invoice(acc=F.account("Ångström Labs AB"), number="INV-2025-000658")
    database.obj.execute_sql(f'DROP TRIGGER "{SI.NUMBER_FTS}_insert"')
    url = store_url
    store_db.close()
    store_db.connect(url)
    assert not SI.fts_ready(database.obj)
    F.invoice(acc=F.account("Øresund Shipping ApS"), number="INV-2025-777001")  # not in the index
    assert _numbers(number="777001") == {"INV-2025-777001"}
    assert "VIRTUAL TABLE" not in _plan(*Q.ids_matching(Q.make_filters(number="777001")).sql())
    assert SI.repair(database.obj)
    assert SI.fts_ready(database.obj) and _numbers(number="777001") == {"INV-2025-777001"}
    _fts_intact()


# -- (e) where the index cannot be built, search scans ------------------------------------


@pytest.mark.parametrize("missing", ["tokenizer", "module"])
def test_sqlite_without_fts5_trigram_scans(bare_url, backend, monkeypatch, caplog, missing):
    """SQLite older than 3.34 has no trigram tokenizer; some builds have no FTS5 at all."""
    if backend != "sqlite":
        pytest.skip("SQLite's FTS5")
    if missing == "tokenizer":
        monkeypatch.setattr(SI, "TOKENIZER", "no_such_tokenizer")
    else:
        monkeypatch.setattr(SI, "FTS_MODULE", "no_such_module")
    _migrated_without_index(bare_url, backend, caplog, "FTS5")


def test_postgresql_without_the_right_to_create_pg_trgm_scans(bare_url, backend, caplog, request):
    """A login that may create tables but not extensions (CREATE on the database)."""
    if backend != "postgresql":
        pytest.skip("pg_trgm")
    import psycopg2

    cluster = request.getfixturevalue("pg_cluster")
    name = bare_url.rsplit("/", 1)[1]
    role = f"noext_{name}"
    conn = psycopg2.connect(bare_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN')
        cur.execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{role}"')
        cur.execute(f'REVOKE CREATE ON DATABASE "{name}" FROM PUBLIC')
    try:
        _migrated_without_index(bare_url.replace("postgres@", f"{role}@"), backend, caplog, "pg_trgm")
    finally:
        store_db.close()
        with conn.cursor() as cur:
            cur.execute(f'DROP OWNED BY "{role}"')
            cur.execute(f'DROP ROLE "{role}"')
        conn.close()
        del cluster


def _migrated_without_index(url, backend, caplog, what):
    with caplog.at_level(logging.WARNING, logger="tui_billing.store"):
        store_db.connect(url)  # every migration applied: the store works
    assert store_db.pending_migrations() == []
    assert any("search index not built" in r.getMessage() and what in r.getMessage() for r in caplog.records)
    assert not _indexed(backend)
    from tui_billing.store.settings import ensure_defaults

    ensure_defaults()
    accounts = [F.account(name, email=email) for name, email in NAMES]
    for acc, number in zip(accounts, NUMBERS, strict=False):
        F.invoice(acc=acc, number=number)
    for typed in ("ANGSTR", "100%", "zzqx", "ab"):
        f = Q.make_filters(customer=typed)
        assert _found(f) == _scan_ids(f), typed
    for typed in ("000658", "x%1", "zzqx", "65"):
        f = Q.make_filters(number=typed)
        assert _found(f) == _scan_ids(f), typed
    if backend == "sqlite":
        assert "VIRTUAL TABLE" not in _plan(*Q.ids_matching(Q.make_filters(number="000658")).sql())
