"""Matters and catalogue fixtures the catalogue tests share (the store, the shipped catalogue)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from gateway.catalogue.matters import Catalogue, load_catalogue_file
from gateway.config import DEFAULT_CATALOGUE
from gateway.domain.matter import (
    Matter,
)
from gateway.persistence.engine import make_engine
from gateway.persistence.tables import metadata

UNEMPLOYMENT = "12150200MB1A00010L3000805001000"  # 失业保险金申领


PENSION_TRANSFER = "12150200MB1A00010L3000805002000"  # 职工基本养老保险关系转移接续


SOCIAL_SECURITY_CARD = "12150200MB1A00010L3000805004000"  # 社会保障卡申领


AGENCY = "12150200MB1A00010L"  # 包头市社会保险事业服务中心


SHIPPED = load_catalogue_file(DEFAULT_CATALOGUE)


def shipped(code: str) -> Matter:
    return next(m for m in SHIPPED if m.implementation_code == code)


def open_engine(tmp_path: Path, name: str = "catalogue.db") -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / name}")
    metadata.create_all(engine)
    return engine


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_engine(tmp_path)
    yield engine
    engine.dispose()


@pytest.fixture
def catalogue(engine: Engine) -> Catalogue:
    """The shipped catalogue, seeded as published version 1."""
    store = Catalogue(engine, cache_ttl_s=0.1)
    store.seed_if_empty(DEFAULT_CATALOGUE)
    return store


def new_matter(serial: str = "9", **changes: Any) -> Matter:
    """A valid matter that is not in the shipped catalogue (basic code 00080500{serial}000)."""
    basic = f"00080500{serial}000"
    base = replace(shipped(SOCIAL_SECURITY_CARD), basic_code=basic, implementation_code=f"{AGENCY}3{basic}",
                   name=f"测试事项{serial}")
    return replace(base, **changes)
