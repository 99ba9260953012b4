"""One field-error type: every refusal of input names its field and its reason
as attributes, so no face parses str(exc) to find them."""

from __future__ import annotations

import copy
import pickle

import pytest

from tui_billing import config, customer_classes, documents, errors, money, risk, text, workflow
from tui_billing.store import queries


@pytest.mark.parametrize(
    "cls",
    [
        workflow.BadInput,
        text.TextError,
        customer_classes.ClassError,
        config.ConfigError,
        money.MoneyError,
        queries.FilterError,
        risk.RiskSettingsError,
        documents.DownloadTargetError,
    ],
)
def test_every_look_alike_is_a_field_error(cls):
    exc = cls("hold-days", "must be between 0 and 365: at most a year")
    assert isinstance(exc, errors.FieldError) and isinstance(exc, ValueError)
    assert (exc.field, exc.reason) == ("hold-days", "must be between 0 and 365: at most a year")
    assert str(exc) == "hold-days: must be between 0 and 365: at most a year"
    again = pickle.loads(pickle.dumps(exc))
    assert (type(again), again.field, again.reason) == (cls, exc.field, exc.reason)
    assert copy.copy(exc).reason == exc.reason


def test_config_error_reads_the_older_one_argument_form():
    exc = config.ConfigError("mail.port: 'x' is not a number")
    assert (exc.field, exc.reason, str(exc)) == ("mail.port", "'x' is not a number", "mail.port: 'x' is not a number")
    bare = config.ConfigError("no field here")
    assert (bare.field, bare.reason, str(bare)) == ("", "no field here", "no field here")


def test_refusals_name_their_field_and_reason():
    with pytest.raises(money.MoneyError) as exc:
        money.parse_amount("1,5", "EUR")
    assert exc.value.field == "amount" and exc.value.reason.startswith("'1,5' looks like a decimal comma")
    with pytest.raises(config.ConfigError) as exc:
        config.validate_setting("currency_rates", "USD=x")
    assert (exc.value.field, exc.value.reason) == ("currency_rates", "USD: 'x' is not a number")
    with pytest.raises(config.ConfigError) as exc:
        config.parse_now("yesterday", config.zone("UTC"))
    assert (exc.value.field, exc.value.reason) == ("--now", "'yesterday' is not an ISO 8601 date-time")


def test_the_old_homes_still_hand_the_names_on():
    from tui_billing import audit, clock, context

    assert config.Clock is clock.Clock and config.zone is clock.zone and config.parse_now is clock.parse_now
    assert config.os_user is context.os_user and config.ConfigError is errors.ConfigError
    assert workflow.Ctx is context.Ctx and workflow.BulkResult is context.BulkResult
    assert workflow.write_audit is audit.write_audit and workflow.insert_audits is audit.insert_audits
    assert workflow.Refused is errors.Refused and workflow.NotFound is errors.NotFound
    assert risk.RiskSettings.parse(risk_hold_score="5").hold_score == 5
