"""xmlsec (zeep's WS-Security signing) and lxml must link the same libxml2, or signing fails at run time
with "lxml & xmlsec libxml2 library version mismatch" (DESIGN.md, known traps). pyproject.toml pins a pair of
wheels built on one libxml2; this test fails when an upgrade of either breaks the pair."""

from __future__ import annotations

import lxml.etree
import xmlsec

PINS = "pyproject.toml pins lxml==6.1.3 and xmlsec==1.3.17 (both wheels carry libxml2 2.14.6); upgrade them together"


def test_xmlsec_runs_on_the_libxml2_lxml_runs_on() -> None:
    assert xmlsec.get_libxml_version() == lxml.etree.LIBXML_VERSION, (
        f"xmlsec runs on libxml2 {xmlsec.get_libxml_version()}, lxml on {lxml.etree.LIBXML_VERSION}: {PINS}"
    )


def test_xmlsec_was_built_against_the_libxml2_lxml_was_built_against() -> None:
    assert xmlsec.get_libxml_compiled_version() == lxml.etree.LIBXML_COMPILED_VERSION, (
        f"xmlsec built on libxml2 {xmlsec.get_libxml_compiled_version()}, "
        f"lxml on {lxml.etree.LIBXML_COMPILED_VERSION}: {PINS}"
    )
