"""import-xdrs: the CSV format, validation with line numbers, atomicity,
--skip-bad with a rejects file, idempotency by xDR id."""

from __future__ import annotations

import csv
import datetime as dt
import json
from decimal import Decimal as D

import pytest

from tui_billing import xdr_import
from tui_billing.store.models import Account, CustomerClass, Xdr
from tui_billing.store.settings import save_setting

HEADER = "xdr_id,account,service,time,quantity,amount\n"


@pytest.fixture
def accounts(store_url):
    cls = CustomerClass.create(name="Enterprise", send_mode="after_review", hold_days=5, net_days=26)
    eur = Account.create(
        name="Müller & Söhne GmbH",
        email="Billing@Mueller.example",
        account_type="business",
        customer_class=cls,
        currency="EUR",
    )
    jpy = Account.create(
        name="Ōsaka Trading KK", email="ap@osaka.example", account_type="business", customer_class=cls, currency="JPY"
    )
    for i in (1, 2):  # two accounts share an email: it cannot identify either
        Account.create(
            name=f"Shared {i}",
            email="shared@example.com",
            account_type="residential",
            customer_class=cls,
            currency="EUR",
        )
    return eur, jpy


def write(tmp_path, text: str | bytes, name="xdrs.csv"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def stored():
    return {x.xdr_id: (x.account_id, x.service, x.time, x.quantity, x.amount) for x in Xdr.select().order_by(Xdr.id)}


def test_import_stores_exact_values(cli, accounts, tmp_path):
    eur, jpy = accounts
    path = write(
        tmp_path,
        "\ufeff"
        + HEADER  # Excel's byte-order mark is fine
        + f"sw-1,{eur.id},Voice calls,2026-10-05T08:00:00,1234.567,12.3456\n"
        f"sw-2,billing@mueller.example,SMS,2026-10-05T08:00:00+02:00,1,0.05\n"  # email, any case
        "\n"  # blank lines are ignored
        f"sw-3,{jpy.id},Mobile data,2026-10-31T23:59:59.5Z,0,-120\n"
        f'"sw,4",{jpy.id},"Data, roaming",2026-10-06,0.001,7\r\n',
    )
    code, out, err = cli("import-xdrs", str(path), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["rows"], doc["imported"], doc["already_imported"], doc["rejected"]) == (4, 4, 0, 0)
    assert doc["errors"] == [] and doc["rejects_file"] is None and doc["mode"] == "atomic"
    assert err == ""  # no progress bar when not on a terminal
    assert stored() == {
        "sw-1": (eur.id, "Voice calls", dt.datetime(2026, 10, 5, 8), D("1234.567"), D("12.3456")),
        "sw-2": (eur.id, "SMS", dt.datetime(2026, 10, 5, 6), D("1"), D("0.05")),  # +02:00 -> UTC
        "sw-3": (jpy.id, "Mobile data", dt.datetime(2026, 10, 31, 23, 59, 59, 500000), D("0"), D("-120")),
        "sw,4": (jpy.id, "Data, roaming", dt.datetime(2026, 10, 6), D("0.001"), D("7")),
    }


def test_times_without_offset_are_in_the_billing_time_zone(cli, accounts, tmp_path):
    eur, _ = accounts
    save_setting("timezone", "Europe/Warsaw")
    path = write(
        tmp_path,
        HEADER + f"a,{eur.id},Voice,2026-10-01T00:30,1,1\n"
        f"b,{eur.id},Voice,2026-11-01T00:30,1,1\n"
        f"c,{eur.id},Voice,2026-11-01T00:30Z,1,1\n",
    )
    code, _, err = cli("import-xdrs", str(path))
    assert code == 0, err
    times = {k: v[2] for k, v in stored().items()}
    assert times == {
        "a": dt.datetime(2026, 9, 30, 22, 30),
        "b": dt.datetime(2026, 10, 31, 23, 30),
        "c": dt.datetime(2026, 11, 1, 0, 30),
    }


def test_importing_the_same_file_twice_adds_nothing(cli, accounts, tmp_path):
    eur, _ = accounts
    Xdr.create(
        xdr_id="old-1", account=eur, service="Voice", time=dt.datetime(2026, 9, 1), quantity=D("1"), amount=D("1")
    )
    path = write(
        tmp_path,
        HEADER
        + "".join(f"x{i},{eur.id},Voice,2026-10-05T08:00:00,1,0.5\n" for i in range(5))
        + f"old-1,{eur.id},Voice,2026-10-05T08:00:00,99,99\n",
    )
    code, out, _ = cli("import-xdrs", str(path))
    assert code == 0
    assert "imported 5 xDRs" in out and "1 already in the store" in out
    before = stored()
    assert before["old-1"][3] == D("1")  # an id already stored is skipped, not overwritten
    code, out, _ = cli("import-xdrs", str(path), "--json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["imported"], doc["already_imported"], doc["rejected"]) == (0, 6, 0)
    assert stored() == before


BAD_ROWS = [
    # (row after "id,", field, words in the reason)
    ("{eur},Voice,2026-10-05T08:00:00,1,1", None, None),  # control: a good row
    ("999,Voice,2026-10-05T08:00:00,1,1", "account", "account 999 does not exist"),
    ("nobody@example.com,Voice,2026-10-05T08:00:00,1,1", "account", "no account has the email"),
    ("shared@example.com,Voice,2026-10-05T08:00:00,1,1", "account", "more than one account"),
    ("Müller,Voice,2026-10-05T08:00:00,1,1", "account", "neither an account id nor an account email"),
    ("{eur},Voice,2026-13-05T08:00:00,1,1", "time", "not an ISO 8601 date-time"),
    ("{eur},Voice,05/10/2026 08:00,1,1", "time", "not an ISO 8601 date-time"),
    ("{eur},Voice,,1,1", "time", "is empty"),
    ("{eur},,2026-10-05T08:00:00,1,1", "service", "is empty"),
    ("{eur},{long_service},2026-10-05T08:00:00,1,1", "service", "longer than 60"),
    ("{eur},Voi\x00ce,2026-10-05T08:00:00,1,1", "service", "contains a NUL byte"),  # PostgreSQL cannot store it
    ("{eur},Voice,2026-10-05T08:00:00,NaN,1", "quantity", "not a number"),
    ("{eur},Voice,2026-10-05T08:00:00,1,Infinity", "amount", "not a number"),
    ("{eur},Voice,2026-10-05T08:00:00,1e3,1", "quantity", "not a plain decimal"),
    ("{eur},Voice,2026-10-05T08:00:00,1,+5", "amount", "not a plain decimal"),
    ("{eur},Voice,2026-10-05T08:00:00,1,.5", "amount", "not a plain decimal"),
    ("{eur},Voice,2026-10-05T08:00:00,1,0x10", "amount", "not a number"),
    ('{eur},Voice,2026-10-05T08:00:00,1,"1,50"', "amount", "not a number"),
    ("{eur},Voice,2026-10-05T08:00:00,1,1.2.3", "amount", "not a number"),
    ("{eur},Voice,2026-10-05T08:00:00,1,١٢", "amount", "not a number"),  # Arabic-Indic digits
    ("{eur},Voice,2026-10-05T08:00:00,1,", "amount", "is empty"),
    ("{eur},Voice,2026-10-05T08:00:00,1.2345,1", "quantity", "more than 3 decimal places"),
    ("{eur},Voice,2026-10-05T08:00:00,1,0.12345", "amount", "more than 4 decimal places"),
    ("{eur},Voice,2026-10-05T08:00:00,1,1234567890123", "amount", "too large"),
    ("{eur},Voice,2026-10-05T08:00:00,-1,1", "quantity", "is negative"),
    ("{eur},Voice,2026-10-05T08:00:00,1", "row", "has 5 fields, expected 6"),
    ("{eur},Voice,2026-10-05T08:00:00,1,1,extra", "row", "has 7 fields, expected 6"),
]


@pytest.mark.parametrize("row, field, words", BAD_ROWS[1:], ids=[r[1] + ":" + r[2] for r in BAD_ROWS[1:]])
def test_a_bad_row_fails_the_whole_file_with_its_line_number(cli, accounts, tmp_path, row, field, words):
    eur, _ = accounts
    good = BAD_ROWS[0][0].format(eur=eur.id)
    bad = row.format(eur=eur.id, long_service="S" * 61)
    path = write(tmp_path, HEADER + f"g1,{good}\ng2,{good}\nbad,{bad}\ng3,{good}\n")
    code, out, err = cli("import-xdrs", str(path), "--json")
    assert code == 2
    assert Xdr.select().count() == 0  # atomic: nothing written
    assert f"xdrs.csv:4: {field}: " in err and words in err
    doc = json.loads(out)
    assert doc["error"]["field"] == "file"
    assert (doc["rows"], doc["imported"], doc["rejected"]) == (4, 0, 1)
    assert doc["errors"][0]["line"] == 4 and doc["errors"][0]["field"] == field
    assert words in doc["errors"][0]["reason"]
    assert not (tmp_path / "xdrs.rejects.csv").exists()


def test_duplicate_id_in_file_and_line_numbers_with_multiline_fields(cli, accounts, tmp_path):
    eur, _ = accounts
    path = write(
        tmp_path,
        HEADER + f'a,{eur.id},"Voice\nover two lines",2026-10-05T08:00:00,1,1\n'  # lines 2-3
        f"b,{eur.id},Voice,2026-10-05T08:00:00,1,1\n"  # line 4
        f"a,{eur.id},Voice,2026-10-05T08:00:00,1,1\n",
    )  # line 5
    code, out, err = cli("import-xdrs", str(path))
    assert code == 2
    assert "xdrs.csv:5: xdr_id: duplicate xdr_id 'a' (first on line 2)" in err
    assert "nothing imported" in err
    assert Xdr.select().count() == 0


def test_every_bad_row_is_reported_not_just_the_first(cli, accounts, tmp_path):
    eur, _ = accounts
    rows = [
        f"ok{i},{eur.id},Voice,2026-10-05T08:00:00,1,1" if i % 3 else f"bad{i},{eur.id},Voice,nope,1,1"
        for i in range(1, 31)
    ]
    path = write(tmp_path, HEADER + "\n".join(rows) + "\n")
    code, out, err = cli("import-xdrs", str(path), "--json")
    assert code == 2
    doc = json.loads(out)
    assert doc["rejected"] == 10
    assert [e["line"] for e in doc["errors"]] == [i + 1 for i in range(3, 31, 3)]
    assert Xdr.select().count() == 0


def test_invalid_utf8_names_its_line(cli, accounts, tmp_path):
    eur, _ = accounts
    data = (
        HEADER + f"a,{eur.id},Voice,2026-10-05T08:00:00,1,1\n"
    ).encode() + f"b,{eur.id},Caf\xe9,2026-10-05T08:00:00,1,1\n".encode("latin-1")
    path = write(tmp_path, data)
    code, out, err = cli("import-xdrs", str(path))
    assert code == 2
    assert "xdrs.csv:3: row: is not valid UTF-8 text" in err
    assert Xdr.select().count() == 0


@pytest.mark.parametrize(
    "content, field, words",
    [
        (b"", "file", "is empty"),
        (b"\n\n", "file", "is empty"),
        (b"xdr_id;account;service;time;quantity;amount\n", "header", "line 1 must be the header"),
        (b"a,1,Voice,2026-10-05T08:00:00,1,1\n", "header", "line 1 must be the header"),
        (
            b"xdr_id,account,service,time,quantity,amount,currency\na,1,V,2026-10-05,1,1,EUR\n",
            "header",
            "unknown column(s) 'currency'",
        ),
        (b"xdr_id,account,service,time,quantity\n", "header", "missing column(s) amount"),
        (b"xdr_id,account,service,time,quantity,amount,amount\n", "header", "appears twice"),
        ("xdr_id,account,service,time,quantity,amount\n".encode("utf-16"), "file", "not UTF-8"),
        ("xdr_id,account,servicé,time,quantity,amount\n".encode("latin-1"), "file", "not UTF-8"),
    ],
)
def test_unusable_files_exit_2_naming_the_problem(cli, accounts, tmp_path, content, field, words):
    path = write(tmp_path, content)
    code, out, err = cli("import-xdrs", str(path), "--json")
    assert code == 2
    assert f"error: {field}: " in err and words in err
    assert json.loads(out)["error"]["field"] == field
    assert Xdr.select().count() == 0


def test_missing_file(cli, store_url, tmp_path):
    code, out, err = cli("import-xdrs", str(tmp_path / "nope.csv"))
    assert code == 2 and "file:" in err and "does not exist" in err


def test_header_columns_in_any_order_and_case(cli, accounts, tmp_path):
    eur, _ = accounts
    path = write(
        tmp_path, f" Amount ,QUANTITY,time,service,account,xdr_id\n0.5,2,2026-10-05T08:00:00,Voice,{eur.id},z1\n"
    )
    code, _, err = cli("import-xdrs", str(path))
    assert code == 0, err
    assert stored() == {"z1": (eur.id, "Voice", dt.datetime(2026, 10, 5, 8), D("2"), D("0.5"))}


def test_skip_bad_imports_good_rows_and_writes_rejects(cli, accounts, tmp_path):
    eur, jpy = accounts
    path = write(
        tmp_path,
        HEADER + f"a,{eur.id},Voice,2026-10-05T08:00:00,1,1\n"
        f"b,999,Voice,2026-10-05T08:00:00,1,1\n"
        f'c,{jpy.id},"Data, roaming",2026-10-05T08:00:00,1,1\n'
        f"d,{eur.id},Voice,2026-10-05T08:00:00,1.2345,1\n"
        f"a,{eur.id},Voice,2026-10-05T08:00:00,1,1\n"
        f"e,{eur.id},Voice\n",
    )
    code, out, err = cli("import-xdrs", str(path), "--skip-bad", "--json")
    assert code == 1
    doc = json.loads(out)
    assert (doc["rows"], doc["imported"], doc["rejected"]) == (6, 2, 4)
    rejects = tmp_path / "xdrs.rejects.csv"
    assert doc["rejects_file"] == str(rejects)
    assert sorted(stored()) == ["a", "c"]
    with open(rejects, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["xdr_id", "account", "service", "time", "quantity", "amount", "reason"],
        ["b", "999", "Voice", "2026-10-05T08:00:00", "1", "1", "line 3: account: account 999 does not exist"],
        [
            "d",
            str(eur.id),
            "Voice",
            "2026-10-05T08:00:00",
            "1.2345",
            "1",
            "line 5: quantity: '1.2345' has more than 3 decimal places",
        ],
        [
            "a",
            str(eur.id),
            "Voice",
            "2026-10-05T08:00:00",
            "1",
            "1",
            "line 6: xdr_id: duplicate xdr_id 'a' (first on line 2)",
        ],
        [
            "e",
            str(eur.id),
            "Voice",
            "line 7: row: has 3 fields, expected 6 (xdr_id,account,service,time,quantity,amount)",
        ],
    ]
    assert "xdrs.csv:3: account:" in err

    # Fix the rejects, import them: only the new rows go in; a clean run removes the stale rejects file.
    fixed = write(
        tmp_path,
        HEADER + f"b,{eur.id},Voice,2026-10-05T08:00:00,1,1\nd,{eur.id},Voice,2026-10-05T08:00:00,1.234,1\n",
        name="xdrs.csv",
    )
    code, out, err = cli("import-xdrs", str(fixed), "--skip-bad")
    assert code == 0, err
    assert sorted(stored()) == ["a", "b", "c", "d"]
    assert not rejects.exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_duplicates_across_batches_and_atomic_rollback_of_earlier_batches(store_url, accounts, tmp_path):
    eur, _ = accounts
    rows = [f"id{i},{eur.id},Voice,2026-10-05T08:00:00,1,{i}" for i in range(1, 8)]
    rows.append(f"id2,{eur.id},Voice,2026-10-05T08:00:00,1,1")  # line 9: duplicate of line 3, three batches back
    path = write(tmp_path, HEADER + "\n".join(rows) + "\n")
    result = xdr_import.import_xdrs(path, batch_size=2)
    assert not result.committed
    assert [str(e) for e in result.errors] == [
        "line 9: xdr_id: duplicate xdr_id 'id2': an earlier line of this file has it"
    ]
    assert Xdr.select().count() == 0  # batches already inserted were rolled back

    result = xdr_import.import_xdrs(path, batch_size=2, skip_bad=True)
    assert result.committed and (result.imported, result.rejected) == (7, 1)
    assert Xdr.select().count() == 7
    assert sorted(int(x.amount) for x in Xdr.select()) == [1, 2, 3, 4, 5, 6, 7]


def test_row_after_a_rejected_row_with_the_same_id_is_a_duplicate(store_url, accounts, tmp_path):
    eur, _ = accounts
    path = write(
        tmp_path,
        HEADER
        + f"x,{eur.id},Voice,never,1,1\n"
        + "".join(f"f{i},{eur.id},Voice,2026-10-05,1,1\n" for i in range(5))
        + f"x,{eur.id},Voice,2026-10-05,1,1\n",
    )
    result = xdr_import.import_xdrs(path, batch_size=2, skip_bad=True)
    assert [e.field for e in result.errors] == ["time", "xdr_id"]
    assert result.errors[1].line == 8 and "first on line 2" in result.errors[1].reason
    assert Xdr.select().where(Xdr.xdr_id == "x").count() == 0


def test_many_rows_import_in_batches(store_url, accounts, tmp_path):
    eur, jpy = accounts
    n = 25_000
    path = tmp_path / "big.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        for i in range(n):
            f.write(f"big-{i},{eur.id if i % 2 else jpy.id},Voice,2026-10-{1 + i % 28:02d}T12:00:00,0.001,0.0001\n")
    calls = []
    result = xdr_import.import_xdrs(path, progress=lambda done, total: calls.append((done, total)))
    assert (result.imported, result.rejected) == (n, 0)
    assert Xdr.select().count() == n
    from peewee import fn

    assert D(int(Xdr.select(fn.SUM(Xdr.amount)).scalar())).scaleb(-4) == D("2.5")  # 25,000 x 0.0001, exact
    size = path.stat().st_size
    assert calls[-1] == (size, size) and len(calls) >= 3
    again = xdr_import.import_xdrs(path)
    assert (again.imported, again.existing) == (0, n)


def test_rejects_path_is_beside_the_file(tmp_path):
    assert xdr_import.rejects_path_for(tmp_path / "oct.csv") == tmp_path / "oct.rejects.csv"
    assert xdr_import.rejects_path_for(tmp_path / "oct.CSV") == tmp_path / "oct.rejects.csv"
    assert xdr_import.rejects_path_for(tmp_path / "oct.txt") == tmp_path / "oct.txt.rejects.csv"


# --------------------------------------------------------------------------
# Duplicate-looking usage (issue 12): same account, service, time, quantity
# and amount under another xdr_id is imported and reported as a warning.


def test_a_resent_file_under_new_ids_is_imported_and_reported(cli, accounts, tmp_path):
    eur, jpy = accounts
    rows = [
        (eur.id, "Voice", "2026-10-05T08:00:00", "1.5", "0.25"),
        (jpy.id, "SMS", "2026-10-05T09:00:00Z", "1.0", "3.0"),
        (eur.id, "Mobile data", "2026-10-06T10:00:00.5", "0.0", "-0.5"),
    ]
    first = write(
        tmp_path,
        HEADER + "".join(f"x-{i},{a},{s},{t},{q},{m}\n" for i, (a, s, t, q, m) in enumerate(rows, 1)),
        name="oct.csv",
    )
    code, out, err = cli("import-xdrs", str(first))
    assert code == 0 and "warning" not in err
    # The same usage re-sent under new ids; quantity and amount written with more zeros, still equal.
    resent = write(
        tmp_path,
        HEADER + "".join(f"y-{i},{a},{s},{t},{q}0,{m}00\n" for i, (a, s, t, q, m) in enumerate(rows, 1)),
        name="oct-again.csv",
    )
    code, out, err = cli("import-xdrs", str(resent))
    assert code == 0, err
    assert "imported 3 xDRs" in out
    assert (
        "warning: 3 imported records repeat another record's account, service, time, quantity and amount "
        "under a different id (e.g. line 2: y-1 repeats x-1); check for re-sent usage before reissuing"
    ) in err
    assert Xdr.select().count() == 6  # imported all the same

    again = write(
        tmp_path,
        HEADER + "".join(f"z-{i},{a},{s},{t},{q},{m}\n" for i, (a, s, t, q, m) in enumerate(rows, 1)),
        name="oct-third.csv",
    )
    code, out, err = cli("import-xdrs", str(again), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["imported"] == 3
    assert doc["duplicates"] == {
        "count": 3,
        "examples": [  # the oldest record is the one repeated
            {"line": 2, "xdr_id": "z-1", "repeats": "x-1"},
            {"line": 3, "xdr_id": "z-2", "repeats": "x-2"},
            {"line": 4, "xdr_id": "z-3", "repeats": "x-3"},
        ],
    }
    assert "warning: 3 imported records repeat" in err
    assert Xdr.select().count() == 9


def test_duplicates_within_one_file_are_counted_across_batches(store_url, accounts, tmp_path):
    eur, _ = accounts
    same = f"{eur.id},Voice,2026-10-05T08:00:00,2,1"
    path = write(
        tmp_path,
        HEADER + f"a,{same}\n"  # line 2: the original
        f"b,{eur.id},Voice,2026-10-05T08:00:01,2,1\n"
        f"c,{same}\n"  # line 4: same batch as a
        f"d,{eur.id},Voice,2026-10-05T08:00:01,2,1\n"
        f"e,{same}\n"  # line 6: a later batch, a is already written by this run
        f"f,{eur.id},Voice,2026-10-06T08:00:00,2,1\n",
    )
    for skip_bad in (False, True):
        Xdr.delete().execute()
        result = xdr_import.import_xdrs(path, batch_size=3 if skip_bad else 4, skip_bad=skip_bad)
        assert result.committed and result.imported == 6
        assert result.duplicates == 3
        assert [str(d) for d in result.duplicate_examples] == [
            "line 4: c repeats a",
            "line 5: d repeats b",
            "line 6: e repeats a",
        ]
    assert xdr_import.import_xdrs(path).duplicates == 0  # every id already imported: skipped, not duplicates


def test_examples_are_capped_the_count_is_exact(store_url, accounts, tmp_path):
    eur, _ = accounts
    path = write(tmp_path, HEADER + "".join(f"r{i},{eur.id},Voice,2026-10-05T08:00:00,1,1\n" for i in range(12)))
    result = xdr_import.import_xdrs(path, batch_size=5)
    assert (result.imported, result.duplicates) == (12, 11)
    assert len(result.duplicate_examples) == xdr_import.DUPLICATE_EXAMPLES
    assert result.as_dict()["duplicates"]["count"] == 11


def test_near_misses_are_not_duplicates(cli, accounts, tmp_path):
    eur, jpy = accounts
    Xdr.create(
        xdr_id="old", account=eur, service="Voice", time=dt.datetime(2026, 10, 5, 8), quantity=D("2"), amount=D("1")
    )
    path = write(
        tmp_path,
        HEADER + f"n1,{eur.id},Voice,2026-10-05T08:00:00,3,1\n"  # same time, another quantity
        f"n2,{eur.id},Voice,2026-10-05T08:00:00,2,1.0001\n"  # another amount
        f"n3,{eur.id},SMS,2026-10-05T08:00:00,2,1\n"  # another service
        f"n4,{eur.id},voice,2026-10-05T08:00:00,2,1\n"  # services are compared exactly
        f"n5,{jpy.id},Voice,2026-10-05T08:00:00,2,1\n"  # another account
        f"n6,{eur.id},Voice,2026-10-05T08:00:00.001,2,1\n"  # another time
        f"n7,{eur.id},Voice,2026-10-05T08:00:00+01:00,2,1\n"  # 07:00 UTC
        f"n8,{eur.id},Voice,2026-10-05T08:00:00,0,1\n"
        f"n9,{eur.id},Voice,2026-10-05T08:00:00,2,-1\n",
    )
    code, out, err = cli("import-xdrs", str(path), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["imported"] == 9
    assert doc["duplicates"] == {"count": 0, "examples": []}
    assert "warning" not in err
    code, out, err = cli("import-xdrs", str(path))
    assert code == 0 and "warning" not in err


def test_an_already_imported_id_is_not_a_duplicate(cli, accounts, tmp_path):
    eur, _ = accounts
    Xdr.create(
        xdr_id="x-1", account=eur, service="Voice", time=dt.datetime(2026, 10, 5, 8), quantity=D("1"), amount=D("1")
    )
    path = write(
        tmp_path,
        HEADER + f"x-1,{eur.id},Voice,2026-10-05T08:00:00,1,1\n"  # the same record again
        f"x-2,{eur.id},Voice,2026-10-05T09:00:00,1,1\n",
    )
    code, out, err = cli("import-xdrs", str(path), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["imported"], doc["already_imported"]) == (1, 1)
    assert doc["duplicates"] == {"count": 0, "examples": []}
    assert "warning" not in err


def test_duplicates_with_skip_bad_and_rejected_rows(cli, accounts, tmp_path):
    eur, _ = accounts
    Xdr.create(
        xdr_id="old", account=eur, service="Voice", time=dt.datetime(2026, 10, 5, 8), quantity=D("1"), amount=D("1")
    )
    path = write(
        tmp_path,
        HEADER + f"bad,{eur.id},Voice,2026-10-05T08:00:00,1,nope\n"  # rejected: not counted
        f"new,{eur.id},Voice,2026-10-05T08:00:00,1,1\n",
    )
    code, out, err = cli("import-xdrs", str(path), "--json")  # atomic: nothing imported, nothing counted
    assert code == 2
    assert json.loads(out)["duplicates"] == {"count": 0, "examples": []} and "warning" not in err
    code, out, err = cli("import-xdrs", str(path), "--skip-bad", "--json")
    assert code == 1  # for the bad row; the duplicate is only a warning
    doc = json.loads(out)
    assert (doc["imported"], doc["rejected"]) == (1, 1)
    assert doc["duplicates"] == {"count": 1, "examples": [{"line": 3, "xdr_id": "new", "repeats": "old"}]}
    assert "warning: 1 imported record repeats another record's" in err and "line 3: new repeats old" in err


# --------------------------------------------------------------------------
# Issue 14 (defect 11): text PostgreSQL cannot store is refused per row, the
# same on SQLite, before anything reaches the store.


def test_nul_bytes_and_overlong_text_are_refused_per_row_on_both_backends(cli, accounts, tmp_path):
    eur, _ = accounts
    path = write(
        tmp_path,
        HEADER + f"ok-1,{eur.id},Voice,2026-10-05T08:00:00,1,1\n"  # line 2
        f"nul\x00id,{eur.id},Voice,2026-10-05T08:00:00,1,1\n"  # line 3
        f"ok-2,{eur.id},Voi\x00ce,2026-10-05T08:00:00,1,1\n"  # line 4
        f"ok-3,{eur.id}\x00,Voice,2026-10-05T08:00:00,1,1\n"  # line 5
        f"ok-4,{eur.id},{'S' * 10_000},2026-10-05T08:00:00,1,1\n"  # line 6
        f"{'X' * 65},{eur.id},Voice,2026-10-05T08:00:00,1,1\n"  # line 7
        f'ok-5,{eur.id},"Data\x00\nroaming",2026-10-05T08:00:00,1,1\n'  # lines 8-9
        f"ok-6,{eur.id},Voice,2026-10-05T08:00\x00,1,1\n"  # line 10
        f"ok-7,{eur.id},Voice,2026-10-05T08:00:00,1,1\n",
    )  # line 11
    code, out, err = cli("import-xdrs", str(path), "--skip-bad", "--json")
    assert code == 1, err
    doc = json.loads(out)
    got = [(e["line"], e["field"]) for e in doc["errors"]]
    assert got == [
        (3, "xdr_id"),
        (4, "service"),
        (5, "account"),
        (6, "service"),
        (7, "xdr_id"),
        (8, "service"),
        (10, "time"),
    ]
    reasons = {(e["line"], e["field"]): e["reason"] for e in doc["errors"]}
    assert (
        reasons[(3, "xdr_id")]
        == reasons[(4, "service")]
        == reasons[(8, "service")]
        == reasons[(10, "time")]
        == "contains a NUL byte"
    )  # a trailing NUL, which fromisoformat ignores
    assert reasons[(6, "service")] == "is longer than 60 characters"
    assert reasons[(7, "xdr_id")] == "is longer than 64 characters"
    assert (doc["rows"], doc["imported"], doc["rejected"]) == (9, 2, 7)
    assert sorted(stored()) == ["ok-1", "ok-7"]
    assert all("\x00" not in x.service and "\x00" not in x.xdr_id for x in Xdr.select())
    with open(tmp_path / "xdrs.rejects.csv", encoding="utf-8", newline="") as f:
        rejects = list(csv.reader(f))
    assert [r[-1].split(":")[0] for r in rejects[1:]] == [f"line {n}" for n, _ in got]
    assert rejects[1][0] == "nul\x00id"  # the rejected row as it came, to be fixed and re-imported

    # Atomic mode: the same file is refused as a whole, nothing written, on both backends.
    Xdr.delete().execute()
    code, out, err = cli("import-xdrs", str(path), "--json")
    assert code == 2 and "xdrs.csv:3: xdr_id: contains a NUL byte" in err
    assert Xdr.select().count() == 0
