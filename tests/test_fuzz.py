"""Issue 14: generated bad input across the commands, on SQLite and PostgreSQL.

Every case must end with exit status 2, a message naming the field, no
traceback, and the store exactly as it was (every table's rows compared
before and after).  The CLI runs in-process (`cli.main(argv)`) against one
store per backend, so about 1,200 cases per backend take seconds; a handful
of subprocess cases pass real non-UTF-8 bytes in argv.

The cases come from a seeded generator (SEED): the same cases on every run
and both backends.  A failure names the case's argv, so it can be replayed.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tui_billing import statuses as S
from tui_billing.cli import main
from tui_billing.store import db as store_db
from tui_billing.store.models import ALL_MODELS, Account

from . import factories as F
from .conftest import new_pg_database, opened

SEED = 14
CASES = 1000  # per backend

# Values that are bad wherever they go: blank, control characters, bidi
# override, zero-width, too long for any argument.
# (Line breaks and tabs inside typed text are white space, collapsed to one
# space by text.typed: "ok\nAPPROVED" is read as "ok APPROVED", not refused.)
DIRTY = [
    "",
    " ",
    "   ",
    "\t",
    "\x1b[2J",
    "a\x1bb",
    "\x00",
    "x\x00y",
    "\r\n",
    "\u202e",
    "\u200b",
    "\x7f",
    "\x9b31m",
    "\u2028",
    "a\u202eb",
    "\ufeffx",
    "x" * 5000,
]
ARABIC = "٠١٢٣٤٥٦٧٨٩"
POISON = [
    "a",
    "e",
    "E",
    "x",
    "_",
    "#",
    "$",
    "%",
    "١",
    "٫",
    "\x1b",
    "\u202e",
    "/",
    "=",
    "-+",
    "++",
    "..",
    ",,",
    "NaN",
    "inf",
    "0x",
    "\uff15",
]


def arabic(text: str) -> str:
    return "".join(ARABIC[int(c)] if c.isdigit() else c for c in text)


# --------------------------------------------------------------------------
# The store: a few invoices, classes and accounts, the same on both backends.


@pytest.fixture(scope="module")
def fuzz_store(request, backend, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"fuzz-{backend}")
    if backend == "sqlite":
        url = "sqlite:///" + str(base / "store.db")
    else:
        url = new_pg_database(
            request.getfixturevalue("pg_cluster"), request.getfixturevalue("pg_template"), "fuzz_store"
        )
    gen = opened(url)
    next(gen)
    cls = F.customer_class("Enterprise", "after_review", 5, 26)
    F.customer_class("Retail", "immediately", 0, 14)
    acc = F.account("Zoë Łukasiewicz", cls=cls, email="zoe@example.com")
    pln = F.account("Ōsaka Trading KK", currency="PLN", cls=cls, email="osaka@example.com")
    under = [F.invoice(acc=acc, total=Decimal("100.00")) for _ in range(3)]
    F.invoice(acc=pln, total=Decimal("250.00"))
    F.invoice(acc=acc, status=S.APPROVED)
    F.invoice(acc=acc, status=S.REJECTED, reissue_mode="off_peak")
    info = {
        "url": url,
        "dir": base,
        "numbers": [i.number for i in under],
        "account_ids": [str(a) for (a,) in Account.select(Account.id).tuples()],
        "emails": ["zoe@example.com", "osaka@example.com"],
    }
    store_db.close()
    yield info
    try:
        next(gen)
    except StopIteration:
        pass


class Dumper:
    """Every table's rows, read over a connection of its own (the CLI opens
    and closes the store's shared one on each call)."""

    def __init__(self, url: str):
        if url.startswith("sqlite:///"):
            import sqlite3

            self.conn = sqlite3.connect(url[len("sqlite:///") :])
            self.postgres = False
        else:
            import psycopg2

            self.conn = psycopg2.connect(url)
            self.conn.autocommit = True
            self.postgres = True
        self.tables = [m._meta.table_name for m in ALL_MODELS]

    def dump(self) -> dict[str, list]:
        cur = self.conn.cursor()
        if self.postgres:  # every table in one round trip: row text, sorted
            cur.execute(
                "SELECT "
                + ", ".join(
                    f"(SELECT coalesce(array_agg(t::text ORDER BY t::text), '{{}}') FROM \"{table}\" t)"
                    for table in self.tables
                )
            )
            return dict(zip(self.tables, cur.fetchone()))
        out = {}
        for table in self.tables:
            cur.execute(f'SELECT * FROM "{table}"')
            out[table] = sorted(map(repr, cur.fetchall()))
        return out

    def close(self) -> None:
        self.conn.close()


