"""A replaced adapter releases its connections once the deliveries holding it are done."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.registry import default_bundles_dir
from gateway.bootstrap.app import Gateway
from gateway.sectors import live_registry
from gateway.sectors.bundle_records import pack_folder


def test_a_replaced_rest_adapter_is_closed_after_the_grace_period(
        make_gateway: Callable[..., Gateway], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_registry, "CLOSE_AFTER_S", 0.05)
    gateway = make_gateway(bundles=("housing_fund",))
    old = gateway.registry.get("housing_fund").adapter.inner
    bundle = tmp_path / "housing_fund"
    shutil.copytree(default_bundles_dir() / "housing_fund", bundle)
    descriptor = bundle / "bundle.yaml"
    descriptor.write_text(re.sub(r'(?m)^version: "', 'version: "next-', descriptor.read_text(encoding="utf-8")),
                          encoding="utf-8")
    version = gateway.bundles.register(pack_folder(bundle), "test").version
    gateway.bundles.activate("housing_fund", version, "test", force=True)
    assert gateway.registry.get("housing_fund").version == version  # the view refreshed: old one replaced
    assert not old.client.is_closed  # a delivery may still hold it
    deadline = time.monotonic() + 5
    while not old.client.is_closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert old.client.is_closed
