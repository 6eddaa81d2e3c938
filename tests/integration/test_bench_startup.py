"""The `startup` benchmark's core still works: its bundle copies are bundles of their own that activate
together, and one `yiwang serve` on a seeded var dir becomes ready with every bundle built. `make bench` is
not run by `make test`; without this a change to bundles, activation or /readyz could break it unseen.
No speed is asserted: the figures only have to be sane."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.bundle import load_bundle, validate_bundle
from bench import startup


def test_copies_are_valid_bundles_of_their_own_and_activate_beside_the_shipped_ones(tmp_path: Path) -> None:
    deployment = startup.seed(tmp_path, 6)  # the four shipped bundles, then two copies

    assert deployment.sectors == ("civil_affairs", "civil_affairs_05", "housing_fund", "public_security",
                                  "social_security", "social_security_04")
    copies = [load_bundle(tmp_path / "bundles" / name) for name in ("social_security_04", "civil_affairs_05")]
    assert [validate_bundle(copy) for copy in copies] == [[], []]
    assert [copy.kind for copy in copies] == ["soap", "soap"]
    assert copies[0].department.credit_code != load_bundle(startup.BUNDLES / "social_security").department.credit_code


@pytest.mark.timeout(90)
def test_one_start_with_a_few_bundles_gives_sane_figures(tmp_path: Path) -> None:
    deployment = startup.seed(tmp_path, 3)

    measured = startup.start(deployment)  # returns only once /readyz listed all 3 with closed circuits

    assert deployment.sectors == ("civil_affairs", "housing_fund", "social_security")
    assert 0 < measured.ready_s < 90
    assert 0 < measured.cpu_s
    assert measured.rss_at_ready_mb > 0 and measured.rss_mb > 0