# --------------------------------------------------------------------------
# The generator: (argv, field named in the error, where the name is printed).


def _junk(rng: random.Random, alphabet: str, low: int = 1, high: int = 10) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def _poisoned(rng: random.Random, alphabet: str, *, csv: bool = False) -> str:
    """Random text in `alphabet` with at least one character no reading accepts
    (in a CSV field: no comma, which would only move the error to the row)."""
    text = _junk(rng, alphabet, 0, 8)
    at = rng.randint(0, len(text))
    poison = rng.choice([p for p in POISON if not (csv and "," in p)])
    return text[:at] + poison + text[at:]


def bad_amounts(rng):
    fixed = [
        "abc",
        "-5",
        "0",
        "0.00",
        "1.234",
        "1e12",
        "1E+1",
        "NaN",
        "Infinity",
        "-0.01",
        "1,5",
        "12,50",
        "1.234,50",
        "١٢",
        "1_000",
        "12.5.5",
        "+5",
        "0x10",
        "9" * 40,
        "5e0",
        "١٢٫٥",
        "5 5",
        "--5",
        "100000000000000",
        "1,00",
        "٥",
    ]
    return rng.choice(fixed) if rng.random() < 0.4 else _poisoned(rng, "0123456789.,")


def bad_dates(rng):
    fixed = [
        "2026-13-01",
        "2026-02-30",
        "yesterday",
        "٢٠٢٦-٠١-٠١",
        "2026-1-1",
        "20260101x",
        "2026/01/01",
        "01.02.2026",
        "2026-00-10",
        "0000-01-01",
        "2026-01-01T",
        "T10:00",
        "2026-W54",
        "now",
    ]
    return rng.choice(fixed) if rng.random() < 0.5 else _poisoned(rng, "0123456789-")


def bad_nows(rng):
    fixed = [
        "yesterday",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00+14:00",
        "2026-01-01T25:00",
        "2026-13-01T10:00",
        "١٠:٠٠",
        "1e9",
        "1969-12-31T00:00Z",
        "9001-01-01T00:00",
        "2026-01-01 10:00 UTC",
        "2026-01-01T10:00+25:00",
        "--",
    ]
    return rng.choice(fixed) if rng.random() < 0.6 else _poisoned(rng, "0123456789-:T")


def bad_periods(rng):
    fixed = [
        "2026-13",
        "2026-00",
        "2026-1",
        "26-01",
        "٢٠٢٦-٠١",
        "2026-١٠",
        "1899-12",
        "9999-12",
        "2026_10",
        "2026-10-01",
        "10-2026",
        "2026 10",
        "0000-01",
        "2099-01",
    ]
    return rng.choice(fixed) if rng.random() < 0.6 else _poisoned(rng, "0123456789-")


def bad_ints(rng, low=1, high=None):
    fixed = [
        "١",
        "١٠",
        "1_0",
        "9223372036854775808",
        "99999999999999999999999",
        "1.5",
        "0x1",
        "1e3",
        " 1x",
        "+-1",
        "½",
        "\uff11",
        "٣",
    ]
    if low is not None:
        fixed.append(str(low - 1))
    if high is not None:
        fixed.append(str(high + 1))
    return rng.choice(fixed) if rng.random() < 0.6 else _poisoned(rng, "0123456789")


