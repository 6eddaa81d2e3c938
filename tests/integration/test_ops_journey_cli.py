"""`yiwang ops journey CASE_NO_OR_CORRELATION_ID`: a case's journey at the command line, found by case number
or correlation id, masked unless `--unmasked` (audited before it is shown); a table for people, one JSON object
with `--json`; an unknown case exits 3, bad input 2."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result
from typer.testing import CliRunner

from adapters.simulators.social_security import SocialSecuritySimulator
from gateway.audit.ledger import AUDIT, Filters
from gateway.bootstrap.app import Gateway
from gateway.bootstrap.cli import app
from gateway.cli.audit import cli_actor
from tests.support.journeys import ID_NUMBER, Story, storied_gateway, tell_story
from tests.support.receiver import Receiver, receiver  # noqa: F401 - `receiver` is a fixture


def journey(gateway: Gateway, *args: str) -> Result:
    env = {"YIWANG_DATABASE_URL": gateway.settings.db_url, "YIWANG_VAR_DIR": str(gateway.settings.var_dir),
           "COLUMNS": "250", "YIWANG_LOG_LEVEL": "warning"}
    return CliRunner().invoke(app, ["ops", "journey", *args], env=env)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_journey_by_case_number_or_correlation_id_masked_unless_asked_and_audited(
        make_gateway: Callable[..., Gateway], simulator: SocialSecuritySimulator,
        receiver: Receiver) -> None:  # noqa: F811 - the fixture
    gateway = storied_gateway(make_gateway, simulator)
    story: Story = tell_story(gateway, simulator, receiver)

    table = journey(gateway, story.case_no)
    assert table.exit_code == 0, table.output
    assert f"case {story.case_no}" in table.output and "entries, oldest first" in table.output
    assert "成为死信" in table.output and f"dead_letter_id={story.dead_letter_id}" in table.output
    assert ID_NUMBER not in table.output

    found = journey(gateway, story.correlation_id, "--json")
    assert found.exit_code == 0, found.output
    shown = json.loads(found.output)
    assert (shown["case"]["case_no"], shown["masked"]) == (story.case_no, True)
    assert shown["entries"][0]["kind"] == "event" and shown["entries"][0]["at"].endswith("+08:00")
    assert not gateway.ledger.records(Filters(AUDIT, action="read unmasked journey"))  # masked reads: no record

    plain = journey(gateway, story.case_no, "--unmasked", "--json")
    assert plain.exit_code == 0, plain.output
    assert json.loads(plain.output)["masked"] is False and ID_NUMBER in plain.output
    [record] = gateway.ledger.records(Filters(AUDIT, action="read unmasked journey"))
    assert (record.actor, record.case_no) == (cli_actor(), story.case_no)

    missing = journey(gateway, "NO-SUCH-CASE")
    assert missing.exit_code == 3 and "NO-SUCH-CASE" in missing.output
    for bad in ("", " ", "x" * 65):
        refused = journey(gateway, bad)
        assert refused.exit_code == 2 and "case number or a correlation id" in refused.output
