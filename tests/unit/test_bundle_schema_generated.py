"""The bundle schema is generated from the registered adapter kinds (`adapters.bundle_schema`), and what they
generate is what was published before the kinds became components: the snapshot of
`tests/api/test_interface_snapshots.py` (`tests/data/interface/bundle.schema.json`). `adapters/bundle.schema.json`,
the published copy, is the generated text (`make bundle-schema` rewrites it).
"""

from __future__ import annotations

import json
from pathlib import Path

from adapters.bundle import schema
from adapters.bundle_schema import PUBLISHED, published_text

SNAPSHOT = Path(__file__).parents[1] / "data" / "interface" / "bundle.schema.json"


def test_the_schema_the_kinds_generate_equals_the_snapshot() -> None:
    assert schema() == json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_the_published_schema_is_the_generated_one() -> None:
    assert PUBLISHED.read_text(encoding="utf-8") == published_text(), "run `make bundle-schema`"
