"""Issue 13, search and `find`: the customer text is matched accent- and
case-insensitively on any part (a folded copy kept on the account, filled by
migration 0006 for old stores), invoice numbers by any part, and `find` never
truncates silently (stderr, --json total/next, --after, --all, --format csv).
Every test runs on SQLite and PostgreSQL (the `backend` fixture)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import types
from decimal import Decimal

import pytest

from tui_billing import statuses as S
from tui_billing.store import db as store_db
from tui_billing.store import queries as Q
from tui_billing.store.models import Account
from tui_billing.text import fold

from . import factories as F

# -- folding ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text,folded",
    [
        ("Ångström Labs", "angstrom labs"),
        ("ANGSTR", "angstr"),
        ("Zoë Łukasiewicz", "zoe lukasiewicz"),
        ("Øresund ApS", "oresund aps"),
        ("Straße", "strasse"),
        ("Þór Æsir", "thor aesir"),
        ("Œuvre Đaković", "oeuvre dakovic"),
        ("DIYARBAKIR ıi", "diyarbakir ii"),
        ("Ōsaka  Trading", "osaka trading"),
        ("ﬁne", "fine"),
        ("", ""),
        (None, ""),
    ],
)
def test_fold(text, folded):
    assert fold(text) == folded


# -- the customer search ------------------------------------------------------

NAMES = [
    "Ångström Labs AB",
    "Øresund Shipping ApS",
    "Straßenbau Łódź",
    "Ünïted 100% Örganic",
    "United 1000 Organic",
    "Acme_Corp",
    "AcmeXCorp",
]


@pytest.fixture
def customers(store_url):
    """One invoice for each of NAMES, keyed by name."""
    out = {}
    for name in NAMES:
        acc = F.account(name, email=f"billing@{name.split()[0].lower()}.example")  # accents kept
        out[name] = F.invoice(acc=acc).number
    return out


@pytest.mark.parametrize(
    "typed,names",
    [
        ("angstrom", ["Ångström Labs AB"]),
        ("ANGSTR", ["Ångström Labs AB"]),
        ("ström lab", ["Ångström Labs AB"]),  # any part, across words
        ("ÅNGSTRÖM", ["Ångström Labs AB"]),
        ("oresund", ["Øresund Shipping ApS"]),
        ("strassenbau lodz", ["Straßenbau Łódź"]),
        ("STRASSE", ["Straßenbau Łódź"]),
        ("billing@oresund", ["Øresund Shipping ApS"]),  # the email too
        ("united 100%", ["Ünïted 100% Örganic"]),  # % is a character, not a wildcard
        ("ORGANIC", ["Ünïted 100% Örganic", "United 1000 Organic"]),
        ("acme_c", ["Acme_Corp"]),  # _ is a character, not a wildcard
    ],
)
def test_customer_search_folds_accents_and_case_and_matches_any_part(customers, typed, names):
    rows = Q.page(Q.make_filters(customer=typed), limit=100)
    assert sorted(r.number for r in rows) == sorted(customers[n] for n in names)
    assert Q.count_matching(Q.make_filters(customer=typed)) == len(names)


def test_customer_search_in_counts_and_other_filters(customers):
    """The same condition serves the finder's counts and combines with the other filters."""
    f = Q.make_filters(customer="angstrom", status="under_review")
    assert Q.counts_by_status(f)["under_review"] == 1
    assert [r.number for r in Q.page(f.with_(account_type="business"), limit=10)] == [customers["Ångström Labs AB"]]
    assert Q.page(f.with_(account_type="residential"), limit=10) == []


def test_search_text_follows_the_account(store_url):
    acc = F.account("Ångström Labs AB", email="AP@Angstrom.example")
    assert Account.get_by_id(acc.id).search_text == "angstrom labs ab ap@angstrom.example"
    acc.name = "Þórsmörk Ehf"
    acc.save(only=[Account.name])
    assert Account.get_by_id(acc.id).search_text == "thorsmork ehf ap@angstrom.example"


def test_demo_accounts_are_searchable(store_url, ctx):
    from tui_billing import demo

    demo.build(ctx, invoices=120, seed=3, quiet=True)
    accounts = list(Account.select())
    assert accounts and all(a.search_text == Account.search_text_of(a.name, a.email) for a in accounts)
    # the demo's non-ASCII names are found by their ASCII spelling, in capitals
    accented = next(a for a in accounts if not a.name.isascii() and a.invoices.exists())
    typed = fold(accented.name).upper()
    assert typed.isascii() and typed != accented.name.upper()
    found = Q.page(Q.make_filters(customer=typed), limit=500)
    assert accented.id in {r.account.id for r in found}
    assert all(fold(r.account.name).upper().find(typed) >= 0 for r in found)


