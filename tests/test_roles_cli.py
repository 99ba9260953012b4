"""The CLI of roles and audit (issue 16): `user add|list|remove`, `audit`,
refusals as exit 1 with the sentence (and JSON), bad input as exit 2 naming
the field with nothing written, and four-eyes in `approve` and its dry run.
In-process, so the acting person is this process's OS user (context.os_user)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tui_billing import access
from tui_billing.context import Ctx, os_user
from tui_billing.store.models import AppUser, AuditEvent, Invoice

ME = os_user()


def _under_review(cli, n=2, sort="total"):
    code, out, _ = cli("find", "--status", "under_review", "--sort", sort, "--limit", "50", "--json")
    assert code == 0
    return [i["number"] for i in json.loads(out)["invoices"]][:n]


def test_user_commands_and_the_first_admin(demo_store, cli):
    code, out, _ = cli("user", "list", "--json")
    assert code == 0 and json.loads(out) == {"mode": "single-admin", "users": []}
    code, _, err = cli("user", "add", "bob", "--role", "viewer")
    assert code == 2 and "role: the first user of a store must be an admin" in err
    assert AppUser.select().count() == 0
    code, _, err = cli("user", "add", "bob", "--role", "boss")
    assert code == 2 and "role" in err and "invalid choice" in err
    assert cli("user", "add", ME, "--role", "admin")[0] == 0
    code, out, _ = cli("user", "add", "bob", "--role", "viewer", "--json")
    assert code == 0 and json.loads(out)["role"] == "viewer" and json.loads(out)["previous_role"] is None
    code, out, _ = cli("user", "list")
    assert code == 0 and "bob" in out and "viewer" in out and ME in out
    code, out, _ = cli("user", "remove", "bob")
    assert code == 0 and "bob: removed (was viewer)" in out
    code, _, err = cli("user", "remove", ME)
    assert code == 2 and "last admin" in err


def test_a_refusal_is_exit_1_with_the_sentence(demo_store, cli, ctx):
    access.add_user(ctx.__class__(clock=ctx.clock, actor="root-of-team"), "dana", "admin")
    number = Invoice.select().where(Invoice.status == "under_review").first().number
    before = AuditEvent.select().count()
    code, _, err = cli("approve", number)
    assert code == 1
    assert f"{ME} may not approve {number}: not a user of this store" in err
    code, out, err = cli("find", "--limit", "1", "--json")
    assert code == 1 and json.loads(out)["error"]["field"] == "role" and f"{ME} may not view" in err
    assert AuditEvent.select().count() == before  # nothing written


def test_four_eyes_in_approve_and_its_dry_run(demo_store, cli):
    cli("user", "add", ME, "--role", "admin")
    cli("settings", "second_approval_above", "0.01")
    big = _under_review(cli, 1)[0]
    code, out, _ = cli("approve", big, "--dry-run", "--json")
    assert code == 0 and json.loads(out)["second_approval_needed"] == [big]
    code, out, _ = cli("approve", big, "--json")
    assert code == 0 and json.loads(out)["waiting_second_approval"] == [big] and json.loads(out)["done"] == []
    code, out, _ = cli("show", big)
    assert "Approvals       1 of 2 approvals: " + ME in out and "waits for a second approver" in out
    code, out, err = cli("approve", big)
    assert code == 1 and "already has" in err


def test_audit_filters_and_formats(demo_store, cli):
    cli("user", "add", ME, "--role", "admin")
    number = _under_review(cli, 1)[0]
    cli("adjust", number, "--charge", "2.00", "--description", "late fee")
    code, out, _ = cli("audit", "--invoice", number, "--action", "adjust", "--json")
    events = json.loads(out)["events"]
    assert code == 0 and events[0]["actor"].split(" (db ")[0] == ME and events[0]["role"] == "admin"
    assert json.loads(events[0]["detail"])["description"] == "late fee"
    assert json.loads(out)["total"] == len(events) >= 1
    code, out, _ = cli("audit", "--actor", ME, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and {r["action"] for r in rows} >= {"adjust", "user_add"}
    code, out, _ = cli("audit", "--from", "2099-01-01", "--json")
    assert code == 0 and json.loads(out) == {"total": 0, "events": []}
    code, _, err = cli("audit", "--from", "yesterday")
    assert code == 2 and "from:" in err
    code, _, err = cli("audit", "--from", "2026-12-02", "--to", "2026-12-01")
    assert code == 2 and "to:" in err


@pytest.mark.parametrize(
    "args,field",
    [
        (("user", "add", "two words", "--role", "viewer"), "name"),
        (("settings", "second_approval_above", "1,5"), "second_approval_above"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(demo_store, cli, args, field):
    before = AuditEvent.select().count()
    code, _, err = cli(*args)
    assert code == 2 and f"{field}:" in err
    assert AuditEvent.select().count() == before and AppUser.select().count() == 0


def test_a_viewer_may_read_but_not_run_the_jobs_or_import(demo_store, cli, tmp_path):
    access.add_user(Ctx(actor="dana"), "dana", "admin")
    access.add_user(Ctx(actor="dana"), ME, "viewer")
    assert cli("find", "--limit", "1")[0] == 0
    assert cli("audit", "--actor", "dana")[0] == 0
    code, _, err = cli("jobs", "run", "--once")
    assert code == 1 and f"{ME} may not run the jobs: role viewer" in err
    xdrs = tmp_path / "x.csv"
    xdrs.write_text("xdr_id,account,service,time,quantity,amount\n")
    code, _, err = cli("import-xdrs", str(xdrs))
    assert code == 1 and f"{ME} may not import usage or run the bill run: role viewer" in err
    code, _, err = cli("settings", "risk_hold_score", "1200")
    assert code == 1 and f"{ME} may not change settings risk_hold_score: role viewer" in err
