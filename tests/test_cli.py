"""The CLI contract of DESIGN.md: JSON shape, exit codes, bulk reporting, bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal

import pytest

from tui_billing import statuses as S
from tui_billing.store.models import ALL_MODELS, AuditEvent, Correction, Invoice

from . import factories as F

INVOICE_KEYS = {
    "number",
    "account",
    "customer_class",
    "status",
    "total",
    "currency",
    "issue_date",
    "due_date",
    "review_deadline",
    "revision",
}


def row_counts():
    return {m.__name__: m.select().count() for m in ALL_MODELS}


def test_find_json_shape(demo_store, cli):
    code, out, _ = cli("find", "--status", "under_review", "--limit", "5", "--json", "--counts")
    assert code == 0
    doc = json.loads(out)
    assert 0 < len(doc["invoices"]) <= 5
    for inv in doc["invoices"]:
        assert INVOICE_KEYS <= set(inv)
        assert inv["status"] == "under_review"
        assert isinstance(inv["total"], str) and Decimal(inv["total"]) >= 0
        assert inv["review_deadline"]
    assert set(doc["counts"]) == set(S.INVOICE_STATUSES)
    assert doc["counts"]["under_review"] == Invoice.select().where(Invoice.status == "under_review").count()


def test_find_filters_account_type_and_class(demo_store, cli):
    code, out, _ = cli("find", "--account-type", "residential", "--class", "Residential", "--limit", "500", "--json")
    assert code == 0
    rows = json.loads(out)["invoices"]
    assert rows and all(r["account_type"] == "residential" and r["customer_class"] == "Residential" for r in rows)


def test_find_account_type_returns_exactly_that_type(demo_store, cli):
    from tui_billing.store.models import Account

    expected = {i.number for i in Invoice.select().join(Account).where(Account.account_type == "business")}
    code, out, _ = cli("find", "--account-type", "business", "--limit", "1000", "--json")
    assert code == 0
    assert {r["number"] for r in json.loads(out)["invoices"]} == expected


@pytest.mark.parametrize("typed", ["ōsaka", "ŌSAKA", "Ōsaka", "zoë", "ZOË ŁUKASIEWICZ"])
def test_find_customer_ignores_case_of_non_ascii_letters(store_url, cli, typed):
    """SQLite's LOWER() leaves Ō and Ł alone: the search must not."""
    osaka = F.account("Ōsaka Trading KK")
    zoe = F.account("Zoë Łukasiewicz")
    other = F.account("Acme GmbH")
    numbers = {a.name: F.invoice(acc=a).number for a in (osaka, zoe, other)}
    code, out, _ = cli("find", "--customer", typed, "--json")
    assert code == 0
    found = {r["number"] for r in json.loads(out)["invoices"]}
    want = osaka.name if typed.lower().startswith("ō") else zoe.name
    assert found == {numbers[want]}


