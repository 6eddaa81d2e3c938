"""XSLT for SOAP requests a mapping cannot express (`xslt: transform.xsl` in a mapping file).

A stylesheet comes from the sector's bundle, so it is treated as hostile: it is parsed by the hardened
parser (no DOCTYPE, no entities, no network) and compiled and run with `XSLTAccessControl.DENY_ALL`,
so `document()`, `xsl:include`/`xsl:import` of other files and `exsl:document` writes all fail
instead of reading or writing the gateway's files or reaching the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from mappings.errors import HostileXmlError, MappingError
from mappings.xml import parse_xml

MAX_STYLESHEET_BYTES = 1024 * 1024  # a transform is a page of XSLT, never megabytes


class XsltError(MappingError):
    """A stylesheet that cannot be compiled, or a transform that failed or tried to reach outside."""


@dataclass(frozen=True)
class Transform:
    """A compiled stylesheet: call it with an element or tree, get the transformed root element."""

    name: str
    xslt: etree.XSLT

    def __call__(self, document: etree._Element | etree._ElementTree) -> etree._Element:
        try:
            result = self.xslt(document)
        except etree.XSLTApplyError as exc:
            raise XsltError(f"{self.name}: transform failed: {exc}") from exc
        # libxslt reports some refusals only in the log and carries on with an empty node-set; a request
        # silently missing what the stylesheet wanted to read is worse than a failure.
        errors = [entry for entry in self.xslt.error_log if entry.level >= etree.ErrorLevels.ERROR]
        if errors:
            raise XsltError(f"{self.name}: transform failed: {errors[0].message}")
        root = result.getroot()
        if root is None:
            raise XsltError(f"{self.name}: the transform produced no XML element")
        return root


def compile_xslt(path: str | Path, *, name: str | None = None) -> Transform:
    """Compile a stylesheet file with every file and network access denied; `XsltError` if unusable."""
    path = Path(path)
    name = name or path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise XsltError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_STYLESHEET_BYTES:
        raise XsltError(f"{name}: stylesheet larger than {MAX_STYLESHEET_BYTES} bytes")
    try:
        stylesheet = parse_xml(data)
        return Transform(name, etree.XSLT(stylesheet, access_control=etree.XSLTAccessControl.DENY_ALL))
    except (HostileXmlError, etree.XMLSyntaxError, etree.XSLTParseError) as exc:
        raise XsltError(f"{name}: not a usable stylesheet: {exc}") from exc
