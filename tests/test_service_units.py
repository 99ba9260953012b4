"""Usage quantities carry their unit on the customer's PDF (setting service_units)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from tui_billing import documents, pdf
from tui_billing.config import ConfigError, parse_units
from tui_billing.store.models import ChargeLine
from tui_billing.store.settings import save_setting

from . import factories as F


def test_the_pdf_prints_each_usage_quantity_with_its_service_unit_and_fees_per_month(store_url):
    save_setting("service_units", "Mobile data=GB; Voice calls=min")
    inv = F.invoice()  # one fee line (no subscription id: usage-like) for service Internet
    ChargeLine.create(
        invoice=inv,
        position=2,
        description="Mobile data usage",
        service="Mobile data",
        quantity=D("12636.25"),
        amount=D("10.00"),
    )
    ChargeLine.create(
        invoice=inv, position=3, description="SMS usage", service="SMS", quantity=D("42"), amount=D("1.00")
    )
    text = pdf.pdf_text(documents.current_pdf(inv))
    assert "12,636.25 GB" in text
    assert "42 " in text and "42 msg" not in text  # SMS has no unit set: a bare quantity


def test_service_units_setting_is_checked(store_url):
    assert parse_units(" Voice calls = min ;SMS=msg;") == {"Voice calls": "min", "SMS": "msg"}
    assert save_setting("service_units", "Voice calls=min;SMS=msg") == "Voice calls=min; SMS=msg"
    for bad in ("Voice calls", "=min", "SMS=", "SMS=msg; SMS=sms", "Data=gigabytes-and-more"):
        with pytest.raises(ConfigError) as exc:
            parse_units(bad)
        assert str(exc.value).startswith("service_units:")