def test_show_json_has_all_tables(demo_store, cli):
    inv = Invoice.select().where(Invoice.status == S.PAID).first()
    code, out, _ = cli("show", inv.number, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["number"] == inv.number
    assert {"charges", "subscriptions", "payments", "corrections", "taxes", "audit"} <= set(doc)
    assert doc["payments"] and doc["payments"][0]["status"] in S.PAYMENT_STATUSES


def test_show_open_postpay_hides_payments(demo_store, cli):
    inv = Invoice.select().where(Invoice.status == S.OPEN).first()
    code, out, _ = cli("show", inv.number)
    assert code == 0 and "Payments appear once the invoice is closed" in out
    assert json.loads(cli("show", inv.number, "--json")[1])["payments"] is None


def test_approve_bulk_reports_each_failure_and_exits_1(store_url, cli):
    good = [F.invoice() for _ in range(2)]
    bad = F.invoice(status=S.REJECTED)
    code, out, err = cli("approve", good[0].number, bad.number, good[1].number, "--json")
    assert code == 1
    doc = json.loads(out)
    assert sorted(doc["done"]) == sorted(g.number for g in good)
    assert doc["failed"] == [{"number": bad.number, "reason": "is rejected: reissue it before approving it"}]


def test_approve_all_with_filters(store_url, cli):
    enterprise = F.customer_class()
    other = F.customer_class("Wholesale", "after_review", 2, 17)
    mine = [F.invoice(acc=F.account(cls=enterprise)) for _ in range(3)]
    theirs = F.invoice(acc=F.account(cls=other))
    code, out, _ = cli("approve", "--all", "--status", "under_review", "--class", "Enterprise")
    assert code == 0 and "approved: 3 done, 0 failed" in out
    assert all(Invoice.get_by_id(i.id).status == S.APPROVED for i in mine)
    assert Invoice.get_by_id(theirs.id).status == S.UNDER_REVIEW


def test_adjust_and_reissue_via_cli(store_url, cli):
    inv = F.invoice(total=Decimal("80"))
    code, out, _ = cli("adjust", inv.number, "--credit", "12.5", "--description", "Promo", "--json")
    assert code == 0 and json.loads(out)["total"] == "67.50"
    code, out, _ = cli("reissue", inv.number, "--off-peak", "--json")
    assert code == 0 and json.loads(out)["window_opens"]
    assert Invoice.get_by_id(inv.id).status == S.REJECTED
    code, out, _ = cli("--now", "2026-11-20T12:00", "reissue", inv.number, "--now")
    assert code == 0
    assert Invoice.get_by_id(inv.id).status == S.UNDER_REVIEW


@pytest.mark.parametrize(
    "args,field",
    [
        (["adjust", "{n}", "--credit", "abc", "--description", "x"], "credit"),
        (["adjust", "{n}", "--credit", "-5", "--description", "x"], "credit"),
        (["adjust", "{n}", "--charge", "0", "--description", "x"], "charge"),
        (["adjust", "{n}", "--charge", "1.234", "--description", "x"], "charge"),
        (["adjust", "{n}", "--charge", "1e12", "--description", "x"], "charge"),
        (["adjust", "{n}", "--charge", "NaN", "--description", "x"], "charge"),
        (["adjust", "{n}", "--charge", "5", "--description", "  "], "description"),
        (["adjust", "NOPE-1", "--charge", "5", "--description", "x"], "invoice"),
        (["approve", "NOPE-1"], "invoice"),
        (["approve", "{n}", "NOPE-2"], "invoice"),
        (["find", "--from", "2026-13-01"], "from"),
        (["find", "--from", "2026-03-05", "--to", "2026-03-01"], "to"),
        (["find", "--status", "sent"], "status"),
        (["find", "--account-type", "alien"], "account-type"),
        (["find", "--class", "Nobody"], "class"),
        (["find", "--limit", "0"], "limit"),
        (["--now", "yesterday", "approve", "{n}"], "now"),
        (["reissue", "{n}"], "usage"),
        (["settings", "number_format", "INV-{year}"], "number_format"),
        (["settings", "number_format", "INV-{seq:>99999999}"], "number_format"),
        (["settings", "number_format", "X" * 60 + "{seq}"], "number_format"),
        (["settings", "number_format", "INV-{seq:6d}"], "number_format"),
        (["settings", "number_format", "INV-{month}{seq}"], "number_format"),
        (["adjust", "{n}", "--credit", "1E+1", "--description", "x"], "credit"),
        (["settings", "offpeak_start", "25:00"], "offpeak_start"),
    ],
)
def test_bad_input_exit_2_names_field_writes_nothing(store_url, cli, args, field):
    inv = F.invoice()
    before = row_counts()
    code, out, err = cli(*[a.replace("{n}", inv.number) for a in args])
    assert code == 2
    if field != "usage":
        assert f"error: {field}: " in err, err
    assert row_counts() == before
    assert Invoice.get_by_id(inv.id).status == S.UNDER_REVIEW


def test_bad_input_json_error_document(store_url, cli):
    inv = F.invoice()
    code, out, _ = cli("adjust", inv.number, "--credit", "x1", "--description", "d", "--json")
    assert code == 2
    assert json.loads(out)["error"]["field"] == "credit"


def test_refused_adjust_exits_1(store_url, cli):
    inv = F.invoice(status=S.APPROVED)
    code, _, err = cli("adjust", inv.number, "--charge", "5", "--description", "x")
    assert code == 1 and "is approved" in err
    assert Correction.select().count() == 0


@pytest.mark.parametrize(
    "start,args,warning",
    [
        # Review switched on while the Net term is lowered: the customer's 30 days would shrink to 9.
        (
            ("immediately", 0, 30),
            ["--send-mode", "after_review", "--hold-days", "5", "--net-days", "14"],
            "to keep Net 30 for the customer, set Net 35 days (now Net 14)",
        ),
        # A longer hold on a class already under review: 21 days to pay would become 19.
        (
            ("after_review", 5, 26),
            ["--hold-days", "7"],
            "to keep Net 21 for the customer, set Net 28 days (now Net 26)",
        ),
        (("after_review", 5, 26), ["--hold-days", "7", "--net-days", "28"], None),
        (("after_review", 5, 26), ["--hold-days", "3"], None),  # a shorter hold gives the customer more time
        # Already without time to pay: the plain warning, not "keep Net -5".
        (("after_review", 10, 5), ["--hold-days", "12"], "Net 5 days does not include the 12 hold-for-review days"),
        (("immediately", 0, 21), ["--send-mode", "after_review", "--hold-days", "5", "--net-days", "26"], None),
    ],
)
def test_class_change_that_shortens_the_time_to_pay_warns(store_url, cli, start, args, warning):
    F.customer_class("Enterprise", *start)
    code, _, err = cli("class", "Enterprise", *args)
    assert code == 0
    if warning:
        assert warning in err, err
    else:
        assert "warning" not in err, err


def test_class_warning_net_days(store_url, cli):
    F.customer_class("Enterprise", "immediately", 0, 21)
    code, _, err = cli("class", "Enterprise", "--send-mode", "after_review", "--hold-days", "5")
    assert code == 0 and "set Net 26 days (now Net 21)" in err
    code, _, err = cli("class", "Enterprise", "--net-days", "26")
    assert code == 0 and "warning" not in err
    assert AuditEvent.select().where(AuditEvent.action == "class_change").count() == 2


def test_settings_number_format_round_trip(store_url, cli):
    code, out, _ = cli("settings", "number_format", "BILL/{year}/{month:02d}/{seq:05d}")
    assert code == 0
    import datetime as dt

    from tui_billing.store.settings import format_number, load_settings

    assert format_number(load_settings().number_format, 7, dt.date(2026, 3, 1)) == "BILL/2026/03/00007"


def test_python_dash_m_and_console_script_work(demo_store):
    proc = subprocess.run(
        [sys.executable, "-m", "tui_billing", "--db", demo_store, "find", "--limit", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["invoices"]) == 1


def test_cli_and_store_do_not_import_textual():
    code = (
        "import sys, tui_billing.cli, tui_billing.store.models, tui_billing.store.queries, "
        "tui_billing.workflow, tui_billing.billing, tui_billing.documents, tui_billing.pdf\n"
        "from tui_billing.cli import build_parser; build_parser()\n"
        "import importlib.util\n"
        "if importlib.util.find_spec('tui_billing.jobs'): import tui_billing.jobs\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_demo_off_peak_requests_wait_for_the_next_window(demo_store, ctx):
    """Demo rejected invoices look like real requests: an off-peak one waits
    for the next opening of the store's window, a "now" one is due at once."""
    from tui_billing.offpeak import next_window_start
    from tui_billing.store.settings import load_settings

    rejected = list(Invoice.select().where(Invoice.status == S.REJECTED))
    assert {i.reissue_mode for i in rejected} == {"off_peak", "now"}
    window = next_window_start(ctx.clock, *load_settings().offpeak)
    for inv in rejected:
        expected = window if inv.reissue_mode == "off_peak" else ctx.clock.now()
        assert inv.reissue_after == expected, inv.number


def test_argparse_errors_still_print_the_json_error_document(store_url, cli):
    inv = F.invoice()
    code, out, err = cli("adjust", inv.number, "--credit", "5", "--json")  # no --description
    assert code == 2
    doc = json.loads(out)
    assert doc["error"]["field"] == "usage" and "--description" in doc["error"]["message"]


def test_bad_now_does_not_create_a_store(tmp_path, capsys):
    from tui_billing.cli import main

    path = tmp_path / "new.db"
    assert main(["--db", f"sqlite:///{path}", "--now", "yesterday", "find"]) == 2
    assert "error: now:" in capsys.readouterr().err
    assert not path.exists()


# -- issue 13: amounts read one way everywhere; dry runs write nothing -------------


def audit_state(*invoices):
    return (
        AuditEvent.select().count(),
        Correction.select().count(),
        [(i.status, i.total, i.revision) for i in (Invoice.get_by_id(x.id) for x in invoices)],
    )


@pytest.mark.parametrize(
    "flag,text,message",
    [
        (
            "credit",
            "1,5",
            "'1,5' looks like a decimal comma; type 1.5 (a point for decimals, commas only between thousands)",
        ),
        ("charge", "12,50", "'12,50' looks like a decimal comma; type 12.50"),
        ("charge", "1.234,50", "'1.234,50' looks like a decimal comma; type 1234.50"),
        ("credit", "1,23", "'1,23' looks like a decimal comma; type 1.23"),
    ],
)
def test_adjust_refuses_a_decimal_comma_like_the_console(store_url, cli, flag, text, message):
    from tui_billing import money

    inv = F.invoice(acc=F.account(currency="PLN"), total=Decimal("100.00"))
    before = row_counts()
    code, out, err = cli("adjust", inv.number, f"--{flag}", text, "--description", "Rabat")
    assert code == 2
    assert f"error: {flag}: {message}" in err, err
    with pytest.raises(money.MoneyError, match=re.escape(message)):  # the console's parser, word for word
        money.parse_amount(text, "PLN")
    code, out, _ = cli("adjust", inv.number, f"--{flag}", text, "--description", "Rabat", "--json")
    assert code == 2 and json.loads(out)["error"]["field"] == flag
    assert row_counts() == before
    assert Invoice.get_by_id(inv.id).total == Decimal("100.00")


def test_adjust_accepts_thousands_commas_like_the_console(store_url, cli):
    inv = F.invoice(acc=F.account(currency="PLN"), total=Decimal("100.00"))
    code, out, err = cli("adjust", inv.number, "--charge", "1,234.50", "--description", "Instalacja", "--json")
    assert code == 0, err
    assert json.loads(out)["total"] == "1334.50"


def test_adjust_dry_run_says_what_would_happen_and_writes_nothing(store_url, cli):
    inv = F.invoice(total=Decimal("80.00"))
    before = audit_state(inv)
    code, out, err = cli("adjust", inv.number, "--credit", "12.5", "--description", "Promo", "--dry-run", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc == {
        "dry_run": True,
        "number": inv.number,
        "kind": "credit",
        "amount": "12.50",
        "currency": "EUR",
        "total_before": "80.00",
        "correction": "-12.50",
        "tax": "0.00",
        "total_after": "67.50",
        "would_apply": True,
        "refused": [],
    }
    code, out, _ = cli("adjust", inv.number, "--charge", "1,000", "--description", "Setup", "--dry-run")
    assert code == 0
    assert "charge of 1,000.00 EUR" in out and "80.00 EUR → 1,080.00 EUR" in out and "nothing was changed" in out
    # A credit beyond the total: bad input, as the real command says (exit 2).
    code, out, err = cli("adjust", inv.number, "--credit", "80.01", "--description", "x", "--dry-run")
    assert code == 2 and "error: credit: a credit of 80.01 EUR would make" in err
    code, out, err = cli("adjust", inv.number, "--credit", "1,5", "--description", "x", "--dry-run")
    assert code == 2 and "error: credit: '1,5' looks like a decimal comma" in err
    assert audit_state(inv) == before
    # A refusal by state: exit 1, the reason given, nothing written.
    sent = F.invoice(status=S.APPROVED)
    before = audit_state(inv, sent)
    code, out, err = cli("adjust", sent.number, "--charge", "5", "--description", "x", "--dry-run", "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["would_apply"] is False and doc["total_after"] is None
    assert doc["refused"] == [
        {"number": sent.number, "reason": "is approved: an approved invoice can no longer be changed"}
    ]
    code, out, err = cli("adjust", sent.number, "--charge", "5", "--description", "x", "--dry-run")
    assert code == 1 and "is approved" in err
    assert audit_state(inv, sent) == before


def test_reissue_dry_run_says_what_would_happen_and_writes_nothing(store_url, cli):
    fresh = F.invoice()
    waiting = F.invoice(status=S.REJECTED, reissue_mode="off_peak")
    sent = F.invoice(status=S.APPROVED)
    before = audit_state(fresh, waiting, sent)
    code, out, err = cli(
        "--now",
        "2026-11-20T10:00",
        "reissue",
        fresh.number,
        waiting.number,
        sent.number,
        "--off-peak",
        "--dry-run",
        "--json",
    )
    assert code == 1
    doc = json.loads(out)
    assert doc == {
        "dry_run": True,
        "mode": "off_peak",
        "would_reissue_now": [],
        "would_queue": [fresh.number, waiting.number],
        "window_opens": "2026-11-21T01:00:00+00:00",
        "refused": [{"number": sent.number, "reason": "is already approved: it can no longer be reissued"}],
    }
    code, out, err = cli("--now", "2026-11-20T10:00", "reissue", fresh.number, waiting.number, "--now", "--dry-run")
    assert code == 0, err
    assert "2 would be reissued now" in out and "nothing was changed" in out
    code, out, _ = cli("--now", "2026-11-20T10:00", "reissue", fresh.number, "--now", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["would_reissue_now"] == [fresh.number]
    assert audit_state(fresh, waiting, sent) == before
    # What the dry run said is what the real command does.
    code, out, _ = cli(
        "--now", "2026-11-20T10:00", "reissue", fresh.number, waiting.number, sent.number, "--off-peak", "--json"
    )
    assert code == 1
    real = json.loads(out)
    assert real["done"] == doc["would_queue"] and real["window_opens"] == doc["window_opens"]
    assert real["failed"] == doc["refused"]