# -- invoice numbers by any part ------------------------------------------------


def test_number_matches_any_part_ignoring_case(store_url):
    a = F.invoice(number="INV-2026-000658")
    b = F.invoice(number="INV-2026-006580")
    F.invoice(number="INV-2026-000659")
    assert {r.number for r in Q.page(Q.make_filters(number="000658"), limit=10)} == {a.number}
    assert {r.number for r in Q.page(Q.make_filters(number="658"), limit=10)} == {a.number, b.number}
    assert {r.number for r in Q.page(Q.make_filters(number="inv-2026-00065"), limit=10)} == {
        a.number,
        "INV-2026-000659",
    }
    assert Q.page(Q.make_filters(number="%"), limit=10) == []


# -- migration 0006 fills old stores ----------------------------------------------


def test_migration_0006_fills_search_text_of_existing_accounts(bare_url):
    from playhouse.migrations import Runner

    db = store_db.connect(bare_url, migrate=False)
    Runner(db, str(store_db.MIGRATIONS_DIR)).up(target="0005_risk_evidence")  # a store of the last release
    p = db.param
    db.execute_sql(
        f"INSERT INTO customer_class (name, send_mode, hold_days, net_days, billing_period) "
        f"VALUES ({p}, {p}, {p}, {p}, {p})",
        ("Enterprise", "after_review", 5, 26, "monthly"),
    )
    names = [("Ångström Labs AB", "ap@angstrom.example")] + [(f"Kund {i} Ö", f"k{i}@x.example") for i in range(2500)]
    with db.atomic():
        for name, email in names:  # more than one batch of the migration
            db.execute_sql(
                f"INSERT INTO account (name, email, account_type, customer_class_id, currency, balance, "
                f"payment_model, address) VALUES ({p}, {p}, {p}, 1, {p}, 0, {p}, {p})",
                (name, email, "business", "EUR", "postpay", ""),
            )
    assert "0006_account_search_text" in store_db.apply_migrations(db)
    store_db.close()
    store_db.connect(bare_url)  # opened again as every command opens it: nothing left to apply
    assert store_db.pending_migrations() == []
    assert {a.name: a.search_text for a in Account.select().where(Account.id <= 2)} == {
        "Ångström Labs AB": "angstrom labs ab ap@angstrom.example",
        "Kund 0 Ö": "kund 0 o k0@x.example",
    }
    assert Account.select().where(Account.search_text == "").count() == 0
    assert [a.name for a in Account.select().where(Account.id.in_(Q.customer_matches("ANGSTR")))] == [
        "Ångström Labs AB"
    ]


# -- find: never truncates silently --------------------------------------------


def _seven():
    """7 invoices with ties on every sort column (keyset must break them by id)."""
    enterprise = F.customer_class()
    acc = F.account("Ångström Labs AB", cls=enterprise)
    day = dt.datetime(2026, 11, 18, 9, 0)
    out = []
    for i, (total, days, score) in enumerate(
        [(100, 0, 0), (100, 0, 30), (250, 1, 30), (99, 1, 0), (250, 2, 60), (100, 2, 0), (5, 3, 30)]
    ):
        out.append(
            F.invoice(
                acc=acc,
                total=Decimal(total),
                generated=day - dt.timedelta(days=days),
                number=f"INV-2026-{700 + i:06d}",
                risk_score=score,
            )
        )
    return out


def _doc(cli, *args):
    code, out, err = cli("find", *args, "--json")
    assert code == 0, err
    return json.loads(out), err


@pytest.mark.parametrize(
    "order",
    [
        [],
        ["--asc"],
        ["--sort", "number"],
        ["--sort", "total"],
        ["--sort", "total", "--asc"],
        ["--sort", "risk"],
        ["--sort", "deadline"],
    ],
)
def test_find_json_pages_by_cursor_cover_every_match_once(store_url, cli, order):
    _seven()
    everything, _ = _doc(cli, *order, "--all")
    assert everything["total"] == 7 and everything["next"] is None and len(everything["invoices"]) == 7
    seen, cursor, pages = [], None, 0
    while True:
        doc, err = _doc(cli, *order, "--limit", "3", *(["--after", cursor] if cursor else []))
        assert doc["total"] == 7 and len(doc["invoices"]) <= 3
        seen += [inv["number"] for inv in doc["invoices"]]
        pages += 1
        cursor = doc["next"]
        if cursor is None:
            break
        assert "of 7 matching invoices" in err
    assert pages == 3 and seen == [inv["number"] for inv in everything["invoices"]]


