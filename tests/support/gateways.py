"""What tests need around a gateway: the shipped bundles activated, the seed catalogue parsed once, keys per
role, complete applications, draining dispatch."""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from unittest.mock import patch

import adapters
from adapters.bundle import Bundle, Problem
from adapters.registry import default_bundles_dir
from gateway.bootstrap.app import Gateway
from gateway.catalogue import matters as catalogue_module
from gateway.config import Settings
from gateway.domain.matter import Matter
from gateway.domain.roles import Role
from gateway.sectors.bundle_records import BundleStore, pack_folder, unpacked

# A pinned instant: Tuesday 2026-11-24 10:00 in Beijing.
PINNED = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


# The shipped bundles' secrets, as a deployment provides them: the simulators' default credentials.
SECTOR_SECRETS = {"YIWANG_SECRET_GJJ_CLIENT_ID": "yiwang", "YIWANG_SECRET_GJJ_CLIENT_SECRET": "s3cret",
                  "YIWANG_SECRET_MZ_PASSWORD": "mz-secret", "YIWANG_SECRET_GA_HMAC": "ga-secret",
                  "YIWANG_SECRET_EMPLOYMENT_APP_SECRET": "jy-secret", "YIWANG_SECRET_SOCIAL_ASSISTANCE_KEY": "jz-secret",
                  "YIWANG_SECRET_LICENCE_LIBRARY_TOKEN": "dzzzk-token",
                  "YIWANG_SECRET_RATING_PLATFORM_TOKEN": "hcp-token"}


def settings_for_tests(var_dir: Path, database_url: str, **overrides: Any) -> Settings:
    """A test gateway's settings: dispatch left to the test (it drains), short polls and retries, and every
    lookup seeing the database's active bundle versions."""
    settings = Settings(
        var_dir=var_dir,
        database_url=database_url,
        dispatch_in_process=False,
        poll_interval_ms=20,
        retry_attempts=3,
        retry_initial_ms=1,
        retry_max_ms=5,
        lease_ms=5_000,
        registry_refresh_ms=0,  # every lookup sees the database's active versions
    )
    return replace(settings, **overrides)


def activate_shipped(store: BundleStore, *sectors: str) -> None:
    """Register (once) and activate shipped bundles, as a sector team would with `yiwang adapters`."""
    registered = {(v.sector, v.version) for v in store.versions()}
    for sector in sectors:
        archive = pack_folder(default_bundles_dir() / sector)
        shipped = ShippedArchive.of(archive)
        if (sector, shipped.version) not in registered:
            with shipped.validated_once():
                store.register(archive, "test")
        store.activate(sector, shipped.version, "test", force=True)  # setup: its sector may not be up


def register_again(store: BundleStore, sector: str, version: str, folder: Path) -> None:
    """The shipped bundle of `sector` registered once more as `version` (unpacked into `folder`), not active."""
    shutil.copytree(default_bundles_dir() / sector, folder)
    manifest = folder / "bundle.yaml"
    text = re.sub(r'(?m)^version: .*$', f'version: "{version}"', manifest.read_text(encoding="utf-8"), count=1)
    manifest.write_text(text, encoding="utf-8")
    store.register(pack_folder(folder), "test")


@dataclass
class ShippedArchive:
    """What this run learnt of one shipped bundle's archive (by its digest: the same bytes, the same answers).

    Nearly every test registers a shipped bundle on its fresh database, and validating one (its WSDL or
    OpenAPI document, every mapping) costs 35-100 ms; its outcome cannot change while the bytes do not, so
    the first registration in the run validates for real and the later ones reuse that outcome."""

    version: str
    problems: list[Problem] | None = None  # validate_bundle's answer, once asked
    known: ClassVar[dict[str, ShippedArchive]] = {}

    @classmethod
    def of(cls, archive: bytes) -> ShippedArchive:
        digest = hashlib.sha256(archive).hexdigest()
        if digest not in cls.known:
            with unpacked(archive) as bundle:
                cls.known[digest] = cls(bundle.version)
        return cls.known[digest]

    @contextmanager
    def validated_once(self) -> Iterator[None]:
        validate = adapters.validate_bundle  # BundleStore.register imports it from `adapters` as it runs

        def remembered(bundle: Bundle) -> list[Problem]:
            if self.problems is None:
                self.problems = list(validate(bundle))
            return list(self.problems)

        with patch.object(adapters, "validate_bundle", remembered):
            yield


@dataclass
class SeedFile:
    """What this run read of each catalogue seed file, by its bytes: the same bytes, the same matters.

    Every gateway a test builds seeds its empty catalogue from the shipped file at start-up, and parsing that
    file into matters costs ~45 ms; while its bytes do not change neither can the matters (frozen dataclasses),
    so the run parses each content once and later seedings reuse the matters. Only seeding is served this way
    (`Catalogue.seed_if_empty` looks `load_catalogue_file` up in its module, where `seed_parsed_once` puts
    this); a file that cannot be read or parsed goes to the real function every time, and so fails as before."""

    matters: list[Matter]
    known: ClassVar[dict[str, SeedFile]] = {}

    @classmethod
    @contextmanager
    def parsed_once(cls) -> Iterator[None]:
        load = catalogue_module.load_catalogue_file

        def remembered(path: Path | str) -> list[Matter]:
            try:
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            except OSError:
                return load(path)
            if digest not in cls.known:
                cls.known[digest] = cls(load(path))
            return list(cls.known[digest].matters)

        with patch.object(catalogue_module, "load_catalogue_file", remembered):
            yield


