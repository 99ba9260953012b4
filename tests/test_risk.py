"""Risk flags, pure: facts in, flags with reasons out (tui_billing/risk.py)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tui_billing import risk
from tui_billing.config import ConfigError, StoreSettings, validate_setting
from tui_billing.risk import ChargeFact, Flag, InvoiceFacts, PastInvoice, RiskSettings, SubscriptionFact

OCT = (dt.date(2026, 10, 1), dt.date(2026, 10, 31))


def past(total, *, net=None, tax=None, usage=D("50"), services=("Internet", "Voice calls"), month=9):
    total = D(total)
    net = D(net) if net is not None else (total / D("1.2")).quantize(D("0.01"))
    tax = D(tax) if tax is not None else total - net
    return PastInvoice(dt.date(2026, month, 1), total, net, tax, D(usage), D(usage) > 0, frozenset(services))


def facts(total, *, charges=None, tax=None, corrections=(), subs=None, net=None):
    total = D(total)
    if charges is None:
        base = (total / D("1.2")).quantize(D("0.01")) if net is None else D(net)
        charges = (ChargeFact("Internet", "Fibre — monthly fee", base - D("50"), subscription_id=1),
                   ChargeFact("Voice calls", "Voice calls usage", D("50")))
    subtotal = sum((c.amount for c in charges), D(0))
    discount = sum((c.discount for c in charges), D(0))
    corrections = tuple(D(c) for c in corrections)
    correction_total = sum(corrections, D(0))
    tax_total = D(tax) if tax is not None else total - correction_total - (subtotal - discount)
    return InvoiceFacts("EUR", *OCT, total, subtotal, discount, tax_total, correction_total, tuple(charges),
                        corrections, subs)


def codes(flags):
    return [f.code for f in flags]


def test_the_issue_example_reason_for_a_spike():
    history = [past("1265.10"), past("1265.10", month=8), past("1265.10", month=7)]
    flags = risk.assess(facts("12400.00"), history)
    spike = [f for f in flags if f.code == "total_spike"]
    assert spike == [Flag("total_spike", "total 12,400.00 EUR is 9.8x the last 3 invoices' average 1,265.10")]


def test_normal_month_to_month_variation_raises_nothing():
    history = [past("1100.00"), past("1300.00", month=8), past("1000.00", month=7)]
    assert risk.assess(facts("1250.00"), history) == []


def test_drop_and_the_factor_setting():
    history = [past("900.00"), past("1000.00", month=8), past("1100.00", month=7)]
    flags = risk.assess(facts("240.00"), history)
    assert Flag("total_drop", "total 240.00 EUR is 4.2x below the last 3 invoices' average 1,000.00") in flags
    # 4.2x is within a factor of 5: no drop then.
    assert "total_drop" not in codes(risk.assess(facts("240.00"), history, RiskSettings(total_factor=D(5))))


def test_one_or_two_earlier_invoices_say_so():
    assert risk.assess(facts("400.00"), [past("100.00")])[0].reason == \
        "total 400.00 EUR is 4.0x the last invoice's 100.00"
    assert risk.assess(facts("400.00"), [past("100.00"), past("100.00", month=8)])[0].reason == \
        "total 400.00 EUR is 4.0x the last 2 invoices' average 100.00"


def test_no_history_no_comparison_flags():
    assert risk.assess(facts("99999.00"), []) == []


def test_zero_and_negative_totals():
    history = [past("100.00"), past("120.00", month=8), past("110.00", month=7)]
    zero = risk.assess(facts("0.00", charges=(), tax=D(0)), history)
    assert Flag("zero_total", "total is 0.00 EUR; the last 3 invoices averaged 110.00") in zero
    assert "total_drop" not in codes(zero)
    neg = risk.assess(facts("-12.00", charges=(ChargeFact("Voice calls", "Voice calls usage", D("-10")),),
                            tax=D("-2")), history)
    assert neg[0] == Flag("negative_total", "total is negative: -12.00 EUR")
    assert risk.assess(facts("0", charges=(), tax=D(0)), [])[0] == Flag("zero_total", "total is 0.00 EUR")


def test_missing_usage_needs_an_account_that_normally_has_usage():
    fee_only = (ChargeFact("Internet", "Fibre — monthly fee", D("100"), subscription_id=1),)
    history = [past("180.00", usage="40"), past("180.00", usage="60", month=8), past("120.00", usage="0", month=7)]
    flags = risk.assess(facts("120.00", charges=fee_only), history)
    assert Flag("missing_usage", "no usage charged; 2 of the last 3 invoices had usage (average 50.00 EUR)") \
        in flags
    all_three = [past("180.00", usage="40"), past("180.00", usage="60", month=8), past("180.00", usage="50", month=7)]
    assert risk.assess(facts("120.00", charges=fee_only), all_three)[0].reason == \
        "no usage charged; the last 3 invoices all had usage (average 50.00 EUR)"
    # Only one of three had usage: that is not "normally".
    rarely = [past("120.00", usage="0"), past("180.00", usage="60", month=8), past("120.00", usage="0", month=7)]
    assert "missing_usage" not in codes(risk.assess(facts("120.00", charges=fee_only), rarely))
    # A usage line for zero is no usage either.
    zero_usage = fee_only + (ChargeFact("Voice calls", "Voice calls usage", D("0")),)
    assert "missing_usage" in codes(risk.assess(facts("120.00", charges=zero_usage), all_three))


@pytest.mark.parametrize("sub, reason", [
    (SubscriptionFact(7, "SIP Trunk", "stopped"), "it is stopped"),
    (SubscriptionFact(7, "SIP Trunk", "ordered"), "it is ordered"),
    (SubscriptionFact(7, "SIP Trunk", "active", active_to=dt.date(2026, 9, 30)),
     "it ended 2026-09-30, before the period"),
    (SubscriptionFact(7, "SIP Trunk", "active", active_from=dt.date(2026, 11, 1)),
     "it starts 2026-11-01, after the period"),
    (None, "it no longer exists"),
])
def test_fee_for_a_subscription_not_active_in_the_period(sub, reason):
    charges = (ChargeFact("Voice calls", "SIP Trunk — monthly fee", D("149.00"), subscription_id=7),)
    subs = {7: sub} if sub else {}
    flags = risk.assess(facts("178.80", charges=charges, subs=subs), [])
    assert flags == [Flag("inactive_subscription", f"SIP Trunk (subscription 7) charged 149.00 EUR but {reason}")]


def test_subscriptions_active_in_the_period_are_fine():
    charges = (ChargeFact("Voice calls", "SIP Trunk — monthly fee", D("149.00"), subscription_id=7),)
    for sub in (SubscriptionFact(7, "SIP Trunk", "active", dt.date(2026, 1, 1)),
                SubscriptionFact(7, "SIP Trunk", "stopped", dt.date(2026, 1, 1), dt.date(2026, 10, 15)),
                SubscriptionFact(7, "SIP Trunk", "blocked")):
        assert risk.assess(facts("178.80", charges=charges, subs={7: sub}), []) == []
    # Unknown subscriptions (None): the check is skipped.
    assert risk.assess(facts("178.80", charges=charges, subs=None), []) == []


def test_tax_ratio_against_the_usual_share():
    history = [past("120.00", net="100.00", tax="20.00"), past("240.00", net="200.00", tax="40.00", month=8),
               past("120.00", net="100.00", tax="20.00", month=7)]
    flags = risk.assess(facts("100.00", net="100.00", tax="0.00"), history)
    assert flags == [Flag("tax_ratio", "tax is 0.0 % of the net charges 100.00; usually 20.0 %")]
    # Within the tolerance (2 percentage points by default).
    assert risk.assess(facts("121.50", net="100.00", tax="21.50"), history) == []
    assert codes(risk.assess(facts("121.50", net="100.00", tax="21.50"), history,
                             RiskSettings(tax_tolerance=D("1")))) == ["tax_ratio"]
    # One odd month does not move "usually" (median).
    odd = [past("100.00", net="100.00", tax="0.00")] + history[:2]
    assert risk.assess(facts("120.00", net="100.00", tax="20.00"), odd) == []


def test_a_service_billed_for_the_first_time():
    history = [past("120.00"), past("120.00", month=8), past("120.00", month=7)]
    charges = (ChargeFact("Internet", "Fibre — monthly fee", D("50"), subscription_id=1),
               ChargeFact("Voice calls", "Voice calls usage", D("40")),
               ChargeFact("Mobile data", "Mobile data usage", D("12.40"), D("2.40")))
    flags = risk.assess(facts("120.00", charges=charges), history)
    assert flags == [Flag("new_service", "first time billed: Mobile data (10.00 EUR); not on the last 3 invoices")]


def test_large_corrections():
    # Charges 1,000.00 + 200.00 tax = 1,200.00 before corrections.
    base_charges = (ChargeFact("Internet", "Fibre — monthly fee", D("950"), subscription_id=1),
                    ChargeFact("Voice calls", "Voice calls usage", D("50")))
    one = risk.assess(facts("700.00", charges=base_charges, tax="200.00", corrections=("-500.00",)), [])
    assert one == [Flag("large_correction", "credit of 500.00 EUR is 41.7 % of the total before corrections "
                                            "1,200.00 (limit 25.0 %)")]
    small = risk.assess(facts("1100.00", charges=base_charges, tax="200.00", corrections=("-100.00",)), [])
    assert small == []
    together = risk.assess(facts("840.00", charges=base_charges, tax="200.00",
                                 corrections=("-200.00", "-160.00")), [])
    assert together == [Flag("large_correction", "2 corrections of -360.00 EUR together are 30.0 % of the total "
                                                 "before corrections 1,200.00 (limit 25.0 %)")]
    # The share is a setting.
    assert risk.assess(facts("700.00", charges=base_charges, tax="200.00", corrections=("-500.00",)), [],
                       RiskSettings(correction_share=D("0.5"))) == []
    charge = risk.assess(facts("1600.00", charges=base_charges, tax="200.00", corrections=("400.00",)), [])
    assert charge[0].reason.startswith("charge of 400.00 EUR is 33.3 %")


def test_score_is_the_sum_of_weights_and_flags_come_heaviest_first():
    history = [past("100.00", services=("Internet",)), past("100.00", month=8, services=("Internet",)),
               past("100.00", month=7, services=("Internet",))]
    flags = risk.assess(facts("1000.00"), history)
    assert codes(flags) == ["total_spike", "new_service"]
    assert risk.score(flags) == risk.WEIGHTS["total_spike"] + risk.WEIGHTS["new_service"] == 50


def test_stored_form_round_trips_and_compact_column():
    flags = [Flag("total_spike", "total 1 EUR is 9.8x …"), Flag("tax_ratio", "tax is 0.0 % …"),
             Flag("new_service", "first time billed: SMS (1.00 EUR)")]
    assert risk.parse_flags(risk.dumps_flags(flags)) == flags
    assert risk.dumps_flags([]) == "" and risk.parse_flags("") == [] and risk.parse_flags("not json") == []
    assert risk.compact(flags) == "spike, tax, new service"
    assert risk.compact(flags, 13) == "spike, tax +1"
    assert risk.compact(flags, 8) == "spike +2"


def test_settings_are_validated_and_fall_back_to_defaults():
    assert validate_setting("risk_total_factor", "2.5") == "2.5"
    for key, bad in (("risk_total_factor", "1"), ("risk_total_factor", "x"), ("risk_correction_share", "0"),
                     ("risk_tax_tolerance", "-1")):
        with pytest.raises(ConfigError, match=key):
            validate_setting(key, bad)
    cfg = StoreSettings({"risk_total_factor": "4", "risk_correction_share": "oops"}).risk
    assert cfg == RiskSettings(total_factor=D(4), correction_share=D("0.25"), tax_tolerance=D(2))


@settings(max_examples=200, deadline=None)
@given(level=st.integers(min_value=1_000, max_value=10_000_000),
       changes=st.lists(st.integers(min_value=75, max_value=125), min_size=4, max_size=4))
def test_property_stable_accounts_are_never_flagged(level, changes):
    """Totals within ±25 % of an account's level: no total, usage, tax or service flag."""
    def amount(pct):
        return (D(level) * pct / 100).quantize(D("0.01")) / 100

    history = [past(str(amount(p)), month=9 - i) for i, p in enumerate(changes[:3])]
    assert risk.assess(facts(str(amount(changes[3]))), history) == []


@settings(max_examples=200, deadline=None)
@given(level=st.integers(min_value=1_000, max_value=10_000_000), factor=st.integers(min_value=31, max_value=500))
def test_property_a_spike_beyond_the_factor_is_always_flagged(level, factor):
    avg = D(level) / 100
    history = [past(str(avg)), past(str(avg), month=8), past(str(avg), month=7)]
    total = (avg * factor / 10).quantize(D("0.01"))
    if total <= avg * 3:
        return
    flags = risk.assess(facts(str(total)), history)
    assert "total_spike" in codes(flags)