SETTINGS_BAD = {
    "offpeak_start": [
        "01:00Z",
        "01:00+05:00",
        "01-00",
        "25:00",
        "1:00",
        "01:00:00",
        "٠١:٠٠",
        "05:00",
        "24:00",
        "noon",
        "01:60",
    ],
    "offpeak_end": ["05:00Z", "5", "05:00-01:00", "01:00", "xx:yy", "٠٥:٠٠", "23:59:59"],
    "admin_email": [
        "nope",
        "a@b",
        "a@@example.com",
        "admins@example.com, cfo@example.com",
        "Admins <admins@example.com>",
        "a b@example.com",
        "ä@example.com",
        "@example.com",
        "admins@",
        "admins@example..com",
    ],
    "mail_from": [
        "x@y",
        "Billing",
        "Billing <billing>",
        "a@example.com, b@example.com",
        "<>",
        "Billing <billing@example.com>\r\nBcc: evil@attacker.example",
    ],
    "number_format": [
        "INV-{year}",
        "INV-{seq:>99999999}",
        "X" * 60 + "{seq}",
        "INV-{seq:6d}",
        "INV-{month}{seq}",
        "{seq!r}",
        "{nope}-{seq}",
        "{",
        "{seq:x}",
    ],
    "erp_integration": ["maybe", "2", "ON!", "١"],
    "auto_approve_flagged": ["perhaps", "yes please", "١"],
    "timezone": ["Mars/Olympus", "UTC+2", "../../etc/passwd", "Europe/Nowhere"],
    "risk_correction_share": ["0", "x", "١", "0_5", "-1", "NaN", "101"],
    "risk_tax_tolerance": ["-1", "101", "٢", "1_0", "inf"],
    "risk_hold_score": ["0", "high", "١٢", "1_000", "1.5", "-5"],
    "reporting_currency": ["euro", "EU", "E1R", "١٢٣"],
    "currency_rates": ["USD:0.92", "USD=0", "USD=1 USD=2", "USD=٠٫٩", "USD=1_0", "usd", "USD=-1"],
    "seller_name": [],
    "seller_address": [],
}