def drain(gateway: Gateway, until: Callable[[], bool], timeout_s: float = 15) -> None:
    """Run dispatch rounds in this thread until `until()` holds (bounded in time)."""
    deadline = time.monotonic() + timeout_s
    while not until():
        if time.monotonic() > deadline:
            raise AssertionError("dispatch did not reach the expected outcome in time")
        if not gateway.dispatcher.run_once():
            time.sleep(0.01)


def pump(gateway: Gateway, until: Callable[[], bool], timeout_s: float = 20) -> None:
    """Run the scheduled jobs (fan-out, webhooks) as a dispatcher's loop does, until `until()`."""
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, "the scheduled jobs did not get there in time"
        gateway.scheduler.run_due()
        time.sleep(0.005)


SOCIAL_SECURITY_AGENCY = "12150200MB1A00010L"  # 包头市社会保险事业服务中心


@dataclass(frozen=True)
class Keys:
    """Request headers of one identity per role, issued on a gateway's own key store."""

    hall: dict[str, str]
    window: dict[str, str]
    clerk: dict[str, str]  # a clerk of the social-security agency
    issuing: dict[str, str]
    catalogue_admin: dict[str, str]
    operator: dict[str, str]

    @classmethod
    def issue(cls, gateway: Gateway) -> Keys:
        def headers(role: Role, **scope: str) -> dict[str, str]:
            _, key = gateway.keys.issue(f"test {role}", [role], **scope)
            return {"Authorization": f"Bearer {key}"}

        return cls(headers(Role.HALL_CLIENT), headers(Role.WINDOW), headers(Role.CLERK, department=SOCIAL_SECURITY_AGENCY),
                   headers(Role.ISSUING_WINDOW), headers(Role.CATALOGUE_ADMIN), headers(Role.OPERATOR))

    def clerk_of(self, gateway: Gateway, department: str) -> dict[str, str]:
        _, key = gateway.keys.issue("test clerk", [Role.CLERK], department=department)
        return {"Authorization": f"Bearer {key}"}

    @staticmethod
    def of(gateway: Gateway, *roles: Role, name: str = "test identity", **scope: str) -> dict[str, str]:
        """Headers of a new identity holding `roles` (scope: department= or sector=)."""
        _, key = gateway.keys.issue(name, list(roles), **scope)
        return {"Authorization": f"Bearer {key}"}


COMPLETE_APPLICATION: dict[str, Any] = {
    "matter_code": "12150200MB1A00010L3000805001000",  # 失业保险金申领, 5 working days
    "applicant": {"name": "王建国", "id_number": "150203198503120039", "phone": "13847100001"},
    "materials": [{"name": "居民身份证"}, {"name": "解除或终止劳动合同证明"}, {"name": "本人银行账户"}],
    "form": {"insured_months": 36, "separation_date": "2026-10-31"},
}


PARALLEL_APPLICATION: dict[str, Any] = {  # 职工退休一件事: social security and the housing fund decide side by side
    "matter_code": "12150200MB1A00010L3000805005000",
    "applicant": {"name": "李秀英", "id_number": "150203198503120039", "phone": "13847100002"},
    "materials": [{"name": "居民身份证"}, {"name": "本人人事档案"}, {"name": "本人银行账户"}],
    "form": {"retirement_date": "2026-12-01", "employer_name": "包头钢铁（集团）有限责任公司",
             "withdraw_provident_fund": True},
}


def legacy_signing_bundle(tmp_path: Path) -> Path:
    """The shipped public security bundle as version `legacy`, signing with a legacy recipe (MD5, `legacy:
    true`): valid, with a warning at bundle.yaml:34."""
    folder = tmp_path / "public_security"
    shutil.copytree(default_bundles_dir() / "public_security", folder)
    descriptor = folder / "bundle.yaml"
    text = re.sub(r'(?m)^version: .*$', 'version: "legacy"', descriptor.read_text(encoding="utf-8"), count=1)
    head, rest = text.split("auth:\n", 1)
    legacy = ("auth:\n  type: signature\n  secret: {secret: env:YIWANG_SECRET_GA_HMAC}\n  algorithm: md5\n"
              "  legacy: true\n  secret_in_text: suffix\n  text: {parts: [method, path, body]}\n"
              "  place: {signature: {header: X-Sign}}\n")
    descriptor.write_text(head + legacy + rest[rest.index("\n", rest.index("canonical:")) + 1:], encoding="utf-8")
    return folder
