"""The gateway's settings for the far-side agent (ferry/settings.py): a `config` control entry is read strictly —
only the known keys, whole numbers at least the kind's minimums — and laid over the agent's own configuration."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters import FERRY_AGENT_SETTINGS
from ferry.config import AgentConfig
from ferry.settings import Received, SettingsRefused, effective, read_config

FILE_TIME = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
FILE = AgentConfig(source=Path("agent.yaml"), name="mz-agent", channel="civil_affairs", state=Path("s.sqlite"),
                   master_key_file=Path("m.key"), incoming=Path("in"), outgoing=Path("out"),
                   own_certificate="mz-agent", near_certificate="yiwang-ferry", poll_interval_ms=2000)


def body(settings: Any, **extra: Any) -> dict[str, Any]:
    return {"control": "config", "sector": "civil_affairs", "version": "2.0.1-ferry", "settings": settings, **extra}


def test_the_known_settings_are_taken_and_laid_over_the_configuration_file() -> None:
    sector, version, settings = read_config(body({"poll_interval_ms": 100, "keep_keys_days": 1}))
    assert (sector, version, settings) == ("civil_affairs", "2.0.1-ferry", {"poll_interval_ms": 100,
                                                                            "keep_keys_days": 1})
    over = effective(FILE, Received(settings, sector, version, 3, FILE_TIME))
    assert (over.poll_interval_ms, over.keep_keys_days, over.interval_ms) == (100, 1, FILE.interval_ms)
    assert effective(FILE, None) is FILE
    assert set(FERRY_AGENT_SETTINGS) == {"poll_interval_ms", "keep_keys_days"}  # what the kind lets a bundle set


@pytest.mark.parametrize(("given", "expected"), [
    (body({"poll_interval_ms": 99}), "settings.poll_interval_ms: expected a whole number of at least 100, got 99"),
    (body({"keep_keys_days": True}), "settings.keep_keys_days: expected a whole number of at least 1, got True"),
    (body({"keep_keys_days": "7"}), "settings.keep_keys_days: expected a whole number of at least 1, got '7'"),
    (body({"interval_ms": 10}), "unknown setting 'interval_ms' (known: poll_interval_ms, keep_keys_days)"),
    (body([1]), "'settings' must be a mapping"),
    (body({}, endpoint="http://elsewhere"), "unknown key 'endpoint'"),
    ({"control": "config", "settings": {}}, "'sector' must be text; 'version' must be text"),
])
def test_anything_else_is_refused_naming_every_problem(given: dict[str, Any], expected: str) -> None:
    with pytest.raises(SettingsRefused) as refused:
        read_config(given)
    assert str(refused.value) == expected