def generate(rng: random.Random, store: dict, n: int) -> list[tuple[list[str], str]]:
    numbers = store["numbers"]
    csv_dir: Path = store["dir"] / "csv"
    csv_dir.mkdir(exist_ok=True)
    csv_counter = iter(range(10**6))

    def num():
        return rng.choice(numbers)

    def unknown_number():
        return rng.choice(
            [
                f"NOPE-{_junk(rng, 'ABC0123456789', 1, 6)}",
                num() + "X",
                arabic(num()),
                num().lower() + "0",
                "INV-2026-" + "9" * rng.randint(7, 12),
            ]
        )

    def adjust_amount():
        flag = rng.choice(["credit", "charge"])
        return ["adjust", num(), f"--{flag}", bad_amounts(rng), "--description", "Promo"], flag

    def adjust_description():
        text = (
            rng.choice(DIRTY)
            if rng.random() < 0.7
            else _junk(rng, "ab ", 1, 5)
            + rng.choice(["\x1b[31m", "\x00", "\u202e", "\x07", "\ufeff", "\x9b", "\u200e"])
        )
        return ["adjust", num(), "--charge", "5", "--description", text], "description"

    def missing_invoice():
        verb = rng.choice(["show", "approve", "reissue", "assess", "adjust", "download"])
        bad = unknown_number()
        tail = {
            "show": [],
            "approve": [],
            "assess": [],
            "reissue": [rng.choice(["--now", "--off-peak"])],
            "adjust": ["--charge", "5", "--description", "x"],
            "download": ["--to", str(store["dir"] / "pdfs")],
        }[verb]
        if verb in ("approve", "reissue", "download") and rng.random() < 0.5:
            return [verb, num(), bad, *tail], "invoice"  # one bad number refuses the whole command
        return [verb, bad, *tail], "invoice"

    def dirty_number():
        verb = rng.choice(["show", "approve", "reissue", "adjust"])
        field = {"show": "number", "adjust": "number"}.get(verb, "NUMBER")
        tail = {"reissue": ["--now"], "adjust": ["--charge", "5", "--description", "x"]}.get(verb, [])
        return [verb, rng.choice(DIRTY), *tail], field

    def now():
        verb = rng.choice(
            [
                ["find"],
                ["approve", num()],
                ["class"],
                ["settings"],
                ["outbox"],
                ["bill-run", "--period", "2026-10"],
                ["reissue", num(), "--now"],
            ]
        )
        return ["--now", bad_nows(rng), *verb], "now"

    def filters():
        verb = rng.choice([["approve", "--all"], ["find"], ["assess", "--all"]])
        kind = rng.choice(["status", "status", "account-type", "class", "from", "to", "range"])
        if kind == "status":
            value = rng.choice(
                [",", " , ", ",,", "sent", "under review,nope", "UNDER_REVIEW;", arabic("1"), rng.choice(DIRTY)]
            )
            return [*verb, "--status", value], "status"
        if kind == "account-type":
            return [
                *verb,
                "--account-type",
                rng.choice(["alien", "Business ", "", "résidential", _junk(rng, "abc", 1, 9)]),
            ], "account-type"
        if kind == "class":
            return [
                *verb,
                "--class",
                rng.choice(["Nobody", "enterprise", "Enterprise\x1b", "", "Nobody-" + _junk(rng, "xyz", 1, 9)]),
            ], "class"
        if kind == "range":
            return [*verb, "--from", "2026-03-05", "--to", "2026-03-01"], "to"
        return [*verb, f"--{kind}", bad_dates(rng)], kind

    def period():
        return ["bill-run", "--period", bad_periods(rng)], "period"

    def ids():
        kind = rng.choice(["retry", "mark-sent", "limit", "invoices", "seed"])
        if kind in ("retry", "mark-sent"):
            return [
                "outbox",
                f"--{kind}",
                *([str(rng.randint(1, 9))] if rng.random() < 0.3 else []),
                bad_ints(rng, 1),
            ], kind
        if kind == "limit":
            return ["outbox", "--limit", bad_ints(rng, 1, 100_000)], "limit"
        if kind == "invoices":
            return ["demo", "--invoices", bad_ints(rng, 1, 10_000_000)], "invoices"
        return ["demo", "--seed", bad_ints(rng, 0)], "seed"

    def setting():
        key = rng.choice(list(SETTINGS_BAD))
        values = SETTINGS_BAD[key] + [v for v in DIRTY if key != "timezone" or v.strip()]
        value = rng.choice(values)
        if key == "timezone" and not value.strip("\t \u200b"):
            value = "Mars/Olympus"
        return ["settings", key, value], key

    def setting_key():
        key = rng.choice(
            [
                "",
                " ",
                "nope",
                "offpeak",
                "ADMIN_EMAIL",
                "admin_email\x1b",
                "risk",
                "\u202e",
                "timezone ",
                _junk(rng, "abcxyz_", 1, 12) + "!",
            ]
        )
        field = "key"
        argv = ["settings", key, *(["x"] if rng.random() < 0.5 else [])]
        return argv, field

    def klass():
        kind = rng.choice(["hold-days", "net-days", "name", "missing", "send-mode", "unknown", "review0"])
        if kind in ("hold-days", "net-days"):
            return ["class", "Enterprise", f"--{kind}", bad_ints(rng, 0, 365)], kind
        if kind == "name":
            name = rng.choice(
                ["x" * 121, "x" * 10_000, "Ent\x1berprise", "A\x00B", "", "  ", "\u202eevil", "Line\x0bBreak\x1b"]
            )
            return ["class", name, "--create", "--send-mode", "immediately"], "name"
        if kind == "missing":
            return ["class", rng.choice(["--hold-days", "--net-days"]), str(rng.randint(0, 30))], "name"
        if kind == "send-mode":
            return [
                "class",
                "Enterprise",
                "--send-mode",
                rng.choice(["later", "after-review", "", "IMMEDIATELY"]),
            ], "send-mode"
        if kind == "unknown":
            return ["class", "Nobody" + _junk(rng, "xyz", 1, 6), "--hold-days", "3"], "name"
        return ["class", "Enterprise", "--hold-days", "0"], "hold-days"

    def db():
        url = rng.choice(
            [
                "sqlite:////dev/null",
                "mysql://u:p@h/x",
                "",
                "sqlite:///" + str(store["dir"]),
                "sqlite:///" + str(store["dir"] / "store.db" / "x.db")
                if store["url"].startswith("sqlite")
                else "sqlite:////dev/null/x.db",
                "oracle://scott:tiger@h",
                "\x1b]0;owned\x07",
            ]
        )
        return ["--db", url, "find"], "db"

    def csv_file():
        """A CSV with one bad field (or a bad file): exit 2, nothing imported, the field named."""
        good = [
            f"fz{next(csv_counter)},{rng.choice(store['account_ids'] + store['emails'])},Internet,"
            f"2026-11-0{rng.randint(1, 9)}T10:00,1.5,2.00"
            for _ in range(rng.randint(0, 3))
        ]
        kind = rng.choice(["xdr_id", "account", "service", "time", "quantity", "amount", "header", "file", "row"])
        fields = [f"fz{next(csv_counter)}", store["emails"][0], "Internet", "2026-11-02T10:00", "1", "1.00"]
        expect = kind
        raw = None
        if kind == "xdr_id":
            fields[0] = rng.choice(["", "a\x00b", "x" * 65])
        elif kind == "account":
            fields[1] = rng.choice(
                ["999999", "nobody@example.com", "", "zoe@example", arabic(store["account_ids"][0]), "Zoë Łukasiewicz"]
            )
        elif kind == "service":
            fields[2] = rng.choice(["", "   ", "Int\x00ernet", "S" * 61])
        elif kind == "time":
            fields[3] = rng.choice(
                [
                    "",
                    "yesterday",
                    "2026-13-01T10:00",
                    "2026-11-02T10:00\x00junk",
                    "٢٠٢٦-١١-٠٢T10:00",
                    "9999-12-31T23:59:59-14:00",
                    _poisoned(rng, "0123456789-:T", csv=True),
                ]
            )
        elif kind == "quantity":
            fields[4] = rng.choice(
                ["", "-1", "1.2345", "abc", "١", "1e3", "NaN", "1_0", "9" * 20, _poisoned(rng, "0123456789.", csv=True)]
            )
        elif kind == "amount":
            fields[5] = rng.choice(
                ["", "1.23456", "x", "١٫٠", "Infinity", "+1", "9" * 20, _poisoned(rng, "0123456789.", csv=True)]
            )
        elif kind == "header":
            raw = rng.choice(
                [
                    "id,account,service,time,quantity,amount\n",
                    "xdr_id,xdr_id,service,time,quantity,amount\n",
                    "a,b,c\n1,2,3\n",
                    "xdr_id,account,service,time,quantity\n",
                ]
            ).encode()
        elif kind == "file":
            raw = rng.choice([b"", b"\n\n", b"\xff\xfe" + "xdr_id".encode("utf-16-le"), b"xdr_id,acc\xffount\n"])
        else:  # a row of the wrong shape, or bytes that are not UTF-8
            raw = ("xdr_id,account,service,time,quantity,amount\n" + "\n".join(good) + "\n").encode() + rng.choice(
                [b"a,b\n", b"x1,zoe@example.com,Int\xe9rnet,2026-11-02T10:00,1,1\n", b'"unterminated,1,2,3,4,5\n']
            )
        path = csv_dir / f"bad{next(csv_counter)}.csv"
        if raw is None:
            rows = good + [",".join(fields)]
            rng.shuffle(rows)
            raw = ("xdr_id,account,service,time,quantity,amount\n" + "\n".join(rows) + "\n").encode("utf-8")
        path.write_bytes(raw)
        return ["import-xdrs", str(path)], expect

    def misc():
        return rng.choice(
            [
                (["jobs", "run", "--once", "--job", "nosuch"], "job"),
                (["find", "--customer", "\udcff"], "customer"),
                (["show", "\udcfe\udcff"], "number"),
                (["--config", ""], "config"),
                (["approve", num(), "--all"], "NUMBER"),
                (["approve"], "NUMBER"),
                (["approve", "--all", "--include-flagged"], "include-flagged"),
                (["assess"], "NUMBER"),
                (["download", num(), "--to", ""], "to"),
            ]
        )

    families = [
        (adjust_amount, 14),
        (adjust_description, 8),
        (missing_invoice, 10),
        (dirty_number, 5),
        (now, 8),
        (filters, 10),
        (period, 6),
        (ids, 8),
        (setting, 14),
        (setting_key, 3),
        (klass, 10),
        (db, 2),
        (csv_file, 10),
        (misc, 2),
    ]
    makers, weights = zip(*families)
    return [rng.choices(makers, weights)[0]() for _ in range(n)]


