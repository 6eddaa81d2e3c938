"""The far-side agent's configuration (ferry/config.py): read strictly, every key at fault named, paths read
from the file's folder, nothing created."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry import AgentConfig, ConfigInvalid, load_config


def write(folder: Path, **changes: Any) -> Path:
    (folder / "in").mkdir(exist_ok=True)
    (folder / "out").mkdir(exist_ok=True)
    document: dict[str, Any] = {
        "name": "mz-agent", "channel": "civil_affairs", "state": "state/agent.sqlite",
        "master_key_file": "master.key", "incoming": "in", "outgoing": "out",
        "own_certificate": "mz-agent", "near_certificate": "yiwang-ferry"}
    document.update(changes)
    document = {k: v for k, v in document.items() if v is not None}
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


def problems(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(ConfigInvalid) as refused:
        load_config(path)
    assert str(path) in str(refused.value)
    return refused.value.problems


def test_a_minimal_configuration_takes_the_defaults_and_reads_paths_from_its_folder(tmp_path: Path) -> None:
    config = load_config(write(tmp_path))
    assert isinstance(config, AgentConfig)
    assert config.state == tmp_path / "state" / "agent.sqlite" and config.incoming == tmp_path / "in"
    assert (config.send_channel, config.receive_channel) == ("civil_affairs.up", "civil_affairs.down")
    assert (config.mode, config.cipher, config.interval_ms, config.keep_keys_days) == ("two_way", "sm4-gcm", 1000, 30)
    assert config.endpoint is None and config.poll_interval_ms is None
    assert not (tmp_path / "state").exists()  # reading creates nothing


def test_every_optional_key_is_taken(tmp_path: Path) -> None:
    config = load_config(write(
        tmp_path, mode="one_way", cipher="aes-256-gcm", naming={"extension": ".txt", "wrapper": "text"},
        limits={"batch_bytes": 1000, "message_bytes": 500}, interval_ms=200, resend_after_ms=1000,
        beacon_every_ms=500, keep_keys_days=60, endpoint="http://10.0.0.7:8803/mca", poll_interval_ms=50))
    assert (config.naming.extension, config.naming.wrapper, config.limits.batch_bytes) == (".txt", "text", 1000)
    assert (config.mode, config.endpoint, config.poll_interval_ms) == ("one_way", "http://10.0.0.7:8803/mca", 50)


@pytest.mark.parametrize(("changes", "key", "said"), [
    ({"colour": "blue"}, "colour", "unknown key"),
    ({"name": None}, "name", "required"),
    ({"near_certificate": None}, "near_certificate", "required"),
    ({"interval_ms": "1s"}, "interval_ms", "whole number"),
    ({"interval_ms": True}, "interval_ms", "whole number"),
    ({"keep_keys_days": 0}, "keep_keys_days", "greater than 0"),
    ({"mode": "both_ways"}, "mode", "two_way, one_way"),
    ({"cipher": "des"}, "cipher", "sm4-gcm, aes-256-gcm"),
    ({"channel": "Civil Affairs"}, "channel", "lower-case"),
    ({"endpoint": "ftp://x"}, "endpoint", "http"),
    ({"naming": {"extension": "txt"}}, "naming.extension", "extension"),
    ({"naming": {"wrapper": "zip"}}, "naming.wrapper", "none, text, xml"),
    ({"naming": {"colour": "x"}}, "naming.colour", "unknown key"),
    ({"limits": "big"}, "limits", "mapping"),
    ({"limits": {"batch_bytes": -1}}, "limits.batch_bytes", "greater than 0"),
    ({"incoming": "nowhere"}, "incoming", "no such folder"),
    ({"outgoing": "in"}, "outgoing", "another folder"),
])
def test_a_bad_value_is_refused_naming_its_key(tmp_path: Path, changes: dict[str, Any], key: str, said: str) -> None:
    found = problems(write(tmp_path, **changes))
    assert [k for k, _ in found] == [key]
    assert said in found[0][1]


def test_every_key_at_fault_is_named_at_once(tmp_path: Path) -> None:
    found = problems(write(tmp_path, mode="x", interval_ms=-5, extra=1))
    assert sorted(k for k, _ in found) == ["extra", "interval_ms", "mode"]


@pytest.mark.parametrize("text", ["- a list\n", "name: [unclosed\n", "just text\n"])
def test_a_file_that_is_no_mapping_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(text, encoding="utf-8")
    assert problems(path)[0][0] == ""


def test_a_missing_file_is_refused_readably(tmp_path: Path) -> None:
    assert "cannot read" in problems(tmp_path / "nowhere.yaml")[0][1]