def test_find_says_on_stderr_how_many_match_and_how_to_see_the_rest(store_url, cli):
    _seven()
    code, out, err = cli("find", "--limit", "3")
    assert code == 0
    assert len([line for line in out.splitlines() if line.startswith("INV-")]) == 3
    assert "3 of 7 matching invoices shown" in err and "--all" in err and "--after" in err
    cursor = err.split("--after ")[1].split(" for the next page")[0]
    code, out, err = cli("find", "--limit", "3", "--after", cursor)
    assert code == 0 and "3 of 7" in err and len([ln for ln in out.splitlines() if ln.startswith("INV-")]) == 3
    for args in (["--limit", "7"], ["--all"], ["--all", "--format", "csv"], ["--limit", "10", "--json"]):
        code, out, err = cli("find", *args)
        assert code == 0 and err == "" and out.count("INV-2026-000") == 7, args


def test_find_after_an_invoice_number_continues_after_it(store_url, cli):
    inv = _seven()
    first, _ = _doc(cli, "--sort", "number", "--limit", "2")
    doc, _ = _doc(cli, "--sort", "number", "--limit", "2", "--after", inv[1].number)
    assert [i["number"] for i in first["invoices"]] == [inv[0].number, inv[1].number]
    assert [i["number"] for i in doc["invoices"]] == [inv[2].number, inv[3].number]
    assert doc["next"] is not None and doc["total"] == 7


def test_find_all_streams_in_keyset_batches(store_url):
    _seven()
    f = Q.make_filters()
    stream = Q.iter_matching(f, sort="total", batch=2)
    assert isinstance(stream, types.GeneratorType)  # rows are read as they are used, never all at once
    assert [r.id for r in stream] == [r.id for r in Q.page(f, sort="total", limit=100)]
    assert [r.id for r in Q.iter_matching(f, sort="risk", batch=3)] == [r.id for r in Q.page(f, sort="risk", limit=100)]


def test_find_csv_for_spreadsheets(store_url, cli):
    acc = F.account('=HYPERLINK("x"), "Ltd"', currency="EUR")
    inv = F.invoice(acc=acc, total=Decimal("1234.50"))
    code, out, err = cli("find", "--format", "csv")
    assert code == 0 and err == ""
    assert out.endswith("\r\n") and out.count("\r\n") == 2  # RFC 4180 line ends
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    assert len(rows) == 1
    row = rows[0]
    assert row["number"] == inv.number and row["status"] == S.UNDER_REVIEW and row["currency"] == "EUR"
    assert row["total"] == "1234.50" and row["outstanding"] == "1234.50"  # plain decimals, no grouping
    assert row["account"] == "'" + acc.name  # a spreadsheet shows it, never evaluates it
    assert row["review_deadline"] and row["issue_date"] == "2026-11-18"


def test_find_streamed_output_escapes_control_characters(store_url, cli):
    """Stored text from imports never drives a terminal, in every streamed format."""
    F.invoice(acc=F.account("Evil\x1b[2J\nCorp"))
    code, out, _ = cli("find", "--all", "--json")
    assert code == 0 and "\x1b" not in out
    assert json.loads(out)["invoices"][0]["account"] == "Evil\x1b[2J\nCorp"  # the data itself is kept
    code, out, _ = cli("find", "--all", "--format", "csv")
    assert code == 0 and "\x1b" not in out
    assert list(csv.DictReader(io.StringIO(out, newline="")))[0]["account"] == "Evil\\x1b[2J\\nCorp"
    code, out, _ = cli("find", "--all")
    assert code == 0 and "\x1b" not in out and "Evil\\x1b[2J\\nCorp" in out


@pytest.mark.parametrize(
    "args,field",
    [
        (["--json", "--format", "csv"], "format"),
        (["--json", "--format", "table"], "format"),
        (["--all", "--limit", "5"], "limit"),
        (["--after", "not-a-cursor"], "after"),
        (["--after", "number:asc:INV-2026-000701:2"], "after"),  # a cursor of another order
        (["--after", "issue_date:desc:yesterday:2"], "after"),
    ],
)
def test_find_bad_options_exit_2_naming_the_field(store_url, cli, args, field):
    _seven()
    code, out, err = cli("find", *args)
    assert code == 2 and "Traceback" not in err
    assert f"error: {field}:" in err
    assert "INV-" not in out


def test_find_every_option_has_help():
    import argparse

    from tui_billing.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    find = sub.choices["find"]
    options = {o: a for a in find._actions for o in a.option_strings}
    assert {"--all", "--after", "--format", "--limit", "--json", "--customer", "--number"} <= set(options)
    missing = [o for o, a in options.items() if not a.help or a.help == argparse.SUPPRESS]
    assert missing == []
    assert options["--format"].choices == ["table", "csv"]