def test_fuzz_bad_input_exit_2_names_field_writes_nothing(fuzz_store, backend, capsys):
    cases = generate(random.Random(SEED), fuzz_store, CASES)
    url = fuzz_store["url"]
    dumper = Dumper(url)
    failures = []
    started = time.perf_counter()
    try:
        before = dumper.dump()
        for argv, field in cases:
            code = main(["--db", url, *argv] if argv[0] != "--db" else argv)
            out, err = capsys.readouterr()
            problems = []
            if code != 2:
                problems.append(f"exit {code}")
            if "Traceback" in err or "Traceback" in out:
                problems.append("traceback")
            if argv[0] == "import-xdrs" and field not in ("header", "file"):
                named = f": {field}: " in err
            else:
                named = f"error: {field}: " in err
            if not named:
                problems.append(f"field {field!r} not named")
            after = dumper.dump()
            if after != before:
                changed = [t for t in after if after[t] != before[t]]
                problems.append(f"store changed: {changed}")
                before = after
            if problems:
                failures.append(f"{argv!r}: {', '.join(problems)}\n    stderr: {err.strip()[:300]!r}")
    finally:
        dumper.close()
    seconds = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nfuzz {backend}: {len(cases)} cases in {seconds:.1f} s")
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures[:40])
    assert len(cases) >= 1000


