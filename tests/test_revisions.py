"""Revision diff, pure: lines matched by service + description (revisions.py)."""

from __future__ import annotations

from decimal import Decimal as D

from tui_billing.revisions import LineState, Snapshot, diff


def charge(desc, amount, service="Voice calls", qty="1", discount="0"):
    return LineState(desc, D(amount), service, D(qty), D(discount))


def snap(rev, charges, taxes=(), corrections=(), **totals):
    subtotal = sum((c.amount for c in charges), D(0))
    discount = sum((c.discount for c in charges), D(0))
    tax = sum((t.amount for t in taxes), D(0))
    corr = sum((c.amount for c in corrections), D(0))
    return Snapshot(
        rev,
        tuple(charges),
        tuple(taxes),
        tuple(corrections),
        subtotal,
        discount,
        tax,
        corr,
        subtotal - discount + tax + corr,
    )


FEE = charge("Fibre — monthly fee", "89.00", "Internet")
SMS = charge("SMS usage", "0.45", "SMS", "10")


def test_unchanged_revision_has_no_line_changes():
    before = snap(1, [FEE, SMS, charge("Voice calls usage", "12.00", qty="120")])
    d = diff(before, snap(2, [FEE, SMS, charge("Voice calls usage", "12.00", qty="120")]))
    assert (d.charges, d.taxes, d.corrections, d.total_delta, d.changed) == ((), (), (), D(0), False)


def test_added_removed_and_changed_lines_exactly():
    before = snap(1, [FEE, SMS, charge("Voice calls usage", "12.00", qty="120")], [LineState("VAT", D("20.29"))])
    after = snap(
        3,
        [
            SMS,
            charge("Voice calls usage", "15.01", qty="150.5"),
            charge("Mobile data usage", "4.75", "Mobile data", "2.5"),
        ],
        [LineState("VAT", D("4.04"))],
    )
    d = diff(before, after)
    assert [(c.change, c.service, c.description, c.fields, c.delta) for c in d.charges] == [
        ("removed", "Internet", "Fibre — monthly fee", (), D("-89.00")),
        ("changed", "Voice calls", "Voice calls usage", ("quantity", "amount"), D("3.01")),
        ("added", "Mobile data", "Mobile data usage", (), D("4.75")),
    ]
    assert [(c.change, c.description, c.delta) for c in d.taxes] == [("changed", "VAT", D("-16.25"))]
    assert (d.from_revision, d.to_revision) == (1, 3)
    assert (d.total_before, d.total_after) == (D("121.74"), D("24.25"))
    assert d.total_delta == D("-97.49") and d.changed


def test_a_new_correction_changes_the_total_but_no_charge():
    before = snap(1, [FEE, SMS])
    after = snap(2, [FEE, SMS], corrections=[LineState("Goodwill credit", D("-5.00"))])
    d = diff(before, after)
    assert d.charges == () and d.taxes == ()
    assert [(c.change, c.description, c.delta) for c in d.corrections] == [("added", "Goodwill credit", D("-5.00"))]
    assert d.totals["correction_total"] == (D(0), D("-5.00"))
    assert d.total_delta == D("-5.00")


def test_lines_with_the_same_key_pair_exact_matches_first():
    ip = "Static IP block /29 — monthly fee"
    before = snap(1, [charge(ip, "25.00", "Internet"), charge(ip, "30.00", "Internet")])
    after = snap(2, [charge(ip, "30.00", "Internet"), charge(ip, "27.00", "Internet"), charge(ip, "25.00", "Internet")])
    d = diff(before, after)
    # 25.00 and 30.00 are still there; one more at 27.00 was added.
    assert [(c.change, c.after.amount) for c in d.charges] == [("added", D("27.00"))]


def test_discount_change_counts_and_delta_is_net():
    before = snap(1, [charge("Voice calls usage", "100.00", qty="1000")])
    after = snap(2, [charge("Voice calls usage", "100.00", qty="1000", discount="10.00")])
    (c,) = diff(before, after).charges
    assert (c.change, c.fields, c.delta) == ("changed", ("discount",), D("-10.00"))


def test_snapshot_lines_survive_json():
    from tui_billing.revisions import _from_row

    s = snap(4, [FEE, SMS], [LineState("VAT", D("17.89"))], [LineState("Porting fee", D("12.00"))])

    class Row:
        revision = 4
        lines = s.lines_json()
        subtotal, discount_total, tax_total = s.subtotal, s.discount_total, s.tax_total
        correction_total, total = s.correction_total, s.total

    assert _from_row(Row) == s
