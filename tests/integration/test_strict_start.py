"""Strict start (gateway/bootstrap/strict_start.py): with YIWANG_ENVIRONMENT=production a start refuses, naming the
setting or the bundle's secret and why, while a key or secret equals a value the repository publishes or the
master key is the development one; the default (no settings) starts as before."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.registry import default_bundles_dir
from certstore.keyring import MasterKeys
from gateway.bootstrap.app import Gateway, build_gateway
from gateway.bootstrap.strict_start import StartRefused
from gateway.config import Settings
from gateway.sectors.bundle_records import pack_folder
from gateway.sectors.live_registry import NoActiveAdapter
from gateway.security.published_secrets import PUBLISHED_SECRETS

YIWANG = str(Path(sys.executable).with_name("yiwang"))
PUBLISHED_KEY = "cd" * 32  # the material-link key tests/integration/test_material_transport.py publishes
TESTS_KEY = PUBLISHED_SECRETS[PUBLISHED_KEY]
GA_SECRET = "ga-secret"  # the 公安 simulator's default, which the shipped bundle's env:YIWANG_SECRET_GA_HMAC holds here
GA = "public_security"


def production(var_dir: Path, **overrides: object) -> Settings:
    """Proper production settings: a master key of its own; the rest as given."""
    settings = Settings(var_dir=var_dir, environment="production", master_key=MasterKeys.generate("k1"),
                        dispatch_in_process=False, registry_refresh_ms=0)
    return replace(settings, **overrides)  # type: ignore[arg-type]


def refusal(settings: Settings) -> str:
    with pytest.raises(StartRefused) as refused:
        build_gateway(settings).close()
    return str(refused.value)


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize("setting", ["material_link_key", "blind_index_key"])
def test_production_refuses_a_published_key_naming_the_setting_never_the_value(tmp_path: Path, setting: str) -> None:
    said = refusal(production(tmp_path / "var", **{setting: f" {PUBLISHED_KEY.upper()}\n"}))
    assert f"YIWANG_{setting.upper()}: equals a value published in this repository ({TESTS_KEY})" in said
    assert PUBLISHED_KEY not in said.lower() and "YIWANG_MASTER_KEY" not in said
    assert not (tmp_path / "var").exists()  # refused before anything was made


def test_production_refuses_the_development_master_key_and_makes_none(tmp_path: Path) -> None:
    said = refusal(production(tmp_path / "var", master_key=None))
    assert "YIWANG_MASTER_KEY: not set, so the development key" in said and "master.key" in said
    assert not (tmp_path / "var" / "master.key").exists()


def test_production_refuses_a_ring_whose_current_key_is_the_development_one(tmp_path: Path, db_url: str) -> None:
    var = tmp_path / "var"
    build_gateway(Settings(var_dir=var, database_url=db_url, dispatch_in_process=False)).close()  # development
    development = var / "master.key"
    said = refusal(production(var, database_url=db_url, master_key=None, master_key_file=development))
    assert "YIWANG_MASTER_KEY_FILE (key 'dev1'): its current key is the development key" in said
    ring = f"{MasterKeys.generate('k2')},{development.read_text().strip()}"  # moving off it: the old key after
    build_gateway(production(var, database_url=db_url, master_key=ring)).close()


def test_the_default_with_no_settings_starts_as_before(tmp_path: Path, make_gateway: Callable[..., Gateway]) -> None:
    """Development: published secrets (the autouse fixture sets the simulators' defaults) and the development
    master key, made on first start."""
    assert Settings.from_env({}).strict is False
    gateway = make_gateway(bundles=(GA,))
    assert gateway.registry.get(GA).version and (tmp_path / "var" / "master.key").is_file()


# ------------------------------------------------------------------ bundles' secrets


@pytest.fixture
def ga_with_own_callback_key(tmp_path: Path) -> bytes:
    """The shipped 公安 bundle as a next version whose callbacks are signed with a key of their own."""
    folder = tmp_path / "ga-bundle"
    shutil.copytree(default_bundles_dir() / GA, folder)
    descriptor = folder / "bundle.yaml"
    text = descriptor.read_text(encoding="utf-8").replace('version: "2026.12.0"', 'version: "2026.12.9"')
    head, callback = text.split("callback_auth:")
    callback = callback.replace("env:YIWANG_SECRET_GA_HMAC", "env:YIWANG_SECRET_GA_CALLBACK")
    descriptor.write_text(f"{head}callback_auth:{callback}", encoding="utf-8")
    return pack_folder(folder)


@pytest.fixture
def ga_active(make_gateway: Callable[..., Gateway], ga_with_own_callback_key: bytes) -> Iterator[Settings]:
    """A database where that version is active, after the shipped one (made by a development start); its
    settings, for production."""
    gateway = make_gateway(bundles=(GA,), master_key=MasterKeys.generate("k1"))
    gateway.bundles.register(ga_with_own_callback_key, "test")
    gateway.bundles.activate(GA, "2026.12.9", "test", force=True)
    yield replace(gateway.settings, environment="production")


def test_production_refuses_an_active_bundles_published_secret_naming_bundle_field_and_reference(
        ga_active: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_SECRET_GA_CALLBACK", secrets.token_urlsafe(24))
    said = refusal(ga_active)  # YIWANG_SECRET_GA_HMAC: the simulator's default (conftest)
    assert ("bundle public_security 2026.12.9: auth.secret (env:YIWANG_SECRET_GA_HMAC): equals a value published "
            "in this repository (the 公安 simulator's default HMAC secret") in said
    assert "callback_auth" not in said and GA_SECRET not in said


def test_production_refuses_a_published_callback_key(ga_active: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_SECRET_GA_HMAC", secrets.token_urlsafe(24))
    monkeypatch.setenv("YIWANG_SECRET_GA_CALLBACK", f"{GA_SECRET.upper()} ")
    said = refusal(ga_active)
    assert ("bundle public_security 2026.12.9: results.callback_auth.secret (env:YIWANG_SECRET_GA_CALLBACK, the key "
            "the sector signs its callbacks with): equals a value published") in said
    assert "auth.secret (env:YIWANG_SECRET_GA_HMAC" not in said and GA_SECRET not in said.lower()


def test_production_starts_with_proper_values_and_builds_no_version_activated_later_with_a_published_secret(
        ga_active: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YIWANG_SECRET_GA_HMAC", secrets.token_urlsafe(24))
    monkeypatch.setenv("YIWANG_SECRET_GA_CALLBACK", secrets.token_urlsafe(24))
    gateway = build_gateway(replace(ga_active, material_link_key=secrets.token_hex(32),
                                    blind_index_key=secrets.token_hex(32)))
    try:
        assert gateway.registry.get(GA).version == "2026.12.9"
        monkeypatch.setenv("YIWANG_SECRET_GA_HMAC", GA_SECRET)  # as the version rolled back to will find it
        gateway.bundles.rollback(GA, "test")  # back to the shipped 2026.12.0
        with pytest.raises(NoActiveAdapter) as broken:
            gateway.registry.get(GA)
        said = str(broken.value)
        assert "2026.12.0 版无法在此构建" in said
        assert "auth.secret: (env:YIWANG_SECRET_GA_HMAC) equals a value published in this repository" in said
        assert GA_SECRET not in said
        tested = gateway.sector_calls.test_version(GA, "2026.12.0").test_result  # `yiwang adapters test` says so too
        assert tested is not None and tested["reachable"] is False
        assert "cannot be built here" in tested["answer"] and "(env:YIWANG_SECRET_GA_HMAC) equals" in tested["answer"]
    finally:
        gateway.close()


# ------------------------------------------------------------------ the commands


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_yiwang_serve_and_worker_refuse_with_a_readable_message_and_exit_2(tmp_path: Path, command: str) -> None:
    env = {**os.environ, "YIWANG_VAR_DIR": str(tmp_path / "var"), "YIWANG_ENVIRONMENT": "production",
           "YIWANG_MATERIAL_LINK_KEY": PUBLISHED_KEY}
    env.pop("YIWANG_MASTER_KEY", None)
    env.pop("YIWANG_MASTER_KEY_FILE", None)
    done = subprocess.run([YIWANG, command, *(["--port", "1"] if command == "serve" else [])], env=env,
                          capture_output=True, text=True, timeout=60)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, said
    assert "refusing to start with YIWANG_ENVIRONMENT=production" in said
    assert f"YIWANG_MATERIAL_LINK_KEY: equals a value published in this repository ({TESTS_KEY})" in said
    assert "YIWANG_MASTER_KEY: not set" in said
    assert PUBLISHED_KEY not in said and "Traceback" not in said