def test_fuzz_non_utf8_argv_in_a_real_process(fuzz_store, tmp_path):
    """Bytes that are not UTF-8, as a shell passes them (Python surrogate-escapes
    them): exit 2, the field named, no traceback, nothing written.  Run side by side."""
    url = fuzz_store["url"]
    dumper = Dumper(url)
    before = dumper.dump()
    env = {**os.environ, "HOME": str(tmp_path)}
    cases = [
        ([b"find", b"--customer=\xff\xfe"], "customer"),
        ([b"approve", b"--all", b"--status", b"\xe9t\xe9"], "status"),
        ([b"show", b"INV-\xff"], "number"),
        ([b"settings", b"seller_name", b"Caf\xe9"], "seller_name"),
        ([b"class", b"Caf\xe9", b"--create"], "name"),
        ([b"find", b"--class", b"\x80", b"--json"], "class"),
    ]
    procs = [
        (
            argv,
            expect,
            subprocess.Popen(
                [sys.executable.encode(), b"-m", b"tui_billing", b"--db", url.encode(), *argv],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            ),
        )
        for argv, expect in cases
    ]
    try:
        for argv, expect, proc in procs:
            out, err = proc.communicate(timeout=60)
            text = err.decode("utf-8", "replace")
            assert proc.returncode == 2, (argv, text)
            assert "Traceback" not in text, (argv, text)
            assert f"error: {expect}: " in text, (argv, text)
            if b"--json" in argv:
                import json

                assert json.loads(out)["error"]["field"] == expect
        assert dumper.dump() == before
    finally:
        for _, _, proc in procs:
            if proc.poll() is None:
                proc.kill()
        dumper.close()
